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
 * An object patched so that the process unloads later (dlclose: klp_module_going, after
 * the fact) gets its unpatch callbacks, loses its function records and is waited for
 * again (unload_object, docs/late-callbacks.md).
 *
 * The patch file comes back from the target itself: the loader mapped it from a memfd
 * named ulp-patch:NAME, and /proc/PID/map_files gives that file for any of its mappings.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>

#include "common/errno-clause.h"
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

/* The patch file of p and its metadata, read back from the target. */
static int read_patch_back(UlpOp *op, const ControlPatch *p, int *ret_fd, PatchMeta **ret_meta) {
        char err[256] = "";
        int r = open_patch_file(op, p, ret_fd);

        if (r < 0)
                return op_fail(op, r, "cannot read patch %s back from process %d: %s", p->name, op->t->pid, process_errno_clause(r));
        r = patchmeta_read(*ret_fd, p->name, ret_meta, err, sizeof(err));
        if (r < 0)
                return op_fail(op, r, "patch %s in process %d: %s", p->name, op->t->pid, err[0] ? err : process_errno_clause(r));
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

/* The local copy's records and patches (an object's records inserted or removed, the
 * patches after them moved) become the block's with one header write: staged past the
 * records the target uses now (used), published, then copied into place, as a
 * compaction (control_stage, control_settle; docs/control-block.md, "Objects loaded
 * later"). */
static int publish_records(UlpOp *op, unsigned used) {
        char err[256];
        int at;

        /* What the next reader would refuse is never written (as an apply's records,
         * op-apply.c): a record with an absurd range (a size taken from a symbol of the
         * patch no check bounded) would leave a block no later operation reads. */
        if (control_validate(op->c.img, op->c.addr, err, sizeof(err)) < 0)
                return op_fail(op, -EBADMSG, "the records of process %d would be malformed (%s): not written",
                               op->t->pid, err);
        at = control_stage_room(op->c.img, used);

        if (at < 0)
                return op_fail(op, at, "no room left in the control block of process %d for the records of "
                               "another object", op->t->pid);
        int r = control_stage(op->t, &op->c, (unsigned)at);
        if (r >= 0)
                r = control_settle(op->t, &op->c);
        return r < 0 ? op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r)) : 0;
}

/* The callbacks of the object, the patch's from now on (a revert runs them). */
static void set_callbacks(ControlPatch *p, const PatchCallbacks *cb) {
        const uint64_t v[CP_CB_MAX] = { cb->pre_patch, cb->post_patch, cb->pre_unpatch, cb->post_unpatch };

        for (int i = 0; i < CP_CB_MAX; i++)
                p->callbacks[i] = v[i] ? v[i] + p->bias : 0;
}

/* In one stop-the-world once no thread is in the way: the records (unless an earlier
 * run published them; the object still waiting), the entries of the n records at first
 * pointed at their winners, then the patch record with the object late[k] LOADED and
 * its callbacks, one write. A driver killed before that last write leaves the object
 * waiting (or PREPATCHED) with its records in place: the next ulp_apply_late(), revert
 * or apply writes the entries again and ends it (published_records). */
