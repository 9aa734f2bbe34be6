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
#include "ulp/libulp.h"

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

/* The last child thread tid of pid made (/proc/PID/task/TID/children lists them in
 * the order they were made), 0 none or unreadable. */
static pid_t last_child(pid_t pid, pid_t tid) {
        char path[64], buf[4096];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, tid);
        if ((n = read_proc(path, buf, sizeof(buf))) <= 0 || n >= (ssize_t) sizeof(buf) - 1)
                return 0;
        while (n > 0 && buf[n - 1] == ' ')
                buf[--n] = 0;
        const char *p = strrchr(buf, ' ');
        return (pid_t) atoi(p ? p + 1 : buf);
}

/* Whether pid and tid share one address space: 1, 0, or -errno when kcmp() cannot
 * tell (missing, not allowed). */
static int same_vm(pid_t pid, pid_t tid) {
        long r = syscall(SYS_kcmp, pid, tid, KCMP_VM, 0, 0);
        return r >= 0 ? r == 0 : -errno;
}

/* kcmp(KCMP_VM) answers exactly, against each live thread of the parent (its leader may
 * have exited, leaving no memory to compare with). Where kcmp is missing or not allowed
 * (no CONFIG_KCMP, a seccomp filter), pid stands for a vfork child when a thread of its
 * parent waits in vfork() in D and pid is the last child that thread made: a thread
 * waiting in vfork cannot make another. A kernel thread has no memory at all (no VmSize
 * in its status): never a vfork child. */
pid_t vfork_parent_of(pid_t pid) {
        char path[64], buf[4096];
        pid_t ppid = 0, found = 0;
        int same = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        if (read_proc(path, buf, sizeof(buf)) <= 0 || !strstr(buf, "\nVmSize:"))
                return 0;
        const char *p = strstr(buf, "\nPPid:");
        if (!p || (ppid = (pid_t) atoi(p + strlen("\nPPid:"))) <= 0 || ppid == pid)
                return 0;
        same = same_vm(pid, ppid);
        if (same == 1)
                return ppid;
        if (same == -ESRCH || (same == 0 && thread_state(ppid, ppid) != 'Z'))
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/task", ppid);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && !found && (de = readdir(d))) {
                pid_t tid = (pid_t) atoi(de->d_name);
                if (tid <= 0 || tid == ppid)
                        continue;
                if (same == 0) {    /* the leader, a zombie, has no memory left */
                        if (same_vm(pid, tid) == 1)
                                found = ppid;
                        continue;
                }
                if (thread_state(ppid, tid) == 'D' && vfork_waits(ppid, tid) && last_child(ppid, tid) == pid)
                        found = ppid;
        }
        if (d)
                closedir(d);
        if (!found && same < 0 && thread_state(ppid, ppid) == 'D' && vfork_waits(ppid, ppid) &&
            last_child(ppid, ppid) == pid)
                found = ppid;
        return found;
}

pid_t ulp_vfork_parent(pid_t pid) {
        return vfork_parent_of(pid);
}
