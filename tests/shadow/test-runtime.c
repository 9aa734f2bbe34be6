/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shadow-variable runtime itself (runtime/shadow.c), loaded as built into this
 * process: the semantics of include/ulp/shadow.h, 16 threads allocating and freeing on
 * shared objects, a million variables (the table growing under readers), a fork, a lock
 * inherited from a thread the child does not have, and a writer re-entered on its own
 * thread. docs/shadow.md.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "runtime/shadow-abi.h"
#include "tests/test.h"
#include "ulp/shadow.h"

static struct {
        void *(*get)(void *, unsigned long);
        void *(*alloc)(void *, unsigned long, size_t, ulp_shadow_ctor_t, void *);
        void *(*get_or_alloc)(void *, unsigned long, size_t, ulp_shadow_ctor_t, void *);
        void (*free)(void *, unsigned long, ulp_shadow_dtor_t);
        void (*free_all)(unsigned long, ulp_shadow_dtor_t);
        struct ulp_shadow_stats *stats;
} rt;

static void load(void) {
        static void *h;
        if (h)
                return;
        h = dlopen(SHADOW_RUNTIME, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "cannot load %s: %s\n", SHADOW_RUNTIME, dlerror());
                exit(1);
        }
        rt.get = (void *(*)(void *, unsigned long))dlsym(h, "ulp_shadow_get");
        rt.alloc = (void *(*)(void *, unsigned long, size_t, ulp_shadow_ctor_t, void *))dlsym(h, "ulp_shadow_alloc");
        rt.get_or_alloc = (void *(*)(void *, unsigned long, size_t, ulp_shadow_ctor_t, void *))dlsym(
                h, "ulp_shadow_get_or_alloc");
        rt.free = (void (*)(void *, unsigned long, ulp_shadow_dtor_t))dlsym(h, "ulp_shadow_free");
        rt.free_all = (void (*)(unsigned long, ulp_shadow_dtor_t))dlsym(h, "ulp_shadow_free_all");
        rt.stats = dlsym(h, ULP_SHADOW_STATS_SYMBOL);
        if (!rt.get || !rt.alloc || !rt.get_or_alloc || !rt.free || !rt.free_all || !rt.stats) {
                fprintf(stderr, "%s lacks a symbol\n", SHADOW_RUNTIME);
                exit(1);
        }
}

static int ctor_set(void *obj, void *data, void *arg) {
        *(long *)data = (long)(intptr_t)arg;
        return 0;
}

static int ctor_refuse(void *obj, void *data, void *arg) {
        (*(int *)arg)++;
        return -22;
}

static _Atomic long dtor_calls;
static void *dtor_last_obj;

static void dtor_count(void *obj, void *data) {
        dtor_last_obj = obj;
        atomic_fetch_add(&dtor_calls, 1);
}

