/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Init without a stop of every thread (docs/stops.md, "The untabled state"). The
 * threads stay out of the table, in the transition's initial state, which the untabled
 * byte gives them; the stubs go in the path through the int3 window (entry-bp.h). The
 * table and the byte change only once every thread was seen, stopped alone, outside
 * the dispatch stubs of earlier patches and with no signal frame left in bytes about to
 * change: the window's hooks. Passes then enter each thread in the table at its own stop
 * (transition.c, enter_table()), and completion checks the threads still untabled and
 * flips the byte.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/entry-bp.h"
#include "patcher/target-internal.h"
#include "patcher/transition-internal.h"
#include "patcher/transition.h"
#include "patcher/trapguard.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/sigtrap.h"

/* The window in a process of more than one thread (docs/stops.md, "On by default").
 * ULP_NOSTOP_INIT in the driver's environment overrides it: 1 uses the window, in a
 * process of one thread too (what the tests of the window set), 0 turns it off (what a
 * test that counts the writes of the init stopping every thread sets, and an operator
 * who prefers a short stop of every thread to a longer operation). */
NostopInit transition_nostop_init = NOSTOP_INIT_THREADED;

NostopInit transition_nostop_mode(void) {
        const char *e = secure_getenv("ULP_NOSTOP_INIT");

        if (e && strcmp(e, "1") == 0)
                return NOSTOP_INIT_ALWAYS;
        if (e && strcmp(e, "0") == 0)
                return NOSTOP_INIT_OFF;
        return transition_nostop_init;
}

typedef struct InitCtx {
        Transition *tr;
        pid_t *tids;             /* the threads seen, with their thread pointers */
        uint64_t *tps;
        size_t n, cap;
        bool shared_tp;          /* two live threads with one thread pointer (or none) */
        int8_t initial;
} InitCtx;

static bool thread_alive(pid_t pid, pid_t tid) {
        return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
}

/* A thread pointer seen twice is refused (global mode), unless the first holder exited
 * and glibc gave its pointer to a new thread meanwhile. */
