/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relocated copy of a function's entry (relocate.h): the instructions the entry
 * jump displaces, rewritten to run at another address, then a jump back; and the
 * check that nothing else in the function branches into the bytes the jump covers.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/errfmt.h"
#include "common/macro.h"
#include "patcher/x86_64/insn.h"
#include "patcher/x86_64/relocate.h"

static int rel32_of(uint64_t next, uint64_t to, int32_t *ret) {
        int64_t d = (int64_t)(to - next);

        if (d < INT32_MIN || d > INT32_MAX)
                return -ERANGE;
        *ret = (int32_t)d;
        return 0;
}

int encode_jmp_rel32(uint8_t buf[JMP_REL32_SIZE], uint64_t from, uint64_t to) {
        int32_t rel;
        int r;

        r = rel32_of(from + JMP_REL32_SIZE, to, &rel);
        if (r < 0)
                return r;
        buf[0] = 0xe9;
        memcpy(buf + 1, &rel, sizeof(rel));
        return 0;
}

void encode_jmp_far(uint8_t buf[static JMP_FAR_SIZE], uint64_t to) {
        static const uint8_t jmp_rip_0[6] = { 0xff, 0x25, 0, 0, 0, 0 };

        memcpy(buf, jmp_rip_0, sizeof(jmp_rip_0));
        memcpy(buf + sizeof(jmp_rip_0), &to, sizeof(to));
}

int encode_entry_jump(uint8_t buf[16], size_t len, uint64_t at, uint64_t dest) {
        int r = encode_jmp_rel32(buf, at, dest);

        if (r < 0)
                return r;
        memset(buf + JMP_REL32_SIZE, INSN_INT3, 16 - JMP_REL32_SIZE);
        return (int)MIN(MAX(len, (size_t)JMP_REL32_SIZE), (size_t)16);
}

static int emit(Relocation *r, const void *p, size_t n) {
        if (r->code_len + n > sizeof(r->code))
                return -ENOTSUP;
        memcpy(r->code + r->code_len, p, n);
        r->code_len += n;
        return 0;
}

/* Emits op (1 or 2 bytes) followed by a rel32 reaching target from the copy. */
static int emit_rel32(Relocation *r, uint64_t copy_addr, const uint8_t *op, size_t oplen,
                      uint64_t target) {
        int32_t rel;
        int k;

        k = rel32_of(copy_addr + r->code_len + oplen + 4, target, &rel);
        if (k < 0)
                return k;
        k = emit(r, op, oplen);
        if (k < 0)
                return k;
        return emit(r, &rel, sizeof(rel));
}

/*
 * Appends the relocated form of one displaced instruction to r->code. Short branches
 * become rel32 ones; loop/jrcxz, which have no rel32 form, jump to a local rel32 jmp
 * and are jumped over on fallthrough; [rip + disp32] operands get a new displacement
 * (whatever immediate follows it is copied as is). A call only as the last displaced
 * instruction: its return address is then the jump back, in the copy (so a callee that
 * looks at its return address sees the copy's; the get-PC idiom is refused).
 */
static int relocate_one(Relocation *r, const cs_insn *insn, const InsnInfo *info,
                        uint64_t copy_addr, bool last) {
        size_t start = r->code_len;
        int32_t disp;
        int k;

        switch (info->kind) {
        case INSN_JMP_REL:
                return emit_rel32(r, copy_addr, (const uint8_t[]) { 0xe9 }, 1, info->target);
        case INSN_JCC_REL:
                return emit_rel32(r, copy_addr, (const uint8_t[]) { 0x0f, 0x80 | info->cc }, 2,
                                  info->target);
        case INSN_CALL_REL:
                /* "call next; pop reg" reads its own address: it would read the copy's */
                if (!last || info->target == insn->address + insn->size)
                        return -ENOTSUP;
                return emit_rel32(r, copy_addr, (const uint8_t[]) { 0xe8 }, 1, info->target);
        case INSN_LOOP_REL:
                /* same prefixes and opcode, rel8 = 2: over the "jmp short +5" */
                k = emit(r, insn->bytes, insn->size - 1);
                if (k >= 0)
                        k = emit(r, (const uint8_t[]) { 0x02, 0xeb, 0x05 }, 3);
                if (k >= 0)
                        k = emit_rel32(r, copy_addr, (const uint8_t[]) { 0xe9 }, 1, info->target);
                return k;
        case INSN_UNSUPPORTED:
                return -ENOTSUP;
        case INSN_CALL_INDIRECT:
                if (!last)
                        return -ENOTSUP;
                break;
        default:
                break;
        }

        k = emit(r, insn->bytes, insn->size);
        if (k < 0 || !info->rip_relative)
                return k;
        k = rel32_of(copy_addr + start + insn->size, info->rip_target, &disp);
        if (k < 0)
                return k;
        memcpy(r->code + start + info->disp_offset, &disp, sizeof(disp));
        return 0;
}

