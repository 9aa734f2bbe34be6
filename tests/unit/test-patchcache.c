/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Parsed patches kept between operations (patcher/patchcache.c): the same sealed copy
 * read again is the same parse; a patch file changed since is a new sealed copy and is
 * parsed again, never served from the old one; a file that is not sealed is never kept.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elf/patchfile.h"
#include "patcher/patchcache.h"
#include "test.h"

static char dir[] = "/tmp/ulp-patchcache-XXXXXX";
static char file[256];

/* Puts the bytes of PATCH_DIR/name into file, in place (same inode). */
static void put_file(const char *name) {
        char src[4096], buf[65536];
        int in, out;
        ssize_t n;

        snprintf(src, sizeof(src), "%s/%s", PATCH_DIR, name);
        in = open(src, O_RDONLY | O_CLOEXEC);
        out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(in >= 0 && out >= 0);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                ASSERT_EQ(write(out, buf, (size_t)n), n);
        close(in);
        close(out);
}

static int sealed_copy(void) {
        int fd = open(file, O_RDONLY | O_CLOEXEC), copy = -1;
        char err[256] = "";

        ASSERT_TRUE(fd >= 0);
        if (patch_file_copy(fd, &copy, err, sizeof(err)) < 0)
                TEST__FAIL("sealed copy: %s", err);
        close(fd);
        return copy;
}

static PatchMeta *read_cached(int fd, const char *hint) {
        PatchMeta *m = NULL;
        char err[256] = "";

        if (patchcache_read(fd, hint, &m, err, sizeof(err)) < 0)
                TEST__FAIL("read: %s", err);
        return m;
}

static const char *name_of(const char *patch) {
        static char name[128];
        char path[4096], err[256] = "";
        PatchMeta *m = NULL;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, patch);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        if (patchmeta_read(fd, patch, &m, err, sizeof(err)) < 0)
                TEST__FAIL("%s: %s", patch, err);
        snprintf(name, sizeof(name), "%s", m->name);
        patchmeta_free(m);
        close(fd);
        return name;
}

TEST(same_copy_parsed_once_changed_file_parsed_again) {
        char self_name[128];
        int s1, s1b, s2, s3;
        PatchMeta *a, *b, *c, *d, *e;

        snprintf(self_name, sizeof(self_name), "%s", name_of("patch-self.so"));
        ASSERT_TRUE(strcmp(self_name, name_of("patch-ifunc.so")) != 0);
        ASSERT_TRUE(mkdtemp(dir));
        snprintf(file, sizeof(file), "%s/p.so", dir);

        put_file("patch-self.so");
        s1 = sealed_copy();
        a = read_cached(s1, "p.so");
        ASSERT_STREQ(a->name, self_name);
        /* The same copy (another descriptor of it), the same hint: the same parse. */
        s1b = fcntl(s1, F_DUPFD_CLOEXEC, 3);
        b = read_cached(s1b, "p.so");
        ASSERT_TRUE(b == a);
        /* Another hint: parsed again (a patch without a name takes its file's). */
        c = read_cached(s1, "q.so");
        ASSERT_TRUE(c != a);

        /* The file changes: its new sealed copy is parsed, the old parse not served. */
        put_file("patch-ifunc.so");
        s2 = sealed_copy();
        d = read_cached(s2, "p.so");
        ASSERT_TRUE(d != a);
        ASSERT_STREQ(d->name, name_of("patch-ifunc.so"));
        /* And back: still what the file holds now. */
        put_file("patch-self.so");
        s3 = sealed_copy();
        e = read_cached(s3, "p.so");
        ASSERT_STREQ(e->name, self_name);
        ASSERT_STREQ(a->name, self_name);    /* the first is untouched while in use */

        patchcache_put(a);
        patchcache_put(b);
        patchcache_put(c);
        patchcache_put(d);
        patchcache_put(e);
        patchcache_flush();
        close(s1);
        close(s1b);
        close(s2);
        close(s3);
}

/* A plain file can change under the same descriptor: never kept. */
TEST(unsealed_file_never_kept) {
        PatchMeta *a, *b;
        int fd;

        if (!file[0]) {
                ASSERT_TRUE(mkdtemp(dir));
                snprintf(file, sizeof(file), "%s/p.so", dir);
        }
        put_file("patch-self.so");
        fd = open(file, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        a = read_cached(fd, "p.so");
        ASSERT_STREQ(a->name, name_of("patch-self.so"));
        put_file("patch-ifunc.so");
        b = read_cached(fd, "p.so");
        ASSERT_TRUE(b != a);
        ASSERT_STREQ(b->name, name_of("patch-ifunc.so"));
        patchcache_put(a);
        patchcache_put(b);
        close(fd);
        unlink(file);
        rmdir(dir);
}

/* A copy above PATCHCACHE_FILE_MAX is parsed each time, never pinned in memory. */
TEST(large_copy_never_kept) {
        char src[4096], buf[65536];
        PatchMeta *a, *b;
        int in, fd, copy = -1;
        ssize_t n;

        snprintf(src, sizeof(src), "%s/patch-self.so", PATCH_DIR);
        in = open(src, O_RDONLY | O_CLOEXEC);
        fd = memfd_create("large-patch", MFD_CLOEXEC);
        ASSERT_TRUE(in >= 0 && fd >= 0);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                ASSERT_EQ(write(fd, buf, (size_t)n), n);
        ASSERT_OK(ftruncate(fd, PATCHCACHE_FILE_MAX + 4096));   /* zeros past the ELF file */
        ASSERT_OK(patch_file_copy(fd, &copy, NULL, 0));
        a = read_cached(copy, "p.so");
        b = read_cached(copy, "p.so");
        ASSERT_TRUE(a != b);
        patchcache_put(a);
        patchcache_put(b);
        close(copy);
        close(fd);
        close(in);
}

TEST_MAIN()