static int switch_entries(UlpOp *op, unsigned idx, unsigned k, unsigned first, unsigned n, bool publish,
                          const PatchCallbacks *cb) {
        ControlPatch *p = &op->c.img->patches[idx];
        ControlFunc *f = &op->c.img->funcs[first];
        char blocker[128] = "", why[256] = "";
        int r = -EAGAIN, k2;

        for (int tries = 0; tries < PENDING_TRIES && r == -EAGAIN; tries++) {
                /* Within the operation's time only. In an operation's step (a revert or
                 * apply that ends a switch a killed driver left): one try, the next step
                 * tries again, and ulpd serves other clients in between. */
                if (tries > 0 && (op->borrow_retry || op_now_ns() >= op->deadline_ns))
                        break;
                if (tries > 0)
                        nanosleep(&(struct timespec) { 0, 2000000 }, NULL);
                op_stop_budget(op);
                r = target_stop_all(op->t);
                /* In a step, a slow stop (a loaded machine) is one more try, at the next
                 * step, while there is time; ulpd's look at loaded objects tries again at
                 * its next look instead. */
                if (r == -ETIMEDOUT && op->borrow_retry) {
                        op_stop_error(op, r, why, sizeof(why));
                        r = -EAGAIN;
                        continue;
                }
                if (r == -ETIMEDOUT)
                        return op_fail(op, -EBUSY, "cannot stop every thread of process %d: %s; try again",
                                       op->t->pid, op_stop_error(op, r, why, sizeof(why)));
                why[0] = 0;
                if (r < 0)
                        return r;
                r = check_threads(op, f, n, blocker, sizeof(blocker));
                if (r >= 0 && publish) {
                        r = publish_records(op, op->c.img->hdr.n_funcs);
                        publish = r < 0;
                }
                for (unsigned i = 0; i < n && r >= 0; i++) {
                        int top = control_top_func(&op->c, f[i].old_addr, -1);
                        if (top >= 0 && !(op->c.img->funcs[top].flags & CF_FLAG_NOP))
                                r = transition_write_entry(op->t, &f[i], control_func_entry_dest(&op->c.img->funcs[top]));
                }
                if (r >= 0) {
                        /* Still named, now watched for its unloading (unload_object);
                         * its post_patch, if any, still to run (late_post_patch). */
                        p->late[k][CONTROL_LATE_STATE] = cb && cb->post_patch ? CONTROL_LATE_POSTPENDING
                                                                              : CONTROL_LATE_LOADED;
                        if (cb)
                                set_callbacks(p, cb);
                        r = control_write_patch(op->t, &op->c, idx);
                }
                k2 = target_resume_all(op->t);
                if (r >= 0 && k2 < 0)
                        r = k2;
        }
        if (r == -EAGAIN && op->borrow_retry && op_now_ns() < op->deadline_ns)
                return r;
        if (r == -EAGAIN && why[0])
                return op_fail(op, -EBUSY, "cannot stop every thread of process %d: %s; try again", op->t->pid, why);
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

/*
 * The record of a late object's call, written as the call starts (late_mark: the last
 * writes before the thread's registers change, once its frame is written): the call
 * slot armed, the header naming the thread and its frame (callback_tid, as for a
 * callback past its deadline: no other callback runs, no code is unmapped while it is
 * inside), then the object's state PRECALL or POSTCALL. The thread enters the callback
 * through target_call_record_code(), which records in the slot that it started and what
 * it returned. A driver killed anywhere leaves either the state before the mark (the
 * call never started) or the mark, which the next driver settles from the slot once the
 * thread is out (late_settle_call): never started, it runs the call; returned, it goes
 * by the return value; still inside, it waits (docs/fault-tolerance.md, "A late
 * object's callbacks and a driver's death").
 */
typedef struct LateMark {
        UlpOp *op;
        unsigned idx, k;
        uint8_t state;
        bool recorded;           /* the header names the call: this one's to clear */
} LateMark;

static int late_mark(void *data, pid_t tid, uint64_t frame) {
        LateMark *m = data;
        UlpOp *op = m->op;
        ControlPatch *p = &op->c.img->patches[m->idx];
        const uint64_t armed = CONTROL_CALL_ARMED;
        int r;

        r = target_write(op->t, op->c.addr + CONTROL_CALL_SLOT_OFF, &armed, sizeof(armed));
        if (r >= 0) {
                op->c.img->hdr.callback_tid = tid;
                op->c.img->hdr.callback_frame = frame;
                m->recorded = true;
                r = control_write_header(op->t, &op->c);
        }
        if (r >= 0) {
                p->late[m->k][CONTROL_LATE_STATE] = (char)m->state;
                r = control_write_patch(op->t, &op->c, m->idx);
        }
        return r < 0 ? r : target_write_flush(op->t);
}

/* The state of late object k of p. */
static uint8_t late_state(const ControlPatch *p, unsigned k) {
        return (uint8_t)p->late[k][CONTROL_LATE_STATE];
}

/* Sets the state of late object k of patch idx, one write of the patch record. */
static int late_set(UlpOp *op, unsigned idx, unsigned k, uint8_t state) {
        op->c.img->patches[idx].late[k][CONTROL_LATE_STATE] = (char)state;
        int r = control_write_patch(op->t, &op->c, idx);
        return r < 0 ? op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r)) : 0;
}