/* Whether execution never goes on to the next instruction: ret, jmp, ud2. Read from the
 * classification and the bytes, never the mnemonic. */
static bool ends_flow(const cs_insn *insn, const InsnInfo *info) {
        const uint8_t *op = insn->bytes + info->opcode_off;

        if (info->kind == INSN_RET || info->kind == INSN_JMP_REL || info->kind == INSN_JMP_INDIRECT)
                return true;
        return insn->size == (size_t)info->opcode_off + 2 && op[0] == 0x0f && op[1] == 0x0b;
}

/* The length of the alignment padding instruction at p as assemblers and linkers write
 * it: nop (90), int3 (cc), the long nops (0f 1f /0), with 66 or 2e prefixes; 0 for
 * anything else. Only its first bytes need to be there (avail of them): the rest of a
 * long nop may lie beyond what the jump covers. */
static size_t padding_len(const uint8_t *p, size_t avail) {
        size_t i = 0, len;
        uint8_t modrm, mod, rm;

        while (i < avail && i < 8 && (p[i] == 0x66 || p[i] == 0x2e))
                i++;
        if (i < avail && (p[i] == 0x90 || p[i] == 0xcc))
                return i + 1;
        if (i + 2 >= avail || p[i] != 0x0f || p[i + 1] != 0x1f || (p[i + 2] >> 3 & 7) != 0)
                return 0;
        modrm = p[i + 2];
        mod = modrm >> 6;
        rm = modrm & 7;
        len = i + 3;
        if (mod != 3 && rm == 4)
                len++;                          /* SIB */
        if (mod == 1)
                len += 1;
        else if (mod == 2 || (mod == 0 && rm == 5))
                len += 4;
        return len;
}

/* Decodes whole instructions from the entry until the jump fits, relocates each into
 * r->code, and ends the copy with the jump back. Fills displaced_len and the maps. */
static int relocate_displaced(csh h, cs_insn *insn, const uint8_t *func_code, size_t func_size,
                              uint64_t func_addr, uint64_t copy_addr, Relocation *r,
                              char *err, size_t errlen) {
        size_t off = r->entry_offset, end = MIN(r->entry_offset + JMP_REL32_SIZE, func_size);
        int k;

        while (off < end) {
                const uint8_t *p = func_code + off;
                size_t left = func_size - off;
                uint64_t addr = func_addr + off;
                InsnInfo info;

                if (!insn_decode(h, &p, &left, &addr, insn))
                        return fail(err, errlen, -EILSEQ, "cannot decode the instruction at +0x%zx", off);
                k = insn_classify(insn, &info);
                if (k < 0)
                        return fail(err, errlen, k, "cannot trust the decoding of '%s %s' at +0x%zx",
                                    insn->mnemonic, insn->op_str, off);
                if (r->n_insns >= RELOC_MAX_INSNS)
                        return fail(err, errlen, -ENOTSUP, "too many instructions at the entry");
                r->orig_off[r->n_insns] = off;
                r->copy_off[r->n_insns] = r->code_len;
                r->n_insns++;
                k = relocate_one(r, insn, &info, copy_addr, off + insn->size >= end);
                r->last_ends_flow = ends_flow(insn, &info);
                if (k == -ERANGE)
                        return fail(err, errlen, k, "'%s %s' at +0x%zx cannot reach its target from the copy at 0x%" PRIx64,
                                    insn->mnemonic, insn->op_str, off, copy_addr);
                if (k < 0)
                        return fail(err, errlen, k, "cannot relocate '%s %s' at +0x%zx",
                                    insn->mnemonic, insn->op_str, off);
                off += insn->size;
        }
        r->displaced_len = off - r->entry_offset;
        /* The whole of a tiny function: its last instruction never falls through
         * (checked by the caller), so there is nothing to jump back to. */
        if (off < r->entry_offset + JMP_REL32_SIZE)
                return emit(r, (const uint8_t[]) { 0xcc }, 1);

        k = emit_rel32(r, copy_addr, (const uint8_t[]) { 0xe9 }, 1, func_addr + off);
        if (k < 0)
                return fail(err, errlen, k, "the copy at 0x%" PRIx64 " cannot jump back to +0x%zx",
                            copy_addr, off);
        return 0;
}

