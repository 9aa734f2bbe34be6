/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A victim that loads liblatehold.so on SIGHUP and unloads it on SIGUSR1, as often as it
 * is asked (docs/late-callbacks.md). Every 20 ms it prints
 *
 *     base=N hold=N loads=N
 *
 * base from libtrbase.so (linked), hold from liblatehold.so (-1 while not loaded), loads
 * the number of dlopen()s so far. With $HOLD_FILE set, each load starts a thread that
 * waits inside hold_wait() while that file exists; an unload waits for it first. On
 * SIGUSR2 it prints "vfork" and vforks a child that sleeps $LATE_VFORK_MS (default 3000)
 * milliseconds before it exits: all that time the victim's one thread cannot be stopped.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int base_value(void);

static volatile sig_atomic_t want_load, want_unload, want_vfork;
static void *lib;
static int (*hold_value)(void);
static void (*hold_wait)(const char *);
static pthread_t holder;
static int holding, loads;

static void on_signal(int sig) {
        if (sig == SIGHUP)
                want_load = 1;
        else if (sig == SIGUSR2)
                want_vfork = 1;
        else
                want_unload = 1;
}

static void *hold(void *file) {
        hold_wait(file);
        return NULL;
}

static void load(void) {
        const char *file = getenv("HOLD_FILE");

        lib = dlopen("liblatehold.so", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
                fprintf(stderr, "dlopen: %s\n", dlerror());
                exit(1);
        }
        hold_value = (int (*)(void))dlsym(lib, "hold_value");
        hold_wait = (void (*)(const char *))dlsym(lib, "hold_wait");
        loads++;
        holding = file && pthread_create(&holder, NULL, hold, (void *)file) == 0;
}

static void unload(void) {
        if (holding)
                pthread_join(holder, NULL);
        holding = 0;
        hold_value = NULL;
        hold_wait = NULL;
        if (dlclose(lib) != 0) {
                fprintf(stderr, "dlclose: %s\n", dlerror());
                exit(1);
        }
        lib = NULL;
}

/* The child sleeps, then exits: the parent waits in the kernel, unstoppable. */
static void vfork_wait(void) {
        const char *ms = getenv("LATE_VFORK_MS");
        long n = ms ? atol(ms) : 3000;
        struct timespec ts = { n / 1000, (n % 1000) * 1000000 };

        printf("vfork\n");
        if (vfork() == 0) {
                nanosleep(&ts, NULL);
                _exit(0);
        }
}

int main(void) {
        signal(SIGHUP, on_signal);
        signal(SIGUSR1, on_signal);
        signal(SIGUSR2, on_signal);
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (;;) {
                if (want_load && !lib)
                        load();
                want_load = 0;
                if (want_unload && lib)
                        unload();
                want_unload = 0;
                if (want_vfork)
                        vfork_wait();
                want_vfork = 0;
                printf("base=%d hold=%d loads=%d\n", base_value(), hold_value ? hold_value() : -1, loads);
                nanosleep(&(struct timespec) { 0, 20 * 1000 * 1000 }, NULL);
        }
}
