/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration tests of the ptrace layer (patcher/target.h) on victim-ptrace processes.
 * Each case runs alone with: test-ptrace CASE. The victim reports what it saw itself
 * (counters, syscall results, signals) in a shared memfd.
 */
#include <pthread.h>

#include "ptrace-harness.h"

TEST_MAIN()


/* ---- opening ---- */

TEST(open_errors) {
        Target *t = NULL;
        pid_t pid = fork_child();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                _exit(0);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_ERR(target_open(pid, &t), -ESRCH);
        ASSERT_ERR(target_open(0, &t), -ESRCH);
        ASSERT_ERR(target_open(-5, &t), -ESRCH);

        /* A thread id is not a process. */
        Victim v;
        victim_start(&v, "threads", NULL);
        ASSERT_ERR(target_open(v.sh->sleeper_tid, &t), -ESRCH);

        /* Not allowed: an unprivileged user on a root process. */
        if (geteuid() == 0) {
                pid_t c = fork_child();
                ASSERT_TRUE(c >= 0);
                if (c == 0) {
                        if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                                _exit(2);
                        Target *t2 = NULL;
                        int r = target_open(v.pid, &t2);
                        _exit(r == -EPERM ? 0 : 1);
                }
                int status;
                ASSERT_EQ(waitpid(c, &status, 0), c);
                ASSERT_TRUE(WIFEXITED(status));
                ASSERT_EQ(WEXITSTATUS(status), 0);
        }
        ASSERT_OK(TEST_TARGET_OPEN(v.pid, &t));
        ASSERT_EQ(t->n_threads, 12);
        ASSERT_EQ(count_stopped(t), 0);
        char name[16];
        target_thread_name(t, v.pid, name);
        ASSERT_STREQ(name, "victim-ptrace");
        target_thread_name(t, 999999999, name);
        ASSERT_STREQ(name, "?");
        victim_close(&v, t);
}

/* ---- /proc ---- */

typedef struct StatThread {
        pid_t tid;
        int ready;               /* its name, mask and pending signal are in place */
        int quit;
} StatThread;

static void *stat_thread(void *ud) {
        StatThread *x = ud;
        sigset_t m;

        /* A name that looks like the fields after it: the parse starts after the last ')'. */
        (void)prctl(PR_SET_NAME, "a) R 1 (2) 3 4");
        sigemptyset(&m);
        sigaddset(&m, SIGTRAP);
        sigaddset(&m, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &m, NULL);
        x->tid = gettid();
        (void)syscall(SYS_tgkill, getpid(), x->tid, SIGUSR1);
        __atomic_store_n(&x->ready, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&x->quit, __ATOMIC_ACQUIRE))
                sleep_ms(1);
        return NULL;     /* the SIGUSR1 it holds goes with it */
}

/* target_task_stat() on the kernel's own text: a thread with its own pending signal and a
 * mask, under a name made to look like fields. */
TEST(task_stat) {
        StatThread x = {};
        pthread_t th;
        TaskStat s;

        ASSERT_EQ(pthread_create(&th, NULL, stat_thread, &x), 0);
        ASSERT_TRUE(WAIT_UNTIL(__atomic_load_n(&x.ready, __ATOMIC_ACQUIRE), 2000));
        ASSERT_OK(target_task_stat(getpid(), x.tid, &s));
        ASSERT_TRUE(s.state == 'S' || s.state == 'R');
        ASSERT_TRUE(s.pending & TASK_SIG_BIT(SIGUSR1));
        ASSERT_TRUE(!(s.pending & TASK_SIG_BIT(SIGTRAP)));
        ASSERT_TRUE(s.blocked & TASK_SIG_BIT(SIGTRAP));
        ASSERT_TRUE(s.blocked & TASK_SIG_BIT(SIGUSR1));
        ASSERT_TRUE(!(s.blocked & TASK_SIG_BIT(SIGUSR2)));
        /* This thread's own: nothing pending, SIGTRAP not blocked. */
        ASSERT_OK(target_task_stat(getpid(), gettid(), &s));
        ASSERT_EQ(s.state, 'R');
        ASSERT_TRUE(!(s.blocked & TASK_SIG_BIT(SIGTRAP)));
        ASSERT_TRUE(!(s.pending & TASK_SIG_BIT(SIGUSR1)));
        ASSERT_ERR(target_task_stat(getpid(), 999999999, &s), -ENOENT);
        __atomic_store_n(&x.quit, 1, __ATOMIC_RELEASE);
        ASSERT_EQ(pthread_join(th, NULL), 0);
}

