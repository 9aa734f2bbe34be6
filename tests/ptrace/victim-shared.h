/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What victim-ptrace shares with test-ptrace: a memfd mapped by both. The victim
 * reports what it observed itself; the test never trusts the tool's word alone. */

#include <stdint.h>
#include <sys/types.h>

#define VICTIM_COUNTERS 8
#define VICTIM_SLEEP_NS 20000000L       /* each nanosleep of the sleeper thread */

typedef struct VictimShared {
        volatile int ready;
        volatile int quit;
        volatile pid_t main_tid, sleeper_tid, reader_tid, ppoller_tid;
        volatile uint64_t counters[VICTIM_COUNTERS];
        volatile pid_t counter_tids[VICTIM_COUNTERS];  /* [0] spins, the others sleep 100 us a round */
        volatile uint64_t main_loops;

        /* sleeper: nanosleep returns 0 after at least VICTIM_SLEEP_NS, else bad */
        volatile uint64_t sleeps_ok, sleeps_bad;
        volatile long sleep_last_ret, sleep_last_errno;
        /* reader: blocking read on a pipe */
        volatile long read_ret, read_errno;
        volatile int read_done;
        char read_buf[64];
        /* ppoller: ppoll with a temporary mask; its own mask checked afterwards */
        volatile uint64_t ppolls, ppoll_mask_bad, ppoll_bad;

        /* signals */
        volatile uint64_t usr1_count, segv_count, rt_count, rt_sum, handler_changed;

        /* functions for target_call and target_write */
        volatile uint64_t add3_addr, crash_addr, spin_addr, unused_code_addr;
        volatile uint64_t entry_rsp_addr, clobber_addr;
        volatile uint8_t code_copy[16];     /* the victim's own view of unused_code */

        /* mode "zombie": the leader leaves with pthread_exit when set */
        volatile int leader_exit;
        volatile uint64_t spawned;
        /* spin(): loops until spin_release, then counts its return */
        volatile int spin_release;
        volatile uint64_t spin_returns;
} VictimShared;
