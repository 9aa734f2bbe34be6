/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ptrace session on a target process: seizing, stopping and resuming threads,
 * keeping the signals that arrive meanwhile, and the target's memory.
 *
 * Stops, as this file sees them (PTRACE_SEIZE semantics):
 *   - PTRACE_EVENT_STOP with SIGTRAP: our PTRACE_INTERRUPT;
 *   - PTRACE_EVENT_STOP with SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU: the process is in (or
 *     entering) a job-control stop. PTRACE_DETACH puts the thread back into it
 *     (__ptrace_unlink() sets JOBCTL_STOP_PENDING while SIGNAL_STOP_STOPPED), so nothing
 *     to do but remember it;
 *   - a signal-delivery-stop: a signal was dequeued before our interrupt trapped. The
 *     thread stays in that stop, counted as stopped (its registers are valid), and
 *     PTRACE_DETACH delivers the signal with its original siginfo. The interrupt is still
 *     pending then; detaching clears it (__ptrace_unlink() clears JOBCTL_TRAP_MASK).
 * All three happen inside get_signal(), before the kernel's syscall-restart logic, so
 * a thread stopped inside a blocking syscall restarts it when detached, as if nothing
 * happened. The remote operations (x86_64/remote.c) end in such a stop too.
 *
 * Waits poll waitpid(WNOHANG) with a short spin then a growing sleep: a thread in an
 * uninterruptible sleep (vfork parent, D state) must not hang us.
 */

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "common/macro.h"
#include "patcher/target.h"

#define SPIN_NS 20000ULL              /* poll this long before napping */
#define NAP_NS 200000L

/* The benchmarks' observer (target.h); process-wide on purpose: it watches every Target. */
static TargetStopHook stop_hook;
static void *stop_hook_data;

void target_set_stop_hook(TargetStopHook hook, void *userdata) {
        stop_hook = hook;
        stop_hook_data = userdata;
}

uint64_t target__now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int target__ptrace(int req, pid_t tid, void *addr, void *data) {
        if (ptrace((enum __ptrace_request)req, tid, addr, data) < 0)
                return negative_errno();
        return 0;
}

static int stop_timeout_ms(const Target *t) {
        return t->stop_timeout_ms > 0 ? t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS;
}

/* One step of a poll loop that started at start_ns: yields the CPU early on (stops
 * take microseconds), sleeps longer and longer later. */
/*
 * Between two WNOHANG looks: a nap that a tracee's stop ends at once. SIGCHLD is
 * blocked only for the nap, so one raised just before it was discarded (SIGCHLD's
 * default disposition) and the nap runs its 200 us: that bounds the extra latency.
 */
static void poll_backoff(uint64_t start_ns, uint64_t now_ns) {
        sigset_t chld, old;
        struct timespec ts = { 0, NAP_NS };

        if (now_ns - start_ns < SPIN_NS)
                return;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, &old);
        (void)sigtimedwait(&chld, NULL, &ts);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void thread_mark_gone(Thread *th) {
        th->gone = true;
        th->seized = false;
        th->stopped = false;
        th->signal_stop = false;
        th->pending_sig = 0;
        th->asked_ns = 0;
        th->late = false;
}

/*
 * Orphans: threads seized by a Target that was freed before they stopped. They stay
 * traced by the thread that seized them until they stop (the kernel detaches only a
 * stopped tracee), so the list is per calling thread, not per process: a tracee of
 * another thread of ours cannot be waited for or detached from this one.
 */
typedef struct Orphan {
        pid_t pid, tid;
} Orphan;

static __thread Orphan *orphans;
static __thread size_t n_orphans, n_orphans_alloc;

static void orphan_add(pid_t pid, pid_t tid) {
        if (n_orphans == n_orphans_alloc) {
                size_t n = MAX(n_orphans_alloc * 2, (size_t)8);
                Orphan *a = realloc(orphans, n * sizeof(Orphan));
                if (!a)
                        return;   /* it stays traced until we exit: nothing better to do */
                orphans = a;
                n_orphans_alloc = n;
        }
        orphans[n_orphans++] = (Orphan) { pid, tid };
}

