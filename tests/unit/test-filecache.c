/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The per-thread file cache under symcache.c and patchcache.c (patcher/filecache.c):
 * a value is found again under the same file identity and tag only; entries in use are
 * never dropped, a full cache replaces the least recently used free one, an idle one is
 * dropped at the next add; a kept descriptor stays open until the entry goes; a thread
 * that ends frees its entries.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patcher/filecache.h"
#include "test.h"

#define SLOTS 3

static int freed;

static void count_free(void *v) {
        freed++;
        free(v);
}

FILECACHE_DEFINE(c, SLOTS, 60, count_free)

/* A made-up identity: inode ino, written at time t. */
static struct stat id(ino_t ino, time_t t) {
        return (struct stat) { .st_dev = 8, .st_ino = ino, .st_size = 4096,
                               .st_mtim = { .tv_sec = t }, .st_ctim = { .tv_sec = t } };
}

static void *value(void) {
        void *v = malloc(1);
        ASSERT_TRUE(v);
        return v;
}

TEST(same_identity_and_tag_only) {
        struct stat a = id(1, 100), changed = id(1, 101), other = id(2, 100);
        void *v = value();

        freed = 0;
        ASSERT_TRUE(filecache_get(c(), &a, NULL) == NULL);
        ASSERT_OK(filecache_add(c(), &a, NULL, -1, v));
        ASSERT_TRUE(filecache_get(c(), &a, NULL) == v);
        ASSERT_TRUE(filecache_get(c(), &a, "p.so") == NULL);      /* the tag is part of the key */
        ASSERT_TRUE(filecache_get(c(), &changed, NULL) == NULL);  /* written since */
        ASSERT_TRUE(filecache_get(c(), &other, NULL) == NULL);
        changed.st_mtim = a.st_mtim;
        changed.st_size = 1;
        ASSERT_TRUE(filecache_get(c(), &changed, NULL) == NULL);  /* another size */
        ASSERT_TRUE(filecache_put(c(), v));
        ASSERT_TRUE(filecache_put(c(), v));
        filecache_flush(c());
        ASSERT_EQ(freed, 1);
        ASSERT_TRUE(!filecache_put(c(), v));                      /* no longer cached */
}

TEST(tagged_entries_are_distinct) {
        struct stat a = id(1, 100);
        void *p = value(), *q = value();

        freed = 0;
        ASSERT_OK(filecache_add(c(), &a, "p.so", -1, p));
        ASSERT_OK(filecache_add(c(), &a, "q.so", -1, q));
        ASSERT_TRUE(filecache_get(c(), &a, "p.so") == p);
        ASSERT_TRUE(filecache_get(c(), &a, "q.so") == q);
        ASSERT_TRUE(filecache_get(c(), &a, NULL) == NULL);
        for (int i = 0; i < 2; i++) {
                ASSERT_TRUE(filecache_put(c(), p));
                ASSERT_TRUE(filecache_put(c(), q));
        }
        filecache_flush(c());
        ASSERT_EQ(freed, 2);
}

