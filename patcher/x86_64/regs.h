/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The registers the architecture-neutral core reads and writes of a stopped thread:
 * its program counter, stack pointer and thread pointer. Everything outside x86_64/
 * goes through these, so that the names of x86-64's registers (rip, rsp, fs_base)
 * stay in this directory (docs/architecture.md, "Architecture").
 */

#include <stdint.h>
#include <sys/user.h>

static inline uint64_t regs_pc(const struct user_regs_struct *r) {
        return r->rip;
}

static inline void regs_set_pc(struct user_regs_struct *r, uint64_t pc) {
        r->rip = pc;
}

static inline uint64_t regs_sp(const struct user_regs_struct *r) {
        return r->rsp;
}

/* The thread pointer (TLS base), which names a thread in the control block's table:
 * unique among the live threads of a process, and readable by the thread itself. */
static inline uint64_t regs_tp(const struct user_regs_struct *r) {
        return r->fs_base;
}
