/* Context switch for AArch64 (AAPCS64).
 *
 * vial_ctx_switch(void **save_sp, void *load_sp): saves x19-x30 and d8-d15
 * (the callee-saved set) in a 176-byte frame on the current stack, stores sp
 * in *save_sp, loads load_sp and restores the frame found there. A new context
 * is a frame laid out by vial_ctx_make (coro.c): x19 = entry, x20 = argument,
 * x30 = vial_ctx_trampoline. */
    .text
    .globl vial_ctx_switch
    .hidden vial_ctx_switch
    .type vial_ctx_switch, %function
    .align 4
vial_ctx_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size vial_ctx_switch, .-vial_ctx_switch

    .globl vial_ctx_trampoline
    .hidden vial_ctx_trampoline
    .type vial_ctx_trampoline, %function
    .align 4
vial_ctx_trampoline:
    mov x0, x20
    blr x19
    brk #0 /* the entry function never returns */
    .size vial_ctx_trampoline, .-vial_ctx_trampoline

    .section .note.GNU-stack,"",%progbits
