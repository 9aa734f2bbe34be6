/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fake target of fake-target.h: every function of patcher/target.h the code under
 * test calls, and unwinder_unwind(). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "fake-target.h"
#include "patcher/procmem.h"
#include "patcher/target-internal.h"
#include "patcher/target-seal.h"
#include "unwind/unwind.h"

FakeStats fake_stats;

static FakeThread fakes[FAKE_MAX_THREADS];
static size_t n_fakes;
/* The stack the borrowed thread's scratch room (TARGET_SCRATCH, rsys.c) is taken from. */
static uint8_t scratch[16384] __attribute__((aligned(16)));

static int rescan(Target *t);

void fake_reset(void) {
        memset(fakes, 0, sizeof(fakes));
        n_fakes = 0;
        fake_stats = (FakeStats) {};
}

/* The code under test opens the target itself (the operation layer): this process, with
 * the threads made up so far. */
int target_open(pid_t pid, Target **ret) {
        Target *t;

        if (pid != getpid())
                return -ESRCH;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->pid = pid;
        t->auth_fd = -1;
        t->mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
        if (t->mem_fd < 0) {
                free(t);
                return -errno;
        }
        if (rescan(t) < 0) {
                fake_target_free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

Target *fake_target_new(void) {
        Target *t = NULL;

        fake_reset();
        return target_open(getpid(), &t) < 0 ? NULL : t;
}

void target_free(Target *t) {
        fake_target_free(t);
}

int target_bind_image(Target *t, int auth_fd) {
        (void)t, (void)auth_fd;
        return 0;
}

size_t target_collect_late(Target *t) {
        (void)t;
        return 0;
}

size_t target_collect_orphans(void) {
        return 0;
}

bool target_orphans_of(pid_t pid) {
        (void)pid;
        return false;
}

int target_wait_timer_start(int signo) {
        (void)signo;
        return -ENOSYS;
}

void target_wait_timer_stop(void) {
}

void target_thread_name(Target *t, pid_t tid, char buf[static 16]) {
        (void)t;
        snprintf(buf, 16, "fake%d", (int)tid);
}

void fake_target_free(Target *t) {
        if (!t)
                return;
        procmaps_drop(t);
        close(t->mem_fd);
        free(t->threads);
        free(t);
}

FakeThread *fake_thread(pid_t tid) {
        for (size_t i = 0; i < n_fakes; i++)
                if (fakes[i].tid == tid)
                        return &fakes[i];
        return NULL;
}

FakeThread *fake_thread_add(Target *t, uint64_t tp, uint64_t pc) {
        FakeThread *f;

        (void)t;
        if (n_fakes == FAKE_MAX_THREADS)
                abort();
        f = &fakes[n_fakes++];
        *f = (FakeThread) { .tid = (pid_t)(100000 + n_fakes), .tp = tp ? tp : 0x7f0000001000 + n_fakes * 0x10000,
                            .pcs = { pc }, .n_pcs = 1 };
        return f;
}

void fake_thread_stack(FakeThread *th, const uint64_t *pcs, size_t n) {
        if (n > FAKE_MAX_FRAMES)
                abort();
        memcpy(th->pcs, pcs, n * sizeof(*pcs));
        th->n_pcs = n;
}

Thread *target_find_thread(Target *t, pid_t tid) {
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].tid == tid)
                        return &t->threads[i];
        return NULL;
}

/* A rescan: threads added since appear, exited ones are marked gone. */
static int rescan(Target *t) {
        for (size_t i = 0; i < n_fakes; i++) {
                Thread *th = target_find_thread(t, fakes[i].tid);
                if (!th && !fakes[i].exited) {
                        Thread *n = realloc(t->threads, (t->n_threads + 1) * sizeof(*n));
                        if (!n)
                                return -ENOMEM;
                        t->threads = n;
                        t->n_threads++;
                        t->threads[t->n_threads - 1] = (Thread) { .tid = fakes[i].tid };
                } else if (th && fakes[i].exited) {
                        th->gone = true;
                        th->stopped = false;
                }
        }
        return 0;
}

