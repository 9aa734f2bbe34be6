/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Unwinding threads that are stopped under ptrace, with libdw (libdwfl), and the
 * reliability verdict of docs/architecture.md ("unreliable stack"): a stack is reliable only if the unwind
 * reached the outermost frame (return address undefined by CFI, as _start and
 * clone/start_thread mark it) and every frame is inside a known ELF module and covered
 * by its CFI (.eh_frame or .debug_frame). An unwind error, a frame outside any module
 * (anonymous memory, our stubs), a frame without CFI (frame-pointer fallback) or the
 * frame cap make it unreliable, never "safe".
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "elf/module.h"

#define UNWIND_MAX_FRAMES 256

typedef struct Unwinder Unwinder;

/* Reads target memory; returns 0 or -errno. */
typedef int (*unwind_read_fn)(void *userdata, uint64_t addr, void *buf, size_t len);

typedef struct UnwindResult {
        uint64_t pcs[UNWIND_MAX_FRAMES]; /* pcs[0] is the thread's PC; the others are return
                                          * addresses as found on the stack */
        uint64_t sps[UNWIND_MAX_FRAMES]; /* the stack pointer in each frame: for i >= 1, the
                                          * return address pcs[i] is at sps[i] - 8 (0 unknown) */
        size_t n;
        bool reliable;
        char reason[160];        /* why not reliable, one line */
} UnwindResult;

/* One unwinder per target process, caching its modules and CFI across threads and
 * retries. read is used for all memory accesses. */
int unwinder_new(pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata,
                 Unwinder **ret);
void unwinder_free(Unwinder *u);

/* Re-reports modules after the target's mappings changed (a patch was loaded). */
int unwinder_set_modules(Unwinder *u, const ModuleList *mods);

/* Takes u, kept from an earlier operation on process pid, for a new one: its reader set to
 * read(userdata), its modules to mods (files and CFI it has already kept, the rest read
 * anew, a file changed since as a new one; files no longer mapped let go). -ESTALE when
 * u is not for the process mods describes (another pid, or a vDSO moved: the process
 * executed a program since): free it then. Other errors as unwinder_set_modules(). */
int unwinder_rebind(Unwinder *u, pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata);

/* What the copies of the target's files u holds take (memfd, so memory). */
uint64_t unwinder_copied_bytes(const Unwinder *u);

/* The descriptors u keeps open: libdwfl's, one for each module it accepted, the copies'
 * and the vDSO's. */
size_t unwinder_fds(const Unwinder *u);

/* Unwinds thread tid of the target, stopped, whose registers are regs. Returns 0 with
 * ret filled (reliable or not), or -errno for a failure to even start. */
int unwinder_unwind(Unwinder *u, pid_t tid, const struct user_regs_struct *regs,
                    UnwindResult *ret);

/* An Unwinder is used by one thread at a time. Modules without an open_path (none of
 * the reported ones should lack it) are skipped.
 *
 * How many modules of the last report libdwfl accepted, and how many it refused (an
 * unreadable file): frames inside a refused module are "outside any module". */
void unwinder_module_counts(const Unwinder *u, size_t *ret_reported, size_t *ret_failed);
