/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The per-thread cache of values made from a file, shared by symcache.c (symbol tables)
 * and patchcache.c (parsed patches). An entry is keyed by the file's identity (device,
 * inode, size, modification and change times: any write changes the times) and by an
 * optional tag, a string that is part of the key. It may keep a descriptor of the file
 * open, so that the inode cannot stand for another file while cached. Entries are
 * counted in use; one not in use and unused for idle_sec is dropped at the next add, and
 * a full cache gives the slot of the least recently used one not in use. Per thread: a
 * thread's cache is its own, and a thread that ends drops its entries.
 *
 * A user defines its thread's cache with FILECACHE_DEFINE().
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

typedef struct FileCacheEntry {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        char *tag;               /* part of the key, NULL for none; owned */
        int fd;                  /* kept open, -1 for none; owned */
        void *value;             /* NULL: an empty slot */
        unsigned refs;
        time_t used;             /* CLOCK_MONOTONIC seconds of the last use */
} FileCacheEntry;

typedef struct FileCache {
        FileCacheEntry *slots;
        size_t max;
        time_t idle_sec;
        void (*free_value)(void *value);
        struct FileCache *next;  /* the thread's caches, dropped when it ends */
        bool registered;
} FileCache;

/* The value cached for the file s describes under tag, taken for use (release with
 * filecache_put()); NULL when there is none. */
void *filecache_get(FileCache *c, const struct stat *s, const char *tag);

/* Caches value, in use once, for the file s describes under tag, keeping a duplicate of
 * keep_fd open when keep_fd >= 0. 0 when cached; -ENOSPC when every entry is in use,
 * -ENOMEM or -EMFILE when the tag or the descriptor cannot be kept: value is then not
 * cached and stays the caller's (filecache_put() says so). */
int filecache_add(FileCache *c, const struct stat *s, const char *tag, int keep_fd, void *value);

/* Releases one use of value: true when it is cached, false when it is not (the caller
 * frees it then). */
bool filecache_put(FileCache *c, const void *value);

/* The calling thread caches nothing from now on: every get finds nothing and every add
 * leaves the value its caller's. For a thread that ends while what it made is still in
 * use elsewhere (a seal's tracer thread, patcher/target-seal.h): its cache would drop it. */
void filecache_bypass_thread(void);

/* Drops every entry not in use (for tests and leak checkers). */
void filecache_flush(FileCache *c);

/* Defines static FileCache *name(void): the calling thread's cache of max_ entries, in
 * thread-local storage, set up at its first use. */
#define FILECACHE_DEFINE(name, max_, idle_sec_, free_value_)                                    \
        static FileCache *name(void) {                                                          \
                static _Thread_local FileCacheEntry slots_[max_];                               \
                static _Thread_local FileCache c_;                                              \
                if (!c_.slots)                                                                  \
                        c_ = (FileCache) { .slots = slots_, .max = (max_), .idle_sec = (idle_sec_), \
                                           .free_value = (free_value_) };                       \
                return &c_;                                                                     \
        }
