/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Callbacks past their deadline (docs/fault-tolerance.md): the thread is left to finish
 * the call by itself, and the control block remembers it (hdr.callback_tid and
 * callback_frame, the patch marked CP_FLAG_CALLBACK) so that no patch code is unmapped
 * while it may still run, and no other callback runs meanwhile. Once the thread is out
 * (gone, or its stack pointer back above the call's frame) a later operation reclaims
 * what was kept.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/errno-clause.h"

#include "patcher/op.h"

const char *op_callback_name(const ControlPatch *p, uint64_t addr) {
        static const char *const names[4] = { "pre-patch", "post-patch", "pre-unpatch", "post-unpatch" };

        for (unsigned k = 0; k < 4; k++)
                if (p->callbacks[k] == addr)
                        return names[k];
        return "patch's";
}

/* 1 when the recorded thread is out of its call, 0 while it may be inside, or -errno. */
static int callback_thread_out(UlpOp *op) {
        const ControlHeader *h = &op->c.img->hdr;
        int r;

        if (!h->callback_tid)
                return 1;
        r = target_refresh_threads(op->t);
        if (r < 0)
                return r;
        Thread *th = target_find_thread(op->t, h->callback_tid);
        if (!th || th->gone)
                return 1;
        bool was_stopped = th->stopped;
        if (!was_stopped) {
                r = target_stop_thread(op->t, th);
                if (r == -ESRCH)
                        return 1;
                if (r < 0)
                        return 0;   /* cannot look now: still inside, as far as we know */
        }
        /* At the restorer the frame is still its stack (rsp just above pretcode). */
        bool out = regs_sp(&th->regs) > h->callback_frame + 8;
        if (!was_stopped)
                (void)target_resume_thread(op->t, th);
        return out;
}

/* Unmaps the code of the patches that were kept for the callback and are not live. */
static int reclaim_kept_code(UlpOp *op) {
        ControlImage *img = op->c.img;
        Thread *th = NULL;
        int r = 0;

        for (unsigned i = 0; i < img->hdr.n_patches && r >= 0; i++) {
                ControlPatch *p = &img->patches[i];
                bool dead = p->state == CP_UNPATCHED && p->map_size && !(p->flags & CP_FLAG_FORCED) &&
                            (int)i != img->hdr.transition_patch;
                if (!dead && !(p->flags & CP_FLAG_CALLBACK))
                        continue;
                if (dead && !th)
                        r = op_borrow(op, &th);
                if (r < 0)
                        break;
                /* The code first, then the record that names it: a driver killed in
                 * between leaves a record of unmapped code, which nothing runs. */
                if (dead && loader_unmap(op->t, th, p->map_start, p->map_size) >= 0)
                        p->map_size = 0;
                p->flags &= ~(uint32_t)CP_FLAG_CALLBACK;
                r = control_write_patch(op->t, &op->c, i);
        }
        if (th)
                (void)target_resume_thread(op->t, th);
        return r;
}

int op_callback_reclaim(UlpOp *op, bool need_callback) {
        ControlHeader *h;
        int r;

        if (!op->c.img || !op->c.img->hdr.callback_tid)
                return 0;
        h = &op->c.img->hdr;
        r = callback_thread_out(op);
        if (r < 0)
                return op_fail(op, r, "cannot look at thread %d of process %d: %s", h->callback_tid,
                               op->t->pid, process_errno_clause(r));
        if (r == 0) {
                if (!need_callback)
                        return 0;
                return op_fail(op, -EBUSY, "a callback left past its deadline still runs in thread %d of "
                               "process %d: no other callback runs before it returns", h->callback_tid,
                               op->t->pid);
        }
        /* The outcome of a late object's call first: the record is what ties the call
         * slot to it (op-late.c). */
        r = op_late_resolve(op);
        if (r < 0)
                return r;
        r = reclaim_kept_code(op);
        if (r >= 0) {
                h->callback_tid = 0;
                h->callback_frame = 0;
                r = control_write_header(op->t, &op->c);
        }
        if (r < 0)
                return op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r));
        return 0;
}

int op_callback_out(UlpOp *op) {
        return callback_thread_out(op);
}

int op_callback_done(UlpOp *op) {
        ControlHeader *h = &op->c.img->hdr;

        if (!h->callback_tid)
                return 0;
        h->callback_tid = 0;
        h->callback_frame = 0;
        return control_write_header(op->t, &op->c);
}

int op_callback_overdue(UlpOp *op, pid_t tid, uint64_t frame) {
        ControlHeader *h = &op->c.img->hdr;
        ControlPatch *p = &op->c.img->patches[op->patch];

        /* The header first: from that write on no patch code is unmapped at all
         * (control_keeps_code()); the flag then says which patch to reclaim. */
        h->callback_tid = tid;
        h->callback_frame = frame;
        int r = control_write_header(op->t, &op->c);
        if (r < 0)
                return r;
        p->flags |= CP_FLAG_CALLBACK;
        return control_write_patch(op->t, &op->c, (unsigned)op->patch);
}
