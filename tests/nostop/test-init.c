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
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patcher/entry-bp.h"
#include "patcher/target-seal.h"
#include "patcher/target.h"
#include "patcher/transition.h"
#include "patcher/x86_64/regs.h"
#include "patcher/x86_64/stub.h"
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

/* Threads of the victim with a line of /proc/PID/task/TID/FILE that match() likes. */
static unsigned tasks_where(const char *file, bool (*match)(char *line)) {
        char path[320], line[512];
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", child);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                FILE *f;
                bool hit = false;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", child, de->d_name, file);
                f = fopen(path, "re");
                if (!f)
                        continue;
                while (!hit && fgets(line, sizeof(line), f))
                        hit = match(line);
                n += hit;
                fclose(f);
        }
        closedir(d);
        return n;
}

static bool in_d(char *line) {
        char *p = strrchr(line, ')');
        return p && p[1] && p[2] == 'D';
}

/* Threads of the victim in uninterruptible sleep. */
static unsigned threads_in_d(void) {
        return tasks_where("stat", in_d);
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
        transition_nostop_init = NOSTOP_INIT_ALWAYS;
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

static bool traced_line(char *line) {
        return !strncmp(line, "TracerPid:", 10) && atoi(line + 10) != 0;
}

/* Threads of the victim another process traces. */
static unsigned traced_threads(void) {
        return tasks_where("status", traced_line);
}

static bool orphans_gone(void) {
        (void)target_collect_orphans();
        return target_orphans() == 0;
}

/*
 * The end of a clone barrier that cannot stop a thread within its bound (both threads
 * of stops-victim sent into a vfork of 3 s after the seal began): it gives up, and the
 * threads it still holds are orphans, which the next stop of the process would take
 * over and a long-running driver lets go once they stop. Left in the seal's list (as
 * before), nothing recorded them: they stayed traced by the driver and, in ulpd, stopped
 * for good once out of their vfork.
 */
TEST(seal_end_orphans_what_it_cannot_stop) {
        Target *t = NULL;
        TargetSeal s;

        victim_start(3000);
        ASSERT_TRUE(WAIT_UNTIL(last_compute() == 20, 5000));
        ASSERT_OK(target_open(child, &t));
        ASSERT_OK(target_seal_begin(t, &s));
        ASSERT_TRUE(s.n == 2);
        /* The signal stops each sealed thread for us first: the polls pass it on. */
        kill(child, SIGUSR1);
        ASSERT_TRUE(WAIT_UNTIL(target_seal_poll(t, &s) == 0 && threads_in_d() == 2, 5000));
        ASSERT_ERR(target_seal_end(t, &s, 100), -ETIMEDOUT);
        ASSERT_TRUE(s.n == 0);
        ASSERT_TRUE(target_orphans_of(child));
        target_seal_done(&s);
        target_free(t);
        /* Out of the vfork, each stops and is let go. */
        ASSERT_TRUE(WAIT_UNTIL(orphans_gone(), 3000 * test_slowdown() + 10000));
        ASSERT_TRUE(WAIT_UNTIL(traced_threads() == 0, 5000));
        ASSERT_TRUE(kill(child, 0) == 0);
        {
                /* and it runs on: a new line */
                struct stat st0, st1;
                ASSERT_OK(stat(out_path, &st0));
                ASSERT_TRUE(WAIT_UNTIL(stat(out_path, &st1) == 0 && st1.st_size > st0.st_size, 5000));
        }
}

/*
 * The flip of the untabled byte at completion and a thread inside a dispatch stub. A
 * stub decides that its thread is not in the table, then reads the byte: a thread
 * stopped between the two, when completion enters it in the table (in the initial
 * state: a stack in a stub is not reliable) and flips the byte, reads the flipped byte
 * once let go and runs the target's function, while its slot and the frame it called
 * from are in the initial state. On the consistency victim: a worker started after
 * init's checks (untabled), stepped at completion to the byte's read in a stub
 * (instruction by instruction: the hook runs on the tracing thread, every thread
 * stopped). Without the rule that the byte flips only when no thread is in a stub, its
 * next outer() mixes versions ("MIX outer=1 inner=1,2", or outer=2 inner=1,...): the
 * "mixed calls: 1" seen about once in 20 runs of transition-spawn-cycles under load.
 */
static char cons_out[64];
static pid_t late_tid;
static unsigned stepped, step_fail;
static uint64_t stepped_pc;

static void cons_kill(void) {
        if (child > 0)
                kill(child, SIGKILL);
        while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
                ;
        if (cons_out[0])
                unlink(cons_out);
}

/* Whether the victim's output holds s; *ret_num the number after it, if asked. */
static bool cons_says(const char *s, int *ret_num) {
        char line[512];
        bool found = false;
        FILE *f = fopen(cons_out, "re");

        if (!f)
                return false;
        while (fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, s);
                if (!p || !strchr(line, '\n'))
                        continue;
                found = true;
                if (ret_num)
                        *ret_num = atoi(p + strlen(s));
        }
        fclose(f);
        return found;
}

