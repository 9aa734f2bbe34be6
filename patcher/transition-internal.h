/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by transition.c and transition-entry.c; not for other callers. */

#include <stdbool.h>
#include <stdint.h>

#include "patcher/transition.h"
#include "patcher/x86_64/relocate.h"

/* The records of patch in c: n of them. */
static inline ControlFunc *transition__patch_funcs(Control *c, int patch, unsigned *ret_n) {
        ControlPatch *p = &c->img->patches[patch];
        *ret_n = p->n_funcs;
        return &c->img->funcs[p->first_func];
}

/* What the entry of f's function jumps to now, given the live records (exclude: a patch
 * left out): the top live record's new function, or 0 for the original bytes. */
uint64_t transition__entry_dest_now(const Control *c, const ControlFunc *f, int exclude);

/* Prepare's part for the entries: where no PC may be when init rewrites them (with the
 * map of each into its relocated copy), and what each must hold before. */
int transition__compute_no_go(Transition *tr);
int transition__compute_expected(Transition *tr);

/* Inside the stop: -EBUSY when an entry holds something else than expected. */
int transition__verify_entries(Transition *tr);
/* -EBUSY, noting record i's entry and what it holds (busy_*), when cur is not what it
 * must hold before init; else 0. */
int transition__entry_busy(Transition *tr, unsigned i, const uint8_t *cur);

/* True when pc is inside the dispatch stub of a record. */
bool transition__in_stub(const Transition *tr, uint64_t pc);
/* Whether the stopped th, not in the table, has found itself not in it in a dispatch
 * stub and not read the untabled byte yet: at its PC, or at a PC a signal frame on its
 * stack resumes at (of ur, its unwind, when given; else unwound here). The byte must not
 * change under it (docs/stops.md, "The untabled state"). */
bool transition__stub_pending(Transition *tr, Thread *th, const UnwindResult *ur);

/* True when th's PC is where no PC may be while entries or the table change. */
bool transition__thread_in_the_way(const Transition *tr, const Thread *th);

/* Moves every stopped thread strictly inside displaced bytes into the relocated copy
 * (transition_init()'s rules for the return values). */
int transition__move_threads_out(Transition *tr, bool table_changes);
/* A stopped thread one past an int3 of a window at an entry of the patch, its trap not
 * taken yet (a window whose guard stayed in: guard_open): put back at the entry, its
 * trap dropped (entry_bp_untrap()), so that the entry as it is when the thread runs,
 * and the state it is switched to, decide where it goes, not the window's trap_dest
 * of its time. 1 put back, 0 not such a thread, -errno. */
int transition__untrap(Transition *tr, Thread *th);
/* The same for every stopped thread (a stop of every thread); -ETIMEDOUT when a trap
 * could not be taken in time (that thread is no longer stopped: try again later). */
int transition__untrap_all(Transition *tr);

/* Where a PC (saved in a signal frame) must go before the entries or the table change:
 * 0 nowhere, 1 to *ret (the same instruction of the relocated copy), -EAGAIN in a
 * dispatch stub whose table changes (wait), -EILSEQ inside an instruction no copy holds. */
int transition__pc_out(const Transition *tr, uint64_t pc, bool table_changes, uint64_t *ret);

/* transition-sigframe.c: the signal frames on th's stack whose interrupted PC must go
 * into a relocated copy (moving: rewritten there). 1 some, 0 none, or
 * transition__pc_out()'s errors. */
int transition__move_interrupted(Transition *tr, Thread *th, bool table_changes, bool moving);

/* The map of the entry at at into its relocated copy (*ret_copy), NULL when prepare has
 * none (the entry holds a jump, or the map could not be rebuilt). */
const Relocation *transition__entry_map(const Transition *tr, uint64_t at, uint64_t *ret_copy);

/* transition.c: a thread to check and switch (slot -1: not in the table). */
int transition__pending_add(Transition *tr, pid_t tid, int slot);
/* transition.c's pieces the other ends of a transition (transition-end.c) share: the
 * ranges of code being replaced, a table slot for a thread pointer, and the end of a
 * transition once every thread is in its target state. */
int transition__compute_ranges(Transition *tr);
int transition__table_insert(Control *c, uint64_t tp, uint8_t state);
int transition__finish(Transition *tr);
/* finish's end, once the entries hold their final bytes: the records, the header, and
 * the code of patches no longer live unmapped through th (a stopped thread; NULL: left
 * mapped). */
int transition__finish_records(Transition *tr, Thread *th);
/* check_thread(): 1 may switch, 0 in a function to patch, -1 unreliable (blocker says
 * why); ur is the caller's. */
int transition__check(Transition *tr, Thread *th, UnwindResult *ur, char *blocker, size_t len);
/* Enters the stopped th in the table (p->slot set) in state, as a pass does. */
int transition__enter_table(Transition *tr, PendingThread *p, const Thread *th, uint8_t state);
unsigned transition__table_used(const Control *c);
/* transition-entry.c: th (stopped) is one past an int3 of an entry of the patch, its
 * trap not taken yet. */
bool transition__trapped(const Transition *tr, const Thread *th);

/* transition-untabled.c: closes the int3 window of an init a dead driver left open
 * (CT_FLAG_INIT_WINDOW): each entry finished (the jump to its stub) or undone, the
 * program's SIGTRAP disposition back. No thread stopped by the caller. */
int transition__close_init_window(Transition *tr);
/* transition-seal.c: the same for completion's window (CT_FLAG_END_WINDOW): each entry
 * finished (its final bytes) or undone (the jump to its stub). */
int transition__close_end_window(Transition *tr);
