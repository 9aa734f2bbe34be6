/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <time.h>

#include "common/errno-clause.h"
#include "common/invariant.h"
#include "common/macro.h"
#include "patcher/transition-internal.h"
#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/stub.h"

UlpPatchState transition_patch_state(uint32_t cp_state) {
        switch (cp_state) {
        case CP_PATCHED:
                return ULP_PATCH_PATCHED;
        case CP_TRANSITION:
                return ULP_PATCH_TRANSITION;
        default:
                return ULP_PATCH_UNPATCHED;
        }
}

void transition_name_pc(SymResolver *res, uint64_t pc, char *buf, size_t len) {
        const Module *m = res ? modules_find_addr(res->mods, pc) : NULL;
        SymTab *st;
        Symbol sym;

        if (!m) {
                snprintf(buf, len, "0x%llx", (unsigned long long)pc);
                return;
        }
        if (resolver_symtab(res, (size_t)(m - res->mods->v), &st) >= 0 &&
            symtab_lookup_addr(st, pc - m->bias, &sym) >= 0) {
                snprintf(buf, len, "%s+0x%llx", sym.name, (unsigned long long)(pc - m->bias - sym.value));
                return;
        }
        snprintf(buf, len, "%s+0x%llx", m->path, (unsigned long long)(pc - m->bias));
}

