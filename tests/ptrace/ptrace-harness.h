/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the ptrace layer's tests share (test-ptrace.c: stops and signals;
 * test-ptrace-remote.c: remote system calls, calls and writes): victim-ptrace processes
 * started and ended, /proc looks at their threads, a remote system call.
 */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/macro.h"
#include "patcher/target.h"
#include "test.h"
#include "deadline.h"
#include "victim-shared.h"


typedef struct Victim {
        pid_t pid;
        VictimShared *sh;
        int pipe_w;
} Victim;

static pid_t children[64];
static int n_children;

static void harness_timer_signal(int sig) {
        (void) sig;
}

/* Makes this thread's waits for its tracees sleep in waitpid() bounded by a timer, as
 * ulpd's drivers wait (target_wait_timer_start()): its signal has a handler without
 * SA_RESTART and goes to this thread only. */
static inline void harness_wait_timer_on(void) {
        struct sigaction sa = { .sa_handler = harness_timer_signal };
        int r;

        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGRTMIN + 1, &sa, NULL) < 0) {
                perror("sigaction");
                exit(1);
        }
        r = target_wait_timer_start(SIGRTMIN + 1);
        if (r < 0 && r != -EBUSY) {
                fprintf(stderr, "wait timer: %s\n", strerror(-r));
                exit(1);
        }
}

/* ULP_TEST_WAIT_TIMER=1: every case waits so (tests/ptrace/meson.build runs some cases
 * both ways). */
__attribute__((constructor)) static void harness_wait_timer_env(void) {
        const char *e = getenv("ULP_TEST_WAIT_TIMER");

        if (e && strcmp(e, "1") == 0)
                harness_wait_timer_on();
}

/* Kills every child (victims, helpers) and reaps them and their traced threads. A
 * failed assertion leaves through longjmp, so this also runs at exit. */
static inline void kill_children(void) {
        for (int i = 0; i < n_children; i++)
                kill(children[i], SIGKILL);
        n_children = 0;
        while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
                ;
}

static inline pid_t fork_child(void) {
        static bool registered;
        if (!registered) {
                atexit(kill_children);
                registered = true;
        }
        pid_t pid = fork();
        if (pid == 0)
                prctl(PR_SET_PDEATHSIG, SIGKILL);
        else if (pid > 0 && n_children < (int)ELEMENTSOF(children))
                children[n_children++] = pid;
        return pid;
}

static inline void victim_start(Victim *v, const char *mode, const char *arg) {
        int fd = memfd_create("victim-shared", 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, sizeof(VictimShared)));
        v->sh = mmap(NULL, sizeof(VictimShared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(v->sh != MAP_FAILED);
        int p[2];
        ASSERT_OK(pipe(p));
        pid_t pid = fork_child();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                char fds[16], ps[16];
                close(p[1]);
                snprintf(fds, sizeof(fds), "%d", fd);
                snprintf(ps, sizeof(ps), "%d", p[0]);
                /* LeakSanitizer in a sanitized victim ptraces its own threads at exit,
                 * and a second tracer is (rightly) -EBUSY for us. */
                setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
                execl(VICTIM_PATH, "victim-ptrace", mode, fds, ps, arg, (char *)NULL);
                _exit(127);
        }
        close(fd);
        close(p[0]);
        v->pid = pid;
        v->pipe_w = p[1];
        ASSERT_TRUE(WAIT_UNTIL(v->sh->ready, 5000));
}

/* Kills and reaps the victim. Its leader cannot be reaped while one of its threads is
 * still traced by us: that would be a thread the library failed to release. */
static inline void victim_end(Victim *v) {
        kill(v->pid, SIGKILL);
        close(v->pipe_w);
        munmap(v->sh, sizeof(VictimShared));
        pid_t r;
        ASSERT_TRUE(WAIT_UNTIL((r = waitpid(v->pid, NULL, __WALL | WNOHANG)) == v->pid ||
                               (r < 0 && errno == ECHILD), 5000));
}

/* /proc/PID/task/TID/name into buf, NUL-terminated; false when gone. */
static inline bool read_task_file(pid_t pid, pid_t tid, const char *name, char *buf, size_t size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", pid, tid, name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, size - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        return true;
}

