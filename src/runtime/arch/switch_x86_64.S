/* Context switch for x86-64 System V.
 *
 * vial_ctx_switch(void **save_sp, void *load_sp): pushes the callee-saved
 * registers on the current stack, stores the stack pointer in *save_sp, loads
 * load_sp and pops the registers saved there. A new context is a stack laid
 * out by vial_ctx_make (coro.c) so that the final `ret` lands in
 * vial_ctx_trampoline with the entry function in r12 and its argument in r13.
 * Caller-saved registers need no saving: the switch is a function call. */
    .text
    .globl vial_ctx_switch
    .hidden vial_ctx_switch
    .type vial_ctx_switch, @function
    .align 16
vial_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size vial_ctx_switch, .-vial_ctx_switch

    .globl vial_ctx_trampoline
    .hidden vial_ctx_trampoline
    .type vial_ctx_trampoline, @function
    .align 16
vial_ctx_trampoline:
    movq %r13, %rdi
    callq *%r12
    ud2 /* the entry function never returns: it switches away for good */
    .size vial_ctx_trampoline, .-vial_ctx_trampoline

    .section .note.GNU-stack,"",@progbits