static int note_tp(InitCtx *x, pid_t tid, uint64_t tp) {
        if (tp == 0) {
                x->shared_tp = true;
                return -EOPNOTSUPP;
        }
        for (size_t i = 0; i < x->n; i++) {
                if (x->tps[i] != tp)
                        continue;
                if (thread_alive(x->tr->t->pid, x->tids[i])) {
                        x->shared_tp = true;
                        return -EOPNOTSUPP;
                }
                x->tids[i] = tid;
                return 0;
        }
        if (x->n == x->cap) {
                size_t cap = x->cap ? x->cap * 2 : 64;
                pid_t *t = realloc(x->tids, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                x->tids = t;
                uint64_t *p = realloc(x->tps, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                x->tps = p;
                x->cap = cap;
        }
        if (x->n >= CONTROL_MAX_THREADS)
                return -E2BIG;
        x->tids[x->n] = tid;
        x->tps[x->n++] = tp;
        return 0;
}

/* The window's thread hook: th is stopped, its PC already out of the bytes about to
 * change (or one past an int3 with its SIGTRAP queued, for the guard to send on). */
static int init_thread(Target *t, Thread *th, bool trap_queued, void *ud) {
        InitCtx *x = ud;
        Transition *tr = x->tr;
        uint64_t to;
        int r;

        (void)t;
        /* In a stub of an earlier patch, which reads the table about to change: later. */
        if (!trap_queued) {
                r = transition__pc_out(tr, regs_pc(&th->regs), true, &to);
                if (r != 0)
                        return r > 0 ? -EAGAIN : r;
        }
        r = transition__move_interrupted(tr, th, true, false);
        if (r > 0)
                r = transition__move_interrupted(tr, th, true, true);
        if (r < 0)
                return r;
        return note_tp(x, th->tid, regs_tp(&th->regs));
}

/* The window's checked hook: every thread was seen out of the stubs; none is in the
 * table, all are in the initial state, which the byte now says. */
static int init_checked(Target *t, void *ud) {
        InitCtx *x = ud;
        Control *c = x->tr->c;
        int r;

        x->tr->left.checked = true;
        memset(c->img->table_tp, 0, sizeof(c->img->table_tp));
        memset(c->img->table_state, 0, sizeof(c->img->table_state));
        r = control_write_table(t, c);
        if (r < 0)
                return r;
        c->img->hdr.untabled_state = x->initial;
        return control_write_header(t, c);
}

/* What each entry holds (checked against what prepare expects) and will hold: the jump
 * to its stub. A thread that runs into the int3 goes where the entry leads now, which
 * the stub does for every thread in the initial state. */
static int build_writes(Transition *tr, EntryWrite *w, unsigned n) {
        unsigned nf;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &nf);

        for (unsigned i = 0; i < n; i++) {
                uint64_t at = f[i].old_addr + f[i].entry_off;
                uint64_t dest = transition__entry_dest_now(tr->c, &f[i], tr->target_state == THREAD_PATCHED ? tr->patch : -1);
                int len = encode_entry_jump(w[i].want, f[i].displaced_len, at, f[i].stub_addr);
                int r;
                if (len < 0)
                        return len;
                if (!f[i].stub_addr || (!dest && !f[i].copy_addr) || len < tr->expect[i].len)
                        return -ENOSYS;
                w[i].at = at;
                w[i].len = (uint8_t)len;
                w[i].trap_dest = dest ? dest : f[i].copy_addr;
                r = target_read(tr->t, at, w[i].cur, (size_t)len);
                if (r < 0)
                        return r;
                if (transition__entry_busy(tr, i, w[i].cur) < 0)
                        return -EBUSY;
                w[i].map = dest ? NULL : transition__entry_map(tr, at, &w[i].copy);
        }
        return 0;
}

/* A failed window: each entry holds its old bytes again (else the transition stays
 * recorded, for a resume: entries_left), and the record goes back as it was. */
static int undo_record(Transition *tr, EntryWrite *w, unsigned n, const ControlHeader *was, uint32_t state,
                       int r) {
        Control *c = tr->c;
        int k = 0;

        for (unsigned i = 0; i < n && k >= 0; i++) {
                uint8_t b[16];
                k = target_read(tr->t, w[i].at, b, w[i].len);
                if (k >= 0 && memcmp(b, w[i].cur, w[i].len) != 0)
                        k = -EBUSY;
        }
        if (k < 0) {
                tr->entries_left = true;
                return r;
        }
        /* The patch first: a header naming it with the patch not marked is an init cut
         * short, which a resume carries on; never the other way round. */
        c->img->patches[tr->patch].state = state;
        k = control_write_patch(tr->t, c, (unsigned)tr->patch);
        c->img->hdr.target_state = was->target_state;
        c->img->hdr.transition_patch = was->transition_patch;
        c->img->hdr.transition_flags = was->transition_flags;
        if (k >= 0)
                k = control_write_header(tr->t, c);
        if (k < 0)
                tr->entries_left = true;
        return r;
}

/* Whether the threads rule the window out: one in uninterruptible sleep or late, one
 * another program traces (true also when the thread list cannot be read), or a process
 * of one thread when the window is not asked for always. */
static bool stop_all_instead(Target *t) {
        TargetLook look;
        size_t live = 0;

        /* One read of each thread's status answers every question below, and counts as
         * the window's look at the threads' masks (trapguard_wait_unblocked()). */
        if (target_look_threads(t, &look) < 0)
                return true;
        /* One thread: its stop is the stop of every thread whichever way init goes, and
         * the stop-all init stops it once where the window stops it three times (its
         * check, the seal's look, the seal's end). */
        for (size_t i = 0; i < t->n_threads; i++)
                live += !t->threads[i].gone;
        if (live < 2 && transition_nostop_mode() == NOSTOP_INIT_THREADED)
                return true;
        /* Traced by a debugger: its int3 would stop the thread for that tracer, never
         * reach the guard, and kill the process once the tracer lets it go. The stop of
         * every thread refuses it, with the tracer's name, before anything is written. */
        if (look.traced_by_other || look.uninterruptible)
                return true;
        for (size_t i = 0; i < t->n_threads; i++)
                if (!t->threads[i].gone && target_thread_late(&t->threads[i]))
                        return true;
        return false;
}

/* Every entry holds the jump to its stub. */
static bool entries_finished(Transition *tr) {
        unsigned n;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);

        for (unsigned i = 0; i < n; i++) {
                uint8_t want[16], b[16];
                uint64_t at = f[i].old_addr + f[i].entry_off;
                int len = encode_entry_jump(want, f[i].displaced_len, at, f[i].stub_addr);
                if (len < 0 || target_read(tr->t, at, b, (size_t)len) < 0 || memcmp(b, want, (size_t)len) != 0)
                        return false;
        }
        return true;
}

