/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Entry writes while the threads run (entry-bp.h, docs/stops.md "The int3 window"). */
#include <signal.h>
#include <stdio.h>

#include "common/macro.h"
#include "patcher/entry-bp.h"
#include "patcher/trapguard.h"

void (*entry_bp_test_hook)(int step);

#define BP_STOP_MS 1000
#define BP_STOP_TRIES 5
/* How long the end of the window waits for a trap still to be taken. */
#define BP_DRAIN_MS 30000

/* How long a thread may take to stop: the operation's setting, else BP_STOP_MS. */
static int stop_ms(const Target *t) {
        return t->stop_timeout_ms > 0 ? t->stop_timeout_ms : BP_STOP_MS;
}

/* Runs one step on a borrowed thread: the guard's remote calls. A thread that ran into
 * an int3 of the window is not borrowed with its SIGTRAP on the way: its remote step would
 * take it for a fault. Still queued: taken by the stop (which puts the thread back on
 * the int3), or, behind another signal, resumed for the handler to take and another
 * stop asked for. */
typedef int (*BorrowFn)(Target *t, Thread *th, void *ud);

static int check_one(Target *t, Thread *th, const EntryWrite *w, size_t n, EntryBpResult *res);

/* 1 th may be borrowed: a trap of the window it took is dealt with (its SIGTRAP, taken
 * by the stop if still queued, which puts it back on the int3), 0 its trap is still
 * queued behind another signal. */
static int settle_trapped(Target *t, Thread *th, const EntryWrite *w, size_t n) {
        EntryBpResult ignored = {};
        int r;

        for (size_t i = 0; i < n; i++) {
                if (regs_pc(&th->regs) != w[i].at + 1)
                        continue;
                if (!th->held_sig && target_sigtrap_queued(t, th)) {
                        r = target_take_signal(t, th, stop_ms(t));
                        if (r < 0)
                                return r;
                }
                if (th->held_sig == SIGTRAP && th->held_info.si_code == SI_KERNEL)
                        return check_one(t, th, &w[i], 1, &ignored) < 0 ? -EIO : 1;
                return target_sigtrap_queued(t, th) ? 0 : 1;
        }
        return 1;
}

static int borrow(Target *t, const EntryWrite *w, size_t n, BorrowFn fn, void *ud) {
        Thread *th = NULL;
        int r = 0, k;

        for (int tries = 0, slow = 0; tries < 100 && r == 0; tries++) {
                r = target_stop_any(t, stop_ms(t), &th);
                /* A loaded machine: a few more attempts (the window is safe meanwhile). */
                if (r == -ETIMEDOUT && ++slow < BP_STOP_TRIES) {
                        r = 0;
                        continue;
                }
                if (r < 0)
                        return r;
                r = settle_trapped(t, th, w, n);
                if (r == 0) {
                        k = target_resume_thread(t, th);
                        if (k < 0 && k != -ESRCH)
                                return k;
                }
        }
        if (r <= 0)
                return r < 0 ? r : -EAGAIN;
        /* The step's system calls in one batch: the thread's context saved once. */
        r = target_syscall_batch_begin(t, th);
        if (r >= 0) {
                r = fn(t, th, ud);
                k = target_syscall_batch_end(t, th);
                if (r >= 0 && k < 0)
                        r = k;
        }
        k = target_resume_thread(t, th);
        return r < 0 ? r : k < 0 && k != -ESRCH ? k : 0;
}

/* Writes the first byte (first) or the others of every entry, from want or cur. */
static int write_part(Target *t, const EntryWrite *w, size_t n, bool first, bool want);

/*
 * The remote steps go in groups, each on one borrow: every borrow waits for the
 * scheduler to run the thread into its stop, which on a loaded machine costs more than
 * the system calls themselves (docs/stops.md, "Figures"). Three borrows a window: open
 * (handler in, int3 bytes, serialize), finish (rest, serialize, first byte, serialize),
 * close (the program's disposition back, after the drain, which holds no thread).
 */
typedef struct Group {
        uint64_t block;
        const EntryWrite *w;
        size_t n;
        bool installed;          /* open: the handler is in */
        bool written;            /* open: int3 bytes written (some may be) */
        bool want;               /* take back: false (cur); finish: true */
} Group;

