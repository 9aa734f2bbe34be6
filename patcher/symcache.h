/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Symbol tables kept between operations (docs/performance.md): a service patching the
 * same libc in a thousand processes parses and sorts its symbols once. Keyed by the
 * identity of the file the target maps (device, inode, size, modification and change
 * times, from fstat of the very file /proc/PID/map_files/ opens): the entry keeps that
 * file open, so its inode cannot be reused for another file while cached, and any write
 * to it changes its times. Per thread: each driver thread has its own. An entry unused
 * for SYMCACHE_IDLE_SEC is dropped at the next open, and at most SYMCACHE_MAX are kept.
 */

#include "elf/symtab.h"

#define SYMCACHE_MAX 32
#define SYMCACHE_IDLE_SEC 60

/* As symtab_open_module() (the file at open_path, its symbols completed from a debug
 * file found for path when path is not NULL), from the cache when the same file was
 * opened before. Release with symcache_put(), never symtab_free(). */
int symcache_open(const char *open_path, const char *path, SymTab **ret);
void symcache_put(SymTab *st);

/* Drops every entry not in use (for tests and leak checkers). */
void symcache_flush(void);