/* True (and forgotten) when tid of pid is one of our orphans: it is still ours to wait for. */
static bool orphan_take(pid_t pid, pid_t tid) {
        for (size_t i = 0; i < n_orphans; i++)
                if (orphans[i].tid == tid && orphans[i].pid == pid) {
                        orphans[i] = orphans[--n_orphans];
                        return true;
                }
        return false;
}

static bool is_group_stop_sig(int sig) {
        return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* A non-blocking waitpid on one seized thread: 1 with *ret_status when it reported,
 * 0 when it has nothing to report, -ESRCH (marked gone) when it exited. */
static int thread_poll(Thread *th, int *ret_status) {
        for (;;) {
                int status;
                pid_t r = waitpid(th->tid, &status, __WALL | WNOHANG);
                if (r == 0)
                        return 0;
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == ECHILD) {  /* reaped elsewhere or no longer ours */
                                thread_mark_gone(th);
                                return -ESRCH;
                        }
                        return negative_errno();
                }
                if (WIFEXITED(status) || WIFSIGNALED(status)) {
                        thread_mark_gone(th);
                        return -ESRCH;
                }
                *ret_status = status;
                return 1;
        }
}

/*
 * Waits for th's next ptrace-stop. A tracee's stop raises SIGCHLD in the tracer: with
 * SIGCHLD blocked in this thread, sigtimedwait() sleeps exactly until some tracee
 * reported (a pending one from a stop already collected only costs one more
 * WNOHANG look). Slices of 1 ms bound the cost of a SIGCHLD taken by another thread
 * of a multithreaded caller. The caller's mask is restored; a SIGCHLD this consumes
 * is one a tracer gets for its tracees anyway.
 */
int target__wait(Target *t, Thread *th, int timeout_ms, int *ret_status) {
        sigset_t chld, old;
        uint64_t start = target__now_ns(), deadline = start + (uint64_t)timeout_ms * 1000000ULL;
        int r;

        /* The common case: the thread stops within microseconds. */
        for (int spin = 0; spin < 64; spin++) {
                r = thread_poll(th, ret_status);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, &old);
        for (;;) {
                uint64_t now;
                r = thread_poll(th, ret_status);
                if (r != 0)
                        break;
                now = target__now_ns();
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                struct timespec ts = { 0, (long)MIN(deadline - now, 1000000ULL) };
                (void)sigtimedwait(&chld, NULL, &ts);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r < 0 ? r : 0;
}

void target__reap_exited(Target *t, const Thread *except) {
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                siginfo_t info = {};

                if (th == except || !th->seized || th->gone)
                        continue;
                if (waitid(P_PID, (id_t)th->tid, &info, WEXITED | WNOHANG | __WALL) == 0 &&
                    info.si_pid == th->tid)
                        thread_mark_gone(th);
        }
}

/* Queues sig back to the thread, keeping the siginfo when the kernel lets us
 * (rt_tgsigqueueinfo refuses kernel and kill()-style codes from another process). */
static void thread_requeue_signal(Target *t, Thread *th, int sig, const siginfo_t *info) {
        if (info && info->si_signo == sig && info->si_code < 0 && info->si_code != SI_TKILL) {
                siginfo_t copy = *info;
                if (syscall(SYS_rt_tgsigqueueinfo, t->pid, th->tid, sig, &copy) == 0)
                        return;
        }
        (void) syscall(SYS_tgkill, t->pid, th->tid, sig);
}

void target__keep_signal(Target *t, Thread *th, int sig, const siginfo_t *info) {
        if (th->pending_sig == 0) {
                th->pending_sig = sig;
                if (info)
                        th->pending_info = *info;
                else {
                        memset(&th->pending_info, 0, sizeof(th->pending_info));
                        th->pending_info.si_signo = sig;
                        th->pending_info.si_code = SI_KERNEL;
                }
                return;
        }
        /* Only one kept per thread: the later one goes back to the kernel's queue. A
         * traced, stopped thread does not dequeue it; it is delivered after detach. */
        thread_requeue_signal(t, th, sig, info);
}

