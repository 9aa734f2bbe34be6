/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The per-thread cache of values made from a file: see filecache.h. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/filecache.h"

static _Thread_local FileCache *thread_caches;
static _Thread_local bool thread_bypass;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void entry_drop(FileCache *c, FileCacheEntry *e) {
        c->free_value(e->value);
        free(e->tag);
        if (e->fd >= 0)
                close(e->fd);
        *e = (FileCacheEntry) { .fd = -1 };
}

static void drop_all(FileCache *c) {
        for (size_t i = 0; i < c->max; i++)
                if (c->slots[i].value)
                        entry_drop(c, &c->slots[i]);
}

/* A thread that ends takes its entries along: their descriptors and memory are freed. */
static void on_thread_exit(void *head) {
        for (FileCache *c = head; c; c = c->next)
                drop_all(c);
}

static void exit_key_create(void) {
        (void) pthread_key_create(&exit_key, on_thread_exit);
}

static void register_thread(FileCache *c) {
        if (c->registered)
                return;
        c->registered = true;
        c->next = thread_caches;
        thread_caches = c;
        (void) pthread_once(&exit_once, exit_key_create);
        (void) pthread_setspecific(exit_key, thread_caches);
}

static time_t now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static bool same_time(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool same_tag(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_key(const FileCacheEntry *e, const struct stat *s, const char *tag) {
        return e->value && e->dev == s->st_dev && e->ino == s->st_ino && e->size == s->st_size &&
               same_time(&e->mtim, &s->st_mtim) && same_time(&e->ctim, &s->st_ctim) && same_tag(e->tag, tag);
}

void filecache_bypass_thread(void) {
        thread_bypass = true;
}

void *filecache_get(FileCache *c, const struct stat *s, const char *tag) {
        if (thread_bypass)
                return NULL;
        for (size_t i = 0; i < c->max; i++)
                if (same_key(&c->slots[i], s, tag)) {
                        c->slots[i].refs++;
                        c->slots[i].used = now_sec();
                        return c->slots[i].value;
                }
        return NULL;
}

/* A free slot: an empty one, else the least recently used one not in use; NULL when
 * every entry is in use. Drops idle entries on the way. */
static FileCacheEntry *slot_for_new(FileCache *c, time_t now) {
        FileCacheEntry *best = NULL;

        for (size_t i = 0; i < c->max; i++) {
                FileCacheEntry *e = &c->slots[i];
                if (e->value && e->refs == 0 && now - e->used > c->idle_sec)
                        entry_drop(c, e);
                if (!e->value) {
                        if (!best || best->value)
                                best = e;
                } else if (e->refs == 0 && (!best || (best->value && e->used < best->used)))
                        best = e;
        }
        if (best && best->value)
                entry_drop(c, best);
        return best;
}

int filecache_add(FileCache *c, const struct stat *s, const char *tag, int keep_fd, void *value) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *t = NULL;
        time_t now = now_sec();
        FileCacheEntry *e;

        if (thread_bypass)
                return -ENOSPC;
        if (keep_fd >= 0 && (fd = fcntl(keep_fd, F_DUPFD_CLOEXEC, 3)) < 0)
                return negative_errno();
        if (tag && !(t = strdup(tag)))
                return -ENOMEM;
        register_thread(c);
        e = slot_for_new(c, now);
        if (!e)
                return -ENOSPC;
        *e = (FileCacheEntry) { .dev = s->st_dev, .ino = s->st_ino, .size = s->st_size, .mtim = s->st_mtim,
                                .ctim = s->st_ctim, .tag = TAKE_PTR(t), .fd = TAKE_FD(fd), .value = value,
                                .refs = 1, .used = now };
        return 0;
}

bool filecache_put(FileCache *c, const void *value) {
        for (size_t i = 0; i < c->max; i++)
                if (c->slots[i].value == value) {
                        if (c->slots[i].refs > 0)
                                c->slots[i].refs--;
                        return true;
                }
        return false;
}

void filecache_flush(FileCache *c) {
        for (size_t i = 0; i < c->max; i++)
                if (c->slots[i].value && c->slots[i].refs == 0)
                        entry_drop(c, &c->slots[i]);
}
