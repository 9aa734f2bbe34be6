/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may patch what. ulpd copies none of the kernel's rules: the kernel decides, with
 * the caller's own credentials, when the caller opens /proc/PID/mem for reading and
 * writing (ptrace_may_access() with PTRACE_MODE_ATTACH_FSCREDS: every uid and gid,
 * dumpable, the target's capabilities a subset of the caller's, Yama's ptrace_scope,
 * LSMs). ulpctl opens that file and a pidfd for each target and passes both with the
 * request (protocol.h, "targets"); here we only make sure that the descriptors are what
 * they claim to be, for the pid they are sent for:
 *   - the mem descriptor is a procfs file, /proc/<pid>/mem in our view of /proc, open
 *     O_RDWR (a read-only one proves only PTRACE_MODE_READ... and is no use to a patch);
 *   - the pidfd refers to <pid> (its fdinfo Pid:) and that process is alive
 *     (pidfd_send_signal with signal 0), so a pid reused since is not taken for it;
 *   - the memory behind the mem descriptor is that of the program <pid> runs now (its
 *     AT_RANDOM bytes, ulp_image_shown_by()): the path alone may be of a procfs the
 *     client mounted in a pid namespace of its own, where its own process has that pid.
 * The operation is then bound to the image the mem descriptor refers to
 * (UlpOptions.auth_mem, patcher/target-image.c): a target that executed a new program
 * (a setuid one, say) since the caller opened the descriptor is refused before anything
 * is written, at every stop of the operation.
 *
 * The peer's uid comes from SO_PEERCRED, taken by the kernel at connect() time. Root
 * (uid 0) may act without proofs, with ulpd's own authority, as ulpd does for sticky
 * patches and when it finishes a transition a previous ulpd left. Nobody patches ulpd.
 * See docs/security.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/macro.h"
#include "daemon/ulpd.h"

/* A thread of another process (a tid, not a tgid) is no target: only thread group
 * leaders are processes. /proc/TID exists for threads too, but Tgid: differs. Read in
 * one read() and found by hand: once per target of every request (a thousand for a
 * library patch), where fopen() and a sscanf() of every line cost more than the check. */
static int is_process(pid_t pid) {
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;
        const char *p;
        char *end;
        ssize_t n;
        long tgid;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();
        n = read(fd, buf, sizeof(buf) - 1);   /* Tgid: is the fourth line, well within */
        if (n < 0)
                return errno == ESRCH ? -ESRCH : negative_errno();
        buf[n] = 0;
        p = strstr(buf, "\nTgid:");
        if (!p)
                return -ESRCH;
        p += strlen("\nTgid:");
        p += strspn(p, " \t");
        errno = 0;
        tgid = strtol(p, &end, 10);
        if (errno || end == p || (*end != '\n' && *end != 0))
                return -ESRCH;
        return tgid == pid ? 0 : -ESRCH;
}

void auth_proofs_done(AuthProofs *p) {
        for (size_t i = 0; i < p->n; i++) {
                if (p->v[i].mem_fd >= 0)
                        close(p->v[i].mem_fd);
                if (p->v[i].pidfd >= 0)
                        close(p->v[i].pidfd);
        }
        free(p->v);
        *p = (AuthProofs) {};
}

int auth_take_fds(MsgReader *rd, struct json_object *q, int want_patch, int *ret_patch_fd,
                  AuthProofs *ret, char *reason, size_t len) {
        struct json_object *a = NULL;
        size_t n = 0, n_fds = rd->n_fds;
        int r = 0;

        *ret_patch_fd = -1;
        *ret = (AuthProofs) {};
        if (json_object_object_get_ex(q, "targets", &a)) {
                if (!json_object_is_type(a, json_type_array)) {
                        r = fail(reason, len, -EINVAL, "invalid \"targets\": a list of process ids is expected");
                        goto finish;
                }
                n = json_object_array_length(a);
        }
        if (n > PROTOCOL_TARGETS_MAX) {
                r = fail(reason, len, -E2BIG, "too many \"targets\": at most %d per request", PROTOCOL_TARGETS_MAX);
                goto finish;
        }
        /* None at all: the method says whether it misses its patch. */
        if (n == 0 && n_fds == 0)
                goto finish;
        /* A revert may come with or without its patch: the count tells. */
        if (want_patch < 0)
                want_patch = n_fds == 2 * n + 1;
        if (n_fds != 2 * n + (size_t) want_patch) {
                r = fail(reason, len, -EBADF, "the request carries %zu file descriptor(s), %zu expected "
                         "(%s2 for each of the %zu \"targets\")", n_fds, 2 * n + (size_t) want_patch,
                         want_patch ? "the patch, then " : "", n);
                goto finish;
        }
        if (want_patch)
                *ret_patch_fd = msgreader_take_fd(rd);
        if (n == 0)
                goto finish;
        ret->v = calloc(n, sizeof(AuthProof));
        if (!ret->v) {
                r = fail(reason, len, -ENOMEM, "out of memory");
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);
                int64_t x = 0;

                ret->v[i].mem_fd = msgreader_take_fd(rd);
                ret->v[i].pidfd = msgreader_take_fd(rd);
                ret->n = i + 1;
                if (!json_object_is_type(e, json_type_int) ||
                    (x = json_object_get_int64(e)) <= 0 || x > INT32_MAX) {
                        r = fail(reason, len, -EINVAL, "invalid \"targets\": a list of process ids is expected");
                        goto finish;
                }
                ret->v[i].pid = (pid_t) x;
                for (size_t k = 0; k < i; k++)
                        if (ret->v[k].pid == ret->v[i].pid) {
                                r = fail(reason, len, -EINVAL, "invalid \"targets\": process %d twice", (int) x);
                                goto finish;
                        }
        }
