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
 * - Lookups take no lock and make no system call. The table is an array of buckets, each
 *   a singly linked list ending in a marker that names its table and bucket. Node memory
 *   is only ever reused for nodes, so a reader walking a node that was freed meanwhile
 *   still walks a list; if the node was reused in another bucket the reader ends on
 *   another bucket's marker and starts over. Each node carries a generation, odd while
 *   it holds a variable, and a reader believes a node's key and data only if the
 *   generation was the same before and after reading them.
 * - The table grows (doubles once there are more variables than buckets) without
 *   stopping readers: a node has two links, one for tables of even number and one for
 *   odd ones. The writer that grows it links every node into the new table through the
 *   links the current table does not use, then publishes the new table with one store.
 *   A reader still on the old table walks links nobody changes any more; one on a table
 *   two generations old may follow links rewritten for a newer table, and then ends on
 *   a marker of that table and starts over. Old tables are never unmapped: a reader
 *   stopped anywhere (by the patcher, by a debugger) may still hold one.
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
#define FIRST_BUCKETS 16384u       /* the table in the runtime's own memory (128 KiB) */
#define MAX_BUCKETS (1u << 24)     /* 128 MiB of table: it stops growing there */
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
        /* A node, or the end marker of its bucket: next[t->id & 1] in table t. */
        uintptr_t next[2];
        uint64_t gen;            /* odd while it holds a variable */
        uintptr_t obj;
        unsigned long id;
        void *data;
        size_t size;
        struct node *free_next;  /* writers only: free list, or a list being freed */
};

/* A bucket array; its buckets are 0 (empty) or a node. */
struct table {
        uint64_t id;             /* 0 for the first, then 1, 2, ...: in the end markers */
        uint64_t mask;           /* buckets - 1 */
        uintptr_t b[];
};

EXPORT struct ulp_shadow_stats ulp_shadow_stats = {
        .magic = ULP_SHADOW_STATS_MAGIC,
        .abi = ULP_SHADOW_ABI,
};

/* The first table (no pointer to it is stored: the object has no relocations), and the
 * current one once it has grown: 0 means the first. */
static struct {
        uint64_t id, mask;
        uintptr_t b[FIRST_BUCKETS];
} first_table = { .mask = FIRST_BUCKETS - 1 };
static uintptr_t current_table;
/* Writers only, under the lock. */
static struct node *free_nodes;
static void *free_data[N_CLASSES];
static char *bump[N_CLASSES + 1];      /* the last slot: nodes */
static size_t bump_left[N_CLASSES + 1];

static inline struct table *table_now(void) {
        uintptr_t t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
        return t ? (struct table *)t : (struct table *)&first_table;
}

/* Unique per table and bucket (ids stay below 2^31, buckets below 2^25), and odd. */
static inline uintptr_t end_marker(const struct table *t, uint64_t b) {
        return (((uintptr_t)t->id << 32 | b) << 1) | 1;
}

static inline uint64_t hash_of(const void *obj, unsigned long id) {
        uint64_t h = (uint64_t)(uintptr_t)obj * 0x9e3779b97f4a7c15ULL;
        h ^= (id + 0x632be59bd9b4e019ULL) * 0xc2b2ae3d27d4eb4fULL;
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        return h;
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
        uint64_t h = hash_of(obj, id), b;
        struct table *t;
        unsigned l;
        uintptr_t p;

again:
        t = table_now();
        b = h & t->mask;
        l = t->id & 1;
        p = __atomic_load_n(&t->b[b], __ATOMIC_ACQUIRE);
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
                p = __atomic_load_n(&n->next[l], __ATOMIC_ACQUIRE);
        }
        if (p != end_marker(t, b))
                goto again;
        return NULL;
}

/* Under the lock: the live node of the pair in the current table t, and the link that
 * points to it. */
static struct node *find_locked(struct table *t, uintptr_t obj, unsigned long id, uintptr_t **ret_link) {
        uintptr_t *link = &t->b[hash_of((void *)obj, id) & t->mask];
        unsigned l = t->id & 1;

