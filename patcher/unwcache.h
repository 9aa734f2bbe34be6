/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Unwinders kept between operations (docs/performance.md): the next operation on the
 * same process, an apply's revert say, finds its modules' files opened (or copied) and
 * their CFI parsed, where a new Unwinder opens, maps and parses each again (and unmaps
 * them at the end). Keyed by pid and the image's 16 random bytes (AT_RANDOM, which the
 * Target reads to bind the image anyway, target-image.c): a program executed since, or a
 * pid reused by another process, is another key, with no read of /proc; an Unwinder is taken out while an operation uses it, and
 * given back at its end. Per thread, like the symbol tables' cache: each driver thread
 * of ulpd has its own. One unused for UNWCACHE_IDLE_SEC is freed at the next take or
 * give. What a thread keeps is bounded, as a target's user chooses what its Unwinder
 * holds (a descriptor for each module, up to 4,096, and copies of the files of that
 * user, docs/limits.md): at most UNWCACHE_MAX Unwinders, UNWCACHE_FDS_MAX descriptors
 * and UNWCACHE_COPIED_MAX bytes of copies (memfd: memory) in all; the ones given back
 * longest ago go first, and one that alone holds more is not kept. With ulpd's 16
 * drivers, 1,024 descriptors at most, as many as the symbol tables' cache may keep
 * (ulpd raises its limit of open files to the hard limit, 512K under systemd; see
 * daemon/ulpd.c, raise_nofile_limit()).
 */

#include <sys/types.h>

#include "unwind/unwind.h"

#define UNWCACHE_MAX 8
#define UNWCACHE_IDLE_SEC 30
#define UNWCACHE_FDS_MAX 64
#define UNWCACHE_COPIED_MAX (64ull << 20)
#define UNWCACHE_IMAGE_LEN 16

/* An Unwinder for process pid running the image image (its AT_RANDOM bytes,
 * UNWCACHE_IMAGE_LEN of them; NULL: unknown) with the modules mods and the reader
 * read(userdata): the one kept for it, brought up to date (unwinder_rebind()), or a new
 * one. Give it back with unwcache_give(). */
int unwcache_take(pid_t pid, const uint8_t *image, const ModuleList *mods, unwind_read_fn read,
                  void *userdata, Unwinder **ret);

/* Keeps u for the next operation on pid running image (NULL: unknown, u is freed), or
 * frees it. NULL u is ignored. */
void unwcache_give(pid_t pid, const uint8_t *image, Unwinder *u);

/* How many Unwinders the calling thread keeps, with their descriptors and copied bytes
 * (for tests). */
size_t unwcache_kept(size_t *ret_fds, uint64_t *ret_copied);

/* Frees every Unwinder kept by the calling thread (for tests and leak checkers). */
void unwcache_flush(void);
