/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For the dispatch stub test: a caller that sets every argument and callee-saved
 * register from an array, and two callees that record, in thread-local storage, every
 * register they receive, the stack pointer and the return address. None uses anything
 * RIP-relative, so they may be reached through absolute jumps from anywhere.
 */

#define SEEN(i) %fs:stub_seen@tpoff + 8 * (i)

/* Records the registers (slot 0, which callee, is already set); returns slot 0. */
        .text
        .type stub_record, @function
stub_record:
        movq %rdi, SEEN(1)
        movq %rsi, SEEN(2)
        movq %rdx, SEEN(3)
        movq %rcx, SEEN(4)
        movq %r8, SEEN(5)
        movq %r9, SEEN(6)
        movq %rax, SEEN(7)
        movq %rbx, SEEN(8)
        movq %rbp, SEEN(9)
        movq %r12, SEEN(10)
        movq %r13, SEEN(11)
        movq %r14, SEEN(12)
        movq %r15, SEEN(13)
        movq %rsp, SEEN(14)
        movq (%rsp), %r11
        movq %r11, SEEN(15)
        movq SEEN(0), %rax
        ret
        .size stub_record, . - stub_record

        .globl stub_callee_new
        .type stub_callee_new, @function
stub_callee_new:
        movq $1, SEEN(0)
        jmp stub_record
        .size stub_callee_new, . - stub_callee_new

        .globl stub_callee_old
        .type stub_callee_old, @function
stub_callee_old:
        movq $2, SEEN(0)
        jmp stub_record
        .size stub_callee_old, . - stub_callee_old

/* uint64_t stub_call(void *fn, const uint64_t in[16], uint64_t out[16]): calls fn with
 * rdi..r9, rax, rbx, rbp, r12..r15 from in[1..13] (the slots of stub_record); stores
 * rax, rbx, rbp, r12..r15 after the return into out[7..13]; stub_caller_rsp is the
 * stack pointer just before the call, stub_call_ret the return address. */
        .globl stub_call, stub_call_ret
        .type stub_call, @function
stub_call:
        pushq %rbp
        pushq %rbx
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        pushq %rdx
        movq %rdi, %r11
        movq 56(%rsi), %rax
        movq 64(%rsi), %rbx
        movq 72(%rsi), %rbp
        movq 80(%rsi), %r12
        movq 88(%rsi), %r13
        movq 96(%rsi), %r14
        movq 104(%rsi), %r15
        movq 8(%rsi), %rdi
        movq 24(%rsi), %rdx
        movq 32(%rsi), %rcx
        movq 40(%rsi), %r8
        movq 48(%rsi), %r9
        movq 16(%rsi), %rsi
        movq %rsp, %fs:stub_caller_rsp@tpoff
        call *%r11
stub_call_ret:
        movq (%rsp), %r11
        movq %rax, 56(%r11)
        movq %rbx, 64(%r11)
        movq %rbp, 72(%r11)
        movq %r12, 80(%r11)
        movq %r13, 88(%r11)
        movq %r14, 96(%r11)
        movq %r15, 104(%r11)
        popq %r11
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbx
        popq %rbp
        ret
        .size stub_call, . - stub_call

        .section .note.GNU-stack, "", @progbits
