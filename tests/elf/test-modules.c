/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* modules_read() on live processes: the fixture run as a child (PIE, non-PIE, and with
 * its file replaced on disk), and ourselves with a ulp-patch memfd mapped. */

#include <elf.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "elf/module.h"
#include "elf/symtab.h"
#include "test.h"

typedef struct Child {
        pid_t pid;
        int in_fd;               /* the child's stdin: it exits when we close this */
        uint64_t compute, helper_main, helper_other; /* runtime addresses it printed */
} Child;

/* Starts path with "wait" and reads the addresses it prints. */
static int child_start(const char *path, Child *c) {
        int in[2], out[2];

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        c->pid = fork();
        if (c->pid < 0)
                return -errno;
        if (c->pid == 0) {
                dup2(in[0], STDIN_FILENO);
                dup2(out[1], STDOUT_FILENO);
                execl(path, path, "wait", (char *)NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        c->in_fd = in[1];

        FILE *f = fdopen(out[0], "r");
        unsigned long long a = 0, b = 0, d = 0;
        int n = f ? fscanf(f, "%llx %llx %llx", &a, &b, &d) : -1;
        if (f)
                fclose(f);
        c->compute = a, c->helper_main = b, c->helper_other = d;
        return n == 3 ? 0 : -EIO;
}

static void child_stop(Child *c) {
        if (c->pid <= 0)
                return;
        close(c->in_fd);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
}

static ssize_t module_index(const ModuleList *l, const Module *m) {
        return m ? m - l->v : -1;
}

TEST(pie_main_and_bias) {
        _cleanup_(child_stop) Child c = {};
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_(symtab_freep) SymTab *st = NULL;
        char real[PATH_MAX], prefix[64], hex[2 * BUILD_ID_MAX + 1];
        Symbol s;

        ASSERT_OK(child_start(FIXTURE_PIE, &c));
        ASSERT_OK(modules_read(c.pid, &l));
        ASSERT_TRUE(l.n >= 3);
        const Module *m = &l.v[0];
        ASSERT_TRUE(m->is_main);
        ASSERT_TRUE(modules_find_object(&l, "") == m);
        ASSERT_TRUE(realpath(FIXTURE_PIE, real) != NULL);
        ASSERT_STREQ(m->path, real);
        ASSERT_EQ(m->e_type, ET_DYN);
        ASSERT_TRUE(!m->deleted && !m->is_patch && m->soname == NULL);
        snprintf(prefix, sizeof(prefix), "/proc/%d/map_files/", (int)c.pid);
        ASSERT_TRUE(strncmp(m->open_path, prefix, strlen(prefix)) == 0);
        build_id_to_hex(m->build_id, m->build_id_len, hex);
        ASSERT_STREQ(hex, FIXTURE_BUILD_ID);

        ASSERT_OK(symtab_open(m->open_path, &st));
        ASSERT_OK(symtab_lookup(st, "fixture_compute", 0, &s));
        ASSERT_TRUE(m->bias != 0);
        ASSERT_EQ_U64(m->bias, c.compute - s.value);
        ASSERT_TRUE(modules_find_addr(&l, c.compute) == m);
        /* pos counts the locals in link order: fixture-main.c, then fixture-other.c. */
        ASSERT_OK(symtab_lookup(st, "helper", 1, &s));
        ASSERT_EQ_U64(s.value + m->bias, c.helper_main);
        ASSERT_OK(symtab_lookup(st, "helper", 2, &s));
        ASSERT_EQ_U64(s.value + m->bias, c.helper_other);
        /* The span covers .bss (the static counter) too. */
        ASSERT_OK(symtab_lookup(st, "fixture_counter", 0, &s));
        ASSERT_TRUE(modules_find_addr(&l, s.value + m->bias) == m);
        for (size_t i = 1; i < l.n; i++)
                ASSERT_TRUE(!l.v[i].is_main);
}

TEST(load_order) {
        _cleanup_(child_stop) Child c = {};
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol s;

        ASSERT_OK(child_start(FIXTURE_PIE, &c));
        ASSERT_OK(modules_read(c.pid, &l));
        const Module *libc = modules_find_object(&l, "libc.so.6");
        const Module *libm = modules_find_object(&l, "libm.so.6");
        const Module *ld = modules_find_object(&l, "ld-linux-x86-64.so.2");
        ASSERT_TRUE(libc && libm && ld);
        ASSERT_STREQ(libc->soname, "libc.so.6");
        ASSERT_EQ(libc->e_type, ET_DYN);
        ASSERT_TRUE(libc->build_id_len > 0);
        /* The link_map order is main, libm, libc, ld.so; libm is mapped first, so in
         * (top-down) address order it would come after libc. */
        ASSERT_TRUE(l.v[0].is_main);
        ASSERT_TRUE(module_index(&l, libm) < module_index(&l, libc));
        ASSERT_TRUE(module_index(&l, libc) < module_index(&l, ld));
        ASSERT_TRUE(modules_find_object(&l, "libnothere.so.9") == NULL);

        ASSERT_OK(symtab_open(libc->open_path, &st));
        ASSERT_OK(symtab_lookup_exported(st, "malloc", &s));
        ASSERT_TRUE(modules_find_addr(&l, s.value + libc->bias) == libc);
}

TEST(non_pie) {
        _cleanup_(child_stop) Child c = {};
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol s;

        ASSERT_OK(child_start(FIXTURE_NOPIE, &c));
        ASSERT_OK(modules_read(c.pid, &l));
        const Module *m = modules_find_object(&l, "");
        ASSERT_TRUE(m == &l.v[0]);
        ASSERT_EQ(m->e_type, ET_EXEC);
        ASSERT_EQ_U64(m->bias, 0);
        ASSERT_OK(symtab_open(m->open_path, &st));
        ASSERT_OK(symtab_lookup(st, "fixture_compute", 0, &s));
        ASSERT_EQ_U64(s.value, c.compute);
        ASSERT_TRUE(m->start <= c.compute && c.compute < m->end);
}

static int copy_file(const char *from, const char *to) {
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        struct stat st;

        if (in < 0 || out < 0 || fstat(in, &st) < 0)
                return -errno;
        for (off_t done = 0; done < st.st_size; ) {
                ssize_t n = sendfile(out, in, NULL, (size_t)(st.st_size - done));
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                done += n;
        }
        return 0;
}

TEST(replaced_on_disk) {
        _cleanup_(child_stop) Child c = {};
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_(symtab_freep) SymTab *mapped = NULL;
        _cleanup_(symtab_freep) SymTab *on_disk = NULL;
        char dir[] = "/tmp/ulp-elf-test.XXXXXX", path[64];
        Symbol s, t;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/fixture", dir);
        ASSERT_OK(copy_file(FIXTURE_PIE, path));
        ASSERT_OK(child_start(path, &c));
        /* A new build is installed over it: a new inode at the same path. */
        ASSERT_OK(unlink(path));
        ASSERT_OK(copy_file(FIXTURE_NOPIE, path));

        int r = modules_read(c.pid, &l);
        int r2 = symtab_open(path, &on_disk);
        unlink(path);
        rmdir(dir);
        ASSERT_OK(r);
        ASSERT_OK(r2);
        const Module *m = &l.v[0];
        ASSERT_TRUE(m->is_main && m->deleted);
        ASSERT_STREQ(m->path, path);
        ASSERT_EQ(m->e_type, ET_DYN);
        ASSERT_OK(symtab_open(m->open_path, &mapped));
        ASSERT_OK(symtab_lookup(mapped, "fixture_compute", 0, &s));
        ASSERT_EQ_U64(s.value + m->bias, c.compute);
        /* The path names the other build now; reading it would give wrong addresses. */
        ASSERT_OK(symtab_lookup(on_disk, "fixture_compute", 0, &t));
        ASSERT_TRUE(t.value != s.value);
}

/*
 * As a user's `ulpctl --direct` reads modules: without map_files, which needs
 * CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN), so through the mapping's path. check runs
 * in a child with both dropped from its effective set; 0 when it returned 0, 1 when
 * not, -EINTR when the child hung (killed by its alarm), -EPERM when the capabilities
 * could not be dropped.
 */
static int without_map_files(int (*check)(const Child *c, const char *path), const Child *c, const char *path) {
        int status;
        pid_t p = fork();

        if (p < 0)
                return -errno;
        if (p == 0) {
                struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
                struct __user_cap_data_struct d[2];
                alarm(20);
                if (syscall(SYS_capget, &h, d) < 0)
                        _exit(3);
                d[0].effective &= ~(1u << CAP_SYS_ADMIN);
                d[1].effective &= ~(1u << (CAP_CHECKPOINT_RESTORE - 32));
                if (syscall(SYS_capset, &h, d) < 0)
                        _exit(3);
                _exit(check(c, path) == 0 ? 0 : 1);
        }
        if (waitpid(p, &status, 0) < 0)
                return -errno;
        if (WIFSIGNALED(status))
                return -EINTR;
        return WEXITSTATUS(status) == 3 ? -EPERM : WEXITSTATUS(status);
}

/* The fixture's module read through its path: the mapped file, its symbols right. */
static int read_by_path(const Child *c, const char *path) {
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol s;

        /* opened by its path: map_files was refused indeed */
        if (modules_read(c->pid, &l) < 0 || l.n == 0 || !l.v[0].is_main ||
            strcmp(l.v[0].open_path, path) != 0 || symtab_open(l.v[0].open_path, &st) < 0 ||
            symtab_lookup(st, "fixture_compute", 0, &s) < 0)
                return -1;
        return s.value + l.v[0].bias == c->compute ? 0 : -1;
}

/* The fixture's file was replaced: no module of that path (its file is out of reach). */
static int not_read_by_path(const Child *c, const char *path) {
        _cleanup_(modulelist_done) ModuleList l = {};

        if (modules_read(c->pid, &l) < 0)
                return -1;
        for (size_t i = 0; i < l.n; i++)
                if (l.v[i].path && strcmp(l.v[i].path, path) == 0)
                        return -1;
        return 0;
}

TEST(by_path_without_map_files) {
        _cleanup_(child_stop) Child c = {};
        char dir[] = "/tmp/ulp-elf-test.XXXXXX", path[64];
        int r, r2, r3;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/fixture", dir);
        ASSERT_OK(copy_file(FIXTURE_PIE, path));
        ASSERT_OK(child_start(path, &c));
        r = without_map_files(read_by_path, &c, path);
        /* A new build installed over it: its symbols are at other addresses. */
        ASSERT_OK(unlink(path));
        ASSERT_OK(copy_file(FIXTURE_NOPIE, path));
        r2 = without_map_files(not_read_by_path, &c, path);
        /* A FIFO put in its place: an open() of it for reading would wait for a writer. */
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0600));
        r3 = without_map_files(not_read_by_path, &c, path);
        unlink(path);
        rmdir(dir);
        ASSERT_EQ(r, 0);
        ASSERT_EQ(r2, 0);
        ASSERT_EQ(r3, 0);
}