int target__settle(Target *t, Thread *th, bool in_signal_stop) {
        th->signal_stop = in_signal_stop;
        if (th->pending_sig == 0)
                return 0;
        if (in_signal_stop)
                /* Detaching with data == pending_sig then delivers exactly this siginfo
                 * (ptrace_signal() keeps it when si_signo matches). */
                return target__ptrace(PTRACE_SETSIGINFO, th->tid, NULL, &th->pending_info);
        /* An event stop ignores PTRACE_DETACH's data: queue it back instead. */
        thread_requeue_signal(t, th, th->pending_sig, &th->pending_info);
        th->pending_sig = 0;
        return 0;
}

/* Records a ptrace-stop reported by waitpid for a thread we are stopping. Every stop
 * counts (see the top of the file); reads the registers. */
static int thread_record_stop(Target *t, Thread *th, int status) {
        int sig = WSTOPSIG(status), event = status >> 16;

        th->signal_stop = false;
        if (event == PTRACE_EVENT_EXEC)
                t->image_changed = true;   /* not the program we were asked to work on */
        if (event == PTRACE_EVENT_STOP) {
                if (is_group_stop_sig(sig))
                        th->group_stopped = true;
        } else if (event == 0 && sig != (SIGTRAP | 0x80)) {
                siginfo_t info;
                bool have = target__ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &info) >= 0;
                target__keep_signal(t, th, sig, have ? &info : NULL);
                th->signal_stop = true;
        }
        th->stopped = true;
        th->asked_ns = 0;
        th->late = false;
        th->seen_ns = target__now_ns();
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &th->regs);
        if (r == -ESRCH)  /* killed while stopped: the exit is reported later */
                return 0;
        return r;
}

/* Reads one field of /proc/PID/task/TID/stat: the state letter, 0 when unreadable. */
static char thread_state(pid_t pid, pid_t tid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

static bool thread_traced_by_other(pid_t pid, pid_t tid) {
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        char *p = strstr(buf, "\nTracerPid:");
        return p && atoi(p + strlen("\nTracerPid:")) != 0;
}

/* Seizes th and asks it to stop; the stop is collected by a wait. -ESRCH when it is
 * gone (or a zombie), -EBUSY when another tracer has it, -EPERM when not allowed. */
static int thread_seize_interrupt(Target *t, Thread *th) {
        int r;

        if (!th->seized) {
                /* A late thread of a Target freed before it stopped is still ours. An
                 * exec while attached stops with PTRACE_EVENT_EXEC (see
                 * thread_record_stop) instead of running on in a new program. */
                r = n_orphans && orphan_take(t->pid, th->tid) ? 0 :
                    target__ptrace(PTRACE_SEIZE, th->tid, NULL, (void *)(long)TARGET_PTRACE_OPTIONS);
                if (r == -EPERM) {
                        /* ptrace_attach() says EPERM for an exiting thread too. */
                        char st = thread_state(t->pid, th->tid);
                        if (st == 0 || st == 'Z' || st == 'X')
                                r = -ESRCH;
                        else if (thread_traced_by_other(t->pid, th->tid))
                                r = -EBUSY;
                }
                if (r == -ESRCH)
                        thread_mark_gone(th);
                if (r < 0)
                        return r;
                th->seized = true;
                th->stopped = false;
                th->signal_stop = false;
                th->group_stopped = false;
                th->pending_sig = 0;
        }
        th->stop_ns = target__now_ns();
        th->late = false;        /* waited for again by our caller */
        if (!th->asked_ns)
                th->asked_ns = th->stop_ns;
        r = target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL);
        if (r == -ESRCH) /* exiting: its exit is reported to the wait */
                return 0;
        return r;
}

/* Detaches a stopped thread, delivering its kept signal. For a thread not stopped
 * (it did not stop in time) one more look; if still running it stays seized: -EBUSY. */