static void set_stopped(Thread *th, FakeThread *f) {
        th->stopped = th->seized = true;
        th->late = false;
        th->asked_ns = 0;
        memset(&th->regs, 0, sizeof(th->regs));
        th->regs.rip = f->pcs[0];
        th->regs.fs_base = f->tp;
        th->regs.rsp = (uint64_t)(uintptr_t)(scratch + sizeof(scratch) - 256);
        f->stops++;
}

/* One thread asked to stop: 0 stopped, -ESRCH gone, -ETIMEDOUT late. */
static int stop_one(Target *t, Thread *th) {
        FakeThread *f = fake_thread(th->tid);

        if (!f || f->exited) {
                th->gone = true;
                th->stopped = false;
                return -ESRCH;
        }
        if (f->stop == FAKE_LATE) {
                th->late = true;
                t->late_tid = th->tid;
                t->late_state = 'D';
                return -ETIMEDOUT;
        }
        set_stopped(th, f);
        return 0;
}

int target_resume_all(Target *t) {
        fake_stats.resume_all++;
        for (size_t i = 0; i < t->n_threads; i++)
                t->threads[i].stopped = t->threads[i].seized = false;
        return 0;
}

uint64_t target_stop_all_took_ns(const Target *t) {
        (void)t;
        return 0;
}

int target_refresh_threads(Target *t) {
        return rescan(t);
}

int target_stop_all(Target *t) {
        int r = rescan(t);

        if (r < 0)
                return r;
        fake_stats.stop_all++;
        for (size_t i = 0; i < t->n_threads; i++) {
                Thread *th = &t->threads[i];
                if (th->gone)
                        continue;
                r = stop_one(t, th);
                if (r == -ETIMEDOUT) {
                        (void)target_resume_all(t);
                        return r;
                }
        }
        return 0;
}

int target_stop_thread(Target *t, Thread *th) {
        fake_stats.stop_one++;
        return stop_one(t, th);
}

int target_stop_any(Target *t, int timeout_ms, Thread **ret) {
        (void)timeout_ms;
        for (size_t i = 0; i < t->n_threads; i++)
                if (!t->threads[i].gone && stop_one(t, &t->threads[i]) == 0) {
                        *ret = &t->threads[i];
                        return 0;
                }
        return -ESRCH;
}

int target_request_stop(Target *t, Thread *th) {
        FakeThread *f = fake_thread(th->tid);

        (void)t;
        if (th->gone || !f || f->exited) {
                th->gone = true;
                return -ESRCH;
        }
        th->asked_ns = 1;
        return 0;
}

/* The first of v that stops; an exited one is marked gone (-ESRCH), as target.c does. */
int target_wait_any(Target *t, Thread **v, size_t n, int timeout_ms, Thread **ret) {
        (void)timeout_ms;
        for (size_t k = 0; k < n; k++) {
                FakeThread *f = fake_thread(v[k]->tid);
                if (!f || f->exited) {
                        v[k]->gone = true;
                        return -ESRCH;
                }
                if (f->stop == FAKE_LATE)
                        continue;
                fake_stats.stop_one++;
                set_stopped(v[k], f);
                *ret = v[k];
                return 0;
        }
        (void)t;
        return -ETIMEDOUT;
}

/* Made-up threads stop at once: the window stays at its least. */
int target_window_wait(Target *t, TargetWindow *w, Thread **v, size_t n, int timeout_ms, Thread **ret) {
        target_window_adapt(w, 0);
        return target_wait_any(t, v, n, timeout_ms, ret);
}

/* The int3 window (entry-bp.c) is linked in with the transition: it takes no signal from
 * made-up threads. */
int target_take_signal(Target *t, Thread *th, int timeout_ms) {
        (void)t;
        (void)th;
        (void)timeout_ms;
        return -EOPNOTSUPP;
}

