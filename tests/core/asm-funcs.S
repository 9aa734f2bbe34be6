/*
 * Functions whose entries exercise the relocator, for the trampoline victim. Each
 * takes x in rdi and returns in rax; the C side knows the expected results.
 */
#define FUNC(name) .text; .globl name; .type name, @function; .p2align 4; name:
#define END(name) .size name, .-name

/* mov rax, [rip + x]: a RIP-relative load displaced */
FUNC(a_rip_load)
        mov     a_val1(%rip), %rax
        add     %rdi, %rax
        ret
END(a_rip_load)

/* mov dword [rip + x], imm32: the immediate after the displacement */
FUNC(a_rip_store)
        movl    $7, a_scratch(%rip)
        movslq  a_scratch(%rip), %rax
        add     %rdi, %rax
        ret
END(a_rip_store)

/* lea rax, [rip + x] */
FUNC(a_lea)
        lea     a_table(%rip), %rax
        mov     8(%rax), %rax
        add     %rdi, %rax
        ret
END(a_lea)

/* a short jcc among the displaced bytes */
FUNC(a_jcc)
        test    %rdi, %rdi
        js      1f
        lea     3000(%rdi), %rax
        ret
1:      mov     $-1, %rax
        ret
END(a_jcc)

/* jrcxz has no rel32 form: rewritten */
FUNC(a_jrcxz)
        mov     %rdi, %rcx
        jrcxz   1f
        lea     4000(%rdi), %rax
        ret
1:      mov     $4, %eax
        ret
END(a_jrcxz)

/* a call as the last displaced instruction */
FUNC(a_call)
        push    %rbx
        mov     %rdi, %rbx
        call    a_helper
        add     %rbx, %rax
        pop     %rbx
        ret
END(a_call)

FUNC(a_helper)
        mov     $5000, %eax
        nop; nop; nop; nop
        ret
END(a_helper)

/* endbr64 stays at the entry */
FUNC(a_endbr)
        endbr64
        mov     %rdi, %rax
        add     $6000, %rax
        ret
END(a_endbr)

/* a loop back into the displaced bytes: must be refused */
FUNC(a_backjump)
        xor     %eax, %eax
2:      inc     %eax
        dec     %rdi
        jnz     2b
        ret
END(a_backjump)

/* a second entry point inside the first's displaced bytes (an assembler's fall-through
 * into a shared tail): the two entry jumps would overlap, refused */
FUNC(a_outer2)
        mov     %rdi, %rax
        .globl  a_inner_entry
        .type   a_inner_entry, @function
a_inner_entry:
        add     $7000, %rax
        ret
        .size   a_inner_entry, .-a_inner_entry
END(a_outer2)

        .data
        .p2align 3
a_val1: .quad 1000
a_scratch: .long 0
        .p2align 3
a_table: .quad 0, 2000
/* a sized label in data, with no type (as an assembler's are): not code to redirect */
        .globl  a_data_label
a_data_label: .quad 0, 0, 0
        .size   a_data_label, 24
        .section .note.GNU-stack,"",@progbits
