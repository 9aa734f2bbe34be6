/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lifecycle rules of the transition engine (patcher/transition.c), checked against
 * the fake target of fake-target.h: made-up threads with stacks given as lists of PCs,
 * a control block and code bytes in this process. The states are read back from the
 * block as another process would (control_load), as the kernel's livepatch selftests
 * check a patch's states.
 */
#include <sys/mman.h>

#include "fake-target.h"
#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/stub.h"
#include "test.h"

#define TEXT_SIZE 0x10000
#define FUNC_SIZE 0x80
#define AREA_OFF 0x8000

static const uint8_t orig[5] = { 0x55, 0x48, 0x89, 0xe5, 0x90 }; /* push rbp; mov rbp,rsp; nop */

typedef struct Fix {
        Target *t;
        Control c;
        Transition tr;
        uint8_t *text;          /* old functions, then the patch mapping, copies, stubs */
        unsigned n_funcs;
        FakeThread *th[16];
        unsigned n_threads;
} Fix;

static Fix fx;

static uint64_t text(uint64_t off) { return (uint64_t)(uintptr_t)fx.text + off; }
static uint64_t old_fn(unsigned i) { return text(i * 0x100); }
static uint64_t new_fn(unsigned i) { return text(0x4000 + i * 0x40); }
static uint64_t copy_fn(unsigned i) { return text(0x8000 + i * 0x40); }
static uint64_t stub_of(unsigned i) { return text(0xc000 + i * STUB_MAX_SIZE); }
/* Where idle threads sit: none of the functions being replaced. */
static uint64_t idle_pc(void) { return text(0xf000); }

static void teardown(void) {
        transition_done(&fx.tr);
        control_done(&fx.c);
        fake_target_free(fx.t);
        if (fx.text)
                munmap(fx.text, TEXT_SIZE);
        fx = (Fix) {};
}

/* A process with n_threads idle threads, a control block, and patch 0 with n_funcs
 * records, not applied yet (as op-apply leaves it before the transition). */