/* The pre_patch of late object k of patch idx refused: its entry goes, the object is no
 * longer waited for. */
static int late_drop(UlpOp *op, unsigned idx, unsigned k) {
        ControlPatch *p = &op->c.img->patches[idx];

        memset(p->late[k], 0, sizeof(p->late[k]));
        int r = control_write_patch(op->t, &op->c, idx);
        return r < 0 ? op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r)) : 0;
}

/* The operator's line for that refusal (object: the entry's name before it went). */
static int late_refusal(UlpOp *op, unsigned idx, const char *object, bool returned, int ret) {
        const ControlPatch *p = &op->c.img->patches[idx];

        if (!returned)
                return op_fail(op, -ECANCELED, "the pre-patch callback of %s (patch %s) left its thread without "
                               "returning: its functions stay unpatched in process %d", object, p->name,
                               op->t->pid);
        return op_fail(op, -ECANCELED, "the pre-patch callback of %s (patch %s) refused (returned %d): its "
                       "functions stay unpatched in process %d", object, p->name, ret, op->t->pid);
}

/* The slot's word, read from the target: stable once the recorded thread is out. */
static int read_call_slot(UlpOp *op, uint64_t *ret) {
        int r = target_read(op->t, op->c.addr + CONTROL_CALL_SLOT_OFF, ret, sizeof(*ret));
        return r < 0 ? op_fail(op, r, "cannot read the control block of process %d: %s", op->t->pid,
                               process_errno_clause(r)) : 0;
}

/* Whether the slot's word says the call returned; its value then in the low 32 bits. */
static bool slot_returned(uint64_t slot) {
        return (slot & ~0xffffffffULL) == CONTROL_CALL_RETURNED;
}

/*
 * The outcome of the marked call of late object k of patch idx, its thread out, from the
 * slot's word: armed and never started, pre_patch is to run (WAITING) and post_patch too
 * (POSTPENDING); a post_patch that started counts as run (LOADED); a pre_patch that
 * returned 0 ran (PREPATCHED), one that returned anything else, or left its thread
 * without returning, refused: its entry goes (late_drop), *ret_refused set, the
 * caller says it (late_refusal).
 */
static int late_settle_call(UlpOp *op, unsigned idx, unsigned k, uint64_t slot, bool *ret_refused) {
        *ret_refused = false;
        if (late_state(&op->c.img->patches[idx], k) == CONTROL_LATE_POSTCALL)
                return late_set(op, idx, k, slot == CONTROL_CALL_ARMED ? CONTROL_LATE_POSTPENDING
                                                                        : CONTROL_LATE_LOADED);
        if (slot == CONTROL_CALL_ARMED)
                return late_set(op, idx, k, CONTROL_LATE_WAITING);
        if (slot_returned(slot) && (uint32_t)slot == 0)
                return late_set(op, idx, k, CONTROL_LATE_PREPATCHED);
        *ret_refused = true;
        return late_drop(op, idx, k);
}

int op_late_resolve(UlpOp *op) {
        int saved = op->patch, r = 0;
        uint64_t slot = 0;
        bool read = false;

        for (unsigned i = 0; r >= 0 && i < op->c.img->hdr.n_patches; i++) {
                ControlPatch *p = &op->c.img->patches[i];
                for (unsigned k = 0; r >= 0 && k < CONTROL_MAX_LATE; k++) {
                        char object[sizeof(p->late[0])], why[sizeof(op->report->message)],
                                prev[sizeof(op->report->message)];
                        bool refused;
                        uint8_t st = late_state(p, k);
                        if (!p->late[k][0] || (st != CONTROL_LATE_PRECALL && st != CONTROL_LATE_POSTCALL))
                                continue;
                        if (!read && (r = read_call_slot(op, &slot)) < 0)
                                break;
                        read = true;
                        snprintf(object, sizeof(object), "%s", p->late[k]);
                        r = late_settle_call(op, i, k, slot, &refused);
                        if (r < 0 || !refused)
                                continue;
                        /* Settled by another operation: the refusal is its warning. */
                        snprintf(prev, sizeof(prev), "%s", op->report->message);
                        (void)late_refusal(op, i, object, slot_returned(slot), (int)(int32_t)slot);
                        snprintf(why, sizeof(why), "%s", op->report->message);
                        snprintf(op->report->message, sizeof(op->report->message), "%s", prev);
                        op_warn(op, "%s", why);
                }
        }
        op->patch = saved;
        return r;
}

