/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration tests of the ptrace layer's remote steps (patcher/target.h) on victim-ptrace
 * processes: system calls, batches, calls and writes of the target's memory. Each case
 * runs alone with: test-ptrace-remote CASE.
 */
#include "ptrace-harness.h"

TEST_MAIN()

static void check_regs_unchanged(Thread *th) {
        struct user_regs_struct now;
        ASSERT_OK(ptrace(PTRACE_GETREGS, th->tid, NULL, &now));
        ASSERT_EQ_U64(now.rip, th->regs.rip);
        ASSERT_EQ_U64(now.rsp, th->regs.rsp);
        ASSERT_EQ_U64(now.rax, th->regs.rax);
        ASSERT_EQ_U64(now.orig_rax, th->regs.orig_rax);
        ASSERT_EQ_U64(now.rcx, th->regs.rcx);
        ASSERT_EQ_U64(now.r11, th->regs.r11);
        ASSERT_EQ_U64(now.rdi, th->regs.rdi);
}

TEST(syscall) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        sleep_ms(5);

        /* On the thread blocked in nanosleep. */
        Thread *th = target_find_thread(t, v.sh->sleeper_tid);
        ASSERT_TRUE(th);
        uint64_t sleeps0 = v.sh->sleeps_ok;
        ASSERT_OK(target_stop_thread(t, th));
        fprintf(stderr, "  sleeper stopped with orig_rax %lld rax %lld\n",
                (long long)th->regs.orig_rax, (long long)th->regs.rax);
        ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v.pid);
        ASSERT_EQ(rsys(t, th, SYS_gettid, 0, 0, 0, 0, 0, 0), th->tid);
        long addr = rsys(t, th, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(addr > 0 && (addr & 4095) == 0);
        ASSERT_TRUE(maps_has(v.pid, (uint64_t)addr, NULL));
        uint64_t word = 0x1122334455667788ULL, back = 0;
        ASSERT_OK(target_write(t, (uint64_t)addr + 8, &word, 8));
        ASSERT_OK(target_read(t, (uint64_t)addr + 8, &back, 8));
        ASSERT_EQ_U64(back, word);
        ASSERT_EQ(rsys(t, th, SYS_munmap, addr, 4096, 0, 0, 0, 0), 0);
        ASSERT_TRUE(!maps_has(v.pid, (uint64_t)addr, NULL));
        ASSERT_EQ(rsys(t, th, SYS_close, 99999, 0, 0, 0, 0, 0), -EBADF);
        check_regs_unchanged(th);
        ASSERT_TRUE(t->syscall_insn != 0);
        ASSERT_OK(target_resume_thread(t, th));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->sleeps_ok >= sleeps0 + 3, 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        ASSERT_EQ(v.sh->sleep_last_ret, 0);

        /* On the thread blocked in read(): it still reads what comes later. */
        th = target_find_thread(t, v.sh->reader_tid);
        ASSERT_OK(target_stop_thread(t, th));
        ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v.pid);
        check_regs_unchanged(th);
        ASSERT_OK(target_resume_thread(t, th));

        /* On the thread in ppoll with a temporary mask, many times. */
        th = target_find_thread(t, v.sh->ppoller_tid);
        for (int i = 0; i < 50; i++) {
                ASSERT_OK(target_stop_thread(t, th));
                ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v.pid);
                check_regs_unchanged(th);
                ASSERT_OK(target_resume_thread(t, th));
                sleep_ms(1);
        }
        sleep_ms(30);
        ASSERT_EQ(v.sh->ppoll_bad, 0);
        ASSERT_EQ(v.sh->ppoll_mask_bad, 0);

        /* All stopped, on the leader (in usleep) and a spinning thread. */
        ASSERT_OK(target_stop_all(t));
        ASSERT_EQ(rsys(t, target_find_thread(t, v.pid), SYS_getpid, 0, 0, 0, 0, 0, 0), v.pid);
        th = target_find_thread(t, v.sh->counter_tids[0]);
        ASSERT_EQ(rsys(t, th, SYS_gettid, 0, 0, 0, 0, 0, 0), th->tid);
        check_regs_unchanged(th);
        ASSERT_OK(target_resume_all(t));

        ASSERT_EQ(write(v.pipe_w, "later", 5), 5);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->read_done, 2000));
        ASSERT_EQ(v.sh->read_ret, 5);
        ASSERT_STREQ((const char *)v.sh->read_buf, "later");
        sleeps0 = v.sh->sleeps_ok;
        ASSERT_TRUE(WAIT_UNTIL(v.sh->sleeps_ok >= sleeps0 + 2, 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        ASSERT_EQ(v.sh->handler_changed, 0);
        victim_close(&v, t);
}

/* A batch (target_syscall_batch_begin): the same results, the thread's context back at
 * the end whatever it was stopped in, and fewer ptrace requests than one by one. */
static void batch_on(Victim *v, Target *t, Thread *th, uint64_t *ret_single, uint64_t *ret_batch) {
        const long none[6] = { 0 };
        long ret;
        uint64_t n0;

        ASSERT_OK(target_stop_thread(t, th));
        n0 = target_ptrace_requests();
        for (int i = 0; i < 6; i++)
                ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v->pid);
        *ret_single = target_ptrace_requests() - n0;
        check_regs_unchanged(th);

        n0 = target_ptrace_requests();
        ASSERT_OK(target_syscall_batch_begin(t, th));
        ASSERT_ERR(target_syscall_batch_begin(t, th), -EINVAL);
        ASSERT_ERR(target_call(t, th, 0, none, 0, 1000, (uint64_t *)&ret), -EBUSY);
        ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v->pid);
        ASSERT_EQ(rsys(t, th, SYS_gettid, 0, 0, 0, 0, 0, 0), th->tid);
        long addr = rsys(t, th, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(addr > 0 && (addr & 4095) == 0);
        ASSERT_TRUE(maps_has(v->pid, (uint64_t)addr, NULL));
        ASSERT_EQ(rsys(t, th, SYS_close, 99999, 0, 0, 0, 0, 0), -EBADF);
        ASSERT_EQ(rsys(t, th, SYS_munmap, addr, 4096, 0, 0, 0, 0), 0);
        ASSERT_EQ(rsys(t, th, SYS_getpid, 0, 0, 0, 0, 0, 0), v->pid);
        ASSERT_OK(target_syscall_batch_end(t, th));
        ASSERT_OK(target_syscall_batch_end(t, th));   /* none open: nothing */
        *ret_batch = target_ptrace_requests() - n0;
        ASSERT_TRUE(!maps_has(v->pid, (uint64_t)addr, NULL));
        check_regs_unchanged(th);
        /* A batch with no call in it leaves the thread as it was too. */
        ASSERT_OK(target_syscall_batch_begin(t, th));
        ASSERT_OK(target_syscall_batch_end(t, th));
        check_regs_unchanged(th);
        ASSERT_OK(target_resume_thread(t, th));
}

