/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * What the relocator and the branch scan need to know about one decoded x86-64
 * instruction: whether and how it transfers control, where to, and whether it
 * addresses memory relative to RIP. Classification reads the raw opcode bytes
 * (after legacy prefixes and REX) so that the cases the relocator rewrites are
 * recognised exactly, never by mnemonic.
 */

#include <stdbool.h>
#include <stdint.h>

#include <capstone/capstone.h>

typedef enum InsnKind {
        INSN_PLAIN,          /* no control transfer (syscall, int3 count as plain) */
        INSN_JMP_REL,        /* jmp rel8 / rel32 */
        INSN_JCC_REL,        /* jcc rel8 / rel32, condition in cc */
        INSN_CALL_REL,       /* call rel32 */
        INSN_LOOP_REL,       /* loop, loope, loopne, jrcxz, jecxz: rel8 only */
        INSN_JMP_INDIRECT,   /* jmp r/m64 */
        INSN_CALL_INDIRECT,  /* call r/m64 */
        INSN_RET,            /* ret, ret imm16 */
        INSN_UNSUPPORTED,    /* far transfers, xbegin, 16-bit operand branches, ... */
} InsnKind;

typedef struct InsnInfo {
        InsnKind kind;
        uint8_t cc;            /* INSN_JCC_REL: condition code, 0..15 */
        uint8_t opcode_off;    /* offset of the opcode byte after prefixes and REX */
        bool notrack;          /* indirect jmp/call with the notrack (3e) prefix */
        bool has_target;       /* a direct relative target, in target (also xbegin) */
        uint64_t target;
        bool rip_relative;     /* a memory operand [rip + disp32]: */
        uint8_t disp_offset;   /*   where its disp32 is in the instruction */
        uint64_t rip_target;   /*   and the address it designates */
        bool rip_no_index;     /*   and it has no index register */
} InsnInfo;

/* Opens a 64-bit capstone handle with details on, loading capstone first (once per
 * process). Returns 0, -ELIBACC/-ELIBBAD when capstone could not be loaded
 * (insn_load_error() says why), or -ENOMEM/-EIO. */
int insn_open(csh *ret);
const char *insn_load_error(void);
/* With capstone linked in (ULP_CAPSTONE_STATIC): the architectures linked, "x86-64"
 * (capstone-x86only.c). */
extern const char insn_capstone_x86only[];
/* Starts loading capstone on a thread of its own (once per process), so that an apply,
 * which decodes the entries of its functions after it opened its target and read its
 * patch, does not wait the load's 1.5 ms there on a machine with a core to spare. */
void insn_preload(void);
void insn_closep(csh *h);
/* cs_malloc() and cs_disasm_iter() of the capstone insn_open() loaded. */
cs_insn *insn_malloc(csh h);
bool insn_decode(csh h, const uint8_t **code, size_t *size, uint64_t *address, cs_insn *insn);
/* Frees an insn_malloc'd instruction (cleanup attribute). */
void insn_freep(cs_insn **insn);

/* Classifies insn, decoded with details at its real address. Returns 0, or
 * -ENOTSUP when capstone's details disagree with the bytes (then trust neither). */
int insn_classify(const cs_insn *insn, InsnInfo *ret);

/* True when the size bytes at code start with endbr64. */
bool insn_is_endbr64(const uint8_t *code, uint64_t size);
