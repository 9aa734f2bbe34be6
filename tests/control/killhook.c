/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into ulpd by test-kill9.py: counts ulpd's writes into targets' memory (pwrite
 * on a /proc/PID/mem descriptor: patch code, relocated entries, stubs, control block,
 * entry jumps) and kills ulpd with SIGKILL right after the N-th, N from
 * ULP_KILL_AFTER_WRITE, so that every step of an apply can be hit exactly. With
 * ULP_WRITE_LOG=FILE it appends one line per write to FILE: its number, the target's pid
 * and the length written.
 *
 * With ULP_KILL_SIZE=S, ULP_KILL_AFTER_WRITE counts only the writes of S bytes (the
 * N-th header write, say, wherever it falls in a run whose other writes vary).
 *
 * With ULP_FAIL_WRITE=N the N-th write fails with EIO instead, writing nothing (the
 * driver then takes back what it started, and a kill can land in that).
 *
 * With ULP_KILL_STARTED_ONLY=1 only the writes into targets whose transition has started
 * count: from the write of the thread table (65536 bytes, transition_init) on. Until then
 * a thread of that target may be borrowed for remote syscalls.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);

static unsigned long writes, sized;
static long started[256];
static unsigned n_started;

static bool has_started(long pid, size_t n) {
        for (unsigned i = 0; i < n_started; i++)
                if (started[i] == pid)
                        return true;
        if (n == 65536 && n_started < 256) {
                started[n_started++] = pid;
                return true;
        }
        return false;
}

/* The pid whose /proc/PID/mem fd is, or 0. */
static long mem_pid(int fd) {
        char link[64], path[256];
        ssize_t k;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        k = readlink(link, path, sizeof(path) - 1);
        if (k <= 0)
                return 0;
        path[k] = 0;
        if (strncmp(path, "/proc/", 6) != 0 || k <= 4 || strcmp(path + k - 4, "/mem") != 0)
                return 0;
        return strtol(path + 6, NULL, 10);
}

/* Whether the next write into a target is the one ULP_FAIL_WRITE names. */
static bool next_fails(int fd) {
        const char *fail_at = getenv("ULP_FAIL_WRITE");
        return fail_at && mem_pid(fd) && strtoul(fail_at, NULL, 10) == writes + 1;
}

static void after_write(int fd, size_t n) {
        const char *kill_at = getenv("ULP_KILL_AFTER_WRITE"), *log = getenv("ULP_WRITE_LOG");
        long pid = mem_pid(fd);

        if (!pid)
                return;
        if (!has_started(pid, n) && getenv("ULP_KILL_STARTED_ONLY"))
                return;
        writes++;
        if (log) {
                FILE *f = fopen(log, "ae");
                if (f) {
                        fprintf(f, "%lu %ld %zu\n", writes, pid, n);
                        fclose(f);
                }
        }
        if (getenv("ULP_KILL_SIZE")) {
                if (strtoul(getenv("ULP_KILL_SIZE"), NULL, 10) != n)
                        return;
                if (kill_at && strtoul(kill_at, NULL, 10) == ++sized)
                        kill(getpid(), SIGKILL);
                return;
        }
        if (kill_at && strtoul(kill_at, NULL, 10) == writes)
                kill(getpid(), SIGKILL);
}

/* ulpd's drivers write from several threads: one write and its count at a time, so
 * that the N-th write is one write, counted once. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
        static ssize_t (*real)(int, const void *, size_t, off_t);
        ssize_t r;
        int e;

        pthread_mutex_lock(&lock);
        if (!real)
                real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
        if (next_fails(fd)) {
                after_write(fd, n);
                pthread_mutex_unlock(&lock);
                errno = EIO;
                return -1;
        }
        r = real(fd, buf, n, off);
        e = errno;
        after_write(fd, n);
        pthread_mutex_unlock(&lock);
        errno = e;
        return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
        return pwrite64(fd, buf, n, off);
}
