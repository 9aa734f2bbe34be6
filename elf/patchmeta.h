/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/* The metadata of a patch (include/ulp/patch.h), read with libelf without running it. */

#include <stdbool.h>
#include <stdint.h>

#include "common/macro.h"
#include "elf/module.h"

/* The longest patch name: ULP_PATCH_INFO's, or the file name without ".so". Every place
 * that keeps a name (the control block, reports, ulpd's records) holds it whole. */
#define ULP_NAME_MAX 64
/* The name of the shadow-variable runtime's mapping in a target (patcher/shadow.h,
 * docs/shadow.md): no patch may have it, or each would be taken for the other. */
#define PATCH_NAME_SHADOW_RUNTIME "ulp-shadow-runtime"
/* The longest object and symbol names of a ULP_FUNC: as the control block records them. */
#define PATCH_OBJECT_MAX 63
#define PATCH_SYMBOL_MAX 95

typedef struct PatchFunc {
        char *object;            /* "" for the main executable */
        char *symbol;            /* old symbol in the target */
        unsigned pos;            /* see symtab_lookup() */
        uint64_t new_vaddr;      /* the new function, ELF vaddr in the patch */
        char *new_name;
} PatchFunc;

typedef struct PatchRef {
        char *object;
        char *symbol;
        unsigned pos;
        uint64_t slot_vaddr;     /* the patch's pointer variable, ELF vaddr in the patch */
} PatchRef;

/* A field of the patch filled with a target symbol's address (ulp_rels, made by
 * ulp-build): where lies inside the patch's loaded image, whole. */
typedef struct PatchRel {
        char *object;
        char *symbol;
        unsigned pos;
        unsigned type;           /* ULP_REL_PC32 or ULP_REL_64 */
        uint64_t where_vaddr;    /* ELF vaddr in the patch */
        int64_t addend;
} PatchRel;

typedef struct PatchBuildId {
        char *object;
        char *hex;               /* lower-case */
} PatchBuildId;

typedef struct PatchCallbacks {
        char *object;
        uint64_t pre_patch, post_patch, pre_unpatch, post_unpatch; /* vaddrs, 0 when absent */
} PatchCallbacks;

typedef struct PatchMeta {
        char *name;              /* ULP_PATCH_INFO name, else the file name without ".so" */
        char *description;       /* "" when absent */
        bool replace;
        /* Records of one kind come in section order, which is not source order (gcc
         * emits the records of one file in reverse): match them by object and symbol. */
        PatchFunc *funcs;        size_t n_funcs;
        PatchRef *refs;          size_t n_refs;
        PatchRel *rels;          size_t n_rels;
        PatchBuildId *build_ids; size_t n_build_ids;
        PatchCallbacks *callbacks; size_t n_callbacks;
        uint8_t build_id[BUILD_ID_MAX]; /* the patch file's own build-id */
        size_t build_id_len;
        size_t n_relr;           /* packed relative relocations (DT_RELR), all checked */
} PatchMeta;

/* Reads the metadata of the patch file open at fd (not consumed), from a sealed copy of
 * it (patchfile.h; none is made when fd already is one), and validates the whole file
 * as the loader will use it: segments, sections, relocations, names. name_hint is the
 * file name, used for the patch name when it has no ULP_PATCH_INFO. Returns 0 or:
 * -ENOEXEC not an ELF file, -ENOMSG no ulp metadata (no ulp_funcs record),
 * -EBADMSG malformed file or metadata (a segment or relocation out of bounds, bad magic,
 * a pointer without relocation, a string out of bounds, a bad name), -ENOTSUP a feature
 * the loader does not support (the reason then reads after "patch NAME ": "uses ..."),
 * -EBADF/-EFBIG not a readable regular file or too large. On error, if errbuf is not
 * NULL, a one-line reason is written to it. */
int patchmeta_read(int fd, const char *name_hint, PatchMeta **ret, char *errbuf, size_t errlen);
void patchmeta_free(PatchMeta *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(PatchMeta *, patchmeta_free);

/* The build-id pin for an object, or NULL. */
const char *patchmeta_build_id_for(const PatchMeta *m, const char *object);