static int thread_detach(Target *t, Thread *th) {
        if (!th->seized)
                return 0;
        if (!th->stopped) {
                int status, r = thread_poll(th, &status);
                if (r < 0)
                        return r == -ESRCH ? 0 : r;
                if (r == 0)
                        return -EBUSY;
                thread_record_stop(t, th, status);
        }
        for (int attempt = 0;; attempt++) {
                if (th->pending_sig && !th->signal_stop)
                        (void) target__settle(t, th, false);
                int sig = th->signal_stop ? th->pending_sig : 0;
                int r = target__ptrace(PTRACE_DETACH, th->tid, NULL, (void *)(long)sig);
                if (r == 0) {
                        th->seized = false;
                        th->stopped = false;
                        th->signal_stop = false;
                        th->pending_sig = 0;
                        th->asked_ns = 0;
                        th->late = false;
                        return 0;
                }
                if (r != -ESRCH)
                        return r;
                /* Not in a ptrace-stop: killed while stopped (SIGKILL, another thread's
                 * exit_group). It is still ours until its exit is reaped, and its leader
                 * cannot report its own exit before: it stays seized, not stopped, and
                 * target_release_all() or the next wait collects it. Should it have
                 * stopped again meanwhile, detach once more. */
                int status;
                th->stopped = false;
                th->signal_stop = false;
                if (thread_poll(th, &status) != 1 || attempt >= 3)
                        return 0;
                (void) thread_record_stop(t, th, status);
        }
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

        if (pid <= 0)
                return -ESRCH;
        /* A tid of a thread also has a /proc entry; only a process will do, and not
         * one whose leader is dead (zombie): its /proc/PID/mem has no memory. */
        char st = thread_state(pid, pid);
        if (st == 0 || st == 'Z' || st == 'X')
                return -ESRCH;
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
                char *p = strstr(buf, "\nTgid:");
                if (!p || atoi(p + strlen("\nTgid:")) != pid)
                        return -ESRCH;
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
        int r = target_refresh_threads(t);
        if (r < 0) {
                free(t->threads);
                return r;
        }
        t->mem_fd = TAKE_FD(mem_fd);
        *ret = TAKE_PTR(t);
        return 0;
}

bool target_thread_late(const Thread *th) {
        return th->late && th->seized && !th->stopped && !th->gone;
}

/* Every thread of v (or of t, v NULL) that is being waited for and has not stopped: no
 * longer waited for. */
static void mark_late(Target *t, Thread **v, size_t n) {
        bool noted = false;
        for (size_t i = 0; i < (v ? n : t->n_threads); i++) {
                Thread *th = v ? v[i] : &t->threads[i];
                if (!th || !th->seized || th->stopped || th->gone)
                        continue;
                th->late = true;
                if (!noted)
                        target_note_late(t, th);
                noted = true;
        }
}

/* Threads that did not stop in time are still seized: collect those that stopped since
 * and detach them. */
size_t target_collect_late(Target *t) {
        size_t left = 0;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (target_thread_late(th))
                        (void) thread_detach(t, th);
                left += target_thread_late(th);
        }
        return left;
}

static bool target_release_all(Target *t, int timeout_ms);

static int target_detach_all(Target *t) {
        int ret = 0;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (th->seized && !th->gone) {
                        int r = thread_detach(t, th);
                        /* -EBUSY: late, still running; detached when it stops. */
                        if (r < 0 && r != -EBUSY && ret == 0)
                                ret = r;
                }
        }
        return ret;
}

void target_free(Target *t) {
        if (!t)
                return;
        /* Detaches what is stopped; what is not (late threads, dying ones whose exit is
         * still to be reaped) is left to target_collect_orphans(), without waiting here:
         * a vfork parent may not stop for seconds, and the caller may be a service loop. */
        (void) target_release_all(t, 0);
        target__release_exec_leader(t);
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].seized && !t->threads[i].gone)
                        orphan_add(t->pid, t->threads[i].tid);
        if (t->mem_fd >= 0)
                close(t->mem_fd);
        if (t->auth_fd >= 0)
                close(t->auth_fd);
        free(t->threads);
        free(t);
}