static int add_range(Transition *tr, uint64_t lo, uint64_t hi) {
        CodeRange *n = realloc(tr->ranges, (tr->n_ranges + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        tr->ranges = n;
        tr->ranges[tr->n_ranges++] = (CodeRange) { lo, hi };
        return 0;
}

/* The size of the implementation at addr: a patch function's record, else the original. */
static uint64_t impl_size(const Control *c, const ControlFunc *f, uint64_t addr) {
        if (addr == f->copy_addr || addr == f->old_addr)
                return 0;
        for (unsigned i = 0; i < c->img->hdr.n_funcs; i++)
                if (c->img->funcs[i].new_addr == addr && c->img->funcs[i].old_addr == f->old_addr)
                        return c->img->funcs[i].new_size;
        return 0;
}

/*
 * klp_check_stack's list. Patching: the previous top of each function's stack (the
 * original, or the function of the patch below). Unpatching: the whole mapping of the
 * patch, since its functions may tail-call helpers of their own.
 */
int transition__compute_ranges(Transition *tr) {
        unsigned n;
        ControlFunc *f = transition__patch_funcs(tr->c, tr->patch, &n);
        ControlPatch *p = &tr->c->img->patches[tr->patch];
        int r = 0;

        tr->n_ranges = 0;
        if (tr->target_state == THREAD_UNPATCHED)
                return add_range(tr, p->map_start, p->map_start + p->map_size);
        for (unsigned i = 0; i < n && r >= 0; i++) {
                uint64_t sz = impl_size(tr->c, &f[i], f[i].prev_addr);
                if (sz) {
                        r = add_range(tr, f[i].prev_addr, f[i].prev_addr + sz);
                        continue;
                }
                r = add_range(tr, f[i].old_addr, f[i].old_addr + f[i].old_size);
                /* The relocated copy of its entry is the original too: a thread there
                 * (sent by a stub, or moved there by init) goes on into the original. Its
                 * area holds nothing else (RELOC_MAX_CODE bytes each). */
                if (r >= 0 && f[i].copy_addr)
                        r = add_range(tr, f[i].copy_addr, f[i].copy_addr + RELOC_MAX_CODE);
        }
        return r;
}

int transition_prepare(Transition *tr, Target *t, Control *c, Unwinder *u, SymResolver *res,
                       int patch, int target_state, bool global) {
        int r;

        ASSERT_RETURN(target_state == THREAD_PATCHED || target_state == THREAD_UNPATCHED, -EUCLEAN);
        ASSERT_RETURN(patch >= 0 && (uint32_t) patch < c->img->hdr.n_patches, -EUCLEAN);
        *tr = (Transition) { .t = t, .c = c, .u = u, .res = res, .patch = patch,
                             .target_state = target_state, .global = global };
        r = transition__compute_ranges(tr);
        if (r >= 0)
                r = transition__compute_no_go(tr);
        return r < 0 ? r : transition__compute_expected(tr);
}

void transition_done(Transition *tr) {
        free(tr->maps);
        tr->maps = NULL;
        tr->n_maps = 0;
        free(tr->ranges);
        free(tr->pending);
        free(tr->expect);
        free(tr->no_go);
        free(tr->stubs);
        tr->stubs = NULL;
        tr->expect = NULL;
        tr->no_go = NULL;
        tr->ranges = NULL;
        tr->pending = NULL;
        tr->n_ranges = tr->n_pending = 0;
}

static int pending_add(Transition *tr, pid_t tid, int slot) {
        PendingThread *n = realloc(tr->pending, (tr->n_pending + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        tr->pending = n;
        tr->pending[tr->n_pending++] = (PendingThread) { .tid = tid, .slot = slot };
        return 0;
}

int transition__pending_add(Transition *tr, pid_t tid, int slot) {
        return pending_add(tr, tid, slot);
}

/* Inserts tp with state into the local table copy. Every thread must be stopped. */
int transition__table_insert(Control *c, uint64_t tp, uint8_t state) {
        uint64_t i = thread_table_hash(tp, CONTROL_TABLE_ORDER);

        ASSERT_RETURN(state == THREAD_PATCHED || state == THREAD_UNPATCHED, -EUCLEAN);
        for (unsigned n = 0; n < CONTROL_MAX_THREADS * 2; n++) {
                if (c->img->table_tp[i] == 0 || c->img->table_tp[i] == tp) {
                        c->img->table_tp[i] = tp;
                        c->img->table_state[i] = state;
                        return (int)i;
                }
                i = (i + 1) & (CONTROL_TABLE_SLOTS - 1);
        }
        return -E2BIG;
}

/* Fills the local table with every stopped thread in state. -EOPNOTSUPP when two
 * threads share a thread pointer (or have none): per-thread dispatch cannot tell them
 * apart. */
static int fill_table(Transition *tr, uint8_t state) {
        unsigned live = 0;
        memset(tr->c->img->table_tp, 0, sizeof(tr->c->img->table_tp));
        memset(tr->c->img->table_state, 0, sizeof(tr->c->img->table_state));
        tr->n_pending = 0;
        for (size_t i = 0; i < tr->t->n_threads; i++) {
                const Thread *th = &tr->t->threads[i];
                uint64_t tp = regs_tp(&th->regs);
                int slot;
                if (th->gone || !th->stopped)
                        continue;
                if (tp == 0 || control_table_find(tr->c, tp) >= 0)
                        return -EOPNOTSUPP;
                if (++live > CONTROL_MAX_THREADS)
                        return -E2BIG;
                slot = transition__table_insert(tr->c, tp, state);
                if (slot < 0)
                        return slot;
                if (pending_add(tr, th->tid, slot) < 0)
                        return -ENOMEM;
        }
        tr->total = live;
        return 0;
}

/* A failed entry write of init: every thread is still stopped and none ran a new jump,
 * so the first n entries (the failed one may be half written) get back what they held
 * and the cancel that follows finds the code as it was. One that cannot leaves the
 * transition as a driver killed here would: resumed by the next operation. */
static int undo_entries(Transition *tr, const ControlFunc *f, unsigned n, int r) {
        for (unsigned i = 0; i < n; i++)
                if (target_write(tr->t, f[i].old_addr + f[i].entry_off, tr->expect[i].b, tr->expect[i].len) < 0)
                        tr->entries_left = true;
        return r;
}

int transition_init(Transition *tr) {
        Control *c = tr->c;
        ControlPatch *p = &c->img->patches[tr->patch];
        ControlFunc *f;
        unsigned n;
        int r;

        r = transition__verify_entries(tr);
        if (r < 0)
                return r;
        r = transition__move_threads_out(tr, true);
        if (r < 0)
                return r;
        r = fill_table(tr, tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED);
        if (r < 0)
                return r;
        r = control_write_table(tr->t, c);
        if (r < 0)
                return r;
        c->img->hdr.target_state = (int8_t)tr->target_state;
        /* Every thread is in the table: one not in it is a new one, in the target. */
        c->img->hdr.untabled_state = (int8_t)tr->target_state;
        c->img->hdr.transition_flags = 0;
        c->img->hdr.transition_patch = tr->patch;
        control_claim_driver(c);
        p->state = CP_TRANSITION;
        /* The header first: a driver killed in between leaves a transition whose patch
         * is not marked yet, which transition_resume() completes; never a patch marked
         * in transition that no header names (docs/control-block.md). */
        r = control_write_header(tr->t, c);
        if (r >= 0)
                r = control_write_patch(tr->t, c, (unsigned)tr->patch);
        if (r < 0)
                return r;
        /* Stubs go in the path last: everything they read is in place. */
        f = transition__patch_funcs(c, tr->patch, &n);
        for (unsigned i = 0; i < n; i++) {
                r = transition_write_entry(tr->t, &f[i], f[i].stub_addr);
                if (r < 0)
                        return undo_entries(tr, f, i + 1, r);
        }
        return 0;
}

/* The index in u of the outermost frame that is in the ranges, or -1 when none is. */
int transition_outermost_frame(const Transition *tr, const UnwindResult *u) {
        int found = -1;
        for (size_t i = 0; i < u->n; i++) {
                uint64_t pc = i == 0 ? u->pcs[0] : u->pcs[i] - 1;
                for (size_t k = 0; k < tr->n_ranges; k++)
                        if (pc >= tr->ranges[k].lo && pc < tr->ranges[k].hi)
                                found = (int)i;
        }
        return found;
}

/* klp_check_stack: 0 when no frame is in the ranges, else -EADDRINUSE with the frame's
 * pc in *ret_pc. */
static int check_frames(const Transition *tr, const UnwindResult *u, uint64_t *ret_pc) {
        for (size_t i = 0; i < u->n; i++) {
                /* A return address belongs to the call before it. */
                uint64_t pc = i == 0 ? u->pcs[0] : u->pcs[i] - 1;
                for (size_t k = 0; k < tr->n_ranges; k++)
                        if (pc >= tr->ranges[k].lo && pc < tr->ranges[k].hi) {
                                *ret_pc = pc;
                                return -EADDRINUSE;
                        }
        }
        return 0;
}

/* transition_check_thread with the unwind kept in ur: 1 may switch, 0 a to-be-patched
 * function is on the stack, -1 the stack is unreliable (or could not be unwound). */
static int check_thread(Transition *tr, Thread *th, UnwindResult *ur, char *blocker, size_t len) {
        uint64_t pc = 0;
        int r = unwinder_unwind(tr->u, th->tid, &th->regs, ur);

        if (r < 0) {
                snprintf(blocker, len, "unwind failed: %s", process_errno_clause(r));
                return -1;
        }
        if (check_frames(tr, ur, &pc) < 0) {
                transition_name_pc(tr->res, pc, blocker, len);
                return 0;
        }
        if (!ur->reliable) {
                snprintf(blocker, len, "unreliable stack: %s", ur->reason);
                return -1;
        }
        return 1;
}

/* Unwinds a stopped thread and says whether it may switch; why not in blocker. */
bool transition_check_thread(Transition *tr, Thread *th, char *blocker, size_t len) {
        UnwindResult *ur = malloc(sizeof(*ur));
        bool ok;

        if (!ur) {
                snprintf(blocker, len, "out of memory");
                return false;
        }
        ok = check_thread(tr, th, ur, blocker, len) == 1;
        free(ur);
        return ok;
}

/* A pending thread with a return trap: 1 it switched itself (the trap fired), 0 still
 * waiting (th stopped; the trap still in place), -1 the trap is gone without firing
 * (longjmp): checked as any thread. */
static int trapped_thread(Transition *tr, PendingThread *p, Thread *th) {
        int r = trap_fired(tr, p);
        if (r != 0)
                return r < 0 ? r : 1;
        r = trap_in_place(tr, p, th);
        return r > 0 ? 0 : r < 0 ? r : -1;
}

/* Slots in use, against CONTROL_MAX_THREADS: the stubs' probe needs an empty slot. */
static unsigned table_used(const Control *c) {
        unsigned n = 0;
        for (unsigned i = 0; i < CONTROL_TABLE_SLOTS; i++)
                n += c->img->table_tp[i] != 0;
        return n;
}

/*
 * A thread init left untabled switches by entering the table at its own stop: the
 * slot's state byte set to the initial state, its thread pointer, then the state byte
 * to the target (docs/stops.md, "The untabled state"). A stub of another thread that
 * reads the slot meanwhile finds a pointer not its own, or no pointer and the untabled
 * byte: the initial state either way, the state it is in. A pointer already in the table
 * (a dead thread's, which glibc gave to this new one) is switched in place.
 */
static int enter_table(Transition *tr, PendingThread *p, const Thread *th, uint8_t state) {
        Control *c = tr->c;
        uint64_t tp = regs_tp(&th->regs);
        uint8_t initial = tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED;
        int slot = tp ? control_table_find(c, tp) : -EOPNOTSUPP, r = 0;

        if (slot == -EOPNOTSUPP)
                return 0;
        if (slot < 0) {
                if (table_used(c) >= CONTROL_MAX_THREADS)
                        return -E2BIG;
                slot = transition__table_insert(c, tp, initial);
                if (slot < 0)
                        return slot;
                r = target_write(tr->t, c->addr + CONTROL_OFF(table_state) + (unsigned)slot, &initial, 1);
                if (r >= 0)
                        r = target_write(tr->t, c->addr + CONTROL_OFF(table_tp) + (unsigned)slot * sizeof(tp), &tp,
                                         sizeof(tp));
                if (r < 0)
                        return r;
        }
        p->slot = slot;
        return state == initial ? 0 : control_write_thread_state(tr->t, c, (unsigned)slot, state);
}

/* A slot's state byte. Inside init's stop (transition_try_at_init()) only the local
 * image changes, and the bytes go out in one write once every thread was looked at:
 * nothing runs to read them meanwhile, and a driver killed before that write leaves
 * every thread in the state init gave it. */
static int write_thread_state(Transition *tr, unsigned slot, uint8_t state) {
        if (!tr->states_deferred)
                return control_write_thread_state(tr->t, tr->c, slot, state);
        ASSERT_RETURN(slot < CONTROL_TABLE_SLOTS, -EUCLEAN);
        tr->c->img->table_state[slot] = state;
        return 0;
}

static int write_deferred_states(Transition *tr) {
        Control *c = tr->c;

        tr->states_deferred = false;
        return target_write(tr->t, c->addr + CONTROL_OFF(table_state), c->img->table_state,
                            sizeof(c->img->table_state));
}

/* klp_check_stack and the switch for the stopped th: 1 switched, 0 not now. After a
 * few passes in a to-be-patched function, with return traps on, a trap is planted on
 * the way out of its outermost such frame (transition-trap.c). */
static int check_and_switch(Transition *tr, PendingThread *p, Thread *th) {
        UnwindResult *ur = malloc(sizeof(*ur));
        int r, v;

        if (!ur)
                return -ENOMEM;
        v = check_thread(tr, th, ur, p->blocker, sizeof(p->blocker));
        if (v == 1) {
                r = p->slot < 0 ? enter_table(tr, p, th, (uint8_t)tr->target_state)
                                : write_thread_state(tr, (unsigned)p->slot, (uint8_t)tr->target_state);
                if (r >= 0) {
                        tr->switched++;
                        r = 1;
                }
        } else {
                /* A trap that cannot be planted leaves the thread to the next passes. */
                /* The trap switches the thread by its slot: an untabled one enters the
                 * table first, in the initial state it is in. */
                if (v == 0 && tr->return_trap && ++p->fails >= TRANSITION_TRAP_AFTER &&
                    (p->slot >= 0 || (enter_table(tr, p, th, (uint8_t)(tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED)) >= 0 && p->slot >= 0)))
                        (void)trap_plant(tr, p, th, ur);
                r = 0;
        }
        free(ur);
        return r;
}

/* klp_try_switch_task for one pending thread: 1 switched or gone, 0 not now. */
/* klp_try_switch_task, once th (pending entry p) is stopped: check, switch, resume.
 * 1 switched, 0 not now, -errno. */
static int switch_stopped_thread(Transition *tr, PendingThread *p, Thread *th) {
        int r, k;

        /* Its trap not taken, it is checked and switched where the entry is. */
        r = transition__untrap(tr, th);
        if (r == -EAGAIN) {
                /* Its trap could not be taken now: not checked, let go if stopped. */
                snprintf(p->blocker, sizeof(p->blocker), "at an entry's int3, its trap not taken yet");
                k = th->stopped ? target_resume_thread(tr->t, th) : 0;
                return k < 0 && k != -ESRCH ? k : 0;
        }
        if (r < 0)
                return r;
        r = p->trap_code ? trapped_thread(tr, p, th) : -1;
        if (r == -1)
                r = check_and_switch(tr, p, th);
        else if (r == 1)
                tr->switched++;
        k = target_resume_thread(tr->t, th);
        if (k < 0 && k != -ESRCH && r >= 0)
                r = k;
        return r;
}

/* The most stop requests in flight during a pass (TargetWindow: as many only while the
 * threads wait for the scheduler). Measured on 2 cores, one-function patch: with 16 busy
 * threads a window of 16 completes in 30 ms against 85 ms for 4; with idle threads a
 * window changes nothing but how long a stopped thread waits for the checks of those
 * before it. A build may override it. */
#ifndef PASS_WINDOW
#define PASS_WINDOW 16
#endif

typedef struct InFlight {
        Thread *th[PASS_WINDOW];
        size_t idx[PASS_WINDOW]; /* its entry in tr->pending */
        bool late[PASS_WINDOW];  /* already asked by an earlier pass, not stopped since */
        size_t n;
} InFlight;

/* Drops entry k, the others kept in the order they were asked (TargetWindow). */
static void inflight_drop(InFlight *f, size_t k) {
        size_t tail = f->n - k - 1;

        memmove(&f->th[k], &f->th[k + 1], tail * sizeof(f->th[0]));
        memmove(&f->idx[k], &f->idx[k + 1], tail * sizeof(f->idx[0]));
        memmove(&f->late[k], &f->late[k + 1], tail * sizeof(f->late[0]));
        f->n--;
}

/* How long a pass waits when every thread in flight was already late before it: one
 * that did not stop over a whole earlier attempt (a vfork parent in D state) is looked
 * at, not waited for again, so that a pass does not hold the caller's loop for it. */
#define PASS_LATE_WAIT_MS 2

/*
 * Whether p's blocker, from an earlier look that found the thread in a function to
 * patch, stays instead of the sentence of a stop that came too late (tr->t's late
 * record, just noted: a busy thread, or one the machine did not run, given what was
 * left of the deadline): it tells the operator more. One in uninterruptible sleep (a
 * vfork) is named for that.
 */
static bool keeps_blocker(const Transition *tr, const PendingThread *p) {
        return tr->t->late_state != 'D' && p->blocker[0] && !strstr(p->blocker, "not stopped within");
}

/* Asks the next pending threads to stop until window are in flight. done[i] is set for
 * entries settled without a stop (the thread is gone). */
static void pass_fill(Transition *tr, InFlight *f, size_t window, size_t *next, bool *done) {
        while (f->n < window && *next < tr->n_pending) {
                PendingThread *p = &tr->pending[*next];
                Thread *th = target_find_thread(tr->t, p->tid);
                bool late = th && target_thread_late(th);
                int r = th && !th->gone ? target_request_stop(tr->t, th) : -ESRCH;
                if (r == -ESRCH) {
                        tr->gone++;
                        done[*next] = true;
                } else if (r == -EBUSY)
                        snprintf(p->blocker, sizeof(p->blocker), "traced by another process, not checked");
                else if (r < 0)
                        snprintf(p->blocker, sizeof(p->blocker), "could not be asked to stop (%s)", process_errno_clause(r));
                else {
                        f->th[f->n] = th;
                        f->late[f->n] = late;
                        f->idx[f->n++] = *next;
                }
                (*next)++;
        }
}

/*
 * One pass of klp_try_complete_transition over the pending threads, pipelined: up to
 * PASS_WINDOW stop requests are in flight, and each thread is checked and resumed as
 * soon as its own stop arrives. On a busy machine a thread needs the scheduler to run
 * it into the stop; those waits now overlap instead of adding up, while every thread
 * is still held only for its own check.
 */
static int pass(Transition *tr, bool *done) {
        InFlight f = { .n = 0 };
        TargetWindow window = TARGET_WINDOW_INIT(PASS_WINDOW);
        size_t next = 0;
        int r = 0;

        for (;;) {
                Thread *th = NULL;
                bool all_late = true;
                pass_fill(tr, &f, window.n, &next, done);
                if (f.n == 0)
                        return 0;
                for (size_t k = 0; k < f.n; k++)
                        all_late &= f.late[k];
                r = target_window_wait(tr->t, &window, f.th, f.n, all_late ? PASS_LATE_WAIT_MS :
                                       tr->t->stop_timeout_ms > 0 ? tr->t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS,
                                       &th);
                if (r == -ETIMEDOUT) {
                        /* They stay seized with the interrupt pending (late) and are
                         * detached as they stop, or checked by the next pass; each is a
                         * straggler, not switched, until then. */
                        for (size_t k = 0; k < f.n; k++) {
                                target_note_late(tr->t, f.th[k]);
                                if (!keeps_blocker(tr, &tr->pending[f.idx[k]]))
                                        target_describe_late_short(tr->t, tr->pending[f.idx[k]].blocker,
                                                                   sizeof(tr->pending[0].blocker));
                        }
                        f.n = 0;
                        continue;
                }
                for (size_t k = 0; k < f.n;)
                        if (f.th[k]->gone) {
                                tr->gone++;
                                done[f.idx[k]] = true;
                                inflight_drop(&f, k);
                        } else
                                k++;
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                for (size_t k = 0; k < f.n; k++)
                        if (f.th[k] == th) {
                                size_t i = f.idx[k];
                                inflight_drop(&f, k);
                                r = switch_stopped_thread(tr, &tr->pending[i], th);
                                if (r < 0)
                                        return r;
                                done[i] = r == 1;
                                break;
                        }
        }
}

static int global_try(Transition *tr);

int transition_try_complete(Transition *tr) {
        size_t kept = 0;
        bool *done;
        int r;

        if (tr->global)
                return global_try(tr);
        tr->passes++;
        tr->gone = 0;
        /* The first pass after an init without a stop: the seal's look at each thread
         * instead, and completion in the same round when every thread may switch. */
        if (tr->untabled && transition_complete_nostop && tr->passes == 1 && tr->n_pending > 0) {
                bool looked;
                r = transition_complete_sealed_first(tr, &looked);
                /* Every thread looked at, but no end window to be had here (no core
                 * serialization, a thread blocking SIGTRAP, entries not as they were
                 * left: a takeover): the final entries under the stop of every thread,
                 * as after a pass. Before, the -ENOSYS ended the operation ("a system
                 * call ulp needs refused"). */
                if (looked && r == -ENOSYS)
                        r = tr->n_pending == 0 ? transition_complete(tr) : 0;
                if (looked || r != -ENOSYS)
                        return r == -ETIMEDOUT ? 0 : r;
        }
        done = calloc(tr->n_pending ? tr->n_pending : 1, sizeof(bool));
        if (!done)
                return -ENOMEM;
        r = pass(tr, done);
        for (size_t i = 0; i < tr->n_pending; i++)
                if (!done[i])
                        tr->pending[kept++] = tr->pending[i];
        free(done);
        if (r < 0)
                return r;
        tr->n_pending = kept;
        /* A thread that cannot be stopped now (late) holds back the stop-the-world of
         * completion or reclaim: not a failure, the next pass tries again. */
        if (kept == 0 && tr->untabled && transition_complete_nostop) {
                r = transition_complete_sealed(tr);
                if (r == -ENOSYS)
                        r = transition_complete(tr);
        } else if (kept == 0)
                r = transition_complete(tr);
        else if (tr->gone > 0 && !tr->untabled)
                /* Untabled: the slots exited threads left (in the initial state when
                 * they were entered pending) go to the target at completion. */
                r = transition_reclaim(tr);
        return r == -ETIMEDOUT ? 0 : r;
}

/* Final entries, records and unmapping once every thread is in the target state. Every
 * thread is stopped. */
/* The patches' final states, in the local image. */
static void finish_states(Transition *tr) {
        Control *c = tr->c;
        ControlPatch *p = &c->img->patches[tr->patch];

        if (tr->target_state == THREAD_PATCHED && (p->flags & CP_FLAG_REPLACE))
                for (unsigned i = 0; i < c->img->hdr.n_patches; i++)
                        if ((int)i != tr->patch && c->img->patches[i].state == CP_PATCHED)
                                c->img->patches[i].state = CP_UNPATCHED;
        p->state = tr->target_state == THREAD_PATCHED ? CP_PATCHED : CP_UNPATCHED;
}

int transition__finish(Transition *tr) {
        Control *c = tr->c;
        unsigned n;
        ControlFunc *f = transition__patch_funcs(c, tr->patch, &n);
        int r = 0;

        /* Per-thread mode finishes the patch its header names; global mode never names
         * one (it switches all threads in the stop it finishes in). */
        ASSERT_RETURN(tr->global || c->img->hdr.transition_patch == tr->patch, -EUCLEAN);
        finish_states(tr);
        for (unsigned i = 0; i < n && r >= 0; i++) {
                uint64_t dest = transition__entry_dest_now(c, &f[i], -1);
                uint64_t cur = tr->global ? transition__entry_dest_now(c, &f[i], tr->patch) : f[i].stub_addr;
                if (tr->global && tr->target_state == THREAD_UNPATCHED)
                        cur = control_func_entry_dest(&f[i]);
                if (dest)
                        r = transition_write_entry(tr->t, &f[i], dest);
                else if (cur)
                        r = transition_restore_entry(tr->t, &f[i], cur);
        }
        if (r < 0)
                return r;
        return transition__finish_records(tr, target_any_stopped(tr->t));
}

int transition__finish_records(Transition *tr, Thread *th) {
        Control *c = tr->c;
        int r = 0;

        finish_states(tr);
        /* The patches' final states before the header ends the transition: a driver
         * killed in between leaves a transition that a resume finishes again. */
        for (unsigned i = 0; i < c->img->hdr.n_patches && r >= 0; i++)
                r = control_write_patch(tr->t, c, i);
        if (r < 0)
                return r;
        c->img->hdr.transition_patch = -1;
        c->img->hdr.transition_flags = 0;
        r = control_write_header(tr->t, c);
        for (unsigned i = 0; i < c->img->hdr.n_patches && r >= 0; i++) {
                ControlPatch *q = &c->img->patches[i];
                bool gone = q->state == CP_UNPATCHED && q->map_size && !(tr->keep_code && (int)i == tr->patch);
                if (gone && !control_keeps_code(c->img, q) && th) {
                        (void)loader_unmap(tr->t, th, q->map_start, q->map_size);
                        q->map_size = 0;
                        r = control_write_patch(tr->t, c, i);
                }
        }
        return r;
}

int transition__check(Transition *tr, Thread *th, UnwindResult *ur, char *blocker, size_t len) {
        return check_thread(tr, th, ur, blocker, len);
}

int transition__enter_table(Transition *tr, PendingThread *p, const Thread *th, uint8_t state) {
        return enter_table(tr, p, th, state);
}

unsigned transition__table_used(const Control *c) {
        return table_used(c);
}

static bool is_pending(const Transition *tr, pid_t tid) {
        for (size_t i = 0; i < tr->n_pending; i++)
                if (tr->pending[i].tid == tid)
                        return true;
        return false;
}

/*
 * Every thread is stopped. Threads that exited before they switched leave their slot in
 * the old state, and glibc hands a dead thread's pointer (its cached stack and TCB) to
 * the next thread it creates, which would then start in the old state. A slot in the old
 * state that no live thread holds goes to the target state: a thread created later
 * starts there, as a new thread should (klp_copy_process). A live thread in a slot in the
 * old state that is not pending (a new thread that took a dead one's pointer before this
 * ran) becomes pending and is checked like the others.
 */
static int reconcile_table(Transition *tr) {
        Control *c = tr->c;
        uint8_t *held = calloc(CONTROL_TABLE_SLOTS, 1);
        int r = 0;

        if (!held)
                return -ENOMEM;
        for (size_t i = 0; i < tr->t->n_threads && r >= 0; i++) {
                const Thread *th = &tr->t->threads[i];
                int slot;
                if (th->gone || !th->stopped)
                        continue;
                slot = control_table_find(c, regs_tp(&th->regs));
                if (slot < 0)
                        continue;
                held[slot] = 1;
                if (c->img->table_state[slot] != tr->target_state && !is_pending(tr, th->tid))
                        r = pending_add(tr, th->tid, slot);
        }
        for (unsigned i = 0; i < CONTROL_TABLE_SLOTS && r >= 0; i++)
                if (c->img->table_tp[i] && !held[i] && c->img->table_state[i] != tr->target_state)
                        r = control_write_thread_state(tr->t, c, i, (uint8_t)tr->target_state);
        free(held);
        return r;
}

int transition_reclaim(Transition *tr) {
        int r, k;

        r = target_stop_all(tr->t);
        if (r < 0)
                return r;
        r = reconcile_table(tr);
        k = target_resume_all(tr->t);
        return r < 0 ? r : k < 0 ? k : 0;
}

/*
 * Every thread is stopped: the end of the untabled phase. Each untabled thread is
 * checked here, as global mode checks every thread, and entered in the table: in the
 * target when it may switch, else in the initial state and pending (switched by a later
 * pass at its own stop, as any tabled thread). No live thread is untabled then, so the
 * byte flips to the target: a thread created later starts there, as after a stop-all
 * init. Waiting instead for every untabled thread to pass at once would never end while
 * the process keeps creating threads that run the patched functions. Forced: no check.
 *
 * Not while an untabled thread is inside a dispatch stub between its look at the table
 * and its read of the byte: entered here (in the initial state: a stub is no reliable
 * frame), it would read the flipped byte once let go, and run the target's function
 * from a frame of the initial state, or with its slot in the initial state: a mixed call
 * (tests/nostop nostop-init-flip_waits_for_stub). Then 1: the byte waits for a later
 * completion; the table is written, so that only threads created meanwhile can hold it
 * back again. A thread already in the table reads its slot: it could be between the two
 * only if entered there, which leaves it pending (a stub is no reliable frame) until it
 * is out.
 */
static int switch_untabled(Transition *tr) {
        Control *c = tr->c;
        uint8_t initial = tr->target_state == THREAD_PATCHED ? THREAD_UNPATCHED : THREAD_PATCHED;
        UnwindResult *ur = NULL;
        bool flip = true, in_stub = false;
        unsigned used;
        int r = 0;

        if (!tr->untabled || c->img->hdr.untabled_state == tr->target_state)
                return 0;
        if (!tr->forced && !(ur = malloc(sizeof(*ur))))
                return -ENOMEM;
        used = table_used(c);
        for (size_t i = 0; i < tr->t->n_threads && r >= 0; i++) {
                Thread *th = &tr->t->threads[i];
                uint64_t tp = regs_tp(&th->regs);
                char blocker[128] = "";
                bool ok;
                int slot;
                if (th->gone || !th->stopped || (tp && control_table_find(c, tp) >= 0))
                        continue;
                ok = tr->forced;
                if (!ok) {
                        ur->n = 0;
                        ok = check_thread(tr, th, ur, blocker, sizeof(blocker)) == 1;
                        in_stub |= transition__stub_pending(tr, th, ur);
                }
                slot = -1;
                if (tp && used < CONTROL_MAX_THREADS)
                        slot = transition__table_insert(c, tp, ok ? (uint8_t)tr->target_state : initial);
                used += slot >= 0;
                if (slot < 0)
                        flip &= ok;     /* no slot: only the byte can switch it */
                if (ok)
                        continue;
                r = pending_add(tr, th->tid, slot < 0 ? -1 : slot);
                if (r >= 0)
                        snprintf(tr->pending[tr->n_pending - 1].blocker, sizeof(blocker), "%s", blocker);
        }
        free(ur);
        if (r >= 0)
                r = control_write_table(tr->t, c);
        if (r < 0 || !flip)
                return r;
        /* Forced: consistency is given up anyway. */
        if (in_stub && !tr->forced)
                return 1;
        c->img->hdr.untabled_state = (int8_t)tr->target_state;
        return control_write_header(tr->t, c);
}

void (*transition_stop_test_hook)(Transition *tr, bool reversal);

int transition_complete(Transition *tr) {
        int r, k;

        r = target_stop_all(tr->t);
        if (r < 0)
                return r;
        if (transition_stop_test_hook)
                transition_stop_test_hook(tr, false);
        /* No thread-position check here: the table and every stub and copy stay valid
         * after completion, and the entries hold jumps, single instructions; but a
         * thread at a window's int3 with its trap not taken would be sent by the guard
         * where the entry led then, whatever its state is now. */
        r = transition__untrap_all(tr);
        if (r < 0)
                goto out;
        r = reconcile_table(tr);
        if (r < 0 || tr->n_pending > 0)
                goto out;
        r = switch_untabled(tr);
        /* 1: the byte not flipped yet (a thread in a stub), a later completion flips it. */
        if (r != 0 || tr->n_pending > 0) {
                r = MIN(r, 0);
                goto out;
        }
        r = transition__finish(tr);
        if (r >= 0)
                r = 1;
out:
        k = target_resume_all(tr->t);
        return r < 0 ? r : k < 0 ? k : r;
}

int transition_try_at_init(Transition *tr) {
        uint64_t start = monotonic_ns(),
                 budget = tr->at_init_budget_ns ?: MAX(TRANSITION_AT_INIT_FLOOR_NS, target_stop_all_took_ns(tr->t));
        size_t kept = 0;
        bool go = true;
        int r = 0, k;

        if (tr->global || tr->untabled)
                return 0;
        tr->states_deferred = true;
        for (size_t i = 0; i < tr->n_pending; i++) {
                PendingThread p = tr->pending[i];
                Thread *th = target_find_thread(tr->t, p.tid);
                int v = 0;
                /* Past the first few: only while completion may still happen in this stop
                 * and the checks stay within their budget (transition.h). */
                if (go && i >= TRANSITION_AT_INIT_MIN && (kept > 0 || monotonic_ns() - start > budget))
                        go = false;
                /* As a pass: one moved out of displaced bytes is in a copy, where the
                 * check finds it in the function (or unreliable). */
                if (go && r >= 0 && th && !th->gone && th->stopped && !transition__thread_in_the_way(tr, th))
                        v = check_and_switch(tr, &p, th);
                if (v < 0)
                        r = v;
                if (v != 1)
                        tr->pending[kept++] = p;
        }
        tr->n_pending = kept;
        k = write_deferred_states(tr);
        r = r < 0 ? r : k;
        if (r < 0 || kept > 0)
                return r;
        /* Completion, as transition_complete() makes it, without its stop: this one. */
        r = reconcile_table(tr);
        if (r < 0 || tr->n_pending > 0)
                return MIN(r, 0);
        r = transition__finish(tr);
        if (r < 0)
                return r;
        tr->passes++;   /* one pass, with no retry */
        tr->completed = true;
        return 1;
}

/* Global mode: every thread stopped and checked together; all switch or none. */
static int global_try(Transition *tr) {
        int r, k;
        bool all = true;

        tr->passes++;
        r = target_stop_all(tr->t);
        if (r == -ETIMEDOUT && tr->t->late_tid) {
                /* All or none, and one cannot be looked at: none this pass; it is named.
                 * Unless an earlier pass found it in a function to patch: that pass's
                 * list stays (keeps_blocker()). */
                for (size_t i = 0; i < tr->n_pending; i++)
                        if (tr->pending[i].tid == tr->t->late_tid && keeps_blocker(tr, &tr->pending[i]))
                                return 0;
                tr->n_pending = 0;
                r = pending_add(tr, tr->t->late_tid, -1);
                if (r >= 0)
                        target_describe_late_short(tr->t, tr->pending[0].blocker, sizeof(tr->pending[0].blocker));
                return r < 0 ? r : 0;
        }
        if (r < 0)
                return r;
        tr->n_pending = 0;
        tr->total = 0;
        for (size_t i = 0; i < tr->t->n_threads && r >= 0; i++) {
                Thread *th = &tr->t->threads[i];
                char blocker[128];
                if (th->gone || !th->stopped)
                        continue;
                tr->total++;
                if (transition__thread_in_the_way(tr, th)) {
                        snprintf(blocker, sizeof(blocker), "inside code being rewritten");
                } else if (transition_check_thread(tr, th, blocker, sizeof(blocker)))
                        continue;
                all = false;
                r = pending_add(tr, th->tid, -1);
                if (r >= 0)
                        snprintf(tr->pending[tr->n_pending - 1].blocker, sizeof(blocker), "%s", blocker);
        }
        if (r >= 0 && all) {
                r = transition__finish(tr);
                if (r >= 0) {
                        tr->switched = tr->total;
                        r = 1;
                }
        }
        k = target_resume_all(tr->t);
        return r < 0 ? r : k < 0 ? k : r;
}