/* The end of init once the stubs are in the path: every thread seen (tids) is pending,
 * untabled; the window's flag goes. */
static int init_done(Transition *tr, const pid_t *tids, size_t n) {
        Control *c = tr->c;
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++)
                r = transition__pending_add(tr, tids[i], -1);
        if (r < 0)
                return r;
        tr->total = (unsigned)n;
        tr->untabled = true;
        /* The window is closed (a guard left for a late trap stays harmless: it chains
         * every other trap to the program's disposition). */
        c->img->hdr.transition_flags &= ~(uint32_t)CT_FLAG_INIT_WINDOW;
        return control_write_header(tr->t, c);
}

/* A window left finished by its close (the rest of each jump was written before the
 * try failed, and the checks had passed): init is done, every live thread pending. */
static int finish_left(Transition *tr) {
        _cleanup_free_ pid_t *tids = NULL;
        size_t k = 0;
        int r = target_refresh_threads(tr->t);

        if (r < 0)
                return -EAGAIN;
        tids = calloc(tr->t->n_threads + 1, sizeof(*tids));
        if (!tids)
                return -ENOMEM;
        for (size_t i = 0; i < tr->t->n_threads; i++)
                if (!tr->t->threads[i].gone)
                        tids[k++] = tr->t->threads[i].tid;
        tr->entries_left = false;
        r = init_done(tr, tids, k);
        return r < 0 ? r : 1;
}

/*
 * A window an earlier try could not take back (no thread could be borrowed for it):
 * closed now, each entry finished when the rest of its jump was written, else undone.
 * Undone (its old bytes), the record goes back as it was before it: 0, init tries
 * again. Finished after the checks passed: 1, init is done. -EAGAIN while that cannot
 * be done yet (the next step tries again), -EBUSY when an entry holds something else.
 */
static int take_back_left(Transition *tr, EntryWrite *w, unsigned n) {
        ControlHeader was = tr->c->img->hdr;
        int r = transition__close_init_window(tr);

        if (r == -EUCLEAN)
                return r;
        if (r < 0 && r != -EBUSY)
                return -EAGAIN;
        if (r >= 0 && tr->left.checked && entries_finished(tr))
                return finish_left(tr);
        /* -EBUSY: named by build_writes(). */
        r = build_writes(tr, w, n);
        if (r < 0)
                return r;
        was.target_state = tr->left.target_state;
        was.transition_patch = tr->left.patch;
        was.transition_flags = tr->left.flags;
        tr->entries_left = false;
        (void)undo_record(tr, w, n, &was, tr->left.patch_state, 0);
        return tr->entries_left ? -EAGAIN : 0;
}

