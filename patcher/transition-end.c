/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ends of a transition other than its completion: the reversal
 * (klp_reverse_transition), the cancel of an apply that never switched a thread, the
 * force (klp_force_transition), and the resume of a transition left in the target by
 * a patcher that died (docs/fault-tolerance.md).
 */
#include <stdio.h>
#include <time.h>
#include "common/errno-clause.h"
#include "common/invariant.h"
#include "common/macro.h"
#include "patcher/transition-internal.h"
#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/stub.h"

static void sleep_1ms(void) {
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
        nanosleep(&ts, NULL);
}

/* Every thread stopped: whether an untabled one is about to read the untabled byte in a
 * stub (transition__stub_pending()). */
static bool byte_read_pending(Transition *tr) {
        for (size_t i = 0; i < tr->t->n_threads; i++) {
                Thread *th = &tr->t->threads[i];
                if (!th->gone && th->stopped && control_table_find(tr->c, regs_tp(&th->regs)) < 0 &&
                    transition__stub_pending(tr, th, NULL))
                        return true;
        }
        return false;
}

/* The stop of the reversal, once no thread is in a stub when the untabled byte is to
 * change (as at completion: a thread between its look at the table and the byte would
 * read the new one unchecked). A moment later while one is (a thread leaves a stub in
 * a few instructions once it runs); after 50 tries -ETIMEDOUT, as for a thread that did
 * not stop: the reversal is tried again at the next step. */
static int stop_for_reverse(Transition *tr, int8_t new_target) {
        for (int tries = 0;; tries++) {
                int r = target_stop_all(tr->t);
                if (r < 0)
                        return r;
                if (transition_stop_test_hook)
                        transition_stop_test_hook(tr, true);
                r = transition__untrap_all(tr);
                if (r >= 0 && (tr->global || tr->c->img->hdr.untabled_state == new_target || !byte_read_pending(tr)))
                        return 0;
                (void)target_resume_all(tr->t);
                if (r < 0)
                        return r;
                if (tries >= 50)
                        return -ETIMEDOUT;
                sleep_1ms();
        }
}

/*
 * klp_reverse_transition. Threads created since init are not in the table and count as
 * being in the old target state; they may be inside the new code, so before the
 * target flips they are entered with that state and become pending like the rest.
 */
int transition_reverse(Transition *tr) {
        Control *c = tr->c;
        int old = tr->target_state, r, k;

        r = transition_disarm_traps(tr);
        if (r < 0)
                return r;
        r = stop_for_reverse(tr, (int8_t)(old == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED));
        if (r < 0)
                return r;
        tr->n_pending = 0;
        tr->target_state = old == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED;
        for (size_t i = 0; i < tr->t->n_threads && r >= 0; i++) {
                const Thread *th = &tr->t->threads[i];
                int slot;
                if (th->gone || !th->stopped || tr->global)
                        continue;
                slot = control_table_find(c, regs_tp(&th->regs));
                /* An untabled thread is in the untabled byte's state: the initial state
                 * (init left it untabled; the reversal's target: nothing to do), or the
                 * target (new since a stop-all init, or since completion flipped the
                 * byte): entered with it, and pending. */
                if (slot < 0 && (tr->untabled ? c->img->hdr.untabled_state : old) == tr->target_state)
                        continue;
                if (slot < 0)
                        slot = transition__table_insert(c, regs_tp(&th->regs), (uint8_t)old);
                if (slot >= 0 && c->img->table_state[slot] != tr->target_state)
                        r = transition__pending_add(tr, th->tid, slot);
                else if (slot < 0)
                        r = slot;
        }
        if (r >= 0 && !tr->global)
                r = control_write_table(tr->t, c);
        if (r >= 0) {
                /* No live thread is untabled in another state than the new target: one
                 * created later starts there. */
                c->img->hdr.target_state = (int8_t)tr->target_state;
                c->img->hdr.untabled_state = (int8_t)tr->target_state;
                r = control_write_header(tr->t, c);
        }
        if (r >= 0)
                r = transition__compute_ranges(tr);
        tr->switched = 0;
        k = target_resume_all(tr->t);
        return r < 0 ? r : k;
}

