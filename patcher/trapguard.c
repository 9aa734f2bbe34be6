/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The int3 window's guards (trapguard.h, docs/stops.md "The int3 window"): ulp's
 * SIGTRAP handler installed and removed with remote rt_sigaction calls, and core
 * serialization with a remote membarrier.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include "common/invariant.h"
#include "common/macro.h"
#include "patcher/rsys.h"
#include "patcher/trapguard.h"

/* The kernel's struct sigaction on x86-64, as rt_sigaction takes it. */
typedef struct KSigaction {
        uint64_t handler, flags, restorer, mask;
} KSigaction;

#define KSA_RESTORER 0x04000000ULL
#define KSA_ONSTACK  0x08000000ULL
#define KSA_SIGINFO  0x00000004ULL

/* membarrier(2) commands (linux/membarrier.h). */
#define MB_PRIVATE_EXPEDITED_SYNC_CORE (1 << 5)
#define MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE (1 << 6)

/* rt_sigaction(SIGTRAP, act, old) in the target. The structures go in the scratch room
 * below the borrowed thread's red zone that target_syscall() leaves alone. */
static int remote_sigaction(Target *t, Thread *th, const KSigaction *act, KSigaction *old) {
        uint64_t where = ALIGN_DOWN(regs_sp(&th->regs) - 128 - 256, 16);
        int r = 0;

        if (act)
                r = target_write(t, where, act, sizeof(*act));
        if (r >= 0)
                r = rsys(t, th, SYS_rt_sigaction, SIGTRAP, act ? (long)where : 0,
                         old ? (long)(where + sizeof(KSigaction)) : 0, 8, 0, 0, NULL);
        if (r >= 0 && old)
                r = target_read(t, where + sizeof(KSigaction), old, sizeof(*old));
        return r;
}

/* True when handler is the code of a guard block: its magic is where it should be. */
static bool is_guard(Target *t, uint64_t handler) {
        uint64_t magic = 0;
        return handler > 1 && target_read(t, handler + SIGTRAP_OFF_MAGIC, &magic, sizeof(magic)) >= 0 &&
               magic == SIGTRAP_MAGIC;
}

