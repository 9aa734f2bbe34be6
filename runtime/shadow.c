/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shadow-variable runtime (docs/shadow.md): the one implementation of
 * include/ulp/shadow.h in a patched process. ulp maps it into the process once and binds
 * every patch's ulp_shadow_* references to it.
 *
 * It runs inside a program it knows nothing about, on threads that the patcher may stop
 * at any instruction and borrow for a patch's callback, so it depends on nothing of the
 * program: no libc (raw system calls), its own memory (mmap'd chunks), no thread-local
 * storage, no constructors.
 *
 * - Lookups take no lock and make no system call. The table is a fixed array of buckets,
 *   each a singly linked list ending in a marker that names its bucket. Node memory is
 *   only ever reused for nodes, so a reader walking a node that was freed meanwhile still
 *   walks a list; if the node was reused in another bucket the reader ends on another
 *   bucket's marker and starts over. Each node carries a generation, odd while it holds
 *   a variable, and a reader believes a node's key and data only if the generation was
 *   the same before and after reading them.
 * - Writers (alloc, free) take one lock, only around code of this file that calls
 *   nothing outside it: constructors and destructors run without it. So a thread that
 *   holds the lock has its instruction pointer inside this object, which is what the
 *   patcher checks before borrowing a thread for a callback. The lock word holds the
 *   owner's thread id: a thread re-entering from a signal handler sees itself and gives
 *   up instead of deadlocking, and in a forked child a holder that does not exist there
 *   is recognised and the lock taken over.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/shadow-abi.h"
#include "ulp/shadow.h"

#define EXPORT __attribute__((visibility("default")))

#define NR_MMAP 9
#define NR_MUNMAP 11
#define NR_SCHED_YIELD 24
#define NR_GETPID 39
#define NR_GETTID 186
#define NR_TGKILL 234
#define E_SRCH 3

#define PAGE 4096UL
#define CHUNK (64UL * 1024)
#define N_BUCKETS 16384u
#define MIN_CLASS_SHIFT 4          /* 16 bytes: the alignment of max_align_t */
#define MAX_CLASS_SHIFT 12         /* larger data gets a mapping of its own */
#define N_CLASSES (MAX_CLASS_SHIFT - MIN_CLASS_SHIFT + 1)
#define MAX_SIZE (1UL << 40)

static long sys6(long nr, long a, long b, long c, long d, long e, long f) {
        register long r10 __asm__("r10") = d;
        register long r8 __asm__("r8") = e;
        register long r9 __asm__("r9") = f;
        long ret;
        __asm__ volatile("syscall"
                         : "=a"(ret)
                         : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                         : "rcx", "r11", "memory");
        return ret;
}

static long sys3(long nr, long a, long b, long c) {
        return sys6(nr, a, b, c, 0, 0, 0);
}

struct node {
        uintptr_t next;          /* a node, or the end marker of its bucket */
        uint64_t gen;            /* odd while it holds a variable */
        uintptr_t obj;
        unsigned long id;
        void *data;
        size_t size;
        struct node *free_next;  /* writers only: free list, or a list being freed */
        uint64_t pad;
};

EXPORT struct ulp_shadow_stats ulp_shadow_stats = {
        .magic = ULP_SHADOW_STATS_MAGIC,
        .abi = ULP_SHADOW_ABI,
};

static uintptr_t buckets[N_BUCKETS];   /* 0: empty, as the bucket's end marker */
/* Writers only, under the lock. */
static struct node *free_nodes;
static void *free_data[N_CLASSES];
static char *bump[N_CLASSES + 1];      /* the last slot: nodes */
static size_t bump_left[N_CLASSES + 1];

static inline uintptr_t end_marker(unsigned b) {
        return ((uintptr_t)b << 1) | 1;
}

static inline unsigned bucket_of(const void *obj, unsigned long id) {
        uint64_t h = (uint64_t)(uintptr_t)obj * 0x9e3779b97f4a7c15ULL;
        h ^= (id + 0x632be59bd9b4e019ULL) * 0xc2b2ae3d27d4eb4fULL;
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        return (unsigned)(h & (N_BUCKETS - 1));
}

/* ---- the writers' lock ---------------------------------------------------------- */

static uint32_t my_tid(void) {
        return (uint32_t)sys3(NR_GETTID, 0, 0, 0);
}

/* The holder is not a thread of this process: the lock was inherited through fork(). */
static bool holder_gone(uint32_t tid) {
        long pid = sys3(NR_GETPID, 0, 0, 0);
        return sys3(NR_TGKILL, pid, (long)tid, 0) == -E_SRCH;
}

/* 0 with the lock held, -1 when this thread holds it already (a signal handler that
 * interrupted a writer on its own thread). */
static int lock(void) {
        uint32_t me = my_tid(), *w = &ulp_shadow_stats.lock_owner;

        for (unsigned spins = 0;; spins++) {
                uint32_t cur = 0;
                if (__atomic_compare_exchange_n(w, &cur, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                        return 0;
                if (cur == me)
                        return -1;
                if (spins < 200) {
                        __builtin_ia32_pause();
                        continue;
                }
                (void)sys3(NR_SCHED_YIELD, 0, 0, 0);
                if (spins % 64 == 0 && holder_gone(cur) &&
                    __atomic_compare_exchange_n(w, &cur, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                        return 0;
        }
}

static void unlock(void) {
        __atomic_store_n(&ulp_shadow_stats.lock_owner, 0, __ATOMIC_RELEASE);
}

/* ---- memory (under the lock) ----------------------------------------------------- */

static void *map(size_t size) {
        long r = sys6(NR_MMAP, 0, (long)size, 3 /* PROT_READ|WRITE */, 0x22 /* MAP_PRIVATE|ANONYMOUS */, -1, 0);
        if (r < 0 && r > -4096)
                return NULL;
        ulp_shadow_stats.mapped += size;
        return (void *)r;
}

static void *carve(unsigned slot, size_t size) {
        if (bump_left[slot] < size) {
                bump[slot] = map(CHUNK);
                if (!bump[slot]) {
                        bump_left[slot] = 0;
                        return NULL;
                }
                bump_left[slot] = CHUNK;
        }
        void *p = bump[slot];
        bump[slot] += size;
        bump_left[slot] -= size;
        return p;
}

static struct node *node_new(void) {
        struct node *n = free_nodes;
        if (n) {
                free_nodes = n->free_next;
                return n;
        }
        return carve(N_CLASSES, sizeof(struct node));
}

/* Never unmapped: a reader may still be walking it. */
static void node_put(struct node *n) {
        n->free_next = free_nodes;
        free_nodes = n;
}

static unsigned class_of(size_t size) {
        unsigned c = 0;
        while ((1UL << (c + MIN_CLASS_SHIFT)) < size)
                c++;
        return c;
}

static size_t round_page(size_t size) {
        return (size + PAGE - 1) & ~(PAGE - 1);
}

static void *data_new(size_t size) {
        if (size > (1UL << MAX_CLASS_SHIFT))
                return map(round_page(size));
        unsigned c = class_of(size);
        void **p = free_data[c];
        if (p) {
                free_data[c] = *p;
                return p;
        }
        return carve(c, 1UL << (c + MIN_CLASS_SHIFT));
}

static void data_put(void *d, size_t size) {
        if (size > (1UL << MAX_CLASS_SHIFT)) {
                if (sys3(NR_MUNMAP, (long)d, (long)round_page(size), 0) == 0)
                        ulp_shadow_stats.mapped -= round_page(size);
                return;
        }
        unsigned c = class_of(size);
        *(void **)d = free_data[c];
        free_data[c] = d;
}

/* Not memset: this object links with nothing, and the compiler must not make a call of
 * the loop. Sizes are multiples of 8 here (classes of 16 and up, pages). */
static void zero(void *d, size_t size) {
        uint64_t *w = d;
        for (size_t i = 0; i < (size + 7) / 8; i++) {
                w[i] = 0;
                __asm__ volatile("" ::: "memory");
        }
}

static size_t capacity(size_t size) {
        return size > (1UL << MAX_CLASS_SHIFT) ? round_page(size) : 1UL << (class_of(size) + MIN_CLASS_SHIFT);
}

/* ---- the table ------------------------------------------------------------------- */

EXPORT void *ulp_shadow_get(void *obj, unsigned long id) {
        unsigned b = bucket_of(obj, id);
        uintptr_t p;

again:
        p = __atomic_load_n(&buckets[b], __ATOMIC_ACQUIRE);
        if (p == 0)
                return NULL;
        while (!(p & 1)) {
                struct node *n = (struct node *)p;
                uint64_t g = __atomic_load_n(&n->gen, __ATOMIC_ACQUIRE);
                if ((g & 1) && __atomic_load_n(&n->obj, __ATOMIC_RELAXED) == (uintptr_t)obj &&
                    __atomic_load_n(&n->id, __ATOMIC_RELAXED) == id) {
                        void *d = __atomic_load_n(&n->data, __ATOMIC_RELAXED);
                        __atomic_thread_fence(__ATOMIC_ACQUIRE);
                        if (__atomic_load_n(&n->gen, __ATOMIC_RELAXED) == g)
                                return d;
                        goto again;
                }
                p = __atomic_load_n(&n->next, __ATOMIC_ACQUIRE);
        }
        if (p != end_marker(b))
                goto again;
        return NULL;
}

/* Under the lock: the live node of the pair, and the link that points to it. */
static struct node *find_locked(unsigned b, uintptr_t obj, unsigned long id, uintptr_t **ret_link) {
        uintptr_t *link = &buckets[b];

        while (*link && !(*link & 1)) {
                struct node *n = (struct node *)*link;
                if (n->obj == obj && n->id == id) {
                        if (ret_link)
                                *ret_link = link;
                        return n;
                }
                link = &n->next;
        }
        return NULL;
}

static void insert_locked(unsigned b, struct node *n, uintptr_t obj, unsigned long id, void *data,
                          size_t size) {
        uintptr_t head = buckets[b];

        __atomic_store_n(&n->next, head ? head : end_marker(b), __ATOMIC_RELAXED);
        /* Fields change only while the generation is even: readers that saw the old
         * generation see it change. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&n->obj, obj, __ATOMIC_RELAXED);
        __atomic_store_n(&n->id, id, __ATOMIC_RELAXED);
        __atomic_store_n(&n->data, data, __ATOMIC_RELAXED);
        n->size = size;
        __atomic_store_n(&n->gen, n->gen + 1, __ATOMIC_RELEASE);   /* even (free) to odd */
        __atomic_store_n(&buckets[b], (uintptr_t)n, __ATOMIC_RELEASE);
        ulp_shadow_stats.variables++;
        ulp_shadow_stats.bytes += size;
}

/* Unlinks n; its own next stays, for readers standing on it. */
static void unlink_locked(uintptr_t *link, struct node *n) {
        __atomic_store_n(link, __atomic_load_n(&n->next, __ATOMIC_RELAXED), __ATOMIC_RELEASE);
        __atomic_store_n(&n->gen, n->gen + 1, __ATOMIC_RELEASE);
        ulp_shadow_stats.variables--;
        ulp_shadow_stats.bytes -= n->size;
}

static void release_locked(struct node *n) {
        data_put(n->data, n->size);
        node_put(n);
}

static void *alloc(void *obj, unsigned long id, size_t size, ulp_shadow_ctor_t ctor, void *ctor_data,
                   bool or_get) {
        unsigned b = bucket_of(obj, id);
        struct node *n, *old;
        void *data;

        data = ulp_shadow_get(obj, id);
        if (data)
                return or_get ? data : NULL;
        if (size > MAX_SIZE || lock() < 0)
                return NULL;
        if (size == 0)
                size = 1;
        n = node_new();
        data = n ? data_new(size) : NULL;
        if (n && !data)
                node_put(n);
        unlock();
        if (!data)
                return NULL;
        __atomic_store_n(&n->data, data, __ATOMIC_RELAXED);   /* for release_locked */
        n->size = size;
        zero(data, capacity(size));
        /* The constructor sees memory no other thread can reach yet. */
        if (ctor && ctor(obj, data, ctor_data) != 0) {
                if (lock() == 0) {
                        release_locked(n);
                        unlock();
                }
                return NULL;
        }
        if (lock() < 0)
                return NULL;
        old = find_locked(b, (uintptr_t)obj, id, NULL);
        if (old) {
                void *have = old->data;
                release_locked(n);
                unlock();
                return or_get ? have : NULL;
        }
        insert_locked(b, n, (uintptr_t)obj, id, data, size);
        unlock();
        return data;
}

EXPORT void *ulp_shadow_alloc(void *obj, unsigned long id, size_t size, ulp_shadow_ctor_t ctor, void *ctor_data) {
        return alloc(obj, id, size, ctor, ctor_data, false);
}

EXPORT void *ulp_shadow_get_or_alloc(void *obj, unsigned long id, size_t size, ulp_shadow_ctor_t ctor,
                                     void *ctor_data) {
        return alloc(obj, id, size, ctor, ctor_data, true);
}

/* Destructors run without the lock, on nodes already unlinked; then the memory goes. */
static void destroy(struct node *list, ulp_shadow_dtor_t dtor) {
        for (struct node *n = list; dtor && n; n = n->free_next)
                dtor((void *)n->obj, n->data);
        if (!list || lock() < 0)
                return;
        while (list) {
                struct node *next = list->free_next;
                release_locked(list);
                list = next;
        }
        unlock();
}

EXPORT void ulp_shadow_free(void *obj, unsigned long id, ulp_shadow_dtor_t dtor) {
        unsigned b = bucket_of(obj, id);
        uintptr_t *link;
        struct node *n;

        if (lock() < 0)
                return;
        n = find_locked(b, (uintptr_t)obj, id, &link);
        if (n) {
                unlink_locked(link, n);
                n->free_next = NULL;
        }
        unlock();
        destroy(n, dtor);
}

EXPORT void ulp_shadow_free_all(unsigned long id, ulp_shadow_dtor_t dtor) {
        struct node *list = NULL;

        if (lock() < 0)
                return;
        for (unsigned b = 0; b < N_BUCKETS; b++) {
                uintptr_t *link = &buckets[b];
                while (*link && !(*link & 1)) {
                        struct node *n = (struct node *)*link;
                        if (n->id != id) {
                                link = &n->next;
                                continue;
                        }
                        unlink_locked(link, n);
                        n->free_next = list;
                        list = n;
                }
        }
        unlock();
        destroy(list, dtor);
}
