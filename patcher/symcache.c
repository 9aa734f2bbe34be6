/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Symbol tables kept between operations: see symcache.h. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/symcache.h"

typedef struct CacheEntry {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        SymTab *st;
        unsigned refs;
        time_t used;
} CacheEntry;

static _Thread_local CacheEntry cache[SYMCACHE_MAX];
static void entry_drop(CacheEntry *e) {
        symtab_free(e->st);
        *e = (CacheEntry) {};
}

static _Thread_local bool registered;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* A thread that ends takes its entries along: their descriptors and memory are freed. */
static void on_thread_exit(void *unused) {
        for (size_t i = 0; i < SYMCACHE_MAX; i++)
                if (cache[i].st)
                        entry_drop(&cache[i]);
}

static void exit_key_create(void) {
        (void) pthread_key_create(&exit_key, on_thread_exit);
}

static void register_thread(void) {
        if (registered)
                return;
        registered = true;
        (void) pthread_once(&exit_once, exit_key_create);
        (void) pthread_setspecific(exit_key, cache);
}

static time_t now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static bool same_time(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool same_file(const CacheEntry *e, const struct stat *s) {
        return e->st && e->dev == s->st_dev && e->ino == s->st_ino && e->size == s->st_size &&
               same_time(&e->mtim, &s->st_mtim) && same_time(&e->ctim, &s->st_ctim);
}

/* A free slot: an empty one, else the least recently used one not in use; NULL when
 * every entry is in use (the table is then not cached). Drops idle entries on the way. */
static CacheEntry *slot_for_new(time_t now) {
        CacheEntry *best = NULL;

        for (size_t i = 0; i < SYMCACHE_MAX; i++) {
                CacheEntry *e = &cache[i];
                if (e->st && e->refs == 0 && now - e->used > SYMCACHE_IDLE_SEC)
                        entry_drop(e);
                if (!e->st) {
                        if (!best || best->st)
                                best = e;
                } else if (e->refs == 0 && (!best || (best->st && e->used < best->used)))
                        best = e;
        }
        if (best && best->st)
                entry_drop(best);
        return best;
}

int symcache_open(const char *open_path, const char *path, SymTab **ret) {
        _cleanup_close_ int fd = open(open_path, O_RDONLY | O_CLOEXEC);
        time_t now = now_sec();
        CacheEntry *e;
        struct stat s;
        int r;

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &s) < 0)
                return negative_errno();
        for (size_t i = 0; i < SYMCACHE_MAX; i++)
                if (same_file(&cache[i], &s)) {
                        cache[i].refs++;
                        cache[i].used = now;
                        *ret = cache[i].st;
                        return 0;
                }
        r = symtab_open_module_fd(fd, path, ret);
        if (r < 0)
                return r;
        register_thread();
        e = slot_for_new(now);
        if (e)
                *e = (CacheEntry) { .dev = s.st_dev, .ino = s.st_ino, .size = s.st_size, .mtim = s.st_mtim,
                                    .ctim = s.st_ctim, .st = *ret, .refs = 1, .used = now };
        return 0;
}

void symcache_put(SymTab *st) {
        if (!st)
                return;
        for (size_t i = 0; i < SYMCACHE_MAX; i++)
                if (cache[i].st == st) {
                        if (cache[i].refs > 0)
                                cache[i].refs--;
                        return;
                }
        symtab_free(st);        /* not cached: the table was full of tables in use */
}

void symcache_flush(void) {
        for (size_t i = 0; i < SYMCACHE_MAX; i++)
                if (cache[i].st && cache[i].refs == 0)
                        entry_drop(&cache[i]);
}
