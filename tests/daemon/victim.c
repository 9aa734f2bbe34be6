/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Victim for the ulpd tests. Worker threads call outer(), which calls inner() twice
 * with a pause between; each version of outer() checks that both calls reached its own
 * version of inner() and counts a violation otherwise: a thread running a mix of old
 * and new code within one call chain is seen by the process itself.
 *
 *     victim STATUS_FILE [THREADS [PAUSE_US [SLEEPER_MS [nodump]]]]
 *
 * Every 20 ms the main thread rewrites STATUS_FILE with one line
 *     v1=N v2=N bad=N sleeper=0|1 entered=0|1
 * (calls answered by each version, violations, whether the sleeper thread is inside
 * its one long call of outer(), whether it ever entered it: on a loaded machine the
 * call may end before a reader sees sleeper=1). SLEEPER_MS > 0 starts a thread that
 * makes one call of outer() lasting that long, so that a transition cannot finish
 * before it returns. A thread it cannot start ends the victim with exit 1.
 * "nodump" makes the process non-dumpable.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

int inner(void);
int outer(unsigned pause_us);

atomic_ulong violations;   /* the patch finds it with ULP_REF */
static atomic_ulong calls[3];
static atomic_int sleeper_inside, sleeper_entered;
static unsigned pause_us = 200;
volatile int bias;         /* keeps inner() from being folded into its callers */

__attribute__((noipa)) int inner(void) {
        return 1 + bias;
}

__attribute__((noipa)) int outer(unsigned us) {
        int a = inner();
        if (us)
                usleep(us);
        int b = inner();
        if (a != 1 || b != 1)
                atomic_fetch_add(&violations, 1);
        return 1;
}

static void count(int v) {
        atomic_fetch_add(&calls[v == 1 || v == 2 ? v : 0], 1);
}

static void *worker(void *arg) {
        for (;;) {
                count(outer(pause_us));
                usleep(pause_us);
        }
        return NULL;
}

static void *sleeper(void *arg) {
        unsigned ms = (unsigned) (unsigned long) arg;

        atomic_store(&sleeper_inside, 1);
        atomic_store(&sleeper_entered, 1);
        count(outer(ms * 1000));
        atomic_store(&sleeper_inside, 0);
        return worker(NULL);
}

int main(int argc, char **argv) {
        const char *status = argc > 1 ? argv[1] : "/dev/null";
        int n = argc > 2 ? atoi(argv[2]) : 4;
        unsigned sleeper_ms = argc > 4 ? (unsigned) atoi(argv[4]) : 0;
        char tmp[4096];
        struct stat st;
        pthread_t t;

        if (argc > 3)
                pause_us = (unsigned) atoi(argv[3]);
        if (argc > 5 && strcmp(argv[5], "nodump") == 0)
                prctl(PR_SET_DUMPABLE, 0);
        for (int i = 0; i <= n; i++) {
                int e = i < n ? pthread_create(&t, NULL, worker, NULL) :
                        sleeper_ms ? pthread_create(&t, NULL, sleeper, (void *) (unsigned long) sleeper_ms) : 0;
                if (e) {
                        fprintf(stderr, "victim: cannot start thread %d: %s\n", i, strerror(e));
                        exit(1);
                }
        }
        /* A status path that is not a regular file (/dev/null) is written in place: the
         * rename would replace the device node with a file. */
        snprintf(tmp, sizeof(tmp), "%s%s", status,
                 stat(status, &st) == 0 && !S_ISREG(st.st_mode) ? "" : ".tmp");
        for (;;) {
                /* sleeper first: the sleeper counts its call, then says it left, so a
                 * line saying sleeper=0 holds that call (the order of a call's
                 * arguments' reads is unspecified) */
                int inside = atomic_load(&sleeper_inside), entered = atomic_load(&sleeper_entered);
                unsigned long v1 = atomic_load(&calls[1]), v2 = atomic_load(&calls[2]);
                FILE *f = fopen(tmp, "w");
                if (f) {
                        fprintf(f, "v1=%lu v2=%lu bad=%lu sleeper=%d entered=%d\n", v1, v2,
                                atomic_load(&violations), inside, entered);
                        fclose(f);
                        if (strcmp(tmp, status) != 0)
                                rename(tmp, status);
                }
                usleep(20000);
        }
}