TEST(syscall_batch) {
        Victim v;
        Target *t;
        uint64_t single, batch, sleeps0;

        victim_start(&v, "threads", NULL);
        ASSERT_OK(target_open(v.pid, &t));
        sleep_ms(5);
        /* In nanosleep: the sleep goes on and ends as it would have. */
        sleeps0 = v.sh->sleeps_ok;
        batch_on(&v, t, target_find_thread(t, v.sh->sleeper_tid), &single, &batch);
        fprintf(stderr, "  6 calls one by one: %llu ptrace requests; a batch of 6: %llu\n",
                (unsigned long long)single, (unsigned long long)batch);
        ASSERT_TRUE(batch * 3 < single * 2);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->sleeps_ok >= sleeps0 + 3, 2000));
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        ASSERT_EQ(v.sh->sleep_last_ret, 0);
        /* In ppoll with a temporary mask, and in read(). */
        for (int i = 0; i < 10; i++)
                batch_on(&v, t, target_find_thread(t, v.sh->ppoller_tid), &single, &batch);
        batch_on(&v, t, target_find_thread(t, v.sh->reader_tid), &single, &batch);
        sleep_ms(30);
        ASSERT_EQ(v.sh->ppoll_bad, 0);
        ASSERT_EQ(v.sh->ppoll_mask_bad, 0);
        ASSERT_EQ(write(v.pipe_w, "later", 5), 5);
        ASSERT_TRUE(WAIT_UNTIL(v.sh->read_done, 2000));
        ASSERT_EQ(v.sh->read_ret, 5);
        ASSERT_STREQ((const char *)v.sh->read_buf, "later");
        ASSERT_EQ(v.sh->handler_changed, 0);
        victim_close(&v, t);
}

