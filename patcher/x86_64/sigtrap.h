/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The SIGTRAP handler that guards an int3 window in the target (patcher/trapguard.c,
 * docs/stops.md "The int3 window"). It lives in one block of ulp's code area:
 *
 *   [0, SIGTRAP_OFF_RESTORER)    the handler;
 *   SIGTRAP_OFF_RESTORER         its restorer (rt_sigreturn);
 *   SIGTRAP_OFF_OLD              the program's disposition (the kernel's sigaction);
 *   SIGTRAP_OFF_DFL              an all-zero sigaction (SIG_DFL);
 *   SIGTRAP_OFF_MAGIC            SIGTRAP_MAGIC, to recognise the block;
 *   SIGTRAP_OFF_N                the number of entries (uint32, bounded by the handler);
 *   SIGTRAP_OFF_ENTRIES          {at, dest} pairs: an int3 at `at` goes to `dest`.
 *
 * A thread that executed the int3 at one of the `at` (si_code SI_KERNEL, its PC one
 * past it) is sent to its `dest` and returns through the restorer; one whose PC is on
 * an `at` itself (a tracer put it back on the int3 and died before its resume dropped
 * the trap: target__waitpid()) returns unchanged, and runs into the int3 again. Every
 * other SIGTRAP
 * goes to the program's own disposition: its handler is jumped to with the same
 * arguments; a default or ignored disposition (which the kernel turns into the default
 * for a trap) is put back and the signal raised again, so the program dies of it as it
 * would have. The handler uses only registers the signal frame restores.
 */

#include <stddef.h>
#include <stdint.h>

#define SIGTRAP_OFF_RESTORER 176
#define SIGTRAP_OFF_OLD      192
#define SIGTRAP_OFF_DFL      224
#define SIGTRAP_OFF_MAGIC    256
#define SIGTRAP_OFF_N        264
#define SIGTRAP_OFF_ENTRIES  272
#define SIGTRAP_MAX_ENTRIES  64
#define SIGTRAP_BLOCK_SIZE   (SIGTRAP_OFF_ENTRIES + 16 * SIGTRAP_MAX_ENTRIES)
#define SIGTRAP_MAGIC        0x4452415547505455ULL /* "UTPGUARD" */

/* Writes the handler and its restorer into b (SIGTRAP_OFF_OLD bytes, the rest int3);
 * returns the handler's length, which stays below SIGTRAP_OFF_RESTORER. */
size_t sigtrap_encode(uint8_t b[static SIGTRAP_OFF_OLD]);
