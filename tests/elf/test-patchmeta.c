/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Patch metadata read from the fixture patches, checked against their symbol tables. */

#include <fcntl.h>
#include <gelf.h>

#include "common/macro.h"
#include "elf/patchmeta.h"
#include "elf/symtab.h"
#include "test.h"

static void patchmeta_freep(PatchMeta **m) {
        patchmeta_free(*m);
}

static void symtab_freep(SymTab **st) {
        symtab_free(*st);
}

/* Reads PATCH_DIR/file; returns patchmeta_read()'s result. */
static int read_patch(const char *file, PatchMeta **ret, char *err, size_t errlen) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return patchmeta_read(fd, path, ret, err, errlen);
}

static uint64_t symbol_value(const char *file, const char *name) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        char path[4096];
        Symbol s;

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        if (symtab_open(path, &st) < 0 || symtab_lookup(st, name, 0, &s) < 0)
                return UINT64_MAX;
        return s.value;
}

/* The records of a section come in no particular order (gcc emits those of one file in
 * reverse): tests find them by symbol. */
static const PatchFunc *find_func(const PatchMeta *m, const char *object, const char *symbol) {
        for (size_t i = 0; i < m->n_funcs; i++)
                if (strcmp(m->funcs[i].object, object) == 0 && strcmp(m->funcs[i].symbol, symbol) == 0)
                        return &m->funcs[i];
        TEST__FAIL("no ULP_FUNC for %s:%s", object, symbol);
}

static const PatchRef *find_ref(const PatchMeta *m, const char *symbol) {
        for (size_t i = 0; i < m->n_refs; i++)
                if (strcmp(m->refs[i].symbol, symbol) == 0)
                        return &m->refs[i];
        TEST__FAIL("no ULP_REF for %s", symbol);
}

/* Every field of patch-full.c round-trips; file is patch-full.so or patch-relr.so. */
static void check_full(const char *file) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;
        char err[256] = "";

        if (read_patch(file, &m, err, sizeof(err)) < 0)
                TEST__FAIL("%s: %s", file, err);
        ASSERT_STREQ(m->name, "full-patch");
        ASSERT_STREQ(m->description, "every macro once");
        ASSERT_TRUE(m->replace);

        ASSERT_EQ(m->n_funcs, 3);
        const PatchFunc *f = find_func(m, "", "fixture_compute");
        ASSERT_EQ(f->pos, 0);
        ASSERT_STREQ(f->new_name, "compute_v2");
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "compute_v2"));
        f = find_func(m, "", "helper");
        ASSERT_EQ(f->pos, 2);
        ASSERT_STREQ(f->new_name, "helper_v2");
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "helper_v2"));
        f = find_func(m, "libfoo.so.1", "foo_parse");
        ASSERT_EQ(f->pos, 0);
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "compute_v2"));

        ASSERT_EQ(m->n_refs, 2);
        const PatchRef *r = find_ref(m, "fixture_counter");
        ASSERT_STREQ(r->object, "");
        ASSERT_EQ(r->pos, 0);
        ASSERT_EQ_U64(r->slot_vaddr, symbol_value(file, "counter_p"));
        r = find_ref(m, "fixture_global");
        ASSERT_EQ(r->pos, 1);
        ASSERT_EQ_U64(r->slot_vaddr, symbol_value(file, "global_p"));

        ASSERT_EQ(m->n_build_ids, 2);
        ASSERT_STREQ(patchmeta_build_id_for(m, ""), "0123456789abcdef0123");
        ASSERT_STREQ(patchmeta_build_id_for(m, "libc.so.6"), "aa55");
        ASSERT_TRUE(patchmeta_build_id_for(m, "libz.so.1") == NULL);

        ASSERT_EQ(m->n_callbacks, 1);
        ASSERT_STREQ(m->callbacks[0].object, "");
        ASSERT_EQ_U64(m->callbacks[0].pre_patch, symbol_value(file, "pre_patch"));
        ASSERT_EQ_U64(m->callbacks[0].post_patch, 0);
        ASSERT_EQ_U64(m->callbacks[0].pre_unpatch, 0);
        ASSERT_EQ_U64(m->callbacks[0].post_unpatch, symbol_value(file, "post_unpatch"));

        ASSERT_TRUE(m->build_id_len > 0);
}

TEST(full) {
        check_full("patch-full.so");
}

TEST(full_packed_relocs) {
        check_full("patch-relr.so");
}

TEST(own_build_id) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;
        _cleanup_(symtab_freep) SymTab *st = NULL;
        uint8_t id[BUILD_ID_MAX];

        ASSERT_OK(read_patch("patch-full.so", &m, NULL, 0));
        ASSERT_OK(symtab_open(PATCH_DIR "/patch-full.so", &st));
        int n = elf_read_build_id(symtab_elf(st), id, sizeof(id));
        ASSERT_TRUE(n > 0);
        ASSERT_EQ(m->build_id_len, (size_t)n);
        ASSERT_TRUE(memcmp(m->build_id, id, (size_t)n) == 0);
}

TEST(name_from_file) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;

        ASSERT_OK(read_patch("patch-noinfo.so", &m, NULL, 0));
        ASSERT_STREQ(m->name, "patch-noinfo");
        ASSERT_STREQ(m->description, "");
        ASSERT_TRUE(!m->replace);
        ASSERT_EQ(m->n_funcs, 1);
        ASSERT_EQ(m->n_refs + m->n_build_ids + m->n_callbacks, 0);
        ASSERT_EQ_U64(m->funcs[0].new_vaddr, symbol_value("patch-noinfo.so", "helper_v3"));
}

TEST(no_metadata) {
        PatchMeta *m = NULL;
        char err[256] = "";

        ASSERT_ERR(read_patch("patch-nometa.so", &m, err, sizeof(err)), -ENOMSG);
        ASSERT_TRUE(m == NULL);
        ASSERT_TRUE(strstr(err, "ulp_funcs") != NULL);
}

TEST(not_elf) {
        PatchMeta *m = NULL;
        char err[256] = "";
        _cleanup_close_ int fd = open(SOURCE_DIR "/patch-full.c", O_RDONLY | O_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(patchmeta_read(fd, "patch-full.c", &m, err, sizeof(err)), -ENOEXEC);
        ASSERT_STREQ(err, "not an ELF file");
        /* An executable is ELF, but not a patch. */
        ASSERT_ERR(read_patch("../../tests/elf/elf-fixture-nopie", &m, err, sizeof(err)), -ENOEXEC);
        ASSERT_TRUE(m == NULL);
}

TEST(bad_build_id) {
        PatchMeta *m = NULL;
        char err[256] = "";

        ASSERT_ERR(read_patch("patch-badbid.so", &m, err, sizeof(err)), -EBADMSG);
        ASSERT_STREQ(err, "ulp_build_ids[0]: \"not-hex!\" is not a hex build-id");
        ASSERT_TRUE(m == NULL);
}

TEST_MAIN();
