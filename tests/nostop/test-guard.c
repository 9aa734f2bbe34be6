/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The int3 window's guards (patcher/trapguard.h) on real processes: victim-guard
 * reports what it observed in a shared memfd. Each case: test-guard CASE.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "common/macro.h"
#include "patcher/target.h"
#include "patcher/target-seal.h"
#include "patcher/entry-bp.h"
#include "patcher/trapguard.h"
#include "patcher/transition-internal.h"
#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"
#include "test.h"
#include "deadline.h"
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

/* The state letter of a thread, 0 when it is gone. */
static unsigned traced_threads(pid_t pid);

static char task_state(pid_t pid, pid_t tid) {
        char path[64], buf[512], *p;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
        fclose(f);
        return p && p[1] ? p[2] : 0;
}

static bool sigtrap_queued(pid_t pid, pid_t tid) {
        char path[64], line[128];
        unsigned long long m = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, "SigPnd:", 7))
                        m = strtoull(line + 7, NULL, 16);
        fclose(f);
        return (m >> (SIGTRAP - 1)) & 1;
}

/* A thread whose stop came after its wait gave up (late: a window's check that timed
 * out), stopped with a SIGTRAP still queued: the drain that ends a window waits until no
 * trap is left to take, and such a thread takes its own only once let go, which the
 * drain now does as it looks. Before, it waited its whole time (30 s in a window) for
 * a thread the Target itself held, then left the guard in. */
TEST(drain_lets_late_go) {
        Victim v;
        Target *t;
        Thread *th;
        uint64_t bad;
        int tries = 0;

        victim_start(&v, "own");
        ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
        ASSERT_OK(target_refresh_threads(t));
        th = &t->threads[t->n_threads - 1];      /* a caller: created last */
        ASSERT_TRUE(th->tid != v.pid);
        bad = v.sh->own_trap_bad;
        for (;;) {
                ASSERT_TRUE(++tries < 100);
                ASSERT_OK(target_stop_thread(t, th));
                ASSERT_OK(syscall(SYS_tgkill, v.pid, th->tid, SIGTRAP));
                /* Let go and asked again at once: the kernel looks at the interrupt
                 * before it dequeues a signal, unless the thread got there in between;
                 * the wait for it gave up (late). */
                ASSERT_OK(target__ptrace(PTRACE_CONT, th->tid, NULL, NULL));
                ASSERT_OK(target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL));
                th->stopped = false;
                th->late = true;
                t->maybe_late = true;
                ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, th->tid) == 't', 5000));
                if (sigtrap_queued(v.pid, th->tid))
                        break;
                /* It took the signal first (a signal-delivery stop): again. */
                ASSERT_EQ(target_collect_late(t), 0);
        }
        ASSERT_OK(trapguard_drain(t, NULL, 0, 3000 * (int)test_slowdown()));
        ASSERT_TRUE(WAIT_UNTIL(traced_threads(v.pid) == 0, 5000));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->own_trap_bad > bad, 5000));
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

/* Threads of pid traced by tracer, any tracer when 0 (TracerPid in
 * /proc/PID/task/TID/status). */
static unsigned traced_by(pid_t pid, pid_t tracer) {
        char path[320], line[256];
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                FILE *f;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%s/status", pid, de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                while (fgets(line, sizeof(line), f))
                        if (!strncmp(line, "TracerPid:", 10) && atoi(line + 10) != 0 &&
                            (!tracer || atoi(line + 10) == tracer))
                                n++;
                fclose(f);
        }
        closedir(d);
        return n;
}

static unsigned traced_threads(pid_t pid) {
        return traced_by(pid, 0);
}

/* What the hooks saw, and when the thread hook refuses. */
typedef struct HookSeen {
        Victim *v;
        unsigned threads, queued, checked;
        unsigned refuse_at;      /* the thread hook's call that fails, 0 never */
        bool entry_ok;           /* at the checked hook: int3 and the rest of cur */
        const EntryWrite *w;
} HookSeen;

static int hook_thread(Target *t, Thread *th, bool trap_queued, void *ud) {
        HookSeen *s = ud;
        s->queued += trap_queued;
        return ++s->threads == s->refuse_at ? -ENOTRECOVERABLE : 0;
}

static int hook_checked(Target *t, void *ud) {
        HookSeen *s = ud;
        uint8_t b[16];
        s->checked++;
        s->entry_ok = target_read(t, s->w->at, b, s->w->len) >= 0 && b[0] == 0xcc &&
                      memcmp(b + 1, s->w->cur + 1, s->w->len - 1u) == 0;
        return 0;
}