/* Step 1 on one borrow. The borrowed thread is held while the int3 bytes go in: it is
 * checked like any other in step 2. */
static int do_open(Target *t, Thread *th, void *ud) {
        Group *g = ud;
        TrapGuardEntry e[SIGTRAP_MAX_ENTRIES];
        int r = trapguard_sync_ready(t, th);   /* or -EOPNOTSUPP before anything is written */

        for (size_t i = 0; i < g->n; i++)
                e[i] = (TrapGuardEntry) { g->w[i].at, g->w[i].trap_dest };
        if (r >= 0)
                r = trapguard_install(t, th, g->block, e, g->n);
        if (r < 0)
                return r;
        g->installed = true;
        g->written = true;
        for (size_t i = 0; i < g->n && r >= 0; i++)
                r = target_write(t, g->w[i].at, &(uint8_t) { INSN_INT3 }, 1);
        return r < 0 ? r : trapguard_sync_cores(t, th);
}

/* Step 3 on one borrow (g->want), or the take-back (the first bytes as they were). */
static int do_finish(Target *t, Thread *th, void *ud) {
        const Group *g = ud;
        int r = 0;

        if (g->want) {
                r = write_part(t, g->w, g->n, false, true);
                if (r >= 0)
                        r = trapguard_sync_cores(t, th);
                if (r >= 0 && entry_bp_test_hook)
                        entry_bp_test_hook(3);
        }
        if (r >= 0)
                r = write_part(t, g->w, g->n, true, g->want);
        return r < 0 ? r : trapguard_sync_cores(t, th);
}

static int do_remove(Target *t, Thread *th, void *ud) {
        return trapguard_remove(t, th, *(const uint64_t *)ud);
}

/* Step 4: once no trap of the window is left to take (no thread held meanwhile), the
 * program's disposition back. */
static int close_guard(Target *t, const EntryWrite *w, size_t n, uint64_t block) {
        uint64_t pcs[SIGTRAP_MAX_ENTRIES];
        size_t np = 0;
        int r;

        /* One past the int3 is inside a jump (what the entry holds now): only a thread
         * that took the int3 is there. Where the entry starts with a one-byte
         * instruction, threads pass there all the time, and only the pending signal
         * tells. */
        for (size_t i = 0; i < n; i++) {
                uint8_t first = 0;
                if (w[i].len > 1 && target_read(t, w[i].at, &first, 1) >= 0 && first == 0xe9)
                        pcs[np++] = w[i].at + 1;
        }
        r = trapguard_drain(t, pcs, np, BP_DRAIN_MS);
        return r < 0 ? r : borrow(t, w, n, do_remove, &block);
}

/* Writes the first byte (first) or the others of every entry, from want or cur. */
static int write_part(Target *t, const EntryWrite *w, size_t n, bool first, bool want) {
        int r = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
                const uint8_t *b = want ? w[i].want : w[i].cur;
                if (first)
                        r = target_write(t, w[i].at, b, 1);
                else if (w[i].len > 1)
                        r = target_write(t, w[i].at + 1, b + 1, w[i].len - 1u);
        }
        return r;
}

static int verify_cur(Target *t, const EntryWrite *w, size_t n) {
        for (size_t i = 0; i < n; i++) {
                uint8_t b[16];
                int r = target_read(t, w[i].at, b, w[i].len);
                if (r < 0)
                        return r;
                if (memcmp(b, w[i].cur, w[i].len) != 0)
                        return -EBUSY;
        }
        return 0;
}


/*
 * Step 2 for the stopped th. A thread stopped for the trap of the int3 is back on it
 * already (target__waitpid()): nothing to do. At the byte after the int3 with its
 * SIGTRAP still queued: left to the handler, which sends it to trap_dest after the
 * resume (with the SIGTRAP in hand, which the wait no longer leaves: sent to trap_dest,
 * the signal dropped). Strictly inside the bytes otherwise: moved to the copy. 1
 * changed, 0 nothing to do, 2 left to the handler, -errno.
 */
