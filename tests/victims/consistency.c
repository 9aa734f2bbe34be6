/*
 * The consistency victim. Worker threads call outer(), which calls inner() twice with a
 * sleep between; each version of outer checks that both inner calls came from its own
 * version (inner returns its version number); a mix counts in "mixed". Options:
 *   -n N      worker threads calling outer() (default 4)
 *   -b FIFO   a thread sits inside blocker() until a byte arrives on FIFO
 *   -x        ... and then exits from inside blocker() (pthread_exit)
 *   -s        a spawner creates short-lived threads continuously; each calls outer()
 *             three times and counts the versions it saw in s1/s2
 *   -l USEC   a thread calls slow() (patched), which takes USEC microseconds, in a loop
 *   -V PATH   on SIGWINCH the main thread vforks; the child waits until PATH exists, then
 *             exits: the main thread sits in uninterruptible sleep (no stop) meanwhile,
 *             and prints "vfork ended" after
 * Signals: SIGUSR1 makes a worker fork a child that goes on calling outer() alone and
 * prints "child ..." lines; SIGUSR2 makes the main thread exec /bin/sleep; SIGHUP
 * makes it dlopen libplugin.so; SIGWINCH makes it vfork (-V); SIGURG makes it start one
 * more worker (no fork on SIGUSR1), printing "worker started tid=N".
 * Prints every 20 ms:
 *   v1=N v2=N mixed=N blocked=0|1 s1=N s2=N f=N g=N base=N plugin=N slow=N slow2=N cb=LOG
 * (slow: calls of slow() that returned the right value; slow2: those of its version 2),
 * and at each mixed call, at once: MIX outer=V inner=A,B tid=T tp=P at=MONOTONIC
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int base_value(void);

atomic_ulong calls_v1, calls_v2, mixed, spawned_v1, spawned_v2, slow_calls, slow_v2_calls;
atomic_int blocked;
char cblog[256];                 /* appended to by the patches' callbacks */
volatile int spin;
static const char *fifo;
static int exit_in_blocker;
unsigned slow_usec;
static volatile sig_atomic_t want_fork, want_exec, want_plugin, want_vfork, want_worker;
static const char *vfork_hold;
static int (*plugin_value)(void);

int inner(void);
int outer(void);
void note_mix(int outer_v, int a, int b);

/* A mixed call, told at once on stdout with the thread and the clock (CLOCK_MONOTONIC),
 * so that a failure can be set beside what the patcher did at that moment. */
__attribute__((noipa)) void note_mix(int outer_v, int a, int b) {
        struct timespec ts;
        char buf[160];
        int n;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        n = snprintf(buf, sizeof(buf), "MIX outer=%d inner=%d,%d tid=%d tp=%#lx at=%ld.%09ld\n", outer_v, a, b,
                     (int)gettid(), (unsigned long)pthread_self(), (long)ts.tv_sec, ts.tv_nsec);
        (void)!write(STDOUT_FILENO, buf, (size_t)n);
}
int blocker(void);
int fa(void);
int ga(void);
int slow(void);

__attribute__((noipa)) int inner(void) {
        for (int i = 0; i < 8; i++)
                spin += i;
        return 1;
}

__attribute__((noipa)) int outer(void) {
        int a = inner();
        usleep(200);
        int b = inner();
        if (a != 1 || b != 1) {
                atomic_fetch_add(&mixed, 1);
                note_mix(1, a, b);
        }
        atomic_fetch_add(&calls_v1, 1);
        return a + b;
}

__attribute__((noipa)) int blocker(void) {
        char c;
        int fd;
        atomic_store(&blocked, 1);
        fd = open(fifo, O_RDONLY);
        if (fd >= 0) {
                while (read(fd, &c, 1) < 0)
                        ;
                close(fd);
        }
        atomic_store(&blocked, 0);
        if (exit_in_blocker)
                pthread_exit(NULL);
        return inner();
}

__attribute__((noipa)) int fa(void) {
        return spin >= 0 ? 1 : 0;
}

__attribute__((noipa)) int ga(void) {
        return spin >= 0 ? 1 : 0;
}

/* Takes slow_usec and returns 7: a thread is inside it nearly all the time, so only a
 * return trap catches it outside. The result must not depend on the switch. */
__attribute__((noipa)) int slow(void) {
        struct timespec ts = { slow_usec / 1000000, (long)(slow_usec % 1000000) * 1000 };
        nanosleep(&ts, NULL);
        return 7;
}