/* The hooks a transition adds to the window: the thread hook sees every thread the
 * window checks, the checked hook runs once, after the checks and before the rest of
 * the jump (the entry then holds the int3 and the old bytes); a refusal from the thread
 * hook takes the window back: the entry holds its old bytes, the callers go on calling
 * the original, nothing dies. */
TEST(hooks) {
        Victim v;
        Target *t;
        Hot h;
        EntryBpResult res;
        uint8_t b[5];
        uint64_t c;

        victim_start(&v, "hot");
        ASSERT_OK(target_open(v.pid, &t));
        hot_prepare(&v, t, &h);

        HookSeen s = { .v = &v, .refuse_at = 3, .w = &h.apply };
        EntryBpHooks hooks = { .thread = hook_thread, .checked = hook_checked, .ud = &s };
        ASSERT_ERR(entry_write_bp_hooked(t, v.sh->guard_area, &h.apply, 1, &hooks, &res), -ENOTRECOVERABLE);
        ASSERT_EQ(s.threads, 3);
        ASSERT_EQ(s.checked, 0);
        /* The threads asked to stop along with the refused one are let go, not left
         * in their stop (before: until the Target's next call, and the guard's drain
         * waited its 30 s for the SIGTRAP one of them held queued). */
        ASSERT_TRUE(WAIT_UNTIL(traced_threads(v.pid) == 0, 5000));
        ASSERT_OK(target_read(t, v.sh->tiny_addr, b, sizeof(b)));
        ASSERT_TRUE(memcmp(b, h.apply.cur, sizeof(b)) == 0);
        c = sum(&v, 0);
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c + 1000, 5000));
        ASSERT_EQ(sum(&v, 1), 0);

        s = (HookSeen) { .v = &v, .w = &h.apply };
        c = sum(&v, 1);
        ASSERT_OK(entry_write_bp_hooked(t, v.sh->guard_area, &h.apply, 1, &hooks, &res));
        ASSERT_EQ(s.threads, res.checked);
        ASSERT_TRUE(s.threads >= GUARD_CALLERS + 1);
        ASSERT_TRUE(s.queued <= res.trapped);
        ASSERT_EQ(s.checked, 1);
        ASSERT_TRUE(s.entry_ok);
        ASSERT_OK(target_read(t, v.sh->tiny_addr, b, sizeof(b)));
        ASSERT_TRUE(memcmp(b, h.apply.want, sizeof(b)) == 0);
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 1) > c + 1000, 5000));
        /* Back over a jump, as completion writes its final entries: no thread can be
         * inside the entry, so none is stopped (unchecked); the callers that run into
         * the int3 meanwhile are the guard's, and none dies. */
        s = (HookSeen) { .v = &v, .w = &h.revert };
        hooks.unchecked = true;
        c = sum(&v, 0);
        ASSERT_OK(entry_write_bp_hooked(t, v.sh->guard_area, &h.revert, 1, &hooks, &res));
        ASSERT_EQ(res.checked, 0u);
        ASSERT_EQ(s.threads, 0);
        ASSERT_EQ(s.checked, 1);
        ASSERT_OK(target_read(t, v.sh->tiny_addr, b, sizeof(b)));
        ASSERT_TRUE(memcmp(b, h.revert.want, sizeof(b)) == 0);
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c + 1000, 5000));
        ASSERT_EQ(sum(&v, 3), 0);
        ASSERT_EQ_U64(t->max_stw_ns, 0);
        target_free(t);
        ASSERT_TRUE(alive(&v));
}

/* A one-record patch of tiny() for a transition's own code (transition-entry.c), in a
 * control block that lives only here: the entry holds the original bytes, the copy is
 * the victim's. */
static void hot_control(Victim *v, Control *c, const Hot *h) {
        ControlImage *img = calloc(1, sizeof(*img));
        ControlFunc *f;

        ASSERT_TRUE(img != NULL);
        *c = (Control) { .img = img };
        img->hdr.n_patches = 1;
        img->hdr.n_funcs = 1;
        img->patches[0] = (ControlPatch) { .state = CP_UNPATCHED, .first_func = 0, .n_funcs = 1 };
        f = &img->funcs[0];
        *f = (ControlFunc) { .patch = 0, .old_addr = v->sh->tiny_addr, .old_size = v->sh->tiny_size,
                             .new_addr = v->sh->tiny_new_addr, .copy_addr = v->sh->copy_area,
                             .displaced_len = 5 };
        memcpy(f->orig_bytes, h->apply.cur, 5);
}

/* A thread that ran into a window's int3 and was stopped before the guard took its trap
 * (a late stop, met by the stop of every thread the next try of init falls back to): the
 * wait puts it back on the int3 with the trap dropped, and the fallback finds it at the
 * entry, without counting on the guard, which is gone here.
 * Before, it was moved into the relocated copy (tiny+1 is the start of its second
 * instruction) with its SIGTRAP still to come, which killed the process; where the
 * byte after the int3 is inside an instruction (an entry holding a jump: a revert) the
 * fallback refused the operation, "inside an instruction of the bytes the entry jump
 * replaces". */
