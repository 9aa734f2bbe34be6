/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The int3 window's guards (patcher/trapguard.h) on real processes: victim-guard
 * reports what it observed in a shared memfd. Each case: test-guard CASE.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "common/macro.h"
#include "patcher/target.h"
#include "patcher/entry-bp.h"
#include "patcher/trapguard.h"
#include "patcher/x86_64/relocate.h"
#include "test.h"
#include "victim-shared.h"

TEST_MAIN()

typedef struct Victim {
        pid_t pid;
        GuardShared *sh;
} Victim;

static pid_t child = -1;

static void kill_child(void) {
        if (child > 0)
                kill(child, SIGKILL);
        while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
                ;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

#define WAIT_UNTIL(cond, ms) ({ \
                uint64_t _end = now_ns() + (uint64_t)(ms) * 1000000ULL; \
                bool _ok; \
                while (!(_ok = (cond)) && now_ns() < _end) \
                        sleep_ms(1); \
                _ok; \
        })

static void victim_start(Victim *v, const char *mode) {
        int fd = memfd_create("guard-shared", 0);
        char fds[16];

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, sizeof(GuardShared)));
        v->sh = mmap(NULL, sizeof(GuardShared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(v->sh != MAP_FAILED);
        atexit(kill_child);
        child = v->pid = fork();
        ASSERT_TRUE(v->pid >= 0);
        if (v->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                snprintf(fds, sizeof(fds), "%d", fd);
                setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
                execl(VICTIM_PATH, "victim-guard", mode, fds, (char *)NULL);
                _exit(127);
        }
        close(fd);
        ASSERT_TRUE(WAIT_UNTIL(v->sh->ready, 5000));
}

static uint64_t sum(Victim *v, int k) {
        uint64_t s = 0;
        for (int i = 0; i < GUARD_CALLERS; i++)
                s += v->sh->calls[i][k];
        return s;
}

/* True when the victim is still running (not dead, not a zombie). */
static bool alive(Victim *v) {
        return waitpid(v->pid, NULL, WNOHANG | __WALL) == 0;
}

/* A fresh r-x page in the victim for the guard block, as ulp's code areas are. */
static uint64_t map_block(Target *t, Thread *th) {
        const long args[6] = { 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0 };
        long ret = -1;
        ASSERT_OK(target_syscall(t, th, SYS_mmap, args, &ret));
        ASSERT_TRUE(ret > 0);
        return (uint64_t)ret;
}

/* Threads starting up run with every signal blocked for a moment (glibc): waited out
 * first, holding no thread, as entry_write_bp() does. */
static Target *attach(Victim *v, Thread **th, bool wait_unblocked) {
        Target *t = NULL;
        ASSERT_OK(TEST_TARGET_OPEN(v->pid, &t));
        if (wait_unblocked)
                ASSERT_OK(trapguard_wait_unblocked(t, 5000));
        ASSERT_OK(target_stop_any(t, TEST_STOP_TIMEOUT_MS, th));
        return t;
}

/* The int3 in place with the patcher gone: every call that runs into it lands in
 * other(), the program's own traps still reach its own handler, nothing dies; then a
 * new patcher finds the window open and closes it, and the program's disposition is
 * back. */
TEST(survives_patcher_gone) {
        Victim v;
        Thread *th;
        Target *t;
        uint64_t block, found = 0, c1, c2, own;
        uint8_t int3 = 0xcc, orig = 0xb8;
        int r;

        victim_start(&v, "own");
        ASSERT_TRUE(WAIT_UNTIL(v.sh->own_traps > 0 && v.sh->handler_now == v.sh->own_handler_addr, 5000));
        t = attach(&v, &th, true);
        block = map_block(t, th);
        TrapGuardEntry e = { v.sh->guarded_addr, v.sh->other_addr };
        ASSERT_OK(trapguard_install(t, th, block, &e, 1));
        r = trapguard_sync_cores(t, th);
        if (r == -EOPNOTSUPP)
                fprintf(stderr, "  note: no membarrier SYNC_CORE on this kernel\n");
        else
                ASSERT_OK(r);
        ASSERT_OK(target_write(t, v.sh->guarded_addr, &int3, 1));
        /* The patcher goes away: no tracer is left. */
        target_free(t);
        c2 = sum(&v, 1);
        own = v.sh->own_traps;
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 1) > c2 + 1000 && v.sh->own_traps > own + 5, 10000));
        ASSERT_TRUE(alive(&v));
        ASSERT_EQ(sum(&v, 2), 0);
        ASSERT_EQ(sum(&v, 3), 0);
        ASSERT_EQ(v.sh->own_trap_bad, 0);
        ASSERT_EQ_U64(v.sh->handler_now, block);

        /* A new patcher finds the window open, closes it. */
        t = attach(&v, &th, true);
        ASSERT_OK(trapguard_find_open(t, th, &found));
        ASSERT_EQ_U64(found, block);
        ASSERT_OK(target_write(t, v.sh->guarded_addr, &orig, 1));
        r = trapguard_sync_cores(t, th);
        ASSERT_TRUE(r == 0 || r == -EOPNOTSUPP);
        ASSERT_OK(trapguard_drain(t, (uint64_t[]) { v.sh->guarded_addr + 1 }, 1, 5000));
        ASSERT_OK(trapguard_remove(t, th, block));
        ASSERT_OK(trapguard_find_open(t, th, &found));
        ASSERT_EQ_U64(found, 0);
        target_free(t);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == v.sh->own_handler_addr, 5000));
        c1 = sum(&v, 0);
        c2 = sum(&v, 1);
        own = v.sh->own_traps;
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c1 + 1000 && v.sh->own_traps > own + 5, 10000));
        /* At most the call each caller had in flight when the window closed. */
        ASSERT_TRUE(sum(&v, 1) <= c2 + GUARD_CALLERS);
        ASSERT_EQ(sum(&v, 2), 0);
        ASSERT_EQ(sum(&v, 3), 0);
        ASSERT_EQ(v.sh->own_trap_bad, 0);
        ASSERT_TRUE(alive(&v));
}

