/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Dispatch stubs: during a transition, a patched function's entry jump leads to its
 * stub, which sends the calling thread to the implementation its own state says
 * (threadtable.h): THREAD_PATCHED threads to new_addr, others to old_addr. It uses
 * only r11, the flags and the stack below the return address, restoring everything
 * else (argument registers, rax for varargs, callee-saved registers), so both callees
 * see exactly the caller's call.
 */

#include <stddef.h>
#include <stdint.h>

#define STUB_MAX_SIZE 128
/* Largest table_order stub_build accepts (n*8 is a disp32 in the stub); it returns
 * -EINVAL for an order outside 1..STUB_MAX_ORDER. */
#define STUB_MAX_ORDER 28

typedef struct StubParams {
        uint64_t stub_addr;          /* where the stub will live in the target */
        uint64_t table_addr;         /* thread state table (threadtable.h) */
        unsigned table_order;        /* n slots = 1 << order */
        uint64_t target_state_addr;  /* byte: state of threads not in the table */
        uint64_t new_addr;           /* THREAD_PATCHED threads go here */
        uint64_t old_addr;           /* THREAD_UNPATCHED threads go here */
} StubParams;

/* Writes the stub's code into buf. Far targets (beyond +-2 GiB) get absolute jumps
 * inside the stub. Returns 0 with *ret_len set, or -ENOSPC when bufsize is too small. */
int stub_build(const StubParams *p, uint8_t *buf, size_t bufsize, size_t *ret_len);