/* The mixed= value of the victim's last tick line, -1 none. */
static long cons_mixed(void) {
        char line[512];
        long v = -1;
        FILE *f = fopen(cons_out, "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, " mixed=");
                if (p && strncmp(line, "v1=", 3) == 0 && strchr(line, '\n'))
                        v = atol(p + 7);
        }
        fclose(f);
        return v;
}

/* After init's checks: one more worker, untabled, not pending. */
static void start_late_worker(int step) {
        int tid = 0;

        if (step != 2 || late_tid)
                return;
        kill(child, SIGURG);
        if (WAIT_UNTIL(cons_says("worker started tid=", &tid), 5000))
                late_tid = tid;
}

/* The addresses in the patch's stubs of the untabled byte's read: movzx r11d, byte [r11]
 * (stub.c), the last instruction before the decision. */
static size_t byte_reads(Transition *tr, uint64_t *at, size_t max) {
        static const uint8_t movzx[] = { 0x45, 0x0f, 0xb6, 0x1b };
        const ControlPatch *p = &tr->c->img->patches[tr->patch];
        size_t n = 0;

        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs && n < max; i++) {
                uint8_t code[STUB_MAX_SIZE];
                uint64_t stub = tr->c->img->funcs[i].stub_addr;
                if (!stub || target_read(tr->t, stub, code, sizeof(code)) < 0)
                        continue;
                for (size_t k = 0; k + sizeof(movzx) <= sizeof(code); k++)
                        if (memcmp(code + k, movzx, sizeof(movzx)) == 0) {
                                at[n++] = stub + k;
                                break;
                        }
        }
        return n;
}

/* The stopped th stepped until it is about to read the byte (one of at[n]): 1 there,
 * 0 it exited on the way (marked gone, as the library's wait would), -1 failed. */
static int step_thread(Thread *th, const uint64_t *at, size_t n) {
        for (unsigned steps = 0; steps < 2000000; steps++) {
                int status;
                for (size_t k = 0; k < n; k++)
                        if (regs_pc(&th->regs) == at[k]) {
                                stepped = steps + 1;
                                stepped_pc = at[k];
                                return 1;
                        }
                if (ptrace(PTRACE_SINGLESTEP, th->tid, NULL, NULL) < 0 ||
                    waitpid(th->tid, &status, __WALL) != th->tid)
                        return -1;
                if (WIFEXITED(status) || WIFSIGNALED(status)) {
                        th->gone = true;
                        th->stopped = th->seized = false;
                        return 0;
                }
                if (!WIFSTOPPED(status) || ptrace(PTRACE_GETREGS, th->tid, NULL, &th->regs) < 0)
                        return -1;
        }
        return -1;
}

/* At the first stop of every thread of the kind asked (completion, or reversal): the
 * late worker (late_tid), else the first untabled thread that reaches a stub before it
 * exits, stepped until it is about to read the byte in a stub. No assertion here
 * (inside the library's call). */
static bool hook_at_reversal;

static void step_into_stub(Transition *tr, bool reversal) {
        uint64_t at[8];
        size_t n;

        if (stepped || step_fail || reversal != hook_at_reversal || (!late_tid && !reversal))
                return;
        n = byte_reads(tr, at, 8);
        if (n == 0) {
                step_fail = 1;
                return;
        }
        for (size_t i = 0; i < tr->t->n_threads; i++) {
                Thread *th = &tr->t->threads[i];
                int r;
                if (th->gone || !th->stopped || (late_tid ? th->tid != late_tid :
                                                 control_table_find(tr->c, regs_tp(&th->regs)) >= 0))
                        continue;
                r = step_thread(th, at, n);
                if (r != 0) {
                        step_fail = r < 0 ? 2 : 0;
                        return;
                }
        }
        step_fail = 3;
}