static bool all_zero(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

TEST(alloc_get_free) {
        static char obj[4];
        load();
        ASSERT_TRUE(rt.stats->magic == ULP_SHADOW_STATS_MAGIC);
        uint64_t vars = rt.stats->variables;
        ASSERT_TRUE(rt.get(obj, 1) == NULL);
        unsigned char *a = rt.alloc(obj, 1, 40, NULL, NULL);
        ASSERT_TRUE(a != NULL);
        ASSERT_EQ((uintptr_t)a % _Alignof(max_align_t), 0);
        ASSERT_TRUE(all_zero(a, 40));
        memset(a, 0xab, 40);
        ASSERT_TRUE(rt.get(obj, 1) == a);
        ASSERT_TRUE(rt.get(obj, 2) == NULL);
        ASSERT_TRUE(rt.get(obj + 1, 1) == NULL);
        /* An existing pair: alloc gives NULL, get_or_alloc the variable, untouched. */
        ASSERT_TRUE(rt.alloc(obj, 1, 40, NULL, NULL) == NULL);
        ASSERT_TRUE(rt.get_or_alloc(obj, 1, 40, ctor_set, (void *)7) == a);
        ASSERT_EQ(a[0], 0xab);
        ASSERT_EQ(rt.stats->variables, vars + 1);
        dtor_calls = 0;
        rt.free(obj, 1, dtor_count);
        ASSERT_EQ(dtor_calls, 1);
        ASSERT_TRUE(dtor_last_obj == obj);
        ASSERT_TRUE(rt.get(obj, 1) == NULL);
        rt.free(obj, 1, dtor_count);   /* gone: nothing happens */
        ASSERT_EQ(dtor_calls, 1);
        ASSERT_EQ(rt.stats->variables, vars);
        /* Memory that held data comes back zeroed. */
        unsigned char *b = rt.alloc(obj, 1, 40, NULL, NULL);
        ASSERT_TRUE(b != NULL && all_zero(b, 40));
        rt.free(obj, 1, NULL);
}

TEST(constructor) {
        static char obj[1];
        int calls = 0;
        load();
        uint64_t vars = rt.stats->variables, bytes = rt.stats->bytes;
        ASSERT_TRUE(rt.alloc(obj, 3, 16, ctor_refuse, &calls) == NULL);
        ASSERT_EQ(calls, 1);
        ASSERT_TRUE(rt.get(obj, 3) == NULL);
        ASSERT_TRUE(rt.get_or_alloc(obj, 3, 16, ctor_refuse, &calls) == NULL);
        ASSERT_EQ(calls, 2);
        ASSERT_EQ(rt.stats->variables, vars);
        ASSERT_EQ(rt.stats->bytes, bytes);
        long *v = rt.get_or_alloc(obj, 3, sizeof(long), ctor_set, (void *)42);
        ASSERT_TRUE(v && *v == 42);
        rt.free(obj, 3, NULL);
}

TEST(large_and_free_all) {
        static char objs[100];
        load();
        uint64_t mapped = rt.stats->mapped;
        unsigned char *big = rt.alloc(objs, 9, 100000, NULL, NULL);
        ASSERT_TRUE(big && (uintptr_t)big % 16 == 0 && all_zero(big, 100000));
        ASSERT_TRUE(rt.stats->mapped >= mapped + 100000);
        rt.free(objs, 9, NULL);
        ASSERT_EQ(rt.stats->mapped, mapped);
        for (int i = 0; i < 100; i++) {
                ASSERT_TRUE(rt.alloc(&objs[i], 5, 24, NULL, NULL) != NULL);
                ASSERT_TRUE(rt.alloc(&objs[i], 6, 24, NULL, NULL) != NULL);
        }
        dtor_calls = 0;
        rt.free_all(5, dtor_count);
        ASSERT_EQ(dtor_calls, 100);
        for (int i = 0; i < 100; i++) {
                ASSERT_TRUE(rt.get(&objs[i], 5) == NULL);
                ASSERT_TRUE(rt.get(&objs[i], 6) != NULL);
        }
        rt.free_all(6, NULL);
        ASSERT_EQ(rt.stats->variables, 0);
        ASSERT_EQ(rt.stats->bytes, 0);
}

/* 16 threads on 32 shared objects: each alloc that succeeds must be the only variable
 * of its pair (the owner slot was free), get must give it back, and get_or_alloc on a
 * shared counter must never make two variables for one pair (no increment lost). */
#define N_THREADS 16
#define N_OBJS 32
#define ROUNDS 20000
static char shared_objs[N_OBJS];
static _Atomic long owner[N_OBJS];
static _Atomic long doubled, lost, allocs, frees;

static void *churn(void *arg) {
        long me = (long)(intptr_t)arg + 1;
        unsigned seed = (unsigned)me * 2654435761u;
        for (int i = 0; i < ROUNDS; i++) {
                seed = seed * 1103515245u + 12345u;
                unsigned k = (seed >> 16) % N_OBJS;
                long *v = rt.alloc(&shared_objs[k], 11, sizeof(long) * 3, ctor_set, (void *)me);
                if (v) {
                        long none = 0;
                        atomic_fetch_add(&allocs, 1);
                        if (!atomic_compare_exchange_strong(&owner[k], &none, me))
                                atomic_fetch_add(&doubled, 1);
                        if (*v != me || rt.get(&shared_objs[k], 11) != v)
                                atomic_fetch_add(&lost, 1);
                        atomic_store(&owner[k], 0);
                        rt.free(&shared_objs[k], 11, dtor_count);
                        atomic_fetch_add(&frees, 1);
                }
                long *c = rt.get_or_alloc(&shared_objs[k], 12, sizeof(long), NULL, NULL);
                if (!c)
                        atomic_fetch_add(&lost, 1);
                else
                        __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

TEST(sixteen_threads) {
        pthread_t th[N_THREADS];
        load();
        dtor_calls = 0;
        for (long i = 0; i < N_THREADS; i++)
                ASSERT_EQ(pthread_create(&th[i], NULL, churn, (void *)(intptr_t)i), 0);
        for (int i = 0; i < N_THREADS; i++)
                pthread_join(th[i], NULL);
        ASSERT_EQ(doubled, 0);
        ASSERT_EQ(lost, 0);
        ASSERT_TRUE(allocs > 0);
        ASSERT_EQ(allocs, frees);
        ASSERT_EQ(dtor_calls, frees);
        long total = 0;
        for (int k = 0; k < N_OBJS; k++) {
                ASSERT_TRUE(rt.get(&shared_objs[k], 11) == NULL);
                long *c = rt.get(&shared_objs[k], 12);
                ASSERT_TRUE(c != NULL);
                total += *c;
        }
        ASSERT_EQ(total, (long)N_THREADS * ROUNDS);
        ASSERT_EQ(rt.stats->variables, N_OBJS);
        rt.free_all(12, NULL);
        ASSERT_EQ(rt.stats->variables, 0);
        ASSERT_EQ(rt.stats->lock_owner, 0);
}

/* A million variables: the table grows (docs/shadow.md) while readers look up pairs that
 * exist the whole time and must never miss them, nor see one of them changed; then each
 * of the million is found with its own data, none is there twice, and free_all takes
 * them all. The objects are addresses only: the runtime never touches them. */
#define MANY 1000000ul
#define MANY_BASE ((uintptr_t)0x7e0000000000ull)
#define STEADY 4096
static _Atomic bool many_done;
static _Atomic long many_misses, many_looks;

static void *many_reader(void *arg) {
        unsigned seed = (unsigned)(uintptr_t)arg;
        while (!atomic_load(&many_done)) {
                seed = seed * 1103515245u + 12345u;
                unsigned k = (seed >> 8) % STEADY;
                long *v = rt.get((void *)(MANY_BASE - 64 * (k + 1)), 41);
                if (!v || *v != (long)k)
                        atomic_fetch_add(&many_misses, 1);
                atomic_fetch_add(&many_looks, 1);
        }
        return NULL;
}

TEST(million) {
        pthread_t th[2];
        load();
        uint64_t vars = rt.stats->variables;
        for (unsigned k = 0; k < STEADY; k++) {
                long *v = rt.alloc((void *)(MANY_BASE - 64 * (k + 1)), 41, sizeof(long), NULL, NULL);
                ASSERT_TRUE(v != NULL);
                *v = k;
        }
        for (long i = 0; i < 2; i++)
                ASSERT_EQ(pthread_create(&th[i], NULL, many_reader, (void *)(intptr_t)(i + 7)), 0);
        for (uintptr_t i = 0; i < MANY; i++) {
                uintptr_t *v = rt.alloc((void *)(MANY_BASE + 64 * i), 42, sizeof(uintptr_t), NULL, NULL);
                if (!v)
                        ASSERT_TRUE(!"an allocation failed");
                *v = i;
        }
        atomic_store(&many_done, true);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        ASSERT_EQ(many_misses, 0);
        ASSERT_TRUE(many_looks > 0);
        ASSERT_EQ(rt.stats->variables, vars + STEADY + MANY);
        for (uintptr_t i = 0; i < MANY; i++) {
                void *obj = (void *)(MANY_BASE + 64 * i);
                uintptr_t *v = rt.get(obj, 42);
                if (!v || *v != i || rt.alloc(obj, 42, sizeof(uintptr_t), NULL, NULL) != NULL ||
                    rt.get(obj, 43) != NULL)
                        ASSERT_TRUE(!"a variable was lost, changed or is there twice");
        }
        /* No pair is there twice: free_all finds exactly the million, once each. */
        dtor_calls = 0;
        rt.free_all(42, dtor_count);
        ASSERT_EQ(dtor_calls, (long)MANY);
        ASSERT_EQ(rt.stats->variables, vars + STEADY);
        ASSERT_TRUE(rt.get((void *)MANY_BASE, 42) == NULL);
        rt.free_all(41, NULL);
        ASSERT_EQ(rt.stats->variables, vars);
        ASSERT_EQ(rt.stats->lock_owner, 0);
}

/* A forked child has its parent's variables (its own copy), and a lock held by a thread
 * of the parent, which the child does not have, does not hold the child up. */
TEST(fork) {
        static char obj[2];
        load();
        long *v = rt.alloc(obj, 21, sizeof(long), ctor_set, (void *)1234);
        ASSERT_TRUE(v != NULL);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                long *cv = rt.get(obj, 21);
                if (cv != v || *cv != 1234)
                        _exit(2);
                *cv = 99;
                /* As if a thread of the parent held the lock at the fork. */
                rt.stats->lock_owner = (uint32_t)getppid();
                if (!rt.alloc(obj + 1, 21, 8, NULL, NULL) || !rt.get(obj + 1, 21))
                        _exit(3);
                rt.free_all(21, NULL);
                _exit(rt.get(obj, 21) == NULL && rt.stats->variables == 0 ? 0 : 4);
        }
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        /* The parent's variable is its own. */
        ASSERT_TRUE(rt.get(obj, 21) == v && *v == 1234);
        ASSERT_TRUE(rt.get(obj + 1, 21) == NULL);
        rt.free(obj, 21, NULL);
}

/* A writer re-entered on its own thread (a signal handler) gives up instead of waiting
 * for itself; get works there. */
TEST(reentry) {
        static char obj[1];
        load();
        long *v = rt.alloc(obj, 31, sizeof(long), NULL, NULL);
        ASSERT_TRUE(v != NULL);
        rt.stats->lock_owner = (uint32_t)syscall(SYS_gettid);
        ASSERT_TRUE(rt.alloc(obj, 32, 8, NULL, NULL) == NULL);
        rt.free(obj, 31, NULL);
        ASSERT_TRUE(rt.get(obj, 31) == v);
        rt.stats->lock_owner = 0;
        rt.free(obj, 31, NULL);
        ASSERT_TRUE(rt.get(obj, 31) == NULL);
}

TEST_MAIN()
