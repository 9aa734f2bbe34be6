/*
 * What the fiber victims (victim-fiber.c, victim-fcontext.c) and the Go stand-ins
 * (victim-go.c) share: fiber_value(), the function patch-fiber.c replaces, and the
 * output the tests read. Included by one file of each victim: it defines them.
 */
#pragma once

#include <stdio.h>
#include <unistd.h>

volatile int bias;

__attribute__((noinline, noipa)) int fiber_value(int x);
__attribute__((noinline, noipa)) int fiber_value(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r;
}

/* Every 10 ms: resume(0) and resume(1) each run a fiber until it parks again, then
 * prints the value the first one got:
 *     tick N value=V */
__attribute__((noreturn)) static inline void tick_fibers(void (*resume)(int id), const int *value) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (unsigned long tick = 0;; tick++) {
                for (int i = 0; i < 2; i++)
                        resume(i);
                printf("tick %lu value=%d\n", tick, *value);
                usleep(10000);
        }
}
