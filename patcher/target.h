/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * A target process and the ptrace session on it.
 *
 * Threads are seized (PTRACE_SEIZE) only while ulp works on them and detached
 * afterwards, so a target at rest has no tracer. Two ways to stop:
 *   - target_stop_all(): every thread, for code writes (stop-the-world), rescanning
 *     /proc/PID/task until a pass finds no new thread;
 *   - target_stop_thread(): one thread, for its stack check.
 * Signals that arrive while a thread is stopped are kept and delivered at resume;
 * a thread that was in a job-control stop stays stopped after resume.
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>
#include <time.h>

#include "patcher/x86_64/regs.h"

typedef struct Thread {
        pid_t tid;
        bool seized;             /* we are its tracer */
        bool stopped;            /* in a ptrace-stop we caused, registers valid */
        bool group_stopped;      /* it was in a job-control stop: stays stopped at resume */
        bool gone;               /* exited while we looked */
        int held_sig;         /* signal caught while stopped, re-injected at resume */
        struct user_regs_struct regs; /* read at stop; written back by target_set_regs() only */
        uint64_t stop_ns;        /* CLOCK_MONOTONIC when it was asked to stop (interrupt sent) */
        uint64_t seen_ns;        /* CLOCK_MONOTONIC when its stop was collected */
        /* Added by the ptrace layer (target-stop.c, x86_64/remote.c): */
        bool signal_stop;        /* the ptrace-stop is a signal-delivery-stop, so PTRACE_DETACH's
                                  * data is delivered with held_info (other stops drop it) */
        siginfo_t held_info;  /* siginfo of held_sig, set back before it is delivered */
        uint64_t asked_ns;       /* CLOCK_MONOTONIC of the stop request still unanswered, 0 none */
        uint64_t slow_ns;        /* CLOCK_MONOTONIC when that request was found slow, 0 not yet */
        uint64_t slow_cpu_ns;    /* the thread's CPU time then (schedstat), UINT64_MAX unknown */
        bool late;               /* asked to stop, and nobody waits for it any more: detached
                                  * by whoever finds it stopped (see below) */
        struct RemoteBatch *batch; /* open system call batch (target_syscall_batch_begin) */
        bool was_seized;         /* seized by this Target at some point: target_free() makes
                                  * sure one taken for gone is not still traced by us */
        bool borrowed;           /* stopped by target_stop_any() for remote steps, until resumed */
        bool trap_undone;        /* its last report was the SIGTRAP of an int3 of ours, put
                                  * back on the int3 (target__waitpid()): no signal to keep */
} Thread;

/* The most int3 entries one Target remembers (an int3 window's most, SIGTRAP_MAX_ENTRIES). */
#define TARGET_TRAPS_MAX 64

