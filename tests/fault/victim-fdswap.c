/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A hostile victim for the patch load (test-fdswap.sh). It opens FILE read-only; a line
 * on stdin arms a thread that spins until the lowest free descriptor number comes into
 * use (the memfd a patch load makes in the process) and puts FILE there with dup2(),
 * then prints "swapped N". The main thread prints "compute=C" every 10 ms, C being
 * compute(1): 2 unpatched, 3 with tests/core/patch-compute.so.
 *     fault-victim-fdswap FILE
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile int bias;
static int ro_fd;
static volatile int next_fd = -1;

int compute(int x);

__attribute__((noipa)) int compute(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

static void *racer(void *arg) {
        (void)arg;
        for (;;) {
                int fd = next_fd;
                if (fd < 0) {
                        usleep(1000);
                        continue;
                }
                while (fcntl(fd, F_GETFD) < 0)
                        ;
                char path[64], link[128] = "";
                ssize_t n;
                next_fd = -1;
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, link, sizeof(link) - 1);
                link[n > 0 ? n : 0] = 0;
                if (dup2(ro_fd, fd) == fd) {
                        printf("swapped %d (%s)\n", fd, link);
                        fflush(stdout);
                }
        }
        return NULL;
}

static void *reader(void *arg) {
        char line[64];

        (void)arg;
        while (fgets(line, sizeof(line), stdin)) {
                /* the lowest free number: the next one the kernel hands out */
                int fd = dup(STDERR_FILENO);
                if (fd < 0)
                        exit(2);
                close(fd);
                next_fd = fd;
        }
        exit(0);
}

int main(int argc, char **argv) {
        pthread_t t;

        if (argc != 2 || (ro_fd = open(argv[1], O_RDONLY | O_CLOEXEC)) < 0)
                return 2;
        if (pthread_create(&t, NULL, racer, NULL) || pthread_create(&t, NULL, reader, NULL))
                return 2;
        for (;;) {
                printf("compute=%d\n", compute(1));
                fflush(stdout);
                usleep(10000);
        }
}
