/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Compaction of the control block and the reclaim of reverted patches' code left mapped
 * (docs/control-block.md, "Compaction"). Both run before an apply loads its patch, with
 * no transition in progress. Every write leaves a block that validates and means what
 * the operation has reached: a driver killed anywhere in here leaves nothing for the next
 * one to refuse.
 */
#include <stdio.h>
#include <string.h>

#include "common/errno-clause.h"
#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/loader.h"
#include "patcher/op.h"

/* A reverted patch's code may be left mapped by a driver killed between a transition's
 * end and the unmapping, or between loading a patch and its transition: its record
 * stays, so that the code is found and unmapped, until then. Code kept on purpose
 * (forced, a callback past its deadline) is control_keeps_code()'s. */
static bool code_left(const ControlImage *img, const ControlPatch *p) {
        return p->state == CP_UNPATCHED && p->map_size && !control_keeps_code(img, p);
}

/* Whether the record of patch p may go. */
static bool droppable(const ControlImage *img, const ControlPatch *p) {
        /* Code kept for a callback past its deadline stays recorded until
         * op_callback_reclaim() unmaps it. */
        bool kept = (p->flags & CP_FLAG_CALLBACK) ||
                    (img->hdr.callback_tid && p->map_size && !(p->flags & CP_FLAG_FORCED));
        return p->state != CP_PATCHED && p->state != CP_TRANSITION && !kept && !code_left(img, p);
}

/* The records in use once the patches from n on are dropped. */
static unsigned funcs_below(const ControlImage *img, unsigned n) {
        unsigned end = 0;
        for (unsigned i = 0; i < n; i++)
                end = MAX(end, img->patches[i].first_func + img->patches[i].n_funcs);
        return end;
}

/* Drops the droppable patches at the end: one header write, nothing moves. */
static int drop_tail(UlpOp *op) {
        ControlImage *img = op->c.img;
        unsigned n = img->hdr.n_patches;

        while (n > 0 && droppable(img, &img->patches[n - 1]))
                n--;
        if (n == img->hdr.n_patches)
                return 0;
        img->hdr.n_patches = n;
        img->hdr.n_funcs = funcs_below(img, n);
        return control_write_header(op->t, &op->c);
}

/* Moves the kept patches and their records to the front of the local copy. */
static void compact_local(ControlImage *img) {
        unsigned np = 0, nf = 0;

        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                ControlPatch p = img->patches[i];
                if (droppable(img, &p))
                        continue;
                memmove(&img->funcs[nf], &img->funcs[p.first_func], p.n_funcs * sizeof(ControlFunc));
                for (unsigned k = 0; k < p.n_funcs; k++)
                        img->funcs[nf + k].patch = np;
                p.first_func = nf;
                nf += p.n_funcs;
                img->patches[np++] = p;
        }
        img->hdr.n_patches = np;
        img->hdr.n_funcs = nf;
}

/* Whether dropping moves anything: a kept patch or record not already where
 * compact_local() would put it. */
static bool needs_move(const ControlImage *img) {
        unsigned np = 0, nf = 0;
        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                const ControlPatch *p = &img->patches[i];
                if (droppable(img, p))
                        continue;
                if (i != np || p->first_func != nf)
                        return true;
                np++;
                nf += p->n_funcs;
        }
        return false;
}

/* Drops the records of reverted patches, so that apply/revert cycles do not fill the
 * block: a tail of them with one header write; otherwise the compacted patches and
 * records are staged past the used records and published with one header write, then
 * copied into place (control_stage, control_settle). Without room for the stage, only
 * the tail goes. Only between transitions, with the borrowed thread stopped. */
int op_compact_control(UlpOp *op) {
        ControlImage *img = op->c.img;
        unsigned used;
        int r, at;

        if (img->hdr.transition_patch >= 0)
                return 0;
        /* A stage left by a driver killed before it copied it into place. */
        r = control_settle(op->t, &op->c);
        if (r >= 0 && needs_move(img)) {
                used = img->hdr.n_funcs;
                compact_local(img);
                at = control_stage_room(img, used);
                if (at >= 0) {
                        r = control_stage(op->t, &op->c, (unsigned)at);
                        if (r >= 0)
                                r = control_settle(op->t, &op->c);
                } else {
                        /* Read back as it is in the target: only its tail can go. */
                        r = op_load_control(op);
                        img = op->c.img;
                        if (r >= 0)
                                r = drop_tail(op);
                }
        } else if (r >= 0)
                r = drop_tail(op);
        return r < 0 ? op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r)) : 0;
}

/* The mapping the loader made for p (its memfd's name) still starts at its address, and
 * no other record claims any of its range (the address may have been reused). */
static bool mapping_is_ours(const MapList *l, const ControlImage *img, unsigned idx) {
        const ControlPatch *p = &img->patches[idx];
        char want[220];
        bool found = false;

        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                const ControlPatch *q = &img->patches[i];
                if (i != idx && q->map_size && q->map_start < p->map_start + p->map_size &&
                    p->map_start < q->map_start + q->map_size)
                        return false;
        }
        snprintf(want, sizeof(want), "/memfd:" PATCH_MAPPING_PREFIX "%.180s", p->name);
        for (size_t i = 0; i < l->n && !found; i++)
                found = l->v[i].start == p->map_start && l->v[i].path && strcmp(l->v[i].path, want) == 0;
        return found;
}