typedef struct Target {
        pid_t pid;
        int mem_fd;              /* /proc/PID/mem, O_RDWR */
        /* The thread that kept the last stop from completing (-ETIMEDOUT), as it was then:
         * for the operator's message (target_describe_late). */
        /* A program other than ulp traced the process's main thread when it was opened
         * (TracerPid: a debugger, strace): no stop can work, target_describe_tracer(). */
        pid_t foreign_tracer;
        pid_t late_tid;
        char late_state;         /* its state letter in /proc/PID/task/TID/stat */
        bool late_vfork;         /* it sat in vfork() (or clone(CLONE_VFORK)) */
        uint64_t late_waited_ns;
        /* of the last late_cpu_window_ns it waited, it ran late_cpu_ns (a thread not in
         * D that does not stop: the machine did not give it a CPU, or it did not stop
         * though it ran); window 0 when unknown */
        uint64_t late_cpu_ns, late_cpu_window_ns;
        bool maybe_late;         /* some thread may be late: resumes look for them */
        Thread *threads;
        size_t n_threads;
        size_t n_alloc;
        uint64_t syscall_insn;   /* address of "syscall; ret" in the target, 0 unknown */
        uint64_t max_thread_stop_ns; /* longest single-thread stop so far (target_resume_thread) */
        uint64_t max_stw_ns;     /* longest stop-the-world window so far (target_resume_all) */
        /* Added by the ptrace layer: */
        int stop_timeout_ms;     /* how long a thread may take to stop; 0 = TARGET_STOP_TIMEOUT_MS */
        uint64_t restorer;       /* address of an rt_sigreturn restorer in the target, 0 unknown */
        struct TargetGather *gather; /* gathered writes (target_write_gather_begin), NULL none */
        int8_t sync_core;        /* membarrier SYNC_CORE registered in it: 1, unsupported: -1,
                                  * 0 not known yet (trapguard.c) */
        uint64_t sigtrap_free_ns; /* CLOCK_MONOTONIC of the last look that found no thread
                                   * blocking SIGTRAP (trapguard.c), 0 none */
        /* The image binding (target-image.c, target_bind_image()): */
        bool image_bound;        /* every stop proves the image is still the one bound */
        bool image_changed;      /* an exec was seen: no stop, no write is done any more */
        /* When set, target_call() calls it last before the thread's registers change
         * (the call's first ptrace call that starts it), once the call's frame is
         * written, with the thread and the frame's address: a caller's record that the
         * call starts, which a tracer killed earlier leaves unwritten. Its failure
         * is target_call()'s, the thread untouched. */
        int (*call_start)(void *data, pid_t tid, uint64_t frame);
        void *call_start_data;
        bool call_entered;       /* the last target_call() resumed its thread into the
                                  * call: the function ran, whatever its outcome */
        int auth_fd;             /* the /proc/PID/mem the operation was authorized with, or -1 */
        uint64_t random_addr;    /* AT_RANDOM of the bound image, 0 when it could not be read */
        uint8_t random[16];      /* its 16 bytes */
        struct MapList *maps;    /* /proc/PID/maps as last read (procmaps_get()), NULL none */
        /* The entries int3 windows of this Target wrote an int3 at (entry-bp.c): a thread
         * reported stopped for the trap of one is put back on it (target__waitpid()). */
        uint64_t trap_at[TARGET_TRAPS_MAX];
        unsigned n_trap_at;
} Target;

/* Options of every seize, never changed later (a PTRACE_SETOPTIONS replaces them all):
 * an exec stops with PTRACE_EVENT_EXEC (the operation is bound to the image it started
 * on), syscall stops come as SIGTRAP | 0x80 (remote steps end at one). */
#define TARGET_PTRACE_OPTIONS (PTRACE_O_TRACEEXEC | PTRACE_O_TRACESYSGOOD)

#define TARGET_STOP_TIMEOUT_MS 1000

/*
 * All calls on one Target must come from the same thread: ptrace ties a tracee to the
 * thread that seized it. Thread pointers stay valid until the next rescan
 * (target_refresh_threads(), target_stop_all()); look them up again afterwards.
 *
 * A thread that does not stop within stop_timeout_ms fails with -ETIMEDOUT (see
 * docs/stops.md): it is "late", still seized with the interrupt pending, because the
 * kernel cannot detach a tracee that is not stopped (a vfork parent in D state cannot
 * stop before its child exits or execs). It is detached the moment it stops: by
 * target_collect_late(), by any later stop or resume on the Target, and after
 * target_free() by target_collect_orphans(), which a long-running caller calls while
 * target_orphans() is not zero. A Target that seizes a thread left over like that takes
 * it over instead of failing with -EBUSY.
 */

/* Opens pid: checks it exists and that we may ptrace it, opens /proc/PID/mem,
 * lists its threads. Nothing is attached yet. -ESRCH no such process,
 * -EPERM not allowed to trace it, -EOWNERDEAD its main thread exited while others run
 * on (its /proc/PID/mem, which is the main thread's, has no memory: not supported). */
int target_open(pid_t pid, Target **ret);

/*
 * Binds t to the image (the mm) it runs now and, when auth_fd >= 0, proves that this
 * image is the one auth_fd (a /proc/PID/mem descriptor an authorized client opened)
 * refers to: the 16 AT_RANDOM bytes of the current image read through auth_fd, through
 * t's own descriptor and directly are equal. From then on every stop (target_stop_all,
 * target_stop_thread, target_wait_any) checks the image again before it returns a
 * stopped thread, and an exec seen while attached (PTRACE_EVENT_EXEC) marks the target
 * changed: stops and writes fail with -ESTALE and nothing more reaches the process.
 * Returns 0, -ESTALE when the image is not the authorized one, -ESRCH when it is gone.
 * auth_fd is duplicated, not taken.
 */
int target_bind_image(Target *t, int auth_fd);