static int check_one(Target *t, Thread *th, const EntryWrite *w, size_t n, EntryBpResult *res) {
        uint64_t pc = regs_pc(&th->regs), to;

        for (size_t i = 0; i < n; i++) {
                if (pc <= w[i].at || pc >= w[i].at + w[i].len)
                        continue;
                if (pc == w[i].at + 1 && th->held_sig == SIGTRAP && th->held_info.si_code == SI_KERNEL) {
                        th->held_sig = 0;
                        regs_set_pc(&th->regs, w[i].trap_dest);
                        res->trapped++;
                        return target_set_regs(t, th) < 0 ? -EIO : 1;
                }
                if (pc == w[i].at + 1 && target_sigtrap_queued(t, th)) {
                        res->trapped++;
                        return 2;
                }
                if (!w[i].map)
                        return -EAGAIN;
                to = relocation_map_pc(w[i].map, w[i].at, w[i].copy, pc);
                if (!to) {
                        res->stuck_tid = th->tid;
                        res->stuck_pc = pc;
                        return -EILSEQ;
                }
                regs_set_pc(&th->regs, to);
                res->moved++;
                return target_set_regs(t, th) < 0 ? -EIO : 1;
        }
        return 0;
}

bool entry_bp_trapped_at(Target *t, const Thread *th, uint64_t at) {
        if (!th->stopped || th->gone || regs_pc(&th->regs) != at + 1)
                return false;
        if (th->held_sig)
                return th->held_sig == SIGTRAP && th->held_info.si_code == SI_KERNEL;
        return target_sigtrap_queued(t, th);
}

/*
 * Outside a window (a stop of every thread after a window was taken back, or a resume)
 * nothing may count on the guard: it may be gone by the time th runs. Back at the int3's
 * address th has run nothing of the function, and its trap is dropped: whatever the
 * entry holds when th resumes (its old bytes, the jump to a stub) is what it would have
 * run had it come a moment later. A queued trap is taken first (a stop in the kernel's
 * signal delivery, no user code runs); one that turns out not to be an int3's stays
 * held, for the thread.
 */
int entry_bp_untrap(Target *t, Thread *th, uint64_t at) {
        int r;

        if (!entry_bp_trapped_at(t, th, at))
                return 0;
        if (!th->held_sig) {
                r = target_take_signal(t, th, stop_ms(t));
                if (r < 0)
                        return r == -ETIMEDOUT ? -EAGAIN : r;
                /* The wait that took it put the thread back on the int3 already. */
                if (th->trap_undone && !th->held_sig && regs_pc(&th->regs) == at)
                        return 1;
                if (th->held_sig != SIGTRAP || th->held_info.si_code != SI_KERNEL || regs_pc(&th->regs) != at + 1)
                        return -EAGAIN;
        }
        th->held_sig = 0;
        regs_set_pc(&th->regs, at);
        r = target_set_regs(t, th);
        return r < 0 ? r : 1;
}

/* The most stop requests in flight while the threads are checked: their waits for the
 * scheduler overlap (as in a transition's pass, TargetWindow). */
#define BP_WINDOW 16
/* How long the checks wait for a thread to stop before the window is taken back. */
#define BP_CHECK_MS 10000

/* Drops v[i], the others kept in the order they were asked (TargetWindow). */
static void inflight_drop(Thread **v, size_t *nv, size_t i) {
        memmove(&v[i], &v[i + 1], (*nv - i - 1) * sizeof(*v));
        (*nv)--;
}

/* Checks the stopped th (one of v[0..*nv)), resumes it and drops it from v. */
static int check_resume(Target *t, Thread *th, Thread **v, size_t *nv, const EntryWrite *w, size_t n,
                        const EntryBpHooks *hooks, EntryBpResult *res) {
        int r, k;

        for (size_t i = 0; i < *nv; i++)
                if (v[i] == th) {
                        inflight_drop(v, nv, i);
                        break;
                }
        res->checked++;
        r = check_one(t, th, w, n, res);
        if (r >= 0 && hooks && hooks->thread)
                r = hooks->thread(t, th, r == 2, hooks->ud);
        k = target_resume_thread(t, th);
        return r < 0 ? r : k < 0 && k != -ESRCH ? k : 0;
}

