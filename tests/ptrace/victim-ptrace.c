/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Victim for tests/ptrace: victim-ptrace MODE SHM_FD PIPE_FD [ARG]
 *   threads  counter threads, a thread in nanosleep, one in read() on PIPE_FD, one in
 *            ppoll() with a temporary mask, signal handlers; reports into the memfd
 *   spawn    creates short-lived threads in a loop
 *   exit     a few threads; the process exits after ARG ms
 *   zombie   worker threads; the leader calls pthread_exit() when told
 */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "victim-shared.h"

long add3(long a, long b, long c);
long crash(void);
long spin(void);
long unused_code(long x);
long entry_rsp(void);
long clobber(void);

/* rsp as the function finds it at its entry. */
__asm__(".globl entry_rsp\n.type entry_rsp,@function\nentry_rsp:\n\tmov %rsp, %rax\n\tret\n");
/* Overwrites vector and x87 state, as any callback may. */
__asm__(".globl clobber\n.type clobber,@function\nclobber:\n"
        "\tpcmpeqd %xmm0, %xmm0\n\tpcmpeqd %xmm7, %xmm7\n\tpcmpeqd %xmm15, %xmm15\n"
        "\tfninit\n\tfld1\n\txor %eax, %eax\n\tret\n");

static VictimShared *sh;
static int pipe_fd = -1;

__attribute__((noipa, used, visibility("default"))) long add3(long a, long b, long c) {
        return a + b + c;
}

__attribute__((noipa, used, visibility("default"))) long crash(void) {
        return *(volatile long *)0;
}

__attribute__((noipa, used, visibility("default"))) long spin(void) {
        while (!sh->spin_release)
                __asm__ volatile("pause");
        __atomic_add_fetch(&sh->spin_returns, 1, __ATOMIC_SEQ_CST);
        return 42;
}

