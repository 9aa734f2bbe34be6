/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The entries of the patched functions (docs/stops.md, "Entry writes"): what each must
 * hold before the transition rewrites it, where no thread may be when it does, moving
 * threads out of the displaced bytes into the relocated copy, and the writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/entry-bp.h"
#include "patcher/transition-internal.h"
#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/stub.h"

int transition_write_entry(Target *t, const ControlFunc *f, uint64_t dest) {
        uint8_t buf[16];
        uint64_t at = f->old_addr + f->entry_off;
        int n = encode_entry_jump(buf, f->displaced_len, at, dest);
        if (n < 0)
                return n;
        return target_write(t, at, buf, (size_t)n);
}

int transition_restore_entry(Target *t, const ControlFunc *f, uint64_t expected_dest) {
        uint8_t cur[JMP_REL32_SIZE], want[JMP_REL32_SIZE];
        uint64_t at = f->old_addr + f->entry_off;
        int r = target_read(t, at, cur, sizeof(cur));
        if (r < 0)
                return r;
        r = encode_jmp_rel32(want, at, expected_dest);
        if (r < 0)
                return r;
        if (memcmp(cur, want, sizeof(cur)) != 0)
                return -EBUSY;
        return target_write(t, at, f->orig_bytes, f->displaced_len);
}

/* What the entry of f's function jumps to now, given the live records: the top live
 * record's new function, or 0 for the original bytes. */
uint64_t transition__entry_dest_now(const Control *c, const ControlFunc *f, int exclude) {
        int top = control_top_func(c, f->old_addr, exclude);
        if (top < 0)
                return 0;
        if (c->img->funcs[top].flags & CF_FLAG_NOP)
                return 0;
        return control_func_entry_dest(&c->img->funcs[top]);
}

typedef struct EntryMap {
        uint64_t at;             /* the entry (after endbr64) */
        uint64_t copy;           /* its relocated copy */
        Relocation rel;          /* the displaced instructions, in both places */
} EntryMap;

/* Whether the entry of f may hold its original instructions: the bytes after its first
 * (which a window's int3 may cover) are the original ones, or they cannot be read. A
 * jump there (a revert, a transition resumed after its init) is one instruction that no
 * thread can be inside of. */
static bool entry_may_be_original(Transition *tr, const ControlFunc *f) {
        uint8_t b[sizeof(f->orig_bytes)];

        if (target_read(tr->t, f->old_addr + f->entry_off + 1, b, f->displaced_len - 1) < 0)
                return true;
        return memcmp(b, f->orig_bytes + 1, f->displaced_len - 1) == 0;
}

/* Rebuilds the map of f's entry, once per function, outside the stop. An entry whose
 * map cannot be rebuilt keeps the old rule: init waits until no thread is inside. Only
 * for an entry that holds its original instructions: the map decodes them, and a revert,
 * which finds a jump there, then loads no decoder (docs/performance.md). */
static void map_entry(Transition *tr, const ControlFunc *f) {
        EntryMap *m = &tr->maps[tr->n_maps];
        char err[128];

        if (!f->copy_addr || f->displaced_len > sizeof(f->orig_bytes) || !entry_may_be_original(tr, f))
                return;
        m->at = f->old_addr + f->entry_off;
        m->copy = f->copy_addr;
        if (relocation_rebuild(f->orig_bytes, f->displaced_len, m->at, m->copy, &m->rel, err, sizeof(err)) >= 0)
                tr->n_maps++;
}