/* ---- stop the world ---- */

TEST(stop_resume_200) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        uint64_t sleeps0 = v.sh->sleeps_ok, ppolls0 = v.sh->ppolls;

        for (int i = 0; i < 200; i++) {
                ASSERT_OK(target_stop_all(t));
                ASSERT_EQ(count_stopped(t), 12);
                if (i % 50 == 0)
                        for (size_t k = 0; k < t->n_threads; k++)
                                ASSERT_EQ(task_state(v.pid, t->threads[k].tid), 't');
                uint64_t snap[VICTIM_COUNTERS];
                for (int k = 0; k < VICTIM_COUNTERS; k++)
                        snap[k] = v.sh->counters[k];
                sleep_ms(i % 20 == 0 ? 5 : 0);
                for (int k = 0; k < VICTIM_COUNTERS; k++)
                        ASSERT_EQ(v.sh->counters[k], snap[k]);    /* really stopped */
                ASSERT_OK(target_resume_all(t));
                ASSERT_TRUE(WAIT_UNTIL(counters_above(v.sh, snap), 2000));
        }
        assert_none_traced(v.pid);
        ASSERT_TRUE(t->max_stw_ns > 0);

        /* The interrupted nanosleeps, reads and ppolls carried on as if nothing happened. */
        ASSERT_TRUE(WAIT_UNTIL(v.sh->sleeps_ok >= sleeps0 + 3, 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        ASSERT_EQ(v.sh->ppoll_bad, 0);
        ASSERT_EQ(v.sh->ppoll_mask_bad, 0);
        ASSERT_TRUE(v.sh->ppolls > ppolls0);
        ASSERT_EQ(v.sh->read_done, 0);
        ASSERT_EQ(write(v.pipe_w, "hello", 5), 5);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->read_done, 2000));
        ASSERT_EQ(v.sh->read_ret, 5);
        ASSERT_STREQ((const char *)v.sh->read_buf, "hello");
        fprintf(stderr, "  longest stop-the-world: %.1f us, sleeps ok %" PRIu64 "\n",
                t->max_stw_ns / 1000.0, v.sh->sleeps_ok - sleeps0);
        target_free(t);
        victim_end(&v);
}

TEST(signal_while_stopped) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        uint64_t before = v.sh->usr1_count;

        ASSERT_OK(target_stop_all(t));
        ASSERT_OK(kill(v.pid, SIGUSR1));
        sleep_ms(20);
        ASSERT_EQ(v.sh->usr1_count, before);
        ASSERT_OK(target_resume_all(t));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->usr1_count == before + 1, 2000));
        sleep_ms(50);
        ASSERT_EQ(v.sh->usr1_count, before + 1);

        /* Same with one thread stopped, the signal sent to that very thread. */
        Thread *th = target_find_thread(t, v.sh->counter_tids[0]);
        ASSERT_TRUE(th);
        ASSERT_OK(target_stop_thread(t, th));
        ASSERT_OK(syscall(SYS_tgkill, v.pid, th->tid, SIGUSR1));
        sleep_ms(20);
        ASSERT_EQ(v.sh->usr1_count, before + 1);
        ASSERT_OK(target_resume_thread(t, th));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->usr1_count == before + 2, 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        victim_close(&v, t);
}

/* Queued real-time signals with values, sent while threads are stopped and resumed
 * over and over: every one arrives exactly once with its value, so none was lost or
 * duplicated in a signal-delivery-stop racing with our interrupt. */