/* A pre_patch marked by a driver killed since (PRECALL): still inside, -EBUSY (the switch
 * waits for its return, at a later try: ulpd's look tries again a second later); out,
 * its outcome from the slot, the record cleared. 0 and *ret_state the object's state
 * then, or the refusal. */
static int late_pre_settle(UlpOp *op, unsigned idx, unsigned k, uint8_t *ret_state) {
        ControlPatch *p = &op->c.img->patches[idx];
        char object[sizeof(p->late[0])];
        uint64_t slot;
        bool refused;
        int r = op_callback_out(op);

        snprintf(object, sizeof(object), "%s", p->late[k]);
        if (r < 0)
                return op_fail(op, r, "cannot look at thread %d of process %d: %s", op->c.img->hdr.callback_tid,
                               op->t->pid, process_errno_clause(r));
        if (r == 0)
                return op_fail(op, -EBUSY, "the pre-patch callback of %s (patch %s) still runs in thread %d of "
                               "process %d: its functions are patched once it has returned", object, p->name,
                               op->c.img->hdr.callback_tid, op->t->pid);
        r = read_call_slot(op, &slot);
        if (r >= 0)
                r = late_settle_call(op, idx, k, slot, &refused);
        /* The object's outcome is in its state now (its entry gone if it refused): the
         * record may go. */
        if (r >= 0)
                r = op_callback_reclaim(op, true);
        if (r >= 0 && refused)
                return late_refusal(op, idx, object, slot_returned(slot), (int)(int32_t)slot);
        *ret_state = late_state(p, k);
        return r;
}

/* klp_module_coming's pre_patch: 0 to go on; a refusal leaves the object unpatched for
 * good (the process has loaded it anyway) and is the operation's failure. It runs at most
 * once per coming, and is never taken for one that returned 0 when it did not: the block
 * records it as it starts (late_mark), the target records how it ended (the call slot),
 * so that neither a switch tried again later (-EBUSY, ulpd's next look) nor a driver
 * that takes over after this one was killed before, during or after the call runs it
 * again or misreads it (docs/late-callbacks.md). */
static int late_pre_patch(UlpOp *op, unsigned idx, unsigned k, const PatchCallbacks *cb) {
        ControlPatch *p = &op->c.img->patches[idx];
        char object[sizeof(p->late[0])];
        uint8_t st = late_state(p, k);
        int ret = 0, r;

        if (!cb || !cb->pre_patch)
                return 0;
        if (st == CONTROL_LATE_PRECALL && (r = late_pre_settle(op, idx, k, &st)) < 0)
                return r;
        /* It returned 0; one past its deadline since returned: the switch goes on. */
        if (st == CONTROL_LATE_PREPATCHED)
                return op_callback_reclaim(op, true);
        op->patch = (int)idx;
        snprintf(object, sizeof(object), "%s", p->late[k]);
        LateMark mark = { op, idx, k, CONTROL_LATE_PRECALL, false };
        r = op_run_callback_marked(op, cb->pre_patch + p->bias, late_mark, &mark, &ret);
        /* One past its deadline runs on: the switch waits for its return, at a later
         * try (-EBUSY, which ulpd's look tries again a second later; its message stays
         * the deadline's); the record and the mark stay for it. */
        if (r == -ETIME && !op->callback_returned)
                return -EBUSY;
        /* It did not run (no thread, or it crashed and its thread was put back): the
         * next try runs it. A callback that returned counts even when its thread could
         * not be resumed after. The state first, then the record. */
        if (r < 0 && !op->callback_returned) {
                if (mark.recorded) {
                        (void)late_set(op, idx, k, CONTROL_LATE_WAITING);
                        (void)op_callback_done(op);
                }
                return r;
        }
        if (ret != 0) {
                int q = late_drop(op, idx, k);
                if (q >= 0)
                        q = op_callback_done(op);
                return q < 0 ? q : late_refusal(op, idx, object, true, ret);
        }
        int q = late_set(op, idx, k, CONTROL_LATE_PREPATCHED);
        if (q >= 0)
                q = op_callback_done(op);
        if (q < 0)
                return op_fail(op, q, "cannot update the control block: %s", process_errno_clause(q));
        return r < 0 ? r : 0;
}