/* A failed check leaves other threads asked to stop: each is resumed as it stops (the
 * window is taken back next), or, not stopped in time, left late (detached when it
 * stops): none is left sitting in its stop, where a SIGTRAP it holds queued would also
 * keep the window's guard from closing. */
static void release_inflight(Target *t, Thread **v, size_t nv) {
        while (nv > 0) {
                Thread *th = NULL;
                if (target_wait_any(t, v, nv, stop_ms(t), &th) < 0)
                        return;
                (void)target_resume_thread(t, th);
                for (size_t i = 0; i < nv;)
                        if (v[i] == th || v[i]->gone)
                                v[i] = v[--nv];
                        else
                                i++;
        }
}

static bool was_checked(const pid_t *done, size_t n_done, pid_t tid) {
        for (size_t j = 0; j < n_done; j++)
                if (done[j] == tid)
                        return true;
        return false;
}

/* Step 2: every thread of the process, each stopped alone (up to BP_WINDOW asked at
 * once while they wait for the scheduler, TargetWindow), until a rescan of
 * /proc/PID/task finds none not yet checked (threads created after the int3 went in
 * need no check, but cost only one stop). */
static int check_threads(Target *t, const EntryWrite *w, size_t n, const EntryBpHooks *hooks,
                         EntryBpResult *res) {
        _cleanup_free_ pid_t *done = NULL;
        size_t n_done = 0;
        TargetWindow window = TARGET_WINDOW_INIT(BP_WINDOW);
        int r = 0;

        for (bool found = true; found && r >= 0;) {
                Thread *v[BP_WINDOW];
                size_t nv = 0, next = 0;
                found = false;
                r = target_refresh_threads(t);
                if (r < 0)
                        break;
                pid_t *nd = realloc(done, (n_done + t->n_threads + 1) * sizeof(*nd));
                if (!nd)
                        return -ENOMEM;
                done = nd;
                while (r >= 0 && (next < t->n_threads || nv > 0)) {
                        Thread *th = NULL;
                        while (nv < window.n && next < t->n_threads) {
                                th = &t->threads[next++];
                                if (th->gone || was_checked(done, n_done, th->tid))
                                        continue;
                                found = true;
                                done[n_done++] = th->tid;
                                r = target_request_stop(t, th);
                                if (r == -ESRCH) {
                                        r = 0;
                                        continue;
                                }
                                if (r < 0) {
                                        r = r == -EBUSY ? -EAGAIN : r;
                                        break;
                                }
                                v[nv++] = th;
                        }
                        if (r < 0 || nv == 0)
                                break;
                        /* An operation's own attempt length when it set one: a thread
                         * that cannot stop now (a vfork parent) is its next step's. */
                        r = target_window_wait(t, &window, v, nv,
                                               t->stop_timeout_ms > 0 ? t->stop_timeout_ms : BP_CHECK_MS, &th);
                        if (r == -ESRCH) {
                                r = 0;
                                nv = 0;
                                continue;
                        }
                        if (r == -ETIMEDOUT)
                                return -EAGAIN;
                        if (r >= 0)
                                r = check_resume(t, th, v, &nv, w, n, hooks, res);
                        /* Those found gone meanwhile need no check. */
                        for (size_t i = 0; i < nv;)
                                if (v[i]->gone)
                                        inflight_drop(v, &nv, i);
                                else
                                        i++;
                }
                if (r < 0)
                        release_inflight(t, v, nv);
        }
        return r;
}

/* After a failed open or check: the first bytes as they were, serialize, handler out
 * (on one borrow, then the drain and one more). The window stays open (safe: the guard
 * sends every trap on) when even that fails. */
static int take_back(Target *t, Group *g, int r) {
        int k = 0;

        if (g->written) {
                g->want = false;
                k = borrow(t, g->w, g->n, do_finish, g);
        }
        if (k >= 0 && g->installed)
                (void)close_guard(t, g->w, g->n, g->block);
        return k < 0 ? k : r;
}

_Static_assert(TARGET_TRAPS_MAX >= SIGTRAP_MAX_ENTRIES, "a window's entries fit in the Target's");

/* The entries about to hold an int3, remembered by the Target for good: a thread stopped
 * for the trap of one, whenever that is, is put back on it (target__waitpid()). */