/* The check a stop makes on a bound target: 0 same image (or not bound), -ESTALE
 * (image_changed set), -ESRCH. */
int target__check_image(Target *t);
/* The same after one thread's stop, when needed: only the leader's tid outlives an exec
 * (the other threads die in it), and threads of a new program are found only by the
 * rescans of target_stop_all(), which checks the whole. */
int target__check_image_thread(Target *t, Thread *th);
/* Lets go of the leader's tid should a seized thread have executed a program (taking
 * that tid) while the leader itself was not ours; target_free() calls it (for bound
 * targets, those of operations: a Target only read never seized anything). */
void target__release_exec_leader(Target *t);

/* Detaches whatever is still attached (resuming it as target_resume_all would) and frees. */
void target_free(Target *t);

/* Re-reads /proc/PID/task: adds new threads, marks vanished ones gone. Returns the
 * number of new threads, or -errno. */
/* Tests only: a tid the next listing leaves out, once (as one that stepped over a live
 * thread would: target_stop_all()). */
extern pid_t target_refresh_test_hide;
int target_refresh_threads(Target *t);

/* Stops every thread (seize + interrupt + wait), rescanning until no new thread appears.
 * Registers of every thread are read. -ESRCH when the process is gone. On error nothing
 * is left stopped. */
int target_stop_all(Target *t);

/* Resumes and detaches every stopped thread (see the header comment). */
int target_resume_all(Target *t);

/* How long the stop of every thread now holding took to gather them: from its first
 * stop request to its last stop collected (0 when no thread is stopped). */
uint64_t target_stop_all_took_ns(const Target *t);

/* Stops one thread (seize + interrupt + wait, registers read). -ESRCH when it exited. */
int target_stop_thread(Target *t, Thread *th);

/* Pipelined stops, for checking several threads one after the other without paying the
 * scheduler's latency for each in turn: target_request_stop() seizes and interrupts th
 * without waiting; target_wait_any() returns the first of v[0..n) that stopped (its
 * registers read), to be checked and resumed at once. */
int target_request_stop(Target *t, Thread *th);
int target_wait_any(Target *t, Thread **v, size_t n, int timeout_ms, Thread **ret);

/* Resumes and detaches one thread. */
int target_resume_thread(Target *t, Thread *th);

/* th is in a stop of ours that is not a signal-delivery-stop, with a signal queued for it
 * (a trap it took just before): lets it run into that signal's delivery stop, where the
 * signal is held (held_sig, dropped or delivered at resume). -EINVAL when th is not in
 * such a stop or holds a signal already. */
int target_take_signal(Target *t, Thread *th, int timeout_ms);

/* Stops one thread, any, for remote syscalls and calls: the leader, or, while it is in
 * uninterruptible sleep (a vfork parent), the next thread that is not. One abandoned
 * that way stays late, detached when it stops. -ETIMEDOUT with the late record set,
 * -ESRCH when every thread is gone. */
int target_stop_any(Target *t, int timeout_ms, Thread **ret);

/* True when th was asked to stop, is no longer waited for, and has not stopped yet. A
 * thread whose stop was requested (target_request_stop) and is being waited for is not
 * late: nobody but its waiter may collect it. */
bool target_thread_late(const Thread *th);

/* Detaches the late threads that stopped since; returns how many are still late. */
size_t target_collect_late(Target *t);

/* Records th (late) as the thread that held a stop back, with its state now. */
void target_note_late(Target *t, const Thread *th);

/* The operator's sentence for the late record: "thread T (comm) of process N is in
 * uninterruptible sleep (vfork parent waiting for its child) and could not be stopped
 * within X ms", or "... did not stop within X ms (state R)". Empty when there is none. */
void target_describe_late(Target *t, char *buf, size_t len);

/* The same, short, for a straggler's blocker: "uninterruptible sleep (vfork parent
 * waiting for its child), not stopped within X ms". */
void target_describe_late_short(Target *t, char *buf, size_t len);

/* Why a stop failed with -EBUSY, or why a process opened with foreign_tracer set is
 * refused, to end the operator's line: "thread T is traced by another program (pid P,
 * NAME): ...". */
void target_describe_tracer(Target *t, char *buf, size_t len);

/* Whether a thread of t is traced by a program other than ulp (TracerPid:), as far as
 * t's thread list knows. */
bool target_traced_by_other(Target *t);

