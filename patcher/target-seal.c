/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clone barrier (target-seal.h, docs/stops.md). */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/filecache.h"
#include "patcher/target-internal.h"
#include "patcher/target-seal.h"

/* This thread runs a seal for target_seal_run(): its exit ends the seal. */
static _Thread_local bool own_tracer;

static int seal_add(TargetSeal *s, pid_t tid, bool born) {
        for (size_t i = 0; i < s->n; i++)
                if (s->v[i].tid == tid)
                        return 0;
        if (s->n == s->n_alloc) {
                size_t m = s->n_alloc ? 2 * s->n_alloc : 64;
                SealedThread *v = realloc(s->v, m * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                s->v = v;
                s->n_alloc = m;
        }
        s->v[s->n++] = (SealedThread) { .tid = tid, .born = born };
        return 1;
}

static void seal_drop(TargetSeal *s, size_t i) {
        s->v[i] = s->v[--s->n];
}

/* TracerPid of tid is the calling thread: a child the kernel attached to us. */
static bool traced_by_us(pid_t pid, pid_t tid) {
        char path[64], line[128];
        bool ours = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "TracerPid:", 10) == 0)
                        ours = atoi(line + 10) == gettid();
        fclose(f);
        return ours;
}

/* One read of /proc/PID/task: every thread not sealed yet is seized. 1 some were, 0 none. */
static int seal_scan(Target *t, TargetSeal *s) {
        char path[32];
        struct dirent *de;
        DIR *d;
        int r = 0, found = 0;

        snprintf(path, sizeof(path), "/proc/%d/task", t->pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while (r >= 0 && (de = readdir(d))) {
                pid_t tid = (pid_t)atoi(de->d_name);
                bool known = false;
                if (tid <= 0)
                        continue;
                for (size_t i = 0; i < s->n && !known; i++)
                        known = s->v[i].tid == tid;
                if (known)
                        continue;
                r = target__ptrace(PTRACE_SEIZE, tid, NULL,
                                   (void *)(long)(TARGET_PTRACE_OPTIONS | PTRACE_O_TRACECLONE));
                if (r == -ESRCH) {
                        r = 0;
                        continue;
                }
                /* Attached already: by the kernel, when its parent (sealed) created it. */
                if (r == -EPERM && traced_by_us(t->pid, tid))
                        r = seal_add(s, tid, true);
                else if (r == -EPERM)
                        r = -EBUSY;
                else if (r >= 0)
                        r = seal_add(s, tid, false);
                found |= r > 0;
        }
        closedir(d);
        return r < 0 ? r : found;
}

static int seal_look(Target *t, TargetSeal *s, bool ending);

/* Reads of /proc/PID/task before the count agrees (seal_begin). */
#define SEAL_SCANS_MAX 200

int target_seal_rescan(Target *t, TargetSeal *s) {
        bool sealed = false;
        int r, n;

        for (int scans = 0;; scans++) {
                /* A pass that seized nobody: every thread listed was sealed before the
                 * read, so a thread created since has a sealed parent. */
                while ((r = seal_scan(t, s)) > 0)
                        sealed = true;
                /* But a read of /proc/PID/task skips a thread when others exit while it
                 * runs (it goes on by position), and a clone already under way when its
                 * parent was sealed makes a child the kernel does not attach: the
                 * process's count of its threads says whether one is missing. Sealed
                 * threads count until their exit is collected here, and a child is
                 * counted before its parent's clone event reports it: both are
                 * collected first. */
                if (r >= 0)
                        r = seal_look(t, s, false);
                if (r < 0)
                        return r;
                n = target__nr_threads(t->pid);
                if (n < 0)
                        return -ESRCH;
                if ((size_t)n <= s->n)
                        return sealed ? 1 : 0;
                if (scans >= SEAL_SCANS_MAX)
                        return -EAGAIN;
        }
}

int target_seal_begin(Target *t, TargetSeal *s) {
        int r;

        *s = (TargetSeal) {};
        /* A thread of ours already (late: asked to stop by an earlier step, not stopped
         * yet) would be taken for a child the kernel attached, which has run nothing. */
        if (target_orphans_of(t->pid))
                return -EBUSY;
        for (size_t i = 0; i < t->n_threads; i++)
                if (t->threads[i].seized && !t->threads[i].gone)
                        return -EBUSY;
        r = target_seal_rescan(t, s);
        if (r >= 0)
                return 0;
        (void)target_seal_end(t, s, 1000);
        return r;
}

static bool is_stop_signal(int sig) {
        return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/*
 * What sealed thread i's stop (status) means. ending: its interrupt was sent. 1 it is
 * in a stop to let go from (*sig: the signal to deliver with the detach), 0 dealt with
 * (resumed, or held), -errno.
 */
static int seal_stop(Target *t, TargetSeal *s, size_t i, int status, bool undone, bool ending, int *sig) {
        SealedThread *e = &s->v[i];
        int ev = status >> 16, stopsig = WSTOPSIG(status);
        unsigned long child = 0;
        int r;

        *sig = 0;
        if (ev == PTRACE_EVENT_CLONE) {
                s->clones++;
                r = target__ptrace(PTRACE_GETEVENTMSG, e->tid, NULL, &child);
                if (r >= 0 && child > 0)
                        r = seal_add(s, (pid_t)child, true);
                if (r < 0)
                        return r;
                e = &s->v[i];
                /* Ending, any stop is one to let go from: the interrupt sent may have
                 * been taken by this very stop, and a thread continued here would not
                 * stop again. */
                if (ending)
                        return 1;
                (void)target__ptrace(PTRACE_CONT, e->tid, NULL, NULL);
                return 0;
        }
        if (ev == PTRACE_EVENT_EXEC) {
                t->image_changed = true;
                return -ESTALE;
        }
        if (ev == PTRACE_EVENT_STOP && e->born && !e->held && !e->asked) {
                /* Its first stop, before its first instruction. */
                s->births++;
                e->held = true;
                return ending ? 1 : 0;
        }
        if (ev == PTRACE_EVENT_STOP) {
                if (ending)
                        return 1;
                /* A group-stop: stays stopped, still reporting to us. */
                (void)target__ptrace(is_stop_signal(stopsig) ? PTRACE_LISTEN : PTRACE_CONT, e->tid, NULL, NULL);
                return 0;
        }
        if (ev != 0 || stopsig == (SIGTRAP | 0x80)) {
                if (ending)
                        return 1;
                (void)target__ptrace(PTRACE_CONT, e->tid, NULL, NULL);
                return 0;
        }
        /* A signal-delivery-stop: the signal goes on to the thread (none for the trap of
         * an int3 of ours, undone: the thread runs into the int3 again). */
        if (undone)
                stopsig = 0;
        if (ending) {
                *sig = stopsig;
                return 1;
        }
        (void)target__ptrace(PTRACE_CONT, e->tid, NULL, (void *)(long)stopsig);
        return 0;
}

/* One look at each sealed thread not held; ending: those in a stop are let go. */
static int seal_look(Target *t, TargetSeal *s, bool ending) {
        for (size_t i = 0; i < s->n;) {
                int status, sig, r;
                bool undone;
                pid_t w;
                if ((s->v[i].held || s->v[i].stopped) && !ending) {
                        i++;
                        continue;
                }
                w = target__waitpid(t, s->v[i].tid, &status, WNOHANG, &undone);
                if (w == 0) {
                        i++;
                        continue;
                }
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
                        seal_drop(s, i);
                        continue;
                }
                r = seal_stop(t, s, i, status, undone, ending, &sig);
                if (r < 0)
                        return r;
                if (r == 0) {
                        i++;
                        continue;
                }
                (void)target__ptrace(PTRACE_DETACH, s->v[i].tid, NULL, (void *)(long)sig);
                seal_drop(s, i);
        }
        return 0;
}

int target_seal_poll(Target *t, TargetSeal *s) {
        return seal_look(t, s, false);
}

/* Threads still seized when the end gives up (one the machine never ran into its stop,
 * a vfork parent waiting for its child): orphans, as late threads of a Target freed
 * are (patcher/target-late.c), so that the next stop of the process takes them over and
 * a long-running caller lets them go when they stop; left here, nothing would. */
static void seal_orphan_rest(Target *t, TargetSeal *s) {
        for (size_t i = 0; i < s->n; i++)
                target__orphan_add(t->pid, s->v[i].tid);
        s->n = 0;
}

int target_seal_end(Target *t, TargetSeal *s, int timeout_ms) {
        uint64_t end = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;

        /* On a tracer thread of its own: those in a stop are let go (each with its
         * signal), the running ones by the thread's exit, without a stop. */
        if (own_tracer) {
                for (size_t i = 0; i < s->n; i++)
                        if (s->v[i].held || s->v[i].stopped)
                                (void)target__ptrace(PTRACE_DETACH, s->v[i].tid, NULL, (void *)(long)s->v[i].sig);
                s->n = 0;
                return 0;
        }

        /* The held ones are in a stop: let go at once. The others: every interrupt sent
         * first, so that their waits for the scheduler overlap. */
        for (size_t i = 0; i < s->n;) {
                SealedThread *e = &s->v[i];
                if (e->held || e->stopped) {
                        (void)target__ptrace(PTRACE_DETACH, e->tid, NULL, (void *)(long)e->sig);
                        seal_drop(s, i);
                        continue;
                }
                if (!e->born && target__ptrace(PTRACE_INTERRUPT, e->tid, NULL, NULL) == -ESRCH) {
                        seal_drop(s, i);
                        continue;
                }
                e->asked = !e->born;
                i++;
        }
        while (s->n > 0) {
                struct timespec ts = { 0, 200000 };
                int r = seal_look(t, s, true);
                if (r < 0) {
                        seal_orphan_rest(t, s);
                        return r;
                }
                /* Children created meanwhile (a clone event before the interrupt's stop)
                 * join the list as born, and are let go at their first stop. */
                if (s->n == 0)
                        break;
                if (target__now_ns() > end) {
                        seal_orphan_rest(t, s);
                        return -ETIMEDOUT;
                }
                nanosleep(&ts, NULL);
        }
        return 0;
}

static ssize_t seal_find(const TargetSeal *s, pid_t tid) {
        for (size_t i = 0; i < s->n; i++)
                if (s->v[i].tid == tid)
                        return (ssize_t)i;
        return -1;
}

/* The stop (status) of the sealed thread i, which was asked to stop: taken whatever it
 * is, as every ptrace-stop has its registers. 1 taken, 0 exited, -errno. */
static int seal_take(Target *t, TargetSeal *s, size_t i, int status, bool undone) {
        int ev = status >> 16, stopsig = WSTOPSIG(status);
        unsigned long child = 0;
        int r;

        if (WIFEXITED(status) || WIFSIGNALED(status)) {
                seal_drop(s, i);
                return 0;
        }
        if (ev == PTRACE_EVENT_EXEC) {
                t->image_changed = true;
                return -ESTALE;
        }
        if (ev == PTRACE_EVENT_CLONE) {
                s->clones++;
                r = target__ptrace(PTRACE_GETEVENTMSG, s->v[i].tid, NULL, &child);
                if (r >= 0 && child > 0)
                        r = seal_add(s, (pid_t)child, true);
                if (r < 0)
                        return r;
        } else if (ev == PTRACE_EVENT_STOP && s->v[i].born && !s->v[i].held) {
                s->births++;
                s->v[i].held = true;
        } else if (ev == PTRACE_EVENT_STOP)
                s->v[i].listen = is_stop_signal(stopsig);
        else if (ev == 0 && stopsig != (SIGTRAP | 0x80))
                s->v[i].sig = undone ? 0 : stopsig;
        return 1;
}

/* Looks at a thread asked to stop before target_seal_stop() sleeps. */
#define SEAL_SPINS 64

int target_seal_stop(Target *t, TargetSeal *s, pid_t tid, Thread *th, int timeout_ms) {
        ssize_t i = seal_find(s, tid);
        uint64_t asked = target__now_ns(), end = asked + (uint64_t)timeout_ms * 1000000ULL;
        int r = 1;

        if (i < 0)
                return 0;
        *th = (Thread) { .tid = tid, .seized = true, .stop_ns = asked };
        if (!s->v[i].held) {
                r = target__ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
                if (r == -ESRCH) {
                        seal_drop(s, (size_t)i);
                        return 0;
                }
                if (r < 0)
                        return r;
                /* seal_look() leaves it to this wait. */
                s->v[i].stopped = true;
                s->v[i].listen = false;
                s->v[i].sig = 0;
                for (unsigned spins = 0;; spins++) {
                        struct timespec ts = { 0, 50000 };
                        int status;
                        bool undone;
                        pid_t w = target__waitpid(t, tid, &status, WNOHANG, &undone);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                seal_drop(s, (size_t)i);
                                return 0;
                        }
                        if (w == tid) {
                                r = seal_take(t, s, (size_t)i, status, undone);
                                break;
                        }
                        /* An idle thread stops within microseconds: only a wait that
                         * lasts looks at the others (a look is a wait on each), every
                         * millisecond, so that a stop costs no look at every thread. */
                        if (spins < SEAL_SPINS) {
                                sched_yield();
                                continue;
                        }
                        if ((spins - SEAL_SPINS) % 20 == 0) {
                                r = seal_look(t, s, false);
                                i = seal_find(s, tid);
                                if (r < 0 || i < 0)
                                        return r;
                        }
                        if (target__now_ns() > end) {
                                /* Its stop, when it comes, is seal_look()'s to let go. */
                                s->v[i].stopped = false;
                                return -ETIMEDOUT;
                        }
                        nanosleep(&ts, NULL);
                }
                if (r <= 0)
                        return r;
                i = seal_find(s, tid);
        }
        s->v[i].stopped = true;
        s->v[i].stop_ns = asked;
        th->stopped = true;
        th->seen_ns = target__now_ns();
        if (s->v[i].sig) {
                th->signal_stop = true;
                th->held_sig = s->v[i].sig;
                (void)target__ptrace(PTRACE_GETSIGINFO, tid, NULL, &th->held_info);
        }
        r = target__ptrace(PTRACE_GETREGS, tid, NULL, &th->regs);
        if (r == -ESRCH) {
                seal_drop(s, (size_t)i);
                return 0;
        }
        return r < 0 ? r : 1;
}