/* Whether an indirect jump in the function provably cannot land in the displaced
 * bytes: a jump through one fixed pointer slot ([rip + disp], a tail call through the
 * GOT), or, in a function built for IBT (entry endbr64), a tracked jump, which may only
 * land on an endbr64, when no displaced instruction is one. Jump tables built for IBT
 * use notrack jumps, jump tables built without it plain ones: both refused. */
static bool indirect_jump_harmless(const InsnInfo *info, const Relocation *r,
                                   const uint8_t *func_code) {
        if (info->rip_relative && info->rip_no_index)
                return true;
        if (r->entry_offset == 0 || info->notrack)
                return false;
        for (size_t i = 0; i < r->n_insns; i++)
                if (insn_is_endbr64(func_code + r->orig_off[i], 4))
                        return false;
        return true;
}

/*
 * Sweeps the whole function (its symbol size) for control transfers into the
 * displaced bytes other than at their start. Anything the sweep cannot decode is a
 * refusal: it could hide such a branch, and a guess would be a crash in the target.
 */
static int scan_function(csh h, cs_insn *insn, const uint8_t *func_code, size_t func_size,
                         uint64_t func_addr, const Relocation *r, char *err, size_t errlen) {
        uint64_t lo = func_addr + r->entry_offset, hi = lo + r->displaced_len;
        const uint8_t *p = func_code;
        size_t left = func_size;
        uint64_t addr = func_addr;

        while (left > 0) {
                size_t off = addr - func_addr;
                InsnInfo info;

                if (!insn_decode(h, &p, &left, &addr, insn))
                        return fail(err, errlen, -EILSEQ,
                                    "cannot decode at +0x%zx: branches into the displaced bytes cannot be ruled out", off);
                if (insn_classify(insn, &info) < 0)
                        return fail(err, errlen, -EXDEV, "cannot trust the decoding of '%s %s' at +0x%zx",
                                    insn->mnemonic, insn->op_str, off);
                if (info.has_target && info.target > lo && info.target < hi)
                        return fail(err, errlen, -EXDEV, "branch at +0x%zx into the displaced bytes (+0x%" PRIx64 ")",
                                    off, info.target - func_addr);
                if (info.kind == INSN_JMP_INDIRECT && !indirect_jump_harmless(&info, r, func_code))
                        return fail(err, errlen, -EXDEV, "indirect jump at +0x%zx (possible jump table)", off);
        }
        return 0;
}

/*
 * A function too short for the jump: its instructions end exactly at its end, the last
 * one never falls through, and the bytes after it, up to where the jump ends, are
 * padding (pad_avail of them may be used: the caller knows where the next symbol
 * starts). Those padding bytes become part of the displaced bytes.
 */
static int take_padding(const uint8_t *func_code, size_t func_size, size_t pad_avail, Relocation *r,
                        char *err, size_t errlen) {
        size_t need = r->entry_offset + JMP_REL32_SIZE, off = func_size;

        if (r->entry_offset + r->displaced_len != func_size)
                return fail(err, errlen, -ENOSPC, "its instructions do not end where its symbol does");
        if (!r->last_ends_flow)
                return fail(err, errlen, -ENOSPC, "its last instruction is not ret, jmp or ud2, so the "
                            "bytes after it are not unreachable padding");
        while (off < need) {
                size_t n;
                if (off >= func_size + pad_avail)
                        return fail(err, errlen, -ENOSPC, "only %zu byte(s) of padding follow it", off - func_size);
                n = padding_len(func_code + off, func_size + pad_avail - off);
                if (n == 0)
                        return fail(err, errlen, -ENOSPC, "the byte 0x%02x at +0x%zx after it is not padding",
                                    func_code[off], off);
                off += n;
        }
        r->padding = need - func_size;
        r->displaced_len = JMP_REL32_SIZE;
        return 0;
}

