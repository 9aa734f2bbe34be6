/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Entry writes while the threads run (docs/stops.md, "The int3 window"): the kernel's
 * text_poke_bp() order carried to the threads of one process, no moment with every
 * thread stopped:
 *
 *   1. ulp's SIGTRAP handler goes in (trapguard.h), an int3 over the first byte of each
 *      entry, serialize (membarrier SYNC_CORE in the target);
 *   2. each thread, stopped alone, is checked: strictly inside the bytes about to change
 *      it is moved to the same instruction of the relocated copy; one that ran into an
 *      int3 is sent to its entry's trap_dest, its SIGTRAP suppressed;
 *   3. the rest of each entry, serialize; the first byte, serialize;
 *   4. the program's SIGTRAP disposition is put back.
 *
 * A thread that runs into an int3 without a tracer (between the checks, or after the
 * patcher died) is sent to trap_dest by the handler. Threads created after step 1 cannot
 * be inside the bytes: they would have entered through the int3.
 */

#include <stddef.h>
#include <stdint.h>

#include "patcher/target.h"
#include "patcher/x86_64/relocate.h"

typedef struct EntryWrite {
        uint64_t at;             /* the entry (after endbr64) */
        uint8_t cur[16];         /* what it holds: checked before the int3 goes in */
        uint8_t want[16];        /* what it will hold */
        uint8_t len;             /* bytes of both, 1..16 */
        uint64_t trap_dest;      /* where a thread that runs into the int3 goes: where the
                                  * new bytes lead, or anywhere equivalent to them */
        const Relocation *map;   /* cur's instructions in the copy at copy, for threads
                                  * strictly inside them; NULL: cur is one instruction */
        uint64_t copy;
} EntryWrite;

typedef struct EntryBpResult {
        pid_t stuck_tid;         /* -EILSEQ: this thread's PC... */
        uint64_t stuck_pc;       /* ...is inside an instruction of the bytes no copy holds */
        unsigned moved;          /* threads moved into a relocated copy */
        unsigned trapped;        /* threads found at an int3, sent to its trap_dest */
        unsigned checked;        /* threads stopped and checked */
        bool guard_open;         /* the entries are written, but a thread still had a trap
                                  * of the window to take after 30 s (or no thread could
                                  * be borrowed to take the guard out): the guard stays
                                  * in until entry_bp_close() */
} EntryBpResult;

/*
 * Writes w[0..n) as above, with the handler block at block (SIGTRAP_BLOCK_SIZE bytes of
 * ulp's code area, never freed). Nothing is written when:
 *   -EOPNOTSUPP the kernel cannot serialize the cores (membarrier SYNC_CORE): the caller
 *               writes under a stop of every thread instead;
 *   -EBUSY      an entry does not hold cur, or a thread blocks SIGTRAP (for 5 s);
 * and the int3 bytes are taken back (each entry holds cur again) on
 *   -EILSEQ     a thread inside an instruction of the bytes (res->stuck_*);
 *   -EAGAIN     a thread strictly inside bytes without a map, or that could not be stopped.
 */
int entry_write_bp(Target *t, uint64_t block, const EntryWrite *w, size_t n, EntryBpResult *res);

/*
 * What a caller adds to the window (the transition's own rules, docs/stops.md "Not yet"):
 *   thread   each thread the window checks, stopped, after the window's own check (its
 *            registers as that left them: moved into a copy, or sent to a trap_dest).
 *            trap_queued: its PC is one past an int3 with its SIGTRAP still queued, for
 *            the handler to take: its PC must not be moved. The window looks at each
 *            thread's PC only; signal frames whose saved PC is inside the bytes are
 *            this hook's to move (or to refuse).
 *   checked  once, after every thread was checked and before the rest of the entries is
 *            written (every entry holds the int3 and the rest of cur).
 * A negative return takes the window back (each entry holds cur again) and is returned.
 */
typedef struct EntryBpHooks {
        int (*thread)(Target *t, Thread *th, bool trap_queued, void *ud);
        int (*checked)(Target *t, void *ud);
        void *ud;
        /* No thread can be strictly inside an entry's bytes (each cur is one jump, its
         * padding never run; no map): the checks of step 2 are skipped, a thread that
         * runs into an int3 is the guard's to send on (the thread hook is not called). */
        bool unchecked;
} EntryBpHooks;

/* entry_write_bp() with hooks (may be NULL). */
int entry_write_bp_hooked(Target *t, uint64_t block, const EntryWrite *w, size_t n, const EntryBpHooks *hooks,
                          EntryBpResult *res);

/*
 * Closes a window a dead patcher left open, given what it was writing: an entry whose
 * first byte is still the int3 is finished when the rest already holds want, else put
 * back to cur; then serialize and the program's disposition back. 0 when no window is
 * open at block. -EBUSY when an entry holds neither.
 */
int entry_bp_close(Target *t, uint64_t block, const EntryWrite *w, size_t n);

/*
 * A stopped thread one past the int3 at at, its SIGTRAP of that int3 held by the stop
 * or still queued: a thread that ran into a window's int3 and was stopped before the
 * guard took it (by a later stop of every thread, or a late stop).
 */
bool entry_bp_trapped_at(Target *t, const Thread *th, uint64_t at);
/*
 * For such a thread: its trap taken and dropped, its PC put back at at, as if it had
 * not reached the entry yet; for a stop that cannot count on the guard being in when
 * the thread runs on. 1 done, 0 not such a thread, -EAGAIN its trap could not be taken
 * now (it stays stopped, or late), -errno.
 */
int entry_bp_untrap(Target *t, Thread *th, uint64_t at);
/* For tests of the window's crash safety: called between the steps (0 before anything
 * is written, 1 int3 written and serialized, 2 threads checked, 3 rest written and
 * serialized), NULL by default. */
extern void (*entry_bp_test_hook)(int step);