/* ...and none has a signal queued. */
bool target_sigtrap_queued(Target *t, const Thread *th) {
        (void)t;
        (void)th;
        return false;
}

/* ...nor a mask or a state to read (the guard's looks are not run on them). */
int target_task_stat(pid_t pid, pid_t tid, TaskStat *ret) {
        (void)pid;
        (void)tid;
        *ret = (TaskStat) { .state = 'S' };
        return 0;
}

/* Made-up threads are never in uninterruptible sleep. */
char target__thread_state(pid_t pid, pid_t tid) {
        (void)pid;
        (void)tid;
        return 'S';
}

uint64_t target__now_ns(void) {
        return monotonic_ns();
}

int target_resume_thread(Target *t, Thread *th) {
        (void)t;
        th->stopped = th->seized = false;
        return th->gone ? -ESRCH : 0;
}

bool target_thread_late(const Thread *th) {
        return th->late;
}

void target_note_late(Target *t, const Thread *th) {
        t->late_tid = th->tid;
        t->late_state = 'D';
}

void target_describe_late_short(Target *t, char *buf, size_t len) {
        snprintf(buf, len, "not stopped within %d ms (state %c)",
                 t->stop_timeout_ms > 0 ? t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS, t->late_state);
}

void target_describe_late(Target *t, char *buf, size_t len) {
        snprintf(buf, len, "thread %d of process %d did not stop", (int)t->late_tid, (int)t->pid);
}

bool target_traced_by_other(Target *t) {
        (void)t;
        return false;
}

/* Made-up threads: none traced by another, asleep, blocking nothing. */
int target_look_threads(Target *t, TargetLook *ret) {
        *ret = (TargetLook) {};
        return target_refresh_threads(t);
}

void target_describe_tracer(Target *t, char *buf, size_t len) {
        snprintf(buf, len, "a thread of process %d is traced by another program", (int)t->pid);
}

/* The target is this process. */
uid_t target_fsuid(Target *t) {
        (void)t;
        return geteuid();
}

Thread *target_any_stopped(Target *t) {
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].stopped)
                        return &t->threads[i];
        return NULL;
}

/* The PC a trap or a test sets goes back to the fake thread. */
int target_set_regs(Target *t, Thread *th) {
        FakeThread *f = fake_thread(th->tid);

        (void)t;
        if (!f || !th->stopped)
                return -ESRCH;
        f->pcs[0] = th->regs.rip;
        return 0;
}

int target_read(Target *t, uint64_t addr, void *buf, size_t len) {
        ssize_t n = pread(t->mem_fd, buf, len, (off_t)addr);
        return n < 0 ? -errno : (size_t)n == len ? 0 : -EFAULT;
}

int target_write(Target *t, uint64_t addr, const void *buf, size_t len) {
        ssize_t n = pwrite(t->mem_fd, buf, len, (off_t)addr);
        return n < 0 ? -errno : (size_t)n == len ? 0 : -EFAULT;
}

