/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Objects loaded after a patch was applied: the kernel's klp_is_object_loaded() and its
 * module notifier (klp_module_coming) carried over to libraries a process dlopen()s. A
 * patch applied while one of its objects was missing recorded it as pending in the
 * control block; once the process has loaded it, ulp_apply_late() patches its
 * functions. No transition: the patch is complete, so every thread is already in the
 * patched state; what must hold is that no thread has one of the object's old functions
 * on its stack at the switch (the library may have run since dlopen), checked for every
 * thread in one stop-the-world, like global mode.
 *
 * The patch file comes back from the target itself: the loader mapped it from a memfd
 * named ulp-patch:NAME, and /proc/PID/map_files gives that file for any of its mappings.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/loader.h"
#include "patcher/nearmem.h"
#include "patcher/op.h"

#define PENDING_TRIES 100

/* Opens the patch file of p from the target's mapping of its memfd. */
static int open_patch_file(UlpOp *op, const ControlPatch *p, int *ret_fd) {
        char want[220], path[96];
        MapList l = {};
        int r = maps_read(op->t->pid, &l), fd = -ENOENT;

        if (r < 0)
                return r;
        snprintf(want, sizeof(want), "/memfd:" PATCH_MAPPING_PREFIX "%.180s", p->name);
        for (size_t i = 0; i < l.n && fd == -ENOENT; i++) {
                const MapEntry *e = &l.v[i];
                if (!e->path || strcmp(e->path, want) != 0 || e->start < p->map_start ||
                    e->start >= p->map_start + p->map_size)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", op->t->pid,
                         (unsigned long long)e->start, (unsigned long long)e->end);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        fd = negative_errno();
        }
        maplist_done(&l);
        if (fd < 0)
                return fd;
        *ret_fd = fd;
        return 0;
}

/* Moves the records from index at on by n, making room for n records of the patch that
 * ends at at; the patches whose records follow move with them. Local copy only. */
static int make_room(Control *c, unsigned at, unsigned n, unsigned patch) {
        ControlImage *img = c->img;

        if (img->hdr.n_funcs + n > CONTROL_MAX_FUNCS)
                return -E2BIG;
        memmove(&img->funcs[at + n], &img->funcs[at], (img->hdr.n_funcs - at) * sizeof(ControlFunc));
        memset(&img->funcs[at], 0, n * sizeof(ControlFunc));
        img->hdr.n_funcs += n;
        for (unsigned i = 0; i < img->hdr.n_patches; i++)
                if (i != patch && img->patches[i].first_func >= at)
                        img->patches[i].first_func += n;
        img->patches[patch].n_funcs += n;
        return 0;
}

/* With every thread stopped: 0 when no thread sits in the displaced bytes of, or has on
 * its stack, one of the n functions at f; -EAGAIN otherwise, the reason in blocker. */
static int check_threads(UlpOp *op, const ControlFunc *f, unsigned n, char *blocker, size_t len) {
        Transition tr = { .t = op->t, .c = &op->c, .u = op->u, .res = &op->res };
        CodeRange *ranges = calloc(n, sizeof(CodeRange));
        int r = 0;

        if (!ranges)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                ranges[i] = (CodeRange) { f[i].old_addr, f[i].old_addr + f[i].old_size };
        tr.ranges = ranges;
        tr.n_ranges = n;
        for (size_t i = 0; i < op->t->n_threads && r == 0; i++) {
                Thread *th = &op->t->threads[i];
                if (th->gone || !th->stopped)
                        continue;
                if (!transition_check_thread(&tr, th, blocker, len))
                        r = -EAGAIN;
        }
        free(ranges);
        return r;
}

/* The records of the object (make_room() moved the patches after it) become the block's
 * with one header write: staged past the records in use, published, then copied into
 * place, as a compaction (control_stage, control_settle; docs/control-block.md, "Objects
 * loaded later"). The object stays listed as late until its entries are written. */