static void setup(unsigned n_funcs, unsigned n_threads) {
        ControlImage *img;
        ControlPatch *p;

        teardown();
        fx.t = fake_target_new();
        ASSERT_TRUE(fx.t);
        fx.text = mmap(NULL, TEXT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(fx.text != MAP_FAILED);
        for (unsigned i = 0; i < n_threads; i++)
                fx.th[fx.n_threads++] = fake_thread_add(fx.t, 0, idle_pc());
        ASSERT_OK(target_stop_all(fx.t));
        ASSERT_OK(control_create(fx.t, target_any_stopped(fx.t), &fx.c));
        ASSERT_OK(target_resume_all(fx.t));
        /* Copies and stubs live in an area of ulp's: an anonymous read+exec mapping. */
        ASSERT_OK(mprotect(fx.text + AREA_OFF, TEXT_SIZE - AREA_OFF, PROT_READ | PROT_EXEC));

        img = fx.c.img;
        img->areas[0] = (ControlArea) { .addr = text(AREA_OFF), .size = TEXT_SIZE - AREA_OFF,
                                        .used = TEXT_SIZE - AREA_OFF };
        img->hdr.n_areas = 1;
        ASSERT_OK(control_write_areas(fx.t, &fx.c));
        fx.n_funcs = n_funcs;
        p = &img->patches[0];
        snprintf(p->name, sizeof(p->name), "fix");
        p->state = CP_UNPATCHED;
        p->seq = 1;
        p->first_func = 0;
        p->n_funcs = n_funcs;
        p->map_start = text(0x4000);
        p->map_size = 0x1000;
        img->hdr.n_patches = 1;
        img->hdr.n_funcs = n_funcs;
        for (unsigned i = 0; i < n_funcs; i++) {
                ControlFunc *f = &img->funcs[i];
                *f = (ControlFunc) { .patch = 0, .old_addr = old_fn(i), .old_size = FUNC_SIZE,
                                     .new_addr = new_fn(i), .new_size = 0x40, .prev_addr = copy_fn(i),
                                     .stub_addr = stub_of(i), .copy_addr = copy_fn(i), .displaced_len = sizeof(orig) };
                memcpy(f->orig_bytes, orig, sizeof(orig));
                snprintf(f->symbol, sizeof(f->symbol), "func%u", i);
                memcpy(fx.text + i * 0x100, orig, sizeof(orig));
        }
        ASSERT_OK(control_write_funcs(fx.t, &fx.c, 0, n_funcs));
        ASSERT_OK(control_write_patch(fx.t, &fx.c, 0));
        ASSERT_OK(control_write_header(fx.t, &fx.c));
}

/* prepare + init under a stop of every thread, as op.c does. */
static int start(int target_state, bool global) {
        int r, k;

        transition_done(&fx.tr);
        r = transition_prepare(&fx.tr, fx.t, &fx.c, NULL, NULL, 0, target_state, global);
        if (r < 0 || global)
                return r;
        r = target_stop_all(fx.t);
        if (r < 0)
                return r;
        r = transition_init(&fx.tr);
        k = target_resume_all(fx.t);
        return r < 0 ? r : k;
}

static void stack2(FakeThread *th, uint64_t inner) {
        uint64_t pcs[3] = { idle_pc(), inner, idle_pc() + 0x10 };
        fake_thread_stack(th, pcs, 3);
}

static void idle(FakeThread *th) {
        fake_thread_stack(th, (uint64_t[]) { idle_pc() }, 1);
}

/* What another process reads from the block now. */
static ControlImage *reread(void) {
        static Control c;

        control_done(&c);
        c = (Control) { .addr = fx.c.addr };
        c.img = calloc(1, sizeof(*c.img));
        ASSERT_TRUE(c.img);
        if (control_load(fx.t, &c) < 0 || control_read_table(fx.t, &c) < 0)
                TEST__FAIL("the block does not read back: %s", c.why);
        return c.img;
}

/* The state byte of the thread th in the block, -1 when it is not in the table. */
static int state_of(const ControlImage *img, const FakeThread *th) {
        for (unsigned i = 0; i < CONTROL_TABLE_SLOTS; i++)
                if (img->table_tp[i] == th->tp)
                        return img->table_state[i];
        return -1;
}

/* 1 the entry of func i jumps to dest, 0 it holds the original bytes, -1 anything else. */
static int entry_of(unsigned i, uint64_t *dest) {
        const uint8_t *b = fx.text + i * 0x100;
        if (memcmp(b, orig, sizeof(orig)) == 0)
                return 0;
        if (b[0] != 0xe9)
                return -1;
        *dest = old_fn(i) + 5 + (uint64_t)(int64_t)(int32_t)(b[1] | b[2] << 8 | b[3] << 16 | (uint32_t)b[4] << 24);
        return 1;
}

static void assert_entry(unsigned i, uint64_t want) {
        uint64_t d = 0;
        int r = entry_of(i, &d);
        if (want == 0 && r != 0)
                TEST__FAIL("entry of func%u: not the original bytes", i);
        if (want != 0 && (r != 1 || d != want))
                TEST__FAIL("entry of func%u: jumps to 0x%llx, not 0x%llx", i, (unsigned long long)d,
                           (unsigned long long)want);
}

static bool mapped(uint64_t addr) {
        unsigned char v;
        return mincore((void *)(uintptr_t)(addr & ~0xfffULL), 1, &v) == 0;
}

TEST(idle_threads_switch_in_one_pass) {
        ControlImage *img;

        setup(2, 4);
        ASSERT_OK(start(THREAD_PATCHED, false));
        /* init: every thread pending in the old state, stubs in the path. */
        img = reread();
        ASSERT_EQ(img->hdr.transition_patch, 0);
        ASSERT_EQ(img->hdr.target_state, THREAD_PATCHED);
        ASSERT_EQ(img->patches[0].state, CP_TRANSITION);
        ASSERT_EQ(img->hdr.driver_pid, getpid());
        ASSERT_EQ(fx.tr.n_pending, 4);
        for (unsigned i = 0; i < 4; i++)
                ASSERT_EQ(state_of(img, fx.th[i]), THREAD_UNPATCHED);
        assert_entry(0, stub_of(0));
        assert_entry(1, stub_of(1));

        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        img = reread();
        ASSERT_EQ(img->hdr.transition_patch, -1);
        ASSERT_EQ(img->patches[0].state, CP_PATCHED);
        for (unsigned i = 0; i < 4; i++)
                ASSERT_EQ(state_of(img, fx.th[i]), THREAD_PATCHED);
        /* Completion points the entries straight at the new functions. */
        assert_entry(0, new_fn(0));
        assert_entry(1, new_fn(1));
        ASSERT_EQ(fx.tr.switched, 4);
        ASSERT_EQ(fx.tr.n_pending, 0);
        teardown();
}

/* init's stop, as op.c makes it: init, then the transition tried in the same stop, its
 * checks given budget_ns (0: the budget op.c gets, which depends on this machine's speed). */
static int start_and_try_at_init(uint64_t budget_ns) {
        int r, k;

        transition_done(&fx.tr);
        r = transition_prepare(&fx.tr, fx.t, &fx.c, NULL, NULL, 0, THREAD_PATCHED, false);
        if (r < 0)
                return r;
        fx.tr.at_init_budget_ns = budget_ns;
        r = target_stop_all(fx.t);
        if (r < 0)
                return r;
        r = transition_init(&fx.tr);
        if (r == 0)
                r = transition_try_at_init(&fx.tr);
        k = target_resume_all(fx.t);
        return r < 0 ? r : k < 0 ? k : r;
}

/* Sixteen idle threads: all switched and the transition completed inside init's stop,
 * with no single-thread stop and no second stop of every thread. The budget is ample:
 * on a loaded machine (or under ASan) sixteen unwinds may outlast the default one. */
TEST(many_idle_threads_complete_in_init_stop) {
        ControlImage *img;

        setup(2, 16);
        fake_stats = (FakeStats) {};
        ASSERT_EQ(start_and_try_at_init(UINT64_MAX), 1);
        ASSERT_TRUE(fx.tr.completed);
        ASSERT_EQ(fake_stats.stop_all, 1);
        ASSERT_EQ(fake_stats.stop_one, 0);
        img = reread();
        ASSERT_EQ(img->hdr.transition_patch, -1);
        ASSERT_EQ(img->patches[0].state, CP_PATCHED);
        for (unsigned i = 0; i < 16; i++)
                ASSERT_EQ(state_of(img, fx.th[i]), THREAD_PATCHED);
        assert_entry(0, new_fn(0));
        ASSERT_EQ(fx.tr.switched, 16);
        teardown();
}

/* Past their budget the checks end once TRANSITION_AT_INIT_MIN threads were looked at:
 * the rest are the passes' (the window at most doubles). */
TEST(checks_in_init_stop_end_at_their_budget) {
        ControlImage *img;

        setup(2, 16);
        fake_stats = (FakeStats) {};
        ASSERT_EQ(start_and_try_at_init(1), 0);
        ASSERT_TRUE(!fx.tr.completed);
        ASSERT_EQ(fx.tr.switched, TRANSITION_AT_INIT_MIN);
        ASSERT_EQ(fx.tr.n_pending, 16 - TRANSITION_AT_INIT_MIN);
        ASSERT_EQ(fake_stats.stop_one, 0);
        img = reread();
        ASSERT_EQ(img->hdr.transition_patch, 0);
        ASSERT_EQ(state_of(img, fx.th[TRANSITION_AT_INIT_MIN - 1]), THREAD_PATCHED);
        ASSERT_EQ(state_of(img, fx.th[TRANSITION_AT_INIT_MIN]), THREAD_UNPATCHED);
        teardown();
}

/* A thread that may not switch ends the checks in init's stop once the first
 * TRANSITION_AT_INIT_MIN were looked at: completion cannot happen there, and the other
 * threads are the passes' to check, one stop each. */
TEST(blocked_thread_ends_the_checks_in_init_stop) {
        ControlImage *img;

        setup(2, 16);
        stack2(fx.th[1], old_fn(1) + 0x11);
        ASSERT_EQ(start_and_try_at_init(UINT64_MAX), 0);
        ASSERT_TRUE(!fx.tr.completed);
        /* th[0], th[2], th[3] switched; th[1] blocked; the other 12 not looked at. */
        ASSERT_EQ(fx.tr.switched, TRANSITION_AT_INIT_MIN - 1);
        ASSERT_EQ(fx.tr.n_pending, 16 - (TRANSITION_AT_INIT_MIN - 1));
        img = reread();
        ASSERT_EQ(state_of(img, fx.th[0]), THREAD_PATCHED);
        ASSERT_EQ(state_of(img, fx.th[1]), THREAD_UNPATCHED);
        ASSERT_EQ(state_of(img, fx.th[TRANSITION_AT_INIT_MIN]), THREAD_UNPATCHED);
        ASSERT_EQ(state_of(img, fx.th[15]), THREAD_UNPATCHED);
        /* A pass switches the idle ones; th[1] holds the transition until it leaves. */
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        idle(fx.th[1]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        img = reread();
        ASSERT_EQ(img->patches[0].state, CP_PATCHED);
        for (unsigned i = 0; i < 16; i++)
                ASSERT_EQ(state_of(img, fx.th[i]), THREAD_PATCHED);
        teardown();
}

/* The stop requests in flight: two while each thread stops at once (one waiting,
 * stopped, behind the one checked), doubling while the threads wait for the scheduler,
 * back one at a time. */
TEST(stop_window_grows_only_while_stops_wait) {
        TargetWindow w = TARGET_WINDOW_INIT(16);

        ASSERT_EQ_U64(w.n, 2);
        target_window_adapt(&w, 20000);
        ASSERT_EQ_U64(w.n, 2);
        target_window_adapt(&w, TARGET_WINDOW_SLOW_NS + 1);
        ASSERT_EQ_U64(w.n, 4);
        target_window_adapt(&w, 3000000);
        target_window_adapt(&w, 3000000);
        ASSERT_EQ_U64(w.n, 16);
        target_window_adapt(&w, 3000000);
        ASSERT_EQ_U64(w.n, 16);
        target_window_adapt(&w, 1000);
        ASSERT_EQ_U64(w.n, 15);
        for (int i = 0; i < 20; i++)
                target_window_adapt(&w, 1000);
        ASSERT_EQ_U64(w.n, 2);
}

TEST(thread_in_replaced_function_blocks_and_is_named) {
        ControlImage *img;
        char want[64];

        setup(2, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        /* A return address inside func1: the call it returns to is in func1. */
        stack2(fx.th[1], old_fn(1) + 0x11);
        for (int pass = 0; pass < 3; pass++)
                ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[1]->tid);
        /* Without symbols the blocker names the address of the call. */
        snprintf(want, sizeof(want), "0x%llx", (unsigned long long)(old_fn(1) + 0x10));
        ASSERT_STREQ(fx.tr.pending[0].blocker, want);
        img = reread();
        ASSERT_EQ(img->hdr.transition_patch, 0);
        ASSERT_EQ(img->patches[0].state, CP_TRANSITION);
        ASSERT_EQ(state_of(img, fx.th[0]), THREAD_PATCHED);
        ASSERT_EQ(state_of(img, fx.th[1]), THREAD_UNPATCHED);
        ASSERT_EQ(state_of(img, fx.th[2]), THREAD_PATCHED);
        assert_entry(1, stub_of(1));

        /* Once it left, the next pass switches it and completes. */
        idle(fx.th[1]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        img = reread();
        ASSERT_EQ(img->patches[0].state, CP_PATCHED);
        ASSERT_EQ(state_of(img, fx.th[1]), THREAD_PATCHED);
        teardown();
}

/* A return address is looked up one byte back: one just past a function belongs to
 * its last call (blocks), one at its first byte belongs to the function before. */
TEST(return_address_belongs_to_the_call_before_it) {
        setup(2, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[0], old_fn(0) + FUNC_SIZE);
        stack2(fx.th[1], old_fn(1));
        /* The PC itself is taken as it is: at the first byte of func1, it blocks. */
        fake_thread_stack(fx.th[2], (uint64_t[]) { old_fn(1) }, 1);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 2);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[0]->tid);
        ASSERT_EQ(fx.tr.pending[1].tid, fx.th[2]->tid);
        teardown();
}

TEST(unreliable_stack_does_not_switch) {
        setup(1, 2);
        ASSERT_OK(start(THREAD_PATCHED, false));
        fx.th[0]->unreliable = true;
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_STREQ(fx.tr.pending[0].blocker, "unreliable stack: no CFI for the PC");
        ASSERT_EQ(state_of(reread(), fx.th[0]), THREAD_UNPATCHED);
        fx.th[0]->unreliable = false;
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        teardown();
}

/* klp_reverse_transition: threads already switched go back, the one still in the old
 * state is done at once; the unpatch completes, restores the entries and unmaps. */
TEST(reverse_mid_transition) {
        ControlImage *img;

        setup(2, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[2], old_fn(0) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_OK(transition_reverse(&fx.tr));
        img = reread();
        ASSERT_EQ(img->hdr.target_state, THREAD_UNPATCHED);
        ASSERT_EQ(img->hdr.transition_patch, 0);
        ASSERT_EQ(fx.tr.n_pending, 2);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[0]->tid);
        ASSERT_EQ(fx.tr.pending[1].tid, fx.th[1]->tid);
        /* Unpatching, the whole patch mapping blocks: a thread in it stays pending. */
        stack2(fx.th[0], new_fn(1) + 0x8);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[0]->tid);
        ASSERT_TRUE(mapped(new_fn(0)));
        idle(fx.th[0]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        img = reread();
        ASSERT_EQ(img->patches[0].state, CP_UNPATCHED);
        ASSERT_EQ(img->patches[0].map_size, 0);
        ASSERT_EQ(img->hdr.transition_patch, -1);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_EQ(state_of(img, fx.th[i]), THREAD_UNPATCHED);
        assert_entry(0, 0);
        assert_entry(1, 0);
        ASSERT_TRUE(!mapped(new_fn(0)));
        teardown();
}

/* klp_copy_process: a thread created during the transition starts in the target state
 * (the stubs read the header's state for threads not in the table): it never holds the
 * transition back, wherever it is. */
TEST(new_threads_start_in_target_state) {
        FakeThread *n;

        setup(1, 2);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[0], old_fn(0) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        n = fake_thread_add(fx.t, 0, idle_pc());
        stack2(n, old_fn(0) + 0x30);
        idle(fx.th[0]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        ASSERT_EQ(state_of(reread(), n), -1);
        ASSERT_EQ(n->stops, 1); /* by completion's stop of every thread, not checked */
        teardown();
}

/* A pending thread that exits leaves its slot in the old state; glibc gives its thread
 * pointer to the next thread created, which must not inherit that state. */
TEST(exited_thread_slot_goes_to_target_state) {
        ControlImage *img;
        FakeThread *n;

        setup(1, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[0], old_fn(0) + 0x20);
        stack2(fx.th[1], old_fn(0) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 2);
        fx.th[0]->exited = true;
        /* The pass finds it gone and reclaims its slot under a stop of every thread. */
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.gone, 1);
        ASSERT_EQ(fx.tr.n_pending, 1);
        img = reread();
        ASSERT_EQ(state_of(img, fx.th[0]), THREAD_PATCHED);
        /* A thread that took a dead one's pointer before the reclaim is checked like
         * the others. */
        fx.th[1]->exited = true;
        n = fake_thread_add(fx.t, fx.th[1]->tp, idle_pc());
        stack2(n, old_fn(0) + 0x40);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, n->tid);
        idle(n);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        ASSERT_EQ(state_of(reread(), n), THREAD_PATCHED);
        teardown();
}