TEST(fallback_meets_trapped) {
        Victim v;
        Target *t;
        Hot h;
        Control c;
        Transition tr;
        Thread *caller = NULL, *leader;
        uint64_t n;

        victim_start(&v, "hot");
        ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
        hot_prepare(&v, t, &h);
        hot_control(&v, &c, &h);
        ASSERT_OK(trapguard_wait_unblocked(t, 5000));
        ASSERT_OK(target_refresh_threads(t));
        leader = target_find_thread(t, v.pid);
        ASSERT_TRUE(leader != NULL);
        for (size_t i = 0; i < t->n_threads && !caller; i++)
                if (t->threads[i].tid != v.pid && !t->threads[i].gone)
                        caller = &t->threads[i];
        ASSERT_TRUE(caller != NULL);

        /* The window's guard and int3 (the other callers land in tiny_trapped()); one
         * caller, stopped, runs into the int3 under the tracer: the wait that takes its
         * trap's stop puts it back on the int3 first, and holds no signal (a tracer
         * killed after the wait would leave none to deliver: docs/stops.md, "A trap is
         * never held"). Before, the trap was held, the PC one past the int3. */
        TrapGuardEntry e = { v.sh->tiny_addr, v.sh->tiny_trapped_addr };
        ASSERT_OK(target_stop_thread(t, leader));
        ASSERT_OK(trapguard_install(t, leader, v.sh->guard_area, &e, 1));
        ASSERT_OK(target_resume_thread(t, leader));
        ASSERT_OK(target_stop_thread(t, caller));
        ASSERT_OK(target_write(t, v.sh->tiny_addr, &(uint8_t) { 0xcc }, 1));
        ASSERT_OK(target_take_signal(t, caller, TEST_STOP_TIMEOUT_MS));
        ASSERT_EQ(caller->held_sig, 0);
        ASSERT_TRUE(caller->signal_stop);
        ASSERT_EQ_U64(regs_pc(&caller->regs), v.sh->tiny_addr);
        /* The window taken back and closed: no trap left to take. */
        ASSERT_OK(target_write(t, v.sh->tiny_addr, h.apply.cur, 1));
        ASSERT_OK(trapguard_drain(t, NULL, 0, 10000));
        ASSERT_OK(target_stop_thread(t, leader));
        ASSERT_OK(trapguard_remove(t, leader, v.sh->guard_area));
        ASSERT_OK(target_resume_thread(t, leader));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->handler_now == 0, 5000));

        /* The stop of every thread and init's look at each thread in it. */
        ASSERT_OK(target_stop_all(t));
        ASSERT_OK(transition_prepare(&tr, t, &c, NULL, NULL, 0, THREAD_PATCHED, false));
        ASSERT_OK(transition__move_threads_out(&tr, true));
        ASSERT_EQ_U64(regs_pc(&caller->regs), v.sh->tiny_addr);
        ASSERT_EQ(caller->held_sig, 0);
        transition_done(&tr);
        ASSERT_OK(target_resume_all(t));
        n = sum(&v, 0);
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > n + 1000 || !alive(&v), 5000));
        ASSERT_TRUE(alive(&v));
        ASSERT_EQ(sum(&v, 3), 0);
        target_free(t);
        free(c.img);
}

/* ---- the clone barrier (patcher/target-seal.h) ---- */

static bool spawned_ran(Victim *v, pid_t tid) {
        uint32_t n = MIN(v->sh->spawn_n, (uint32_t)GUARD_SPAWN_MAX);
        for (uint32_t i = 0; i < n; i++)
                if (v->sh->spawn_tids[i] == tid)
                        return true;
        return false;
}

static unsigned seal_births(Target *t, TargetSeal *s) {
        ASSERT_OK(target_seal_poll(t, s));
        return s->births;
}

static uint64_t seal_calls(Target *t, TargetSeal *s, Victim *v) {
        ASSERT_OK(target_seal_poll(t, s));
        return sum(v, 0);
}

static uint64_t seal_usr2(Target *t, TargetSeal *s, Victim *v) {
        ASSERT_OK(target_seal_poll(t, s));
        return v->sh->usr2;
}

/* A process that creates a thread every millisecond, sealed: every thread it creates
 * meanwhile stops before its first instruction (it never wrote its tid) and runs once
 * let go; the sealed threads keep running (the callers keep counting) and get the
 * signals sent to the process meanwhile (its handler counts them); afterwards no
 * thread is traced, and no moment had every thread stopped. */