/* No thread can be in code that was never in the path: one stopped thread, to borrow
 * for the unmap, is enough, and one that cannot be stopped (a vfork parent) does not
 * hold the cancel back. */
int transition_cancel(Transition *tr) {
        ControlPatch *p = &tr->c->img->patches[tr->patch];
        Thread *th = NULL;
        int r, k;

        /* klp_cancel_transition: only an apply that switched no thread is cancelled; a
         * revert, or an apply some thread runs, is reversed instead. */
        ASSERT_RETURN(tr->target_state == THREAD_PATCHED, -EUCLEAN);
        if (tr->entries_left)
                return -EBUSY;
        r = target_stop_any(tr->t, tr->t->stop_timeout_ms > 0 ? tr->t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS, &th);
        if (r < 0)
                return r;
        /* The intent, the record, the header, then the code: the order transition__finish() keeps,
         * so that a driver killed in between leaves a block that checks out (control.c)
         * and that a resume cancels instead of applying (transition_resume). Only a
         * header naming the patch needs the intent (global mode never names it). */
        r = 0;
        if (tr->c->img->hdr.transition_patch == tr->patch) {
                tr->c->img->hdr.transition_flags |= CT_FLAG_CANCEL;
                r = control_write_header(tr->t, tr->c);
        }
        p->state = CP_UNPATCHED;
        if (r >= 0)
                r = control_write_patch(tr->t, tr->c, (unsigned)tr->patch);
        tr->c->img->hdr.transition_patch = -1;
        tr->c->img->hdr.transition_flags = 0;
        if (r >= 0)
                r = control_write_header(tr->t, tr->c);
        bool keep = control_keeps_code(tr->c->img, p);
        if (r >= 0 && th && p->map_size && !keep)
                (void)loader_unmap(tr->t, th, p->map_start, p->map_size);
        /* Code kept for a callback stays recorded, for op-callback.c to reclaim. */
        if (r >= 0 && (!keep || (p->flags & CP_FLAG_FORCED))) {
                p->map_size = 0;
                r = control_write_patch(tr->t, tr->c, (unsigned)tr->patch);
        }
        tr->n_pending = 0;
        k = target_resume_all(tr->t);
        return r < 0 ? r : k;
}

int transition_force(Transition *tr) {
        ControlPatch *p = &tr->c->img->patches[tr->patch];
        int r;

        r = transition_disarm_traps(tr);
        if (r < 0)
                return r;
        /* Untabled ones (slot -1) switch with the byte, which completion flips unchecked. */
        for (size_t i = 0; i < tr->n_pending && !tr->global; i++)
                if (tr->pending[i].slot >= 0) {
                        r = control_write_thread_state(tr->t, tr->c, (unsigned)tr->pending[i].slot,
                                                       (uint8_t)tr->target_state);
                        if (r < 0)
                                return r;
                }
        tr->n_pending = 0;
        tr->forced = true;
        p->flags |= CP_FLAG_FORCED;
        if (tr->global) {
                /* Global mode has no table: switching everyone is the final write. */
                int k;
                r = target_stop_all(tr->t);
                if (r < 0)
                        return r;
                r = transition__finish(tr);
                k = target_resume_all(tr->t);
                return r < 0 ? r : k < 0 ? k : 1;
        }
        for (int tries = 0; tries < 100; tries++) {
                r = transition_complete(tr);
                if (r != 0)
                        return r;
                /* New pending ones came from verify: force them as well. */
                for (size_t i = 0; i < tr->n_pending; i++)
                        if (tr->pending[i].slot >= 0)
                                (void)control_write_thread_state(tr->t, tr->c, (unsigned)tr->pending[i].slot,
                                                                 (uint8_t)tr->target_state);
                tr->n_pending = 0;
        }
        return -EAGAIN;
}

/* Under the stop of resume: an init window a dead driver left is closed (no int3 in
 * the entries); the table may have been cleared partly and no thread entered it yet:
 * cleared again, and the byte set to the initial state, with no thread in a stub. */