TEST(signal_storm) {
        Victim v;
        Target *t;
        const int N = 3000;
        t = victim_open(&v, "threads", NULL);

        pid_t sender = fork_child();
        ASSERT_TRUE(sender >= 0);
        if (sender == 0) {
                for (int i = 1; i <= N; i++) {
                        union sigval val = { .sival_int = i };
                        while (sigqueue(v.pid, SIGRTMIN, val) < 0)
                                if (errno != EAGAIN)
                                        _exit(1);
                                else
                                        sched_yield();
                        if (i % 4 == 0)
                                usleep(200);
                }
                _exit(0);
        }
        int status, rounds = 0, kept = 0;
        for (;;) {
                pid_t r = waitpid(sender, &status, WNOHANG);
                if (r == sender)
                        break;
                ASSERT_OK(target_stop_all(t));
                for (size_t k = 0; k < t->n_threads; k++)
                        kept += t->threads[k].held_sig != 0;
                /* A syscall on a thread that keeps a signal: delivered afterwards all
                 * the same. */
                Thread *th = target_any_stopped(t);
                for (size_t k = 0; k < t->n_threads; k++)
                        if (t->threads[k].held_sig)
                                th = &t->threads[k];
                ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v.pid);
                ASSERT_OK(target_resume_all(t));
                th = target_find_thread(t, v.sh->counter_tids[rounds % VICTIM_COUNTERS]);
                ASSERT_TRUE(th);
                ASSERT_OK(target_stop_thread(t, th));
                kept += th->held_sig != 0;
                ASSERT_OK(target_resume_thread(t, th));
                th = target_find_thread(t, v.pid);
                ASSERT_OK(target_stop_thread(t, th));
                kept += th->held_sig != 0;
                ASSERT_OK(target_resume_thread(t, th));
                rounds++;
        }
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->rt_count >= (uint64_t)N, 5000));
        sleep_ms(50);
        fprintf(stderr, "  %d rounds, %" PRIu64 " signals, %d caught in a signal-delivery-stop\n",
                rounds, v.sh->rt_count, kept);
        ASSERT_EQ(v.sh->rt_count, N);
        ASSERT_EQ(v.sh->rt_sum, (uint64_t)N * (N + 1) / 2);
        victim_close(&v, t);
}

TEST(job_control) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);

        /* Stopped before we come: stays stopped. */
        ASSERT_OK(kill(v.pid, SIGSTOP));
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, v.pid) == 'T', 2000));
        ASSERT_OK(target_stop_all(t));
        ASSERT_TRUE(target_find_thread(t, v.pid)->group_stopped);
        ASSERT_OK(target_resume_all(t));
        sleep_ms(20);
        uint64_t snap[VICTIM_COUNTERS];
        for (int k = 0; k < VICTIM_COUNTERS; k++)
                snap[k] = v.sh->counters[k];
        sleep_ms(100);
        pid_t tids[64];
        int n = list_tasks(v.pid, tids, 64);
        ASSERT_EQ(n, 12);
        for (int i = 0; i < n; i++)
                ASSERT_EQ(task_state(v.pid, tids[i]), 'T');
        for (int k = 0; k < VICTIM_COUNTERS; k++)
                ASSERT_EQ(v.sh->counters[k], snap[k]);
        ASSERT_OK(kill(v.pid, SIGCONT));
        ASSERT_TRUE(WAIT_UNTIL(counters_above(v.sh, snap), 2000));

        /* SIGSTOP while we hold it: stops once we let go. */
        ASSERT_OK(target_stop_all(t));
        ASSERT_OK(kill(v.pid, SIGSTOP));
        sleep_ms(10);
        ASSERT_OK(target_resume_all(t));
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, v.pid) == 'T', 2000));
        ASSERT_OK(kill(v.pid, SIGCONT));
        for (int k = 0; k < VICTIM_COUNTERS; k++)
                snap[k] = v.sh->counters[k];
        ASSERT_TRUE(WAIT_UNTIL(counters_above(v.sh, snap), 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        victim_close(&v, t);
}

/* ---- remote syscalls ---- */

TEST(exit_during_stop) {
        for (int rep = 0; rep < 6; rep++) {
                Victim v;
                Target *t;
                char ms[16];
                snprintf(ms, sizeof(ms), "%d", 30 + rep * 25);
                t = victim_open(&v, "exit", ms);
                ASSERT_EQ(write(v.pipe_w, "g", 1), 1);         /* its exit counts from now */
                int r, rounds = 0;
                uint64_t end = now_ns() + 5000000000ULL;
                while ((r = target_stop_all(t)) == 0 && now_ns() < end) {
                        if (rounds % 3 == 0) {
                                Thread *th = target_any_stopped(t);
                                long ret;
                                const long none[6] = { 0 };
                                int q = target_syscall(t, th, SYS_getpid, none, &ret);
                                ASSERT_TRUE(q == 0 || q == -ESRCH);
                        }
                        r = target_resume_all(t);
                        ASSERT_TRUE(r == 0 || r == -ESRCH);
                        rounds++;
                }
                ASSERT_ERR(r, -ESRCH);
                ASSERT_ERR(target_stop_all(t), -ESRCH);
                target_free(t);
                ASSERT_TRUE(WAIT_UNTIL(kill(v.pid, 0) < 0 || task_state(v.pid, v.pid) == 'Z', 2000));
                victim_end(&v);
                ASSERT_TRUE(kill(v.pid, 0) < 0);
        }
}

/*
 * A thread asked to stop and not waited for yet, which stops while a remote system call
 * runs on another thread: the looks for exited threads made during the call must leave
 * its stop alone. Taken for an exit, it was forgotten in its ptrace-stop, traced for
 * good: frozen, and its process could not be reaped after a kill.
 */
TEST(stop_pending_during_remote_call) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        Thread *th = target_find_thread(t, v.sh->sleeper_tid);
        ASSERT_TRUE(th);
        ASSERT_OK(target_stop_thread(t, th));
        pid_t tid = v.sh->counter_tids[0];
        Thread *other = target_find_thread(t, tid);
        ASSERT_TRUE(other);
        ASSERT_OK(target_request_stop(t, other));
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, tid) == 't', 5000));
        /* poll(NULL, 0, 200): the call's wait runs in slices, looking around between them. */
        ASSERT_EQ(rsys(t, th, SYS_poll, 0, 0, 200, 0, 0, 0), 0);
        ASSERT_TRUE(other->seized && !other->gone);
        ASSERT_OK(target_resume_thread(t, th));
        free_and_check_released(&v, t);
        victim_end(&v);
}