static void child_loop(void) {
        char buf[160];
        int n;
        atomic_store(&calls_v1, 0);
        atomic_store(&calls_v2, 0);
        atomic_store(&mixed, 0);
        n = snprintf(buf, sizeof(buf), "child pid=%d\n", (int)getpid());
        (void)!write(STDOUT_FILENO, buf, (size_t)n);
        for (unsigned i = 0;; i++) {
                outer();
                if (i % 20 == 0) {
                        n = snprintf(buf, sizeof(buf), "child v1=%lu v2=%lu mixed=%lu\n", atomic_load(&calls_v1),
                                     atomic_load(&calls_v2), atomic_load(&mixed));
                        (void)!write(STDOUT_FILENO, buf, (size_t)n);
                }
                usleep(200);
        }
}

static void *worker(void *arg) {
        for (;;) {
                outer();
                if (arg && want_fork) {
                        want_fork = 0;
                        if (fork() == 0)
                                child_loop();
                }
                usleep(200);
        }
        return NULL;
}

static void *short_lived(void *arg) {
        (void)arg;
        for (int i = 0; i < 3; i++)
                atomic_fetch_add(outer() == 2 ? &spawned_v1 : &spawned_v2, 1);
        return NULL;
}

static void *spawner(void *arg) {
        pthread_attr_t a;
        pthread_t t;
        (void)arg;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        for (;;) {
                if (pthread_create(&t, &a, short_lived, NULL) == 0)
                        usleep(500);
                else
                        usleep(5000);
        }
        return NULL;
}

static void *blocked_thread(void *arg) {
        (void)arg;
        blocker();
        return NULL;
}

static void *slow_thread(void *arg) {
        (void)arg;
        for (;;)
                if (slow() == 7)
                        atomic_fetch_add(&slow_calls, 1);
        return NULL;
}

static void on_signal(int sig) {
        if (sig == SIGUSR1)
                want_fork = 1;
        else if (sig == SIGUSR2)
                want_exec = 1;
        else if (sig == SIGWINCH)
                want_vfork = 1;
        else if (sig == SIGURG)
                want_worker = 1;
        else
                want_plugin = 1;
}

static void start(void *(*fn)(void *), void *arg) {
        pthread_t t;
        if (pthread_create(&t, NULL, fn, arg) != 0)
                abort();
}

static void *late_worker(void *arg) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "worker started tid=%d\n", (int)gettid());
        (void)arg;
        (void)!write(STDOUT_FILENO, buf, (size_t)n);
        return worker(NULL);
}

/* Main-thread work between prints: exec, dlopen and a worker on request. */
static void main_requests(void) {
        if (want_worker) {
                want_worker = 0;
                start(late_worker, NULL);
        }
        if (want_exec)
                execl("/bin/sleep", "sleep", "60", (char *)NULL);
        if (want_plugin && !plugin_value) {
                void *h = dlopen("libplugin.so", RTLD_NOW);
                plugin_value = h ? (int (*)(void))dlsym(h, "plugin_value") : NULL;
                want_plugin = 0;
        }
        if (want_vfork && vfork_hold) {
                want_vfork = 0;
                /* the child only polls with system calls, then _exit: what vfork allows */
                if (vfork() == 0) {
                        struct timespec ts = { 0, 10 * 1000 * 1000 };
                        while (access(vfork_hold, F_OK) != 0)
                                nanosleep(&ts, NULL);
                        _exit(0);
                }
                printf("vfork ended\n");
        }
}

int main(int argc, char **argv) {
        int n = 4, spawn = 0, c;

        while ((c = getopt(argc, argv, "n:b:xsl:V:")) != -1)
                switch (c) {
                case 'n': n = atoi(optarg); break;
                case 'b': fifo = optarg; break;
                case 'x': exit_in_blocker = 1; break;
                case 's': spawn = 1; break;
                case 'l': slow_usec = (unsigned)atoi(optarg); break;
                case 'V': vfork_hold = optarg; break;
                default: return 2;
                }
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGUSR1, on_signal);
        signal(SIGUSR2, on_signal);
        signal(SIGHUP, on_signal);
        signal(SIGWINCH, on_signal);
        signal(SIGURG, on_signal);
        for (int i = 0; i < n; i++)
                start(worker, i == 0 ? (void *)1 : NULL);
        if (fifo)
                start(blocked_thread, NULL);
        if (spawn)
                start(spawner, NULL);
        if (slow_usec)
                start(slow_thread, NULL);
        for (;;) {
                main_requests();
                printf("v1=%lu v2=%lu mixed=%lu blocked=%d s1=%lu s2=%lu f=%d g=%d base=%d plugin=%d slow=%lu slow2=%lu cb=%s\n",
                       atomic_load(&calls_v1), atomic_load(&calls_v2), atomic_load(&mixed), atomic_load(&blocked),
                       atomic_load(&spawned_v1), atomic_load(&spawned_v2), fa(), ga(), base_value(),
                       plugin_value ? plugin_value() : -1, atomic_load(&slow_calls), atomic_load(&slow_v2_calls), cblog[0] ? cblog : "-");
                usleep(20000);
        }
}
