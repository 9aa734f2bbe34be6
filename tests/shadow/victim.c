/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Accounts for the shadow-variable tests (docs/shadow.md): two workers and the main
 * thread deposit into four accounts; every 100 ms the main thread prints
 *     tick=N version=V audit=A0,A1,A2,A3 calls=C0,C1,C2,C3
 * where version() and audit() are what patches replace (the original: 0 and -1: an
 * account has no deposit counter) and calls the deposits made into each account so far,
 * counted by their callers. On SIGUSR1 the main thread forks a child that prints
 *     child version=V audit=... after=A0
 * (after: account 0's audit once the child made a deposit of its own) and exits.
 * With the argument "single", the main thread is the only one.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct account {
        long number;
        long balance;
};

struct account accounts[4] = { { 1001, 0 }, { 1002, 0 }, { 1003, 0 }, { 1004, 0 } };
static long calls[4];

int version(void);
void deposit(struct account *a, long cents);
long audit(struct account *a);

static volatile int original;

__attribute__((noipa)) int version(void) {
        original = 0;   /* more than a 5-byte jump's worth of code */
        return original;
}

__attribute__((noipa)) void deposit(struct account *a, long cents) {
        __atomic_add_fetch(&a->balance, cents, __ATOMIC_RELAXED);
}

__attribute__((noipa)) long audit(struct account *a) {
        return -1;
}

static volatile sig_atomic_t fork_asked;

static void on_usr1(int sig) {
        fork_asked = 1;
}

static void *worker(void *arg) {
        unsigned seed = (unsigned)(size_t)arg;
        for (;;) {
                int k = rand_r(&seed) % 4;
                __atomic_add_fetch(&calls[k], 1, __ATOMIC_RELAXED);
                deposit(&accounts[k], 1 + rand_r(&seed) % 500);
                usleep(500);
        }
        return NULL;
}

static void print_line(const char *prefix) {
        printf("%sversion=%d audit=%ld,%ld,%ld,%ld", prefix, version(), audit(&accounts[0]), audit(&accounts[1]),
               audit(&accounts[2]), audit(&accounts[3]));
}

static void child(void) {
        print_line("child ");
        deposit(&accounts[0], 1);   /* the child alone now: no other thread deposits */
        printf(" after=%ld\n", audit(&accounts[0]));
        fflush(stdout);
        _exit(0);
}

int main(int argc, char **argv) {
        bool single = argc > 1 && strcmp(argv[1], "single") == 0;
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGUSR1, on_usr1);
        for (long i = 0; i < 2 && !single; i++)
                pthread_create(&t, NULL, worker, (void *)(i + 1));
        for (unsigned long tick = 0;; tick++) {
                for (int i = 0; i < 4; i++) {
                        __atomic_add_fetch(&calls[i], 1, __ATOMIC_RELAXED);
                        deposit(&accounts[i], 100);
                }
                if (fork_asked) {
                        fork_asked = 0;
                        pid_t pid = fork();
                        if (pid == 0)
                                child();
                        if (pid > 0)
                                waitpid(pid, NULL, 0);
                }
                if (tick % 5 == 0) {
                        printf("tick=%lu ", tick / 5);
                        print_line("");
                        printf(" calls=%ld,%ld,%ld,%ld\n", __atomic_load_n(&calls[0], __ATOMIC_RELAXED),
                               __atomic_load_n(&calls[1], __ATOMIC_RELAXED),
                               __atomic_load_n(&calls[2], __ATOMIC_RELAXED),
                               __atomic_load_n(&calls[3], __ATOMIC_RELAXED));
                }
                usleep(20000);
        }
}