/*
 * The guard of target_free(): a thread the Target seized and then took for gone while
 * it is still traced by us (made here by taking its stop report behind the library's
 * back) is detached, not forgotten in its ptrace-stop.
 */
TEST(forgotten_thread_released) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        pid_t tid = v.sh->counter_tids[0];
        Thread *th = target_find_thread(t, tid);
        ASSERT_TRUE(th);
        ASSERT_OK(target_request_stop(t, th));
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, tid) == 't', 5000));
        siginfo_t info = {};
        ASSERT_OK(waitid(P_PID, (id_t)tid, &info, WEXITED | WNOHANG | __WALL));
        ASSERT_EQ(info.si_code, CLD_TRAPPED);
        th->gone = true;
        th->seized = false;
        free_and_check_released(&v, t);
        ASSERT_EQ((long)target_orphans(), 0);
        victim_end(&v);
}

/*
 * With a wait timer (target_wait_timer_start): a wait for a thread that does not stop ends
 * at its deadline, not long after, and one for a thread that stops ends with its report.
 */
TEST(wait_timer_deadline) {
        Victim v;
        Target *t;
        int status;

        harness_wait_timer_on();
        t = victim_open(&v, "threads", NULL);
        Thread *th = target_find_thread(t, v.sh->counter_tids[0]);
        ASSERT_TRUE(th);
        ASSERT_OK(target_stop_thread(t, th));
        /* running again, still seized, asked for nothing: no report comes */
        ASSERT_OK(target__ptrace(PTRACE_CONT, th->tid, NULL, NULL));
        th->stopped = false;
        uint64_t t0 = target__now_ns();
        ASSERT_ERR(target__wait(t, th, 200, &status), -ETIMEDOUT);
        uint64_t took_ms = (target__now_ns() - t0) / 1000000;
        fprintf(stderr, "  a wait of 200 ms for no report took %" PRIu64 " ms\n", took_ms);
        ASSERT_TRUE(took_ms >= 200);
        ASSERT_TRUE(took_ms < 200 + 500 * test_slowdown());
        /* asked now: the report ends the wait */
        ASSERT_OK(target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL));
        ASSERT_OK(target__wait(t, th, TEST_STOP_TIMEOUT_MS, &status));
        ASSERT_TRUE(WIFSTOPPED(status));
        ASSERT_EQ(status >> 16, PTRACE_EVENT_STOP);
        th->stopped = true;     /* the stop is taken: let it go */
        ASSERT_OK(target_resume_thread(t, th));
        free_and_check_released(&v, t);
        victim_end(&v);
}

