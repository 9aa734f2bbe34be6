/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * What the x86-64 psABI says of ELF files and DWARF unwind tables, for the parts of
 * the core that read them: the ELF identity of this architecture's objects, and the
 * DWARF numbering of a ptrace-stopped thread's registers (the unwinder's initial
 * frame). Header-only and including nothing of the core, like regs.h, so that elf/ and
 * unwind/ use it without depending on the patcher (docs/architecture.md,
 * "Architecture").
 */

#include <elf.h>
#include <stdint.h>
#include <sys/user.h>

/* The ELF identity of the objects ulp patches and of the processes it patches. */
#define ARCH_ELF_CLASS ELFCLASS64
#define ARCH_ELF_DATA ELFDATA2LSB
#define ARCH_ELF_MACHINE EM_X86_64

/* DWARF register numbers: the stack pointer, and the return address column (which
 * holds the PC of the initial frame). */
#define ARCH_DWARF_SP 7
#define ARCH_DWARF_RA 16
#define ARCH_DWARF_NREGS 17

/* The registers of a stopped thread in DWARF numbering (rax rdx rcx rbx rsi rdi rbp
 * rsp r8..r15, then the return address column), for libdwfl's initial frame. */
static inline void regs_to_dwarf(const struct user_regs_struct *r, uint64_t dw[static ARCH_DWARF_NREGS]) {
        const uint64_t v[ARCH_DWARF_NREGS] = {
                r->rax, r->rdx, r->rcx, r->rbx, r->rsi, r->rdi, r->rbp, r->rsp,
                r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
                r->rip,
        };

        for (unsigned i = 0; i < ARCH_DWARF_NREGS; i++)
                dw[i] = v[i];
}