/* What a look at every live thread of t's list says, one read of each one's status. */
typedef struct TargetLook {
        bool traced_by_other;    /* one is traced by a program other than ulp */
        bool uninterruptible;    /* one is in uninterruptible sleep (D) */
        bool blocks_sigtrap;     /* one blocks SIGTRAP */
} TargetLook;
/* The look before an int3 window, in place of one read a thread for each question
 * (status for the tracer, stat for the state, stat for the mask). A look that found no
 * thread blocking SIGTRAP is t->sigtrap_free_ns's look too (trapguard_wait_unblocked()).
 * -errno when the thread list cannot be read. */
int target_look_threads(Target *t, TargetLook *ret);

/* Threads of freed Targets still seized because they had not stopped (see above), per
 * calling thread. target_collect_orphans() detaches those that stopped or reaps those
 * that exited, without blocking, and returns how many are left. */
size_t target_orphans(void);
size_t target_collect_orphans(void);
/* Is some orphan of the calling thread a thread of pid? */
bool target_orphans_of(pid_t pid);

Thread *target_find_thread(Target *t, pid_t tid);

/* Any stopped thread, to borrow for remote syscalls and calls; NULL if none. */
Thread *target_any_stopped(Target *t);

/* The fsuid of t's process (the owner of the files it creates), (uid_t)-1 unknown. */
uid_t target_fsuid(Target *t);

/* Writes th->regs back to the thread (it must be stopped). */
int target_set_regs(Target *t, Thread *th);

/* The thread's name from /proc/PID/task/TID/comm ("?" when unreadable). */
void target_thread_name(Target *t, pid_t tid, char buf[static 16]);

/* Memory of the target: reads with process_vm_readv (falling back to /proc/PID/mem),
 * writes with pwrite on /proc/PID/mem (works on read-only and executable mappings; no
 * word-sized POKE clobbers neighbours). Return 0 or -errno (-EFAULT short access). */
int target_read(Target *t, uint64_t addr, void *buf, size_t len);
int target_write(Target *t, uint64_t addr, const void *buf, size_t len);

/* Reads n pieces of each bytes, from addrs[i] into bufs + i * each, in as few system
 * calls as it can (process_vm_readv with many ranges): for work done while every
 * thread is stopped. */
int target_read_many(Target *t, const uint64_t *addrs, void *bufs, size_t each, size_t n);

/*
 * Gathered writes: between begin and end, target_write() only queues its bytes (a copy),
 * and end writes them all, in order, with one process_vm_writev for those in writable
 * mappings (a patch's GOT and data: its relocations, a dozen or more 8-byte writes);
 * what that refuses (read-only or executable pages) goes through /proc/PID/mem as
 * before. A read of the target, a remote system call or call, and a full queue write
 * the queue out first, so nothing ever reads stale bytes. A write that fails stops the
 * queue there (those after it are dropped, as a caller stopping at its first error would
 * not make them), and end returns that error; a begin while gathering is -EINVAL.
 */
int target_write_gather_begin(Target *t);
int target_write_gather_end(Target *t);
/* Writes out what is queued, gathering goes on. */
int target_write_flush(Target *t);

/*
 * Runs a system call in the target on the borrowed thread th, which must be stopped.
 * Its registers, orig_rax (syscall restart), and signal mask are saved and restored:
 * the thread continues afterwards exactly as it would have. On success *ret holds the
 * raw return value (-errno values included) and 0 is returned; ptrace failures give -errno.
 * -ENOEXEC: the target holds no code to return through (see x86_64/remote.c).
 */
int target_syscall(Target *t, Thread *th, long nr, const long args[6], long *ret);

/*
 * How many stop requests to keep in flight where threads are stopped and checked one at
 * a time (a transition's pass, an int3 window's checks), each resumed before the next is
 * taken. A thread that stopped waits, stopped, for those taken before it: with every
 * thread idle (each stops at once) a window of 16 held the last of them for 15 others'
 * checks (5 ms of 64 idle threads, where its own took 20 us), and gained nothing, the
 * checks being one after another anyway. A window is worth it only while the threads
 * wait for the scheduler to run them into their stops. So it starts at
 * TARGET_WINDOW_MIN and doubles (up to max) after each wait for a stop longer than
 * TARGET_WINDOW_SLOW_NS, shrinking by one after each shorter one: target_window_wait()
 * around each target_wait_any(). The threads are taken in the order they were asked
 * (target_wait_any() returns the first of its array that stopped: keep it in order).
 */