        while (*link && !(*link & 1)) {
                struct node *n = (struct node *)*link;
                if (n->obj == obj && n->id == id) {
                        if (ret_link)
                                *ret_link = link;
                        return n;
                }
                link = &n->next[l];
        }
        return NULL;
}

/* Under the lock: puts n at the head of its bucket of t through the links of t. */
static void link_locked(struct table *t, struct node *n) {
        uint64_t b = hash_of((void *)n->obj, n->id) & t->mask;
        uintptr_t head = t->b[b];

        __atomic_store_n(&n->next[t->id & 1], head ? head : end_marker(t, b), __ATOMIC_RELEASE);
        __atomic_store_n(&t->b[b], (uintptr_t)n, __ATOMIC_RELEASE);
}

/*
 * Under the lock: a table of twice the buckets, every live node linked into it through
 * the links the current one does not use, then published. Readers on the current table
 * are undisturbed (none of its links change); readers that start afterwards use the new
 * one. The old table is kept: a reader may be on it for any time. Without memory, the
 * table stays as it is (only slower).
 */
static void grow_locked(struct table *t) {
        uint64_t n_old = t->mask + 1, n_new = n_old * 2;
        size_t size = sizeof(struct table) + n_new * sizeof(uintptr_t);
        struct table *nt;
        unsigned l = t->id & 1;

        if (n_new > MAX_BUCKETS)
                return;
        nt = map(size);
        if (!nt)
                return;
        nt->id = t->id + 1;
        nt->mask = n_new - 1;
        for (uint64_t b = 0; b < n_old; b++)
                for (uintptr_t p = t->b[b]; p && !(p & 1); p = ((struct node *)p)->next[l])
                        link_locked(nt, (struct node *)p);
        __atomic_store_n(&current_table, (uintptr_t)nt, __ATOMIC_RELEASE);
}

static void insert_locked(struct table *t, struct node *n, uintptr_t obj, unsigned long id, void *data,
                          size_t size) {
        /* Fields change only while the generation is even: readers that saw the old
         * generation see it change. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&n->obj, obj, __ATOMIC_RELAXED);
        __atomic_store_n(&n->id, id, __ATOMIC_RELAXED);
        __atomic_store_n(&n->data, data, __ATOMIC_RELAXED);
        n->size = size;
        __atomic_store_n(&n->gen, n->gen + 1, __ATOMIC_RELEASE);   /* even (free) to odd */
        link_locked(t, n);
        ulp_shadow_stats.variables++;
        ulp_shadow_stats.bytes += size;
        if (ulp_shadow_stats.variables > t->mask + 1)
                grow_locked(t);
}

/* Unlinks n from t; its own link stays, for readers standing on it. */
static void unlink_locked(struct table *t, uintptr_t *link, struct node *n) {
        __atomic_store_n(link, __atomic_load_n(&n->next[t->id & 1], __ATOMIC_RELAXED), __ATOMIC_RELEASE);
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
        struct node *n, *old;
        struct table *t;
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
        t = table_now();
        old = find_locked(t, (uintptr_t)obj, id, NULL);
        if (old) {
                void *have = old->data;
                release_locked(n);
                unlock();
                return or_get ? have : NULL;
        }
        insert_locked(t, n, (uintptr_t)obj, id, data, size);
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
        struct table *t;
        uintptr_t *link;
        struct node *n;

        if (lock() < 0)
                return;
        t = table_now();
        n = find_locked(t, (uintptr_t)obj, id, &link);
        if (n) {
                unlink_locked(t, link, n);
                n->free_next = NULL;
        }
        unlock();
        destroy(n, dtor);
}

EXPORT void ulp_shadow_free_all(unsigned long id, ulp_shadow_dtor_t dtor) {
        struct node *list = NULL;
        struct table *t;

        if (lock() < 0)
                return;
        t = table_now();
        for (uint64_t b = 0; b <= t->mask; b++) {
                uintptr_t *link = &t->b[b];
                while (*link && !(*link & 1)) {
                        struct node *n = (struct node *)*link;
                        if (n->id != id) {
                                link = &n->next[t->id & 1];
                                continue;
                        }
                        unlink_locked(t, link, n);
                        n->free_next = list;
                        list = n;
                }
        }
        unlock();
        destroy(list, dtor);
}
