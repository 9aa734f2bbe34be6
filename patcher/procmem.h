/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Why /proc/PID/mem could not be opened read-write. The kernel says EACCES for two
 * different refusals: the file's own permission bits (it belongs to the target's uid,
 * mode 0600, so a root without CAP_DAC_OVERRIDE, as in a unit whose capability set lacks
 * it, is refused before anything else is asked), and its ptrace access check. Only the
 * first can be told from outside, from the file's owner and mode and our own
 * capabilities; whatever it does not explain is the ptrace check.
 */

#include <stdbool.h>
#include <sys/types.h>

/* 1 when the permission bits of /proc/PID/mem are what denies this process read-write
 * access: neither owner nor group nor others grant it, CAP_DAC_OVERRIDE is not in our
 * effective set, and CAP_SYS_PTRACE is (without it the ptrace check refuses another
 * uid's process anyway). Its owner in *ret_owner (may be NULL). 0 otherwise: a refusal
 * came from the ptrace check. -errno when it cannot be told (the process is
 * gone: -ENOENT). */
int procmem_mode_denies(pid_t pid, uid_t *ret_owner);

/*
 * The target's /proc/PID/maps, read once and kept in t for the parts of an operation
 * that need it: an apply's module list and control block address share one read, its
 * trust check, remote code and free-range search another, where they made six. The
 * kernel generates the file at each read, walking every mapping. Dropped (the next call
 * reads again):
 *  - by any remote system call (rsys()), which may map, unmap or protect memory, and
 *    after a callback or resolver ran in the target;
 *  - by op_refresh_modules(), by the control block's trust check (control_load()), which
 *    looks at the mappings as they are at that moment, as it always did, and at the
 *    start of each step of an operation, whose threads ran meanwhile;
 *  - when a range chosen from it was taken since (a MAP_FIXED_NOREPLACE refused with
 *    EEXIST: the mmap was a remote system call, so the retry reads again).
 * The snapshot is a point in time, as every read of the file is: a process that runs
 * can change its mappings right after any read.
 */
struct Target;
struct MapList;
int procmaps_get(struct Target *t, const struct MapList **ret);
void procmaps_drop(struct Target *t);