/*
 * A thread taken for gone whose tid is listed again: the kernel gave the tid of an
 * exited thread to a new one (tids wrap at pid_max, 32768 here). Before, the entry
 * stayed gone: a stop of every thread left that live thread running (and a transition
 * never looked at it: completion could flip the untabled state under it). Made here by
 * marking a live, untraced counter thread as gone, as the reap of an exit would.
 */
TEST(reused_tid_is_a_new_thread) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        pid_t tid = v.sh->counter_tids[0];
        Thread *th = target_find_thread(t, tid);
        ASSERT_TRUE(th);
        th->gone = true;
        th->seized = false;
        ASSERT_OK(target_stop_all(t));
        ASSERT_EQ(count_stopped(t), 12);
        ASSERT_EQ(task_state(v.pid, tid), 't');
        uint64_t c = v.sh->counters[0];
        sleep_ms(5);
        ASSERT_EQ(v.sh->counters[0], c);        /* really stopped */
        ASSERT_OK(target_resume_all(t));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->counters[0] > c, 2000));
        assert_none_traced(v.pid);
        target_free(t);
        victim_end(&v);
}

/*
 * target_wait_any() over some threads while another seized thread's report is waiting
 * uncollected: with a wait timer, the first report of this thread's tracees is that
 * other one's, and the wait must still return the thread asked for (then the other is
 * collected as well).
 */
TEST(wait_any_other_report_pending) {
        Victim v;
        Target *t;
        Thread *got = NULL;

        harness_wait_timer_on();
        t = victim_open(&v, "threads", NULL);
        Thread *a = target_find_thread(t, v.sh->counter_tids[0]);
        Thread *b = target_find_thread(t, v.sh->counter_tids[1]);
        ASSERT_TRUE(a && b);
        ASSERT_OK(target_request_stop(t, a));
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, a->tid) == 't', 5000));
        ASSERT_OK(target_request_stop(t, b));
        ASSERT_OK(target_wait_any(t, &b, 1, TEST_STOP_TIMEOUT_MS, &got));
        ASSERT_TRUE(got == b);
        ASSERT_TRUE(b->stopped);
        ASSERT_OK(target_wait_any(t, &a, 1, TEST_STOP_TIMEOUT_MS, &got));
        ASSERT_TRUE(got == a);
        ASSERT_OK(target_resume_thread(t, a));
        ASSERT_OK(target_resume_thread(t, b));
        free_and_check_released(&v, t);
        victim_end(&v);
}

/*
 * A listing of /proc/PID/task that steps over a live thread it did not know yet (the
 * kernel's listing goes on by position when the thread it listed last was released
 * meanwhile): made here by leaving a counter thread out of the Target and out of the
 * next listing (target_refresh_test_hide). Before, the stop of every thread found
 * nothing new and returned with that thread running; now the kernel's count of threads
 * tells, and it is found by the next listing.
 */
TEST(listing_steps_over_a_thread) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        pid_t tid = v.sh->counter_tids[0];
        Thread *th = target_find_thread(t, tid);
        ASSERT_TRUE(th);
        *th = t->threads[--t->n_threads];
        target_refresh_test_hide = tid;
        ASSERT_OK(target_stop_all(t));
        ASSERT_EQ(target_refresh_test_hide, 0);
        ASSERT_EQ(count_stopped(t), 12);
        ASSERT_EQ(task_state(v.pid, tid), 't');
        uint64_t c = v.sh->counters[0];
        sleep_ms(5);
        ASSERT_EQ(v.sh->counters[0], c);        /* really stopped */
        ASSERT_OK(target_resume_all(t));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->counters[0] > c, 2000));
        assert_none_traced(v.pid);
        target_free(t);
        victim_end(&v);
}

TEST(zombie_leader) {
        Victim v;
        Target *t;
        t = victim_open(&v, "zombie", NULL);
        v.sh->leader_exit = 1;
        ASSERT_TRUE(WAIT_UNTIL(task_state(v.pid, v.pid) == 'Z', 2000));
        ASSERT_ERR(target_stop_all(t), -ESRCH);
        assert_none_traced(v.pid);
        uint64_t c = v.sh->counters[0];
        ASSERT_TRUE(WAIT_UNTIL(v.sh->counters[0] > c, 2000));      /* still running */
        target_free(t);
        /* Its other threads run on: not "no such process", but not reachable either. */
        Target *t2 = NULL;
        ASSERT_ERR(target_open(v.pid, &t2), -EOWNERDEAD);
        victim_end(&v);
}