/* Whether the switch of the late object k of p ended (its post_patch run or not). */
static bool late_switched(const ControlPatch *p, unsigned k) {
        uint8_t st = late_state(p, k);

        return st == CONTROL_LATE_LOADED || st == CONTROL_LATE_POSTPENDING || st == CONTROL_LATE_POSTCALL;
}

/* Once the object's functions are patched (its callbacks recorded with them, the object
 * POSTPENDING when it has a post_patch): its post_patch, once, marked as pre_patch's
 * (POSTCALL). One marked by a driver killed since is settled first, once its thread is
 * out: never started, it runs now; started, it counts as run (LOADED). */
static int late_post_patch(UlpOp *op, unsigned idx, unsigned k) {
        ControlPatch *p = &op->c.img->patches[idx];
        int ret, r;

        /* Still inside: nothing to do now (the record keeps other callbacks out). */
        if (late_state(p, k) == CONTROL_LATE_POSTCALL && (r = op_callback_reclaim(op, false)) < 0)
                return r;
        if (late_state(p, k) != CONTROL_LATE_POSTPENDING)
                return 0;
        op->patch = (int)idx;
        if (!p->callbacks[CP_CB_POST_PATCH])
                return late_set(op, idx, k, CONTROL_LATE_LOADED);
        LateMark mark = { op, idx, k, CONTROL_LATE_POSTCALL, false };
        r = op_run_callback_marked(op, p->callbacks[CP_CB_POST_PATCH], late_mark, &mark, &ret);
        /* It did not start (no thread, or its thread could not be entered): the next
         * run runs it. One that started counts as run, as an apply's post_patch does:
         * past its deadline it runs on (the mark and the record stay for it); one that
         * crashed (its thread put back where it was) would crash again at each of ulpd's
         * looks, once a second. */
        if (r < 0 && !op->callback_entered) {
                if (mark.recorded) {
                        (void)late_set(op, idx, k, CONTROL_LATE_POSTPENDING);
                        (void)op_callback_done(op);
                }
                /* No thread within an operation's step: the next step runs it, before
                 * the revert's pre_unpatch. */
                if (r == -EAGAIN)
                        return r;
        } else if (r != -ETIME) {
                int q = late_set(op, idx, k, CONTROL_LATE_LOADED);
                if (q >= 0)
                        q = op_callback_done(op);
                if (q < 0)
                        return q;
        }
        if (r < 0)
                op_warn(op, "post callback failed to run: %s", op->report->message);
        return 0;
}

/* Records of patch idx for its late object k, published by an earlier run killed before
 * it ended the switch: their count, the first in *ret_first. An object whose switch
 * ended (LOADED) has its records too, and none is a leftover: 0. They lie together, at
 * the end of the patch's records as they were then. */
static unsigned published_records(const ControlImage *img, unsigned idx, unsigned k, unsigned *ret_first) {
        const ControlPatch *p = &img->patches[idx];
        const char *object = p->late[k];
        unsigned n = 0;

        if (!object[0] || late_switched(p, k))
                return 0;
        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs; i++)
                if (strcmp(img->funcs[i].object, object) == 0 && n++ == 0)
                        *ret_first = i;
        return n;
}

static int unload_object(UlpOp *op, unsigned idx, unsigned k);

/* Whether the n records at first lie in the object as it is mapped now: records a killed
 * driver published for an earlier mapping of it (unloaded, then loaded elsewhere) do
 * not, and their entries must not be written. */
