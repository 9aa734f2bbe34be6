/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A process of the processes benchmark: two threads, one library (bench/lib.c).
 *
 *     bench-lib-victim READY_FD [WAKE_US]
 *
 * The main thread blocks in read() on stdin; the other thread sleeps, waking every
 * WAKE_US microseconds (0, the default: never) to call blib_value(). Once both run,
 * the process writes one byte to READY_FD (one pipe shared by all of them, so that a
 * thousand processes need one descriptor in the driver) and exits at EOF on stdin, or
 * when the driver dies (PR_SET_PDEATHSIG: a thousand of them never outlive an
 * interrupted run, even one whose stdin a stopped ulpctl holds up).
 */
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int blib_value(int x);

static unsigned wake_us;
static volatile int sink;

static void *worker(void *arg) {
        struct timespec ts = { .tv_sec = wake_us ? 0 : 3600, .tv_nsec = (long)wake_us * 1000L };
        (void)arg;
        for (;;) {
                nanosleep(&ts, NULL);
                sink = blib_value(sink);
        }
        return NULL;
}

int main(int argc, char **argv) {
        pthread_t t;
        char c;
        int fd;

        if (argc < 2)
                return 2;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                return 1;   /* the driver is gone already */
        fd = atoi(argv[1]);
        wake_us = argc > 2 ? (unsigned)atoi(argv[2]) % 1000000u : 0;
        if (pthread_create(&t, NULL, worker, NULL) != 0)
                return 1;
        if (write(fd, "r", 1) != 1)
                return 1;
        close(fd);
        while (read(0, &c, 1) > 0)
                ;
        return 0;
}
