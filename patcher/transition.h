/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The transition engine: the kernel's per-task consistency model
 * (kernel/livepatch/transition.c) carried over to the threads of one process.
 *
 *   transition_init()          klp_init_transition + klp_start_transition: with every
 *                              thread stopped, each known thread gets the initial state in
 *                              the thread table, the stubs go in the path (entry jumps to
 *                              the patch's dispatch stubs); all threads are pending.
 *   transition_try_complete()  klp_try_complete_transition: each pending thread is stopped
 *                              alone, unwound, switched iff its stack is reliable and holds
 *                              none of the functions being replaced (klp_check_stack), and
 *                              resumed. When none is left: transition_complete().
 *   transition_complete()      klp_complete_transition: with every thread stopped, checks
 *                              that every thread is in the target state, then points the
 *                              entry jumps straight at the winners; stubs leave the path.
 *   transition_reverse()       klp_reverse_transition: target state flips, all pending.
 *   transition_force()         klp_force_transition: the rest switch without the check.
 *
 * There is one Transition per target process, never a global.
 */

#include <stdbool.h>
#include <stdint.h>

#include "elf/module.h"
#include "patcher/control.h"
#include "patcher/loader.h"
#include "patcher/target.h"
#include "ulp/libulp.h"
#include "unwind/unwind.h"

typedef struct CodeRange {
        uint64_t lo, hi;
} CodeRange;

typedef struct EntryBytes {
        uint8_t b[16];
        uint8_t len;
} EntryBytes;

typedef struct PendingThread {
        pid_t tid;
        int slot;                /* in the thread table, -1 when not in it */
        char blocker[128];       /* why it did not switch at the last try */
        unsigned fails;          /* passes that found it in a to-be-patched function */
        uint64_t slices;         /* times it ran on a CPU, at the last pass (op.c) */
        uint64_t trap_at;        /* return trap: the stack slot of the return address... */
        uint64_t trap_ret;       /* ...the return address it held... */
        uint64_t trap_code;      /* ...and the trampoline it holds now; 0 no trap */
} PendingThread;

/* Passes a thread must be found in a to-be-patched function before a return trap. */
#define TRANSITION_TRAP_AFTER 3
#define TRAP_CODE_SIZE 32

typedef struct Transition {
        Target *t;
        Control *c;
        Unwinder *u;
        SymResolver *res;        /* for naming the functions stragglers sit in */
        int patch;               /* index of the patch in transition */
        int target_state;        /* THREAD_PATCHED: patching; THREAD_UNPATCHED: unpatching */
        bool global;             /* stop all, check all, switch all or none */
        bool return_trap;        /* catch stragglers on their way out (transition-trap.c) */
        CodeRange *ranges;       /* code that must not be on a stack to switch */
        CodeRange *no_go;        /* sorted: where no PC may be when init or a global
                                  * switch rewrites code or the table (prepare) */
        size_t n_no_go;
        CodeRange *stubs;        /* sorted: the dispatch stubs of the records */
        size_t n_stubs;
        EntryBytes *expect;      /* per record of the patch: what its entry holds before
                                  * init (computed by prepare, outside the stop) */
        struct EntryMap *maps;   /* per entry init rewrites: its instructions and their
                                  * places in the relocated copy (computed by prepare) */
        size_t n_maps;
        int busy_func;           /* init refused (-EBUSY): this record's entry... */
        uint8_t busy_bytes[16];  /* ...holds these bytes, not the expected ones */
        uint8_t busy_len;
        pid_t stuck_tid;         /* init refused (-EILSEQ): this thread's PC... */
        uint64_t stuck_pc;       /* ...is inside an instruction no copy holds */
        size_t n_ranges;
        PendingThread *pending;
        size_t n_pending;
        unsigned total;          /* threads when it started */
        unsigned switched;
        unsigned passes;
        unsigned gone;           /* pending threads found exited in the last pass */
        bool keep_code;          /* completion leaves the patch mapped: its post-unpatch
                                  * callback runs after (op.c unmaps it then) */
        bool forced;
        bool entries_left;       /* init failed and could not put back the entries it had
                                  * written: not cancelled, left for a resume (or, after
                                  * init's window, for the next try of init) */
        struct {                 /* the record before init's window, which the next try
                                  * puts back once it took a window left back */
                int8_t target_state;
                int32_t patch;
                uint32_t flags, patch_state;
                bool checked;    /* its checked hook ran: the table and the byte are set */
        } left;
        bool untabled;           /* init entered no thread in the table (CT_FLAG_UNTABLED):
                                  * untabled threads are in the initial state until
                                  * completion (docs/stops.md, "The untabled state") */
        bool states_deferred;    /* transition_try_at_init(): state bytes written at its end */
        bool completed;          /* transition_try_at_init() completed it... */
        int at_init_error;       /* ...or failed (-errno): the next step's to report */
        uint64_t at_init_budget_ns; /* its checks' budget (0: as transition.h says; set
                                     * after prepare, for tests) */
        unsigned init_moved;     /* init without a stop: threads moved into a copy... */
        unsigned init_trapped;   /* ...and sent on from an int3 */
} Transition;

/* Init without a stop of every thread in per-thread mode (transition_init_nostop()); the
 * stop-all init stays for global mode and as the fallback. */
typedef enum NostopInit {
        NOSTOP_INIT_OFF,         /* the stop of every thread */
        NOSTOP_INIT_THREADED,    /* the window when the process has more than one live
                                  * thread (one thread's stop is already a stop of
                                  * every thread, and the shorter way) */
        NOSTOP_INIT_ALWAYS,      /* the window, one thread or more */
} NostopInit;
extern NostopInit transition_nostop_init;
/* transition_nostop_init, unless ULP_NOSTOP_INIT in the environment says 1 (always) or
 * 0 (off). */
NostopInit transition_nostop_mode(void);

/* Prepares a Transition for patch idx of c towards target_state: computes the ranges of
 * the functions being replaced. Writes nothing. */
int transition_prepare(Transition *tr, Target *t, Control *c, Unwinder *u, SymResolver *res,
                       int patch, int target_state, bool global);

/* Every thread of t must be stopped (target_stop_all). Fills the thread table, puts the
 * stubs in the path and records the transition in the control block. A thread strictly
 * inside the bytes an entry jump displaces is moved to the same instruction of the
 * relocated copy. -EAGAIN when a thread sits in a dispatch stub (whose table init
 * rewrites): resume, retry shortly. -EILSEQ when a PC is inside an instruction of the
 * displaced bytes, where no copy can hold it (stuck_tid, stuck_pc). */
int transition_init(Transition *tr);

/*
 * transition_init() without a stop of every thread (docs/stops.md, "The untabled
 * state"): the transition recorded with the threads untabled, the table cleared and the
 * untabled byte set to the initial state once every thread was seen, alone, outside the
 * dispatch stubs, and the stubs put in the path through the int3 window (entry-bp.h)
 * with its guard at guard_block. No thread is stopped by the caller. Returns as
 * transition_init(), and -ENOSYS when this way cannot be used here (a kernel without
 * core serialization, too many entries, an entry without a relocated copy): nothing
 * written, the caller inits under a stop of every thread.
 */
int transition_init_nostop(Transition *tr, uint64_t guard_block);

/* klp_try_complete_transition() right after klp_start_transition(), while init's stop
 * of every thread holds: each thread is checked and switched as a pass would at its own
 * stop, and when none is left pending, completion runs in the same stop. Spares the
 * operation a pass's stop of each thread and completion's stop of every thread, which
 * cost far more than the unwinds (a stop of every thread is a round of seize,
 * interrupt, wait and detach of each, and of busy threads waits for the scheduler to run
 * each). Each check makes this stop longer by an unwind, so the checks end early, the
 * rest left to the passes, once TRANSITION_AT_INIT_MIN threads were looked at and either
 * one of them may not switch (completion cannot happen in this stop then) or the checks
 * took longer than the stop itself took to gather the threads (at least
 * TRANSITION_AT_INIT_FLOOR_NS): the window at most doubles. Call after transition_init()
 * under the same stop (not after an init without a stop, nor in global mode: 0 then).
 * Returns 1 completed, 0 threads left to the passes, -errno. */
#define TRANSITION_AT_INIT_MIN 4
#define TRANSITION_AT_INIT_FLOOR_NS 500000ULL
int transition_try_at_init(Transition *tr);

/* One pass. Returns 1 completed, 0 threads still pending, -errno. Each thread is stopped
 * alone; transition_complete() stops all. */
int transition_try_complete(Transition *tr);

/* Stops every thread to settle the slots of threads that exited while pending (see
 * transition.c); called by transition_try_complete() after a pass that found some. */
int transition_reclaim(Transition *tr);

/* klp_complete_transition: stops every thread, checks each is in the target state
 * (else they are pending again: returns 0), writes the final entries: returns 1. */
int transition_complete(Transition *tr);

/* The same without a stop of every thread, after an init that left the threads
 * untabled (patcher/transition-seal.c): the process sealed against new threads, each
 * thread stopped alone, the byte flipped, then the final entries written through an
 * int3 window. Returns as transition_complete(); -ENOSYS when this way cannot be used
 * here (global mode, a tabled init, no guard, a thread of ours or traced by another
 * program, no core serialization): nothing written, transition_complete() instead. */
int transition_complete_sealed(Transition *tr);
/* The same as the first pass after an init without a stop, while every thread init saw
 * is still pending and untabled: the seal's look at each thread does what the pass
 * would (each checked, entered in the table, switched or pending again), one round of
 * stops fewer. *looked false when it returned before looking at any (the pending list
 * as it was: a pass instead). */
int transition_complete_sealed_first(Transition *tr, bool *looked);
/* Whether transition_try_complete() completes that way after an init without a stop
 * (default on; tests of the stop of every thread turn it off). */
extern bool transition_complete_nostop;
/* Tests only: called by transition_complete_sealed() for each thread it stopped alone
 * (not one created under the seal), before it is looked at. */
extern void (*transition_seal_test_hook)(Transition *tr, Thread *th);
/* Tests only: called by transition_complete() and transition_reverse() (reversal) once
 * every thread is stopped, before anything is looked at or written (a test may move a
 * thread meanwhile). */
extern void (*transition_stop_test_hook)(Transition *tr, bool reversal);

/* Flips the target state; the patch goes back to where it came from. */
int transition_reverse(Transition *tr);

/* klp_cancel_transition: nothing of the patch was ever visible (global mode before its
 * switch, or a failure before init): drops the record and unmaps the code. */
int transition_cancel(Transition *tr);

/* Switches every pending thread without the check, marks the patch forced, completes. */
int transition_force(Transition *tr);

/* Rebuilds a Transition from the control block of a target whose transition was left
 * unfinished (the daemon died). A cancel cut short (CT_FLAG_CANCEL) is finished instead:
 * -ECANCELED then, the patch not applied. */
int transition_resume(Transition *tr, Target *t, Control *c, Unwinder *u, SymResolver *res);

void transition_done(Transition *tr);

/* The index of the outermost frame of u inside tr's ranges, -1 none. */
int transition_outermost_frame(const Transition *tr, const UnwindResult *u);

/*
 * Return traps (transition-trap.c), the switch point docs/architecture.md gives instead of the
 * kernel's signals and cond_resched: the return address of a straggler's outermost
 * to-be-patched frame is replaced by the address of a trampoline of its own, which
 * writes the thread's state byte (the thread itself, at the moment it has left every
 * to-be-patched function) and jumps to the real return address. It uses r11 only,
 * which no caller expects preserved across a call.
 */

/* th is stopped and ur is its reliable-but-blocked unwind: plants p's trap. 1 planted,
 * 0 not possible here (reason appended to p->blocker), -errno. */
int trap_plant(Transition *tr, PendingThread *p, Thread *th, const UnwindResult *ur);

/* 1 when p's trap fired (the thread switched itself; the local table follows), 0 not
 * yet, -errno. Reads one byte; stops nothing. */
int trap_fired(Transition *tr, PendingThread *p);

/* th stopped: 1 the trap is still on its stack (or the thread is in the trampoline),
 * 0 it is gone without firing (p's trap forgotten), -errno. */
int trap_in_place(Transition *tr, PendingThread *p, Thread *th);

/* Takes every unfired trap back, each thread stopped alone: before a reversal, a force,
 * or when the transition is left to a later driver. */
int transition_disarm_traps(Transition *tr);

/* klp_check_stack for one stopped thread: unwinds it; true when its stack is reliable
 * and holds none of tr's ranges, else false with the reason (the function it is in). */
bool transition_check_thread(Transition *tr, Thread *th, char *blocker, size_t len);

/* Writes the entry jump of record f to dest (stub, new function, copy). Every thread
 * must be stopped. */
int transition_write_entry(Target *t, const ControlFunc *f, uint64_t dest);

/* Puts back the original bytes of record f, verifying that the entry holds what we
 * wrote. -EBUSY when someone else changed it. */
int transition_restore_entry(Target *t, const ControlFunc *f, uint64_t expected_dest);

/* The state status reports for a control patch state (CP_*). */
UlpPatchState transition_patch_state(uint32_t cp_state);

/* Names the code at pc: "sym+0xoff" from the module's symbols, else the module name. */
void transition_name_pc(SymResolver *res, uint64_t pc, char *buf, size_t len);