static bool records_in_mapping(UlpOp *op, unsigned first, unsigned n, const char *object) {
        const Module *m = modules_find_object(&op->mods, object);

        for (unsigned i = first; m && i < first + n; i++) {
                const ControlFunc *f = &op->c.img->funcs[i];
                if (f->old_addr < m->start || f->old_addr >= m->end || f->old_size > m->end - f->old_addr)
                        return false;
        }
        return m != NULL;
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
        unsigned n = 0, at = p->first_func + p->n_funcs, first = 0, done;
        Thread *th;
        int r;

        r = read_patch_back(op, p, &fd, &meta);
        if (r < 0)
                return r;
        const PatchCallbacks *cb = object_callbacks(meta, p->late[k]);
        /* Switched by a driver killed before its post_patch: only that is left. */
        if (late_state(p, k) == CONTROL_LATE_POSTPENDING || late_state(p, k) == CONTROL_LATE_POSTCALL) {
                r = 0;
                goto post;
        }
        done = published_records(op->c.img, idx, k, &first);
        if (done && records_in_mapping(op, first, done, p->late[k])) {
                r = switch_entries(op, idx, k, first, done, false, cb);
                goto post;
        }
        /* Of an earlier mapping: they go, and this load is patched from the start. */
        if (done && (r = unload_object(op, idx, k)) < 0)
                goto post;
        at = p->first_func + p->n_funcs;
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
                r = op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r));
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
        if (r >= 0)
                r = late_post_patch(op, idx, k);
        symtab_free(patch_st);
        free(pfs);
        free(res);
        patchmeta_free(meta);
        return r;
}

/* Whether the patch file of p has callbacks for object, read back from the target. */
static int object_has_callbacks(UlpOp *op, const ControlPatch *p, const char *object, bool *ret) {
        _cleanup_close_ int fd = -1;
        PatchMeta *meta = NULL;
        int r;

        r = read_patch_back(op, p, &fd, &meta);
        if (r < 0)
                return r;
        *ret = object_callbacks(meta, object) != NULL;
        patchmeta_free(meta);
        return 0;
}

/* Runs an unpatch callback (addr, of patch idx) of the unloaded object, if any; a refusal
 * is only noted: the object is gone whatever it says. */
static void unload_callback(UlpOp *op, unsigned idx, uint64_t addr, const char *which, const char *object) {
        int ret = 0, r;

        if (!addr)
                return;
        op->patch = (int)idx;
        r = op_run_callback(op, addr, &ret);
        if (r < 0)
                op_warn(op, "%s callback failed to run: %s", which, op->report->message);
        else if (ret != 0 && strcmp(which, "pre-unpatch") == 0)
                op_warn(op, "the pre-unpatch callback of %s returned %d; the library is unloaded anyway",
                        object, ret);
}

/* The records of the late object k of patch idx go from the local copy; the patches
 * whose records follow move with them (an empty one never points inside this patch's
 * range, but is kept from wrapping if it did). */
static void drop_records(ControlImage *img, unsigned idx, unsigned k) {
        ControlPatch *p = &img->patches[idx];
        unsigned first = p->first_func, gone = 0;

        for (unsigned i = first; i < p->first_func + p->n_funcs - gone;) {
                if (strcmp(img->funcs[i].object, p->late[k]) != 0) {
                        i++;
                        continue;
                }
                memmove(&img->funcs[i], &img->funcs[i + 1], (img->hdr.n_funcs - i - 1) * sizeof(ControlFunc));
                img->hdr.n_funcs--;
                gone++;
        }
        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                ControlPatch *q = &img->patches[i];
                if (i != idx && q->first_func > first)
                        q->first_func = q->first_func >= first + gone ? q->first_func - gone : first;
        }
        p->n_funcs -= gone;
}

/*
 * klp_module_going, after the fact: the process unloaded the late object k of patch idx,
 * which was patched when it came (LOADED). The kernel runs the going callbacks while the
 * module is still there; dlclose() has already unmapped the library, so pre_unpatch and
 * post_unpatch run (they are in the patch, which stays) but must not touch the library.
 * Between them, its function records go (their addresses may be reused by whatever is
 * mapped next) and the object is waited for again, so that a new load gets pre_patch and
 * is patched again: the records, the patches indexing them and the object's state are
 * staged and published with one header write (publish_records), so a driver killed
 * anywhere leaves the block before or after the whole change. Also for an object whose
 * switch a killed driver left half done (records published, not LOADED) and that went
 * since: its records go, and no callback runs (none was recorded for it yet).
 */
