/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which program a Target runs, and whether it is still the one the operation was
 * authorized for.
 *
 * A /proc/PID/mem descriptor is bound to the mm of the process at open() time, not to
 * the pid: after an execve() the process has a new mm and the old descriptor reads
 * nothing (the old mm is torn down) or, when a CLONE_VM sibling keeps the old mm alive,
 * the old memory. Every image gets 16 fresh random bytes from the kernel (AT_RANDOM in
 * the auxiliary vector). So: read the AT_RANDOM address of the image running now from
 * /proc/PID/auxv, read the 16 bytes there directly (process_vm_readv goes to the current
 * mm) and through the descriptor in question; equal bytes mean the descriptor refers to
 * the current image. A caller who may not read a new (setuid) image cannot know its
 * random bytes, so cannot plant them in an old mm it controls.
 *
 * Once proven, a cheaper look suffices at each later stop: the current image still holds
 * the remembered bytes at the remembered address. When it does not (an exec, or the
 * process overwrote them), the full proof is made again.
 */

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/target-internal.h"
#include "patcher/target.h"
#include "ulp/libulp.h"

#define AUXV_MAX 4096   /* the kernel's saved_auxv is far smaller (AT_VECTOR_SIZE pairs) */

/* The AT_RANDOM address of the image pid runs now. -ESRCH when it has no memory any
 * more (exited), -ENOENT when there is none. */
