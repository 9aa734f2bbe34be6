/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ulp patch-author API.
 *
 * A patch is a plain shared object built with
 *
 *     cc -shared -fPIC -O2 -I include fix.c -o fix.so
 *
 * Its metadata is a set of fixed-layout records placed by the macros below in
 * allocated ELF sections named "ulp_*". ulp reads them with libelf, without
 * running any code of the patch: string and function pointers inside the
 * records are recovered from the patch's dynamic relocations
 * (R_X86_64_RELATIVE or R_X86_64_64 against a symbol of the patch).
 *
 *     ULP_PATCH_INFO("name", "description");            optional
 *     ULP_FUNC(ULP_MAIN, "compute", compute_v2);        object, old symbol, new function
 *     ULP_FUNC("libfoo.so.1", "foo_parse", foo_parse_v2);
 *     ULP_FUNC_POS(ULP_MAIN, "helper", 2, helper_v2);   2nd local symbol of that name
 *     ULP_REF(ULP_MAIN, "counter", counter_p);          counter_p := &target's counter
 *     ULP_BUILD_ID(ULP_MAIN, "a50d68...");              optional pin; mismatch refuses
 *     ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, pre_unpatch, post_unpatch);
 *     ULP_REPLACE();                                    cumulative patch
 *
 * Objects are named ULP_MAIN (the main executable) or by a library's soname
 * (DT_SONAME) or file name, e.g. "libz.so.1".
 *
 * C++: this header works in a patch compiled with g++ as well. A C++ function is named
 * by its mangled symbol ("_ZNK4shop4Cart5totalEi") or as it demangles
 * ("shop::Cart::total(int) const"; spaces only matter between two words). Its
 * replacement is any function with the same calling convention: for a member function,
 * one taking the object pointer first, e.g.
 *
 *     static int total_v2(const shop::Cart *self, int tax);
 *     ULP_FUNC(ULP_MAIN, "shop::Cart::total(int) const", total_v2);
 *
 * ULP_REF's third argument is a pointer variable the patch declares itself,
 * e.g. "static int *counter_p;". ulp stores the address of the target's symbol
 * in it before any new function can run. Static symbols of the target work as
 * long as the target's .symtab is present, or, for a stripped object, its separate
 * debug file is installed (docs/symbols.md).
 *
 * Callbacks run inside the target, on one borrowed thread, with all signals
 * blocked: int pre_patch(void) and int pre_unpatch(void) return 0 to go on, or
 * non-zero to cancel; void post_patch(void) and void post_unpatch(void) run
 * after the transition completed. Any of them may be NULL. The callbacks of a library
 * the process loads after the patch run when ulpd patches it: pre_patch before its
 * functions (non-zero leaves them unpatched), post_patch after; the unpatch callbacks at
 * the revert (docs/late-callbacks.md).
 *
 * ulp-build (a patch made from a source diff) adds one more kind of record,
 * ulp_rels: a field of the patch's code or data that ulp fills with the address of a
 * target symbol, as a 32-bit PC-relative displacement (ULP_REL_PC32: S + A - P, the
 * patch lies within reach of the objects it patches) or a 64-bit address
 * (ULP_REL_64: S + A). That is how compiled code reaches the running program's own
 * static variables and functions without a pointer variable. Hand-written patches
 * use ULP_REF.
 *
 * Symbols the patch defines resolve to the patch itself; undefined symbols
 * resolve against the target's loaded objects in load order. TLS and IFUNC
 * relocations are refused.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ULP_MAIN ""

#define ULP_META_MAGIC 0x31504c55u /* "ULP1" */

#define ULP_SECTION_INFO      "ulp_info"
#define ULP_SECTION_FUNCS     "ulp_funcs"
#define ULP_SECTION_REFS      "ulp_refs"
#define ULP_SECTION_BUILD_IDS "ulp_build_ids"
#define ULP_SECTION_CALLBACKS "ulp_callbacks"
#define ULP_SECTION_REPLACE   "ulp_replace"
#define ULP_SECTION_RELS      "ulp_rels"

