/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unwinders kept between operations: see unwcache.h. */

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "common/macro.h"
#include "patcher/unwcache.h"

typedef struct UnwCacheEntry {
        pid_t pid;
        uint8_t image[UNWCACHE_IMAGE_LEN];
        Unwinder *u;             /* NULL: an empty slot */
        time_t used;             /* CLOCK_MONOTONIC seconds of the give */
} UnwCacheEntry;

static _Thread_local UnwCacheEntry slots[UNWCACHE_MAX];
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void entry_drop(UnwCacheEntry *e) {
        unwinder_free(e->u);
        *e = (UnwCacheEntry) {};
}

static void drop_all(void) {
        for (size_t i = 0; i < UNWCACHE_MAX; i++)
                if (slots[i].u)
                        entry_drop(&slots[i]);
}

/* A thread that ends frees what it kept (the key's value only makes the call happen). */
static void on_thread_exit(void *unused) {
        (void) unused;
        drop_all();
}

static void exit_key_create(void) {
        (void) pthread_key_create(&exit_key, on_thread_exit);
}

static time_t now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static void drop_idle(time_t now) {
        for (size_t i = 0; i < UNWCACHE_MAX; i++)
                if (slots[i].u && now - slots[i].used > UNWCACHE_IDLE_SEC)
                        entry_drop(&slots[i]);
}

int unwcache_take(pid_t pid, const uint8_t *image, const ModuleList *mods, unwind_read_fn read,
                  void *userdata, Unwinder **ret) {
        drop_idle(now_sec());
        for (size_t i = 0; image && i < UNWCACHE_MAX; i++) {
                UnwCacheEntry *e = &slots[i];
                Unwinder *u;
                if (!e->u || e->pid != pid || memcmp(e->image, image, UNWCACHE_IMAGE_LEN) != 0)
                        continue;
                u = e->u;
                *e = (UnwCacheEntry) {};
                if (unwinder_rebind(u, pid, mods, read, userdata) < 0) {
                        /* another program since, or a report that failed: start afresh */
                        unwinder_free(u);
                        break;
                }
                *ret = u;
                return 0;
        }
        return unwinder_new(pid, mods, read, userdata, ret);
}

/* The entry given back longest ago, NULL when none is kept. */
static UnwCacheEntry *oldest(void) {
        UnwCacheEntry *o = NULL;

        for (size_t i = 0; i < UNWCACHE_MAX; i++)
                if (slots[i].u && (!o || slots[i].used < o->used))
                        o = &slots[i];
        return o;
}

void unwcache_give(pid_t pid, const uint8_t *image, Unwinder *u) {
        size_t fds, n, kept_fds;
        uint64_t copied, kept_copied;
        UnwCacheEntry *slot = NULL;
        time_t now = now_sec();

        if (!u)
                return;
        drop_idle(now);
        fds = unwinder_fds(u);
        copied = unwinder_copied_bytes(u);
        if (!image || fds > UNWCACHE_FDS_MAX || copied > UNWCACHE_COPIED_MAX) {
                unwinder_free(u);
                return;
        }
        for (;;) {
                n = unwcache_kept(&kept_fds, &kept_copied);
                if (n < UNWCACHE_MAX && kept_fds + fds <= UNWCACHE_FDS_MAX &&
                    kept_copied + copied <= UNWCACHE_COPIED_MAX)
                        break;
                entry_drop(oldest());
        }
        for (size_t i = 0; i < UNWCACHE_MAX && !slot; i++)
                if (!slots[i].u)
                        slot = &slots[i];
        *slot = (UnwCacheEntry) { .pid = pid, .u = u, .used = now };
        memcpy(slot->image, image, UNWCACHE_IMAGE_LEN);
        (void) pthread_once(&exit_once, exit_key_create);
        (void) pthread_setspecific(exit_key, (void *) 1);
}

size_t unwcache_kept(size_t *ret_fds, uint64_t *ret_copied) {
        size_t n = 0, fds = 0;
        uint64_t copied = 0;

        for (size_t i = 0; i < UNWCACHE_MAX; i++)
                if (slots[i].u) {
                        n++;
                        fds += unwinder_fds(slots[i].u);
                        copied += unwinder_copied_bytes(slots[i].u);
                }
        if (ret_fds)
                *ret_fds = fds;
        if (ret_copied)
                *ret_copied = copied;
        return n;
}

void unwcache_flush(void) {
        drop_all();
}
