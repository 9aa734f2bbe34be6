/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A target process (target.h): opening it, its list of threads, freeing it, and the
 * small helpers of the ptrace layer. Stops are in target-stop.c, late threads and
 * orphans in target-late.c, memory in target-mem.c, the image binding in target-image.c.
 */

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/procmem.h"
#include "patcher/target-internal.h"
#include "patcher/target.h"

uint64_t target__now_ns(void) {
        return monotonic_ns();
}

static _Thread_local uint64_t ptrace_requests;

uint64_t target_ptrace_requests(void) {
        return ptrace_requests;
}

int target__ptrace(int req, pid_t tid, void *addr, void *data) {
        ptrace_requests++;
        if (ptrace((enum __ptrace_request)req, tid, addr, data) < 0)
                return negative_errno();
        return 0;
}

/* Reads /proc/PID/task/TID/FILE into buf with one read(), NUL-terminated: false when
 * unreadable or empty. */
static bool read_task_file(pid_t pid, pid_t tid, const char *file, char *buf, size_t size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", pid, tid, file);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, size - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        return true;
}

int target__parse_task_stat(const char *buf, TaskStat *ret) {
        const char *p;
        char *end;
        unsigned long long v[2];

        /* The name may hold spaces and parentheses: the fields start after the last ')'. */
        p = strrchr(buf, ')');
        if (!p || p[1] != ' ' || !p[2])
                return -EBADMSG;
        *ret = (TaskStat) { .state = p[2] };
        p += 2;
        /* Field 3 is the state: 28 fields on, the pending signals, then the blocked. */
        for (int field = 3; field < 31; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EBADMSG;
                p++;
        }
        for (int i = 0; i < 2; i++) {
                errno = 0;
                v[i] = strtoull(p, &end, 10);
                if (errno || end == p || (*end != ' ' && *end != '\n' && *end != 0))
                        return -EBADMSG;
                p = end;
        }
        ret->pending = (uint32_t)v[0];
        ret->blocked = (uint32_t)v[1];
        return 0;
}

int target_task_stat(pid_t pid, pid_t tid, TaskStat *ret) {
        char buf[1024];

        if (!read_task_file(pid, tid, "stat", buf, sizeof(buf)))
                return -ENOENT;
        return target__parse_task_stat(buf, ret);
}

char target__thread_state(pid_t pid, pid_t tid) {
        TaskStat s;
        return target_task_stat(pid, tid, &s) < 0 ? 0 : s.state;
}

/* The number in field name ("Threads:", ...) of a status file's text in buf, -1 when
 * the field is not there (never the first line: that is Name:). */
static int status_field(const char *buf, const char *name) {
        const char *p = strstr(buf, name);

        while (p && p != buf && p[-1] != '\n')
                p = strstr(p + 1, name);
        return p && p != buf ? atoi(p + strlen(name)) : -1;
}

uint64_t target__thread_cpu_ns(pid_t pid, pid_t tid) {
        char buf[128];
        unsigned long long ns;

        if (!read_task_file(pid, tid, "schedstat", buf, sizeof(buf)) || sscanf(buf, "%llu", &ns) != 1)
                return UINT64_MAX;
        return ns;
}

int target__nr_threads(pid_t pid) {
        char buf[4096];
        if (!read_task_file(pid, pid, "status", buf, sizeof(buf)))
                return -1;
        return status_field(buf, "Threads:");
}

uid_t target_fsuid(Target *t) {
        char buf[4096];
        const char *p;
        unsigned long u[4];

        if (!read_task_file(t->pid, t->pid, "status", buf, sizeof(buf)) || !(p = strstr(buf, "\nUid:")) ||
            sscanf(p + 5, "%lu %lu %lu %lu", &u[0], &u[1], &u[2], &u[3]) != 4)
                return (uid_t)-1;
        return (uid_t)u[3];
}

pid_t target__thread_tracer(pid_t pid, pid_t tid) {
        char buf[4096];
        if (!read_task_file(pid, tid, "status", buf, sizeof(buf)))
                return 0;
        return (pid_t) MAX(status_field(buf, "TracerPid:"), 0);
}

/* tracer is a thread of this process: this one, or another driver of ulpd (one that
 * keeps a late thread of the process, docs/daemon.md). */
