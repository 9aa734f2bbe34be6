/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may patch what. The peer's credentials come from SO_PEERCRED, taken by the
 * kernel at connect() time, so a client cannot claim another uid. Root may patch
 * any process but ulpd itself; any other user only processes that are entirely
 * theirs: real, effective and saved uid equal to theirs (no setuid program half-way
 * through dropping privileges) and dumpable (the kernel makes the files in /proc/PID
 * owned by root when a process is not dumpable, e.g. after a credential change or
 * prctl(PR_SET_DUMPABLE, 0); the /proc/PID directory itself keeps the owner it had
 * when first looked up, so /proc/PID/status is what we stat), the conditions under
 * which the kernel would let that user ptrace the process.
 *
 * The check and the operation are not atomic: a pid could be reused in between. The
 * window is one event loop iteration, and a pid is reused within it only if the target
 * exits and the pid space (pid_max) wraps around meanwhile.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/ulpd.h"

/* Reads the Uid: line of /proc/PID/status: real, effective, saved, fs. */
static int read_uids(pid_t pid, uid_t ret[4]) {
        char path[64], line[256];
        FILE *f;
        int r = -EBADMSG;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : negative_errno();
        while (fgets(line, sizeof(line), f)) {
                unsigned a, b, c, d;

                if (strncmp(line, "Uid:", 4) != 0)
                        continue;
                if (sscanf(line + 4, "%u %u %u %u", &a, &b, &c, &d) == 4) {
                        ret[0] = a, ret[1] = b, ret[2] = c, ret[3] = d;
                        r = 0;
                }
                break;
        }
        fclose(f);
        return r;
}

/* A thread of another process (a tid, not a tgid) is no target: only thread group
 * leaders are processes. /proc/TID exists for threads too, but Tgid: differs. */
static int is_process(pid_t pid) {
        char path[64], line[256];
        FILE *f;
        int r = -ESRCH;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : negative_errno();
        while (fgets(line, sizeof(line), f)) {
                int tgid;

                if (sscanf(line, "Tgid: %d", &tgid) == 1) {
                        r = tgid == pid ? 0 : -ESRCH;
                        break;
                }
        }
        fclose(f);
        return r;
}

int auth_check(const struct ucred *cred, pid_t pid, char *reason, size_t reason_len) {
        char path[64];
        struct stat st;
        uid_t uids[4];
        int r;

        if (pid <= 0) {
                snprintf(reason, reason_len, "invalid process id %d", (int) pid);
                return -ESRCH;
        }
        if (pid == getpid()) {
                snprintf(reason, reason_len, "pid %d is ulpd itself, which cannot be patched", (int) pid);
                return -EPERM;
        }
        r = is_process(pid);
        if (r < 0) {
                snprintf(reason, reason_len, "no such process: %d", (int) pid);
                return r;
        }
        if (cred->uid == 0)
                return 0;

        r = read_uids(pid, uids);
        if (r < 0) {
                snprintf(reason, reason_len, "no such process: %d", (int) pid);
                return r == -ESRCH ? r : -EPERM;
        }
        if (uids[0] != cred->uid || uids[1] != cred->uid || uids[2] != cred->uid) {
                snprintf(reason, reason_len,
                         "permission denied: pid %d does not belong to uid %u (its uids: real %u, effective %u, saved %u)",
                         (int) pid, (unsigned) cred->uid, (unsigned) uids[0], (unsigned) uids[1], (unsigned) uids[2]);
                return -EPERM;
        }
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        if (stat(path, &st) < 0) {
                snprintf(reason, reason_len, "no such process: %d", (int) pid);
                return -ESRCH;
        }
        if (st.st_uid != cred->uid) {
                snprintf(reason, reason_len,
                         "permission denied: pid %d is not dumpable, only root may patch it", (int) pid);
                return -EPERM;
        }
        return 0;
}
