/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dispatch stub code generation (stub.h). The code, hand-encoded; the common case
 * (the thread found at its hash slot) runs straight through with no taken branch
 * before the final jump:
 *
 *         push rax
 *         push rcx
 *         mov r11, qword fs:[0]               ; thread pointer
 *         mov rax, THREAD_TABLE_HASH_MUL
 *         imul rax, r11
 *         shr rax, 64 - order                 ; thread_table_hash(), threadtable.h
 *         mov rcx, table_addr
 * probe:  cmp qword [rcx + rax*8], r11
 *         jne miss
 *         movzx r11d, byte [rcx + rax + n*8]  ; state[slot]
 * decide: cmp r11d, THREAD_PATCHED
 *         pop rcx                             ; pops leave the flags alone
 *         pop rax
 *         je new_addr                         ; or jne +14; jmp [rip]; .quad new_addr
 *         jmp old_addr                        ; or jmp [rip]; .quad old_addr
 * miss:   cmp qword [rcx + rax*8], 0
 *         je absent
 *         inc eax
 *         and eax, n - 1
 *         jmp probe
 * absent: mov r11, target_state_addr
 *         movzx r11d, byte [r11]
 *         jmp decide
 *
 * The table always has an empty slot (it is sized for at least twice the threads), so
 * the probe loop ends.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "patcher/threadtable.h"
#include "patcher/x86_64/stub.h"

typedef struct Emitter {
        uint8_t *buf;
        size_t size, len;
        bool overflow;
} Emitter;

static void emit(Emitter *e, const void *p, size_t n) {
        if (e->len + n > e->size) {
                e->overflow = true;
                return;
        }
        memcpy(e->buf + e->len, p, n);
        e->len += n;
}

#define EMIT(e, ...) emit((e), (const uint8_t[]) { __VA_ARGS__ }, sizeof((const uint8_t[]) { __VA_ARGS__ }))

static void emit_u32(Emitter *e, uint32_t v) {
        emit(e, &v, sizeof(v));
}

static void emit_u64(Emitter *e, uint64_t v) {
        emit(e, &v, sizeof(v));
}

/* Emits a short branch with opcode op and returns where its rel8 is, for fix_rel8. */
static size_t emit_branch8(Emitter *e, uint8_t op) {
        EMIT(e, op, 0);
        return e->len - 1;
}

/* Points the rel8 at `at` to `target` (both offsets in the stub); all stay short. */
static void fix_rel8(Emitter *e, size_t at, size_t target) {
        if (e->overflow)
                return;
        e->buf[at] = (uint8_t)(int8_t)((long)target - (long)(at + 1));
}

static bool fits_rel32(uint64_t next, uint64_t to) {
        int64_t d = (int64_t)(to - next);

        return d >= INT32_MIN && d <= INT32_MAX;
}

/* "jmp [rip+0]; .quad to": an absolute jump that changes no register. */
static void emit_jmp_abs(Emitter *e, uint64_t to) {
        EMIT(e, 0xff, 0x25, 0, 0, 0, 0);
        emit_u64(e, to);
}

/* Emits "je to" (when cond) or "jmp to", rel32 when it reaches from the stub, else an
 * absolute jump (behind "jne over" for je). */
static void emit_jump(Emitter *e, uint64_t stub_addr, bool cond, uint64_t to) {
        size_t oplen = cond ? 2 : 1;

        if (fits_rel32(stub_addr + e->len + oplen + 4, to)) {
                if (cond)
                        EMIT(e, 0x0f, 0x84);
                else
                        EMIT(e, 0xe9);
                emit_u32(e, (uint32_t)(to - (stub_addr + e->len + 4)));
                return;
        }
        if (cond)
                EMIT(e, 0x75, 14);
        emit_jmp_abs(e, to);
}

/* Emits the hash of the thread pointer: r11 = fs:0, rax = slot, rcx = table. */
static void emit_hash(Emitter *e, const StubParams *p) {
        EMIT(e, 0x50);                                            /* push rax */
        EMIT(e, 0x51);                                            /* push rcx */
        EMIT(e, 0x64, 0x4c, 0x8b, 0x1c, 0x25, 0, 0, 0, 0);        /* mov r11, fs:[0] */
        EMIT(e, 0x48, 0xb8);                                      /* mov rax, imm64 */
        emit_u64(e, THREAD_TABLE_HASH_MUL);
        EMIT(e, 0x49, 0x0f, 0xaf, 0xc3);                          /* imul rax, r11 */
        EMIT(e, 0x48, 0xc1, 0xe8, (uint8_t)(64 - p->table_order)); /* shr rax, imm8 */
        EMIT(e, 0x48, 0xb9);                                      /* mov rcx, imm64 */
        emit_u64(e, p->table_addr);
}

/* See stub.h. Also -EINVAL for a table order outside 1..28. */
int stub_build(const StubParams *p, uint8_t *buf, size_t bufsize, size_t *ret_len) {
        Emitter e = { .buf = buf, .size = bufsize };
        uint32_t n = 1u << (p->table_order & 31), mask = n - 1;
        size_t probe, decide, to_miss, to_absent, to_probe, to_decide;

        if (p->table_order < 1 || p->table_order > STUB_MAX_ORDER)
                return -EINVAL;

        emit_hash(&e, p);
        probe = e.len;
        EMIT(&e, 0x4c, 0x39, 0x1c, 0xc1);                         /* cmp [rcx+rax*8], r11 */
        to_miss = emit_branch8(&e, 0x75);                         /* jne miss */
        EMIT(&e, 0x44, 0x0f, 0xb6, 0x9c, 0x01);                   /* movzx r11d, byte [rcx+rax+disp32] */
        emit_u32(&e, n * 8);
        decide = e.len;
        EMIT(&e, 0x41, 0x83, 0xfb, THREAD_PATCHED);               /* cmp r11d, imm8 */
        EMIT(&e, 0x59);                                           /* pop rcx */
        EMIT(&e, 0x58);                                           /* pop rax */
        emit_jump(&e, p->stub_addr, true, p->new_addr);
        emit_jump(&e, p->stub_addr, false, p->old_addr);

        fix_rel8(&e, to_miss, e.len);
        EMIT(&e, 0x48, 0x83, 0x3c, 0xc1, 0x00);                   /* cmp qword [rcx+rax*8], 0 */
        to_absent = emit_branch8(&e, 0x74);                       /* je absent */
        EMIT(&e, 0xff, 0xc0);                                     /* inc eax */
        EMIT(&e, 0x25);                                           /* and eax, imm32 */
        emit_u32(&e, mask);
        to_probe = emit_branch8(&e, 0xeb);                        /* jmp probe */
        fix_rel8(&e, to_probe, probe);

        fix_rel8(&e, to_absent, e.len);
        EMIT(&e, 0x49, 0xbb);                                     /* mov r11, imm64 */
        emit_u64(&e, p->target_state_addr);
        EMIT(&e, 0x45, 0x0f, 0xb6, 0x1b);                         /* movzx r11d, byte [r11] */
        to_decide = emit_branch8(&e, 0xeb);                       /* jmp decide */
        fix_rel8(&e, to_decide, decide);

        if (e.overflow)
                return -ENOSPC;
        *ret_len = e.len;
        return 0;
}