/* A thread that does not stop in time is a straggler named by the stop's sentence;
 * the transition stays open (not a failure) until it can be looked at. */
TEST(late_thread_keeps_transition_open) {
        setup(1, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        fx.th[2]->stop = FAKE_LATE;
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[2]->tid);
        ASSERT_STREQ(fx.tr.pending[0].blocker, "not stopped within 1000 ms (state D)");
        ASSERT_EQ(fx.t->late_tid, fx.th[2]->tid);
        ASSERT_EQ(state_of(reread(), fx.th[2]), THREAD_UNPATCHED);
        /* Again: no error while it stays late. */
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        fx.th[2]->stop = FAKE_STOPS;
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        ASSERT_EQ(reread()->patches[0].state, CP_PATCHED);
        teardown();
}

/* Every thread switched, but one cannot be stopped for completion: 0, tried again. */
TEST(completion_waits_for_late_thread) {
        FakeThread *n;

        setup(1, 2);
        ASSERT_OK(start(THREAD_PATCHED, false));
        n = fake_thread_add(fx.t, 0, idle_pc());
        n->stop = FAKE_LATE;
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 0);
        ASSERT_EQ(reread()->patches[0].state, CP_TRANSITION);
        n->stop = FAKE_STOPS;
        ASSERT_EQ(transition_complete(&fx.tr), 1);
        ASSERT_EQ(reread()->patches[0].state, CP_PATCHED);
        teardown();
}