/* The state letter of /proc/PID/task/TID/stat, 0 when gone. */
static inline char task_state(pid_t pid, pid_t tid) {
        char buf[512];
        if (!read_task_file(pid, tid, "stat", buf, sizeof(buf)))
                return 0;
        char *p = strrchr(buf, ')');
        return p ? p[2] : 0;
}

static inline int task_tracer(pid_t pid, pid_t tid) {
        char buf[4096];
        if (!read_task_file(pid, tid, "status", buf, sizeof(buf)))
                return 0;
        char *p = strstr(buf, "TracerPid:");
        return p ? atoi(p + 10) : 0;
}

/* Lists the tids of pid; returns how many (up to max). */
static inline int list_tasks(pid_t pid, pid_t *tids, int max) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task", pid);
        DIR *d = opendir(path);
        if (!d)
                return 0;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < max)
                if (de->d_name[0] != '.')
                        tids[n++] = atoi(de->d_name);
        closedir(d);
        return n;
}

/* No thread of pid is stopped by us or traced any more. */
static inline void assert_none_traced(pid_t pid) {
        pid_t tids[1024];
        int n = list_tasks(pid, tids, 1024);
        for (int i = 0; i < n; i++) {
                char st = task_state(pid, tids[i]);
                if (st == 0 || st == 'Z' || st == 'X')
                        continue;
                if (st == 't' || task_tracer(pid, tids[i]) != 0)
                        TEST__FAIL("thread %d of %d: state %c, tracer %d", tids[i], pid, st,
                                   task_tracer(pid, tids[i]));
        }
}

/* A victim in mode and a Target on it, with the stop deadline of a loaded machine. */
static inline Target *victim_open(Victim *v, const char *mode, const char *arg) {
        Target *t = NULL;

        victim_start(v, mode, arg);
        ASSERT_OK(TEST_TARGET_OPEN(v->pid, &t));
        return t;
}

/* The end of a case: no thread left traced, the Target freed, the victim reaped. */
static inline void victim_close(Victim *v, Target *t) {
        assert_none_traced(v->pid);
        target_free(t);
        victim_end(v);
}

/* Frees the Target and checks the victim runs on, released: its first counter moves
 * again and no thread is left traced. */
static inline void free_and_check_released(Victim *v, Target *t) {
        uint64_t c = v->sh->counters[0];

        target_free(t);
        ASSERT_TRUE(WAIT_UNTIL(v->sh->counters[0] > c, 5000));
        assert_none_traced(v->pid);
}

static inline size_t count_stopped(Target *t) {
        size_t n = 0;
        for (size_t i = 0; i < t->n_threads; i++)
                n += t->threads[i].stopped && !t->threads[i].gone;
        return n;
}

static inline bool counters_above(VictimShared *sh, const uint64_t *snap) {
        for (int i = 0; i < VICTIM_COUNTERS; i++)
                if (sh->counters[i] <= snap[i])
                        return false;
        return true;
}

static inline bool maps_has(pid_t pid, uint64_t addr, char perms[8]) {
        char path[64], line[512];
        snprintf(path, sizeof(path), "/proc/%d/maps", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        bool found = false;
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                char p[8];
                if (sscanf(line, "%lx-%lx %7s", &lo, &hi, p) == 3 && addr >= lo && addr < hi) {
                        if (perms)
                                strcpy(perms, p);
                        found = true;
                        break;
                }
        }
        fclose(f);
        return found;
}

/* The 16 bytes at code read back as orig with the 3 bytes of patch at +5, the victim's
 * copy shows the same, and the mapping kept its protection. */
static inline void assert_code_patched(Victim *v, Target *t, uint64_t code, const uint8_t *orig, const uint8_t *patch) {
        uint8_t now[16];
        char perms[8];

        ASSERT_OK(target_read(t, code, now, 16));
        for (int i = 0; i < 16; i++)
                ASSERT_EQ(now[i], i >= 5 && i < 8 ? patch[i - 5] : orig[i]);
        ASSERT_TRUE(WAIT_UNTIL(memcmp((const void *)v->sh->code_copy, now, 16) == 0, 2000));
        ASSERT_TRUE(maps_has(v->pid, code, perms));
        ASSERT_STREQ(perms, "r-xp");
}

static inline int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}


static inline long rsys(Target *t, Thread *th, long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
        const long args[6] = { a0, a1, a2, a3, a4, a5 };
        long ret = -1;
        ASSERT_OK(target_syscall(t, th, nr, args, &ret));
        return ret;
}

