/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The loader (patcher/loader.c) on a real patch file, loaded into this process through
 * the fake target: mapped from a memfd near the test binary, linked against the objects
 * loaded here, then called.
 */
#include <fcntl.h>
#include <stdio.h>

#include "elf/patchmeta.h"
#include "fake-target.h"
#include "patcher/loader.h"
#include "patcher/nearmem.h"
#include "patcher/symcache.h"
#include "test.h"

/* What the patch's ULP_REF names; unit_value is what it would replace. */
long unit_counter = 4;
long unit_value(void);
long unit_value(void) {
        return unit_counter;
}

typedef struct Loaded {
        Target *t;
        ModuleList mods;
        SymTab **symtabs;
        SymResolver res;
        PatchMeta *meta;
        int fd;
} Loaded;

static void open_patch(Loaded *l, const char *file) {
        char err[256] = "", path[4096];

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        *l = (Loaded) { .fd = open(path, O_RDONLY | O_CLOEXEC) };
        ASSERT_TRUE(l->fd >= 0);
        if (patchmeta_read(l->fd, file, &l->meta, err, sizeof(err)) < 0)
                TEST__FAIL("%s: %s", file, err);
        l->t = fake_target_new();
        ASSERT_TRUE(l->t);
        fake_thread_add(l->t, 0, (uint64_t)(uintptr_t)&unit_value);
        ASSERT_OK(modules_read(getpid(), &l->mods));
        l->symtabs = calloc(l->mods.n, sizeof(*l->symtabs));
        ASSERT_TRUE(l->symtabs);
        l->res = (SymResolver) { .mods = &l->mods, .symtabs = l->symtabs };
}

static void close_patch(Loaded *l) {
        for (size_t i = 0; i < l->mods.n; i++)
                symcache_put(l->symtabs[i]);   /* resolver_symtab() takes them from the cache */
        free(l->symtabs);
        modulelist_done(&l->mods);
        patchmeta_free(l->meta);
        fake_target_free(l->t);
        close(l->fd);
}

/* The mapping named ulp-patch:NAME in this process's maps, as status finds it. */
static bool named_mapping(const char *name, uint64_t start) {
        char want[128], line[512];
        FILE *f = fopen("/proc/self/maps", "re");
        bool found = false;

        snprintf(want, sizeof(want), "/memfd:%s%s ", PATCH_MAPPING_PREFIX, name);
        while (f && fgets(line, sizeof(line), f))
                if (strtoull(line, NULL, 16) >= start && strstr(line, want))
                        found = true;
        if (f)
                fclose(f);
        return found;
}

/* The loader's steps of an apply on l: the dry run (which links nothing and must find
 * every symbol), every thread stopped, the patch mapped near the main executable
 * (*ret_main) and linked into lp. Returns the stopped thread they ran on. */
static Thread *load_near_main(Loaded *l, LoadedPatch *lp, const Module **ret_main) {
        const Module *main_mod = modules_find_object(&l->mods, "");
        char err[256] = "";
        Thread *th;

        ASSERT_TRUE(main_mod);
        if (loader_link(l->t, l->fd, l->meta, &l->res, NULL, err, sizeof(err)) < 0)
                TEST__FAIL("dry run: %s", err);
        ASSERT_OK(target_stop_all(l->t));
        th = target_any_stopped(l->t);
        if (loader_map(l->t, th, NULL, l->fd, l->meta->name, main_mod->start, main_mod->end, lp, err, sizeof(err)) < 0)
                TEST__FAIL("map: %s", err);
        if (loader_link(l->t, l->fd, l->meta, &l->res, lp, err, sizeof(err)) < 0)
                TEST__FAIL("link: %s", err);
        *ret_main = main_mod;
        return th;
}

TEST(map_link_and_call) {
        Loaded l;
        LoadedPatch lp = {};
        const Module *main_mod;
        long (*fn)(void);
        Thread *th;

        open_patch(&l, "patch-self.so");
        ASSERT_STREQ(l.meta->name, "unit-self");
        FakeStats before = fake_stats;
        th = load_near_main(&l, &lp, &main_mod);
        /* Its system calls in one batch, closed before it returns. */
        ASSERT_EQ(fake_stats.batches, before.batches + 1);
        ASSERT_TRUE(fake_stats.batch_calls >= before.batch_calls + 4);
        ASSERT_EQ(fake_stats.batch_calls - before.batch_calls, fake_stats.syscalls - before.syscalls);
        ASSERT_TRUE(th->batch == NULL);
        /* Its relocations' writes gathered, and written out before it returned. */
        ASSERT_EQ(fake_stats.gathers, before.gathers + 1);
        ASSERT_TRUE(l.t->gather == NULL);
        ASSERT_TRUE(nearmem_reaches(lp.start, lp.size, main_mod->start, main_mod->end));
        ASSERT_TRUE(named_mapping("unit-self", lp.start));
        ASSERT_EQ(l.meta->n_funcs, 1);
        fn = (long (*)(void))(uintptr_t)(l.meta->funcs[0].new_vaddr + lp.bias);
        ASSERT_EQ(fn(), 4 * 10 + 42);
        unit_counter = 7;
        ASSERT_EQ(fn(), 7 * 10 + 42);
        ASSERT_OK(loader_unmap(l.t, th, lp.start, lp.size));
        ASSERT_TRUE(!named_mapping("unit-self", lp.start));
        ASSERT_OK(target_resume_all(l.t));
        close_patch(&l);
}

TEST(undefined_symbol_refused) {
        Loaded l;
        char err[256] = "";

        open_patch(&l, "patch-unresolved.so");
        ASSERT_ERR(loader_link(l.t, l.fd, l.meta, &l.res, NULL, err, sizeof(err)), -ENOENT);
        ASSERT_STREQ(err, "undefined symbol unit_nowhere not found in the target");
        close_patch(&l);
}

/* wmemcmp is an IFUNC of libc: it resolves to the implementation this process's own
 * dynamic linker chose (read from a GOT slot), and the patch calls it. */
TEST(target_ifunc_resolved_as_the_target_chose) {
        Loaded l;
        LoadedPatch lp = {};
        const Module *main_mod;
        long (*fn)(void);
        Thread *th;

        open_patch(&l, "patch-ifunc.so");
        th = load_near_main(&l, &lp, &main_mod);
        fn = (long (*)(void))(uintptr_t)(l.meta->funcs[0].new_vaddr + lp.bias);
        ASSERT_TRUE(fn() > 0);   /* L"four" after L"five" */
        ASSERT_OK(loader_unmap(l.t, th, lp.start, lp.size));
        ASSERT_OK(target_resume_all(l.t));
        close_patch(&l);
}

TEST(not_an_elf_file) {
        Loaded l;
        char err[256] = "";
        int fd;

        open_patch(&l, "patch-self.so");
        fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(loader_link(l.t, fd, l.meta, &l.res, NULL, err, sizeof(err)), -ENOEXEC);
        ASSERT_STREQ(err, "the patch is not an ELF file");
        close(fd);
        close_patch(&l);
}

TEST_MAIN()
