/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Victim of the unwind tests: threads parked in known call chains. Prints one line per
 * thread, "ROLE TID", then "ready", on stdout, and sleeps until killed.
 *   main    main -> a -> b -> c -> pause
 *   chain   chain_thread -> f1 -> f2 -> read (a pipe nobody writes)
 *   nocfi   nocfi_thread -> nocfi_park (built without CFI) -> pause
 *   anon    anon_thread -> stub in anonymous executable memory, pausing
 *   signal  signal_thread -> sig_outer -> pthread_kill(self) ... handler -> h_inner -> read
 *   deep    deep_thread -> deep x DEEP_DEPTH -> pause
 *   patch   patch_thread -> patch_park -> patch_inner -> pause, in the library argv[1]
 *           loaded from a memfd named "ulp-patch:unwind" (as ulp maps patches)
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noipa))
#define NOT_A_TAIL_CALL() __asm__ volatile("" ::: "memory")
#define DEEP_DEPTH 300

void nocfi_park(void); /* victim-nocfi.c */

static int block_fd = -1;        /* read end of a pipe never written to */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t announced_cond = PTHREAD_COND_INITIALIZER;
static int announced;

static void announce(const char *role) {
        pthread_mutex_lock(&print_lock);
        printf("%s %d\n", role, gettid());
        fflush(stdout);
        announced++;
        pthread_cond_signal(&announced_cond);
        pthread_mutex_unlock(&print_lock);
}

NOINLINE static void c(void) {
        for (;;)
                pause();
}
NOINLINE static void b(void) { c(); NOT_A_TAIL_CALL(); }
NOINLINE static void a(void) { b(); NOT_A_TAIL_CALL(); }

NOINLINE static void f2(void) {
        char ch;
        for (;;)
                if (read(block_fd, &ch, 1) <= 0)
                        pause();
}
NOINLINE static void f1(void) { f2(); NOT_A_TAIL_CALL(); }
static void *chain_thread(void *arg) {
        announce("chain");
        f1();
        return NULL;
}

static void *nocfi_thread(void *arg) {
        announce("nocfi");
        nocfi_park();
        return NULL;
}

/* mov $34 (pause), %eax; syscall; jmp back to the mov */
static const unsigned char pause_stub[] = { 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7 };
static void *anon_thread(void *arg) {
        void (*stub)(void) = arg;
        announce("anon");
        stub();
        return NULL;
}

NOINLINE static void h_inner(void) {
        char ch;
        for (;;)
                if (read(block_fd, &ch, 1) <= 0)
                        pause();
}
static void handler(int sig) {
        h_inner();
        NOT_A_TAIL_CALL();
}
NOINLINE static void sig_outer(void) {
        pthread_kill(pthread_self(), SIGUSR1);
        NOT_A_TAIL_CALL();
}
static void *signal_thread(void *arg) {
        announce("signal");
        sig_outer();
        return NULL;
}

static volatile int deep_sink;
NOINLINE static void deep_park(void) {
        for (;;)
                pause();
}
NOINLINE static void deep(int n) {
        if (n == 0)
                deep_park();
        else
                deep(n - 1);
        deep_sink++;
}
static void *deep_thread(void *arg) {
        announce("deep");
        deep(DEEP_DEPTH);
        return NULL;
}

/* Copies the library at path into a memfd named like a ulp patch and loads it from there;
 * returns its patch_park, or NULL. */
static void *load_patch(const char *path) {
        char buf[65536], fdpath[64];
        ssize_t n;
        int in, mfd;
        void *h;

        in = open(path, O_RDONLY | O_CLOEXEC);
        mfd = memfd_create("ulp-patch:unwind", MFD_CLOEXEC);
        if (in < 0 || mfd < 0)
                return NULL;
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(mfd, buf, n) != n)
                        return NULL;
        close(in);
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", mfd);
        h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
        close(mfd);
        return h ? dlsym(h, "patch_park") : NULL;
}

static void *patch_thread(void *arg) {
        void (*park)(void) = arg;
        announce("patch");
        park();
        return NULL;
}

int main(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = handler };
        pthread_t t;
        int p[2];
        void *stub, *park;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (pipe(p) < 0)
                return 1;
        block_fd = p[0];
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR1, &sa, NULL) < 0)
                return 1;
        stub = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
        if (stub == MAP_FAILED)
                return 1;
        memcpy(stub, pause_stub, sizeof(pause_stub));
        park = argc > 1 ? load_patch(argv[1]) : NULL;
        if (argc > 1 && !park)
                return 1;

        announce("main");
        if (pthread_create(&t, NULL, chain_thread, NULL) != 0 ||
            pthread_create(&t, NULL, nocfi_thread, NULL) != 0 ||
            pthread_create(&t, NULL, anon_thread, stub) != 0 ||
            pthread_create(&t, NULL, signal_thread, NULL) != 0 ||
            pthread_create(&t, NULL, deep_thread, NULL) != 0 ||
            (park && pthread_create(&t, NULL, patch_thread, park) != 0))
                return 1;
        pthread_mutex_lock(&print_lock);
        while (announced < (park ? 7 : 6))
                pthread_cond_wait(&announced_cond, &print_lock);
        printf("ready\n");
        fflush(stdout);
        pthread_mutex_unlock(&print_lock);

        a();
        return 0;
}
