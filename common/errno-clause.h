/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Why an operation on a file or directory failed, as the words that end a sentence
 * naming it, instead of the C library's errno text:
 *
 *     cannot record the sticky patch in /var/lib/ulp/patches: the file system is full
 *
 * The causes an operator meets (a full or read-only file system, a missing directory,
 * too many open files) have words of their own; any other errno keeps strerror's text
 * after "error", so that the line still says something. */

#include <errno.h>
#include <string.h>

static inline const char *errno_clause(int r) {
        switch (r < 0 ? -r : r) {
        case ENOSPC: return "the file system is full";
        case EDQUOT: return "the disk quota is used up";
        case EROFS: return "the file system is read-only";
        case EACCES:
        case EPERM: return "the permissions do not allow it";
        case ENOENT: return "a directory on the way does not exist";
        case ENOTDIR: return "a part of the path is not a directory";
        case ELOOP: return "a part of the path is a symbolic link";
        case ENAMETOOLONG: return "the path is too long";
        case EMFILE:
        case ENFILE: return "too many files are open";
        case ENOMEM: return "out of memory";
        case EIO: return "the storage reported an I/O error";
        default: return strerror(r < 0 ? -r : r);
        }
}

/* The same for an operation on a target process (reading or writing its memory, stopping
 * its threads, running code in it), where the errnos mean other things than on a file:
 *
 *     cannot write the far jump of compute: a bad address in the process (unmapped
 *     memory or a fault)
 *
 * Errors of ulp's own making (a refusal, a corrupt control block) are said by the line
 * itself; what is left falls back to errno_clause(). */
static inline const char *process_errno_clause(int r) {
        switch (r < 0 ? -r : r) {
        case ESRCH: return "the process exited";
        case EFAULT:
        case EIO: return "a bad address in the process (unmapped memory or a fault)";
        case EPERM:
        case EACCES: return "the kernel refused to let ulp trace it";
        case ETIMEDOUT: return "a thread did not stop in time";
        case ENOSYS: return "the kernel or the process's seccomp filter refused a system call ulp needs";
        case ESTALE: return "the process runs another program now";
        case EFBIG: return "its memory map (/proc/PID/maps) is larger than ulp reads (32 MiB)";
        default: return errno_clause(r);
        }
}
