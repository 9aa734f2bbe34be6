/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Init without a stop of every thread (patcher/transition-untabled.c, docs/stops.md "The
 * untabled state"), driven in this process so that the int3 window's test hook can act
 * between its steps. The victim is tests/stops' stops-victim with no workers: its two
 * threads (the main thread and the vforker) each vfork a child on SIGUSR1 and wait for
 * it in uninterruptible sleep, when no thread of it can be stopped or borrowed. Each
 * case: test-init CASE.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patcher/entry-bp.h"
#include "patcher/transition.h"
#include "ulp/libulp.h"
#include "test.h"
#include "deadline.h"

TEST_MAIN()

static pid_t child = -1;
static char out_path[64];

static void kill_child(void) {
        if (child > 0)
                kill(child, SIGKILL);
        while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
                ;
        if (out_path[0])
                unlink(out_path);
}

/* stops-victim 0 MS all, its lines into a file of our own. */
static void victim_start(unsigned child_ms) {
        char ms[16];
        int fd;

        snprintf(out_path, sizeof(out_path), "/tmp/ulp-test-init-XXXXXX");
        fd = mkstemp(out_path);
        ASSERT_TRUE(fd >= 0);
        atexit(kill_child);
        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fd, 1);
                snprintf(ms, sizeof(ms), "%u", child_ms);
                execl(STOPS_VICTIM, "stops-victim", "0", ms, "all", (char *)NULL);
                _exit(127);
        }
        close(fd);
}

/* The compute= value of the victim's last line, -1 none yet. */
static int last_compute(void) {
        char line[256];
        int v = -1, x;
        FILE *f = fopen(out_path, "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, "compute=");
                if (p && sscanf(p, "compute=%d", &x) == 1 && strchr(line, '\n'))
                        v = x;
        }
        fclose(f);
        return v;
}

/* Threads of the victim in uninterruptible sleep. */
static unsigned threads_in_d(void) {
        char path[320], buf[512], *p;
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", child);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                FILE *f;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", child, de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
                n += p && p[1] && p[2] == 'D';
                fclose(f);
        }
        closedir(d);
        return n;
}

static unsigned windows_opened, vfork_sent;
static int hold_at;

/* At step hold_at of the first window (entry-bp.h: 0 before its first borrow, 2 after
 * its checks): both threads into their vfork, so that no thread can be borrowed for the
 * next remote step. */
static void hold_victim(int step) {
        if (step == 1)
                windows_opened++;
        if (step != hold_at || vfork_sent)
                return;
        vfork_sent = 1;
        kill(child, SIGUSR1);
        ASSERT_TRUE(WAIT_UNTIL(threads_in_d() == 2, 5000));
}

/* Applies compute-fix with the hook at step, checks that the victim runs it, reverts. */
static void apply_held_at(int step) {
        UlpOptions o = { .timeout_ms = 120000 };
        UlpReport rep = {};
        int fd, r;

        /* Longer in the vfork than the hook's wait for it plus the borrow's five
         * attempts of 250 ms, on a loaded machine too. */
        victim_start(8000);
        ASSERT_TRUE(WAIT_UNTIL(last_compute() == 20, 5000));
        transition_nostop_init = true;
        hold_at = step;
        /* An init that went to the stop of every thread at once (a thread seen in
         * uninterruptible sleep for a page fault on a loaded machine) never reaches
         * the hook: reverted, and again. */
        for (int tries = 0; !vfork_sent; tries++) {
                ASSERT_TRUE(tries < 5);
                windows_opened = 0;
                entry_bp_test_hook = hold_victim;
                fd = open(COMPUTE_PATCH, O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                r = ulp_apply(child, fd, "patch-compute.so", &o, &rep);
                close(fd);
                entry_bp_test_hook = NULL;
                if (r < 0)
                        fprintf(stderr, "  apply: %s\n", rep.message);
                ASSERT_OK(r);
                fprintf(stderr, "  %s: %u windows opened, max_stw_us %llu\n",
                        vfork_sent ? "held" : "not held", windows_opened, (unsigned long long)rep.max_stw_us);
                ulp_report_done(&rep);
                ASSERT_TRUE(WAIT_UNTIL(last_compute() == 30, 5000));
                rep = (UlpReport) {};
                ASSERT_OK(ulp_revert(child, "compute-fix", &o, &rep));
                ulp_report_done(&rep);
                ASSERT_TRUE(WAIT_UNTIL(last_compute() == 20, 5000));
        }
        ASSERT_EQ(waitpid(child, NULL, WNOHANG), 0);
}

/*
 * A window whose int3 bytes went in and whose checks passed, but no thread could be
 * borrowed to write the rest of the jumps (every thread in a vfork for 3 s): the window
 * stays under its guard, and the next steps of the apply take it back once a thread can
 * be borrowed again, then try again (a window, or the stop of every thread), and the
 * apply succeeds. Before, the apply failed at
 * once with "cannot start the transition: a thread did not stop in time; it stays in
 * process N until a revert of the patch takes it back"; and an init that succeeded at a
 * later step than its first left the operation waiting for init, whose next try found
 * the stubs just put in: "the code of a patched function was changed by someone else".
 */
TEST(window_left_then_retried) {
        /* The next try takes the window back, then opens another, or stops every
         * thread at once when the threads the window asked to stop are still late. */
        apply_held_at(2);
}

/*
 * No thread to borrow for the window's first remote step (both threads gone into their
 * vfork right before it): nothing is written, and the next steps try again (through a
 * window, or the stop of every thread once a thread was left late); the apply succeeds.
 * Before, it failed at once: "cannot start the transition: a thread did not stop in
 * time" (seen under load in transition-spawn-cycles).
 */
TEST(no_thread_to_open) {
        apply_held_at(0);
}