TEST(force_switches_stragglers) {
        ControlImage *img;

        setup(1, 2);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[0], old_fn(0) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(transition_force(&fx.tr), 1);
        img = reread();
        ASSERT_EQ(img->patches[0].state, CP_PATCHED);
        ASSERT_TRUE(img->patches[0].flags & CP_FLAG_FORCED);
        ASSERT_EQ(state_of(img, fx.th[0]), THREAD_PATCHED);
        assert_entry(0, new_fn(0));
        teardown();
}

/* Global mode: all threads checked together under one stop; one blocked, none switch
 * and the code is not touched. */
TEST(global_mode_all_or_none) {
        setup(2, 3);
        ASSERT_OK(start(THREAD_PATCHED, true));
        stack2(fx.th[1], old_fn(1) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[1]->tid);
        assert_entry(0, 0);
        assert_entry(1, 0);
        ASSERT_EQ(reread()->patches[0].state, CP_UNPATCHED);
        /* A thread inside the entry bytes about to be rewritten blocks as well. */
        idle(fx.th[1]);
        fake_thread_stack(fx.th[2], (uint64_t[]) { old_fn(0) + 2 }, 1);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_STREQ(fx.tr.pending[0].blocker, "inside code being rewritten");
        idle(fx.th[2]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        ASSERT_EQ(fx.tr.switched, 3);
        assert_entry(0, new_fn(0));
        assert_entry(1, new_fn(1));
        ASSERT_EQ(reread()->patches[0].state, CP_PATCHED);
        teardown();
}

/* Pitfall 1: a PC strictly inside one instruction of the entry bytes about to be
 * overwritten has no counterpart in the relocated copy: init refuses, writing nothing
 * (a PC at an instruction's start there is moved into the copy instead); the first
 * byte is fine (the jump replaces the instruction). */
TEST(init_refuses_thread_inside_an_entry_instruction) {
        setup(1, 2);
        fake_thread_stack(fx.th[0], (uint64_t[]) { old_fn(0) + 3 }, 1);
        ASSERT_ERR(start(THREAD_PATCHED, false), -EILSEQ);
        assert_entry(0, 0);
        ASSERT_EQ(reread()->hdr.transition_patch, -1);
        fake_thread_stack(fx.th[0], (uint64_t[]) { old_fn(0) }, 1);
        ASSERT_OK(start(THREAD_PATCHED, false));
        assert_entry(0, stub_of(0));
        teardown();
}

/* Entry bytes changed by someone else (a debugger's breakpoint): nothing written. */
TEST(init_refuses_changed_entry) {
        setup(1, 1);
        fx.text[0] = 0xcc;
        ASSERT_ERR(start(THREAD_PATCHED, false), -EBUSY);
        ASSERT_EQ(fx.text[0], 0xcc);
        ASSERT_EQ(reread()->hdr.transition_patch, -1);
        teardown();
}

/* Per-thread dispatch cannot tell apart two threads with one thread pointer. */
TEST(shared_thread_pointer_refused) {
        setup(1, 1);
        fake_thread_add(fx.t, fx.th[0]->tp, idle_pc());
        ASSERT_ERR(start(THREAD_PATCHED, false), -EOPNOTSUPP);
        teardown();
}

/* klp_cancel_transition: nothing was visible; the record goes and the code is unmapped. */
TEST(cancel_before_init) {
        ControlImage *img;

        setup(1, 2);
        ASSERT_OK(transition_prepare(&fx.tr, fx.t, &fx.c, NULL, NULL, 0, THREAD_PATCHED, false));
        ASSERT_OK(transition_cancel(&fx.tr));
        img = reread();
        ASSERT_EQ(img->patches[0].state, CP_UNPATCHED);
        ASSERT_EQ(img->patches[0].map_size, 0);
        ASSERT_TRUE(!mapped(new_fn(0)));
        assert_entry(0, 0);
        teardown();
}

/* The driver dies mid-transition: a new one rebuilds the transition from the block
 * alone and finishes it. */
TEST(resume_after_driver_death) {
        Transition tr2;
        Control c2 = { .addr = 0 };

        setup(2, 3);
        ASSERT_OK(start(THREAD_PATCHED, false));
        stack2(fx.th[1], old_fn(1) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        transition_done(&fx.tr);

        c2.addr = fx.c.addr;
        c2.img = calloc(1, sizeof(*c2.img));
        ASSERT_TRUE(c2.img);
        ASSERT_OK(control_load(fx.t, &c2));
        ASSERT_OK(transition_resume(&tr2, fx.t, &c2, NULL, NULL));
        ASSERT_EQ(tr2.target_state, THREAD_PATCHED);
        ASSERT_EQ(tr2.n_pending, 1);
        ASSERT_EQ(tr2.pending[0].tid, fx.th[1]->tid);
        idle(fx.th[1]);
        ASSERT_EQ(transition_try_complete(&tr2), 1);
        ASSERT_EQ(reread()->patches[0].state, CP_PATCHED);
        assert_entry(1, new_fn(1));
        transition_done(&tr2);
        control_done(&c2);
        teardown();
}

/* A second patch over the first: the range to check is the first patch's function, not
 * the original, and completion points the entry at the second. */
TEST(stacked_patch_checks_previous_top) {
        ControlImage *img;
        ControlFunc *f;

        setup(1, 2);
        ASSERT_OK(start(THREAD_PATCHED, false));
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        transition_done(&fx.tr);

        img = fx.c.img;
        img->patches[1] = img->patches[0];
        snprintf(img->patches[1].name, sizeof(img->patches[1].name), "fix2");
        img->patches[1].state = CP_UNPATCHED;
        img->patches[1].seq = 2;
        img->patches[1].first_func = 1;
        img->patches[1].map_start = text(0x5000);
        f = &img->funcs[1];
        *f = img->funcs[0];
        f->patch = 1;
        f->new_addr = text(0x5000);
        f->prev_addr = new_fn(0);
        f->stub_addr = stub_of(1);
        img->hdr.n_patches = 2;
        img->hdr.n_funcs = 2;
        ASSERT_OK(control_write_funcs(fx.t, &fx.c, 1, 1));
        ASSERT_OK(control_write_patch(fx.t, &fx.c, 1));
        ASSERT_OK(control_write_header(fx.t, &fx.c));

        ASSERT_OK(transition_prepare(&fx.tr, fx.t, &fx.c, NULL, NULL, 1, THREAD_PATCHED, false));
        ASSERT_EQ(fx.tr.n_ranges, 1);
        ASSERT_EQ_U64(fx.tr.ranges[0].lo, new_fn(0));
        ASSERT_EQ_U64(fx.tr.ranges[0].hi, new_fn(0) + 0x40);
        ASSERT_OK(target_stop_all(fx.t));
        ASSERT_OK(transition_init(&fx.tr));
        ASSERT_OK(target_resume_all(fx.t));
        /* In the original: no longer on the list. In the first patch's function: blocks. */
        stack2(fx.th[0], old_fn(0) + 0x20);
        stack2(fx.th[1], new_fn(0) + 0x20);
        ASSERT_EQ(transition_try_complete(&fx.tr), 0);
        ASSERT_EQ(fx.tr.n_pending, 1);
        ASSERT_EQ(fx.tr.pending[0].tid, fx.th[1]->tid);
        idle(fx.th[1]);
        ASSERT_EQ(transition_try_complete(&fx.tr), 1);
        assert_entry(0, text(0x5000));
        teardown();
}

TEST_MAIN()
