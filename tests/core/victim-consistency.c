/*
 * The consistency victim. Worker threads call outer(), which calls inner() twice with a
 * sleep between; each version of outer checks that both inner calls came from its own
 * version (inner returns its version number). A mix counts in "mixed". One thread sits
 * inside blocker() (patched too) until the test writes a byte into the fifo argv[2].
 * Prints every 20 ms:  v1=CALLS v2=CALLS mixed=N blocked=0|1
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

atomic_ulong calls_v1, calls_v2, mixed;
atomic_int blocked;
static const char *fifo;
volatile int spin;

int inner(void);
int outer(void);
int blocker(void);

__attribute__((noipa)) int inner(void) {
        for (int i = 0; i < 8; i++)
                spin += i;
        return 1;
}

__attribute__((noipa)) int outer(void) {
        int a = inner();
        /* About half of a worker's time is spent here, between the two calls. */
        usleep(200);
        int b = inner();
        if (a != 1 || b != 1)
                atomic_fetch_add(&mixed, 1);
        atomic_fetch_add(&calls_v1, 1);
        return a + b;
}

__attribute__((noipa)) int blocker(void) {
        char c;
        int fd;
        atomic_store(&blocked, 1);
        fd = open(fifo, O_RDONLY); /* blocks until the test opens the fifo to write */
        if (fd >= 0) {
                while (read(fd, &c, 1) < 0)
                        ;
                close(fd);
        }
        atomic_store(&blocked, 0);
        return inner();
}

static void *worker(void *arg) {
        (void)arg;
        for (;;) {
                outer();
                usleep(200);
        }
        return NULL;
}

static void *blocked_thread(void *arg) {
        (void)arg;
        blocker();
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 8;
        pthread_t t;

        fifo = argc > 2 ? argv[2] : NULL;
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, NULL);
        if (fifo)
                pthread_create(&t, NULL, blocked_thread, NULL);
        for (;;) {
                printf("v1=%lu v2=%lu mixed=%lu blocked=%d\n", atomic_load(&calls_v1), atomic_load(&calls_v2),
                       atomic_load(&mixed), atomic_load(&blocked));
                usleep(20000);
        }
}