/* Waits until every seized thread has stopped or exited, within the deadline. Polls
 * them all in turn, and the already stopped ones too once it takes long, because a
 * thread killed while stopped (exit_group) must be reaped before its leader reports. */
static int target_wait_all(Target *t, uint64_t start_ns) {
        uint64_t timeout_ns = (uint64_t)stop_timeout_ms(t) * 1000000ULL;

        for (unsigned round = 0;; round++) {
                size_t waiting = 0;
                for (size_t i = 0; i < t->n_threads; i++) {
                        Thread *th = &t->threads[i];
                        if (!th->seized || th->gone || (th->stopped && round < 8))
                                continue;
                        int status, r = thread_poll(th, &status);
                        if (r == -ESRCH)
                                continue;
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                waiting += !th->stopped;
                                continue;
                        }
                        r = thread_record_stop(t, th, status);
                        if (r < 0)
                                return r;
                }
                if (waiting == 0)
                        return 0;
                uint64_t now = target__now_ns();
                if (now - start_ns >= timeout_ns) {
                        mark_late(t, NULL, 0);
                        return -ETIMEDOUT;
                }
                poll_backoff(start_ns, now);
        }
}

/* Stop-the-world: see target.h. A pass seizes and interrupts every known thread, waits
 * for all, then rescans; a thread can only be created by a running one, so a rescan
 * that finds nothing new after a pass where all stopped means all are stopped. */
int target_stop_all(Target *t) {
        int r;

        /* No rescan before the first pass: the one after it finds whatever is new. */
        target_collect_late(t);
        /* One still late from an earlier try and in uninterruptible sleep will not stop
         * now either: holding every other thread stopped while waiting for it would only
         * freeze the process. Fail at once; the caller tries again later. */
        for (size_t i = 0; i < t->n_threads; i++)
                if (target_thread_late(&t->threads[i]) && thread_state(t->pid, t->threads[i].tid) == 'D') {
                        target_note_late(t, &t->threads[i]);
                        return -ETIMEDOUT;
                }
        for (;;) {
                uint64_t start = target__now_ns();
                for (size_t i = 0; i < t->n_threads; i++) {
                        Thread *th = &t->threads[i];
                        if (th->gone || th->stopped)
                                continue;
                        r = thread_seize_interrupt(t, th);
                        if (r == -ESRCH)
                                continue;
                        if (r < 0)
                                goto fail;
                }
                r = target_wait_all(t, start);
                if (r < 0)
                        goto fail;
                Thread *leader = target_find_thread(t, t->pid);
                if (!leader || leader->gone) {
                        r = -ESRCH;
                        goto fail;
                }
                r = target_refresh_threads(t);
                if (r < 0)
                        goto fail;
                if (r == 0) {
                        r = target__check_image(t);
                        if (r < 0)
                                goto fail;
                        return 0;
                }
        }
fail:
        /* Late threads are not waited for here (a vfork parent may take seconds); dying
         * ones get a moment to be reaped. */
        (void) target_release_all(t, r == -ETIMEDOUT ? 0 : 100);
        return r;
}

/* Detaches everything and, for up to timeout_ms, collects the threads that are still
 * seized: dying ones (their exits must be reaped by us, the tracer) and ones that had
 * not stopped in time. True when none is left. */
static bool target_release_all(Target *t, int timeout_ms) {
        uint64_t start = target__now_ns();
        for (;;) {
                (void) target_detach_all(t);
                bool left = false;
                for (size_t i = 0; i < t->n_threads; i++)
                        left |= t->threads[i].seized && !t->threads[i].gone;
                uint64_t now = target__now_ns();
                if (!left)
                        return true;
                if (now - start >= (uint64_t)timeout_ms * 1000000ULL)
                        return false;
                poll_backoff(start, now);
        }
}

