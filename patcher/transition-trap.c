/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Return traps: a straggler switches itself on its way out (see transition.h). The
 * kernel nudges a sleeping task with a fake signal and catches a running one at
 * cond_resched(); a userspace signal would change what the program sees (EINTR), so the
 * switch point here is the return from the outermost to-be-patched frame, as libcare
 * catches threads: that return address on the thread's stack is replaced, while the
 * thread is stopped, by the address of a trampoline in our code area
 * (x86_64/trap.h) that stores target_state into table_state[slot] and jumps to the
 * real return address.
 *
 * At that instant the thread has left every to-be-patched function (the frame was the
 * outermost one, its callees returned before it), which is exactly the condition the
 * stack check establishes; the state byte is written by the thread itself. r11 is
 * clobbered by any call, the flags are untouched, the stack is not used: the caller
 * sees what a plain return gives it. What can see the trap: code reading its own return
 * addresses (backtrace(), C++ exceptions thrown through that frame), hence opt-in.
 *
 * The trampolines are never freed (areas are not), so a trap taken back late is harmless.
 */
#include <stdio.h>

#include "common/macro.h"
#include "patcher/nearmem.h"
#include "patcher/transition.h"
#include "patcher/x86_64/trap.h"

_Static_assert(TRAP_ENCODE_SIZE <= TRAP_CODE_SIZE, "a trampoline fits its area");

/* A shadow stack (x86 CET) would refuse the changed return address. */
static bool thread_has_shadow_stack(Target *t, pid_t tid) {
        char path[64], buf[4096];
        FILE *f;
        bool shstk = false;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/status", t->pid, tid);
        f = fopen(path, "re");
        if (!f)
                return true;
        while (fgets(buf, sizeof(buf), f))
                if (strncmp(buf, "x86_Thread_features:", 20) == 0 && strstr(buf, "shstk"))
                        shstk = true;
        fclose(f);
        return shstk;
}

static void trap_note(PendingThread *p, const char *why) {
        size_t at = strnlen(p->blocker, sizeof(p->blocker));
        snprintf(p->blocker + at, sizeof(p->blocker) - at, " (no return trap: %s)", why);
}

int trap_plant(Transition *tr, PendingThread *p, Thread *th, const UnwindResult *ur) {
        int i = transition_outermost_frame(tr, ur);
        uint8_t code[TRAP_CODE_SIZE];
        uint64_t at, ret, addr;
        size_t len;
        int r;

        if (p->slot < 0 || tr->global)
                return 0;
        if (!ur->reliable || i < 0 || (size_t)i + 1 >= ur->n || ur->sps[i + 1] < 8) {
                trap_note(p, "no reliable caller frame");
                return 0;
        }
        if (thread_has_shadow_stack(tr->t, th->tid)) {
                trap_note(p, "shadow stack");
                return 0;
        }
        at = ur->sps[i + 1] - 8;
        r = target_read(tr->t, at, &ret, sizeof(ret));
        if (r < 0 || ret != ur->pcs[i + 1]) {
                trap_note(p, "return address not where the CFI says");
                return 0;
        }
        r = area_alloc(tr->t, th, tr->c, ret, ret + 1, TRAP_CODE_SIZE, &addr);
        if (r < 0)
                return r;
        len = trap_encode(code, tr->c->addr + CONTROL_OFF(table_state) + (unsigned)p->slot,
                          (uint8_t)tr->target_state, ret);
        r = target_write(tr->t, addr, code, len);
        /* The trampoline is complete before the stack points at it. */
        if (r >= 0)
                r = target_write(tr->t, at, &addr, sizeof(addr));
        if (r < 0)
                return r;
        p->trap_at = at;
        p->trap_ret = ret;
        p->trap_code = addr;
        at = strnlen(p->blocker, sizeof(p->blocker) - 20);
        snprintf(p->blocker + at, sizeof(p->blocker) - at, " (return trap set)");
        return 1;
}

int trap_fired(Transition *tr, PendingThread *p) {
        uint8_t state;
        int r = target_read(tr->t, tr->c->addr + CONTROL_OFF(table_state) + (unsigned)p->slot, &state, 1);

        if (r < 0)
                return r;
        if (state != (uint8_t)tr->target_state)
                return 0;
        tr->c->img->table_state[p->slot] = state;
        p->trap_code = p->trap_at = p->trap_ret = 0;
        return 1;
}

int trap_in_place(Transition *tr, PendingThread *p, Thread *th) {
        uint64_t v;
        int r;

        if (regs_pc(&th->regs) >= p->trap_code && regs_pc(&th->regs) < p->trap_code + TRAP_CODE_SIZE)
                return 1;
        r = target_read(tr->t, p->trap_at, &v, sizeof(v));
        if (r < 0)
                return r;
        if (v == p->trap_code)
                return 1;
        p->trap_code = p->trap_at = p->trap_ret = 0;
        return 0;
}

/* th stopped: takes p's trap back. A thread inside its trampoline is moved on to the
 * real return address (the state byte may be written already: then it switched, which
 * it was entitled to); one whose trap is still on its stack gets the address back. */
static int trap_remove(Transition *tr, PendingThread *p, Thread *th) {
        uint64_t v;
        uint8_t state;
        int r;

        if (regs_pc(&th->regs) >= p->trap_code && regs_pc(&th->regs) < p->trap_code + TRAP_CODE_SIZE) {
                regs_set_pc(&th->regs, p->trap_ret);
                r = target_set_regs(tr->t, th);
        } else {
                r = target_read(tr->t, p->trap_at, &v, sizeof(v));
                if (r >= 0 && v == p->trap_code)
                        r = target_write(tr->t, p->trap_at, &p->trap_ret, sizeof(p->trap_ret));
        }
        if (r >= 0)
                r = target_read(tr->t, tr->c->addr + CONTROL_OFF(table_state) + (unsigned)p->slot, &state, 1);
        if (r >= 0)
                tr->c->img->table_state[p->slot] = state;
        p->trap_code = p->trap_at = p->trap_ret = 0;
        return r;
}

int transition_disarm_traps(Transition *tr) {
        int ret = 0;

        for (size_t i = 0; i < tr->n_pending; i++) {
                PendingThread *p = &tr->pending[i];
                Thread *th;
                int r, k;
                if (!p->trap_code)
                        continue;
                th = target_find_thread(tr->t, p->tid);
                r = th ? target_stop_thread(tr->t, th) : -ESRCH;
                if (r == -ESRCH) {
                        p->trap_code = 0;
                        continue;
                }
                if (r >= 0)
                        r = trap_remove(tr, p, th);
                k = target_resume_thread(tr->t, th);
                if (ret == 0)
                        ret = r < 0 ? r : k < 0 && k != -ESRCH ? k : 0;
        }
        return ret;
}