static bool tracer_is_ulp(pid_t tracer) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tracer);
        return tracer == gettid() || access(path, F_OK) == 0;
}

/* tracer (a status text's TracerPid) holds th for another program. One we seized has
 * us for its tracer: the kernel allows one. */
static bool traced_by_other(const Thread *th, pid_t tracer) {
        return tracer > 0 && !th->seized && !tracer_is_ulp(tracer);
}

/* The first thread of t a program other than ulp traces, and that tracer; 0 when none
 * (as far as t's thread list knows). */
static pid_t foreign_tracer(Target *t, pid_t *ret_tracer) {
        for (size_t i = 0; i < t->n_threads; i++) {
                const Thread *th = &t->threads[i];
                pid_t tracer = th->gone || th->seized ? 0 : target__thread_tracer(t->pid, th->tid);
                if (traced_by_other(th, tracer)) {
                        *ret_tracer = tracer;
                        return th->tid;
                }
        }
        return 0;
}

bool target_traced_by_other(Target *t) {
        pid_t tracer;
        return foreign_tracer(t, &tracer) > 0;
}

/* The hex mask after name (e.g. "\nSigBlk:\t") in a status text, 0 when absent. */
static uint64_t status_mask(const char *buf, const char *name) {
        const char *p = strstr(buf, name);
        return p ? strtoull(p + strlen(name), NULL, 16) : 0;
}

void target__parse_look_status(const char *buf, char *ret_state, pid_t *ret_tracer, uint64_t *ret_blocked) {
        /* The name comes first and never holds a newline (the kernel escapes it). */
        const char *p = strstr(buf, "\nState:\t");

        *ret_state = p ? p[8] : 0;
        *ret_tracer = (pid_t) MAX(status_field(buf, "TracerPid:"), 0);
        *ret_blocked = status_mask(buf, "\nSigBlk:\t");
}

int target_look_threads(Target *t, TargetLook *ret) {
        char buf[4096];
        int r = target_refresh_threads(t);

        *ret = (TargetLook) {};
        if (r < 0)
                return r;
        for (size_t i = 0; i < t->n_threads; i++) {
                const Thread *th = &t->threads[i];
                uint64_t blocked;
                pid_t tracer;
                char state;

                /* Gone meanwhile: no question to ask of it. */
                if (th->gone || !read_task_file(t->pid, th->tid, "status", buf, sizeof(buf)))
                        continue;
                target__parse_look_status(buf, &state, &tracer, &blocked);
                if (state == 'D')
                        ret->uninterruptible = true;
                if (traced_by_other(th, tracer))
                        ret->traced_by_other = true;
                if (blocked & (1ULL << (SIGTRAP - 1)))
                        ret->blocks_sigtrap = true;
        }
        if (!ret->blocks_sigtrap)
                t->sigtrap_free_ns = target__now_ns();
        return 0;
}

/* A debugger or tracer attached to one of the threads: the kernel lets one tracer hold a
 * thread, so ulp cannot stop it, and says so before anything is written. */
void target_describe_tracer(Target *t, char *buf, size_t len) {
        pid_t tracer = 0, tid = foreign_tracer(t, &tracer);
        char comm[16];

        if (tid <= 0) {
                snprintf(buf, len, "one of its threads is traced by another program: a debugger or tracer "
                         "holds it; detach it first");
                return;
        }
        /* the tracer's name, its own thread's: /proc/P/task/P/comm */
        Target other = { .pid = tracer };
        target_thread_name(&other, tracer, comm);
        for (char *c = comm; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        *c = '?';
        snprintf(buf, len, "thread %d is traced by another program (pid %d, %s): a debugger or "
                 "tracer holds it; detach it first", (int)tid, (int)tracer, comm);
}

static Thread *target_add_thread(Target *t, pid_t tid) {
        if (t->n_threads == t->n_alloc) {
                size_t n = MAX(t->n_alloc * 2, (size_t)16);
                Thread *a = realloc(t->threads, n * sizeof(Thread));
                if (!a)
                        return NULL;
                t->threads = a;
                t->n_alloc = n;
        }
        Thread *th = &t->threads[t->n_threads++];
        memset(th, 0, sizeof(*th));
        th->tid = tid;
        return th;
}

Thread *target_find_thread(Target *t, pid_t tid) {
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].tid == tid)
                        return &t->threads[i];
        return NULL;
}