int target_resume_all(Target *t) {
        uint64_t first = UINT64_MAX, last = 0;
        unsigned n = 0;
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].stopped && !t->threads[i].gone) {
                        first = MIN(first, t->threads[i].stop_ns);
                        last = MAX(last, t->threads[i].seen_ns);
                        n++;
                }
        int r = target_detach_all(t);
        if (first != UINT64_MAX) {
                uint64_t now = target__now_ns();
                t->max_stw_ns = MAX(t->max_stw_ns, now - first);
                if (stop_hook)
                        stop_hook(&(TargetStopEvent) { .pid = t->pid, .n_threads = n, .requested_ns = first,
                                                       .stopped_ns = last, .resumed_ns = now }, stop_hook_data);
        }
        /* Threads killed meanwhile: reap them now, so that the process's exit is not
         * held back until our next call. */
        bool dying = false;
        for (size_t i = 0; i < t->n_threads; i++)
                dying |= t->threads[i].seized && !t->threads[i].gone;
        if (dying)
                (void) target_release_all(t, 100);
        return r;
}

/* One thread, for its stack check: must be fast (see the benchmark in tests/ptrace):
 * seize, interrupt, wait, read registers; no /proc access unless something fails. */
static int target_stop_thread_within(Target *t, Thread *th, int timeout_ms);

int target_stop_thread(Target *t, Thread *th) {
        return target_stop_thread_within(t, th, stop_timeout_ms(t));
}

static int target_stop_thread_within(Target *t, Thread *th, int timeout_ms) {
        if (th->gone)
                return -ESRCH;
        if (th->stopped)
                return 0;
        int r = thread_seize_interrupt(t, th);
        if (r < 0)
                return r;
        int status;
        r = target__wait(t, th, timeout_ms, &status);
        if (r == -ETIMEDOUT)    /* stays seized, late: detached when it stops (target.h) */
                mark_late(t, &th, 1);
        if (r < 0)
                return r;   /* -ETIMEDOUT: stays seized, collected later */
        r = thread_record_stop(t, th, status);
        if (r >= 0)
                r = target__check_image_thread(t, th);
        if (r == -ESTALE)
                (void) thread_detach(t, th);
        return r;
}

int target_request_stop(Target *t, Thread *th) {
        if (th->gone)
                return -ESRCH;
        if (th->stopped)
                return 0;
        return thread_seize_interrupt(t, th);
}

/*
 * Collects the first of the n threads in v whose stop was requested: polls each with
 * WNOHANG, napping on SIGCHLD between rounds (see target__wait). Threads found gone
 * are marked so and skipped. -ETIMEDOUT when none stopped in time, -ESRCH when all
 * are gone.
 */
int target_wait_any(Target *t, Thread **v, size_t n, int timeout_ms, Thread **ret) {
        uint64_t deadline = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
        sigset_t chld, old;
        int r = -ETIMEDOUT;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, &old);
        for (;;) {
                size_t live = 0;
                for (size_t i = 0; i < n; i++) {
                        int status, k;
                        if (!v[i] || v[i]->gone)
                                continue;
                        if (v[i]->stopped) {
                                *ret = v[i];
                                r = 0;
                                goto out;
                        }
                        live++;
                        k = thread_poll(v[i], &status);
                        if (k < 0)
                                continue; /* gone: marked by thread_poll */
                        if (k > 0) {
                                r = thread_record_stop(t, v[i], status);
                                if (r >= 0)
                                        r = target__check_image_thread(t, v[i]);
                                if (r == -ESTALE)
                                        (void) thread_detach(t, v[i]);
                                if (r >= 0) {
                                        *ret = v[i];
                                        r = 0;
                                }
                                goto out;
                        }
                }
                uint64_t now = target__now_ns();
                if (live == 0) {
                        r = -ESRCH;
                        break;
                }
                if (now >= deadline) {
                        mark_late(t, v, n);
                        break;
                }
                struct timespec ts = { 0, (long)MIN(deadline - now, 1000000ULL) };
                (void)sigtimedwait(&chld, NULL, &ts);
        }
out:
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r;
}