TEST(patch_memfd) {
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_close_ int fd = memfd_create("ulp-patch:selftest", MFD_CLOEXEC);
        char proc[64];
        struct stat st;

        ASSERT_TRUE(fd >= 0);
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ASSERT_OK(copy_file(PATCH_DIR "/patch-full.so", proc));
        ASSERT_OK(fstat(fd, &st));
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);

        int r = modules_read(getpid(), &l);
        munmap(p, (size_t)st.st_size);
        ASSERT_OK(r);
        const Module *m = &l.v[l.n - 1];
        ASSERT_TRUE(m->is_patch && !m->is_main);
        ASSERT_STREQ(m->path, "/memfd:ulp-patch:selftest");
        ASSERT_EQ_U64(m->bias, (uint64_t)(uintptr_t)p);
        ASSERT_TRUE(m->build_id_len > 0);
        ASSERT_TRUE(l.v[0].is_main);
        ASSERT_TRUE(modules_find_addr(&l, (uint64_t)(uintptr_t)p) == m);
}

/* Our modules read into l, and the one mapped at at. */
static const Module *read_mapped(ModuleList *l, void *at) {
        if (modules_read(getpid(), l) < 0)
                return NULL;
        return modules_find_addr(l, (uint64_t)(uintptr_t)at);
}