static int publish_records(UlpOp *op) {
        int at = control_stage_room(op->c.img, op->c.img->hdr.n_funcs);

        if (at < 0)
                return op_fail(op, at, "no room left in the control block of process %d for the records of "
                               "another object", op->t->pid);
        int r = control_stage(op->t, &op->c, (unsigned)at);
        if (r >= 0)
                r = control_settle(op->t, &op->c);
        return r < 0 ? op_fail(op, r, "cannot update the control block: %s", strerror(-r)) : 0;
}

/* The callbacks of the object, the patch's from now on (a revert runs them). */
static void set_callbacks(ControlPatch *p, const PatchCallbacks *cb) {
        const uint64_t v[CP_CB_MAX] = { cb->pre_patch, cb->post_patch, cb->pre_unpatch, cb->post_unpatch };

        for (int i = 0; i < CP_CB_MAX; i++)
                p->callbacks[i] = v[i] ? v[i] + p->bias : 0;
}

/* In one stop-the-world once no thread is in the way: the records (unless an earlier
 * run published them), the entries of the n records at first pointed at their winners,
 * then the patch record without the object late[k] and with its callbacks, one write. A
 * driver killed before that last write leaves the object listed as late with its
 * records in place: the next ulp_apply_late() writes the entries again and ends it. */
static int switch_entries(UlpOp *op, unsigned idx, unsigned k, unsigned first, unsigned n, bool publish,
                          const PatchCallbacks *cb) {
        ControlPatch *p = &op->c.img->patches[idx];
        ControlFunc *f = &op->c.img->funcs[first];
        char blocker[128] = "";
        int r = -EAGAIN, k2;

        for (int tries = 0; tries < PENDING_TRIES && r == -EAGAIN; tries++) {
                if (tries > 0)
                        nanosleep(&(struct timespec) { 0, 2000000 }, NULL);
                op_stop_budget(op);
                r = target_stop_all(op->t);
                if (r == -ETIMEDOUT) {
                        char why[256];
                        return op_fail(op, -EBUSY, "cannot stop every thread of process %d: %s; try again",
                                       op->t->pid, op_stop_error(op, r, why, sizeof(why)));
                }
                if (r < 0)
                        return r;
                r = check_threads(op, f, n, blocker, sizeof(blocker));
                if (r >= 0 && publish) {
                        r = publish_records(op);
                        publish = r < 0;
                }
                for (unsigned i = 0; i < n && r >= 0; i++) {
                        int top = control_top_func(&op->c, f[i].old_addr, -1);
                        if (top >= 0 && !(op->c.img->funcs[top].flags & CF_FLAG_NOP))
                                r = transition_write_entry(op->t, &f[i], control_func_entry_dest(&op->c.img->funcs[top]));
                }
                if (r >= 0) {
                        p->late[k][0] = 0;
                        if (cb)
                                set_callbacks(p, cb);
                        r = control_write_patch(op->t, &op->c, idx);
                }
                k2 = target_resume_all(op->t);
                if (r >= 0 && k2 < 0)
                        r = k2;
        }
        if (r == -EAGAIN)
                return op_fail(op, -EBUSY, "threads keep running in the functions to patch (%s); try again", blocker);
        return r;
}

/* Resolves the functions of meta in object; n of them, their Resolved in res. */
static int resolve_object(UlpOp *op, const PatchMeta *meta, const ControlPatch *p, const char *object,
                          Resolved *res, const PatchFunc **pfs, unsigned *ret_n) {
        unsigned n = 0;

        for (size_t i = 0; i < meta->n_funcs; i++) {
                const PatchFunc *pf = &meta->funcs[i];
                int r;
                if (strcmp(pf->object, object) != 0)
                        continue;
                r = op_resolve_func(op, meta, pf, &res[n]);
                if (r < 0)
                        return r;
                pfs[n++] = pf;
        }
        *ret_n = n;
        return 0;
}

/* The callbacks meta has for object, or NULL. */
static const PatchCallbacks *object_callbacks(const PatchMeta *meta, const char *object) {
        for (size_t i = 0; i < meta->n_callbacks; i++)
                if (strcmp(meta->callbacks[i].object, object) == 0)
                        return &meta->callbacks[i];
        return NULL;
}