static int range_cmp(const void *a, const void *b) {
        const CodeRange *x = a, *y = b;
        return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * Pitfall 1, and the table: where no thread's PC may be when the entries or the table
 * change. Strictly inside entry bytes about to be overwritten (only while they still
 * hold the original instructions: a jump is one instruction), or inside a dispatch stub,
 * which reads the table init rewrites. Threads in relocated copies are fine: those are
 * never changed or freed. Sorted, for a binary search per thread inside the stop.
 */
int transition__compute_no_go(Transition *tr) {
        const ControlImage *img = tr->c->img;
        size_t n = 0;

        free(tr->no_go);
        free(tr->maps);
        free(tr->stubs);
        tr->n_maps = tr->n_stubs = 0;
        tr->no_go = calloc(2 * (size_t)img->hdr.n_funcs + 1, sizeof(CodeRange));
        tr->maps = calloc((size_t)img->hdr.n_funcs + 1, sizeof(EntryMap));
        tr->stubs = calloc((size_t)img->hdr.n_funcs + 1, sizeof(CodeRange));
        if (!tr->no_go || !tr->maps || !tr->stubs)
                return -ENOMEM;
        for (unsigned i = 0; i < img->hdr.n_funcs; i++) {
                const ControlFunc *f = &img->funcs[i];
                uint64_t s = f->old_addr + f->entry_off;
                if (f->stub_addr) {
                        tr->no_go[n++] = (CodeRange) { f->stub_addr, f->stub_addr + STUB_MAX_SIZE };
                        tr->stubs[tr->n_stubs++] = tr->no_go[n - 1];
                }
                if ((int)f->patch == tr->patch && f->displaced_len > 1 && transition__entry_dest_now(tr->c, f, tr->patch) == 0) {
                        tr->no_go[n++] = (CodeRange) { s + 1, s + f->displaced_len };
                        map_entry(tr, f);
                }
        }
        qsort(tr->no_go, n, sizeof(CodeRange), range_cmp);
        tr->n_no_go = n;
        qsort(tr->stubs, tr->n_stubs, sizeof(CodeRange), range_cmp);
        return 0;
}

/* Whether pc is in one of the n sorted ranges v, which do not overlap. */
static bool in_ranges(const CodeRange *v, size_t n, uint64_t pc) {
        size_t lo = 0, hi = n;

        /* The last range starting at or below pc. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (v[mid].lo <= pc)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo > 0 && pc < v[lo - 1].hi;
}

bool transition__thread_in_the_way(const Transition *tr, const Thread *th) {
        return in_ranges(tr->no_go, tr->n_no_go, regs_pc(&th->regs));
}

/* The stubs as prepare found them (a revert's fresh stubs are built before). */
bool transition__in_stub(const Transition *tr, uint64_t pc) {
        return in_ranges(tr->stubs, tr->n_stubs, pc);
}

static const uint8_t *find_bytes(const uint8_t *code, size_t len, const uint8_t *pat, size_t n) {
        for (size_t i = 0; i + n <= len; i++)
                if (memcmp(code + i, pat, n) == 0)
                        return code + i;
        return NULL;
}

/*
 * Whether a thread at pc in a stub has found itself not in the table and not read the
 * untabled byte yet (the code of x86_64/stub.c, recognised in the stub's bytes): at the
 * probe's "jne miss" with the compare's flags saying not equal (eflags, when known),
 * or from "miss" to the byte's read included. There it reads the byte next, whatever
 * the table says by then: at miss it may even step over its own slot, entered a moment
 * before. Elsewhere it looks at the table afresh, or has decided. A stub whose bytes are
 * not recognised counts as such a place throughout.
 */
static bool stub_reads_byte_next(Transition *tr, uint64_t pc, const uint64_t *eflags) {
        static const uint8_t probe[] = { 0x4c, 0x39, 0x1c, 0xc1, 0x75 };      /* cmp [rcx+rax*8], r11; jne */
        static const uint8_t miss[] = { 0x48, 0x83, 0x3c, 0xc1, 0x00 };       /* cmp qword [rcx+rax*8], 0 */
        static const uint8_t read_byte[] = { 0x45, 0x0f, 0xb6, 0x1b };        /* movzx r11d, byte [r11] */
        uint8_t code[STUB_MAX_SIZE];
        const uint8_t *p, *m, *b;
        uint64_t stub = 0, off, jne, from, to;

        for (size_t i = 0; i < tr->n_stubs && !stub; i++)
                if (pc >= tr->stubs[i].lo && pc < tr->stubs[i].hi)
                        stub = tr->stubs[i].lo;
        if (!stub)
                return false;
        if (target_read(tr->t, stub, code, sizeof(code)) < 0 ||
            !(p = find_bytes(code, sizeof(code), probe, sizeof(probe))) || p + sizeof(probe) >= code + sizeof(code))
                return true;
        jne = (uint64_t)(p - code) + 4;
        from = jne + 2 + (uint64_t)(int64_t)(int8_t)p[sizeof(probe)];
        m = from < sizeof(code) - sizeof(miss) ? code + from : NULL;
        b = m ? find_bytes(m, sizeof(code) - from, read_byte, sizeof(read_byte)) : NULL;
        if (!m || memcmp(m, miss, sizeof(miss)) != 0 || !b)
                return true;
        to = (uint64_t)(b - code) + sizeof(read_byte);
        off = pc - stub;
        /* ZF, bit 6: the compare found the thread's own pointer. */
        if (off == jne)
                return !eflags || !(*eflags & (1u << 6));
        return off >= from && off < to;
}

const Relocation *transition__entry_map(const Transition *tr, uint64_t at, uint64_t *ret_copy) {
        for (size_t i = 0; i < tr->n_maps; i++)
                if (tr->maps[i].at == at) {
                        *ret_copy = tr->maps[i].copy;
                        return &tr->maps[i].rel;
                }
        return NULL;
}

/* The entry map whose displaced bytes hold pc strictly inside them, NULL none. */
static const EntryMap *entry_map_of(const Transition *tr, uint64_t pc) {
        for (size_t i = 0; i < tr->n_maps; i++)
                if (pc > tr->maps[i].at && pc < tr->maps[i].at + tr->maps[i].rel.displaced_len)
                        return &tr->maps[i];
        return NULL;
}

/* The entry of the patch whose int3 th ran into, 0 none: a window's (an earlier try's
 * taken back, or a dead driver's), whose trap the stop caught before the guard did. */
static uint64_t trapped_entry(const Transition *tr, const Thread *th) {
        unsigned n;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);

        for (unsigned i = 0; i < n; i++)
                if (entry_bp_trapped_at(tr->t, th, f[i].old_addr + f[i].entry_off))
                        return f[i].old_addr + f[i].entry_off;
        return 0;
}

bool transition__trapped(const Transition *tr, const Thread *th) {
        return th->stopped && !th->gone && trapped_entry(tr, th) != 0;
}

int transition__untrap(Transition *tr, Thread *th) {
        uint64_t at = th->stopped && !th->gone ? trapped_entry(tr, th) : 0;
        return at ? entry_bp_untrap(tr->t, th, at) : 0;
}

int transition__untrap_all(Transition *tr) {
        int r = 0;
        for (size_t i = 0; i < tr->t->n_threads && r >= 0; i++)
                r = transition__untrap(tr, &tr->t->threads[i]);
        /* Its trap could not be taken: the thread is no longer stopped. */
        return r == -EAGAIN ? -ETIMEDOUT : r < 0 ? r : 0;
}

/*
 * Pitfall 1 without waiting: a thread strictly inside displaced bytes is moved to the
 * same instruction of the relocated copy, which runs the rest of the displaced
 * instructions and jumps back after them: what the thread would have done. All
 * threads are looked at before any is moved, so a refusal moves nobody (a move alone
 * would be harmless: the copy is the original). -EAGAIN: a thread sits in a dispatch
 * stub (when the table is about to change: table_changes), or in displaced bytes with
 * no map; -EILSEQ: a PC inside an instruction there.
 */
int transition__move_threads_out(Transition *tr, bool table_changes) {
        bool interrupted = false;   /* a signal frame's PC to move (transition-sigframe.c) */

        for (int moving = 0; moving < 2; moving++)
                for (size_t i = 0; i < tr->t->n_threads; i++) {
                        Thread *th = &tr->t->threads[i];
                        const EntryMap *m;
                        uint64_t to;
                        int r;
                        if (!th->stopped || th->gone)
                                continue;
                        r = moving && !interrupted ? 0 : transition__move_interrupted(tr, th, table_changes, moving);
                        if (r < 0)
                                return r;
                        interrupted |= r > 0;
                        /* One past an int3 of a window, its trap not taken yet: put back
                         * at the entry, its trap dropped (the int3 window's rule, without
                         * counting on the guard). Inside the bytes, it was refused as a
                         * PC inside an instruction, or moved into the copy with its trap
                         * still to come, which the guard would not know. */
                        uint64_t at = trapped_entry(tr, th);
                        if (at) {
                                r = moving ? entry_bp_untrap(tr->t, th, at) : 0;
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        if (!transition__thread_in_the_way(tr, th))
                                continue;
                        m = entry_map_of(tr, regs_pc(&th->regs));
                        if (!m && !table_changes && transition__in_stub(tr, regs_pc(&th->regs)))
                                continue;
                        if (!m)
                                return -EAGAIN;
                        to = relocation_map_pc(&m->rel, m->at, m->copy, regs_pc(&th->regs));
                        if (!to) {
                                tr->stuck_tid = th->tid;
                                tr->stuck_pc = regs_pc(&th->regs);
                                return -EILSEQ;
                        }
                        if (!moving)
                                continue;
                        regs_set_pc(&th->regs, to);
                        r = target_set_regs(tr->t, th);
                        if (r < 0)
                                return r;
                }
        return 0;
}

/* The rules of transition__move_threads_out() for one PC. */
int transition__pc_out(const Transition *tr, uint64_t pc, bool table_changes, uint64_t *ret) {
        const EntryMap *m;
        bool in_the_way = false;

        for (size_t k = 0; k < tr->n_no_go; k++)
                in_the_way |= pc >= tr->no_go[k].lo && pc < tr->no_go[k].hi;
        if (!in_the_way)
                return 0;
        m = entry_map_of(tr, pc);
        if (!m && !table_changes && transition__in_stub(tr, pc))
                return 0;
        if (!m)
                return -EAGAIN;
        *ret = relocation_map_pc(&m->rel, m->at, m->copy, pc);
        return *ret ? 1 : -EILSEQ;
}

/*
 * What each entry of the patch must hold before init changes it: what we left there,
 * the original bytes or a jump to the implementation now on top of its stack. Computed
 * by prepare, before anything is stopped: only the driver changes the control block.
 */
int transition__compute_expected(Transition *tr) {
        unsigned n;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);

        free(tr->expect);
        tr->expect = calloc(n ? n : 1, sizeof(EntryBytes));
        if (!tr->expect)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                EntryBytes *e = &tr->expect[i];
                uint64_t at = f[i].old_addr + f[i].entry_off;
                uint64_t dest = transition__entry_dest_now(tr->c, &f[i], tr->target_state == THREAD_PATCHED ? tr->patch : -1);
                if (dest) {
                        int r = encode_jmp_rel32(e->b, at, dest);
                        if (r < 0)
                                return r;
                        e->len = JMP_REL32_SIZE;
                } else {
                        e->len = f[i].displaced_len;
                        memcpy(e->b, f[i].orig_bytes, e->len);
                }
        }
        return 0;
}