#define TARGET_WINDOW_MIN 2
#define TARGET_WINDOW_SLOW_NS 200000ULL
typedef struct TargetWindow {
        size_t n;                /* requests to keep in flight now */
        size_t max;
} TargetWindow;
#define TARGET_WINDOW_INIT(m) ((TargetWindow) { .n = TARGET_WINDOW_MIN, .max = (m) })
/* The window after a wait for a stop of waited_ns. */
static inline void target_window_adapt(TargetWindow *w, uint64_t waited_ns) {
        if (waited_ns > TARGET_WINDOW_SLOW_NS)
                w->n = w->n * 2 < w->max ? w->n * 2 : w->max;
        else if (w->n > TARGET_WINDOW_MIN)
                w->n--;
}
/* target_wait_any() with the window adapted to how long it waited. */
int target_window_wait(Target *t, TargetWindow *w, Thread **v, size_t n, int timeout_ms, Thread **ret);

/* Finds the code of the target that remote steps run through (x86_64/remote.c) before a
 * thread is stopped for them: the first time in a process that scans its libc, better
 * done while every thread runs. Optional: each remote step checks it again. -ENOEXEC
 * as target_syscall(). */
int target_prepare_remote(Target *t);

/*
 * A batch of system calls on th: between begin and end, target_syscall() on th saves and
 * restores the thread's context once for all of them (the frame is written once, and
 * each call after the first is one SETREGS and one run from the previous call's exit
 * stop: about half the ptrace requests). The thread may be left by a dying patcher
 * between two calls as within one: it returns through the same frame. A call that
 * fails ends the batch (the context restored); end is then a no-op, and the calls after
 * it run one by one. No target_call() on th while a batch is open (-EBUSY). Every begin
 * must be followed by an end before th is resumed.
 */
int target_syscall_batch_begin(Target *t, Thread *th);
int target_syscall_batch_end(Target *t, Thread *th);

/* ptrace requests made by the calling thread so far (for tests and benchmarks). */
uint64_t target_ptrace_requests(void);
/* The bytes from the stack pointer - 128 - TARGET_SCRATCH up to the red zone are left alone by
 * target_syscall(): room for arguments passed in memory (a name, a struct). */
#define TARGET_SCRATCH 1024

/*
 * Calls the function at func in the target on the borrowed thread th with up to six
 * integer arguments, all signals blocked, below the red zone on a 16-byte aligned stack,
 * returning into return_code: an address in the target holding the bytes
 * target_call_return_code() gives (a restorer that needs no tracer, see x86_64/remote.c;
 * -EINVAL when they are not there). Waits at most timeout_ms. *ret gets rax. Registers,
 * signal mask and FPU state are restored. -EFAULT when it crashed (the fault is not
 * delivered). -ETIMEDOUT when it did not return in time: the thread is left in the call
 * (stopped, or late if it did not stop), to finish it by itself once resumed; *ret then
 * gets the address of its frame, which its stack pointer rises above when it is out.
 */
int target_call(Target *t, Thread *th, uint64_t func, const long args[6], uint64_t return_code,
                int timeout_ms, uint64_t *ret);
/* The code target_call() returns through, into buf; returns its length (at most 16). */
size_t target_call_return_code(uint8_t buf[static 16]);
/* Code to call through instead of a function f that takes no argument, so that the
 * target itself records the call: target_call() of it with f in args[0] and the address
 * of an 8-byte slot in args[1]. The slot gets CONTROL_CALL_STARTED as its first
 * instruction runs, CONTROL_CALL_RETURNED | the low 32 bits of f's return value before
 * it returns (patcher/control.h). Into buf; returns its length (at most 64). */
size_t target_call_record_code(uint8_t buf[static 64]);

/*
 * Precise waits for a multithreaded tracer (docs/performance.md, "Waiting for one's own
 * tracees"). A tracee's stop raises SIGCHLD for the whole tracing process: any of its
 * threads may take it, and the tracer of the thread that stopped then sleeps out its
 * slice. A thread that sets a timer here waits instead in waitpid() for the very thread
 * it waits for (the kernel wakes such a wait for that thread's report only), bounded by
 * the timer: its expiry must interrupt this thread's blocking system calls (a signal
 * directed at this thread by SIGEV_THREAD_ID, unblocked in it, whose handler was
 * installed without SA_RESTART). The library arms it only around such a wait and
 * disarms it afterwards. Per thread; NULL goes back to the SIGCHLD naps (the default).
 */