/* The same under the clone barrier (patcher/transition-seal.c): the late worker is
 * stepped at its own stop, the other threads running. */
static void step_into_stub_sealed(Transition *tr, Thread *th) {
        uint64_t at[8];
        size_t n;
        int r;

        if (stepped || step_fail || !late_tid || th->tid != late_tid)
                return;
        n = byte_reads(tr, at, 8);
        if (n == 0) {
                step_fail = 1;
                return;
        }
        r = step_thread(th, at, n);
        step_fail = r < 0 ? 2 : r == 0 ? 3 : 0;
}

static void flip_waits(bool sealed) {
        UlpOptions o = { .timeout_ms = 120000 };
        UlpReport rep = {};
        int fd, r;

        snprintf(cons_out, sizeof(cons_out), "/tmp/ulp-test-init-XXXXXX");
        fd = mkstemp(cons_out);
        ASSERT_TRUE(fd >= 0);
        atexit(cons_kill);
        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fd, 1);
                setenv("LD_LIBRARY_PATH", VICTIMS_DIR, 1);
                execl(CONS_VICTIM, "victim-consistency", "-n", "2", (char *)NULL);
                _exit(127);
        }
        close(fd);
        ASSERT_TRUE(WAIT_UNTIL(cons_mixed() == 0, 5000));
        transition_nostop_init = NOSTOP_INIT_ALWAYS;
        /* An init that went to the stop of every thread (a thread seen in
         * uninterruptible sleep on a loaded machine) has no window: reverted, again. */
        for (int tries = 0; !late_tid; tries++) {
                ASSERT_TRUE(tries < 5);
                entry_bp_test_hook = start_late_worker;
                transition_complete_nostop = sealed;
                if (sealed)
                        transition_seal_test_hook = step_into_stub_sealed;
                else
                        transition_stop_test_hook = step_into_stub;
                fd = open(CONS_PATCH, O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                r = ulp_apply(child, fd, "patch-consistency.so", &o, &rep);
                close(fd);
                entry_bp_test_hook = NULL;
                transition_stop_test_hook = NULL;
                transition_seal_test_hook = NULL;
                if (r < 0)
                        fprintf(stderr, "  apply: %s\n", rep.message);
                ASSERT_OK(r);
                ulp_report_done(&rep);
                if (!late_tid) {
                        rep = (UlpReport) {};
                        ASSERT_OK(ulp_revert(child, "consistency", &o, &rep));
                        ulp_report_done(&rep);
                }
        }
        fprintf(stderr, "  late worker %d stepped %u instructions to %#llx (fail %u)\n", late_tid, stepped,
                (unsigned long long)stepped_pc, step_fail);
        ASSERT_EQ(step_fail, 0u);
        ASSERT_TRUE(stepped > 0);
        /* The stepped worker's call ended long before the apply did (a completion
         * later); 100 ms of ticks more. */
        sleep_ms(100);
        if (cons_says("MIX ", NULL) || cons_mixed() != 0) {
                char line[512];
                FILE *f = fopen(cons_out, "re");
                while (f && fgets(line, sizeof(line), f))
                        if (strncmp(line, "MIX ", 4) == 0)
                                fprintf(stderr, "  %s", line);
                if (f)
                        fclose(f);
        }
        ASSERT_TRUE(!cons_says("MIX ", NULL));
        ASSERT_EQ(cons_mixed(), 0);
        rep = (UlpReport) {};
        ASSERT_OK(ulp_revert(child, "consistency", &o, &rep));
        ulp_report_done(&rep);
        ASSERT_TRUE(!cons_says("MIX ", NULL));
        ASSERT_EQ(waitpid(child, NULL, WNOHANG), 0);
}

TEST(flip_waits_for_stub) {
        flip_waits(false);
}

TEST(flip_waits_for_stub_sealed) {
        flip_waits(true);
}