int target_resume_thread(Target *t, Thread *th) {
        uint64_t since = th->stopped ? th->stop_ns : 0, seen = th->seen_ns;
        pid_t tid = th->tid;
        int r = thread_detach(t, th);
        /* Threads asked to stop and not waited for (target_stop_any, a timed-out wait)
         * must not sit in their stop until our next call: one look each. */
        if (t->maybe_late)
                t->maybe_late = target_collect_late(t) > 0;
        if (since) {
                uint64_t now = target__now_ns();
                t->max_thread_stop_ns = MAX(t->max_thread_stop_ns, now - since);
                if (stop_hook)
                        stop_hook(&(TargetStopEvent) { .pid = t->pid, .tid = tid, .n_threads = 1,
                                                       .requested_ns = since, .stopped_ns = seen,
                                                       .resumed_ns = now }, stop_hook_data);
        }
        return r;
}

/* How often a borrow looks at the state of the thread it waits for. */
#define STOP_ANY_SLICE_MS 100

/*
 * One thread at a time, the leader first: asking every thread at once would leave all
 * but one late, stopped a moment later and held until someone collects them. Waiting
 * is only given up for a thread in uninterruptible sleep (it stays late); one that is
 * merely slow (a loaded machine) is waited for until the deadline.
 */
int target_stop_any(Target *t, int timeout_ms, Thread **ret) {
        uint64_t deadline = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
        Thread *leader = target_find_thread(t, t->pid);
        int r = -ESRCH;

        for (size_t k = 0; k <= t->n_threads; k++) {
                Thread *th = k == 0 ? leader : &t->threads[k - 1];
                if (!th || th->gone || (k > 0 && th == leader))
                        continue;
                if (th->stopped) {
                        *ret = th;
                        return 0;
                }
                if (k > 0 && thread_state(t->pid, th->tid) == 'D')
                        continue;
                r = target_request_stop(t, th);
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                for (;;) {
                        Thread *got = NULL;
                        uint64_t now = target__now_ns();
                        if (now >= deadline)
                                return -ETIMEDOUT;   /* th marked late by the wait */
                        r = target_wait_any(t, &th, 1, (int)MIN((deadline - now) / 1000000ULL + 1,
                                                                (uint64_t)STOP_ANY_SLICE_MS), &got);
                        if (r == 0) {
                                *ret = got;
                                return 0;
                        }
                        if (r != -ETIMEDOUT || thread_state(t->pid, th->tid) == 'D')
                                break;
                        th->late = false;    /* still waited for */
                }
                if (r != -ETIMEDOUT && r != -ESRCH)
                        return r;
        }
        return r == -ESRCH ? -ESRCH : -ETIMEDOUT;
}

/* True when the thread sits in vfork(), or in clone() with CLONE_VFORK (posix_spawn):
 * the first fields of /proc/PID/task/TID/syscall are the call's number and arguments. */
static bool thread_in_vfork(pid_t pid, pid_t tid) {
        char path[64], buf[256];
        long nr = -1;
        unsigned long long flags = 0;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
                return false;
        buf[n] = 0;
        if (sscanf(buf, "%ld %llx", &nr, &flags) < 1)
                return false;
        return nr == SYS_vfork || (nr == SYS_clone && (flags & CLONE_VFORK));
}

void target_note_late(Target *t, const Thread *th) {
        t->late_tid = th->tid;
        t->late_state = thread_state(t->pid, th->tid);
        t->late_vfork = t->late_state == 'D' && thread_in_vfork(t->pid, th->tid);
        t->late_waited_ns = th->asked_ns ? target__now_ns() - th->asked_ns : 0;
        t->maybe_late = true;
}

static void late_what(const Target *t, char *buf, size_t len) {
        if (t->late_state == 'D')
                snprintf(buf, len, "uninterruptible sleep%s", t->late_vfork ? " (vfork parent waiting for its child)" : "");
        else if (t->late_state)
                snprintf(buf, len, "state %c", t->late_state);
        else
                snprintf(buf, len, "state unknown");
}

