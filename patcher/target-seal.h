/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The clone barrier (docs/stops.md, "Completion needs a barrier on thread creation"):
 * every thread of the process seized without being stopped, with PTRACE_O_TRACECLONE,
 * and /proc/PID/task read again until every thread listed is seized. From then on a
 * thread created by any thread of the process is attached by the kernel and stops
 * before its first instruction: it is held there (born) until the barrier ends. No
 * moment has every thread stopped: the sealed threads run on, each is stopped alone
 * once, at the end, to be detached (the kernel detaches only a stopped tracee), unless
 * the seal runs on a tracer thread of its own (target_seal_run()), whose exit lets them
 * go without a stop.
 *
 * While sealed, no other stop or resume may be made on the Target (its Threads know
 * nothing of the seal): a sealed thread is stopped alone with target_seal_stop() and
 * let go with target_seal_cont(). Completion without a stop of every thread is the use
 * it is for (patcher/transition-seal.c).
 */

#include <stdbool.h>
#include <sys/types.h>

#include "patcher/target.h"

typedef struct SealedThread {
        pid_t tid;
        bool born;               /* attached by the kernel at its creation */
        bool held;               /* born and in its first stop: has run nothing yet */
        bool asked;              /* end: interrupted, its stop awaited */
        bool stopped;            /* in a stop target_seal_stop() took, until target_seal_cont() */
        bool listen;             /* ...a group-stop: it stays stopped once let go */
        int sig;                 /* ...a signal-delivery-stop: the signal goes on with it */
        uint64_t stop_ns;        /* ...when its interrupt was sent */
        bool looked;             /* its caller's: looked at once (transition-seal.c) */
} SealedThread;

typedef struct TargetSeal {
        SealedThread *v;
        size_t n, n_alloc;
        unsigned clones;         /* clone events seen (each resumed at once) */
        unsigned births;         /* new threads seen in their first stop */
} TargetSeal;

/* Seals t's process. -EBUSY a thread is traced by another process, or still by us (a
 * late thread of t or an orphan of an earlier Target: it would pass for a new one);
 * -EAGAIN the count of threads never agreed; on any error nothing stays seized. */
int target_seal_begin(Target *t, TargetSeal *s);

/* Seals the threads not sealed yet, until the process's count of its threads agrees:
 * 1 some were, 0 none, -EAGAIN the count never agreed. A child of a clone already under
 * way when its parent was sealed is not attached by the kernel: once every sealed
 * thread was stopped once (its clone done), this finds any such child. */
int target_seal_rescan(Target *t, TargetSeal *s);

/* One look at every sealed thread, blocking nowhere: a parent's clone event is resumed
 * (its child added), a new thread's first stop is kept (held), a signal-delivery-stop
 * delivers its signal, a group-stop is listened through, exited threads are dropped.
 * -ESTALE the process executed a program (then nothing is held: end the seal). */
int target_seal_poll(Target *t, TargetSeal *s);

/* Ends the seal: held threads let go, the others stopped alone (their interrupts all
 * sent first) and detached, each with the signal it stopped with. Waits up to
 * timeout_ms; -ETIMEDOUT leaves the threads that did not stop seized (the kernel lets
 * them go when the tracer exits). Inside target_seal_run(): the held and stopped ones
 * let go, the running ones left to the exit of the tracer thread, never stopped. */
int target_seal_end(Target *t, TargetSeal *s, int timeout_ms);

/* Runs fn(ud) on a thread of its own, which is the tracer of any seal fn begins (every
 * other step on the Target's threads waits meanwhile: the caller blocks). A tracer's exit
 * lets its tracees go without a stop (the kernel's exit_ptrace()), so the seal's end
 * stops no running thread; the return waits until they are let go. fn's result, or
 * -ETIMEDOUT if the thread took over SEAL_EXIT_MS to end; fn runs on the caller's thread
 * when no thread can be made (its end then stops each thread). */
int target_seal_run(int (*fn)(void *ud), void *ud);

/* Stops the sealed thread tid alone, the other sealed threads' events dealt with
 * meanwhile (as target_seal_poll()); a held new thread is in its stop already. th is
 * filled for the checks (tid, registers, a signal it stopped with): 1 stopped, 0 it
 * exited (or is not sealed), -ETIMEDOUT not stopped within timeout_ms (its interrupt
 * stays pending: the thread is let go when it stops), -ESTALE an exec. */
int target_seal_stop(Target *t, TargetSeal *s, pid_t tid, Thread *th, int timeout_ms);

/* Lets a thread target_seal_stop() stopped go on, still sealed, with the signal it
 * stopped with; th's registers are written back first when set_regs. A held new thread
 * stays held. Counted as a single thread's stop (max_thread_stop_ns). */
int target_seal_cont(Target *t, TargetSeal *s, Thread *th, bool set_regs);

void target_seal_done(TargetSeal *s);
