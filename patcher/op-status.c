/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * status: what a process carries, read from its control block (the source of truth,
 * docs/control-block.md) without stopping any of its threads. The stragglers of a
 * transition in progress are those the driving process published after its last pass
 * (ulp_op_step, op.c).
 */
#include <stdio.h>

#include "common/macro.h"
#include "patcher/op.h"
#include "patcher/shadow.h"

static void status_funcs(const ControlImage *img, const ControlPatch *p, UlpPatchStatus *ps) {
        ps->funcs = calloc(p->n_funcs ? p->n_funcs : 1, sizeof(UlpFuncStatus));
        for (unsigned i = 0; ps->funcs && i < p->n_funcs; i++) {
                const ControlFunc *f = &img->funcs[p->first_func + i];
                UlpFuncStatus *fs;
                if (f->flags & CF_FLAG_NOP)
                        continue;
                fs = &ps->funcs[ps->n_funcs++];
                snprintf(fs->object, sizeof(fs->object), "%s", f->object);
                snprintf(fs->symbol, sizeof(fs->symbol), "%s", f->symbol);
                fs->addr = f->old_addr;
        }
}

/* The published stragglers, for the patch in transition. */
static void status_stragglers(const ControlStragglers *s, UlpPatchStatus *ps) {
        if (s->n == 0)
                return;
        ps->stragglers = calloc(s->n, sizeof(UlpStraggler));
        for (unsigned i = 0; ps->stragglers && i < s->n; i++) {
                UlpStraggler *u = &ps->stragglers[ps->n_stragglers++];
                u->tid = s->v[i].tid;
                snprintf(u->comm, sizeof(u->comm), "%.15s", s->v[i].comm);
                snprintf(u->function, sizeof(u->function), "%.107s", s->v[i].blocker);
        }
}

static void status_patch(const ControlImage *img, unsigned idx, UlpPatchStatus *ps) {
        const ControlPatch *p = &img->patches[idx];

        snprintf(ps->name, sizeof(ps->name), "%s", p->name);
        ps->state = transition_patch_state(p->state);
        /* The header is what says a transition is in progress: a driver killed between
         * the patch's write and the header's (init writes the header first, completion
         * and cancel the patch first) leaves a record not marked in transition that the
         * header still names. Shown in transition, so that an operator reverts it, as
         * the refusal of an apply asks (docs/fault-tolerance.md). */
        if (img->hdr.transition_patch == (int32_t)idx)
                ps->state = ULP_PATCH_TRANSITION;
        ps->forced = p->flags & CP_FLAG_FORCED;
        ps->replace = p->flags & CP_FLAG_REPLACE;
        ps->applied_ns = p->applied_ns;
        ps->applied_uid = p->applied_uid;
        ps->code_mapped = p->state == CP_UNPATCHED && p->map_size;
        status_funcs(img, p, ps);
        if (p->state == CP_TRANSITION)
                status_stragglers(&img->stragglers, ps);
        for (unsigned i = 0; p->state != CP_UNPATCHED && i < CONTROL_MAX_LATE; i++) {
                if (!p->late[i][0])
                        continue;
                uint8_t st = (uint8_t)p->late[i][CONTROL_LATE_STATE];
                if (st == CONTROL_LATE_LOADED || st == CONTROL_LATE_POSTPENDING || st == CONTROL_LATE_POSTCALL)
                        snprintf(ps->loaded_late[ps->n_loaded_late++], sizeof(ps->loaded_late[0]), "%.63s",
                                 p->late[i]);
                /* Patched, its post_patch still to run (a driver killed before the call):
                 * also waited for, so that ulpd's next look at the process runs it. */
                if (st != CONTROL_LATE_LOADED)
                        snprintf(ps->late_objects[ps->n_late_objects++], sizeof(ps->late_objects[0]),
                                 "%.63s", p->late[i]);
        }
}

bool ulp_op_has_late(const UlpOp *op) {
        const ControlImage *img = op ? op->c.img : NULL;

        for (unsigned i = 0; img && i < img->hdr.n_patches && i < CONTROL_MAX_PATCHES; i++) {
                const ControlPatch *p = &img->patches[i];
                if (p->state == CP_FREE || p->state == CP_UNPATCHED)
                        continue;
                for (unsigned k = 0; k < CONTROL_MAX_LATE; k++)
                        if (p->late[k][0])
                                return true;
        }
        return false;
}

int op_status_convert(const ControlImage *img, UlpProcessStatus *ret) {
        ret->patches = calloc(img->hdr.n_patches + 1, sizeof(UlpPatchStatus));
        if (!ret->patches)
                return -ENOMEM;
        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                /* Reverted and replaced patches keep a record until the next compaction:
                 * not shown, unless their code is still mapped in the process (a driver
                 * was killed before it unmapped it, or some thread was forced). */
                if (img->patches[i].state == CP_FREE ||
                    (img->patches[i].state == CP_UNPATCHED && !img->patches[i].map_size))
                        continue;
                status_patch(img, i, &ret->patches[ret->n_patches++]);
        }
        return 0;
}

/* The shadow-variable runtime's counters, informational (docs/shadow.md). */
static void status_shadow(UlpOp *op, UlpProcessStatus *ret) {
        ShadowStats st;
        int r = shadow_read_stats(op->t, op->c.img, &st);

        ret->has_shadow = r != -ENOENT;
        ret->shadow_refused = r < 0 && r != -ENOENT;
        if (r >= 0) {
                ret->shadow_variables = st.variables;
                ret->shadow_bytes = st.bytes;
                ret->shadow_mapped = st.mapped;
        }
}

/* Opens the target for reading only: no module list, no symbols. */
static int open_for_status(UlpOp *op, pid_t pid) {
        int r = op_target_open(op, pid);
        if (r < 0)
                return r;
        r = op_find_control(op, pid);
        if (r == 0 || r == -ENODATA)
                return op_fail(op, -ENOENT, "process %d carries no ulp patch", pid);
        return r < 0 ? r : 0;
}

int ulp_status(pid_t pid, UlpProcessStatus *ret, UlpReport *report) {
        UlpOp *op = op_new(OP_APPLY, NULL, report);
        int r;

        if (!op)
                return -ENOMEM;
        *ret = (UlpProcessStatus) { .pid = pid };
        r = open_for_status(op, pid);
        if (op->t)
                target_thread_name(op->t, pid, ret->comm);
        if (r == -EBADMSG || r == -EBUSY)
                snprintf(ret->problem, sizeof(ret->problem), "%s", op->c.why);
        if (r >= 0) {
                ret->trusted = op->c.trusted;
                /* Informational: a list that does not check out is not shown. */
                if (op->c.img->hdr.transition_patch < 0 || control_read_stragglers(op->t, &op->c) < 0)
                        op->c.img->stragglers.n = 0;
                r = op_status_convert(op->c.img, ret);
                status_shadow(op, ret);
        }
        ulp_op_free(op);
        return r;
}

void ulp_status_done(UlpProcessStatus *s) {
        for (size_t i = 0; i < s->n_patches; i++) {
                free(s->patches[i].funcs);
                free(s->patches[i].stragglers);
        }
        free(s->patches);
        *s = (UlpProcessStatus) {};
}
