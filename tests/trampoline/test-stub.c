/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dispatch stubs, run for real: a stub built into a page near the test binary sends
 * each calling thread to the new or the old callee by its state in a thread table
 * (or the target state when absent), and both callees see every argument register,
 * rax, the callee-saved registers, the stack pointer and the return address exactly
 * as the caller set them (stub-callee.S records them).
 */

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <capstone/capstone.h>

#include "common/macro.h"
#include "patcher/threadtable.h"
#include "patcher/x86_64/stub.h"
#include "tests/test.h"
#include "tests/trampoline/near.h"

enum { WENT_NEW = 1, WENT_OLD = 2 };

__thread uint64_t stub_seen[16];
__thread uint64_t stub_caller_rsp;

extern uint8_t stub_callee_new[], stub_callee_old[], stub_call_ret[];
uint64_t stub_call(const void *fn, const uint64_t in[16], uint64_t out[16]);

typedef struct Fixture {
        uint8_t *stub;            /* a page near the test binary */
        uint64_t *tp;             /* the table: tp[n], then state[n] */
        uint8_t *state;
        unsigned order;
        uint8_t target_state;
        StubParams p;
        size_t len;
} Fixture;

static uint64_t thread_pointer(void) {
        uint64_t tp;

        __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
        return tp;
}

/* Maps the stub page and a table of 1 << order slots, and builds the stub to new/old. */
static void fixture_init(Fixture *f, unsigned order, const void *new_addr, const void *old_addr) {
        size_t n = 1u << order;

        *f = (Fixture) { .order = order };
        f->stub = map_near(stub_callee_new, 4096);
        ASSERT_TRUE(f->stub);
        f->tp = mmap(NULL, n * 9, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(f->tp != MAP_FAILED);
        f->state = (uint8_t *)(f->tp + n);
        f->p = (StubParams) {
                .stub_addr = (uint64_t)f->stub,
                .table_addr = (uint64_t)f->tp,
                .table_order = order,
                .target_state_addr = (uint64_t)&f->target_state,
                .new_addr = (uint64_t)new_addr,
                .old_addr = (uint64_t)old_addr,
        };
        ASSERT_OK(stub_build(&f->p, f->stub, STUB_MAX_SIZE, &f->len));
        __builtin___clear_cache((char *)f->stub, (char *)f->stub + f->len);
}

static void fixture_done(Fixture *f) {
        munmap(f->stub, 4096);
        munmap(f->tp, (1u << f->order) * 9);
}

/* Inserts tp with state the way ulp does: linear probing from the hash. */
static void table_insert(Fixture *f, uint64_t tp, uint8_t state) {
        uint64_t mask = (1u << f->order) - 1, i = thread_table_hash(tp, f->order);

        while (f->tp[i] != 0 && f->tp[i] != tp)
                i = (i + 1) & mask;
        f->tp[i] = tp;
        f->state[i] = state;
}

/*
 * Calls through the stub with every register set to a value derived from seed and
 * checks what the callee saw and what the caller got back. Returns WENT_NEW/WENT_OLD,
 * or 0 when anything was wrong. Usable from any thread (no ASSERT).
 */
static int call_through(const Fixture *f, uint64_t seed) {
        uint64_t in[16] = {}, out[16] = {};
        uint64_t went;

        for (int i = 1; i <= 13; i++)
                in[i] = seed * 0x100 + (uint64_t)i * 0x0101010101010101ULL;
        went = stub_call(f->stub, in, out);
        for (int i = 1; i <= 13; i++)
                if (stub_seen[i] != in[i])
                        return 0;
        for (int i = 8; i <= 13; i++)
                if (out[i] != in[i])
                        return 0;
        if (stub_seen[14] != stub_caller_rsp - 8 || stub_seen[15] != (uint64_t)stub_call_ret)
                return 0;
        if (went != stub_seen[0] || out[7] != went)
                return 0;
        return (int)went;
}

static uint64_t branch_target(const cs_insn *insn) {
        const cs_x86 *x = &insn->detail->x86;

        return x->op_count == 1 && x->operands[0].type == X86_OP_IMM ? (uint64_t)x->operands[0].imm : 0;
}

TEST(stub_listing) {
        static const char *const expect[] = {
                "push", "push", "mov", "movabs", "imul", "shr", "movabs",
                "cmp", "jne", "movzx", "cmp", "pop", "pop", "je", "jmp",
                "cmp", "je", "inc", "and", "jmp", "movabs", "movzx", "jmp",
        };
        Fixture f;
        csh h;
        cs_insn *insn;
        size_t n;

        fixture_init(&f, 4, stub_callee_new, stub_callee_old);
        ASSERT_EQ(cs_open(CS_ARCH_X86, CS_MODE_64, &h), CS_ERR_OK);
        ASSERT_EQ(cs_option(h, CS_OPT_DETAIL, CS_OPT_ON), CS_ERR_OK);
        n = cs_disasm(h, f.stub, f.len, (uint64_t)f.stub, 0, &insn);
        fprintf(stderr, "  stub, %zu bytes:\n", f.len);
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, "    +%-3" PRIu64 " %s %s\n", insn[i].address - (uint64_t)f.stub,
                        insn[i].mnemonic, insn[i].op_str);
        ASSERT_EQ(n, ELEMENTSOF(expect));
        for (size_t i = 0; i < n; i++)
                ASSERT_STREQ(insn[i].mnemonic, expect[i]);
        ASSERT_EQ_U64(branch_target(&insn[8]), insn[15].address);    /* jne miss */
        ASSERT_EQ_U64(branch_target(&insn[13]), (uint64_t)stub_callee_new);
        ASSERT_EQ_U64(branch_target(&insn[14]), (uint64_t)stub_callee_old);
        ASSERT_EQ_U64(branch_target(&insn[16]), insn[20].address);   /* je absent */
        ASSERT_EQ_U64(branch_target(&insn[19]), insn[7].address);    /* jmp probe */
        ASSERT_EQ_U64(branch_target(&insn[22]), insn[10].address);   /* jmp decide */
        ASSERT_TRUE(insn[n - 1].address + insn[n - 1].size == (uint64_t)f.stub + f.len);
        ASSERT_TRUE(strstr(insn[2].op_str, "fs:[0]"));
        ASSERT_TRUE(f.len <= STUB_MAX_SIZE);
        cs_free(insn, n);
        cs_close(&h);

        ASSERT_ERR(stub_build(&f.p, f.stub, f.len - 1, &n), -ENOSPC);
        f.p.table_order = 0;
        ASSERT_ERR(stub_build(&f.p, f.stub, STUB_MAX_SIZE, &n), -EINVAL);
        f.p.table_order = STUB_MAX_ORDER + 1;
        ASSERT_ERR(stub_build(&f.p, f.stub, STUB_MAX_SIZE, &n), -EINVAL);
        fixture_done(&f);
}