/* klp_module_coming's pre_patch: 0 to go on; a refusal leaves the object unpatched for
 * good (the process has loaded it anyway) and is the operation's failure. */
static int late_pre_patch(UlpOp *op, unsigned idx, unsigned k, const PatchCallbacks *cb) {
        ControlPatch *p = &op->c.img->patches[idx];
        char object[sizeof(p->late[0])];
        int ret = 0, r;

        if (!cb || !cb->pre_patch)
                return 0;
        op->patch = (int)idx;
        r = op_run_callback(op, cb->pre_patch + p->bias, &ret);
        if (r < 0 || ret == 0)
                return r;
        snprintf(object, sizeof(object), "%s", p->late[k]);
        p->late[k][0] = 0;
        r = control_write_patch(op->t, &op->c, idx);
        if (r < 0)
                return op_fail(op, r, "cannot update the control block: %s", strerror(-r));
        return op_fail(op, -ECANCELED, "the pre-patch callback of %s (patch %s) refused (returned %d): its "
                       "functions stay unpatched in process %d", object, p->name, ret, op->t->pid);
}

/* Once the object's functions are patched (its callbacks recorded with them): its
 * post_patch. */
static int late_post_patch(UlpOp *op, unsigned idx) {
        ControlPatch *p = &op->c.img->patches[idx];
        int ret, r;

        if (!p->callbacks[CP_CB_POST_PATCH])
                return 0;
        op->patch = (int)idx;
        r = op_run_callback(op, p->callbacks[CP_CB_POST_PATCH], &ret);
        if (r < 0)
                op_warn(op, "post callback failed to run: %s", op->report->message);
        return 0;
}

/* Records of patch idx for object, published by an earlier run killed before it ended
 * the switch (the object is still listed as late): their count, the first in *ret_first.
 * They lie together, at the end of the patch's records as they were then. */
static unsigned published_records(const ControlImage *img, unsigned idx, const char *object, unsigned *ret_first) {
        const ControlPatch *p = &img->patches[idx];
        unsigned n = 0;

        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs; i++)
                if (strcmp(img->funcs[i].object, object) == 0 && n++ == 0)
                        *ret_first = i;
        return n;
}

/* Patches the functions of the now loaded object late[k] of patch idx; or, when an
 * earlier run published their records and was killed before it ended the switch, ends
 * it (its pre_patch ran then). */
static int patch_object(UlpOp *op, unsigned idx, unsigned k) {
        ControlPatch *p = &op->c.img->patches[idx];
        _cleanup_close_ int fd = -1;
        PatchMeta *meta = NULL;
        SymTab *patch_st = NULL;
        Resolved *res = NULL;
        const PatchFunc **pfs = NULL;
        char err[256] = "";
        unsigned n = 0, at = p->first_func + p->n_funcs, first = 0, done;
        Thread *th;
        int r;

        r = open_patch_file(op, p, &fd);
        if (r < 0)
                return op_fail(op, r, "cannot read patch %s back from process %d: %s", p->name, op->t->pid, strerror(-r));
        r = patchmeta_read(fd, p->name, &meta, err, sizeof(err));
        if (r < 0)
                return op_fail(op, r, "patch %s in process %d: %s", p->name, op->t->pid, err[0] ? err : strerror(-r));
        const PatchCallbacks *cb = object_callbacks(meta, p->late[k]);
        done = published_records(op->c.img, idx, p->late[k], &first);
        if (done) {
                r = switch_entries(op, idx, k, first, done, false, cb);
                goto post;
        }
        res = calloc(meta->n_funcs, sizeof(*res));
        pfs = calloc(meta->n_funcs, sizeof(*pfs));
        r = res && pfs ? resolve_object(op, meta, p, p->late[k], res, pfs, &n) : -ENOMEM;
        if (r >= 0)
                r = late_pre_patch(op, idx, k, cb);
        if (r >= 0)
                r = symtab_open_fd(fd, &patch_st);
        /* A compaction a killed driver left staged goes into place first: the stage
         * below is of the records as they are after make_room(). */
        if (r >= 0 && (r = control_settle(op->t, &op->c)) < 0)
                r = op_fail(op, r, "cannot update the control block: %s", strerror(-r));
        if (r >= 0)
                r = make_room(&op->c, at, n, idx);
        if (r >= 0)
                r = op_borrow(op, &th);
        if (r >= 0) {
                for (unsigned i = 0; i < n && r >= 0; i++)
                        r = op_fill_func_record(op, th, &op->c.img->funcs[at + i], idx, pfs[i], &res[i], patch_st,
                                                p->bias);
                int kr = target_resume_thread(op->t, th);
                if (r >= 0)
                        r = kr;
        }
        if (r >= 0)
                r = switch_entries(op, idx, k, at, n, true, cb);
post:
        if (r >= 0 && cb)
                r = late_post_patch(op, idx);
        symtab_free(patch_st);
        free(pfs);
        free(res);
        patchmeta_free(meta);
        return r;
}