/* Calls fn for every thread in /proc/PID/task; stops at its first non-zero return. */
static int for_each_task(pid_t pid, int (*fn)(pid_t pid, pid_t tid, void *ud), void *ud) {
        char path[32];
        struct dirent *de;
        DIR *d;
        int r = 0;

        snprintf(path, sizeof(path), "/proc/%d/task", pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while (r == 0 && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        r = fn(pid, (pid_t)atoi(de->d_name), ud);
        closedir(d);
        return r;
}

static int blocks_sigtrap(pid_t pid, pid_t tid, void *ud) {
        TaskStat s;
        /* A thread gone meanwhile blocks nothing. */
        if (target_task_stat(pid, tid, &s) < 0)
                return 0;
        return s.blocked & TASK_SIG_BIT(SIGTRAP) ? -EBUSY : 0;
}

static void sleep_us(long us) {
        struct timespec ts = { 0, us * 1000 };
        nanosleep(&ts, NULL);
}

/* A look at every thread's mask this recent stands for one made now: the threads run
 * on between the two either way (only a borrowed one is held), and each look is a file
 * read per thread, which a window's steps made three times in a row, the last with the
 * borrowed thread held. Counted from the look's end: the threads ran on during it too,
 * and a look at 1,024 threads takes about 20 ms, so that one counted from its start was
 * stale by the install right after it, which made it again with the borrowed thread
 * held (22 ms). */
#define TRAPGUARD_FRESH_NS (20ULL * 1000000ULL)

int trapguard_wait_unblocked(Target *t, int timeout_ms) {
        uint64_t now = target__now_ns(), end = now + (uint64_t)timeout_ms * 1000000ULL;
        int r;

        if (t->sigtrap_free_ns && now - t->sigtrap_free_ns < TRAPGUARD_FRESH_NS)
                return 0;
        while ((r = for_each_task(t->pid, blocks_sigtrap, NULL)) == -EBUSY && target__now_ns() < end)
                sleep_us(1000);
        if (r == 0)
                t->sigtrap_free_ns = target__now_ns();
        return r;
}

/* How long the install waits for a thread blocking SIGTRAP, holding the borrowed
 * thread stopped meanwhile. */
#define TRAPGUARD_INSTALL_WAIT_MS 20

int trapguard_install(Target *t, Thread *th, uint64_t block, const TrapGuardEntry *e, size_t n) {
        uint8_t buf[SIGTRAP_BLOCK_SIZE];
        KSigaction old = {}, now = {}, ours = { .handler = block,
                .flags = KSA_SIGINFO | KSA_RESTORER | KSA_ONSTACK,
                .restorer = block + SIGTRAP_OFF_RESTORER };
        uint64_t magic = SIGTRAP_MAGIC;
        uint32_t count = (uint32_t)n;
        int r;

        if (n > SIGTRAP_MAX_ENTRIES)
                return -E2BIG;
        /* A thread starting blocks every signal for a moment (glibc's pthread_create):
         * waited out, as the window's start does (trapguard_wait_unblocked()), for
         * a process that creates threads all the time. */
        r = trapguard_wait_unblocked(t, TRAPGUARD_INSTALL_WAIT_MS);
        if (r < 0)
                return r;
        memset(buf, 0, sizeof(buf));
        /* The handler ends before its restorer (x86_64/sigtrap.h). */
        ASSERT_RETURN(sigtrap_encode(buf) < SIGTRAP_OFF_RESTORER, -EUCLEAN);
        memcpy(buf + SIGTRAP_OFF_MAGIC, &magic, sizeof(magic));
        memcpy(buf + SIGTRAP_OFF_N, &count, sizeof(count));
        memcpy(buf + SIGTRAP_OFF_ENTRIES, e, n * sizeof(*e));
        r = remote_sigaction(t, th, NULL, &old);
        /* A window left open (at this block too): the program's disposition is the one
         * that guard kept, read before the block is written over. */
        if (r >= 0 && is_guard(t, old.handler))
                r = target_read(t, old.handler + SIGTRAP_OFF_OLD, &old, sizeof(old));
        if (r < 0)
                return r;
        memcpy(buf + SIGTRAP_OFF_OLD, &old, sizeof(old));
        r = target_write(t, block, buf, sizeof(buf));
        if (r >= 0)
                r = remote_sigaction(t, th, &ours, &now);
        if (r < 0)
                return r;
        /* Threads may run the handler now, blocking SIGTRAP meanwhile: the next window
         * looks at every thread again. */
        t->sigtrap_free_ns = 0;
        /* The program changed its disposition between the two calls: keep that one. */
        if (now.handler != old.handler && now.handler != block && !is_guard(t, now.handler))
                r = target_write(t, block + SIGTRAP_OFF_OLD, &now, sizeof(now));
        return r;
}

typedef struct InFlight {
        const uint64_t *pcs;
        size_t n;
        pid_t *again;            /* the threads the next look reads: not asleep in this one */
        size_t n_again, cap;
        bool hit;                /* one has a trap of the window to take */
} InFlight;

/* /proc/PID/task/TID/syscall of a thread off its CPU: "-1 SP PC" outside a system call
 * (an exception, such as the trap of an int3), "running" on a CPU. */
static bool in_trap_of(const InFlight *w, pid_t pid, pid_t tid) {
        char path[64], buf[128];
        unsigned long long sp, pc;
        FILE *f;
        bool hit = false;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (fgets(buf, sizeof(buf), f) && sscanf(buf, "-1 %llx %llx", &sp, &pc) == 2)
                for (size_t i = 0; i < w->n; i++)
                        hit |= pc == w->pcs[i];
        fclose(f);
        return hit;
}

static void inflight_done(InFlight *w) {
        free(w->again);
}

/*
 * One thread of a look: a trap of the window queued, or stopped in one (its SIGTRAP taken
 * from the queue by a stop for a tracer), is a hit. One read of stat a thread; syscall
 * only for one neither running nor asleep: a thread on its CPU reads "running" there. A
 * thread asleep (S) sleeps in a system call (the trap of an int3 never sleeps before its
 * signal is queued, and one that took its SIGTRAP from the queue stops, t, or has its
 * handler chosen already), and, the int3 bytes gone, it can take no trap of the window
 * any more: the next look leaves it out. So does it a thread gone.
 */
static int look_one(pid_t pid, pid_t tid, void *ud) {
        InFlight *w = ud;
        TaskStat s;

        if (target_task_stat(pid, tid, &s) < 0)
                return 0;
        if (s.pending & TASK_SIG_BIT(SIGTRAP))
                w->hit = true;
        else if (s.state == 'S')
                return 0;
        else if (s.state != 'R' && in_trap_of(w, pid, tid))
                w->hit = true;
        if (w->n_again == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 64;
                pid_t *v = realloc(w->again, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                w->again = v;
                w->cap = cap;
        }
        w->again[w->n_again++] = tid;
        return 0;
}

int trapguard_drain(Target *t, const uint64_t *trap_pcs, size_t n, int timeout_ms) {
        uint64_t end = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
        _cleanup_(inflight_done) InFlight w = { .pcs = trap_pcs, .n = n };
        _cleanup_free_ pid_t *v = NULL;
        size_t nv = 0;
        int r = 0, quiet = 0;

        /* Two quiet looks 1 ms apart: a thread between its int3 and the queueing of its
         * signal is either off its CPU (seen by its PC) or runs through in microseconds.
         * The first look reads every thread; the next ones only those it did not find
         * asleep (a thread started since came after the int3 bytes were gone), and
         * there is no next one when it found every thread asleep. */
        for (bool first = true; quiet < 2; first = false) {
                /* A thread of ours that stopped late (a check that timed out) with a
                 * trap queued takes it only once let go: nobody else would. */
                if (t->maybe_late)
                        t->maybe_late = target_collect_late(t) > 0;
                free(v);
                v = w.again;
                nv = w.n_again;
                w.again = NULL;
                w.n_again = w.cap = 0;
                w.hit = false;
                if (first)
                        r = for_each_task(t->pid, look_one, &w);
                for (size_t i = 0; i < nv && r >= 0; i++)
                        r = look_one(t->pid, v[i], &w);
                if (r < 0)
                        return r;
                quiet = w.hit ? 0 : quiet + 1;
                /* Every thread asleep: none left to look at again, no need to wait. */
                if (quiet && w.n_again == 0)
                        break;
                if (target__now_ns() > end)
                        return -ETIMEDOUT;
                if (quiet < 2)
                        sleep_us(1000);
        }
        return 0;
}

/* One call in the common case: the program's disposition in, the current one out; a
 * disposition the program installed meanwhile (not the guard's) is put back at once. */
int trapguard_remove(Target *t, Thread *th, uint64_t block) {
        KSigaction old, now;
        int r = target_read(t, block + SIGTRAP_OFF_OLD, &old, sizeof(old));

        if (r >= 0)
                r = remote_sigaction(t, th, &old, &now);
        if (r >= 0 && now.handler != block)
                r = remote_sigaction(t, th, &now, NULL);
        return r;
}

int trapguard_find_open(Target *t, Thread *th, uint64_t *ret_block) {
        KSigaction now;
        int r = remote_sigaction(t, th, NULL, &now);
        if (r < 0)
                return r;
        *ret_block = is_guard(t, now.handler) ? now.handler : 0;
        return 0;
}

/* Registration alone, one remote call: a kernel or an architecture without SYNC_CORE
 * refuses it (EINVAL; ENOSYS without membarrier), no query needed first. */
int trapguard_sync_ready(Target *t, Thread *th) {
        int r;

        if (t->sync_core != 0)
                return t->sync_core > 0 ? 0 : -EOPNOTSUPP;
        r = rsys(t, th, SYS_membarrier, MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0, 0, 0, 0, NULL);
        if (r == -ENOSYS || r == -EINVAL) {
                t->sync_core = -1;
                return -EOPNOTSUPP;
        }
        if (r >= 0)
                t->sync_core = 1;
        return r;
}

int trapguard_sync_cores(Target *t, Thread *th) {
        int r = trapguard_sync_ready(t, th);
        return r < 0 ? r : rsys(t, th, SYS_membarrier, MB_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0, 0, 0, 0, NULL);
}
