/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The int3 window's guards in the target (docs/stops.md, "The int3 window"):
 *   - a SIGTRAP handler of ulp's (x86_64/sigtrap.h) installed for the length of the
 *     window, so that a thread running into one of the window's int3 bytes is sent where
 *     it belongs even when no tracer is left (the patcher died): without it, an int3
 *     kills the process;
 *   - serialization of every core running the target's threads between the writes,
 *     membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) issued in the target.
 * Remote system calls: th is a borrowed, stopped thread (target_stop_any()).
 */

#include <stdint.h>

#include "patcher/target.h"
#include "patcher/x86_64/sigtrap.h"

typedef struct TrapGuardEntry {
        uint64_t at;             /* the int3 */
        uint64_t dest;           /* where a thread that runs into it goes */
} TrapGuardEntry;

/*
 * Writes the handler block at block (SIGTRAP_BLOCK_SIZE bytes of ulp's code area, never
 * freed) with entries e[0..n), keeps the program's SIGTRAP disposition in it and installs
 * the handler. A disposition that is itself a guard block (a window left open by a dead
 * patcher) is seen through: the program's own, kept there, is the one kept and restored.
 * -E2BIG more than SIGTRAP_MAX_ENTRIES; -EBUSY a thread blocks SIGTRAP for more than a
 * moment (the kernel would reset the disposition to the default at its trap and kill
 * the process: no window).
 */
int trapguard_install(Target *t, Thread *th, uint64_t block, const TrapGuardEntry *e, size_t n);

/* Waits, holding no thread, up to timeout_ms until no thread blocks SIGTRAP: a thread
 * running a SIGTRAP handler blocks it meanwhile. 0, or -EBUSY with the thread still
 * blocking it. A look that found none in the last 20 ms and since the last install
 * counts as one made now. */
int trapguard_wait_unblocked(Target *t, int timeout_ms);

/*
 * Ends the window, once the int3 bytes are gone and the cores serialized: waits (up to
 * timeout_ms, no thread held) until no thread has a trap of the window still to take: a
 * SIGTRAP pending, or, off its CPU in the kernel, a PC at one of trap_pcs[0..n) (one past
 * an int3 where no instruction of the new bytes starts: nothing else puts a PC there).
 * Then trapguard_remove() puts the program's disposition back, unless the program
 * installed another one meanwhile (then kept). -ETIMEDOUT: the handler stays, harmless
 * (it chains every other trap).
 */
int trapguard_drain(Target *t, const uint64_t *trap_pcs, size_t n, int timeout_ms);
int trapguard_remove(Target *t, Thread *th, uint64_t block);

/* The guard block the target's SIGTRAP disposition points at now (a window left open),
 * 0 none. */
int trapguard_find_open(Target *t, Thread *th, uint64_t *ret_block);

/* Serializes every core that runs a thread of the target (registering the target for
 * it once). -EOPNOTSUPP when the kernel lacks it: the caller falls back to a stop of
 * every thread. */
int trapguard_sync_cores(Target *t, Thread *th);
/* Only the registration (once per Target): -EOPNOTSUPP as above, before anything is
 * written. */
int trapguard_sync_ready(Target *t, Thread *th);
