/*
 * Victim with fibers of a fiber library: Boost.Context's fcontext (make_fcontext and
 * jump_fcontext, plain C entry points of libboost_context), loaded with dlopen from the
 * path given as argv[1] so that the build needs no Boost headers. The main thread runs
 * two fibers on stacks of their own; each asks fiber_value() and jumps back. Prints
 * every 10 ms:
 *     tick N value=V
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fiber-value.h"

typedef void *fcontext_t;
typedef struct {
        fcontext_t fctx;
        void *data;
} transfer_t;

static transfer_t (*jump_fc)(fcontext_t to, void *data);
static fcontext_t (*make_fc)(void *sp, size_t size, void (*fn)(transfer_t));

static int result[2];

static void fiber(transfer_t t) {
        int id = (int)(intptr_t)t.data;
        for (;;) {
                result[id] = fiber_value(10);
                t = jump_fc(t.fctx, NULL);
        }
}

static fcontext_t fib[2];

static void resume(int id) {
        fib[id] = jump_fc(fib[id], NULL).fctx;
}

int main(int argc, char **argv) {
        enum { STACK = 64 * 1024 };
        void *lib;

        if (argc < 2 || !(lib = dlopen(argv[1], RTLD_NOW))) {
                fprintf(stderr, "usage: %s LIBBOOST_CONTEXT: %s\n", argv[0], dlerror());
                return 2;
        }
        *(void **)&jump_fc = dlsym(lib, "jump_fcontext");
        *(void **)&make_fc = dlsym(lib, "make_fcontext");
        if (!jump_fc || !make_fc) {
                fprintf(stderr, "%s has no fcontext functions\n", argv[1]);
                return 2;
        }
        for (int i = 0; i < 2; i++) {
                char *stack = malloc(STACK);
                fib[i] = jump_fc(make_fc(stack + STACK, STACK, fiber), (void *)(intptr_t)i).fctx;
        }
        tick_fibers(resume, &result[0]);
}