static size_t tid_hash(pid_t tid, size_t mask) {
        return (size_t)(((uint64_t)(uint32_t)tid * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

/* Rescans /proc/PID/task. A vanished thread we have seized is left to the wait that
 * reports its exit; a gone thread no longer listed is dropped, so that a reused tid
 * comes back as a new thread. */
/*
 * A thread taken for gone (its exit reaped) whose tid is listed again: the kernel gave
 * the tid to a new thread (tids wrap at pid_max, 32768 on many machines). Kept gone, it
 * would be left running by a stop of every thread and never looked at by a transition.
 * Not one still dying (a zombie listed a moment longer), nor one still traced by this
 * thread (a stop taken for an exit: target_release_forgotten()'s).
 */
static bool tid_reused(Target *t, const Thread *th) {
        char st = target__thread_state(t->pid, th->tid);

        return !th->seized && st && st != 'Z' && st != 'X' && target__thread_tracer(t->pid, th->tid) != gettid();
}

pid_t target_refresh_test_hide;

int target_refresh_threads(Target *t) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task", t->pid);
        DIR *d = opendir(path);
        if (!d)
                return errno == ENOENT ? -ESRCH : negative_errno();

        size_t n_before = t->n_threads;
        _cleanup_free_ bool *seen = calloc(n_before + 1, sizeof(bool));
        /* tid -> index + 1 of the threads known before, open addressing: a rescan of a
         * process with thousands of threads stays linear (it runs inside stop-the-world). */
        size_t order = 4;
        while (((size_t)1 << order) < 2 * n_before)
                order++;
        size_t mask = ((size_t)1 << order) - 1;
        _cleanup_free_ uint32_t *idx_of = calloc(mask + 1, sizeof(uint32_t));
        if (!seen || !idx_of) {
                closedir(d);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_before; i++) {
                size_t h = tid_hash(t->threads[i].tid, mask);
                while (idx_of[h])
                        h = (h + 1) & mask;
                idx_of[h] = (uint32_t)(i + 1);
        }
        int n_new = 0, r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                char *end;
                long tid = strtol(de->d_name, &end, 10);
                if (*end || tid <= 0)
                        continue;
                if (tid == target_refresh_test_hide) {
                        target_refresh_test_hide = 0;
                        continue;
                }
                Thread *th = NULL;
                for (size_t h = tid_hash((pid_t)tid, mask); idx_of[h]; h = (h + 1) & mask)
                        if (t->threads[idx_of[h] - 1].tid == (pid_t)tid) {
                                th = &t->threads[idx_of[h] - 1];
                                break;
                        }
                if (!th) {
                        th = target_add_thread(t, (pid_t)tid);
                        if (!th) {
                                r = -ENOMEM;
                                break;
                        }
                        n_new++;
                } else if (th->gone && tid_reused(t, th)) {
                        memset(th, 0, sizeof(*th));
                        th->tid = (pid_t)tid;
                        n_new++;
                }
                size_t idx = (size_t)(th - t->threads);
                if (idx < n_before)
                        seen[idx] = true;
        }
        closedir(d);
        if (r < 0)
                return r;
        size_t j = 0;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (i < n_before && !seen[i] && !th->seized)
                        th->gone = true;
                if (i < n_before && !seen[i] && th->gone && !th->seized)
                        continue;       /* dropped */
                if (j != i)
                        t->threads[j] = *th;
                j++;
        }
        t->n_threads = j;
        return n_new;
}

