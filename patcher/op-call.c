/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Code of the patch run in the target for an operation: IFUNC resolvers and the patch's
 * callbacks, each on a borrowed thread, returning through a restorer in the target
 * (target_call()), a late object's calls recorded by the target itself
 * (docs/control-block.md, "The call slot").
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "common/ptrace-denied.h"
#include "elf/maps.h"
#include "patcher/nearmem.h"
#include "patcher/op.h"
#include "patcher/procmem.h"
#include "patcher/shadow.h"
#include "patcher/symcache.h"
#include "patcher/x86_64/stub.h"
#include "patcher/x86_64/sigtrap.h"

/* The restorer a callback returns through (target_call()): after the int3 bytes of the
 * first area; a control block made before it was put there gets one of its own. */
static int op_call_return_code(UlpOp *op, Thread *th, uint64_t near, uint64_t *ret) {
        uint8_t want[16], got[16];
        size_t n = target_call_return_code(want);
        uint64_t at = op->c.img->hdr.trap_addr + NEARMEM_CALL_RETURN_OFF;
        int r;

        if (op->c.img->hdr.trap_addr && target_read(op->t, at, got, n) == 0 && memcmp(got, want, n) == 0) {
                *ret = at;
                return 0;
        }
        r = area_alloc(op->t, th, &op->c, near, near, sizeof(want), &at);
        if (r >= 0)
                r = target_write(op->t, at, want, n);
        if (r < 0)
                return r;
        *ret = at;
        return 0;
}

/* A thread for a callback: never one stopped inside the shadow-variable runtime, which
 * may hold its writers' lock that the callback would wait for (docs/shadow.md). Such a
 * thread is let go on, and taken again once out, within the borrow's time. */
static int borrow_for_callback(UlpOp *op, Thread **ret) {
        uint64_t until = op_now_ns() + (uint64_t)OP_BORROW_MS * 1000000ULL;

        for (;;) {
                int r = op_borrow(op, ret);
                if (r < 0 || !shadow_has_thread(op->c.img, *ret))
                        return r;
                pid_t tid = (*ret)->tid;
                (void)target_resume_thread(op->t, *ret);
                if (op_now_ns() >= until)
                        return op_fail(op, -EBUSY, "thread %d of process %d stays inside the shadow-variable "
                                       "runtime: no callback runs on it", tid, op->t->pid);
                (void)usleep(1000);
        }
}

/* Past the deadline the thread keeps the call and finishes it by itself once resumed,
 * as a callback does: a resolver is the target's own code, nothing of the patch. */
int op_run_resolver(void *userdata, uint64_t addr, uint64_t *ret) {
        OpThread *ot = userdata;
        const long args[6] = {};
        uint64_t return_code;
        int r;

        if (!ot->th) {
                /* The load gave its thread back before the link: one again, kept to the
                 * load's end. */
                r = op_borrow_now(ot->op, &ot->th);
                if (r < 0) {
                        ot->th = NULL;
                        return r;
                }
        }
        r = op_call_return_code(ot->op, ot->th, addr, &return_code);

        if (r < 0)
                return r;
        r = target_call(ot->op->t, ot->th, addr, args, return_code,
                        ot->op->o.callback_timeout_ms ?: CALLBACK_TIMEOUT_MS, ret);
        procmaps_drop(ot->op->t);   /* the target's code ran: it may have mapped memory */
        return r;
}

int op_run_callback(UlpOp *op, uint64_t addr, int *ret) {
        return op_run_callback_marked(op, addr, NULL, NULL, ret);
}

/* The entry of a recorded call, near the callback: fresh for each call (its bytes are
 * the same everywhere; a few dozen bytes of an area per late object's callback). */
static int op_call_record_code(UlpOp *op, Thread *th, uint64_t near, uint64_t *ret) {
        uint8_t code[64];
        size_t n = target_call_record_code(code);
        int r = area_alloc(op->t, th, &op->c, near, near, n, ret);

        if (r >= 0)
                r = target_write(op->t, *ret, code, n);
        if (r < 0)
                return op_fail(op, r, "no memory for a callback's entry in process %d: %s", op->t->pid,
                               process_errno_clause(r));
        return 0;
}

int op_run_callback_marked(UlpOp *op, uint64_t addr, int (*mark)(void *data, pid_t tid, uint64_t frame),
                           void *data, int *ret) {
        long args[6] = {};
        uint64_t rax = 0, return_code = 0, func = addr;
        Thread *th;
        int r, k;

        op->callback_returned = false;
        op->callback_entered = false;
        r = op_callback_reclaim(op, true);
        if (r < 0)
                return r;
        r = borrow_for_callback(op, &th);
        if (r < 0)
                return r;
        r = op_call_return_code(op, th, addr, &return_code);
        if (r >= 0 && mark) {
                r = op_call_record_code(op, th, addr, &func);
                args[0] = (long)addr;
                args[1] = (long)(op->c.addr + CONTROL_CALL_SLOT_OFF);
        }
        if (r < 0) {
                (void)target_resume_thread(op->t, th);
                return r;
        }
        op->t->call_start = mark;
        op->t->call_start_data = data;
        r = target_call(op->t, th, func, args, return_code,
                        op->o.callback_timeout_ms ?: CALLBACK_TIMEOUT_MS, &rax);
        op->t->call_start = NULL;
        op->t->call_start_data = NULL;
        op->callback_entered = op->t->call_entered;
        procmaps_drop(op->t);   /* the callback may have mapped memory */
        /* Past its deadline the thread keeps the call: resumed, it finishes it and
         * returns through its frame (rax). */
        if (r == -ETIMEDOUT)
                (void)op_callback_overdue(op, th->tid, rax);
        k = target_resume_thread(op->t, th);
        /* -ETIME, not -ETIMEDOUT: that one says a transition ran out of time (exit 3). */
        if (r == -ETIMEDOUT)
                return op_fail(op, -ETIME, "the %s callback did not return within %u ms: it runs on in "
                               "thread %d of process %d, and the patch's code stays loaded until it returns",
                               op_callback_name(&op->c.img->patches[op->patch], addr),
                               op->o.callback_timeout_ms ?: (unsigned)CALLBACK_TIMEOUT_MS, th->tid, op->t->pid);
        if (r < 0)
                return op_fail(op, r, "the callback could not run in thread %d of process %d: %s", th->tid,
                               op->t->pid, process_errno_clause(r));
        *ret = (int)(int32_t)rax;
        op->callback_returned = true;
        return k;
}