/* Ends the switch of every object whose records a killed ulp_apply_late() published
 * (docs/control-block.md, "Objects loaded later"): until then their entries may hold
 * what was there before, which a revert or an apply over those functions would refuse
 * as changed by someone else. Before either starts, with no transition in progress. */
int op_late_settle(UlpOp *op) {
        int saved = op->patch, r = 0;
        unsigned first;

        for (unsigned i = 0; r >= 0 && op->c.img && i < op->c.img->hdr.n_patches; i++) {
                ControlPatch *p = &op->c.img->patches[i];
                if (p->state != CP_PATCHED)
                        continue;
                for (unsigned k = 0; r >= 0 && k < CONTROL_MAX_LATE; k++) {
                        char object[sizeof(p->late[0])], why[sizeof(op->report->message)];
                        if (!p->late[k][0] || !published_records(op->c.img, i, p->late[k], &first) ||
                            !modules_find_object(&op->mods, p->late[k]))
                                continue;
                        snprintf(object, sizeof(object), "%s", p->late[k]);
                        r = op_unwinder(op);
                        if (r >= 0)
                                r = patch_object(op, i, k);
                        if (r < 0) {
                                snprintf(why, sizeof(why), "%s", op->report->message);
                                r = op_fail(op, r, "the patching of %s (patch %s), left half done by a killed "
                                            "driver, cannot be ended now: %s", object, p->name, why);
                        }
                }
        }
        op->patch = saved;
        return r;
}

int ulp_apply_late(pid_t pid, UlpReport *report) {
        UlpOp *op = op_new(OP_APPLY, NULL, report);
        int r, done = 0, pending = 0;

        if (!op)
                return -ENOMEM;
        r = op_open_with_control(op, pid);
        if (r >= 0 && op->c.img->hdr.transition_patch >= 0)
                r = op_fail(op, -EBUSY, "process %d has a transition in progress: wait for it", pid);
        if (r >= 0)
                r = op_unwinder(op);
        for (unsigned i = 0; r >= 0 && i < op->c.img->hdr.n_patches; i++) {
                ControlPatch *p = &op->c.img->patches[i];
                if (p->state != CP_PATCHED)
                        continue;
                for (unsigned k = 0; r >= 0 && k < CONTROL_MAX_LATE; k++) {
                        if (!p->late[k][0])
                                continue;
                        pending++;
                        if (!modules_find_object(&op->mods, p->late[k]))
                                continue;
                        snprintf(report->patch_name, sizeof(report->patch_name), "%s", p->name);
                        r = patch_object(op, i, k);
                        done += r >= 0;
                }
        }
        if (r >= 0 && pending == 0)
                r = op_fail(op, -ENOENT, "process %d has no patch waiting for an object to be loaded", pid);
        if (r >= 0)
                op_report_figures(op);
        ulp_op_free(op);
        return r < 0 ? r : done;
}
