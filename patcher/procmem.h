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