static int unload_object(UlpOp *op, unsigned idx, unsigned k) {
        ControlImage *img = op->c.img;
        ControlPatch *p = &img->patches[idx];
        uint64_t post = 0;
        bool own = false;
        int r;

        /* The patch's callbacks are this object's only if its switch ended and the patch
         * has callbacks for it (switch_entries put them there); else they are those of a
         * loaded object, or none. */
        if (late_switched(p, k)) {
                r = object_has_callbacks(op, p, p->late[k], &own);
                if (r < 0)
                        return r;
        }
        if (own) {
                post = p->callbacks[CP_CB_POST_UNPATCH];
                unload_callback(op, idx, p->callbacks[CP_CB_PRE_UNPATCH], "pre-unpatch", p->late[k]);
        }
        /* A stage a killed driver left goes into place first: the stage below is of the
         * block as it is then. */
        r = control_settle(op->t, &op->c);
        if (r < 0)
                return op_fail(op, r, "cannot update the control block: %s", process_errno_clause(r));
        unsigned used = img->hdr.n_funcs;
        drop_records(img, idx, k);
        if (own)
                memset(p->callbacks, 0, sizeof(p->callbacks));
        p->late[k][CONTROL_LATE_STATE] = CONTROL_LATE_WAITING;
        /* staged past the records in use before the removal, which readers still read */
        r = publish_records(op, used);
        if (r < 0)
                return r;
        unload_callback(op, idx, post, "post-unpatch", p->late[k]);
        return 0;
}

/* Ends the switch of every object whose records a killed ulp_apply_late() published
 * (docs/control-block.md, "Objects loaded later"): until then their entries may hold
 * what was there before, which a revert or an apply over those functions would refuse
 * as changed by someone else; an object unloaded since loses those records instead
 * (unload_object). Objects whose switch ended (LOADED) are left alone. Before either
 * starts, with no transition in progress. */
int op_late_settle(UlpOp *op) {
        int saved = op->patch, r = 0;
        unsigned first;

        for (unsigned i = 0; r >= 0 && op->c.img && i < op->c.img->hdr.n_patches; i++) {
                ControlPatch *p = &op->c.img->patches[i];
                if (p->state != CP_PATCHED)
                        continue;
                for (unsigned k = 0; r >= 0 && k < CONTROL_MAX_LATE; k++) {
                        char object[sizeof(p->late[0])], why[sizeof(op->report->message)];
                        bool post = late_state(p, k) == CONTROL_LATE_POSTPENDING ||
                                    late_state(p, k) == CONTROL_LATE_POSTCALL;
                        /* A post_patch left unrun by a killed driver runs first; for an
                         * object unloaded since it does not (the library is gone), and
                         * the next look at the process runs its unpatch callbacks. */
                        if (!(post && modules_find_object(&op->mods, p->late[k])) &&
                            !published_records(op->c.img, i, k, &first))
                                continue;
                        snprintf(object, sizeof(object), "%s", p->late[k]);
                        if (!modules_find_object(&op->mods, p->late[k]))
                                r = unload_object(op, i, k);
                        else if ((r = op_unwinder(op)) >= 0)
                                r = patch_object(op, i, k);
                        if (r < 0 && r != -EAGAIN) {
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
                        bool loaded, patched, leftover, post;
                        unsigned first;
                        if (!p->late[k][0])
                                continue;
                        pending++;
                        loaded = modules_find_object(&op->mods, p->late[k]);
                        patched = late_switched(p, k);
                        /* switched, its post_patch left unrun by a killed driver */
                        post = loaded && (late_state(p, k) == CONTROL_LATE_POSTPENDING ||
                                          late_state(p, k) == CONTROL_LATE_POSTCALL);
                        /* records a killed driver published for an object gone since */
                        leftover = !loaded && published_records(op->c.img, i, k, &first);
                        if (loaded == patched && !leftover && !post)
                                continue;
                        snprintf(report->patch_name, sizeof(report->patch_name), "%s", p->name);
                        r = loaded ? patch_object(op, i, k) : unload_object(op, i, k);
                        /* a post_patch a killed driver left running: nothing done yet */
                        done += r >= 0 && late_state(p, k) != CONTROL_LATE_POSTCALL;
                }
        }
        if (r >= 0 && pending == 0)
                r = op_fail(op, -ENOENT, "process %d has no patch waiting for an object to be loaded", pid);
        if (r >= 0)
                op_report_figures(op);
        ulp_op_free(op);
        return r < 0 ? r : done;
}