int target_open(pid_t pid, Target **ret) {
        char path[64];
        pid_t tracer = 0;

        if (pid <= 0)
                return -ESRCH;
        /* A tid of a thread also has a /proc entry; only a process will do, and not
         * one whose leader is dead (zombie): its /proc/PID/mem has no memory. Such a
         * process may still run other threads (its main thread called pthread_exit()):
         * the count of its threads, the dead leader's among them, tells. */
        char st = target__thread_state(pid, pid);
        if (st == 0 || st == 'X')
                return -ESRCH;
        if (st == 'Z')
                return target__nr_threads(pid) > 1 ? -EOWNERDEAD : -ESRCH;
        snprintf(path, sizeof(path), "/proc/%d/task/%d", pid, pid);
        if (access(path, F_OK) < 0)
                return -ESRCH;
        {
                snprintf(path, sizeof(path), "/proc/%d/status", pid);
                char buf[4096];
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
                if (n <= 0)
                        return -ESRCH;
                buf[n] = 0;
                if (status_field(buf, "Tgid:") != pid)
                        return -ESRCH;
                tracer = (pid_t) MAX(status_field(buf, "TracerPid:"), 0);
        }

        /* Opening /proc/PID/mem read-write asks the kernel the same question as
         * PTRACE_ATTACH (ptrace_may_access, PTRACE_MODE_ATTACH, Yama included) and
         * attaches nothing. */
        snprintf(path, sizeof(path), "/proc/%d/mem", pid);
        _cleanup_close_ int mem_fd = open(path, O_RDWR | O_CLOEXEC);
        if (mem_fd < 0)
                return errno == ENOENT || errno == ESRCH ? -ESRCH :
                       errno == EACCES || errno == EPERM ? -EPERM : negative_errno();

        _cleanup_free_ Target *t = calloc(1, sizeof(Target));
        if (!t)
                return -ENOMEM;
        t->pid = pid;
        t->mem_fd = -1;
        t->auth_fd = -1;
        if (tracer > 0 && !tracer_is_ulp(tracer))
                t->foreign_tracer = tracer;
        int r = target_refresh_threads(t);
        if (r < 0) {
                free(t->threads);
                return r;
        }
        t->mem_fd = TAKE_FD(mem_fd);
        *ret = TAKE_PTR(t);
        return 0;
}

/*
 * The last guard against a thread left traced: one seized by this Target and since
 * taken for gone, though its tracer is still us (a stop report taken for an exit, see
 * target__reap_exited). In a ptrace-stop nobody would ever end, it would be frozen, and
 * its process unreapable after a kill: detached now if it is stopped, kept as an orphan
 * otherwise (its next stop or exit is reported to target_collect_orphans()). Only gone
 * threads are looked at: one /proc read each, for threads that exited meanwhile.
 */
static void target_release_forgotten(Target *t) {
        pid_t self = gettid();

        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (!th->gone || !th->was_seized || target__thread_tracer(t->pid, th->tid) != self)
                        continue;
                if (target__ptrace(PTRACE_DETACH, th->tid, NULL, NULL) < 0)
                        target__orphan_add(t->pid, th->tid);
        }
}

void target_free(Target *t) {
        if (!t)
                return;
        /* Detaches what is stopped; what is not (late threads, dying ones whose exit is
         * still to be reaped) is left to target_collect_orphans(), without waiting here:
         * a vfork parent may not stop for seconds, and the caller may be a service loop. */
        (void) target__release_all(t, 0);
        target__release_exec_leader(t);
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].seized && !t->threads[i].gone)
                        target__orphan_add(t->pid, t->threads[i].tid);
        target_release_forgotten(t);
        (void) target_write_gather_end(t);
        procmaps_drop(t);
        if (t->mem_fd >= 0)
                close(t->mem_fd);
        if (t->auth_fd >= 0)
                close(t->auth_fd);
        free(t->threads);
        free(t);
}

/* Prefers a thread that keeps no signal and is not job-control stopped: a remote
 * operation on it has the least to take care of. */
Thread *target_any_stopped(Target *t) {
        Thread *best = NULL;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (!th->stopped || th->gone)
                        continue;
                if (th->held_sig == 0 && !th->group_stopped)
                        return th;
                if (!best || (best->held_sig && !th->held_sig))
                        best = th;
        }
        return best;
}

int target_set_regs(Target *t, Thread *th) {
        if (!th->stopped || th->gone)
                return -ESRCH;
        return target__ptrace(PTRACE_SETREGS, th->tid, NULL, &th->regs);
}

void target_thread_name(Target *t, pid_t tid, char buf[static 16]) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", t->pid, tid);
        strcpy(buf, "?");
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, 15);
        if (n <= 0) {
                strcpy(buf, "?");
                return;
        }
        buf[n] = 0;
        char *nl = strchr(buf, '\n');
        if (nl)
                *nl = 0;
}
