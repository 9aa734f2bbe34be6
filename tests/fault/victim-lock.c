/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The victim of test-overdue.sh: 3 workers take shared_lock, count a tick and call
 * value() (1 unpatched, 2 patched), while a reporter thread prints one line every 20 ms:
 *   ticks=N value=V
 * A patch's callback takes shared_lock too and holds it until `release` is set, which
 * SIGUSR1 does (delivered to a thread that does not block it: not the callback's).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
volatile sig_atomic_t release;
int value(void);

static atomic_ulong ticks;
static atomic_int last_value;

__attribute__((noipa, used)) int value(void) {
        return 1;
}

static void on_usr1(int sig) {
        (void)sig;
        release = 1;
}

static void *worker(void *arg) {
        (void)arg;
        for (;;) {
                pthread_mutex_lock(&shared_lock);
                atomic_fetch_add(&ticks, 1);
                atomic_store(&last_value, value());
                pthread_mutex_unlock(&shared_lock);
                usleep(1000);
        }
        return NULL;
}

static void *reporter(void *arg) {
        (void)arg;
        for (;;) {
                printf("ticks=%lu value=%d\n", atomic_load(&ticks), atomic_load(&last_value));
                fflush(stdout);
                usleep(20000);
        }
        return NULL;
}

int main(void) {
        pthread_t t;
        struct sigaction sa = { .sa_handler = on_usr1 };

        sigaction(SIGUSR1, &sa, NULL);
        for (int i = 0; i < 3; i++)
                pthread_create(&t, NULL, worker, NULL);
        pthread_create(&t, NULL, reporter, NULL);
        for (;;)
                pause();
}
