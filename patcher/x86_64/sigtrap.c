/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The int3 window's SIGTRAP handler, hand-encoded (sigtrap.h). */

#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "patcher/x86_64/sigtrap.h"

/* Where the handler finds the interrupted PC: in the ucontext its third argument points at. */
#define UC_RIP_OFF ((int32_t)offsetof(ucontext_t, uc_mcontext.gregs[REG_RIP]))
/* si_code of an int3 (the kernel's SI_KERNEL), at its place in siginfo_t. */
#define SI_CODE_OFF ((int8_t)offsetof(siginfo_t, si_code))

typedef struct Emit {
        uint8_t *b;
        size_t n;
} Emit;

static void put(Emit *e, const void *p, size_t len) {
        memcpy(e->b + e->n, p, len);
        e->n += len;
}

static void put32(Emit *e, int32_t v) {
        put(e, &v, 4);
}

/* A RIP-relative disp32 to block offset off, for an instruction ending tail bytes after it. */
static void rip_to(Emit *e, size_t off, size_t tail) {
        put32(e, (int32_t)((int64_t)off - (int64_t)(e->n + 4 + tail)));
}

/* Fixes the rel32 at `at` (ending at at + 4) to jump to the current position. */
static void land32(Emit *e, size_t at) {
        int32_t rel = (int32_t)(e->n - (at + 4));
        memcpy(e->b + at, &rel, 4);
}

static void land8(Emit *e, size_t at) {
        e->b[at] = (uint8_t)(e->n - (at + 1));
}

/* mov eax, imm32; syscall */
static void sys(Emit *e, uint32_t nr) {
        put(e, (uint8_t[]) { 0xb8 }, 1);
        put32(e, (int32_t)nr);
        put(e, (uint8_t[]) { 0x0f, 0x05 }, 2);
}

size_t sigtrap_encode(uint8_t b[static SIGTRAP_OFF_OLD]) {
        Emit e = { b, 0 };
        size_t not_ours, none_left, found, back, dflt, loop, len;

        memset(b, 0xcc, SIGTRAP_OFF_OLD);
        /* cmp dword [rsi + si_code], SI_KERNEL; jne chain */
        put(&e, (uint8_t[]) { 0x81, 0x7e, (uint8_t)SI_CODE_OFF, 0x80, 0, 0, 0, 0x0f, 0x85 }, 9);
        not_ours = e.n;
        put32(&e, 0);
        /* mov rax, [rdx + rip]; dec rax: the int3's address */
        put(&e, (uint8_t[]) { 0x48, 0x8b, 0x82 }, 3);
        put32(&e, UC_RIP_OFF);
        put(&e, (uint8_t[]) { 0x48, 0xff, 0xc8 }, 3);
        /* lea r11, [rip + entries]; mov ecx, [rip + n] */
        put(&e, (uint8_t[]) { 0x4c, 0x8d, 0x1d }, 3);
        rip_to(&e, SIGTRAP_OFF_ENTRIES, 0);
        put(&e, (uint8_t[]) { 0x8b, 0x0d }, 2);
        rip_to(&e, SIGTRAP_OFF_N, 0);
        /* cmp ecx, MAX; jbe +5; mov ecx, MAX: the count is memory of the target */
        put(&e, (uint8_t[]) { 0x83, 0xf9, SIGTRAP_MAX_ENTRIES, 0x76, 0x05, 0xb9 }, 6);
        put32(&e, SIGTRAP_MAX_ENTRIES);
        /* lea r10, [rax + 1]: the interrupted PC itself */
        put(&e, (uint8_t[]) { 0x4c, 0x8d, 0x50, 0x01 }, 4);
        loop = e.n;
        /* test ecx, ecx; jz chain */
        put(&e, (uint8_t[]) { 0x85, 0xc9, 0x0f, 0x84 }, 4);
        none_left = e.n;
        put32(&e, 0);
        /* cmp rax, [r11]; je found */
        put(&e, (uint8_t[]) { 0x49, 0x3b, 0x03, 0x74 }, 4);
        found = e.n;
        put(&e, (uint8_t[]) { 0 }, 1);
        /* cmp r10, [r11]; je back; add r11, 16; dec ecx; jmp loop */
        put(&e, (uint8_t[]) { 0x4d, 0x3b, 0x13, 0x74 }, 4);
        back = e.n;
        put(&e, (uint8_t[]) { 0, 0x49, 0x83, 0xc3, 0x10, 0xff, 0xc9, 0xeb }, 8);
        put(&e, (uint8_t[]) { (uint8_t)(loop - (e.n + 1)) }, 1);
        /* back: the PC is on the int3 already (a tracer put it back there and died
         * before its resume dropped the trap, entry-bp.h): ret, and the int3 runs again */
        land8(&e, back);
        put(&e, (uint8_t[]) { 0xc3 }, 1);
        land8(&e, found);
        /* found: mov rax, [r11 + 8]; mov [rdx + rip], rax; ret (into the restorer) */
        put(&e, (uint8_t[]) { 0x49, 0x8b, 0x43, 0x08, 0x48, 0x89, 0x82 }, 7);
        put32(&e, UC_RIP_OFF);
        put(&e, (uint8_t[]) { 0xc3 }, 1);
        /* chain: mov rax, [rip + old.handler]; cmp rax, 1; jbe default; jmp rax */
        land32(&e, not_ours);
        land32(&e, none_left);
        put(&e, (uint8_t[]) { 0x48, 0x8b, 0x05 }, 3);
        rip_to(&e, SIGTRAP_OFF_OLD, 0);
        put(&e, (uint8_t[]) { 0x48, 0x83, 0xf8, 0x01, 0x76 }, 5);
        dflt = e.n;
        put(&e, (uint8_t[]) { 0, 0xff, 0xe0 }, 3);
        land8(&e, dflt);
        /* default: rt_sigaction(SIGTRAP, &dfl, NULL, 8) */
        put(&e, (uint8_t[]) { 0xbf }, 1);
        put32(&e, SIGTRAP);
        put(&e, (uint8_t[]) { 0x48, 0x8d, 0x35 }, 3);
        rip_to(&e, SIGTRAP_OFF_DFL, 0);
        put(&e, (uint8_t[]) { 0x31, 0xd2, 0x41, 0xba }, 4);
        put32(&e, 8);
        sys(&e, SYS_rt_sigaction);
        /* tgkill(getpid(), gettid(), SIGTRAP): pending, delivered at the return */
        sys(&e, SYS_gettid);
        put(&e, (uint8_t[]) { 0x49, 0x89, 0xc0 }, 3);           /* mov r8, rax */
        sys(&e, SYS_getpid);
        put(&e, (uint8_t[]) { 0x48, 0x89, 0xc7, 0x4c, 0x89, 0xc6, 0xba }, 7); /* mov rdi, rax; mov rsi, r8; mov edx, */
        put32(&e, SIGTRAP);
        sys(&e, SYS_tgkill);
        put(&e, (uint8_t[]) { 0xc3 }, 1);
        len = e.n;
        /* the restorer: rt_sigreturn */
        e.n = SIGTRAP_OFF_RESTORER;
        sys(&e, SYS_rt_sigreturn);
        return len;
}