void target_set_wait_timer(const timer_t *timer);
/* The same with a timer the library makes for the calling thread: its expiry sends signo
 * to this thread alone (SIGEV_THREAD_ID), and signo is unblocked in it. The caller has
 * installed signo's handler without SA_RESTART. target_wait_timer_stop() deletes it and
 * blocks signo again. -errno when no timer could be made (the waits nap as before). */
int target_wait_timer_start(int signo);
void target_wait_timer_stop(void);

/*
 * For benchmarks (bench/): a process-wide observer of stops, NULL by default. When set,
 * it is called on the caller's thread each time a single-thread stop ends
 * (target_resume_thread) and each time a stop-the-world ends (target_resume_all).
 */
typedef struct TargetStopEvent {
        pid_t pid;
        pid_t tid;               /* the thread; 0 for a stop-the-world */
        unsigned n_threads;      /* threads that were stopped */
        uint64_t requested_ns;   /* CLOCK_MONOTONIC: interrupt sent (the first, for all) */
        uint64_t stopped_ns;     /* the stop collected (the last, for all) */
        uint64_t resumed_ns;     /* detached */
        bool borrowed;           /* a thread stopped by target_stop_any() for remote steps (a
                                  * patch load, a callback, a guard's install), not a check */
} TargetStopEvent;

/* A SIGTRAP is queued for th, not taken yet (target_task_stat()'s pending). */
bool target_sigtrap_queued(Target *t, const Thread *th);

/* What one read of /proc/PID/task/TID/stat says of a thread. */
typedef struct TaskStat {
        char state;              /* R, S, D, t, T, Z... */
        uint32_t pending;        /* its own pending signals (not the process's), 1..31 */
        uint32_t blocked;        /* its signal mask, 1..31 */
} TaskStat;
/* One read of /proc/PID/task/TID/stat (field 3, fields 31 and 32): the looks at every
 * thread read this, not status, which costs about twice as much a thread (a look at
 * 1,024 threads, docs/performance.md "Fourteenth round"). -errno, -ENOENT gone. */
int target_task_stat(pid_t pid, pid_t tid, TaskStat *ret);
/* Bit of signal sig (1..31) in a TaskStat mask. */
#define TASK_SIG_BIT(sig) (1U << ((sig) - 1))

typedef void (*TargetStopHook)(const TargetStopEvent *ev, void *userdata);
void target_set_stop_hook(TargetStopHook hook, void *userdata);

/*
 * Internal to the ptrace layer (patcher/target*.c and patcher/x86_64/remote.c); not for
 * other callers.
 */
uint64_t target__now_ns(void);
/* ptrace(2) with its -1/errno turned into -errno. */
int target__ptrace(int req, pid_t tid, void *addr, void *data);
/* th, stopped, is one past an int3 of ours with a SIGTRAP still queued: it ran into
 * the int3 and was stopped before it took the trap (target__waitpid() puts it back on the
 * int3 once it takes it: target_take_signal()). */
bool target__at_int3_trap(Target *t, const Thread *th);
/* Waits up to timeout_ms for the next ptrace-stop of the seized th; *ret_status gets the
 * waitpid status. -ESRCH (th marked gone) when it exited, -ETIMEDOUT. */
int target__wait(Target *t, Thread *th, int timeout_ms, int *ret_status);
/* Reaps the exits of t's seized threads other than except, without taking any stop of
 * theirs (waitid with WEXITED only): an execve in the target waits in de_thread() until
 * every other thread is released, and a traced thread is released only once its tracer
 * reaped it. Called while waiting for remote code that may execute a program. */
void target__reap_exited(Target *t, const Thread *except);
/* Keeps a signal caught in a signal-delivery-stop for delivery at resume (a second one is
 * queued back to the thread). */
void target__keep_signal(Target *t, Thread *th, int sig, const siginfo_t *info);
/* After a remote operation: th is stopped in a signal-delivery-stop (in_signal_stop) or an
 * event stop; prepares its pending signal for delivery at resume. */
int target__settle(Target *t, Thread *th, bool in_signal_stop);
