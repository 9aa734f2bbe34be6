/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hand-written functions for the relocator, one per case it must handle or refuse.
 * Each has its ELF size, and NAME_len (a .quad in .rodata) so the test knows it too.
 */

        .intel_syntax noprefix

#define FUNC(name) \
        .text; .globl name; .type name, @function; .p2align 4; name:
#define END(name) \
        .Lend_##name: .size name, . - name; \
        .pushsection .rodata; .globl name##_len; .p2align 3; \
        name##_len: .quad .Lend_##name - name; .popsection

/* mov rax, [rip + x]: the plain RIP-relative load */
FUNC(c_load)
        mov rax, qword ptr [rip + c_data]
        add rax, rdi
        ret
END(c_load)

/* mov dword [rip + x], imm32: the immediate follows the displacement */
FUNC(c_store_imm)
        mov dword ptr [rip + c_word], 7
        mov eax, dword ptr [rip + c_word]
        add eax, edi
        ret
END(c_store_imm)

/* mov qword [rip + x], imm32, with REX.W */
FUNC(c_store_imm64)
        mov qword ptr [rip + c_data2], 0x1234567
        mov rax, qword ptr [rip + c_data2]
        add rax, rdi
        ret
END(c_store_imm64)

/* cmp dword [rip + x], imm8 */
FUNC(c_cmp_imm)
        cmp dword ptr [rip + c_word], 5
        setg al
        movzx eax, al
        ret
END(c_cmp_imm)

/* lea rax, [rip + x] */
FUNC(c_lea)
        lea rax, [rip + c_data]
        ret
END(c_lea)

/* an SSE load from [rip + x], mandatory prefix before the opcode */
FUNC(c_sse)
        movsd xmm0, qword ptr [rip + c_double]
        addsd xmm0, xmm0
        ret
END(c_sse)

/* a short jcc among the displaced instructions */
FUNC(c_jcc_short)
        test edi, edi
        js 1f
        mov eax, edi
        ret
1:      mov eax, edi
        neg eax
        ret
END(c_jcc_short)

/* a short jmp, then bytes the copy never runs */
FUNC(c_jmp_short)
        test edi, edi
        jmp 1f
        int3
        int3
1:      lea eax, [rdi + 1]
        ret
END(c_jmp_short)

/* jrcxz: no rel32 form */
FUNC(c_jrcxz)
        mov rcx, rdi
        jrcxz 1f
        mov eax, 1
        ret
1:      mov eax, 2
        ret
END(c_jrcxz)

/* jecxz (67 e3): tests ecx only, so 1 << 32 takes the branch */
FUNC(c_jecxz)
        mov rcx, rdi
        jecxz 1f
        mov eax, 1
        ret
1:      mov eax, 2
        ret
END(c_jecxz)

/* loop: decrements rcx, branches while non-zero */
FUNC(c_loop)
        mov rcx, rdi
        loop 1f
        mov eax, 100
        ret
1:      lea rax, [rcx + rcx]
        ret
END(c_loop)

/* a branch back to the entry itself: allowed (it is where the jump is) */
FUNC(c_loop_to_entry)
0:      sub edi, 1
        jg 0b
        mov eax, edi
        ret
END(c_loop_to_entry)

/* call rel32 as the only (so last) displaced instruction */
FUNC(c_call_first)
        call c_helper
        add eax, 1
        ret
END(c_call_first)

FUNC(c_helper)
        lea eax, [rdi + 10]
        ret
END(c_helper)

/* an indirect call that is not the last displaced instruction: refused */
FUNC(c_call_not_last)
        call rsi
        add eax, 1
        ret
END(c_call_not_last)

/* the get-PC idiom: the call's return address is data here: refused */
FUNC(c_getpc)
        call 1f
1:      pop rax
        ret
END(c_getpc)

/* endbr64 stays; the jump goes after it */
FUNC(c_endbr)
        endbr64
        lea eax, [rdi + rsi]
        imul eax, eax
        ret
END(c_endbr)

/* a loop back into the displaced bytes: refused */
FUNC(c_backjump)
        xor eax, eax
1:      add eax, edi
        dec esi
        jnz 1b
        ret
END(c_backjump)

/* shorter than the jump: refused */
FUNC(c_tiny)
        mov eax, edi
        ret
END(c_tiny)

/* shorter than endbr64 and the jump: refused */
FUNC(c_tiny_endbr)
        endbr64
        xor eax, eax
        ret
END(c_tiny_endbr)

/* a jump table: plain indirect jmp in code not built for IBT: refused */
FUNC(c_jumptable)
        cmp edi, 3
        ja 5f
        lea rdx, [rip + .Ltable]
        movsxd rax, dword ptr [rdx + rdi * 4]
        add rax, rdx
        jmp rax
1:      mov eax, 10
        ret
2:      mov eax, 11
        ret
3:      mov eax, 12
        ret
4:      mov eax, 13
        ret
5:      mov eax, -1
        ret
        .section .rodata
        .p2align 2
.Ltable:
        .long 1b - .Ltable, 2b - .Ltable, 3b - .Ltable, 4b - .Ltable
        .text
END(c_jumptable)

/* a jump table built for IBT: notrack jmp: refused */
FUNC(c_jumptable_ibt)
        endbr64
        cmp edi, 1
        ja 5f
        lea rdx, [rip + .Ltable_ibt]
        movsxd rax, dword ptr [rdx + rdi * 4]
        add rax, rdx
        notrack jmp rax
1:      mov eax, 10
        ret
2:      mov eax, 11
        ret
5:      mov eax, -1
        ret
        .section .rodata
        .p2align 2
.Ltable_ibt:
        .long 1b - .Ltable_ibt, 2b - .Ltable_ibt
        .text
END(c_jumptable_ibt)

/* a tracked indirect tail call in IBT code: may only land on an endbr64: accepted */
FUNC(c_tailcall_ibt)
        endbr64
        mov rax, rsi
        add edi, 1
        jmp rax
END(c_tailcall_ibt)

/* a tail call through a pointer slot, [rip + x]: accepted */
FUNC(c_tailcall_got)
        add edi, 3
        mov eax, edi
        jmp qword ptr [rip + c_fnptr]
END(c_tailcall_got)

/* ret before the jump's end: the rest is dead unless branched to */
FUNC(c_ret_not_last)
        xor eax, eax
        ret
        int3
        int3
        int3
END(c_ret_not_last)

/* an undecodable displaced instruction (push es does not exist in 64-bit mode) */
FUNC(c_bad)
        .byte 0x06
        mov eax, edi
        add eax, 1
        ret
END(c_bad)

/* undecodable bytes later in the function: the scan cannot clear it */
FUNC(c_bad_later)
        mov eax, edi
        add eax, 1
        ret
        .byte 0x06
        ret
END(c_bad_later)

        .data
        .p2align 3
        .globl c_data, c_data2, c_word, c_double, c_fnptr
c_data: .quad 1000
c_data2: .quad 0
c_word: .long 0
        .p2align 3
c_double: .double 1.25
c_fnptr: .quad c_helper

        .section .note.GNU-stack, "", @progbits
