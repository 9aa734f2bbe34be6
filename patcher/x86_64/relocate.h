/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * x86-64 entry redirection: the 5-byte jump written over a function's first
 * instructions (after an endbr64, which stays), and the relocated copy of the
 * instructions it displaces, which threads still in the old state run.
 * Decoding with capstone in detail mode.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JMP_REL32_SIZE 5
#define RELOC_MAX_INSNS 16
#define RELOC_MAX_CODE 192

typedef struct Relocation {
        size_t entry_offset;     /* 4 when the function starts with endbr64, else 0: the jump
                                  * is written at func_addr + entry_offset */
        size_t displaced_len;    /* bytes from entry_offset replaced by the jump and padding;
                                  * whole instructions, >= JMP_REL32_SIZE */
        uint8_t code[RELOC_MAX_CODE]; /* the relocated copy, ending with a jump back to
                                       * func_addr + entry_offset + displaced_len */
        size_t code_len;
        size_t n_insns;          /* displaced instructions, and for each: */
        size_t orig_off[RELOC_MAX_INSNS]; /* offset from func_addr of the original */
        size_t copy_off[RELOC_MAX_INSNS]; /* offset in code of its relocated form */
} Relocation;

/*
 * Builds the relocated copy of the entry of the function whose bytes (func_size of them,
 * its ELF symbol size: never guessed from padding) are func_code and which lives at
 * func_addr in the target. The copy will live at copy_addr.
 * Returns 0, or (with a one-line reason in err):
 *   -ENOSPC   function shorter than entry_offset + 5 bytes;
 *   -EXDEV    a direct branch elsewhere in the function lands inside the displaced bytes,
 *             or an indirect jump (possible jump table) we cannot rule out;
 *   -EILSEQ   an instruction capstone cannot decode;
 *   -ENOTSUP  an instruction we cannot relocate (e.g. a call not last);
 *   -ERANGE   a relocated displacement does not fit: the copy must be nearer.
 */
int relocate_entry(const uint8_t *func_code, size_t func_size, uint64_t func_addr,
                   uint64_t copy_addr, Relocation *ret, char *err, size_t errlen);

/* Encodes "jmp rel32" at from to to. -ERANGE when out of +-2 GiB. */
int encode_jmp_rel32(uint8_t buf[JMP_REL32_SIZE], uint64_t from, uint64_t to);

/* Where a PC strictly inside the displaced bytes should continue in the relocated copy at
 * copy_addr: the same instruction's relocated form. 0 when pc is not at an instruction
 * boundary there (then the write must wait). */
uint64_t relocation_map_pc(const Relocation *r, uint64_t func_addr, uint64_t copy_addr,
                           uint64_t pc);