static int resume_init_window(Transition *tr) {
        Control *c = tr->c;
        int r = transition__move_threads_out(tr, true);

        if (r < 0)
                return r;
        memset(c->img->table_tp, 0, sizeof(c->img->table_tp));
        memset(c->img->table_state, 0, sizeof(c->img->table_state));
        r = control_write_table(tr->t, c);
        c->img->hdr.untabled_state = (int8_t)(tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED);
        c->img->hdr.transition_flags &= ~(uint32_t)CT_FLAG_INIT_WINDOW;
        return r;
}

int transition_resume(Transition *tr, Target *t, Control *c, Unwinder *u, SymResolver *res) {
        int patch = c->img->hdr.transition_patch, r, k;
        bool window = c->img->hdr.transition_flags & CT_FLAG_INIT_WINDOW;
        unsigned n;
        ControlFunc *f;

        if (patch < 0 || (unsigned)patch >= c->img->hdr.n_patches)
                return -ENOENT;
        /* A cancel cut short: finished as a cancel (nothing of it was visible). What is
         * cancelled is an apply: its transition went towards patched. */
        if (c->img->hdr.transition_flags & CT_FLAG_CANCEL) {
                *tr = (Transition) { .t = t, .c = c, .u = u, .res = res, .patch = patch,
                                     .target_state = THREAD_PATCHED };
                r = transition_cancel(tr);
                return r < 0 ? r : -ECANCELED;
        }
        r = transition_prepare(tr, t, c, u, res, patch, c->img->hdr.target_state, false);
        if (r < 0)
                return r;
        tr->untabled = c->img->hdr.transition_flags & CT_FLAG_UNTABLED;
        /* The int3 bytes out first (each entry finished or undone), with the guard. */
        if (window) {
                r = transition__close_init_window(tr);
                if (r < 0)
                        return r;
        }
        /* Completion's window: every thread was in the target, so either bytes will do;
         * the entries go back to their stubs below, and completion is made again. */
        if (c->img->hdr.transition_flags & CT_FLAG_END_WINDOW) {
                r = transition__close_end_window(tr);
                if (r < 0)
                        return r;
                c->img->hdr.transition_flags &= ~(uint32_t)CT_FLAG_END_WINDOW;
        }
        for (int tries = 0;; tries++) {
                r = target_stop_all(t);
                if (r < 0)
                        return r;
                if (!window)
                        break;
                r = resume_init_window(tr);
                if (r != -EAGAIN || tries >= 200)
                        break;
                /* A thread in a stub whose table is cleared: a moment later. */
                (void)target_resume_all(t);
                sleep_1ms();
        }
        r = window ? r : control_read_table(t, c);
        control_claim_driver(c);
        /* A transition whose init filled the table: a thread not in it is a new one, in
         * the target (whichever byte the stubs of an older build read). */
        if (!tr->untabled)
                c->img->hdr.untabled_state = c->img->hdr.target_state;
        if (r >= 0)
                r = control_write_header(t, c);
        /* An init cut short after the header: the patch is marked now. A finish cut
         * short left it in its final state, which the next finish writes again. */
        if (r >= 0 && c->img->patches[patch].state == CP_UNPATCHED) {
                c->img->patches[patch].state = CP_TRANSITION;
                r = control_write_patch(t, c, (unsigned)patch);
        }
        /* The stubs may not all be in the path if init was cut short: put them there,
         * moving threads out of the bytes that still hold the original instructions
         * (the table is only read here: a thread in a stub does not matter). */
        if (r >= 0)
                r = transition__move_threads_out(tr, false);
        f = transition__patch_funcs(c, patch, &n);
        for (unsigned i = 0; i < n && r >= 0; i++)
                r = transition_write_entry(t, &f[i], f[i].stub_addr);
        for (size_t i = 0; i < t->n_threads && r >= 0; i++) {
                const Thread *th = &t->threads[i];
                int slot;
                if (th->gone || !th->stopped)
                        continue;
                tr->total++;
                slot = control_table_find(c, regs_tp(&th->regs));
                if (slot >= 0 && c->img->table_state[slot] != tr->target_state)
                        r = transition__pending_add(tr, th->tid, slot);
                else if (slot < 0 && tr->untabled && c->img->hdr.untabled_state != tr->target_state)
                        r = transition__pending_add(tr, th->tid, -1);
        }
        k = target_resume_all(t);
        return r < 0 ? r : k;
}