int transition_init_nostop(Transition *tr, uint64_t guard_block) {
        Control *c = tr->c;
        ControlPatch *p = &c->img->patches[tr->patch];
        ControlHeader was;
        uint32_t state;
        unsigned n;
        _cleanup_free_ EntryWrite *w = NULL;
        InitCtx x = { .tr = tr, .initial = tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED };
        EntryBpHooks hooks = { .thread = init_thread, .checked = init_checked, .ud = &x };
        EntryBpResult res;
        int r;

        (void)transition__patch_funcs(c, tr->patch, &n);
        if (tr->global || !guard_block || n == 0 || n > SIGTRAP_MAX_ENTRIES)
                return -ENOSYS;
        w = calloc(n, sizeof(*w));
        if (!w)
                return -ENOMEM;
        if (tr->entries_left) {
                r = take_back_left(tr, w, n);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = build_writes(tr, w, n);
        if (r < 0)
                return r;
        was = c->img->hdr;
        state = p->state;
        tr->left.target_state = was.target_state;
        tr->left.patch = was.transition_patch;
        tr->left.flags = was.transition_flags;
        tr->left.patch_state = state;
        tr->left.checked = false;
        /* A thread in uninterruptible sleep (a vfork parent) cannot be stopped alone
         * either: the stop of every thread, whose rules for it are older and tried
         * (docs/stops.md, "A thread that cannot be stopped"), not a window waiting; nor
         * can a thread another program traces. */
        if (stop_all_instead(tr->t))
                return -ENOSYS;
        /* A thread blocking SIGTRAP for good (a worker with every signal blocked) would
         * hold the window's own wait for it 30 s, then refuse: the stop of every thread
         * at once instead. A moment's block (a thread starting) is waited out. */
        if (trapguard_wait_unblocked(tr->t, 20) < 0)
                return -ENOSYS;
        tr->n_pending = 0;
        tr->stuck_tid = 0;
        /* Recorded before the window opens, with where its guard is: a driver killed
         * inside leaves what the next one needs to close it (transition_resume()). The
         * untabled byte stays as it is until every thread was seen out of the stubs that
         * read it; never set yet, nothing reads it. */
        if (c->img->hdr.untabled_state == THREAD_UNDEFINED)
                c->img->hdr.untabled_state = x.initial;
        c->img->hdr.target_state = (int8_t)tr->target_state;
        c->img->hdr.transition_patch = tr->patch;
        c->img->hdr.transition_flags = CT_FLAG_UNTABLED | CT_FLAG_INIT_WINDOW;
        c->img->hdr.guard_block = guard_block;
        control_claim_driver(c);
        p->state = CP_TRANSITION;
        r = control_write_header(tr->t, c);
        if (r >= 0)
                r = control_write_patch(tr->t, c, (unsigned)tr->patch);
        if (r < 0)
                return undo_record(tr, w, n, &was, state, r);
        r = entry_write_bp_hooked(tr->t, guard_block, w, n, &hooks, &res);
        tr->init_moved += res.moved;
        tr->init_trapped += res.trapped;
        if (r == -EILSEQ && res.stuck_tid) {
                tr->stuck_tid = res.stuck_tid;
                tr->stuck_pc = res.stuck_pc;
        }
        if (r < 0) {
                /* No core serialization, or a thread blocking SIGTRAP: the stop of every
                 * thread instead. Threads sharing a pointer: global mode. */
                bool other_way = (r == -EOPNOTSUPP && !x.shared_tp) || r == -EBUSY;
                free(x.tids);
                free(x.tps);
                (void)undo_record(tr, w, n, &was, state, r);
                /* Its int3 bytes in place (the take-back found no thread to borrow):
                 * safe under the guard, and the next try's to take back first. */
                if (tr->entries_left)
                        return -EAGAIN;
                /* No thread could be borrowed for a remote step in time (each is in a
                 * vfork, or not run by the scheduler): nothing written, the next step
                 * tries again, as after a stop of every thread that timed out. */
                if (r == -ETIMEDOUT)
                        return -EAGAIN;
                return other_way ? -ENOSYS : r;
        }
        r = init_done(tr, x.tids, x.n);
        free(x.tids);
        free(x.tps);
        return r;
}

int transition__close_init_window(Transition *tr) {
        unsigned n;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);
        _cleanup_free_ EntryWrite *w = calloc(n ? n : 1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        if (!tr->c->img->hdr.guard_block || n > SIGTRAP_MAX_ENTRIES)
                return -EUCLEAN;
        for (unsigned i = 0; i < n; i++) {
                uint64_t at = f[i].old_addr + f[i].entry_off;
                int len = encode_entry_jump(w[i].want, f[i].displaced_len, at, f[i].stub_addr);
                if (len < 0)
                        return len;
                if (len < tr->expect[i].len)
                        return -EUCLEAN;
                w[i].at = at;
                w[i].len = (uint8_t)len;
                /* What init found there: the expected bytes, a jump padded with int3
                 * as every entry jump is written (encode_entry_jump()). */
                memset(w[i].cur, INSN_INT3, sizeof(w[i].cur));
                memcpy(w[i].cur, tr->expect[i].b, tr->expect[i].len);
        }
        return entry_bp_close(tr->t, tr->c->img->hdr.guard_block, w, n);
}