/* Bytes of each stack looked at above its stack pointer for return addresses. */
#define RECLAIM_STACK_SCAN 8192

/* Whether the stopped th may still run code in [lo, hi): its PC there, or a word of its
 * stack (conservatively, any word) pointing there. A thread left inside a callback by a
 * dead driver is found this way. */
static bool thread_in(UlpOp *op, const Thread *th, uint64_t lo, uint64_t hi) {
        uint64_t words[64], sp = regs_sp(&th->regs), pc = regs_pc(&th->regs);

        if (pc >= lo && pc < hi)
                return true;
        for (uint64_t at = sp & ~7ULL; at < (sp & ~7ULL) + RECLAIM_STACK_SCAN; at += sizeof(words)) {
                if (target_read(op->t, at, words, sizeof(words)) < 0)
                        break; /* the top of its stack */
                for (size_t i = 0; i < ELEMENTSOF(words); i++)
                        if (words[i] >= lo && words[i] < hi)
                                return true;
        }
        return false;
}

static bool code_in_use(UlpOp *op, const ControlPatch *p) {
        for (size_t i = 0; i < op->t->n_threads; i++) {
                const Thread *th = &op->t->threads[i];
                if (!th->gone && th->stopped && thread_in(op, th, p->map_start, p->map_start + p->map_size))
                        return true;
        }
        return false;
}

/* One left-over mapping, every thread stopped: unmapped unless some thread may still be
 * in it; then the record says so. A driver killed in between leaves a record naming code
 * that is gone, which the next reclaim recognises (mapping_is_ours) and clears. */
static int reclaim_one(UlpOp *op, const MapList *l, unsigned idx) {
        ControlPatch *p = &op->c.img->patches[idx];
        Thread *th = target_any_stopped(op->t);

        if (mapping_is_ours(l, op->c.img, idx)) {
                if (!th || code_in_use(op, p))
                        return 0;
                int r = loader_unmap(op->t, th, p->map_start, p->map_size);
                if (r < 0)
                        return r;
        }
        p->map_size = 0;
        return control_write_patch(op->t, &op->c, idx);
}

/* Unmaps the code of reverted patches left mapped by a driver killed before it did
 * (code_left). Best effort: a thread that may still be in that code, a live process
 * that wrote the block last, or a process that cannot be stopped now, leaves it for a
 * later apply; the record stays meanwhile and status shows it. Before anything is
 * borrowed: it stops every thread. */
int op_reclaim_code(UlpOp *op) {
        ControlImage *img = op->c.img;
        MapList l = {};
        bool any = false;
        int r, k;

        for (unsigned i = 0; img && i < img->hdr.n_patches; i++)
                any |= code_left(img, &img->patches[i]);
        /* A live process that wrote last may be loading that patch right now (its
         * record is unpatched until its transition starts): left to it. */
        if (!any || img->hdr.transition_patch >= 0 || control_live_writer(&op->c, op->t->pid))
                return 0;
        r = target_stop_all(op->t);
        if (r < 0)
                return 0;
        r = maps_read(op->t->pid, &l);
        for (unsigned i = 0; r >= 0 && i < img->hdr.n_patches; i++)
                if (code_left(img, &img->patches[i]))
                        r = reclaim_one(op, &l, i);
        maplist_done(&l);
        k = target_resume_all(op->t);
        if (r < 0)
                return op_fail(op, r, "cannot unmap the code of a reverted patch in process %d: %s", op->t->pid,
                               process_errno_clause(r));
        return k < 0 ? op_fail(op, k, "process %d went away", op->t->pid) : 0;
}

/* After the pre-patch callback of the patch just loaded (op->patch) failed to run: its
 * code is unmapped at once (op_reclaim_code: not while a thread may be in it) and its
 * record dropped (op_compact_control), so that status right after shows nothing of it.
 * Best effort (the caller writes the report's message after it): 1 when the code stays
 * mapped, else 0. */
int op_unload_failed(UlpOp *op) {
        const ControlImage *img = op->c.img;
        unsigned idx = (unsigned)op->patch;

        if (!img || op->patch < 0 || idx >= img->hdr.n_patches)
                return 0;
        if (op_reclaim_code(op) >= 0)
                (void)op_compact_control(op);
        img = op->c.img;
        return idx < img->hdr.n_patches && img->patches[idx].state == CP_UNPATCHED && img->patches[idx].map_size;
}

int op_reclaim_loader_fd(UlpOp *op, Thread *th) {
        int r;

        if (!op->c.img || !loader_fd_left(&op->c))
                return 0;
        r = loader_fd_reclaim(op->t, th, &op->c);
        if (r < 0)
                return op_fail(op, r, "cannot close the memfd a killed driver left in process %d: %s", op->t->pid,
                               process_errno_clause(r));
        return 0;
}
