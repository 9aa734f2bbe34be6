/*
 * Victim of tests/reach's case signal-handler: a worker thread calls small_fn (8 bytes:
 * pause; lea 0x1(%rdi),%eax; add %edi,%eax; ret) in a loop; the main thread sends it
 * SIGUSR1 until its handler finds the interrupted PC strictly inside small_fn's first 5
 * bytes (the bytes an entry jump replaces: on the lea, the slow pause before it makes
 * that the likely place). That handler prints "caught at +N" and stays in the handler, asleep, until
 * the process gets SIGUSR2; then it prints "handler returned" and returns, resuming the
 * worker where the signal frame says. The main thread prints every 10 ms:
 *     tick N small=S worker=W
 * (W: the worker's calls so far, still while it sits in the handler).
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

volatile int sink;
static volatile unsigned long worker_calls;
static volatile sig_atomic_t caught, released;

/* Written out, so that its instructions are known whatever the compiler: 2x + 1. */
int small_fn(int x);
__asm__(".text\n"
        ".globl small_fn\n"
        ".type small_fn, @function\n"
        ".p2align 4\n"
        "small_fn:\n"
        "        pause\n"
        "        lea 0x1(%rdi), %eax\n"
        "        add %edi, %eax\n"
        "        ret\n"
        ".size small_fn, . - small_fn\n");

static int (*volatile p_small)(int) = small_fn;

static void say(const char *s) {
        ssize_t n = write(STDOUT_FILENO, s, strlen(s));
        (void)n;
}

static void on_usr2(int sig) {
        (void)sig;
        released = 1;
}

static void on_usr1(int sig, siginfo_t *si, void *ucv) {
        const ucontext_t *uc = ucv;
        uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP], at = (uintptr_t)small_fn;
        char buf[32];

        (void)sig;
        (void)si;
        if (caught || pc <= at || pc >= at + 5)
                return;
        caught = (int)(pc - at);
        snprintf(buf, sizeof(buf), "caught at +%d\n", (int)caught);
        say(buf);
        while (!released) {
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        say("handler returned\n");
}

static void *worker(void *arg) {
        (void)arg;
        for (;;) {
                sink = p_small(1);
                worker_calls++;
        }
        return NULL;
}

int main(void) {
        struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO };
        struct sigaction sb = { .sa_handler = on_usr2 };
        pthread_t w;

        setvbuf(stdout, NULL, _IOLBF, 0);
        sigemptyset(&sa.sa_mask);
        sigemptyset(&sb.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        sigaction(SIGUSR2, &sb, NULL);
        pthread_create(&w, NULL, worker, NULL);
        for (unsigned long tick = 0;; tick++) {
                for (int i = 0; i < 20 && !caught; i++) {
                        pthread_kill(w, SIGUSR1);
                        usleep(200);
                }
                printf("tick %lu small=%d worker=%lu\n", tick, p_small(10), worker_calls);
                usleep(10000);
        }
}
