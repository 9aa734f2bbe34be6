/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * status: what a process carries, read from its control block (the source of truth,
 * docs/control-block.md) without stopping any of its threads. The stragglers of a
 * transition in progress are those the driving process published after its last pass
 * (ulp_op_step, op.c).
 */
#include <dirent.h>
#include <stdio.h>

#include "common/macro.h"
#include "patcher/op.h"

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
        ps->forced = p->flags & CP_FLAG_FORCED;
        ps->replace = p->flags & CP_FLAG_REPLACE;
        ps->code_mapped = p->state == CP_UNPATCHED && p->map_size;
        status_funcs(img, p, ps);
        if (p->state == CP_TRANSITION)
                status_stragglers(&img->stragglers, ps);
        for (unsigned i = 0; p->state != CP_UNPATCHED && i < CONTROL_MAX_LATE; i++)
                if (p->late[i][0])
                        snprintf(ps->late_objects[ps->n_late_objects++], sizeof(ps->late_objects[0]),
                                 "%.63s", p->late[i]);
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

/* Opens the target for reading only: no module list, no symbols. */
static int open_for_status(UlpOp *op, pid_t pid) {
        uint64_t addr;
        int r = target_open(pid, &op->t);
        if (r == -ESRCH)
                return op_fail(op, r, "no process with pid %d", pid);
        if (r == -EPERM || r == -EACCES)
                return op_fail_denied(op, pid);
        if (r < 0)
                return op_fail(op, r, "cannot read process %d: %s", pid, strerror(-r));
        r = control_find(pid, &addr);
        if (r < 0)
                return op_fail(op, r, "cannot read the memory map of process %d", pid);
        if (r == 0)
                return op_fail(op, -ENOENT, "process %d carries no ulp patch", pid);
        op->c.addr = addr;
        r = op_load_control(op);
        if (r == -ENODATA)
                return op_fail(op, -ENOENT, "process %d carries no ulp patch", pid);
        return r;
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

int ulp_list_processes(pid_t **ret, size_t *ret_n) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t *v = NULL;
        size_t n = 0;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                uint64_t addr;
                if (*end || pid <= 0 || control_find((pid_t)pid, &addr) <= 0)
                        continue;
                pid_t *nv = realloc(v, (n + 1) * sizeof(pid_t));
                if (!nv) {
                        free(v);
                        closedir(d);
                        return -ENOMEM;
                }
                v = nv;
                v[n++] = (pid_t)pid;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
}