TEST(stub_absent_thread_goes_by_target_state) {
        Fixture f;

        fixture_init(&f, 4, stub_callee_new, stub_callee_old);
        f.target_state = THREAD_UNPATCHED;
        ASSERT_EQ(call_through(&f, 1), WENT_OLD);
        f.target_state = THREAD_PATCHED;
        ASSERT_EQ(call_through(&f, 2), WENT_NEW);
        /* other threads in the table change nothing for this one */
        table_insert(&f, thread_pointer() + 64, THREAD_UNPATCHED);
        table_insert(&f, thread_pointer() + 128, THREAD_UNPATCHED);
        ASSERT_EQ(call_through(&f, 3), WENT_NEW);
        fixture_done(&f);
}

TEST(stub_present_thread_goes_by_its_state) {
        Fixture f;

        fixture_init(&f, 4, stub_callee_new, stub_callee_old);
        f.target_state = THREAD_UNPATCHED;
        table_insert(&f, thread_pointer(), THREAD_PATCHED);
        ASSERT_EQ(call_through(&f, 1), WENT_NEW);
        f.target_state = THREAD_PATCHED;
        table_insert(&f, thread_pointer(), THREAD_UNPATCHED);
        ASSERT_EQ(call_through(&f, 2), WENT_OLD);
        fixture_done(&f);
}

