/* Functions too small for the jump that no padding can save. */
        .text
        .globl nopad_fn
        .type nopad_fn, @function
nopad_fn:
        ret
        .size nopad_fn, .-nopad_fn
        .globl nopad_next
        .type nopad_next, @function
nopad_next:
        xor %eax, %eax
        inc %eax
        .size nopad_next, .-nopad_next
        .p2align 4
        ret
        .section .note.GNU-stack,"",@progbits