/* See relocate.h. */
int relocate_entry(const uint8_t *func_code, size_t func_size, uint64_t func_addr,
                   uint64_t copy_addr, Relocation *ret, char *err, size_t errlen) {
        return relocate_entry_padded(func_code, func_size, 0, func_addr, copy_addr, ret, err, errlen);
}

/* See relocate.h. */
int relocate_entry_padded(const uint8_t *func_code, size_t func_size, size_t pad_avail, uint64_t func_addr,
                          uint64_t copy_addr, Relocation *ret, char *err, size_t errlen) {
        _cleanup_(insn_closep) csh h = 0;
        _cleanup_(insn_freep) cs_insn *insn = NULL;
        Relocation r = {};
        int k;

        r.entry_offset = insn_is_endbr64(func_code, func_size) ? 4 : 0;
        if (func_size <= r.entry_offset)
                return fail(err, errlen, -ENOSPC, "it has no instruction after its endbr64");

        k = insn_open(&h);
        if (k < 0)
                return fail(err, errlen, k, "cannot open capstone%s%s", insn_load_error()[0] ? ": " : "",
                            insn_load_error());
        insn = insn_malloc(h);
        if (!insn)
                return fail(err, errlen, -ENOMEM, "out of memory");

        k = relocate_displaced(h, insn, func_code, func_size, func_addr, copy_addr, &r, err, errlen);
        /* The symbol size is the truth: an instruction running past it is not this
         * function's (whatever padding follows). */
        if (k == -EILSEQ && func_size < r.entry_offset + JMP_REL32_SIZE)
                return fail(err, errlen, -ENOSPC, "its instructions do not end where its symbol does");
        if (k >= 0 && r.displaced_len < JMP_REL32_SIZE)
                k = take_padding(func_code, func_size, pad_avail, &r, err, errlen);
        if (k < 0)
                return k;
        k = scan_function(h, insn, func_code, func_size, func_addr, &r, err, errlen);
        if (k < 0)
                return k;
        *ret = r;
        return 0;
}

/* See relocate.h. */
int relocation_rebuild(const uint8_t *bytes, size_t len, uint64_t at, uint64_t copy_addr,
                       Relocation *ret, char *err, size_t errlen) {
        _cleanup_(insn_closep) csh h = 0;
        _cleanup_(insn_freep) cs_insn *insn = NULL;
        Relocation r = {};
        int k;

        if (len < JMP_REL32_SIZE)
                return fail(err, errlen, -ENOSPC, "%zu displaced bytes, the entry jump needs %d", len,
                            JMP_REL32_SIZE);
        k = insn_open(&h);
        if (k < 0)
                return fail(err, errlen, k, "cannot open capstone%s%s", insn_load_error()[0] ? ": " : "",
                            insn_load_error());
        insn = insn_malloc(h);
        if (!insn)
                return fail(err, errlen, -ENOMEM, "out of memory");
        k = relocate_displaced(h, insn, bytes, len, at, copy_addr, &r, err, errlen);
        if (k < 0)
                return k;
        if (r.displaced_len != len)
                return fail(err, errlen, -EILSEQ, "the displaced bytes end inside an instruction");
        *ret = r;
        return 0;
}

/* See relocate.h. The start of the displaced bytes maps too (to the copy's start). */
uint64_t relocation_map_pc(const Relocation *r, uint64_t func_addr, uint64_t copy_addr,
                           uint64_t pc) {
        for (size_t i = 0; i < r->n_insns; i++)
                if (pc == func_addr + r->orig_off[i])
                        return copy_addr + r->copy_off[i];
        return 0;
}