int target_read_many(Target *t, const uint64_t *addrs, void *bufs, size_t each, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = target_read(t, addrs[i], (uint8_t *)bufs + i * each, each);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Runs here: the target is this process. */
int target_prepare_remote(Target *t) {
        (void)t;
        return 0;
}

int target_syscall(Target *t, Thread *th, long nr, const long args[6], long *ret) {
        long r;

        (void)t;
        (void)th;
        fake_stats.syscalls++;
        if (th && th->batch)
                fake_stats.batch_calls++;
        r = syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
        *ret = r < 0 ? -errno : r;
        return 0;
}

/* A batch only marks the thread (its pointer stands for the open batch), as target.h
 * says: begin twice is refused, end without begin does nothing. */
/* Writes go straight to memory here: gathering only marks the target. */
int target_write_gather_begin(Target *t) {
        if (t->gather)
                return -EINVAL;
        t->gather = (struct TargetGather *)t;
        fake_stats.gathers++;
        return 0;
}

int target_write_gather_end(Target *t) {
        t->gather = NULL;
        return 0;
}

int target_write_flush(Target *t) {
        (void)t;
        return 0;
}

int target_syscall_batch_begin(Target *t, Thread *th) {
        (void)t;
        if (th->batch)
                return -EINVAL;
        th->batch = (struct RemoteBatch *)th;
        fake_stats.batches++;
        return 0;
}

int target_syscall_batch_end(Target *t, Thread *th) {
        (void)t;
        th->batch = NULL;
        return 0;
}

uint64_t target_ptrace_requests(void) {
        return 0;
}

int target_call(Target *t, Thread *th, uint64_t func, const long args[6], uint64_t return_code,
                int timeout_ms, uint64_t *ret) {
        (void)t, (void)th, (void)func, (void)args, (void)return_code, (void)timeout_ms, (void)ret;
        return -ENOSYS;
}

size_t target_call_return_code(uint8_t buf[static 16]) {
        memset(buf, 0xcc, 16);
        return 16;
}

size_t target_call_record_code(uint8_t buf[static 64]) {
        memset(buf, 0xcc, 64);
        return 64;
}

/* The unwinder is the fake threads' stacks: nothing to open. */
static int fake_unwinder;

int unwinder_new(pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata, Unwinder **ret) {
        (void)pid, (void)mods, (void)read, (void)userdata;
        *ret = (Unwinder *)&fake_unwinder;
        return 0;
}

void unwinder_free(Unwinder *u) {
        (void)u;
}

int unwinder_set_modules(Unwinder *u, const ModuleList *mods) {
        (void)u, (void)mods;
        return 0;
}

/* Never kept: the fake process has no start time. */
int unwinder_rebind(Unwinder *u, pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata) {
        (void)u, (void)pid, (void)mods, (void)read, (void)userdata;
        return -ESTALE;
}

uint64_t unwinder_copied_bytes(const Unwinder *u) {
        (void)u;
        return 0;
}

size_t unwinder_fds(const Unwinder *u) {
        (void)u;
        return 0;
}

/* The stack of the fake thread as given, reliable unless marked otherwise. */
int unwinder_unwind(Unwinder *u, pid_t tid, const struct user_regs_struct *regs, UnwindResult *ret) {
        FakeThread *f = fake_thread(tid);

        (void)u;
        if (!f)
                return -ESRCH;
        memset(ret, 0, offsetof(UnwindResult, reason) + 1);
        ret->n = f->n_pcs;
        memcpy(ret->pcs, f->pcs, f->n_pcs * sizeof(*f->pcs));
        ret->pcs[0] = regs->rip;
        ret->reliable = !f->unreliable;
        if (f->unreliable)
                snprintf(ret->reason, sizeof(ret->reason), "no CFI for the PC");
        return 0;
}

/* The clone barrier needs a real process: a completion that asks for it stops every
 * thread instead (as for a process traced by another program). */
int target_seal_begin(Target *t, TargetSeal *s) {
        *s = (TargetSeal) {};
        return -EBUSY;
}

int target_seal_poll(Target *t, TargetSeal *s) {
        return 0;
}

int target_seal_rescan(Target *t, TargetSeal *s) {
        return 0;
}

int target_seal_end(Target *t, TargetSeal *s, int timeout_ms) {
        return 0;
}

int target_seal_stop(Target *t, TargetSeal *s, pid_t tid, Thread *th, int timeout_ms) {
        return 0;
}

int target_seal_cont(Target *t, TargetSeal *s, Thread *th, bool set_regs) {
        return 0;
}

void target_seal_done(TargetSeal *s) {
}

/* The fake process has no threads to trace: fn runs here. */
int target_seal_run(int (*fn)(void *ud), void *ud) {
        return fn(ud);
}