/* A second window over one left open keeps the program's disposition, not the dead
 * window's handler. */
TEST(install_over_open_window) {
        Victim v;
        Thread *th;
        Target *t;
        uint64_t b1, b2;

        victim_start(&v, "own");
        ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == v.sh->own_handler_addr, 5000));
        t = attach(&v, &th, true);
        b1 = map_block(t, th);
        b2 = map_block(t, th);
        TrapGuardEntry e = { v.sh->guarded_addr, v.sh->other_addr };
        ASSERT_OK(trapguard_install(t, th, b1, &e, 1));
        ASSERT_OK(trapguard_install(t, th, b2, &e, 1));
        /* Again at the same block, as a patcher that reuses it after a dead one would. */
        ASSERT_OK(trapguard_install(t, th, b2, &e, 1));
        ASSERT_OK(trapguard_drain(t, NULL, 0, 5000));
        ASSERT_OK(trapguard_remove(t, th, b2));
        target_free(t);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == v.sh->own_handler_addr, 5000));
        ASSERT_TRUE(alive(&v));
}

/* A trap that is not the window's, under the default disposition: the process dies of
 * it, as it would have without the guard. */
TEST(default_disposition_chained) {
        Victim v;
        Thread *th;
        Target *t;
        uint64_t block;
        int status = 0;

        victim_start(&v, "dfl");
        t = attach(&v, &th, true);
        block = map_block(t, th);
        TrapGuardEntry e = { v.sh->guarded_addr, v.sh->other_addr };
        ASSERT_OK(trapguard_install(t, th, block, &e, 1));
        target_free(t);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == block, 5000));
        v.sh->raise_trap = 1;
        ASSERT_TRUE(WAIT_UNTIL(waitpid(v.pid, &status, WNOHANG | __WALL) == v.pid, 5000));
        child = -1;
        ASSERT_TRUE(WIFSIGNALED(status));
        ASSERT_EQ(WTERMSIG(status), SIGTRAP);
}