static void note_traps(Target *t, const EntryWrite *w, size_t n) {
        for (size_t i = 0; i < n; i++) {
                bool known = false;
                for (unsigned j = 0; j < t->n_trap_at && !known; j++)
                        known = t->trap_at[j] == w[i].at;
                if (known)
                        continue;
                if (t->n_trap_at == TARGET_TRAPS_MAX)
                        memmove(t->trap_at, t->trap_at + 1, --t->n_trap_at * sizeof(t->trap_at[0]));
                t->trap_at[t->n_trap_at++] = w[i].at;
        }
}

int entry_write_bp(Target *t, uint64_t block, const EntryWrite *w, size_t n, EntryBpResult *res) {
        return entry_write_bp_hooked(t, block, w, n, NULL, res);
}

int entry_write_bp_hooked(Target *t, uint64_t block, const EntryWrite *w, size_t n, const EntryBpHooks *hooks,
                          EntryBpResult *res) {
        Group g = { .block = block, .w = w, .n = n };
        int r;

        *res = (EntryBpResult) {};
        if (n > SIGTRAP_MAX_ENTRIES)
                return -E2BIG;
        for (size_t i = 0; i < n; i++)
                if (w[i].len < 1 || w[i].len > 16)
                        return -EINVAL;
        r = verify_cur(t, w, n);
        if (r >= 0)
                r = trapguard_wait_unblocked(t, BP_DRAIN_MS);
        if (r >= 0)
                note_traps(t, w, n);
        if (r >= 0 && entry_bp_test_hook)
                entry_bp_test_hook(0);
        if (r >= 0)
                r = borrow(t, w, n, do_open, &g);
        if (r >= 0 && entry_bp_test_hook)
                entry_bp_test_hook(1);
        if (r >= 0 && !(hooks && hooks->unchecked))
                r = check_threads(t, w, n, hooks, res);
        if (r >= 0 && entry_bp_test_hook)
                entry_bp_test_hook(2);
        if (r >= 0 && hooks && hooks->checked)
                r = hooks->checked(t, hooks->ud);
        if (r < 0)
                return take_back(t, &g, r);
        g.want = true;
        r = borrow(t, w, n, do_finish, &g);
        if (r < 0)
                return r;
        /* The entries are written. A trap still to be taken after BP_DRAIN_MS (a thread
         * the scheduler has not run since), or no thread to borrow for the program's
         * disposition, keeps the guard in: harmless, and closed by entry_bp_close()
         * later; the write itself succeeded, and saying otherwise would have the caller
         * take back what is in place. */
        if (close_guard(t, w, n, block) < 0)
                res->guard_open = true;
        return 0;
}

/* Finishes or undoes each entry of an open window at g->block (g->installed: it was
 * open), then serializes: on the borrow that found it. */
static int do_close(Target *t, Thread *th, void *ud) {
        Group *g = ud;
        uint64_t open = 0;
        int r = trapguard_find_open(t, th, &open);

        if (r < 0 || open != g->block)
                return r;
        g->installed = true;
        for (size_t i = 0; i < g->n && r >= 0; i++) {
                const EntryWrite *w = &g->w[i];
                uint8_t b[16];
                const uint8_t *first;
                r = target_read(t, w->at, b, w->len);
                if (r < 0 || b[0] != INSN_INT3)
                        continue;
                /* The rest written: finish; still the old bytes: undo. */
                if (memcmp(b + 1, w->want + 1, w->len - 1u) == 0)
                        first = w->want;
                else if (memcmp(b + 1, w->cur + 1, w->len - 1u) == 0)
                        first = w->cur;
                else
                        return -EBUSY;
                r = target_write(t, w->at, first, 1);
        }
        return r < 0 ? r : trapguard_sync_cores(t, th);
}

int entry_bp_close(Target *t, uint64_t block, const EntryWrite *w, size_t n) {
        Group g = { .block = block, .w = w, .n = n };
        int r;

        note_traps(t, w, n);
        r = borrow(t, w, n, do_close, &g);

        return r < 0 || !g.installed ? r : close_guard(t, w, n, block);
}
