/*
 * Test victim for slow and impossible thread stops. N busy worker threads call
 * compute(), the function the tests patch; a thread named "vforker" calls it too and
 * counts its rounds, and on SIGUSR1 vforks a child that sleeps MS milliseconds before it
 * exits, so that the vforker waits in uninterruptible sleep (D) all that time. With "all"
 * the main thread does the same each time it sees the vforker vfork, so that with no
 * workers no thread can be stopped for that long. The main thread prints every 10 ms
 * what the process observes:
 *     tick N compute=C spins=S vforks=V vtid=T
 * Usage: stops-victim N_WORKERS [MS [all]]
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile int sink;
volatile int bias; /* 0: keeps compute from folding into a few bytes */
static volatile sig_atomic_t vfork_wanted;
static volatile unsigned long vforks_begun;
static int main_vforks;
static volatile unsigned long spins, vforks;
static volatile pid_t vtid;
static long child_ms = 2000;

int compute(int x);

__attribute__((noipa)) int compute(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

/* Busy, and most of the time outside compute(), as a thread of a real program would be:
 * a pass finds it outside the patched function soon (this victim is about stops, not
 * about threads that never leave a patched function). */
static void *worker(void *arg) {
        (void)arg;
        for (;;) {
                sink = compute(1);
                for (volatile int i = 0; i < 200; i++)
                        ;
        }
        return NULL;
}

static void on_usr1(int sig) {
        (void)sig;
        vfork_wanted = 1;
}

/* vfork()s a child that sleeps child_ms, and waits for it in D state. */
static void vfork_and_wait(void) {
        pid_t c = vfork();
        if (c == 0) {
                /* Only raw system calls in the child: it runs on our stack. */
                struct timespec ts = { child_ms / 1000, (child_ms % 1000) * 1000000L };
                syscall(SYS_nanosleep, &ts, NULL);
                _exit(0);
        }
        if (c > 0)
                while (waitpid(c, NULL, 0) < 0)
                        ;
}

static void *vforker(void *arg) {
        (void)arg;
        vtid = (pid_t)syscall(SYS_gettid);
        for (;;) {
                sink = compute(2);
                spins++;
                usleep(1000);
                if (!vfork_wanted)
                        continue;
                vfork_wanted = 0;
                vforks_begun++;
                vfork_and_wait();
                vforks++;
        }
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        pthread_t t;

        if (argc > 2)
                child_ms = atol(argv[2]);
        main_vforks = argc > 3 && strcmp(argv[3], "all") == 0;
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGUSR1, on_usr1);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, NULL);
        pthread_create(&t, NULL, vforker, NULL);
        pthread_setname_np(t, "vforker");
        unsigned long seen = 0;
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu compute=%d spins=%lu vforks=%lu vtid=%d\n", tick, compute(10), spins, vforks,
                       (int)vtid);
                usleep(10000);
                if (main_vforks && vforks_begun > seen) {
                        seen = vforks_begun;
                        vfork_and_wait();
                }
        }
}
