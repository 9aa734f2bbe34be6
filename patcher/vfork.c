/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Processes in a vfork. A vfork child, until its exec or exit, runs on its parent's
 * memory: it is not a process of its own to patch (its one thread would stand for every
 * thread of the parent, which the transition would never look at: a revert through it
 * took the patch back from under the parent's threads), nor one to list as carrying
 * patches (it maps its parent's control block). Its parent's thread meanwhile waits in
 * uninterruptible sleep, which the ptrace layer names when it cannot stop it
 * (docs/stops.md, "A thread that cannot be stopped").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/vfork.h"

static ssize_t read_proc(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;

        if (n < 0)
                return -1;
        buf[n] = 0;
        return n;
}

/* The first fields of /proc/PID/task/TID/syscall are the call's number and arguments;
 * clone3's flags are the first field of the struct its first argument points to, read
 * from the process's memory. */
bool vfork_waits(pid_t pid, pid_t tid) {
        char path[64], buf[256];
        long nr = -1;
        unsigned long long arg = 0;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
        if (read_proc(path, buf, sizeof(buf)) <= 0 || sscanf(buf, "%ld %llx", &nr, &arg) < 1)
                return false;
        if (nr == SYS_clone3) {
                uint64_t flags = 0;

                snprintf(path, sizeof(path), "/proc/%d/mem", pid);
                _cleanup_close_ int mem = open(path, O_RDONLY | O_CLOEXEC);
                if (mem < 0 || pread(mem, &flags, sizeof(flags), (off_t) arg) != (ssize_t) sizeof(flags))
                        return false;
                return flags & CLONE_VFORK;
        }
        return nr == SYS_vfork || (nr == SYS_clone && (arg & CLONE_VFORK));
}

/* The state letter of a thread, 0 when unreadable. */
static char thread_state(pid_t pid, pid_t tid) {
        char path[64], buf[512];

        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
        if (read_proc(path, buf, sizeof(buf)) <= 0)
                return 0;
        char *p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

/* kcmp(KCMP_VM) answers exactly; where it is not there (no CONFIG_KCMP, a seccomp
 * filter) or not allowed, a thread of the parent waiting in vfork() in D state is taken
 * as the answer. */
pid_t vfork_parent_of(pid_t pid) {
        char path[64], buf[4096];
        pid_t ppid = 0, found = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        if (read_proc(path, buf, sizeof(buf)) <= 0)
                return 0;
        const char *p = strstr(buf, "\nPPid:");
        if (!p || (ppid = (pid_t) atoi(p + strlen("\nPPid:"))) <= 0 || ppid == pid)
                return 0;
        long r = syscall(SYS_kcmp, pid, ppid, KCMP_VM, 0, 0);
        if (r >= 0)
                return r == 0 ? ppid : 0;
        if (errno == ESRCH)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/task", ppid);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && !found && (de = readdir(d))) {
                pid_t tid = (pid_t) atoi(de->d_name);
                if (tid > 0 && thread_state(ppid, tid) == 'D' && vfork_waits(ppid, tid))
                        found = ppid;
        }
        if (d)
                closedir(d);
        return found;
}