void target_describe_late(Target *t, char *buf, size_t len) {
        char comm[16], what[64];
        unsigned long long ms = t->late_waited_ns / 1000000ULL;

        if (!t->late_tid) {
                snprintf(buf, len, "%s", "");
                return;
        }
        target_thread_name(t, t->late_tid, comm);
        late_what(t, what, sizeof(what));
        if (t->late_state == 'D')
                snprintf(buf, len, "thread %d (%s) of process %d is in %s and could not be stopped within %llu ms",
                         t->late_tid, comm, t->pid, what, ms);
        else
                snprintf(buf, len, "thread %d (%s) of process %d did not stop within %llu ms (%s)",
                         t->late_tid, comm, t->pid, ms, what);
}

void target_describe_late_short(Target *t, char *buf, size_t len) {
        char what[64];

        late_what(t, what, sizeof(what));
        snprintf(buf, len, "%s, not stopped within %llu ms", what,
                 (unsigned long long)(t->late_waited_ns / 1000000ULL));
}

size_t target_orphans(void) {
        return n_orphans;
}

size_t target_collect_orphans(void) {
        for (size_t i = 0; i < n_orphans;) {
                Target t = { .pid = orphans[i].pid, .mem_fd = -1 };
                Thread th = { .tid = orphans[i].tid, .seized = true };
                int status, r = thread_poll(&th, &status);

                if (r == 0) {
                        i++;
                        continue;
                }
                if (r > 0) {
                        (void) thread_record_stop(&t, &th, status);
                        (void) thread_detach(&t, &th);
                        if (th.seized && !th.gone) {
                                i++;     /* killed while stopped: its exit is still to reap */
                                continue;
                        }
                }
                orphans[i] = orphans[--n_orphans];
        }
        return n_orphans;
}

/* Prefers a thread that keeps no signal and is not job-control stopped: a remote
 * operation on it has the least to take care of. */
Thread *target_any_stopped(Target *t) {
        Thread *best = NULL;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (!th->stopped || th->gone)
                        continue;
                if (th->pending_sig == 0 && !th->group_stopped)
                        return th;
                if (!best || (best->pending_sig && !th->pending_sig))
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

static int mem_pread(Target *t, uint64_t addr, void *buf, size_t len) {
        size_t done = 0;
        while (done < len) {
                ssize_t n = pread(t->mem_fd, (char *)buf + done, len - done, (off_t)(addr + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EIO ? -EFAULT : negative_errno();
                if (n == 0)
                        return -EFAULT;
                done += (size_t)n;
        }
        return 0;
}

int target_read(Target *t, uint64_t addr, void *buf, size_t len) {
        if (len == 0)
                return 0;
        struct iovec local = { .iov_base = buf, .iov_len = len };
        struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
        ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
        if (n == (ssize_t)len)
                return 0;
        /* Partial or refused (unreadable but present pages, e.g. execute-only, which
         * /proc/PID/mem reads with FOLL_FORCE; or process_vm_readv unavailable). */
        return mem_pread(t, addr, buf, len);
}

int target_read_many(Target *t, const uint64_t *addrs, void *bufs, size_t each, size_t n) {
        enum { BATCH = 512 };
        struct iovec local[BATCH], remote[BATCH];

        for (size_t i = 0; i < n; i += BATCH) {
                size_t k = MIN((size_t)BATCH, n - i);
                for (size_t j = 0; j < k; j++) {
                        local[j] = (struct iovec) { (char *)bufs + (i + j) * each, each };
                        remote[j] = (struct iovec) { (void *)(uintptr_t)addrs[i + j], each };
                }
                if (process_vm_readv(t->pid, local, k, remote, k, 0) == (ssize_t)(k * each))
                        continue;
                /* Partial or refused: one by one, with target_read's fallback. */
                for (size_t j = 0; j < k; j++) {
                        int r = target_read(t, addrs[i + j], (char *)bufs + (i + j) * each, each);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int target_write(Target *t, uint64_t addr, const void *buf, size_t len) {
        size_t done = 0;
        if (t->image_changed)
                return -ESTALE;   /* never a byte into a program we were not asked to patch */
        while (done < len) {
                ssize_t n = pwrite(t->mem_fd, (const char *)buf + done, len - done, (off_t)(addr + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EIO ? -EFAULT : negative_errno();
                if (n == 0)
                        return -EFAULT;
                done += (size_t)n;
        }
        return 0;
}
