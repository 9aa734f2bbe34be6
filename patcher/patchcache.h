/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Parsed patches kept between operations (docs/performance.md): a request that applies
 * one patch to a thousand processes reads and validates the patch file once, not once
 * a process. Only sealed copies are kept (patchfile.h: their bytes cannot change), keyed
 * by the copy's identity (device, inode, size, modification and change times) and the
 * name hint (a patch without ULP_PATCH_INFO is named after its file). The entry keeps
 * the copy open, so its inode cannot stand for another file while cached; a changed
 * patch file is another sealed copy, another inode, another entry. Per thread, as
 * symcache.h (both on filecache.h): each driver thread has its own, and releases on the
 * thread it read on.
 * An entry unused for PATCHCACHE_IDLE_SEC is dropped at the next read; at most
 * PATCHCACHE_MAX are kept, each of at most PATCHCACHE_FILE_MAX bytes (a kept copy stays
 * in memory until then: a long-running service pins 8 MiB at most, not 8 patches of up
 * to PATCH_FILE_MAX).
 */

#include "elf/patchmeta.h"

#define PATCHCACHE_MAX 8
#define PATCHCACHE_IDLE_SEC 60
#define PATCHCACHE_FILE_MAX (1 << 20)

/* As patchmeta_read(), from the cache when fd is a sealed copy read before under the
 * same name hint. Release with patchcache_put(), never patchmeta_free(). */
int patchcache_read(int fd, const char *name_hint, PatchMeta **ret, char *err, size_t errlen);
void patchcache_put(PatchMeta *m);

/* Drops every entry not in use (for tests and leak checkers). */
void patchcache_flush(void);