finish:
        if (r < 0) {
                if (*ret_patch_fd >= 0)
                        close(*ret_patch_fd);
                *ret_patch_fd = -1;
                auth_proofs_done(ret);
        }
        /* whatever else came is no business of this request */
        for (int fd; (fd = msgreader_take_fd(rd)) >= 0;)
                close(fd);
        return r;
}

/* The "Pid:" of a pidfd from /proc/self/fdinfo: the pid in our namespace, -1 when the
 * process exited. -EBADF when fd is no pidfd. */
static int pidfd_pid(int fd, pid_t *ret) {
        char path[64], buf[1024], *p;
        ssize_t n;
        long v;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, buf, sizeof(buf) - 1);
        if (n < 0)
                return -EBADF;
        buf[n] = 0;
        /* anon_inode:[pidfd] before Linux 6.9, pidfd:[INODE] on pidfs */
        if (strcmp(buf, "anon_inode:[pidfd]") != 0 && strncmp(buf, "pidfd:", 6) != 0)
                return -EBADF;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        _cleanup_close_ int f = open(path, O_RDONLY | O_CLOEXEC);
        if (f < 0)
                return -EBADF;
        n = read(f, buf, sizeof(buf) - 1);
        if (n <= 0)
                return -EBADF;
        buf[n] = 0;
        p = strstr(buf, "\nPid:");
        if (!p)
                return -EBADF;
        v = strtol(p + 5, NULL, 10);
        if (v < -1 || v > INT32_MAX)
                return -EBADF;
        *ret = (pid_t) v;
        return 0;
}

/* Is p a live proof for pid? 0, or -EPERM / -ESRCH with the reason. */
static int proof_verify(const AuthProof *p, pid_t pid, char *reason, size_t len) {
        char path[64], want[64], link[256];
        struct statfs sf;
        ssize_t n;
        pid_t owner = 0;
        int fl, r;

        /* the pidfd first: a process gone since is said so, not as a bad descriptor */
        if (p->pidfd < 0 || pidfd_pid(p->pidfd, &owner) < 0)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: no pidfd for it came with the request", (int) pid);
        if (owner == -1 || syscall(SYS_pidfd_send_signal, p->pidfd, 0, NULL, 0) < 0)
                return fail(reason, len, -ESRCH, "process %d exited since the request was made", (int) pid);
        if (owner != pid)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: the pidfd sent for it is for process %d",
                            (int) pid, (int) owner);
        if (p->mem_fd < 0 || fstatfs(p->mem_fd, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: the descriptor sent for it is not /proc/%d/mem",
                            (int) pid, (int) pid);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", p->mem_fd);
        snprintf(want, sizeof(want), "/proc/%d/mem", (int) pid);
        n = readlink(path, link, sizeof(link) - 1);
        if (n >= 0)
                link[n] = 0;
        if (n < 0 || strcmp(link, want) != 0)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: the descriptor sent for it is not /proc/%d/mem",
                            (int) pid, (int) pid);
        fl = fcntl(p->mem_fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: /proc/%d/mem was not opened for reading and writing",
                            (int) pid, (int) pid);
        /* The path only looks right: a procfs mounted in a pid namespace of the client's
         * names its own process N /proc/N/mem. The memory behind the descriptor tells. */
        r = ulp_image_shown_by(pid, p->mem_fd);
        if (r == -ESRCH)
                return fail(reason, len, -ESRCH, "process %d exited since the request was made", (int) pid);
        if (r < 0 && r != -ESTALE)
                return fail(reason, len, -EPERM, "not allowed to trace process %d: ulpd cannot read its memory to check "
                            "the descriptor sent for it: %s", (int) pid, strerror(-r));
        if (r < 0)
                return fail(reason, len, -ESTALE, "process %d does not run the program the descriptor sent for it shows "
                            "(it executed a new program since the descriptor was opened, or the descriptor is another "
                            "process's); nothing was written into it", (int) pid);
        return 0;
}

const AuthProof *auth_find_proof(const AuthProofs *proofs, pid_t pid) {
        for (size_t i = 0; proofs && i < proofs->n; i++)
                if (proofs->v[i].pid == pid)
                        return &proofs->v[i];
        return NULL;
}

int auth_check(const struct ucred *cred, const AuthProofs *proofs, pid_t pid, int *ret_mem_fd,
               char *reason, size_t reason_len) {
        const AuthProof *p;
        int r;

        if (ret_mem_fd)
                *ret_mem_fd = -1;
        if (pid <= 0)
                return fail(reason, reason_len, -ESRCH, "invalid process id %d", (int) pid);
        if (pid == getpid())
                return fail(reason, reason_len, -EPERM, "pid %d is ulpd itself, which cannot be patched", (int) pid);
        r = is_process(pid);
        if (r < 0)
                return fail(reason, reason_len, r, "no process with pid %d", (int) pid);
        p = auth_find_proof(proofs, pid);
        if (p) {
                r = proof_verify(p, pid, reason, reason_len);
                /* Root needs no proof: one that does not look right from here (a client
                 * in another mount namespace, say) leaves root's request to ulpd's own
                 * authority. A process that exited since is refused all the same: its
                 * pid may be another process's by now. */
                if (r == -EPERM && cred->uid == 0)
                        return 0;
                if (r < 0)
                        return r;
                if (ret_mem_fd)
                        *ret_mem_fd = p->mem_fd;
                return 0;
        }
        if (cred->uid == 0)
                return 0;
        return fail(reason, reason_len, -EPERM,
                    "not allowed to trace process %d: the request carries no proof of access to it "
                    "(ulpctl opens /proc/%d/mem as the caller and passes it)", (int) pid, (int) pid);
}