TEST(seal_catches_new_threads) {
        Victim v;
        Target *t;
        TargetSeal s;
        pid_t held[64];
        size_t n_held = 0;
        uint64_t c;

        victim_start(&v, "spawn");
        ASSERT_TRUE(WAIT_UNTIL(v.sh->spawn_n > 10, 5000));
        ASSERT_OK(target_open(v.pid, &t));
        ASSERT_OK(target_seal_begin(t, &s));
        ASSERT_TRUE(WAIT_UNTIL(seal_births(t, &s) >= 5, 10000));
        c = sum(&v, 0);
        ASSERT_TRUE(WAIT_UNTIL(seal_calls(t, &s, &v) > c + 1000, 10000));
        for (int i = 0; i < 3; i++) {
                ASSERT_OK(kill(v.pid, SIGUSR2));
                ASSERT_TRUE(WAIT_UNTIL(seal_usr2(t, &s, &v) > (uint64_t)i, 10000));
        }
        for (size_t i = 0; i < s.n && n_held < ELEMENTSOF(held); i++)
                if (s.v[i].held)
                        held[n_held++] = s.v[i].tid;
        ASSERT_TRUE(n_held >= 5);
        for (size_t i = 0; i < n_held; i++)
                ASSERT_TRUE(!spawned_ran(&v, held[i]));
        fprintf(stderr, "  %u clones, %u new threads held at their first stop\n", s.clones, s.births);
        ASSERT_OK(target_seal_end(t, &s, 10000));
        ASSERT_EQ(s.n, 0);
        for (size_t i = 0; i < n_held; i++)
                ASSERT_TRUE(WAIT_UNTIL(spawned_ran(&v, held[i]), 10000));
        ASSERT_TRUE(WAIT_UNTIL(traced_threads(v.pid) == 0, 5000));
        ASSERT_EQ_U64(t->max_stw_ns, 0);
        target_seal_done(&s);
        target_free(t);
        ASSERT_TRUE(alive(&v));
}

typedef struct OwnSeal {
        Victim *v;
        Target *t;
        pid_t tracer;
        pid_t held[64];
        size_t n_held;
        unsigned running;        /* sealed threads still traced once the end returned */
        uint64_t end_requests;   /* ptrace requests the end made */
} OwnSeal;

static int own_seal(void *ud) {
        OwnSeal *o = ud;
        TargetSeal s;
        uint64_t n0;

        o->tracer = gettid();
        ASSERT_OK(target_seal_begin(o->t, &s));
        ASSERT_TRUE(WAIT_UNTIL(seal_births(o->t, &s) >= 5, 10000));
        for (size_t i = 0; i < s.n && o->n_held < ELEMENTSOF(o->held); i++)
                if (s.v[i].held)
                        o->held[o->n_held++] = s.v[i].tid;
        n0 = target_ptrace_requests();
        ASSERT_OK(target_seal_end(o->t, &s, 10000));
        o->end_requests = target_ptrace_requests() - n0;
        ASSERT_EQ(s.n, 0);
        o->running = traced_by(o->v->pid, o->tracer);
        target_seal_done(&s);
        return 7;
}

/* A seal run on a tracer thread of its own (target_seal_run()): its end detaches the
 * held new threads only (one request each, no interrupt), the running threads stay
 * traced by that thread until it exits; once the run returns no thread is traced, the
 * held ones ran, the callers go on, and fn's result comes back. */
TEST(seal_ends_by_tracer_exit) {
        Victim v;
        OwnSeal o = { .v = &v };
        uint64_t c;

        victim_start(&v, "spawn");
        ASSERT_TRUE(WAIT_UNTIL(v.sh->spawn_n > 10, 5000));
        ASSERT_OK(target_open(v.pid, &o.t));
        ASSERT_EQ(target_seal_run(own_seal, &o), 7);
        ASSERT_TRUE(o.tracer != gettid());
        fprintf(stderr, "  %zu held, %u running threads still traced after the end, %llu requests at the end\n",
                o.n_held, o.running, (unsigned long long)o.end_requests);
        ASSERT_TRUE(o.n_held >= 5);
        ASSERT_EQ_U64(o.end_requests, o.n_held);
        ASSERT_TRUE(o.running >= 3);
        /* The run returned once the kernel let them go: no wait here. */
        ASSERT_EQ(traced_threads(v.pid), 0u);
        for (size_t i = 0; i < o.n_held; i++)
                ASSERT_TRUE(WAIT_UNTIL(spawned_ran(&v, o.held[i]), 10000));
        c = sum(&v, 0);
        ASSERT_TRUE(WAIT_UNTIL(sum(&v, 0) > c + 1000, 10000));
        ASSERT_EQ_U64(o.t->max_stw_ns, 0);
        target_free(o.t);
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
