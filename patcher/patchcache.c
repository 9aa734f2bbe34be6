/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsed patches kept between operations: see patchcache.h. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/patchfile.h"
#include "patcher/patchcache.h"

typedef struct PatchEntry {
        int fd;                  /* the sealed copy, kept open: its inode stays its own */
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        char *hint;              /* the name hint, NULL for none */
        PatchMeta *meta;
        unsigned refs;
        time_t used;
} PatchEntry;

static _Thread_local PatchEntry cache[PATCHCACHE_MAX];
static _Thread_local bool registered;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void entry_drop(PatchEntry *e) {
        patchmeta_free(e->meta);
        free(e->hint);
        if (e->fd >= 0)
                close(e->fd);
        *e = (PatchEntry) { .fd = -1 };
}

/* A thread that ends takes its entries along. */
static void on_thread_exit(void *unused) {
        for (size_t i = 0; i < PATCHCACHE_MAX; i++)
                if (cache[i].meta)
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

static bool same_hint(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_entry(const PatchEntry *e, const struct stat *s, const char *hint) {
        return e->meta && e->dev == s->st_dev && e->ino == s->st_ino && e->size == s->st_size &&
               same_time(&e->mtim, &s->st_mtim) && same_time(&e->ctim, &s->st_ctim) &&
               same_hint(e->hint, hint);
}

/* A free slot: an empty one, else the least recently used one not in use; NULL when
 * every entry is in use. Drops idle entries on the way. */
static PatchEntry *slot_for_new(time_t now) {
        PatchEntry *best = NULL;

        for (size_t i = 0; i < PATCHCACHE_MAX; i++) {
                PatchEntry *e = &cache[i];
                if (e->meta && e->refs == 0 && now - e->used > PATCHCACHE_IDLE_SEC)
                        entry_drop(e);
                if (!e->meta) {
                        if (!best || best->meta)
                                best = e;
                } else if (e->refs == 0 && (!best || (best->meta && e->used < best->used)))
                        best = e;
        }
        if (best && best->meta)
                entry_drop(best);
        return best;
}

int patchcache_read(int fd, const char *name_hint, PatchMeta **ret, char *err, size_t errlen) {
        time_t now = now_sec();
        struct stat s;
        PatchEntry *e;
        int r;

        if (patch_file_is_sealed(fd) <= 0 || fstat(fd, &s) < 0 || s.st_size > PATCHCACHE_FILE_MAX)
                return patchmeta_read(fd, name_hint, ret, err, errlen);
        for (size_t i = 0; i < PATCHCACHE_MAX; i++)
                if (same_entry(&cache[i], &s, name_hint)) {
                        cache[i].refs++;
                        cache[i].used = now;
                        *ret = cache[i].meta;
                        return 0;
                }
        r = patchmeta_read(fd, name_hint, ret, err, errlen);
        if (r < 0)
                return r;
        register_thread();
        e = slot_for_new(now);
        if (!e)
                return 0;
        _cleanup_close_ int keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        char *hint = name_hint ? strdup(name_hint) : NULL;
        if (keep < 0 || (name_hint && !hint)) {
                free(hint);
                return 0;            /* not cached: still a good result */
        }
        *e = (PatchEntry) { .fd = TAKE_FD(keep), .dev = s.st_dev, .ino = s.st_ino, .size = s.st_size,
                            .mtim = s.st_mtim, .ctim = s.st_ctim, .hint = hint, .meta = *ret,
                            .refs = 1, .used = now };
        return 0;
}

void patchcache_put(PatchMeta *m) {
        if (!m)
                return;
        for (size_t i = 0; i < PATCHCACHE_MAX; i++)
                if (cache[i].meta == m) {
                        if (cache[i].refs > 0)
                                cache[i].refs--;
                        return;
                }
        patchmeta_free(m);      /* not cached */
}

void patchcache_flush(void) {
        for (size_t i = 0; i < PATCHCACHE_MAX; i++)
                if (cache[i].meta && cache[i].refs == 0)
                        entry_drop(&cache[i]);
}
