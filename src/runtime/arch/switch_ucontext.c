/* Portable context switch on ucontext(3), for targets without an assembly
 * switch (VIAL_CORO=ucontext). Slower: swapcontext saves the signal mask with
 * a system call on every switch. */
#include "runtime/arch/ctx.h"

#include <stdint.h>

/* makecontext passes int arguments only, so the pointers travel split in two. */
static void ctx_entry(unsigned fhi, unsigned flo, unsigned ahi, unsigned alo)
{
    void (*fn)(void *) = (void (*)(void *))(((uintptr_t)fhi << 32) | flo);
    void *arg = (void *)(((uintptr_t)ahi << 32) | alo);
    fn(arg);
}

void vial_ctx_make(vial_ctx *c, void *stack, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t f = (uintptr_t)fn, a = (uintptr_t)arg;
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, (void (*)(void))ctx_entry, 4, (unsigned)(f >> 32), (unsigned)f,
                (unsigned)(a >> 32), (unsigned)a);
}

void vial_ctx_swap(vial_ctx *from, vial_ctx *to)
{
    swapcontext(&from->uc, &to->uc);
}