TEST(threads_spawned_while_stopping) {
        Victim v;
        Target *t;
        t = victim_open(&v, "spawn", NULL);
        size_t max_threads = 0;
        for (int i = 0; i < 40; i++) {
                ASSERT_OK(target_stop_all(t));
                pid_t tids[1024];
                int n = list_tasks(v.pid, tids, 1024);
                for (int k = 0; k < n; k++) {
                        Thread *th = target_find_thread(t, tids[k]);
                        char st = task_state(v.pid, tids[k]);
                        if (st == 'Z' || st == 'X' || st == 0 || (th && th->gone))
                                continue;
                        if (!th || !th->stopped)
                                TEST__FAIL("thread %d (state %c) not stopped", tids[k], st);
                        ASSERT_EQ(st, 't');
                }
                max_threads = MAX(max_threads, count_stopped(t));
                uint64_t spawned = v.sh->spawned;
                sleep_ms(2);
                ASSERT_EQ(v.sh->spawned, spawned);
                ASSERT_OK(target_resume_all(t));
                assert_none_traced(v.pid);
                ASSERT_TRUE(WAIT_UNTIL(v.sh->spawned > spawned, 2000));
        }
        fprintf(stderr, "  up to %zu threads stopped at once, %" PRIu64 " spawned\n", max_threads,
                v.sh->spawned);
        target_free(t);
        victim_end(&v);
}

/* ---- figures (printed, not asserted) ---- */

/* Stopping a thread waits for the kernel to schedule it, never for a fixed delay: the
 * median of many stops stays well under these bounds unless something sleeps or polls
 * (times ULP_TEST_SLOWDOWN on a loaded machine). */
#define STOP_THREAD_MEDIAN_NS_MAX (20ULL * 1000 * 1000)
#define STOP_ALL_MEDIAN_NS_MAX (50ULL * 1000 * 1000)

static void measure(Target *t, Thread *th, const char *what) {
        enum { N = 1000 };
        static uint64_t d[N];
        for (int i = 0; i < N; i++) {
                uint64_t t0 = now_ns();
                ASSERT_OK(target_stop_thread(t, th));
                ASSERT_OK(target_resume_thread(t, th));
                d[i] = now_ns() - t0;
        }
        qsort(d, N, sizeof(d[0]), cmp_u64);
        fprintf(stderr, "  stop+resume of one %s thread: median %.1f us, p90 %.1f us, max %.1f us\n",
                what, d[N / 2] / 1000.0, d[N * 9 / 10] / 1000.0, d[N - 1] / 1000.0);
        ASSERT_TRUE(d[N / 2] < STOP_THREAD_MEDIAN_NS_MAX * test_slowdown());
}

TEST(measure_stop_times) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        Thread *spinner = target_find_thread(t, v.sh->counter_tids[0]);
        Thread *sleeper = target_find_thread(t, v.sh->sleeper_tid);
        ASSERT_TRUE(spinner && sleeper);
        measure(t, spinner, "spinning");
        measure(t, sleeper, "sleeping");
        fprintf(stderr, "  max_thread_stop_ns: %.1f us\n", t->max_thread_stop_ns / 1000.0);

        enum { N = 200 };
        static uint64_t d[N];
        for (int i = 0; i < N; i++) {
                uint64_t t0 = now_ns();
                ASSERT_OK(target_stop_all(t));
                ASSERT_OK(target_resume_all(t));
                d[i] = now_ns() - t0;
        }
        qsort(d, N, sizeof(d[0]), cmp_u64);
        fprintf(stderr, "  stop_all+resume_all of %zu threads: median %.1f us, p90 %.1f us; max_stw_ns %.1f us\n",
                t->n_threads, d[N / 2] / 1000.0, d[N * 9 / 10] / 1000.0, t->max_stw_ns / 1000.0);
        ASSERT_TRUE(d[N / 2] < STOP_ALL_MEDIAN_NS_MAX * test_slowdown());
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        victim_close(&v, t);
}