/* A thread that blocks SIGTRAP would have the kernel reset the disposition at its trap:
 * no window is opened. */
TEST(blocked_sigtrap_refused) {
        Victim v;
        Thread *th;
        Target *t;
        uint64_t block, found = 1;

        victim_start(&v, "block");
        t = attach(&v, &th, false);
        block = map_block(t, th);
        TrapGuardEntry e = { v.sh->guarded_addr, v.sh->other_addr };
        ASSERT_ERR(trapguard_install(t, th, block, &e, 1), -EBUSY);
        ASSERT_OK(trapguard_find_open(t, th, &found));
        ASSERT_EQ_U64(found, 0);
        target_free(t);
        ASSERT_TRUE(alive(&v));
}

/* ---- entry writes while the threads run (patcher/entry-bp.h) ---- */

typedef struct Hot {
        EntryWrite apply, revert;
        Relocation rel;
} Hot;

/* The writes of tiny()'s entry: the jump to tiny_new() (a thread that runs into the
 * int3 meanwhile goes to tiny_trapped(), which the victim tells apart), and back to the
 * original bytes (the int3 leads into the relocated copy: the original's behaviour). */
static void hot_prepare(Victim *v, Target *t, Hot *h) {
        uint8_t code[64];
        char err[128] = "";

        ASSERT_TRUE(v->sh->tiny_size <= sizeof(code));
        ASSERT_OK(target_read(t, v->sh->tiny_addr, code, v->sh->tiny_size));
        ASSERT_OK(relocate_entry(code, v->sh->tiny_size, v->sh->tiny_addr, v->sh->copy_area, &h->rel,
                                 err, sizeof(err)));
        ASSERT_EQ(h->rel.entry_offset, 0);
        ASSERT_EQ(h->rel.displaced_len, 5);
        ASSERT_EQ(h->rel.n_insns, 3);
        ASSERT_OK(target_write(t, v->sh->copy_area, h->rel.code, h->rel.code_len));
        h->apply = (EntryWrite) { .at = v->sh->tiny_addr, .len = 5, .trap_dest = v->sh->tiny_trapped_addr,
                                  .map = &h->rel, .copy = v->sh->copy_area };
        memcpy(h->apply.cur, code, 5);
        ASSERT_EQ(encode_entry_jump(h->apply.want, 5, v->sh->tiny_addr, v->sh->tiny_new_addr), 5);
        h->revert = (EntryWrite) { .at = v->sh->tiny_addr, .len = 5, .trap_dest = v->sh->copy_area };
        memcpy(h->revert.cur, h->apply.want, 5);
        memcpy(h->revert.want, code, 5);
}

/* Eight threads call an 11-byte function in a tight loop while its entry is rewritten
 * back and forth without stopping every thread: threads found strictly inside the
 * displaced bytes are moved into the copy, threads running into the int3 land where it
 * says; every call returns what one of the three functions returns, the victim lives,
 * and no moment had every thread stopped. */
TEST(hot_tiny) {
        Victim v;
        Target *t;
        Hot h;
        EntryBpResult res;
        unsigned moved = 0, cycles = 0;

        victim_start(&v, "hot");
        ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
        hot_prepare(&v, t, &h);
        while (cycles < 20 || ((moved == 0 || sum(&v, 2) == 0) && cycles < 300)) {
                uint64_t c;
                cycles++;
                c = sum(&v, 1);
                ASSERT_OK(entry_write_bp(t, v.sh->guard_area, &h.apply, 1, &res));
                moved += res.moved;
                ASSERT_TRUE(res.checked >= GUARD_CALLERS);
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, 1) > c + 100, 5000));
                c = sum(&v, 0);
                ASSERT_OK(entry_write_bp(t, v.sh->guard_area, &h.revert, 1, &res));
                ASSERT_EQ(res.moved, 0);
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c + 100, 5000));
        }
        fprintf(stderr, "  %u cycles: %u threads moved into the copy, %llu calls sent by the int3\n",
                cycles, moved, (unsigned long long)sum(&v, 2));
        ASSERT_TRUE(moved > 0);
        ASSERT_TRUE(sum(&v, 2) > 0);
        ASSERT_EQ(sum(&v, 3), 0);
        ASSERT_EQ_U64(t->max_stw_ns, 0);
        target_free(t);
        ASSERT_TRUE(alive(&v));
}

