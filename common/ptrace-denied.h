/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one line for a process the kernel's ptrace access check refused to this process,
 * shared by ulpctl (opening the proof it sends ulpd) and the core (ulpctl --direct,
 * ulpd), so that both paths say it in the same words:
 *
 *     not allowed to trace process 4711 (the kernel's ptrace access check for this user: its user ids are not all yours)
 *
 * The reason after the colon is a guess from what anyone may read in /proc; the
 * decision itself was the kernel's, and with no guess fitting (an LSM, say) the line
 * ends after "for this user". */

#include <stddef.h>
#include <sys/types.h>

/* Formats the line into buf (len bytes, always terminated when len > 0); returns buf. */
char *ptrace_denied_line(pid_t pid, char *buf, size_t len);
