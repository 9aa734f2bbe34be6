/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stopping and resuming threads: seizing, interrupting, waiting, detaching, and the
 * signals that arrive meanwhile (target.h).
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
 * uninterruptible sleep (vfork parent, D state) must not hang us. A caller that gave
 * this thread a wait timer (target_set_wait_timer) sleeps in waitpid() for the thread
 * it waits for instead, bounded by the timer: only that thread's report wakes it.
 */

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/target-internal.h"
#include "patcher/target.h"
#include "patcher/x86_64/relocate.h"

#define SPIN_NS 20000ULL              /* poll this long before napping */
#define NAP_NS 200000L

/* The benchmarks' observer (target.h); process-wide on purpose: it watches every Target. */
static TargetStopHook stop_hook;
static void *stop_hook_data;

void target_set_stop_hook(TargetStopHook hook, void *userdata) {
        stop_hook = hook;
        stop_hook_data = userdata;
}

static int stop_timeout_ms(const Target *t) {
        return t->stop_timeout_ms > 0 ? t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS;
}

/* This thread's wait timer (target.h), if its caller gave one. */
static _Thread_local timer_t wait_timer;
static _Thread_local bool wait_timer_set;

/* A timer expiry that came before the wait went to sleep is lost: it fires again this
 * often, which bounds how late such a wait ends. */
#define WAIT_REARM_NS 1000000L
/* How long a wait for all of a target's threads sleeps on one of them before it looks
 * at the others (a killed thread must be reaped before its leader reports). */
#define WAIT_ALL_SLICE_NS 2000000ULL

void target_set_wait_timer(const timer_t *timer) {
        wait_timer_set = timer != NULL;
        if (timer)
                wait_timer = *timer;
}

/* The timer target_wait_timer_start() made, and its signal. */
static _Thread_local timer_t own_timer;
static _Thread_local int own_timer_signo;

int target_wait_timer_start(int signo) {
        struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = signo };
        sigset_t ss;

        if (own_timer_signo)
                return -EBUSY;
        sev._sigev_un._tid = gettid();
        if (timer_create(CLOCK_MONOTONIC, &sev, &own_timer) < 0)
                return negative_errno();
        sigemptyset(&ss);
        sigaddset(&ss, signo);
        pthread_sigmask(SIG_UNBLOCK, &ss, NULL);
        own_timer_signo = signo;
        target_set_wait_timer(&own_timer);
        return 0;
}

void target_wait_timer_stop(void) {
        sigset_t ss;

        if (!own_timer_signo)
                return;
        target_set_wait_timer(NULL);
        sigemptyset(&ss);
        sigaddset(&ss, own_timer_signo);
        pthread_sigmask(SIG_BLOCK, &ss, NULL);
        (void) timer_delete(own_timer);
        own_timer_signo = 0;
}

/* Arms this thread's wait timer to expire in ns (then every WAIT_REARM_NS); 0 disarms. */
static void wait_timer_arm(uint64_t ns) {
        struct itimerspec its = {};

        if (ns > 0) {
                its.it_value.tv_sec = (time_t) (ns / 1000000000ULL);
                its.it_value.tv_nsec = (long) (ns % 1000000000ULL);
                its.it_interval.tv_nsec = WAIT_REARM_NS;
        }
        (void) timer_settime(wait_timer, 0, &its, NULL);
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
        th->held_sig = 0;
        th->asked_ns = 0;
        th->slow_ns = 0;
        th->late = false;
}

