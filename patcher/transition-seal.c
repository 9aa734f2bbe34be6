/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Completion without a stop of every thread (docs/stops.md, "Completion under the clone
 * barrier"): what transition_complete() does inside its stop, done with the process
 * sealed (patcher/target-seal.h) and each thread stopped alone, then the final entries
 * written through an int3 window (patcher/entry-bp.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/entry-bp.h"
#include "patcher/target-internal.h"
#include "patcher/target-seal.h"
#include "patcher/transition-internal.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/sigtrap.h"

/* How long the seal waits for one thread to stop, and for all to stop at its end. */
#define SEAL_STOP_MS 1000
#define SEAL_END_MS 10000

bool transition_complete_nostop = true;
void (*transition_seal_test_hook)(Transition *tr, Thread *th);

typedef struct SealCtx {
        Transition *tr;
        TargetSeal s;
        uint8_t *held;           /* slots a live thread holds */
        UnwindResult *ur;
        bool flip;               /* the untabled byte may flip to the target */
        bool in_stub;            /* ...unless a thread is in a stub about to read it */
        bool behind;             /* a thread in the table may not switch yet */
        bool first;              /* the first pass: threads init saw are pending only
                                  * when found so here */
        bool looked;             /* it began: the pending list is the seal's; else
                                  * complete_sealed() returns what sealed() did */
        PendingThread *saved;    /* the first pass: the pending list before it */
        size_t n_saved;
} SealCtx;

static int pending(Transition *tr, pid_t tid, int slot, const char *blocker) {
        int r = transition__pending_add(tr, tid, slot);
        if (r >= 0)
                snprintf(tr->pending[tr->n_pending - 1].blocker, sizeof(tr->pending[0].blocker), "%s", blocker);
        return r;
}

/*
 * One thread, stopped alone: what reconcile_table() and switch_untabled() do for each
 * thread in the stop of every thread. born: created under the seal, stopped before its
 * first instruction: no frame, so the target whatever slot it took (a dead thread's
 * pointer, which glibc hands on).
 */
static int look(SealCtx *x, Thread *th, bool born) {
        Transition *tr = x->tr;
        Control *c = tr->c;
        uint64_t tp = regs_tp(&th->regs);
        uint8_t initial = tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED;
        int slot = tp ? control_table_find(c, tp) : -1;
        char blocker[128] = "";
        PendingThread p = { .tid = th->tid, .slot = -1 };
        bool ok;
        int r;

        if (slot >= 0)
                x->held[slot] = 1;
        if (slot >= 0 && c->img->table_state[slot] == tr->target_state)
                return 0;
        if (born)
                return slot >= 0 ? control_write_thread_state(tr->t, c, (unsigned)slot, (uint8_t)tr->target_state) : 0;
        /* Not in the table: in the byte's state. */
        if (slot < 0 && c->img->hdr.untabled_state == tr->target_state)
                return 0;
        if (transition__trapped(tr, th)) {
                /* The guard sends it where the entry led when its window opened. */
                ok = false;
                snprintf(blocker, sizeof(blocker), "at an entry's int3, its trap not taken yet");
        } else {
                x->ur->n = 0;
                ok = transition__check(tr, th, x->ur, blocker, sizeof(blocker)) == 1;
                x->in_stub |= slot < 0 && transition__stub_pending(tr, th, x->ur);
        }
        if (slot >= 0) {
                x->behind |= !ok;
                if (ok) {
                        tr->switched++;
                        return control_write_thread_state(tr->t, c, (unsigned)slot, (uint8_t)tr->target_state);
                }
                return pending(tr, th->tid, slot, blocker);
        }
        /* Untabled: entered in the table, in the target when it may switch, else in the
         * initial state it is in, and pending. No slot: only the byte can switch it. */
        r = tp && transition__table_used(c) < CONTROL_MAX_THREADS
                    ? transition__enter_table(tr, &p, th, ok ? (uint8_t)tr->target_state : initial) : 0;
        if (r < 0 && r != -E2BIG)
                return r;
        if (p.slot >= 0)
                x->held[p.slot] = 1;
        else
                x->flip &= ok;
        if (ok) {
                tr->switched++;
                return 0;
        }
        return pending(tr, th->tid, p.slot, blocker);
}

/* Every sealed thread looked at once: until a round finds none not seen yet (a thread
 * created meanwhile is born sealed, held before its first instruction) and, every
 * thread having been stopped once, a rescan finds none unsealed (the child of a clone
 * that was under way when its parent was sealed: it ran unchecked, in the initial state,
 * maybe in a function to patch; without this, transition-spawn-cycles mixed). */
static int look_all(SealCtx *x) {
        Transition *tr = x->tr;

        for (bool found = true;;) {
                int r = found ? 0 : target_seal_rescan(tr->t, &x->s);
                if (r <= 0 && !found)
                        return r;
                r = target_seal_poll(tr->t, &x->s);
                found = false;
                if (r < 0)
                        return r;
                for (size_t i = 0; i < x->s.n; i++) {
                        pid_t tid = x->s.v[i].tid;
                        bool born = x->s.v[i].born;
                        Thread th;
                        int k;
                        if (x->s.v[i].looked)
                                continue;
                        found = true;
                        x->s.v[i].looked = true;
                        r = target_seal_stop(tr->t, &x->s, tid, &th, SEAL_STOP_MS);
                        if (r == -ETIMEDOUT) {
                                /* Not run by the machine in time: not looked at, so the
                                 * byte waits; the next completion looks again. */
                                x->flip = false;
                                x->behind = true;
                                tr->total += !born;
                                if (x->first && !born) {
                                        r = pending(tr, tid, -1, "not run by the machine in time to be looked at");
                                        if (r < 0)
                                                return r;
                                }
                                continue;
                        }
                        if (r <= 0) {
                                if (r < 0)
                                        return r;
                                continue;  /* exited */
                        }
                        tr->total += !born;
                        if (transition_seal_test_hook && !born)
                                transition_seal_test_hook(tr, &th);
                        r = look(x, &th, born);
                        k = target_seal_cont(tr->t, &x->s, &th, false);
                        if (r < 0)
                                return r;
                        if (k < 0)
                                return k;
                        /* The list grows (clone events) at its end and shrinks by moving
                         * its last entry into the place of one gone: one skipped so is
                         * found by the next round. */
                }
        }
}

/* The slots no live thread holds, out of the target: to the target (a thread created
 * later that takes one starts there, as a new thread should). */
static int reconcile(SealCtx *x) {
        Control *c = x->tr->c;
        int r = 0;

        for (unsigned i = 0; i < CONTROL_TABLE_SLOTS && r >= 0; i++)
                if (c->img->table_tp[i] && !x->held[i] && c->img->table_state[i] != x->tr->target_state)
                        r = control_write_thread_state(x->tr->t, c, i, (uint8_t)x->tr->target_state);
        return r;
}

/* What each entry of the patch holds now (the jump to its stub) and will hold: the jump
 * to the winner, or the original bytes. A thread that runs into the int3 goes to the
 * stub, which does for every thread what the final bytes will. */
static int build_final(Transition *tr, EntryWrite *w, unsigned n) {
        Control *c = tr->c;
        unsigned nf;
        const ControlFunc *f = transition__patch_funcs(c, tr->patch, &nf);

        for (unsigned i = 0; i < n; i++) {
                uint64_t at = f[i].old_addr + f[i].entry_off;
                uint64_t dest = transition__entry_dest_now(c, &f[i], tr->target_state == THREAD_PATCHED ? -1 : tr->patch);
                int len = encode_entry_jump(w[i].cur, f[i].displaced_len, at, f[i].stub_addr);
                if (len < 0)
                        return len;
                if (!f[i].stub_addr || (size_t)len != f[i].displaced_len || len > 16)
                        return -ENOSYS;
                w[i].at = at;
                w[i].len = (uint8_t)len;
                w[i].trap_dest = f[i].stub_addr;
                w[i].map = NULL;        /* a jump: no thread is inside it */
                if (dest) {
                        int k = encode_entry_jump(w[i].want, f[i].displaced_len, at, dest);
                        if (k != len)
                                return k < 0 ? k : -ENOSYS;
                } else
                        memcpy(w[i].want, f[i].orig_bytes, (size_t)len);
        }
        return 0;
}

/* One thread stopped alone for the remote munmap of code no longer live. */
static int finish_records(Transition *tr) {
        Thread *th = NULL;
        int r, k;

        if (target_refresh_threads(tr->t) >= 0)
                for (size_t i = 0; i < tr->t->n_threads && !th; i++) {
                        Thread *c = &tr->t->threads[i];
                        if (!c->gone && target_stop_thread(tr->t, c) >= 0)
                                th = c;
                }
        r = transition__finish_records(tr, th);
        k = th ? target_resume_thread(tr->t, th) : 0;
        return r < 0 ? r : k < 0 && k != -ESRCH ? k : 0;
}

/* The final entries through an int3 window, recorded first (CT_FLAG_END_WINDOW) for a
 * driver killed inside it. 1 done, 0 not now (taken back), -ENOSYS no window here. */
static int finish_entries(Transition *tr) {
        Control *c = tr->c;
        unsigned n, m = 0;
        _cleanup_free_ EntryWrite *w = NULL;
        EntryBpResult res;
        int r;

        (void)transition__patch_funcs(c, tr->patch, &n);
        if (n == 0 || n > SIGTRAP_MAX_ENTRIES)
                return -ENOSYS;
        w = calloc(n, sizeof(*w));
        if (!w)
                return -ENOMEM;
        r = build_final(tr, w, n);
        if (r < 0)
                return r;
        /* A window an earlier try could not take back (no thread to borrow): closed
         * first, each entry finished or undone. */
        if (c->img->hdr.transition_flags & CT_FLAG_END_WINDOW) {
                r = entry_bp_close(tr->t, c->img->hdr.guard_block, w, n);
                if (r < 0)
                        return r == -EAGAIN || r == -ETIMEDOUT ? 0 : r;
        }
        /* What is left to write: entries that hold the jump to their stub (those that
         * hold their final bytes already need nothing). */
        for (unsigned i = 0; i < n; i++) {
                uint8_t b[16];
                r = target_read(tr->t, w[i].at, b, w[i].len);
                if (r < 0)
                        return r;
                if (memcmp(b, w[i].want, w[i].len) == 0)
                        continue;
                if (memcmp(b, w[i].cur, w[i].len) != 0)
                        return transition__entry_busy(tr, i, b);
                w[m++] = w[i];
        }
        if (m == 0)
                return 1;
        c->img->hdr.transition_flags |= CT_FLAG_END_WINDOW;
        r = control_write_header(tr->t, c);
        if (r < 0)
                return r;
        /* A jump is one instruction (its padding never runs): no thread is inside an
         * entry, so no thread is stopped for the window; one that runs into an int3 is
         * sent to the stub by the guard. */
        r = entry_write_bp_hooked(tr->t, c->img->hdr.guard_block, w, m, &(EntryBpHooks) { .unchecked = true }, &res);
        if (r >= 0)
                return 1;
        /* Taken back: each entry holds its stub's jump again, the flag goes. Else (no
         * thread to borrow for the take-back) the guard keeps the window safe, and the
         * flag stays for the next try, or the next driver. */
        for (unsigned i = 0; i < m; i++) {
                uint8_t b[16];
                if (target_read(tr->t, w[i].at, b, w[i].len) < 0 || memcmp(b, w[i].cur, w[i].len) != 0)
                        return 0;
        }
        c->img->hdr.transition_flags &= ~(uint32_t)CT_FLAG_END_WINDOW;
        (void)control_write_header(tr->t, c);
        /* No core serialization, or a thread blocking SIGTRAP: the stop of every thread. */
        return r == -EOPNOTSUPP || r == -EBUSY ? -ENOSYS : r == -ETIMEDOUT || r == -EAGAIN ? 0 : r;
}

/*
 * Steps 1 to 4 of completion under the seal, run by target_seal_run() on a tracer thread
 * of its own: at the seal's end the threads it holds running are let go by that thread's
 * exit, not stopped once more to be detached.
 */
static int sealed(void *ud) {
        SealCtx *x = ud;
        Transition *tr = x->tr;
        Control *c = tr->c;
        int r, k;

        /* Sealed even when the byte flipped at an earlier try: a thread created since
         * may have taken the pointer of one that exited pending, in a slot out of the
         * target, and only a look at every live thread finds it. */
        r = target_seal_begin(tr->t, &x->s);
        if (r < 0) {
                /* -EAGAIN: threads created and exiting too fast to be counted; the next
                 * step tries again. */
                return r == -EBUSY ? -ENOSYS : r == -EAGAIN ? 0 : r;
        }
        /* The first pass: every live thread is sealed and looked at below, and pending
         * again when it may not switch; one that exited since init is not. */
        if (x->first) {
                x->saved = malloc(MAX(tr->n_pending, (size_t)1) * sizeof(*x->saved));
                if (!x->saved) {
                        (void)target_seal_end(tr->t, &x->s, SEAL_END_MS);
                        target_seal_done(&x->s);
                        return -ENOMEM;
                }
                memcpy(x->saved, tr->pending, tr->n_pending * sizeof(*x->saved));
                x->n_saved = tr->n_pending;
                tr->n_pending = 0;
        }
        x->looked = true;
        tr->total = 0;
        r = look_all(x);
        /* Threads created and exiting too fast to be counted: not now, as at the
         * seal's start. */
        if (r == -EAGAIN) {
                r = 0;
                x->behind = true;
        }
        /* Failed in the middle: the threads not looked at yet stay pending (an entry
         * left with no slot finds the one its thread took since). */
        if (r < 0 && x->saved) {
                memcpy(tr->pending, x->saved, x->n_saved * sizeof(*x->saved));
                tr->n_pending = x->n_saved;
        }
        if (r >= 0 && !x->behind)
                r = reconcile(x);
        /* No live thread untabled and out of the target: the byte flips, while every
         * thread created meanwhile is held before its first instruction. */
        if (r >= 0 && !x->behind && x->flip && !x->in_stub && c->img->hdr.untabled_state != tr->target_state) {
                c->img->hdr.untabled_state = (int8_t)tr->target_state;
                r = control_write_header(tr->t, c);
        }
        k = target_seal_end(tr->t, &x->s, SEAL_END_MS);
        target_seal_done(&x->s);
        return r >= 0 && k < 0 ? k : r;
}

static int complete_sealed(Transition *tr, bool first, bool *looked) {
        Control *c = tr->c;
        SealCtx x = { .tr = tr, .flip = true };
        TargetLook look;
        int r;

        *looked = false;
        if (tr->global || !tr->untabled || !c->img->hdr.guard_block || (tr->n_pending > 0 && !first))
                return -ENOSYS;
        /* A thread of ours still (late), or one another program traces: the stop of
         * every thread, whose rules for them are older. One read of each thread's status
         * (target_look_threads()), which is the window's look at their masks too. */
        if (target_look_threads(tr->t, &look) < 0 || look.traced_by_other)
                return -ENOSYS;
        for (size_t i = 0; i < tr->t->n_threads; i++)
                if (tr->t->threads[i].seized && !tr->t->threads[i].gone)
                        return -ENOSYS;
        /* The seal's own look for them (target_seal_begin()) knows only its own thread's
         * (patcher/target-late.c keeps them a thread). */
        if (target_orphans_of(tr->t->pid))
                return -ENOSYS;
        /* A thread in uninterruptible sleep (a vfork parent, since init) would hold each
         * look and the seal's end for their whole bounds: the pass, whose rules for a
         * late thread are older, in place of the first one. */
        if (first && look.uninterruptible)
                return -ENOSYS;
        x.held = calloc(CONTROL_TABLE_SLOTS, 1);
        x.ur = malloc(sizeof(*x.ur));
        if (!x.held || !x.ur) {
                r = -ENOMEM;
                goto out;
        }
        x.first = first;
        r = target_seal_run(sealed, &x);
        *looked = x.looked;
        if (!x.looked)
                goto out;
        if (r < 0 || x.behind || tr->n_pending > 0 || c->img->hdr.untabled_state != tr->target_state) {
                r = MIN(r, 0);
                goto out;
        }
        /* Every thread is in the target: stub and final entry are the same to each. */
        r = finish_entries(tr);
        if (r == 1)
                r = finish_records(tr);
        if (r >= 0 && c->img->hdr.transition_patch < 0)
                r = 1;
out:
        free(x.held);
        free(x.ur);
        free(x.saved);
        return r;
}

int transition_complete_sealed(Transition *tr) {
        bool looked;

        return complete_sealed(tr, false, &looked);
}

int transition_complete_sealed_first(Transition *tr, bool *looked) {
        for (size_t i = 0; i < tr->n_pending; i++)
                if (tr->pending[i].slot >= 0 || tr->pending[i].trap_code)
                        return -ENOSYS;
        return complete_sealed(tr, true, looked);
}

int transition__close_end_window(Transition *tr) {
        unsigned n;
        (void)transition__patch_funcs(tr->c, tr->patch, &n);
        _cleanup_free_ EntryWrite *w = calloc(n ? n : 1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        if (!tr->c->img->hdr.guard_block || n > SIGTRAP_MAX_ENTRIES)
                return -EUCLEAN;
        r = build_final(tr, w, n);
        return r < 0 ? r : entry_bp_close(tr->t, tr->c->img->hdr.guard_block, w, n);
}