/* Never called: target_write writes into it. */
__attribute__((noipa, used, visibility("default"))) long unused_code(long x) {
        return x * 3 + 7 - (x >> 2) * 5 + (x ^ 0x1234);
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_usr1(int sig) { __atomic_add_fetch(&sh->usr1_count, 1, __ATOMIC_SEQ_CST); }
static void on_segv(int sig) {
        __atomic_add_fetch(&sh->segv_count, 1, __ATOMIC_SEQ_CST);
        _exit(3);
}
static void on_rt(int sig, siginfo_t *si, void *uc) {
        __atomic_add_fetch(&sh->rt_count, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&sh->rt_sum, (uint64_t)si->si_value.sival_int, __ATOMIC_SEQ_CST);
}

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* The threads whose syscalls are checked keep the test's signals away: a handler
 * would make their calls fail with EINTR by design. */
static void block_test_signals(sigset_t *set) {
        sigaddset(set, SIGUSR1);
        sigaddset(set, SIGRTMIN);
        pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void *counter_thread(void *arg) {
        long i = (long)arg;
        sh->counter_tids[i] = gettid_();
        for (;;) {
                sh->counters[i]++;
                if (i >= 1) {
                        struct timespec ts = { 0, 100000 };
                        nanosleep(&ts, NULL);
                }
        }
        return NULL;
}

static void *sleeper_thread(void *arg) {
        sigset_t set;
        sigemptyset(&set);
        block_test_signals(&set);
        sh->sleeper_tid = gettid_();
        for (;;) {
                struct timespec ts = { 0, VICTIM_SLEEP_NS };
                uint64_t t0 = now_ns();
                errno = 0;
                int r = nanosleep(&ts, NULL);
                uint64_t dt = now_ns() - t0;
                sh->sleep_last_ret = r;
                sh->sleep_last_errno = errno;
                if (r == 0 && dt >= (uint64_t)VICTIM_SLEEP_NS)
                        sh->sleeps_ok++;
                else
                        sh->sleeps_bad++;
        }
        return NULL;
}

static void *reader_thread(void *arg) {
        sigset_t set;
        sigemptyset(&set);
        block_test_signals(&set);
        sh->reader_tid = gettid_();
        errno = 0;
        ssize_t n = read(pipe_fd, sh->read_buf, sizeof(sh->read_buf) - 1);
        sh->read_errno = errno;
        sh->read_ret = n;
        sh->read_done = 1;
        return NULL;
}

/* Its mask blocks SIGWINCH; ppoll's temporary mask blocks SIGUSR2 instead. After each
 * ppoll the mask must be the thread's own again. */
static void *ppoller_thread(void *arg) {
        sigset_t own, tmp, cur;
        sigemptyset(&own);
        sigaddset(&own, SIGWINCH);
        pthread_sigmask(SIG_SETMASK, &own, NULL);
        block_test_signals(&own);
        sigemptyset(&tmp);
        sigaddset(&tmp, SIGUSR2);
        sigaddset(&tmp, SIGUSR1);
        sigaddset(&tmp, SIGRTMIN);
        sh->ppoller_tid = gettid_();
        for (;;) {
                struct timespec ts = { 0, 5000000 };
                int r = ppoll(NULL, 0, &ts, &tmp);
                if (r != 0)
                        sh->ppoll_bad++;
                pthread_sigmask(SIG_SETMASK, NULL, &cur);
                if (!sigismember(&cur, SIGWINCH) || sigismember(&cur, SIGUSR2))
                        sh->ppoll_mask_bad++;
                sh->ppolls++;
        }
        return NULL;
}

static void start(void *(*fn)(void *), void *arg) {
        pthread_t t;
        if (pthread_create(&t, NULL, fn, arg) != 0)
                abort();
        pthread_detach(t);
}

static void *short_thread(void *arg) {
        uint64_t t0 = now_ns();
        while (now_ns() - t0 < 1000000)
                ;
        return NULL;
}

static void *busy_thread(void *arg) {
        for (;;) {
                sh->counters[(long)arg % VICTIM_COUNTERS]++;
                struct timespec ts = { 0, 200000 };
                nanosleep(&ts, NULL);
        }
        return NULL;
}

static void mode_threads(void) {
        struct sigaction sa = { 0 };
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        sa.sa_handler = on_segv;
        sigaction(SIGSEGV, &sa, NULL);
        sa.sa_handler = NULL;
        sa.sa_sigaction = on_rt;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGRTMIN, &sa, NULL);

        for (long i = 0; i < VICTIM_COUNTERS; i++)
                start(counter_thread, (void *)i);
        start(sleeper_thread, NULL);
        start(reader_thread, NULL);
        start(ppoller_thread, NULL);
        for (int i = 0; i < VICTIM_COUNTERS; i++)
                while (!sh->counter_tids[i])
                        usleep(1000);
        while (!sh->sleeper_tid || !sh->reader_tid || !sh->ppoller_tid)
                usleep(1000);
        sh->ready = 1;
        for (;;) {
                struct sigaction cur;
                sigaction(SIGSEGV, NULL, &cur);
                if (cur.sa_handler != on_segv)
                        sh->handler_changed = 1;
                memcpy((void *)sh->code_copy, (const void *)(uintptr_t)unused_code, sizeof(sh->code_copy));
                sh->main_loops++;
                usleep(1000);
        }
}

static void mode_spawn(void) {
        sh->ready = 1;
        for (;;) {
                pthread_t t;
                if (pthread_create(&t, NULL, short_thread, NULL) == 0) {
                        pthread_detach(t);
                        sh->spawned++;
                }
                usleep(200);
        }
}

/* Exits ms after the test says go (a byte on the pipe, once its Target is open): counted
 * from ready, a loaded machine could let the exit come before the open. */
static void mode_exit(long ms) {
        char go;

        for (long i = 0; i < 4; i++)
                start(busy_thread, (void *)i);
        sh->ready = 1;
        if (read(pipe_fd, &go, 1) != 1)
                exit(2);
        usleep((useconds_t)ms * 1000);
        exit(0);
}

static void mode_zombie(void) {
        for (long i = 0; i < 3; i++)
                start(busy_thread, (void *)i);
        sh->ready = 1;
        while (!sh->leader_exit)
                usleep(1000);
        pthread_exit(NULL);
}

int main(int argc, char **argv) {
        if (argc < 4)
                return 2;
        int fd = atoi(argv[2]);
        pipe_fd = atoi(argv[3]);
        sh = mmap(NULL, sizeof(VictimShared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (sh == MAP_FAILED)
                return 2;
        sh->main_tid = gettid_();
        sh->add3_addr = (uintptr_t)add3;
        sh->crash_addr = (uintptr_t)crash;
        sh->spin_addr = (uintptr_t)spin;
        sh->unused_code_addr = (uintptr_t)unused_code;
        sh->entry_rsp_addr = (uintptr_t)entry_rsp;
        sh->clobber_addr = (uintptr_t)clobber;

        if (!strcmp(argv[1], "threads"))
                mode_threads();
        else if (!strcmp(argv[1], "spawn"))
                mode_spawn();
        else if (!strcmp(argv[1], "exit"))
                mode_exit(argc > 4 ? atol(argv[4]) : 100);
        else if (!strcmp(argv[1], "zombie"))
                mode_zombie();
        return 2;
}
