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
        size_t padding;          /* of displaced_len, bytes of alignment padding after a
                                  * function shorter than the jump (relocate_entry_padded) */
        bool last_ends_flow;     /* the last displaced instruction never falls through */
} Relocation;

/*
 * Builds the relocated copy of the entry of the function whose bytes (func_size of them,
 * its ELF symbol size: never guessed from padding) are func_code and which lives at
 * func_addr in the target. The copy will live at copy_addr.
 * Returns 0, or (with a one-line reason in err):
 *   -ENOSPC   function shorter than entry_offset + 5 bytes (the reason a clause);
 *   -EXDEV    a direct branch elsewhere in the function lands inside the displaced bytes,
 *             or an indirect jump (possible jump table) we cannot rule out;
 *   -EILSEQ   an instruction capstone cannot decode;
 *   -ENOTSUP  an instruction we cannot relocate (e.g. a call not last);
 *   -ERANGE   a relocated displacement does not fit: the copy must be nearer.
 */
int relocate_entry(const uint8_t *func_code, size_t func_size, uint64_t func_addr,
                   uint64_t copy_addr, Relocation *ret, char *err, size_t errlen);

/*
 * As relocate_entry, for a function that may be shorter than its entry jump: func_code
 * then holds pad_avail more bytes after the function, which no symbol starts in. The
 * jump may cover them when the function's last instruction never falls through (ret,
 * jmp, ud2) and those it needs are padding (nop, long nops, int3); nothing in the
 * function may branch there (the scan covers them as displaced bytes). The copy of such
 * a function is the whole function, without a jump back. -ENOSPC when the function
 * cannot take the jump, with the reason in err (a clause: "only 1 byte(s) of padding
 * follow it").
 */
int relocate_entry_padded(const uint8_t *func_code, size_t func_size, size_t pad_avail, uint64_t func_addr,
                          uint64_t copy_addr, Relocation *ret, char *err, size_t errlen);

/* Encodes "jmp rel32" at from to to. -ERANGE when out of +-2 GiB. */
int encode_jmp_rel32(uint8_t buf[JMP_REL32_SIZE], uint64_t from, uint64_t to);

/* The one-byte breakpoint: a thread executing it stops (SIGTRAP) with its PC after it. */
#define INSN_INT3 0xcc

/* The far jump, to anywhere: "jmp [rip+0]; .quad to". */
#define JMP_FAR_SIZE 14
void encode_jmp_far(uint8_t buf[static JMP_FAR_SIZE], uint64_t to);

/* The entry jump over len displaced bytes (len <= 16): "jmp rel32" from at to dest, the
 * rest int3, never executed (a mistake is loud). Returns the bytes to write (at least
 * JMP_REL32_SIZE), -ERANGE when dest is out of reach. */
int encode_entry_jump(uint8_t buf[16], size_t len, uint64_t at, uint64_t dest);

/*
 * The map of an entry already redirected, rebuilt from its displaced bytes (len of them,
 * the original instructions at at, endbr64 excluded) for the copy at copy_addr: the same
 * instructions and offsets relocate_entry() gave when it built that copy. No branch
 * scan (done when the copy was built). -EILSEQ when the bytes do not decode into whole
 * instructions ending at len, other errors as relocate_entry().
 */
int relocation_rebuild(const uint8_t *bytes, size_t len, uint64_t at, uint64_t copy_addr,
                       Relocation *ret, char *err, size_t errlen);

/* Where a PC strictly inside the displaced bytes should continue in the relocated copy at
 * copy_addr: the same instruction's relocated form. 0 when pc is not at an instruction
 * boundary there (then the write must wait). */
uint64_t relocation_map_pc(const Relocation *r, uint64_t func_addr, uint64_t copy_addr,
                           uint64_t pc);