/* The thread found after k collisions, wrapping around the end of the table; and not
 * found after probing every full slot up to the only empty one. */
TEST(stub_probe_collisions) {
        const unsigned order = 3, n = 1u << order;
        uint64_t tp = thread_pointer(), h = thread_table_hash(tp, order);
        Fixture f;

        fixture_init(&f, order, stub_callee_new, stub_callee_old);
        f.target_state = THREAD_UNPATCHED;
        for (unsigned k = 0; k < n; k++) {
                memset(f.tp, 0, n * 9);
                for (unsigned j = 0; j < k; j++) {
                        f.tp[(h + j) & (n - 1)] = tp ^ ((uint64_t)(j + 1) << 40);
                        f.state[(h + j) & (n - 1)] = THREAD_PATCHED;
                }
                f.tp[(h + k) & (n - 1)] = tp;
                f.state[(h + k) & (n - 1)] = THREAD_PATCHED;
                ASSERT_EQ(call_through(&f, k), WENT_NEW);
                f.state[(h + k) & (n - 1)] = THREAD_UNPATCHED;
                f.target_state = THREAD_PATCHED;
                ASSERT_EQ(call_through(&f, k), WENT_OLD);
                f.target_state = THREAD_UNPATCHED;

                /* now absent: k + 1 fake entries, then an empty slot */
                f.tp[(h + k) & (n - 1)] = tp ^ 1;
                f.state[(h + k) & (n - 1)] = THREAD_PATCHED;
                if (k + 1 < n) {
                        ASSERT_EQ(call_through(&f, k), WENT_OLD);
                        f.target_state = THREAD_PATCHED;
                        ASSERT_EQ(call_through(&f, k), WENT_NEW);
                        f.target_state = THREAD_UNPATCHED;
                }
        }
        fixture_done(&f);
}

/* Threads with different states calling through one stub at once. */
#define N_THREADS 6
#define N_CALLS 20000

typedef struct Worker {
        const Fixture *f;
        pthread_barrier_t *barrier;
        uint64_t tp;
        int expect[2];          /* per phase */
        unsigned wrong;
} Worker;

static void *worker_run(void *arg) {
        Worker *w = arg;

        w->tp = thread_pointer();
        for (int phase = 0; phase < 2; phase++) {
                pthread_barrier_wait(w->barrier);     /* main sets the states */
                pthread_barrier_wait(w->barrier);
                for (unsigned i = 0; i < N_CALLS; i++)
                        if (call_through(w->f, w->tp + i) != w->expect[phase])
                                w->wrong++;
        }
        return NULL;
}

