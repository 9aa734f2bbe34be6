/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/loader.h"
#include "patcher/op.h"

/* A patch may go only if, for each of its functions, nothing above it in the function's
 * stack is live: otherwise that patch's stubs would send threads to freed code. */
static int check_on_top(UlpOp *op, int patch) {
        const ControlPatch *p = &op->c.img->patches[patch];
        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs; i++) {
                int top = control_top_func(&op->c, op->c.img->funcs[i].old_addr, -1);
                if (top >= 0 && (int)op->c.img->funcs[top].patch != patch)
                        return op_fail(op, -EBUSY, "patch %s also replaces %s and was applied later: revert it first",
                                       op->c.img->patches[op->c.img->funcs[top].patch].name,
                                       op->c.img->funcs[i].symbol);
        }
        return 0;
}

int op_open_with_control(UlpOp *op, pid_t pid) {
        int r = op_open_target(op, pid);
        if (r < 0)
                return r;
        if (!op->c.img)
                return op_fail(op, -ENOENT, "process %d carries no ulp patch", pid);
        return 0;
}

/* Bound on a timeout read from the block (the target's memory): a request's own bound. */
#define TAKEOVER_TIMEOUT_MAX_MS (24U * 3600U * 1000U)

/* The unfinished transition of the target, taken over as it was. keep_timeout: the
 * caller asked for no timeout of its own, and the transition keeps the one its first
 * driver recorded (a restarted ulpd must not reverse at the default 30 s a transition
 * applied with --timeout 120); counted afresh from the takeover. */
static int take_over(UlpOp *op, bool keep_timeout) {
        pid_t driver = control_live_driver(&op->c);
        unsigned recorded = op->c.img->hdr.timeout_ms;
        int r;

        if (driver)
                return op_fail(op, -EBUSY, "the transition in process %d is being driven by process %d",
                               op->t->pid, driver);
        if (keep_timeout && recorded > 0) {
                op->o.timeout_ms = MIN(recorded, TAKEOVER_TIMEOUT_MAX_MS);
                op->deadline_ns = op->start_ns + (uint64_t)op->o.timeout_ms * 1000000ULL;
        }
        /* transition_resume() writes the header: the timeout in force, for the next taker. */
        op->c.img->hdr.timeout_ms = op->o.timeout_ms;
        r = op_unwinder(op);
        if (r < 0)
                return r;
        r = transition_resume(&op->tr, op->t, &op->c, op->u, &op->res);
        if (r == -ECANCELED) {
                /* Its driver was cancelling an apply: that is finished, nothing applied. */
                op->patch = op->tr.patch;
                op->kind = OP_REVERT;
                op->done = true;
                snprintf(op->report->patch_name, sizeof(op->report->patch_name), "%s",
                         op->c.img->patches[op->patch].name);
                op_warn(op, "the apply of patch %s in process %d was being cancelled by its driver: "
                        "cancel finished, the patch is not applied", op->report->patch_name, op->t->pid);
                return 0;
        }
        if (r < 0) {
                char why[256];
                return op_fail(op, r, "cannot take over the transition: %s", op_stop_error(op, r, why, sizeof(why)));
        }
        op->tr_ready = true;
        op->tr.return_trap = op->o.return_trap;
        op->patch = op->tr.patch;
        op->kind = op->tr.target_state == THREAD_PATCHED ? OP_APPLY : OP_REVERT;
        snprintf(op->report->patch_name, sizeof(op->report->patch_name), "%s", op->c.img->patches[op->patch].name);
        return 0;
}

static int first_step(UlpOp *op, UlpOp **ret, int r) {
        unsigned next;
        if (r >= 0)
                r = ulp_op_step(op, &next);
        if (r < 0 && r != -ETIMEDOUT) {
                ulp_op_free(op);
                return r;
        }
        *ret = op;
        return r;
}

/* What a revert's prologue has done so far. */
typedef struct RevertStart {
        bool settled;            /* op_late_settle() ended what a killed driver left */
        bool called;             /* the pre-unpatch callback ran */
} RevertStart;

/* A revert's prologue (op->prologue, docs/stops.md): the end of a late object's switch a
 * killed driver left, the pre-unpatch callback, fresh stubs, the start of the
 * transition. Each part that borrows a thread may return -EAGAIN before it changed
 * anything; the next step goes on from there. */
