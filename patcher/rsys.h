/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * System calls in the target, typed: thin wrappers over target_syscall() on a
 * borrowed, stopped thread. Each returns the syscall's result (>= 0) or -errno,
 * whether the error came from ptrace or from the syscall in the target.
 */

#include <stdint.h>
#include <sys/types.h>

#include "patcher/target.h"

/* System call nr in the target on th: 0 and *ret (may be NULL) its result, or -errno, the
 * call's own error or the remote step's. */
int rsys(Target *t, Thread *th, long nr, long a0, long a1, long a2, long a3, long a4, long a5, long *ret);
int rsys_memfd_create(Target *t, Thread *th, const char *name, int *ret_fd);
int rsys_close(Target *t, Thread *th, int fd);
int rsys_ftruncate(Target *t, Thread *th, int fd, uint64_t size);
/* mmap at exactly addr: MAP_FIXED_NOREPLACE, or MAP_FIXED over a reservation of our own
 * when over_own_reservation is set. -EEXIST when something is already mapped there. */
int rsys_mmap(Target *t, Thread *th, uint64_t addr, uint64_t len, int prot, int flags, int fd,
              uint64_t off, uint64_t *ret_addr);
int rsys_munmap(Target *t, Thread *th, uint64_t addr, uint64_t len);
