/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Victim of tests/nostop: GUARD_CALLERS threads call guarded() (returns 1) in a tight
 * loop and count what they get; other() returns 2, where a guarded int3 sends them.
 * Modes:
 *   own    a SIGTRAP handler of its own, and a thread that executes an int3 of its own
 *          every millisecond (counted by the handler);
 *   dfl    the default disposition; raise_trap makes the main thread execute an int3;
 *   block  as dfl, with SIGTRAP blocked in the callers;
 *   hot    the callers call tiny() instead, whose first 5 bytes are three instructions;
 *   hotlead as hot, the main thread (the one borrowed first) the last of the callers;
 *   spawn  as guarded, and the main thread creates a short-lived thread every millisecond
 *          (spawn_n, spawn_tids), and counts the SIGUSR2 it handles.
 * Usage: victim-guard MODE MEMFD
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "victim-shared.h"

int guarded(void);
int other(void);
void own_trap_site(void);
__asm__(".text\n"
        ".p2align 4\n.globl guarded\n.type guarded,@function\n"
        "guarded:\n\tmov $1, %eax\n\tret\n"
        ".p2align 4\n.globl other\n.type other,@function\n"
        "other:\n\tmov $2, %eax\n\tret\n"
        ".p2align 4\n.globl own_trap_site\n.type own_trap_site,@function\n"
        "own_trap_site:\n\tint3\n\tret\n"
        ".p2align 4\n.globl tiny\n.type tiny,@function\n"
        "tiny:\n\tpush %rbx\n\tmov %rdi, %rbx\n\tpop %rbx\n\tmov $1, %eax\n\tret\n"
        ".size tiny, .-tiny\n"
        ".p2align 4\n.globl tiny_new\n.type tiny_new,@function\n"
        "tiny_new:\n\tmov $2, %eax\n\tret\n"
        ".p2align 4\n.globl tiny_trapped\n.type tiny_trapped,@function\n"
        "tiny_trapped:\n\tmov $3, %eax\n\tret\n"
        ".p2align 4\ncopy_area:\n\t.fill 256, 1, 0xcc\n"
        ".p2align 4\nguard_area:\n\t.fill 2048, 1, 0xcc\n");
int tiny(void);
int tiny_new(void);
int tiny_trapped(void);
extern const char copy_area[], guard_area[];

static GuardShared *sh;
static int (*volatile call)(void) = guarded;
static bool block_trap;

static void on_trap(int sig, siginfo_t *si, void *uc) {
        const ucontext_t *u = uc;
        /* The int3 at own_trap_site: the PC is one past it. */
        if (sig == SIGTRAP && (uint64_t)u->uc_mcontext.gregs[REG_RIP] == (uint64_t)own_trap_site + 1)
                sh->own_traps++;
        else
                sh->own_trap_bad++;
}

static void *caller(void *arg) {
        volatile uint64_t *c = sh->calls[(long)arg];
        if (block_trap) {
                sigset_t s;
                sigemptyset(&s);
                sigaddset(&s, SIGTRAP);
                pthread_sigmask(SIG_BLOCK, &s, NULL);
        }
        for (;;) {
                int v = call();
                c[v >= 1 && v <= 3 ? v - 1 : 3]++;
        }
        return NULL;
}

static void on_usr2(int sig) {
        sh->usr2++;
}

static void *spawned(void *arg) {
        uint32_t i = __atomic_fetch_add(&sh->spawn_n, 1, __ATOMIC_SEQ_CST);
        struct timespec ts = { 0, 1000000 };
        if (i < GUARD_SPAWN_MAX)
                sh->spawn_tids[i] = (int32_t)gettid();
        nanosleep(&ts, NULL);
        return NULL;
}

static void *trapper(void *arg) {
        struct timespec ts = { 0, 1000000 };
        for (;;) {
                own_trap_site();
                nanosleep(&ts, NULL);
        }
        return NULL;
}

int main(int argc, char **argv) {
        pthread_t th;
        bool own;

        if (argc < 3)
                return 2;
        own = !strcmp(argv[1], "own");
        block_trap = !strcmp(argv[1], "block");
        if (!strncmp(argv[1], "hot", 3))
                call = tiny;
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, atoi(argv[2]), 0);
        if (sh == MAP_FAILED)
                return 2;
        if (own) {
                struct sigaction sa = { .sa_sigaction = on_trap, .sa_flags = SA_SIGINFO | SA_RESTART };
                sigaction(SIGTRAP, &sa, NULL);
                sh->own_handler_addr = (uint64_t)on_trap;
                pthread_create(&th, NULL, trapper, NULL);
        }
        sh->guarded_addr = (uint64_t)guarded;
        sh->other_addr = (uint64_t)other;
        sh->tiny_addr = (uint64_t)tiny;
        sh->tiny_size = 11;
        sh->tiny_new_addr = (uint64_t)tiny_new;
        sh->tiny_trapped_addr = (uint64_t)tiny_trapped;
        sh->copy_area = (uint64_t)copy_area;
        sh->guard_area = (uint64_t)guard_area;
        for (long i = 0; i < GUARD_CALLERS; i++)
                if (i < GUARD_CALLERS - 1 || strcmp(argv[1], "hotlead"))
                        pthread_create(&th, NULL, caller, (void *)i);
        sh->ready = 1;
        if (!strcmp(argv[1], "hotlead"))
                caller((void *)(GUARD_CALLERS - 1));
        if (!strcmp(argv[1], "spawn"))
                signal(SIGUSR2, on_usr2);
        while (!strcmp(argv[1], "spawn")) {
                struct timespec ts = { 0, 1000000 };
                /* Room is kept for the threads already created to write their tid. */
                if (sh->spawn_n < GUARD_SPAWN_MAX - 1024 && pthread_create(&th, NULL, spawned, NULL) == 0)
                        pthread_detach(th);
                nanosleep(&ts, NULL);
        }
        for (;;) {
                struct sigaction cur;
                struct timespec ts = { 0, 1000000 };
                sigaction(SIGTRAP, NULL, &cur);
                sh->handler_now = (uint64_t)cur.sa_sigaction;
                if (sh->raise_trap)
                        own_trap_site();
                nanosleep(&ts, NULL);
        }
}