static int revert_prologue(UlpOp *op) {
        RevertStart *s = op->prologue_data;
        uint64_t pre;
        Thread *th;
        int r, cb = 0;

        if (!s->settled) {
                r = op_late_settle(op);
                if (r < 0)
                        return r;
                s->settled = true;
        }
        /* After the settle: the end of a late switch records the object's callbacks. */
        pre = op->c.img->patches[op->patch].callbacks[CP_CB_PRE_UNPATCH];
        if (pre && !s->called) {
                r = op_run_callback(op, pre, &cb);
                if (r < 0)
                        return r;
                s->called = true;
                if (cb != 0)
                        return op_fail(op, -ECANCELED, "the patch's pre-unpatch callback refused (returned %d): "
                                       "nothing changed", cb);
        }
        if (!op->o.global) {
                /* A thread is borrowed only for what needs one (a remote system call):
                 * the memfd a killed driver left, or a new area for the stubs. */
                th = NULL;
                if (loader_fd_left(&op->c) || !op_stubs_fit(op, op->patch)) {
                        r = op_borrow(op, &th);
                        if (r < 0)
                                return r;
                }
                r = op_reclaim_loader_fd(op, th);
                if (r >= 0)
                        r = op_build_stubs(op, th, op->patch);
                int k = th ? target_resume_thread(op->t, th) : 0;
                if (r >= 0)
                        r = k;
                if (r < 0)
                        return r;
        }
        return op_start_transition(op, THREAD_UNPATCHED);
}

int ulp_op_revert(pid_t pid, const char *name, const UlpOptions *o, UlpOp **ret, UlpReport *report) {
        UlpOp *op = op_new(OP_REVERT, o, report);
        int r, idx;

        if (!op)
                return -ENOMEM;
        snprintf(report->patch_name, sizeof(report->patch_name), "%s", name);
        r = op_open_with_control(op, pid);
        if (r < 0)
                goto fail;
        idx = control_find_patch(&op->c, name);
        /* A driver killed in init or in a cancel leaves the header naming a patch whose
         * record is not live (yet, or any more): its revert takes the transition over. */
        int tp = op->c.img->hdr.transition_patch;
        if (idx < 0 && tp >= 0 && strcmp(op->c.img->patches[tp].name, name) == 0)
                idx = tp;
        if (idx < 0) {
                r = op_fail(op, -ENOENT, "patch %s is not applied to process %d", name, pid);
                goto fail;
        }
        r = op_check_fibers(op);
        if (r < 0)
                goto fail;
        if (op->c.img->hdr.transition_patch >= 0) {
                /* klp_reverse_transition: revert of the patch still in transition. */
                if (op->c.img->hdr.transition_patch != idx) {
                        r = op_fail(op, -EBUSY, "process %d has a transition of patch %s in progress", pid,
                                    op->c.img->patches[op->c.img->hdr.transition_patch].name);
                        goto fail;
                }
                r = take_over(op, false);
                if (r >= 0 && op->tr.target_state == THREAD_PATCHED) {
                        r = transition_reverse(&op->tr);
                        op->kind = OP_REVERT;
                }
                return first_step(op, ret, r);
        }
        op->patch = idx;
        r = check_on_top(op, idx);
        if (r >= 0)
                r = op_unwinder(op);
        if (r >= 0 && !(op->prologue_data = calloc(1, sizeof(RevertStart))))
                r = -ENOMEM;
        if (r >= 0) {
                op->prologue = revert_prologue;
                op->prologue_free = free;
        }
        return first_step(op, ret, r);
fail:
        ulp_op_free(op);
        return r;
}

/* Nothing to resume, but a patch load a killed driver left: its memfd is closed on a
 * thread borrowed for that alone (recovery at ulpd's start). */
static int reclaim_only(UlpOp *op) {
        Thread *th;
        int r = op_borrow(op, &th);

        if (r < 0)
                return r;
        r = op_reclaim_loader_fd(op, th);
        int k = target_resume_thread(op->t, th);
        return r < 0 ? r : k;
}

int ulp_op_resume(pid_t pid, const UlpOptions *o, UlpOp **ret, UlpReport *report) {
        UlpOp *op = op_new(OP_APPLY, o, report);
        bool keep_timeout = !o || !o->timeout_ms;
        int r;

        if (!op)
                return -ENOMEM;
        /* Whether there is anything to resume comes first: recovery looks at every block
         * on the machine, and one without a transition is no business of it. */
        bool trust = op->o.trust_unsigned;
        op->o.trust_unsigned = true;
        r = op_open_with_control(op, pid);
        op->o.trust_unsigned = trust;
        if (r >= 0 && op->c.img->hdr.transition_patch < 0 && loader_fd_left(&op->c) && op_check_trust(op) >= 0)
                (void)reclaim_only(op);
        if (r >= 0 && op->c.img->hdr.transition_patch < 0)
                r = op_fail(op, -ENOENT, "process %d has no transition in progress", pid);
        if (r >= 0)
                r = op_check_trust(op);
        if (r >= 0)
                r = take_over(op, keep_timeout);
        return first_step(op, ret, r);
}
