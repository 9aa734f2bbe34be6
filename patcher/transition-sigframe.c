/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Threads inside a signal handler whose interrupted PC is strictly inside displaced
 * bytes (docs/reach.md, "Interrupted code in displaced bytes"). The PC the handler's
 * return resumes at is in the signal frame on the thread's stack, not in its registers:
 * when the entry jump is written over those bytes, rt_sigreturn would resume the thread
 * in the middle of the jump. The stack check sees the interrupted frame (after the
 * frame of the signal trampoline); its saved PC is moved to the same instruction of the
 * relocated copy, as a stopped thread's own PC is.
 */
#include <string.h>

#include "common/macro.h"
#include "patcher/transition-internal.h"
#include "unwind/unwind.h"

/* glibc's __restore_rt, the return address of every handler installed by sigaction():
 * mov $15, %rax; syscall (rt_sigreturn). */
static const uint8_t restore_rt_code[] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05 };

/* Once the handler has returned into the trampoline, the stack pointer is at the
 * frame's ucontext; its saved rip is uc_mcontext.gregs[REG_RIP] (the kernel's
 * struct rt_sigframe, uapi ucontext and sigcontext). */
#define UC_RIP_OFF (40 + 16 * 8)

/* The address of the saved PC that frame i of ur resumes at, when frame i - 1 is the
 * signal trampoline and the word there is that PC; 0 otherwise (an ordinary return
 * address). */
static uint64_t saved_pc_at(Target *t, const UnwindResult *ur, size_t i) {
        uint8_t code[sizeof(restore_rt_code)];
        uint64_t at, word;

        if (i == 0 || !ur->sps[i - 1] || ur->sps[i - 1] > UINT64_MAX - UC_RIP_OFF)
                return 0;
        at = ur->sps[i - 1] + UC_RIP_OFF;
        if (target_read(t, ur->pcs[i - 1], code, sizeof(code)) < 0 ||
            memcmp(code, restore_rt_code, sizeof(code)) != 0 ||
            target_read(t, at, &word, sizeof(word)) < 0 || word != ur->pcs[i])
                return 0;
        return at;
}

int transition__move_interrupted(Transition *tr, Thread *th, bool table_changes, bool moving) {
        _cleanup_free_ UnwindResult *ur = malloc(sizeof(*ur));
        bool found = false;
        int r;

        if (!ur)
                return -ENOMEM;
        /* A stack that cannot be unwound shows no signal frame: as before, its
         * registers alone are looked at. */
        if (!tr->u || unwinder_unwind(tr->u, th->tid, &th->regs, ur) < 0)
                return 0;
        for (size_t i = 1; i < ur->n; i++) {
                uint64_t to, at;
                r = transition__pc_out(tr, ur->pcs[i], table_changes, &to);
                if (r == 0 || !(at = saved_pc_at(tr->t, ur, i)))
                        continue;
                if (r == -EILSEQ) {
                        tr->stuck_tid = th->tid;
                        tr->stuck_pc = ur->pcs[i];
                }
                if (r < 0)
                        return r;
                found = true;
                if (!moving)
                        continue;
                r = target_write(tr->t, at, &to, sizeof(to));
                if (r < 0)
                        return r;
        }
        return found;
}