static int read_at_random(pid_t pid, uint64_t *ret) {
        char path[64];
        uint64_t v[AUXV_MAX / sizeof(uint64_t)];
        size_t len = 0;

        snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();
        while (len < sizeof(v)) {
                ssize_t n = read(fd, (char *)v + len, sizeof(v) - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == ESRCH ? -ESRCH : negative_errno();
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len == 0)
                return -ESRCH;
        for (size_t i = 0; i + 1 < len / sizeof(uint64_t); i += 2) {
                if (v[i] == AT_NULL)
                        break;
                if (v[i] == AT_RANDOM && v[i + 1]) {
                        *ret = v[i + 1];
                        return 0;
                }
        }
        return -ENOENT;
}

/* 16 bytes at addr through fd. -EFAULT when the descriptor's mm has no such memory, or
 * none at all any more (a read of 0 bytes). */
static int fd_read16(int fd, uint64_t addr, uint8_t buf[16]) {
        size_t done = 0;
        while (done < 16) {
                ssize_t n = pread(fd, buf + done, 16 - done, (off_t)(addr + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -EFAULT;
                done += (size_t)n;
        }
        return 0;
}

/* 16 bytes at addr in the image pid runs now. */
static int current_read16(pid_t pid, uint64_t addr, uint8_t buf[16]) {
        struct iovec local = { buf, 16 }, remote = { (void *)(uintptr_t)addr, 16 };
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n == 16)
                return 0;
        if (n < 0 && errno == ESRCH)
                return -ESRCH;
        if (n < 0 && (errno == EPERM || errno == ENOSYS)) {
                /* Not allowed this way (Yama with no tracee of ours): a fresh descriptor
                 * is bound to the current mm as well. */
                char path[64];
                snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return errno == ENOENT ? -ESRCH : negative_errno();
                return fd_read16(fd, addr, buf);
        }
        return -EFAULT;
}

static int changed(Target *t) {
        t->image_changed = true;
        return -ESTALE;
}

/* The current image's AT_RANDOM address and bytes. -ESRCH gone, other < 0 when there
 * is nothing to compare. */
static int current_random(pid_t pid, uint64_t *ret_addr, uint8_t cur[16]) {
        int r = read_at_random(pid, ret_addr);
        if (r >= 0)
                r = current_read16(pid, *ret_addr, cur);
        return r;
}

int ulp_image_shown_by(pid_t pid, int mem_fd) {
        uint8_t cur[16], theirs[16];
        uint64_t addr = 0;
        int r = current_random(pid, &addr, cur);

        if (r < 0)
                return r;   /* gone, or our own read failed: nothing to compare */
        if (fd_read16(mem_fd, addr, theirs) < 0 || memcmp(theirs, cur, 16) != 0)
                return -ESTALE;
        return 0;
}

/* The full proof (see the top of the file). */
static int prove(Target *t) {
        uint8_t cur[16], ours[16], theirs[16];
        uint64_t addr = 0;
        int r = current_random(t->pid, &addr, cur);

        if (r == -ESRCH)
                return r;
        if (r < 0) {
                /* Nothing to compare: an authorization cannot be proven, an operation of
                 * our own goes on with the exec event as its only guard. */
                t->random_addr = 0;
                return t->auth_fd >= 0 ? changed(t) : 0;
        }
        if (fd_read16(t->mem_fd, addr, ours) < 0 || memcmp(ours, cur, 16) != 0)
                return changed(t);
        if (t->auth_fd >= 0 && (fd_read16(t->auth_fd, addr, theirs) < 0 || memcmp(theirs, cur, 16) != 0))
                return changed(t);
        t->random_addr = addr;
        memcpy(t->random, cur, 16);
        return 0;
}

int target_bind_image(Target *t, int auth_fd) {
        if (t->auth_fd >= 0)
                close(t->auth_fd);
        t->auth_fd = -1;
        if (auth_fd >= 0) {
                t->auth_fd = fcntl(auth_fd, F_DUPFD_CLOEXEC, 3);
                if (t->auth_fd < 0)
                        return negative_errno();
        }
        t->image_bound = true;
        t->image_changed = false;
        t->random_addr = 0;
        return prove(t);
}

int target__check_image(Target *t) {
        uint8_t cur[16];

        if (!t->image_bound)
                return 0;
        if (t->image_changed)
                return -ESTALE;
        if (t->random_addr && current_read16(t->pid, t->random_addr, cur) == 0 &&
            memcmp(cur, t->random, 16) == 0)
                return 0;
        if (!t->random_addr && t->auth_fd < 0)
                return 0;
        return prove(t);
}

int target__check_image_thread(Target *t, Thread *th) {
        if (t->image_changed)
                return -ESTALE;
        return th->tid == t->pid ? target__check_image(t) : 0;
}

/* Whether the calling thread traces tid (TracerPid: of /proc/PID/task/TID/status). */
static bool traced_by_us(pid_t pid, pid_t tid) {
        return target__thread_tracer(pid, tid) == gettid();
}

void target__release_exec_leader(Target *t) {
        Thread *leader = target_find_thread(t, t->pid);

        /* A thread we had seized that executes a program takes the leader's tid and stays
         * ours; when we had not seized the leader itself, nothing else knows it is ours. */
        if (!t->image_bound || (leader && leader->seized && !leader->gone))
                return;   /* unbound: a Target only read (status), never seized */
        if (!traced_by_us(t->pid, t->pid))
                return;
        uint64_t deadline = target__now_ns() + (uint64_t)TARGET_STOP_TIMEOUT_MS * 1000000ULL;
        (void)target__ptrace(PTRACE_INTERRUPT, t->pid, NULL, NULL);
        for (;;) {
                int status;
                bool undone;
                pid_t r = target__waitpid(t, t->pid, &status, WNOHANG, &undone);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 || (r > 0 && !WIFSTOPPED(status)))
                        return;
                if (r > 0) {
                        /* A signal-delivery-stop's signal goes on with the detach. */
                        int sig = (status >> 16) == 0 && WSTOPSIG(status) != (SIGTRAP | 0x80) && !undone ?
                                  WSTOPSIG(status) : 0;
                        (void)target__ptrace(PTRACE_DETACH, t->pid, NULL, (void *)(long)sig);
                        return;
                }
                if (target__now_ns() >= deadline) {
                        /* Still ours, its interrupt pending: detached once it stops. */
                        target__orphan_add(t->pid, t->pid);
                        return;
                }
                struct timespec ts = { 0, 1000000L };
                nanosleep(&ts, NULL);
        }
}