/* Each record is 8-byte aligned and a multiple of 8 bytes long, so that the
 * records of one section form an array without padding. */

struct ulp_meta_info {
        uint32_t magic;
        uint32_t reserved;
        const char *name;
        const char *description;
};

struct ulp_meta_func {
        uint32_t magic;
        uint32_t pos;           /* 0: the only (or global) symbol; n >= 1: nth local of that name */
        const char *object;
        const char *symbol;
        const void *new_func;
        const char *new_name;   /* the new function's name, for messages */
};

struct ulp_meta_ref {
        uint32_t magic;
        uint32_t pos;
        const char *object;
        const char *symbol;
        void *slot;             /* address of the patch's pointer variable */
};

#define ULP_REL_PC32 1u          /* int32 at where := S + addend - where */
#define ULP_REL_64   2u          /* uint64 at where := S + addend */

struct ulp_meta_rel {
        uint32_t magic;
        uint32_t pos;           /* as in ulp_meta_ref */
        const char *object;
        const char *symbol;
        void *where;            /* the field to fill, in the patch */
        uint32_t type;          /* ULP_REL_* */
        uint32_t reserved;
        int64_t addend;
};

struct ulp_meta_build_id {
        uint32_t magic;
        uint32_t reserved;
        const char *object;
        const char *build_id;   /* lower-case hex */
};

struct ulp_meta_callbacks {
        uint32_t magic;
        uint32_t reserved;
        const char *object;
        int (*pre_patch)(void);
        void (*post_patch)(void);
        int (*pre_unpatch)(void);
        void (*post_unpatch)(void);
};

struct ulp_meta_replace {
        uint32_t magic;
        uint32_t replace;
};

#define ULP__CAT2(a, b) a##b
#define ULP__CAT(a, b) ULP__CAT2(a, b)
#define ULP__ID(prefix) ULP__CAT(prefix, __COUNTER__)
#define ULP__RECORD(type, sect) \
        static const struct type __attribute__((used, aligned(8), section(sect)))

#define ULP_PATCH_INFO(name_, description_) \
        ULP__RECORD(ulp_meta_info, ULP_SECTION_INFO) ULP__ID(ulp__info_) = { \
                ULP_META_MAGIC, 0, (name_), (description_) }

#define ULP_FUNC_POS(object_, symbol_, pos_, new_func_) \
        ULP__RECORD(ulp_meta_func, ULP_SECTION_FUNCS) ULP__ID(ulp__func_) = { \
                ULP_META_MAGIC, (pos_), (object_), (symbol_), (const void *)&(new_func_), #new_func_ }

#define ULP_FUNC(object_, symbol_, new_func_) ULP_FUNC_POS(object_, symbol_, 0, new_func_)

#define ULP_REF_POS(object_, symbol_, pos_, pointer_var_) \
        ULP__RECORD(ulp_meta_ref, ULP_SECTION_REFS) ULP__ID(ulp__ref_) = { \
                ULP_META_MAGIC, (pos_), (object_), (symbol_), (void *)&(pointer_var_) }

#define ULP_REF(object_, symbol_, pointer_var_) ULP_REF_POS(object_, symbol_, 0, pointer_var_)

#define ULP_BUILD_ID(object_, hex_) \
        ULP__RECORD(ulp_meta_build_id, ULP_SECTION_BUILD_IDS) ULP__ID(ulp__bid_) = { \
                ULP_META_MAGIC, 0, (object_), (hex_) }

#define ULP_CALLBACKS(object_, pre_patch_, post_patch_, pre_unpatch_, post_unpatch_) \
        ULP__RECORD(ulp_meta_callbacks, ULP_SECTION_CALLBACKS) ULP__ID(ulp__cb_) = { \
                ULP_META_MAGIC, 0, (object_), (pre_patch_), (post_patch_), (pre_unpatch_), (post_unpatch_) }

#define ULP_REPLACE() \
        ULP__RECORD(ulp_meta_replace, ULP_SECTION_REPLACE) ULP__ID(ulp__replace_) = { \
                ULP_META_MAGIC, 1 }

#ifdef __cplusplus
}
#endif