static bool is_group_stop_sig(int sig) {
        return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* Whether the int3 at `at` is one of ours: an entry of t's windows, or an int3 byte
 * that is there now (a program's own int3 run again is the same trap again). */
static bool our_int3(Target *t, pid_t tid, uint64_t at) {
        uint8_t b = 0;
        struct iovec local = { &b, 1 }, remote = { (void *)(uintptr_t)at, 1 };

        for (unsigned i = 0; i < t->n_trap_at; i++)
                if (t->trap_at[i] == at)
                        return true;
        return process_vm_readv(tid, &local, 1, &remote, 1, 0) == 1 && b == INSN_INT3;
}

bool target_sigtrap_queued(Target *t, const Thread *th) {
        TaskStat s;
        return target_task_stat(t->pid, th->tid, &s) >= 0 && (s.pending & TASK_SIG_BIT(SIGTRAP));
}

bool target__at_int3_trap(Target *t, const Thread *th) {
        uint64_t pc = regs_pc(&th->regs);
        return th->stopped && pc != 0 && our_int3(t, th->tid, pc - 1) && target_sigtrap_queued(t, th);
}

/* tid is in a signal-delivery-stop for a SIGTRAP whose report is not taken yet: when it
 * is an int3's (SI_KERNEL, one past an int3 of ours), its PC goes back on the int3. */
static bool undo_int3_trap(Target *t, pid_t tid) {
        struct user_regs_struct regs;
        siginfo_t si;

        if (target__ptrace(PTRACE_GETSIGINFO, tid, NULL, &si) < 0 || si.si_signo != SIGTRAP ||
            si.si_code != SI_KERNEL)
                return false;
        if (target__ptrace(PTRACE_GETREGS, tid, NULL, &regs) < 0 || regs.rip == 0 ||
            !our_int3(t, tid, regs.rip - 1))
                return false;
        regs.rip--;
        return target__ptrace(PTRACE_SETREGS, tid, NULL, &regs) >= 0;
}

/*
 * The report is looked at first (WNOWAIT) and taken after: the kernel keeps a
 * signal-delivery-stop's signal for the thread only until a wait takes the report (the
 * tracer's resume then says which signal goes on), so a SIGTRAP taken and then lost with
 * the tracer would leave the thread one byte past its int3. Put back on the int3 first,
 * the thread is safe at every moment: before the report is taken a dead tracer's SIGTRAP
 * reaches the guard with the PC on the int3, which the guard sends back to it
 * (x86_64/sigtrap.c); after, there is no signal and the int3 runs again.
 */
pid_t target__waitpid(Target *t, pid_t tid, int *status, int flags, bool *ret_undone) {
        siginfo_t si = {};
        bool undone = false;
        pid_t r;

        if (ret_undone)
                *ret_undone = false;
        if (waitid(P_PID, (id_t)tid, &si, WEXITED | WSTOPPED | WNOWAIT | __WALL | (flags & WNOHANG)) < 0)
                return -1;
        if (si.si_pid != tid)
                return 0;
        /* si_status is the stop's whole code: SIGTRAP alone is a signal-delivery-stop
         * (event and system call stops add their bits). */
        if (si.si_code == CLD_TRAPPED && si.si_status == SIGTRAP)
                undone = undo_int3_trap(t, tid);
        r = waitpid(tid, status, __WALL | WNOHANG);
        if (r == tid && ret_undone)
                *ret_undone = undone;
        return r;
}

/* A waitpid on one seized thread, with WNOHANG or blocking (then interrupted by the
 * wait timer): 1 with *ret_status when it reported, 0 when it has nothing to report (or
 * the timer ended the wait), -ESRCH (marked gone) when it exited. */
static int thread_wait(Target *t, Thread *th, int flags, int *ret_status) {
        for (;;) {
                int status;
                pid_t r = target__waitpid(t, th->tid, &status, flags, &th->trap_undone);
                if (r == 0)
                        return 0;
                if (r < 0) {
                        if (errno == EINTR) {
                                if (!(flags & WNOHANG))
                                        return 0;
                                continue;
                        }
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

int target__thread_poll(Target *t, Thread *th, int *ret_status) {
        return thread_wait(t, th, WNOHANG, ret_status);
}

/* With a wait timer: sleeps in waitpid() until th reports, at most until deadline_ns
 * (returns then within WAIT_REARM_NS). As thread_wait(). */
static int thread_wait_until(Target *t, Thread *th, uint64_t deadline_ns, int *ret_status) {
        uint64_t now = target__now_ns();
        int r;

        if (now >= deadline_ns)
                return 0;
        wait_timer_arm(deadline_ns - now);
        r = thread_wait(t, th, 0, ret_status);
        wait_timer_arm(0);
        return r;
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

        if (wait_timer_set) {
                /* One look, then a sleep that only th's report ends: no spinning, which
                 * on a busy machine takes the CPU th needs to reach its stop. */
                r = target__thread_poll(t, th, ret_status);
                while (r == 0) {
                        uint64_t now = target__now_ns(), until = deadline;
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        /* woken once when the request becomes slow, to note its CPU */
                        target__note_slow(t, th, now);
                        if (th->asked_ns && !th->slow_ns && th->asked_ns + SLOW_STOP_NS < until)
                                until = th->asked_ns + SLOW_STOP_NS;
                        r = thread_wait_until(t, th, until, ret_status);
                }
                return r < 0 ? r : 0;
        }
        /* The common case: the thread stops within microseconds. */
        for (int spin = 0; spin < 64; spin++) {
                r = target__thread_poll(t, th, ret_status);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, &old);
        for (;;) {
                uint64_t now;
                r = target__thread_poll(t, th, ret_status);
                if (r != 0)
                        break;
                now = target__now_ns();
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                target__note_slow(t, th, now);
                struct timespec ts = { 0, (long)MIN(deadline - now, 1000000ULL) };
                (void)sigtimedwait(&chld, NULL, &ts);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r < 0 ? r : 0;
}

/*
 * A wait reports a tracee's ptrace-stops whatever its options say (WEXITED alone
 * included), so each thread's report is only looked at (WNOWAIT) and taken when it is
 * an exit. Taking a stop here would lose it: the thread would sit in its ptrace-stop,
 * traced by us for good, and its process could not be reaped after it is killed.
 */
void target__reap_exited(Target *t, const Thread *except) {
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                siginfo_t info = {};
                int status;

                if (th == except || !th->seized || th->gone)
                        continue;
                if (waitid(P_PID, (id_t)th->tid, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
                    info.si_pid != th->tid)
                        continue;
                if (info.si_code != CLD_EXITED && info.si_code != CLD_KILLED && info.si_code != CLD_DUMPED)
                        continue;       /* a stop: left for the wait that collects it */
                /* An exit stays the thread's last report: this takes it. */
                (void) target__thread_poll(t, th, &status);
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
        if (th->held_sig == 0) {
                th->held_sig = sig;
                if (info)
                        th->held_info = *info;
                else {
                        memset(&th->held_info, 0, sizeof(th->held_info));
                        th->held_info.si_signo = sig;
                        th->held_info.si_code = SI_KERNEL;
                }
                return;
        }
        /* Only one kept per thread: the later one goes back to the kernel's queue. A
         * traced, stopped thread does not dequeue it; it is delivered after detach. */
        thread_requeue_signal(t, th, sig, info);
}

int target__settle(Target *t, Thread *th, bool in_signal_stop) {
        th->signal_stop = in_signal_stop;
        if (th->held_sig == 0)
                return 0;
        if (in_signal_stop)
                /* Detaching with data == held_sig then delivers exactly this siginfo
                 * (ptrace_signal() keeps it when si_signo matches). */
                return target__ptrace(PTRACE_SETSIGINFO, th->tid, NULL, &th->held_info);
        /* An event stop ignores PTRACE_DETACH's data: queue it back instead. */
        thread_requeue_signal(t, th, th->held_sig, &th->held_info);
        th->held_sig = 0;
        return 0;
}

/* Records a ptrace-stop reported by waitpid for a thread we are stopping. Every stop
 * counts (see the top of the file); reads the registers. */
int target__record_stop(Target *t, Thread *th, int status) {
        int sig = WSTOPSIG(status), event = status >> 16;

        th->signal_stop = false;
        if (event == PTRACE_EVENT_EXEC)
                t->image_changed = true;   /* not the program we were asked to work on */
        if (event == PTRACE_EVENT_STOP) {
                if (is_group_stop_sig(sig))
                        th->group_stopped = true;
        } else if (event == 0 && sig != (SIGTRAP | 0x80) && th->trap_undone) {
                th->signal_stop = true;   /* the int3's trap, undone: resumed with none */
        } else if (event == 0 && sig != (SIGTRAP | 0x80)) {
                siginfo_t info;
                bool have = target__ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &info) >= 0;
                target__keep_signal(t, th, sig, have ? &info : NULL);
                th->signal_stop = true;
        }
        th->stopped = true;
        th->asked_ns = 0;
        th->slow_ns = 0;
        th->late = false;
        th->seen_ns = target__now_ns();
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &th->regs);
        if (r == -ESRCH)  /* killed while stopped: the exit is reported later */
                return 0;
        return r;
}

static bool thread_traced_by_other(pid_t pid, pid_t tid) {
        return target__thread_tracer(pid, tid) > 0;
}

/* Seizes th and asks it to stop; the stop is collected by a wait. -ESRCH when it is
 * gone (or a zombie), -EBUSY when another tracer has it, -EPERM when not allowed. */
static int thread_seize_interrupt(Target *t, Thread *th) {
        int r;

        if (!th->seized) {
                /* A late thread of a Target freed before it stopped is still ours. An
                 * exec while attached stops with PTRACE_EVENT_EXEC (see
                 * thread_record_stop) instead of running on in a new program. */
                r = target__orphan_take(t->pid, th->tid) ? 0 :
                    target__ptrace(PTRACE_SEIZE, th->tid, NULL, (void *)(long)TARGET_PTRACE_OPTIONS);
                if (r == -EPERM) {
                        /* ptrace_attach() says EPERM for an exiting thread too. */
                        char st = target__thread_state(t->pid, th->tid);
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
                th->was_seized = true;
                th->stopped = false;
                th->signal_stop = false;
                th->group_stopped = false;
                th->held_sig = 0;
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
int target__detach(Target *t, Thread *th) {
        th->borrowed = false;
        if (!th->seized)
                return 0;
        if (!th->stopped) {
                int status, r = target__thread_poll(t, th, &status);
                if (r < 0)
                        return r == -ESRCH ? 0 : r;
                if (r == 0)
                        return -EBUSY;
                target__record_stop(t, th, status);
        }
        for (int attempt = 0;; attempt++) {
                if (th->held_sig && !th->signal_stop)
                        (void) target__settle(t, th, false);
                int sig = th->signal_stop ? th->held_sig : 0;
                int r = target__ptrace(PTRACE_DETACH, th->tid, NULL, (void *)(long)sig);
                if (r == 0) {
                        th->seized = false;
                        th->stopped = false;
                        th->signal_stop = false;
                        th->held_sig = 0;
                        th->asked_ns = 0;
                        th->slow_ns = 0;
                        th->late = false;
                        return 0;
                }
                if (r != -ESRCH)
                        return r;
                /* Not in a ptrace-stop: killed while stopped (SIGKILL, another thread's
                 * exit_group). It is still ours until its exit is reaped, and its leader
                 * cannot report its own exit before: it stays seized, not stopped, and
                 * target__release_all() or the next wait collects it. Should it have
                 * stopped again meanwhile, detach once more. */
                int status;
                th->stopped = false;
                th->signal_stop = false;
                if (target__thread_poll(t, th, &status) != 1 || attempt >= 3)
                        return 0;
                (void) target__record_stop(t, th, status);
        }
}

static int target_detach_all(Target *t) {
        int ret = 0;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (th->seized && !th->gone) {
                        int r = target__detach(t, th);
                        /* -EBUSY: late, still running; detached when it stops. */
                        if (r < 0 && r != -EBUSY && ret == 0)
                                ret = r;
                }
        }
        return ret;
}

/* Waits until every seized thread has stopped or exited, within the deadline. Polls
 * them all in turn, and the already stopped ones too once it takes long, because a
 * thread killed while stopped (exit_group) must be reaped before its leader reports. */
static int target_wait_all(Target *t, uint64_t start_ns) {
        uint64_t timeout_ns = (uint64_t)stop_timeout_ms(t) * 1000000ULL;

        for (unsigned round = 0;; round++) {
                size_t waiting = 0;
                Thread *first_waiting = NULL;
                for (size_t i = 0; i < t->n_threads; i++) {
                        Thread *th = &t->threads[i];
                        if (!th->seized || th->gone || (th->stopped && round < 8))
                                continue;
                        int status, r = target__thread_poll(t, th, &status);
                        if (r == -ESRCH)
                                continue;
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                if (!th->stopped)
                                        target__note_slow(t, th, target__now_ns());
                                waiting += !th->stopped;
                                if (!th->stopped && !first_waiting)
                                        first_waiting = th;
                                continue;
                        }
                        r = target__record_stop(t, th, status);
                        if (r < 0)
                                return r;
                }
                if (waiting == 0)
                        return 0;
                uint64_t now = target__now_ns();
                if (now - start_ns >= timeout_ns) {
                        target__mark_late(t, NULL, 0);
                        return -ETIMEDOUT;
                }
                if (wait_timer_set && first_waiting) {
                        /* Sleeps until that one reports (every thread must), then looks at
                         * the others; in slices, for a killed one to be reaped. */
                        int status, r = thread_wait_until(t, first_waiting,
                                                          MIN(start_ns + timeout_ns, now + WAIT_ALL_SLICE_NS), &status);
                        if (r > 0)
                                r = target__record_stop(t, first_waiting, status);
                        if (r < 0 && r != -ESRCH)
                                return r;
                } else
                        poll_backoff(start_ns, now);
        }
}

/*
 * Whether the threads known now (stopped, after a rescan that found nothing new) are all
 * the process has, by the kernel's count. A listing of /proc/PID/task that runs while
 * another thread of the process is released can step over a live one: the kernel goes
 * on from the thread it listed last, and when that one is gone, from the same position
 * counted again from the first thread, one place further on than it should. Our own
 * stopped threads cannot exit, but threads not stopped yet (new ones, dying ones) can,
 * and the thread stepped over is then a new one, left running while every other thread
 * is stopped (docs/stops.md, "A thread the listing stepped over"). Dying threads still
 * listed (taken for gone) count while they are zombies; -1: no count, trust the listing.
 */
static bool listing_complete(Target *t) {
        int n = target__nr_threads(t->pid), known = 0;

        if (n < 0)
                return true;
        for (size_t i = 0; i < t->n_threads; i++) {
                const Thread *th = &t->threads[i];
                char st = th->gone ? target__thread_state(t->pid, th->tid) : 0;
                known += !th->gone || st == 'Z';
        }
        return known == n;
}

/* Stop-the-world: see target.h. A pass seizes and interrupts every known thread, waits
 * for all, then rescans; a thread can only be created by a running one, so a rescan
 * that finds nothing new after a pass where all stopped means all are stopped, once
 * the kernel's count of threads agrees (listing_complete()). */
int target_stop_all(Target *t) {
        uint64_t first_short = 0;
        int r;

        /* No rescan before the first pass: the one after it finds whatever is new. */
        target_collect_late(t);
        /* One still late from an earlier try and in uninterruptible sleep will not stop
         * now either: holding every other thread stopped while waiting for it would only
         * freeze the process. Fail at once; the caller tries again later. */
        for (size_t i = 0; i < t->n_threads; i++)
                if (target_thread_late(&t->threads[i]) && target__thread_state(t->pid, t->threads[i].tid) == 'D') {
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
                if (r == 0 && !listing_complete(t)) {
                        /* Listed again in a moment, once the dying thread is gone. */
                        uint64_t now = target__now_ns();
                        if (!first_short)
                                first_short = now;
                        if (now - first_short >= (uint64_t)stop_timeout_ms(t) * 1000000ULL) {
                                r = -ETIMEDOUT;
                                goto fail;
                        }
                        poll_backoff(first_short, now);
                        continue;
                }
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
        (void) target__release_all(t, r == -ETIMEDOUT ? 0 : 100);
        return r;
}

/* Detaches everything and, for up to timeout_ms, collects the threads that are still
 * seized: dying ones (their exits must be reaped by us, the tracer) and ones that had
 * not stopped in time. True when none is left. */
bool target__release_all(Target *t, int timeout_ms) {
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

/* The stopped threads' first stop request and last stop collected; their count. */
static unsigned stopped_span(const Target *t, uint64_t *ret_first, uint64_t *ret_last) {
        uint64_t first = UINT64_MAX, last = 0;
        unsigned n = 0;
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].stopped && !t->threads[i].gone) {
                        first = MIN(first, t->threads[i].stop_ns);
                        last = MAX(last, t->threads[i].seen_ns);
                        n++;
                }
        *ret_first = first;
        *ret_last = last;
        return n;
}

uint64_t target_stop_all_took_ns(const Target *t) {
        uint64_t first, last;
        return stopped_span(t, &first, &last) > 0 && last > first ? last - first : 0;
}

int target_resume_all(Target *t) {
        uint64_t first, last;
        unsigned n = stopped_span(t, &first, &last);
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
                (void) target__release_all(t, 100);
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
                target__mark_late(t, &th, 1);
        if (r < 0)
                return r;   /* -ETIMEDOUT: stays seized, collected later */
        r = target__record_stop(t, th, status);
        if (r >= 0)
                r = target__check_image_thread(t, th);
        if (r == -ESTALE)
                (void) target__detach(t, th);
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
/*
 * With a wait timer: sleeps until one of this thread's own tracees has a report
 * (__WNOTHREAD: the stops of other drivers' tracees do not wake it), at most until
 * deadline_ns, and leaves the report to be collected (WNOWAIT). False when the first
 * report is of a thread not in v (one that this thread seized for another operation and
 * that was not collected yet): it would be the first again at once, so the caller naps
 * on SIGCHLD as without a timer.
 */
static bool wait_any_sleep(Thread **v, size_t n, uint64_t deadline_ns) {
        uint64_t now = target__now_ns();
        siginfo_t info = {};
        int r;

        if (now >= deadline_ns)
                return true;
        wait_timer_arm(deadline_ns - now);
        r = waitid(P_ALL, 0, &info, WEXITED | WSTOPPED | WNOWAIT | __WALL | __WNOTHREAD);
        wait_timer_arm(0);
        if (r < 0 || info.si_pid == 0)
                return r == 0 || errno == EINTR;   /* the timer: look again */
        for (size_t i = 0; i < n; i++)
                if (v[i] && v[i]->tid == info.si_pid)
                        return true;
        return false;
}

int target_window_wait(Target *t, TargetWindow *w, Thread **v, size_t n, int timeout_ms, Thread **ret) {
        uint64_t since = target__now_ns();
        int r = target_wait_any(t, v, n, timeout_ms, ret);

        target_window_adapt(w, target__now_ns() - since);
        return r;
}

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
                        k = target__thread_poll(t, v[i], &status);
                        if (k < 0)
                                continue; /* gone: marked by thread_poll */
                        if (k == 0)
                                target__note_slow(t, v[i], target__now_ns());
                        if (k > 0) {
                                r = target__record_stop(t, v[i], status);
                                if (r >= 0)
                                        r = target__check_image_thread(t, v[i]);
                                if (r == -ESTALE)
                                        (void) target__detach(t, v[i]);
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
                        target__mark_late(t, v, n);
                        break;
                }
                if (wait_timer_set && wait_any_sleep(v, n, deadline))
                        continue;
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
        bool borrowed = th->borrowed;
        int r = target__detach(t, th);
        /* Threads asked to stop and not waited for (target_stop_any, a timed-out wait)
         * must not sit in their stop until our next call: one look each. */
        if (t->maybe_late)
                t->maybe_late = target_collect_late(t) > 0;
        if (since)
                target__note_thread_stop(t, tid, since, seen, borrowed);
        return r;
}

void target__note_thread_stop(Target *t, pid_t tid, uint64_t requested_ns, uint64_t stopped_ns, bool borrowed) {
        uint64_t now = target__now_ns();

        t->max_thread_stop_ns = MAX(t->max_thread_stop_ns, now - requested_ns);
        if (stop_hook)
                stop_hook(&(TargetStopEvent) { .pid = t->pid, .tid = tid, .n_threads = 1,
                                               .requested_ns = requested_ns, .stopped_ns = stopped_ns,
                                               .resumed_ns = now, .borrowed = borrowed }, stop_hook_data);
}

int target_take_signal(Target *t, Thread *th, int timeout_ms) {
        int status, r;

        if (!th->stopped || th->signal_stop || th->held_sig)
                return -EINVAL;
        r = target__ptrace(PTRACE_CONT, th->tid, NULL, NULL);
        if (r < 0)
                return r;
        th->stopped = false;
        r = target__wait(t, th, timeout_ms, &status);
        if (r == -ETIMEDOUT)    /* stays seized, late: detached when it stops */
                target__mark_late(t, &th, 1);
        return r < 0 ? r : target__record_stop(t, th, status);
}