int target_seal_cont(Target *t, TargetSeal *s, Thread *th, bool set_regs) {
        ssize_t i = seal_find(s, th->tid);
        SealedThread *e;
        int r = 0;

        if (i < 0 || !s->v[i].stopped)
                return 0;
        e = &s->v[i];
        if (set_regs)
                r = target__ptrace(PTRACE_SETREGS, e->tid, NULL, &th->regs);
        if (r >= 0 && !e->held)
                r = target__ptrace(e->listen ? PTRACE_LISTEN : PTRACE_CONT, e->tid, NULL,
                                   (void *)(long)(e->listen ? 0 : e->sig));
        if (!e->held)
                target__note_thread_stop(t, e->tid, e->stop_ns, th->seen_ns, false);
        e->stopped = e->held;   /* a held one is let go at the end */
        e->sig = 0;
        e->listen = false;
        th->stopped = false;
        if (r == -ESRCH) {
                seal_drop(s, (size_t)i);
                r = 0;
        }
        return r;
}

void target_seal_done(TargetSeal *s) {
        free(s->v);
        *s = (TargetSeal) {};
}

typedef struct SealRun {
        int (*fn)(void *ud);
        void *ud;
        int r;
        pid_t tid;
} SealRun;

static void *seal_thread(void *p) {
        SealRun *run = p;

        run->tid = gettid();
        own_tracer = true;
        /* What fn makes for the operation (a symbol table a look reads) outlives this
         * thread, whose exit would drop its own cache's entries. */
        filecache_bypass_thread();
        run->r = run->fn(run->ud);
        return NULL;
}

/* How long the exit of a seal's tracer thread may take to let its tracees go. */
#define SEAL_EXIT_MS 1000

int target_seal_run(int (*fn)(void *ud), void *ud) {
        SealRun run = { .fn = fn, .ud = ud };
        uint64_t end;
        pthread_t th;

        if (pthread_create(&th, NULL, seal_thread, &run) != 0)
                return fn(ud);   /* here: its end stops each thread to detach it */
        (void)pthread_join(th, NULL);
        /* The join returns once the thread's memory is let go (its tid cleared), before
         * the kernel detaches its tracees (exit_ptrace(), in exit_notify()); its pid is
         * unhashed after that, and only then may another thread of ours seize them. */
        end = target__now_ns() + SEAL_EXIT_MS * 1000000ULL;
        while (syscall(SYS_tgkill, getpid(), run.tid, 0) == 0 || errno != ESRCH) {
                if (target__now_ns() > end)
                        return run.r < 0 ? run.r : -ETIMEDOUT;
                sched_yield();
        }
        return run.r;
}