/* What a module's file says is cached by the file's identity: a second read of the same
 * files reads none of them (every module of ours is known, and a data file mapped
 * executable is known to be none), gives the same module, and a file written in place
 * (same inode, new size and times) is read again. */
TEST(cache_by_identity) {
        _cleanup_(modulelist_done) ModuleList a = {}, b = {}, c = {}, d = {};
        char dir[] = "/tmp/ulp-elf-test.XXXXXX", path[64], data[64], junk[8192];
        unsigned long h0, m0, h1, m1, h2, m2;
        struct stat st;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/libcached.so", dir);
        ASSERT_OK(copy_file(PATCH_DIR "/patch-full.so", path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        close(fd);
        ASSERT_TRUE(p != MAP_FAILED);
        /* a data file mapped executable: no module, remembered as such */
        snprintf(data, sizeof(data), "%s/data.bin", dir);
        fd = open(data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        memset(junk, 'x', sizeof(junk));
        ASSERT_TRUE(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
        void *q = mmap(NULL, sizeof(junk), PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        close(fd);
        ASSERT_TRUE(q != MAP_FAILED);

        modules_cache_flush();
        modules_cache_stats(&h0, &m0);
        const Module *ma = read_mapped(&a, p);
        modules_cache_stats(&h1, &m1);
        const Module *mb = read_mapped(&b, p);
        modules_cache_stats(&h2, &m2);
        /* written in place: the same inode, another object */
        int r = copy_file(PATCH_DIR "/patch-noinfo.so", path);
        const Module *mc = read_mapped(&c, p);
        modules_cache_flush();
        const Module *md = read_mapped(&d, p);
        bool data_module = modules_find_addr(&a, (uint64_t)(uintptr_t)q) ||
                           modules_find_addr(&b, (uint64_t)(uintptr_t)q);
        munmap(p, (size_t)st.st_size);
        munmap(q, sizeof(junk));
        unlink(data);
        unlink(path);
        rmdir(dir);
        ASSERT_OK(r);
        ASSERT_TRUE(ma && mb && mc && md);
        ASSERT_TRUE(!data_module);

        ASSERT_TRUE(m1 > m0);
        ASSERT_EQ(m2, m1);
        ASSERT_TRUE(h2 >= h1 + a.n);
        ASSERT_STREQ(mb->path, ma->path);
        ASSERT_STREQ(mb->open_path, ma->open_path);
        ASSERT_EQ_U64(mb->bias, (uint64_t)(uintptr_t)p);
        ASSERT_EQ_U64(mb->bias, ma->bias);
        ASSERT_EQ_U64(mb->start, ma->start);
        ASSERT_EQ_U64(mb->end, ma->end);
        ASSERT_EQ(mb->e_type, ma->e_type);
        ASSERT_TRUE(ma->build_id_len > 0 && mb->build_id_len == ma->build_id_len);
        ASSERT_TRUE(memcmp(mb->build_id, ma->build_id, ma->build_id_len) == 0);
        ASSERT_TRUE((mb->soname == NULL) == (ma->soname == NULL));
        ASSERT_TRUE(!ma->soname || strcmp(mb->soname, ma->soname) == 0);
        for (size_t i = 0; i < a.n; i++)
                ASSERT_TRUE(a.v[i].start == b.v[i].start && a.v[i].end == b.v[i].end &&
                            a.v[i].is_main == b.v[i].is_main);
        ASSERT_TRUE(a.vdso_end > a.vdso_start && b.vdso_start == a.vdso_start);

        /* the new content, as a read without the cache finds it */
        ASSERT_TRUE(mc->build_id_len > 0 && mc->build_id_len == md->build_id_len);
        ASSERT_TRUE(memcmp(mc->build_id, md->build_id, md->build_id_len) == 0);
        ASSERT_TRUE(memcmp(mc->build_id, ma->build_id, MIN(ma->build_id_len, mc->build_id_len)) != 0);
        ASSERT_EQ_U64(mc->start, md->start);
        ASSERT_EQ_U64(mc->end, md->end);
        ASSERT_EQ_U64(mc->bias, md->bias);
}

static void assert_same_list(const ModuleList *x, const ModuleList *y) {
        ASSERT_EQ(x->n, y->n);
        for (size_t i = 0; i < x->n; i++) {
                const Module *a = &x->v[i], *b = &y->v[i];
                ASSERT_STREQ(a->path, b->path);
                ASSERT_STREQ(a->open_path, b->open_path);
                ASSERT_TRUE((a->soname == NULL) == (b->soname == NULL));
                ASSERT_TRUE(!a->soname || strcmp(a->soname, b->soname) == 0);
                ASSERT_EQ_U64(a->start, b->start);
                ASSERT_EQ_U64(a->end, b->end);
                ASSERT_EQ_U64(a->bias, b->bias);
                ASSERT_EQ(a->is_main, b->is_main);
                ASSERT_EQ(a->is_patch, b->is_patch);
                ASSERT_EQ(a->e_type, b->e_type);
                ASSERT_EQ(a->build_id_len, b->build_id_len);
                ASSERT_TRUE(memcmp(a->build_id, b->build_id, a->build_id_len) == 0);
        }
        ASSERT_EQ_U64(x->vdso_start, y->vdso_start);
}

/* Maps path (a copy of a fixture ELF, or a ulp-patch memfd when path is NULL) executable. */
static void *map_elf(const char *path, size_t *ret_size) {
        char proc[64];
        struct stat st;
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : memfd_create("ulp-patch:reread", MFD_CLOEXEC);

        if (fd < 0)
                return NULL;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if ((!path && copy_file(PATCH_DIR "/patch-full.so", proc) < 0) || fstat(fd, &st) < 0) {
                close(fd);
                return NULL;
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        close(fd);
        *ret_size = (size_t)st.st_size;
        return p == MAP_FAILED ? NULL : p;
}

/* Lookups of the module cache since the last call: one per module read from its file. */
static unsigned long cache_lookups(void) {
        static unsigned long last;
        unsigned long h, m, d;

        modules_cache_stats(&h, &m);
        d = h + m - last;
        last = h + m;
        return d;
}

/*
 * A refresh after a patch's load (modules_reread_maps()): what did not change is taken
 * from the list read before, in the same order, and only the new patch is read; the result
 * is the list a full read gives. A module other than a patch added (or removed) meanwhile
 * makes it a full read.
 */
TEST(reread_after_patch) {
        _cleanup_(modulelist_done) ModuleList a = {}, b = {}, full_b = {}, c = {}, full_c = {}, d = {}, full_d = {};
        _cleanup_(maplist_done) MapList mb = {}, mc = {}, md = {};
        char dir[] = "/tmp/ulp-elf-test.XXXXXX", path[64];
        size_t patch_size, lib_size;
        unsigned long n_b, n_c, n_d;

        ASSERT_OK(modules_read(getpid(), &a));
        void *patch = map_elf(NULL, &patch_size);
        ASSERT_TRUE(patch != NULL);
        (void) cache_lookups();
        int r = maps_read(getpid(), &mb);
        if (r >= 0)
                r = modules_reread_maps(getpid(), &mb, &a, &b);
        n_b = cache_lookups();
        if (r >= 0)
                r = modules_read(getpid(), &full_b);
        /* the patch gone again */
        munmap(patch, patch_size);
        if (r >= 0)
                r = maps_read(getpid(), &mc);
        (void) cache_lookups();
        if (r >= 0)
                r = modules_reread_maps(getpid(), &mc, &b, &c);
        n_c = cache_lookups();
        if (r >= 0)
                r = modules_read(getpid(), &full_c);
        /* a library (not a patch) mapped meanwhile: everything is read */
        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/libextra.so", dir);
        void *lib = NULL;
        if (r >= 0)
                r = copy_file(PATCH_DIR "/patch-full.so", path);
        if (r >= 0 && !(lib = map_elf(path, &lib_size)))
                r = -EIO;
        if (r >= 0)
                r = maps_read(getpid(), &md);
        (void) cache_lookups();
        if (r >= 0)
                r = modules_reread_maps(getpid(), &md, &c, &d);
        n_d = cache_lookups();
        if (r >= 0)
                r = modules_read(getpid(), &full_d);
        if (lib)
                munmap(lib, lib_size);
        unlink(path);
        rmdir(dir);
        ASSERT_OK(r);

        assert_same_list(&b, &full_b);
        ASSERT_EQ(b.n, a.n + 1);
        ASSERT_TRUE(b.v[b.n - 1].is_patch);
        ASSERT_EQ_U64(b.v[b.n - 1].bias, (uint64_t)(uintptr_t)patch);
        ASSERT_EQ(n_b, 1);              /* the patch alone was read */
        assert_same_list(&c, &full_c);
        assert_same_list(&c, &a);
        ASSERT_EQ(n_c, 0);
        assert_same_list(&d, &full_d);
        ASSERT_EQ(d.n, a.n + 1);
        ASSERT_TRUE(modules_find_addr(&d, (uint64_t)(uintptr_t)lib) != NULL);
        ASSERT_TRUE(n_d >= d.n);        /* a full read */
}

TEST(no_such_process) {
        ModuleList l = {};

        ASSERT_ERR(modules_read(0x7ffffff0, &l), -ESRCH);
}

TEST_MAIN();
