/* Machine context of a coroutine: the one piece that differs per architecture.
 * The assembly switches keep only a stack pointer (registers live on the
 * stack); the ucontext fallback keeps a ucontext_t. */
#ifndef VIAL_RUNTIME_CTX_H
#define VIAL_RUNTIME_CTX_H

#include <stddef.h>

#ifdef VIAL_CORO_UCONTEXT
#include <ucontext.h>
typedef struct vial_ctx {
    ucontext_t uc;
} vial_ctx;
/* Prepares c to run fn(arg) on stack[0..size) at its first swap. */
void vial_ctx_make(vial_ctx *c, void *stack, size_t size, void (*fn)(void *), void *arg);
/* Saves the running context in from and resumes to. */
void vial_ctx_swap(vial_ctx *from, vial_ctx *to);
#else
#include <stdint.h>
typedef struct vial_ctx {
    void *sp;
} vial_ctx;

void vial_ctx_switch(void **save_sp, void *load_sp);
void vial_ctx_trampoline(void);

static inline void vial_ctx_make(vial_ctx *c, void *stack, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    void **sp;
#if defined(__x86_64__)
    /* Popped by vial_ctx_switch: r15 r14 r13 r12 rbx rbp, then `ret`. The
     * return slot sits so that the trampoline starts with rsp % 16 == 0, as
     * its `call` then gives the entry the ABI's alignment. */
    sp = (void **)(top - 24);
    sp[0] = (void *)vial_ctx_trampoline;
    sp -= 6;
    sp[0] = 0;            /* r15 */
    sp[1] = 0;            /* r14 */
    sp[2] = arg;          /* r13 */
    sp[3] = (void *)fn;   /* r12 */
    sp[4] = 0;            /* rbx */
    sp[5] = 0;            /* rbp */
#elif defined(__aarch64__)
    sp = (void **)(top - 176);
    for (int i = 0; i < 22; i++)
        sp[i] = 0;
    sp[0] = (void *)fn;                 /* x19 */
    sp[1] = arg;                        /* x20 */
    sp[11] = (void *)vial_ctx_trampoline; /* x30 */
#else
#error "no assembly context switch for this architecture: configure with -DVIAL_CORO=ucontext"
#endif
    c->sp = sp;
}

static inline void vial_ctx_swap(vial_ctx *from, vial_ctx *to)
{
    vial_ctx_switch(&from->sp, to->sp);
}
#endif

#endif