TEST(in_use_kept_full_cache_replaces_least_recently_used) {
        struct stat s[SLOTS + 1];
        void *v[SLOTS + 1];

        freed = 0;
        for (int i = 0; i <= SLOTS; i++) {
                s[i] = id((ino_t)(10 + i), 100);
                v[i] = value();
        }
        for (int i = 0; i < SLOTS; i++)
                ASSERT_OK(filecache_add(c(), &s[i], NULL, -1, v[i]));
        /* every entry in use: not cached, the value stays the caller's */
        ASSERT_ERR(filecache_add(c(), &s[SLOTS], NULL, -1, v[SLOTS]), -ENOSPC);
        ASSERT_TRUE(!filecache_put(c(), v[SLOTS]));
        ASSERT_EQ(freed, 0);
        /* released: 0 used longest ago, then 2, 1 still in use */
        ASSERT_TRUE(filecache_put(c(), v[0]));
        ASSERT_TRUE(filecache_put(c(), v[2]));
        c()->slots[0].used -= 2;
        ASSERT_OK(filecache_add(c(), &s[SLOTS], NULL, -1, v[SLOTS]));
        ASSERT_EQ(freed, 1);
        ASSERT_TRUE(filecache_get(c(), &s[0], NULL) == NULL);
        ASSERT_TRUE(filecache_get(c(), &s[1], NULL) == v[1]);
        ASSERT_TRUE(filecache_get(c(), &s[2], NULL) == v[2]);
        /* uses left: 1 twice (add, get), 2 once (get), the last once (add) */
        ASSERT_TRUE(filecache_put(c(), v[1]) && filecache_put(c(), v[1]));
        ASSERT_TRUE(filecache_put(c(), v[2]) && filecache_put(c(), v[SLOTS]));
        filecache_flush(c());
        ASSERT_EQ(freed, SLOTS + 1);
}

TEST(idle_entry_dropped_at_next_add) {
        struct stat a = id(1, 100), b = id(2, 100);
        void *v = value(), *w = value();

        freed = 0;
        ASSERT_OK(filecache_add(c(), &a, NULL, -1, v));
        ASSERT_TRUE(filecache_put(c(), v));
        for (size_t i = 0; i < SLOTS; i++)
                if (c()->slots[i].value == v)
                        c()->slots[i].used -= 61;
        ASSERT_OK(filecache_add(c(), &b, NULL, -1, w));
        ASSERT_EQ(freed, 1);
        ASSERT_TRUE(filecache_get(c(), &a, NULL) == NULL);
        ASSERT_TRUE(filecache_put(c(), w));
        filecache_flush(c());
        ASSERT_EQ(freed, 2);
}

/* The kept descriptor is a duplicate: the caller's may close; it goes with the entry. */
TEST(kept_descriptor_lives_with_the_entry) {
        char path[] = "/tmp/ulp-filecache-XXXXXX";
        int fd = mkstemp(path), kept = -1;
        struct stat s, k;
        void *v = value();

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(unlink(path));
        ASSERT_OK(fstat(fd, &s));
        ASSERT_OK(filecache_add(c(), &s, NULL, fd, v));
        ASSERT_OK(close(fd));
        for (size_t i = 0; i < SLOTS; i++)
                if (c()->slots[i].value == v)
                        kept = c()->slots[i].fd;
        ASSERT_TRUE(kept >= 0 && kept != fd);
        ASSERT_OK(fstat(kept, &k));
        ASSERT_TRUE(k.st_ino == s.st_ino && k.st_dev == s.st_dev);
        ASSERT_TRUE(fcntl(kept, F_GETFD) & FD_CLOEXEC);
        ASSERT_TRUE(filecache_put(c(), v));
        filecache_flush(c());
        ASSERT_TRUE(fcntl(kept, F_GETFD) < 0 && errno == EBADF);
}

static void *thread_adds(void *unused) {
        struct stat a = id(1, 100), b = id(2, 100);

        if (filecache_add(c(), &a, NULL, -1, value()) < 0 || filecache_add(c(), &b, "t", -1, value()) < 0)
                return (void *) 1;
        return NULL;
}

TEST(thread_exit_frees_its_entries) {
        pthread_t th;
        void *ret;

        freed = 0;
        ASSERT_EQ(pthread_create(&th, NULL, thread_adds, NULL), 0);
        ASSERT_EQ(pthread_join(th, &ret), 0);
        ASSERT_TRUE(ret == NULL);
        ASSERT_EQ(freed, 2);                    /* in use or not, they went with the thread */
        ASSERT_TRUE(filecache_get(c(), &(struct stat) { .st_dev = 8, .st_ino = 1, .st_size = 4096,
                                                        .st_mtim = { .tv_sec = 100 },
                                                        .st_ctim = { .tv_sec = 100 } }, NULL) == NULL);
}

TEST_MAIN()