/* The main thread, which remote steps borrow first, calls the function too: it is often
 * found at the int3 with its SIGTRAP on the way, which must be taken and dropped before
 * its remote step (else the step takes it for a fault and the write fails). */
TEST(hot_leader) {
        Victim v;
        Target *t;
        Hot h;
        EntryBpResult res;

        victim_start(&v, "hotlead");
        ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
        hot_prepare(&v, t, &h);
        for (int i = 0; i < 10; i++) {
                uint64_t c = sum(&v, 1);
                ASSERT_OK(entry_write_bp(t, v.sh->guard_area, &h.apply, 1, &res));
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, 1) > c + 100, 5000));
                c = sum(&v, 0);
                ASSERT_OK(entry_write_bp(t, v.sh->guard_area, &h.revert, 1, &res));
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c + 100, 5000));
        }
        ASSERT_EQ(sum(&v, 3), 0);
        ASSERT_EQ_U64(t->max_stw_ns, 0);
        target_free(t);
        ASSERT_TRUE(alive(&v));
}

static int die_at;

static void die_hook(int step) {
        if (step == die_at)
                _exit(0);
}

/* The patcher dies inside the int3 window (after the int3, after the checks, after the
 * rest of the jump): the victim lives on, every call returns 1, 2 or 3; a new patcher
 * closes the window (finished or undone as far as it got) and the program's own SIGTRAP
 * disposition is back. */
TEST(patcher_dies_in_window) {
        for (die_at = 1; die_at <= 3; die_at++) {
                Victim v;
                Target *t;
                Hot h;
                EntryBpResult res;
                uint8_t now[5];
                uint64_t c[3];
                pid_t pid;
                int status;

                victim_start(&v, "hot");
                ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
                hot_prepare(&v, t, &h);
                target_free(t);
                pid = fork();
                ASSERT_TRUE(pid >= 0);
                if (pid == 0) {
                        entry_bp_test_hook = die_hook;
                        if (TEST_TARGET_OPEN(v.pid, &t) < 0)
                                _exit(2);
                        (void)entry_write_bp(t, v.sh->guard_area, &h.apply, 1, &res);
                        _exit(3);
                }
                ASSERT_EQ(waitpid(pid, &status, 0), pid);
                ASSERT_TRUE(WIFEXITED(status));
                ASSERT_EQ(WEXITSTATUS(status), 0);
                for (int k = 0; k < 3; k++)
                        c[k] = sum(&v, k);
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) + sum(&v, 1) + sum(&v, 2) > c[0] + c[1] + c[2] + 10000, 10000));
                ASSERT_TRUE(alive(&v));
                ASSERT_EQ(sum(&v, 3), 0);
                ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == v.sh->guard_area, 5000));

                ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
                ASSERT_OK(entry_bp_close(t, v.sh->guard_area, &h.apply, 1));
                ASSERT_OK(target_read(t, v.sh->tiny_addr, now, sizeof(now)));
                /* Before the rest was written the window is undone, after it finished. */
                ASSERT_TRUE(memcmp(now, die_at < 3 ? h.apply.cur : h.apply.want, 5) == 0);
                target_free(t);
                ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == 0, 5000));
                c[0] = sum(&v, die_at < 3 ? 0 : 1);
                ASSERT_TRUE(WAIT_UNTIL(sum(&v, die_at < 3 ? 0 : 1) > c[0] + 1000, 5000));
                ASSERT_EQ(sum(&v, 3), 0);
                ASSERT_TRUE(alive(&v));
                kill(v.pid, SIGKILL);
                waitpid(v.pid, NULL, __WALL);
                child = -1;
        }
}