/* Inside the stop: anything but the expected bytes means someone else rewrote the
 * code (another tool, a debugger's breakpoint): refused. One batch of reads. */
int transition__verify_entries(Transition *tr) {
        unsigned n;
        const ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);
        _cleanup_free_ uint64_t *addrs = calloc(n ? n : 1, sizeof(uint64_t));
        _cleanup_free_ EntryBytes *cur = calloc(n ? n : 1, sizeof(EntryBytes));
        int r;

        if (!addrs || !cur)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                addrs[i] = f[i].old_addr + f[i].entry_off;
        r = target_read_many(tr->t, addrs, cur, sizeof(EntryBytes), n);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n; i++)
                if (transition__entry_busy(tr, i, cur[i].b) < 0)
                        return -EBUSY;
        return 0;
}

int transition__entry_busy(Transition *tr, unsigned i, const uint8_t *cur) {
        const EntryBytes *e = &tr->expect[i];

        if (memcmp(cur, e->b, e->len) == 0)
                return 0;
        tr->busy_func = (int)i;
        tr->busy_len = e->len;
        memcpy(tr->busy_bytes, cur, e->len);
        return -EBUSY;
}

bool transition__stub_pending(Transition *tr, Thread *th, const UnwindResult *ur) {
        uint64_t flags = th->regs.eflags;
        UnwindResult *own = NULL;
        bool in = false;

        if (transition__in_stub(tr, regs_pc(&th->regs)) && stub_reads_byte_next(tr, regs_pc(&th->regs), &flags))
                return true;
        if (!ur) {
                if (!tr->u || !(own = malloc(sizeof(*own))))
                        return false;
                if (unwinder_unwind(tr->u, th->tid, &th->regs, own) < 0)
                        own->n = 0;
                ur = own;
        }
        /* A return address is never in a stub (it calls nothing): a signal frame's PC. */
        for (size_t i = 1; i < ur->n && !in; i++)
                in = transition__in_stub(tr, ur->pcs[i]) && stub_reads_byte_next(tr, ur->pcs[i], NULL);
        free(own);
        return in;
}