/*
 * The same at a reversal that changes the byte: an init that stopped every thread left
 * the byte in the target (a thread created later starts there), a thread held in
 * blocker() keeps the transition from completing, and at the deadline the reversal
 * enters the untabled threads with the old target and sets the byte to the new one. A
 * worker started once the transition began (untabled, in the target), stepped at the
 * reversal's stop to the byte's read in a stub, would read the new byte and mix ("MIX
 * outer=1 inner=2,2", or outer=2 inner=2,1); the reversal's stop is made again while a
 * thread is in a stub. The apply is stepped here (ulp_op_step()) to start the worker
 * between init and the deadline.
 */
TEST(reversal_waits_for_stub) {
        UlpOptions o = { .timeout_ms = 1000 * (test_slowdown() < 3 ? test_slowdown() : 3) };
        UlpReport rep = {};
        UlpOp *op = NULL;
        unsigned next_ms, switched;
        char fifo[80];
        int fd, r, tid = 0;

        snprintf(cons_out, sizeof(cons_out), "/tmp/ulp-test-init-XXXXXX");
        fd = mkstemp(cons_out);
        ASSERT_TRUE(fd >= 0);
        snprintf(fifo, sizeof(fifo), "%s.fifo", cons_out);
        ASSERT_OK(mkfifo(fifo, 0600));
        atexit(cons_kill);
        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fd, 1);
                setenv("LD_LIBRARY_PATH", VICTIMS_DIR, 1);
                execl(CONS_VICTIM, "victim-consistency", "-n", "2", "-b", fifo, (char *)NULL);
                _exit(127);
        }
        close(fd);
        ASSERT_TRUE(WAIT_UNTIL(cons_says("blocked=1", NULL), 5000));
        /* The init that stops every thread: the byte in the target until the reversal. */
        unsetenv("ULP_NOSTOP_INIT");
        transition_nostop_init = NOSTOP_INIT_OFF;
        hook_at_reversal = true;
        fd = open(CONS_PATCH, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        r = ulp_op_apply(child, fd, "patch-consistency.so", &o, &op, &rep);
        close(fd);
        ASSERT_OK(r);
        for (unsigned total = 0; r == 0 && total == 0;) {
                r = ulp_op_step(op, &next_ms);
                ulp_op_progress(op, &switched, &total);
                if (r == 0 && total == 0)
                        sleep_ms(next_ms);
        }
        /* The transition started, the blocked thread holds it up: one more worker. */
        ASSERT_EQ(r, 0);
        kill(child, SIGURG);
        ASSERT_TRUE(WAIT_UNTIL(cons_says("worker started tid=", &tid), 5000));
        late_tid = tid;
        transition_stop_test_hook = step_into_stub;
        while ((r = ulp_op_step(op, &next_ms)) == 0)
                sleep_ms(next_ms);
        transition_stop_test_hook = NULL;
        ulp_op_free(op);
        fprintf(stderr, "  apply: %d %s\n  worker %d stepped %u instructions to %#llx (fail %u)\n", r, rep.message,
                late_tid, stepped, (unsigned long long)stepped_pc, step_fail);
        ASSERT_TRUE(r < 0 && strstr(rep.message, "was reversed"));
        ulp_report_done(&rep);
        ASSERT_EQ(step_fail, 0u);
        ASSERT_TRUE(stepped > 0);
        /* Let the blocked thread go; the victim runs on in version 1. */
        fd = open(fifo, O_WRONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, "x", 1), 1);
        close(fd);
        unlink(fifo);
        ASSERT_TRUE(WAIT_UNTIL(cons_says("blocked=0", NULL), 5000));
        sleep_ms(100);
        if (cons_says("MIX ", NULL)) {
                char line[512];
                FILE *f = fopen(cons_out, "re");
                while (f && fgets(line, sizeof(line), f))
                        if (strncmp(line, "MIX ", 4) == 0)
                                fprintf(stderr, "  %s", line);
                if (f)
                        fclose(f);
        }
        ASSERT_TRUE(!cons_says("MIX ", NULL));
        ASSERT_EQ(cons_mixed(), 0);
        ASSERT_EQ(waitpid(child, NULL, WNOHANG), 0);
}