/* ---- remote calls ---- */

/* What Target.call_start saw: the thread, the frame, the slot as the call starts. */
typedef struct CallStart {
        Target *t;
        uint64_t slot_addr, slot;
        pid_t tid;
        uint64_t frame;
        int calls;
} CallStart;

static int call_started(void *data, pid_t tid, uint64_t frame) {
        CallStart *s = data;

        s->tid = tid;
        s->frame = frame;
        s->calls++;
        return target_read(s->t, s->slot_addr, &s->slot, sizeof(s->slot));
}

/* A call through target_call_record_code(): the hook runs once, after the frame is
 * written; the callee sees its arguments but the first two (the function and the slot,
 * zeroed), a stack aligned as after a call instruction, and the slot gets
 * CONTROL_CALL_RETURNED (3 << 32) with the low 32 bits of its return value; the tracer
 * gets all 64. */
static void check_recorded_call(Victim *v, Target *t, Thread *th, uint64_t page) {
        uint8_t rec[64];
        size_t rec_len = target_call_record_code(rec);
        uint64_t slot_addr = page + 1024, zero = 0, slot = 0, ret = 0;
        CallStart s = { .t = t, .slot_addr = slot_addr };

        ASSERT_OK(target_write(t, page + 128, rec, rec_len));
        ASSERT_OK(target_write(t, slot_addr, &zero, sizeof(zero)));
        t->call_start = call_started;
        t->call_start_data = &s;
        const long neg[6] = { (long)v->sh->add3_addr, (long)slot_addr, -7, 0, 0, 0 };
        ASSERT_OK(target_call(t, th, page + 128, neg, page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ((long)ret, -7);
        ASSERT_OK(target_read(t, slot_addr, &slot, sizeof(slot)));
        ASSERT_EQ(slot, (3ULL << 32) | 0xfffffff9ULL);
        ASSERT_EQ(s.calls, 1);
        ASSERT_EQ(s.tid, th->tid);
        ASSERT_EQ(s.slot, 0);
        ASSERT_EQ(s.frame % 16, 8);
        ASSERT_TRUE(s.frame < th->regs.rsp - 128);
        const long at[6] = { (long)v->sh->entry_rsp_addr, (long)slot_addr, 0, 0, 0, 0 };
        ASSERT_OK(target_call(t, th, page + 128, at, page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret % 16, 8);
        ASSERT_EQ(ret, s.frame - 16);
        ASSERT_OK(target_read(t, slot_addr, &slot, sizeof(slot)));
        ASSERT_EQ(slot, (3ULL << 32) | (ret & 0xffffffffULL));
        t->call_start = NULL;
        t->call_start_data = NULL;
        check_regs_unchanged(th);
}

TEST(call) {
        Victim v;
        Target *t;
        uint64_t ret = 0;
        t = victim_open(&v, "threads", NULL);

        ASSERT_OK(target_stop_all(t));
        Thread *th = target_any_stopped(t);
        ASSERT_TRUE(th);
        long page = rsys(t, th, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(page > 0);
        uint8_t code[16];
        size_t code_len = target_call_return_code(code);
        ASSERT_OK(target_write(t, (uint64_t)page, code, code_len));
        /* Anything else there is refused. */
        uint8_t int3 = 0xcc;
        ASSERT_OK(target_write(t, (uint64_t)page + 64, &int3, 1));
        ASSERT_ERR(target_call(t, th, v.sh->add3_addr, (const long[6]) { 0 }, (uint64_t)page + 64,
                               TEST_STOP_TIMEOUT_MS, &ret),
                   -EINVAL);

        const long a[6] = { 1, 2, 3, 0, 0, 0 };
        ASSERT_OK(target_call(t, th, v.sh->add3_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret, 6);
        const long b[6] = { 100000000000L, -7, 40, 0, 0, 0 };
        ASSERT_OK(target_call(t, th, v.sh->add3_addr, b, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret, 100000000033L);
        check_regs_unchanged(th);

        /* Called as by a call instruction, below the red zone. */
        ASSERT_OK(target_call(t, th, v.sh->entry_rsp_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret % 16, 8);
        ASSERT_TRUE(ret < th->regs.rsp - 128 && ret > th->regs.rsp - 65536);
        check_recorded_call(&v, t, th, (uint64_t)page);

        /* The vector and x87 state comes back too. */
        struct user_fpregs_struct fp0, fp1;
        ASSERT_OK(ptrace(PTRACE_GETFPREGS, th->tid, NULL, &fp0));
        ASSERT_OK(target_call(t, th, v.sh->clobber_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_OK(ptrace(PTRACE_GETFPREGS, th->tid, NULL, &fp1));
        ASSERT_TRUE(memcmp(fp0.xmm_space, fp1.xmm_space, sizeof(fp0.xmm_space)) == 0);
        ASSERT_TRUE(memcmp(fp0.st_space, fp1.st_space, sizeof(fp0.st_space)) == 0);
        ASSERT_EQ(fp0.cwd, fp1.cwd);
        ASSERT_EQ(fp0.mxcsr, fp1.mxcsr);

        /* A crash is reported, not delivered (the victim's SIGSEGV handler would exit). */
        ASSERT_ERR(target_call(t, th, v.sh->crash_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret), -EFAULT);
        check_regs_unchanged(th);
        ASSERT_OK(target_call(t, th, v.sh->add3_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret, 6);

        /* On another kind of thread: the one blocked in nanosleep. */
        Thread *sl = target_find_thread(t, v.sh->sleeper_tid);
        ASSERT_OK(target_call(t, sl, v.sh->add3_addr, a, (uint64_t)page, TEST_STOP_TIMEOUT_MS, &ret));
        ASSERT_EQ(ret, 6);
        check_regs_unchanged(sl);

        /* A call past its deadline is left to finish by itself: the thread stays in it
         * (not restored), and once resumed returns through its frame to where it was. */
        uint64_t t0 = now_ns();
        ASSERT_ERR(target_call(t, th, v.sh->spin_addr, a, (uint64_t)page, 100, &ret), -ETIMEDOUT);
        ASSERT_TRUE(now_ns() - t0 < 2000000000ULL * test_slowdown());
        ASSERT_TRUE(th->stopped);
        struct user_regs_struct in_call;
        ASSERT_OK(ptrace(PTRACE_GETREGS, th->tid, NULL, &in_call));
        ASSERT_TRUE(in_call.rsp <= ret && ret < th->regs.rsp - 128);
        ASSERT_TRUE(in_call.rip != th->regs.rip);
        ASSERT_EQ(ret % 16, 8);
        ASSERT_OK(target_resume_all(t));
        v.sh->spin_release = 1;
        ASSERT_TRUE(WAIT_UNTIL(v.sh->spin_returns == 1, 5000));

        ASSERT_OK(target_stop_all(t));
        th = target_any_stopped(t);
        ASSERT_TRUE(th);
        ASSERT_EQ(rsys(t, th, SYS_munmap, page, 4096, 0, 0, 0, 0), 0);
        ASSERT_OK(target_resume_all(t));

        uint64_t snap[VICTIM_COUNTERS];
        for (int k = 0; k < VICTIM_COUNTERS; k++)
                snap[k] = v.sh->counters[k];
        uint64_t loops = v.sh->main_loops, sleeps0 = v.sh->sleeps_ok;
        ASSERT_TRUE(WAIT_UNTIL(counters_above(v.sh, snap), 2000));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->main_loops > loops + 5, 2000));
        ASSERT_TRUE(WAIT_UNTIL(v.sh->sleeps_ok >= sleeps0 + 2, 2000));
        ASSERT_EQ(v.sh->segv_count, 0);
        ASSERT_EQ(v.sh->handler_changed, 0);
        ASSERT_EQ(v.sh->sleeps_bad, 0);
        ASSERT_EQ(kill(v.pid, 0), 0);
        victim_close(&v, t);
}

/* ---- memory ---- */

TEST(write_readonly_code) {
        Victim v;
        Target *t;
        t = victim_open(&v, "threads", NULL);
        uint64_t code = v.sh->unused_code_addr;
        char perms[8];
        ASSERT_TRUE(maps_has(v.pid, code, perms));
        ASSERT_STREQ(perms, "r-xp");

        uint8_t orig[16], now[16];
        ASSERT_OK(target_read(t, code, orig, 16));
        ASSERT_TRUE(WAIT_UNTIL(memcmp((const void *)v.sh->code_copy, orig, 16) == 0, 2000));
        const uint8_t patch[3] = { 0xde, 0xad, 0x42 };
        ASSERT_OK(target_write(t, code + 5, patch, 3));
        /* The victim sees it too, and the mapping kept its protection. */
        assert_code_patched(&v, t, code, orig, patch);
        ASSERT_OK(target_write(t, code + 5, orig + 5, 3));
        ASSERT_OK(target_read(t, code, now, 16));
        ASSERT_TRUE(memcmp(now, orig, 16) == 0);

        uint8_t x;
        ASSERT_ERR(target_read(t, 16, &x, 1), -EFAULT);
        ASSERT_ERR(target_write(t, 16, &x, 1), -EFAULT);
        target_free(t);
        victim_end(&v);
}

/* Gathered writes (target_write_gather_begin): writable and read-only pages mixed, in
 * order (a later write over an earlier one wins), a read in between sees what was
 * queued before it, a bad address is reported at end, and the victim sees it all. */
TEST(write_gathered) {
        Victim v;
        Target *t;
        Thread *th;
        uint64_t code, page, w, back;
        uint8_t orig[16], now[16];
        const uint8_t patch[3] = { 0xde, 0xad, 0x42 };

        victim_start(&v, "threads", NULL);
        ASSERT_OK(target_open(v.pid, &t));
        code = v.sh->unused_code_addr;
        ASSERT_OK(target_read(t, code, orig, 16));
        th = target_find_thread(t, v.sh->sleeper_tid);
        ASSERT_OK(target_stop_thread(t, th));
        page = (uint64_t)rsys(t, th, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_OK(target_resume_thread(t, th));

        ASSERT_OK(target_write_gather_begin(t));
        ASSERT_ERR(target_write_gather_begin(t), -EINVAL);
        for (uint64_t i = 0; i < 32; i++) {
                w = 0x1000 + i;
                ASSERT_OK(target_write(t, page + 8 * i, &w, 8));
        }
        ASSERT_OK(target_write(t, code + 5, patch, 3));     /* read-only: /proc/PID/mem */
        w = 0x77;
        ASSERT_OK(target_write(t, page + 8 * 40, &w, 8));
        w = 0x78;
        ASSERT_OK(target_write(t, page + 8 * 40, &w, 8));   /* the later one wins */
        /* Nothing written yet, as far as the victim goes. */
        ASSERT_EQ(memcmp((const void *)v.sh->code_copy, orig, 16), 0);
        /* A read writes the queue out first. */
        ASSERT_OK(target_read(t, page + 8 * 40, &back, 8));
        ASSERT_EQ_U64(back, 0x78);
        w = 0x99;
        ASSERT_OK(target_write(t, page + 8 * 41, &w, 8));
        ASSERT_OK(target_write_gather_end(t));
        ASSERT_OK(target_write_gather_end(t));   /* none open: nothing */
        for (uint64_t i = 0; i < 32; i++) {
                ASSERT_OK(target_read(t, page + 8 * i, &back, 8));
                ASSERT_EQ_U64(back, 0x1000 + i);
        }
        ASSERT_OK(target_read(t, page + 8 * 41, &back, 8));
        ASSERT_EQ_U64(back, 0x99);
        assert_code_patched(&v, t, code, orig, patch);

        /* A write to no mapping: those before it land, the rest are dropped as a caller
         * stopping at its first error would, and end says -EFAULT. */
        ASSERT_OK(target_write_gather_begin(t));
        w = 0x5150;
        ASSERT_OK(target_write(t, page + 8, &w, 8));
        ASSERT_OK(target_write(t, 16, &w, 8));
        ASSERT_OK(target_write(t, code + 5, orig + 5, 3));
        ASSERT_ERR(target_write_gather_end(t), -EFAULT);
        ASSERT_OK(target_read(t, page + 8, &back, 8));
        ASSERT_EQ_U64(back, 0x5150);
        ASSERT_OK(target_read(t, code, now, 16));
        ASSERT_EQ(now[5], patch[0]);
        ASSERT_OK(target_write(t, code + 5, orig + 5, 3));
        target_free(t);
        victim_end(&v);
}

/* ---- processes and threads coming and going ---- */

