/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The public face of elf/ (include/ulp/libulp.h): patch metadata, the objects a
 * process has loaded and its executable mappings, for ulpd and ulpctl, which see none
 * of elf/'s own types. Thin wrappers; the work and the bounds are in patchmeta.c,
 * module.c, maps.c and patchfile.c.
 */

#include <string.h>
#include <sys/mman.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "elf/module.h"
#include "elf/patchfile.h"
#include "elf/patchmeta.h"
#include "ulp/libulp.h"

_Static_assert(ULP_BUILD_ID_HEX_MAX == 2 * BUILD_ID_MAX + 1, "build-id sizes differ");

/* The opaque types are the internal ones: no copy, no second layout to keep in step. */
struct UlpPatchInfo { PatchMeta meta; };
struct UlpObjects { ModuleList list; };

int ulp_patch_file_copy(int fd, int *ret, char *err, size_t errlen) {
        return patch_file_copy(fd, ret, err, errlen);
}

int ulp_patch_info_read(int fd, const char *name_hint, UlpPatchInfo **ret, char *err, size_t errlen) {
        PatchMeta *m = NULL;
        int r;

        r = patchmeta_read(fd, name_hint ?: "patch.so", &m, err, errlen);
        if (r < 0)
                return r;
        *ret = (UlpPatchInfo *) m;
        return 0;
}

void ulp_patch_info_free(UlpPatchInfo *pi) {
        patchmeta_free(pi ? &pi->meta : NULL);
}

const char *ulp_patch_info_name(const UlpPatchInfo *pi) {
        return pi->meta.name;
}

const char *ulp_patch_info_description(const UlpPatchInfo *pi) {
        return pi->meta.description ?: "";
}

bool ulp_patch_info_replace(const UlpPatchInfo *pi) {
        return pi->meta.replace;
}

void ulp_patch_info_build_id(const UlpPatchInfo *pi, char hex[ULP_BUILD_ID_HEX_MAX]) {
        build_id_to_hex(pi->meta.build_id, pi->meta.build_id_len, hex);
}

const char *ulp_patch_info_pin_for(const UlpPatchInfo *pi, const char *object) {
        return patchmeta_build_id_for(&pi->meta, object);
}

size_t ulp_patch_info_n_funcs(const UlpPatchInfo *pi) {
        return pi->meta.n_funcs;
}

UlpPatchFuncInfo ulp_patch_info_func(const UlpPatchInfo *pi, size_t i) {
        const PatchFunc *f = &pi->meta.funcs[i];

        return (UlpPatchFuncInfo) {
                .object = f->object ?: "", .symbol = f->symbol, .pos = f->pos, .new_name = f->new_name,
        };
}

size_t ulp_patch_info_n_refs(const UlpPatchInfo *pi) {
        return pi->meta.n_refs;
}

void ulp_patch_info_ref(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_symbol) {
        *ret_object = pi->meta.refs[i].object ?: "";
        *ret_symbol = pi->meta.refs[i].symbol;
}

size_t ulp_patch_info_n_rels(const UlpPatchInfo *pi) {
        return pi->meta.n_rels;
}

void ulp_patch_info_rel(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_symbol) {
        *ret_object = pi->meta.rels[i].object ?: "";
        *ret_symbol = pi->meta.rels[i].symbol;
}

size_t ulp_patch_info_n_pins(const UlpPatchInfo *pi) {
        return pi->meta.n_build_ids;
}

void ulp_patch_info_pin(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_hex) {
        *ret_object = pi->meta.build_ids[i].object ?: "";
        *ret_hex = pi->meta.build_ids[i].hex;
}

size_t ulp_patch_info_n_callbacks(const UlpPatchInfo *pi) {
        return pi->meta.n_callbacks;
}

size_t ulp_patch_info_n_relr(const UlpPatchInfo *pi) {
        return pi->meta.n_relr;
}

const char *ulp_patch_info_callbacks_object(const UlpPatchInfo *pi, size_t i) {
        return pi->meta.callbacks[i].object ?: "";
}

int ulp_objects_read(pid_t pid, UlpObjects **ret) {
        UlpObjects *o = calloc(1, sizeof(*o));
        int r;

        if (!o)
                return -ENOMEM;
        r = modules_read(pid, &o->list);
        if (r < 0) {
                free(o);
                return r;
        }
        *ret = o;
        return 0;
}

void ulp_objects_free(UlpObjects *objs) {
        if (!objs)
                return;
        modulelist_done(&objs->list);
        free(objs);
}

int ulp_objects_find(const UlpObjects *objs, const char *object, char hex[ULP_BUILD_ID_HEX_MAX]) {
        const Module *mod = modules_find_object(&objs->list, object);

        if (!mod)
                return 0;
        if (hex)
                build_id_to_hex(mod->build_id, mod->build_id_len, hex);
        return 1;
}

int ulp_exec_mappings(pid_t pid, int (*fn)(const char *path, uint64_t start, void *userdata),
                      void *userdata) {
        MapList l = {};
        int r;

        r = maps_read(pid, &l);
        if (r < 0)
                return r;
        r = 0;
        for (size_t i = 0; i < l.n && r == 0; i++) {
                const MapEntry *e = &l.v[i];

                if (e->path && e->path[0] == '/' && (e->prot & PROT_EXEC))
                        r = fn(e->path, e->start, userdata);
        }
        maplist_done(&l);
        return r;
}
