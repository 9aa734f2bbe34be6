/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Late threads and orphans (target.h, docs/stops.md): threads asked to stop that did
 * not stop in time stay seized with the interrupt pending, and are detached by whoever
 * finds them stopped; borrowing one thread without waiting on one that cannot stop; the
 * operator's sentence for the thread that held a stop back.
 */

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include "common/macro.h"
#include "patcher/target-internal.h"
#include "patcher/target.h"
#include "patcher/vfork.h"

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

void target__orphan_add(pid_t pid, pid_t tid) {
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
bool target__orphan_take(pid_t pid, pid_t tid) {
        if (n_orphans == 0)
                return false;
        for (size_t i = 0; i < n_orphans; i++)
                if (orphans[i].tid == tid && orphans[i].pid == pid) {
                        orphans[i] = orphans[--n_orphans];
                        return true;
                }
        return false;
}

bool target_orphans_of(pid_t pid) {
        for (size_t i = 0; i < n_orphans; i++)
                if (orphans[i].pid == pid)
                        return true;
        return false;
}

bool target_thread_late(const Thread *th) {
        return th->late && th->seized && !th->stopped && !th->gone;
}

/* Every thread of v (or of t, v NULL) that is being waited for and has not stopped: no
 * longer waited for. */
void target__mark_late(Target *t, Thread **v, size_t n) {
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
                        (void) target__detach(t, th);
                left += target_thread_late(th);
        }
        return left;
}

/* How often a borrow looks at the state of the thread it waits for. */
#define STOP_ANY_SLICE_MS 100
/* Between two rounds over threads that were all in uninterruptible sleep. */
#define STOP_ANY_NAP_NS 2000000L

/*
 * One round: one thread at a time, the leader first (asking every thread at once would
 * leave all but one late, stopped a moment later and held until someone collects them).
 * Waiting is only given up for a thread in uninterruptible sleep (it stays late); one
 * that is merely slow (a loaded machine) is waited for until the deadline. 0 with *ret,
 * -EAGAIN when every live thread was passed over, -ESRCH when none is left.
 */
static int stop_any_round(Target *t, uint64_t deadline, Thread **ret) {
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
                if (k > 0 && target__thread_state(t->pid, th->tid) == 'D') {
                        if (!t->late_tid)    /* for the operator's sentence */
                                target_note_late(t, th);
                        r = -EAGAIN;
                        continue;
                }
                int q = target_request_stop(t, th);
                if (q == -ESRCH)
                        continue;
                if (q < 0)
                        return q;
                r = -EAGAIN;
                for (;;) {
                        Thread *got = NULL;
                        uint64_t now = target__now_ns();
                        if (now >= deadline)
                                return -ETIMEDOUT;   /* th marked late by the wait */
                        q = target_wait_any(t, &th, 1, (int)MIN((deadline - now) / 1000000ULL + 1,
                                                                (uint64_t)STOP_ANY_SLICE_MS), &got);
                        if (q == 0) {
                                got->borrowed = true;
                                *ret = got;
                                return 0;
                        }
                        if (q != -ETIMEDOUT || target__thread_state(t->pid, th->tid) == 'D')
                                break;
                        th->late = false;    /* still waited for */
                }
                if (q != -ETIMEDOUT && q != -ESRCH)
                        return q;
        }
        return r;
}

/*
 * Rounds until the deadline: a thread passed over in one round (in uninterruptible
 * sleep for a moment, as a thread of a loaded machine may be on a page fault) is asked
 * again in the next, so the time given is the time waited, not one look at each thread.
 */
int target_stop_any(Target *t, int timeout_ms, Thread **ret) {
        uint64_t deadline = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;

        for (;;) {
                int r = stop_any_round(t, deadline, ret);
                if (r != -EAGAIN)
                        return r;
                uint64_t now = target__now_ns();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct timespec ts = { 0, (long)MIN(deadline - now, (uint64_t)STOP_ANY_NAP_NS) };
                nanosleep(&ts, NULL);
        }
}

void target__note_slow(Target *t, Thread *th, uint64_t now_ns) {
        if (!th->asked_ns || th->slow_ns || now_ns - th->asked_ns < SLOW_STOP_NS)
                return;
        th->slow_ns = now_ns;
        th->slow_cpu_ns = target__thread_cpu_ns(t->pid, th->tid);
}

void target_note_late(Target *t, const Thread *th) {
        uint64_t now = target__now_ns(), cpu;

        t->late_cpu_ns = t->late_cpu_window_ns = 0;
        if (th->slow_ns && th->slow_cpu_ns != UINT64_MAX &&
            (cpu = target__thread_cpu_ns(t->pid, th->tid)) != UINT64_MAX && cpu >= th->slow_cpu_ns) {
                t->late_cpu_ns = cpu - th->slow_cpu_ns;
                t->late_cpu_window_ns = now - th->slow_ns;
        }
        t->late_tid = th->tid;
        t->late_state = target__thread_state(t->pid, th->tid);
        t->late_vfork = t->late_state == 'D' && vfork_waits(t->pid, th->tid);
        t->late_waited_ns = th->asked_ns ? now - th->asked_ns : 0;
        t->maybe_late = true;
}

/* "state R", and what it ran while it was waited for: 0 ms of 10 s says the machine
 * gave it no CPU; most of them, that it ran and did not stop. */
static void late_what(const Target *t, char *buf, size_t len) {
        char cpu[64] = "";

        if (t->late_cpu_window_ns)
                snprintf(cpu, sizeof(cpu), "; it ran %.1f ms of the last %llu ms", (double)t->late_cpu_ns / 1e6,
                         (unsigned long long)(t->late_cpu_window_ns / 1000000ULL));
        if (t->late_state == 'D')
                snprintf(buf, len, "uninterruptible sleep%s", t->late_vfork ? " (vfork parent waiting for its child)" : "");
        else if (t->late_state)
                snprintf(buf, len, "state %c%s", t->late_state, cpu);
        else
                snprintf(buf, len, "state unknown%s", cpu);
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
                int status, r = target__thread_poll(&t, &th, &status);

                if (r == 0) {
                        i++;
                        continue;
                }
                if (r > 0) {
                        (void) target__record_stop(&t, &th, status);
                        (void) target__detach(&t, &th);
                        if (th.seized && !th.gone) {
                                i++;     /* killed while stopped: its exit is still to reap */
                                continue;
                        }
                }
                orphans[i] = orphans[--n_orphans];
        }
        return n_orphans;
}