TEST(stub_threads) {
        pthread_barrier_t barrier;
        pthread_t t[N_THREADS];
        Worker w[N_THREADS];
        Fixture f;

        fixture_init(&f, 5, stub_callee_new, stub_callee_old);
        f.target_state = THREAD_PATCHED;
        ASSERT_EQ(pthread_barrier_init(&barrier, NULL, N_THREADS + 1), 0);
        for (int i = 0; i < N_THREADS; i++) {
                w[i] = (Worker) { .f = &f, .barrier = &barrier };
                ASSERT_EQ(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
        }
        for (int phase = 0; phase < 2; phase++) {
                pthread_barrier_wait(&barrier);
                /* thirds: patched, unpatched, absent (target state); phase 1 swaps */
                for (int i = 0; i < N_THREADS; i++) {
                        bool patched = (i % 3 == 0) != (phase == 1);

                        if (i % 3 == 2) {
                                w[i].expect[phase] = WENT_NEW;
                                continue;
                        }
                        table_insert(&f, w[i].tp, patched ? THREAD_PATCHED : THREAD_UNPATCHED);
                        w[i].expect[phase] = patched ? WENT_NEW : WENT_OLD;
                }
                pthread_barrier_wait(&barrier);
        }
        for (int i = 0; i < N_THREADS; i++) {
                ASSERT_EQ(pthread_join(t[i], NULL), 0);
                ASSERT_EQ(w[i].wrong, 0);
        }
        pthread_barrier_destroy(&barrier);
        fixture_done(&f);
}

/* A page more than 4 GiB from the stub, holding "jmp [rip]" to each callee. */
TEST(stub_far_targets) {
        uint8_t *far = map_far(stub_callee_new, 4096);
        const uint8_t jmp_abs[] = { 0xff, 0x25, 0, 0, 0, 0 };
        uint64_t a = (uint64_t)stub_callee_new, b = (uint64_t)stub_callee_old;
        Fixture f;
        csh h;
        cs_insn *insn;
        size_t n;

        if (!far)
                test_skip("cannot map a page 4 GiB away");
        memcpy(far, jmp_abs, 6);
        memcpy(far + 6, &a, 8);
        memcpy(far + 64, jmp_abs, 6);
        memcpy(far + 70, &b, 8);
        __builtin___clear_cache((char *)far, (char *)far + 128);

        fixture_init(&f, 4, far, far + 64);
        ASSERT_TRUE((uint64_t)far - f.p.stub_addr > (4ULL << 30) ||
                    f.p.stub_addr - (uint64_t)far > (4ULL << 30));
        ASSERT_TRUE(f.len <= STUB_MAX_SIZE);
        ASSERT_EQ(cs_open(CS_ARCH_X86, CS_MODE_64, &h), CS_ERR_OK);
        n = cs_disasm(h, f.stub, f.len, (uint64_t)f.stub, 0, &insn);
        fprintf(stderr, "  stub with absolute jumps: %zu bytes\n", f.len);
        ASSERT_TRUE(n >= 15);   /* then data: the absolute addresses */
        ASSERT_STREQ(insn[13].mnemonic, "jne");
        ASSERT_STREQ(insn[14].mnemonic, "jmp");
        ASSERT_STREQ(insn[14].op_str, "qword ptr [rip]");
        cs_free(insn, n);
        cs_close(&h);

        f.target_state = THREAD_UNPATCHED;
        ASSERT_EQ(call_through(&f, 1), WENT_OLD);
        f.target_state = THREAD_PATCHED;
        ASSERT_EQ(call_through(&f, 2), WENT_NEW);
        table_insert(&f, thread_pointer(), THREAD_UNPATCHED);
        ASSERT_EQ(call_through(&f, 3), WENT_OLD);
        table_insert(&f, thread_pointer(), THREAD_PATCHED);
        ASSERT_EQ(call_through(&f, 4), WENT_NEW);
        fixture_done(&f);
        munmap(far, 4096);
}

/* CPU time of this thread per call, the least of three runs: time the scheduler gave
 * to others (a loaded machine) is not counted. */
static double ns_per_call(const void *fn) {
        uint64_t in[16] = {}, out[16];
        const int calls = 1000000;
        double best = 0;

        for (int run = 0; run < 3; run++) {
                struct timespec a, b;
                double ns;

                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
                for (int i = 0; i < calls; i++)
                        stub_call(fn, in, out);
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
                ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / calls;
                if (run == 0 || ns < best)
                        best = ns;
        }
        return best;
}

/* Figures are in bench/; this bounds the order of magnitude: a call through the stub
 * is a table lookup in user space. STUB_NS_MAX is two orders of magnitude above what
 * it costs (a few ns), and one below a trap or a system call per call. */
#define STUB_NS_MAX 300.0

TEST(stub_cost) {
        Fixture f;
        double direct, found, absent;

        fixture_init(&f, 6, stub_callee_new, stub_callee_old);
        table_insert(&f, thread_pointer(), THREAD_PATCHED);
        direct = ns_per_call(stub_callee_new);
        found = ns_per_call(f.stub);
        memset(f.tp, 0, (1u << f.order) * 9);
        f.target_state = THREAD_PATCHED;
        absent = ns_per_call(f.stub);
        fprintf(stderr, "  direct call %.1f ns, through the stub (found) %.1f ns, (absent) %.1f ns\n",
                direct, found, absent);
        ASSERT_TRUE(found < STUB_NS_MAX);
        ASSERT_TRUE(absent < STUB_NS_MAX);
        ASSERT_EQ(call_through(&f, 1), WENT_NEW);
        fixture_done(&f);
}

TEST_MAIN();
