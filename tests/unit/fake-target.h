/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A fake of the ptrace layer (patcher/target.h) and of the unwinder, linked in place of
 * patcher/target.c and unwind/ so that the core's rules can be tested in-process, without
 * ptrace. The "target" is the test process itself: its memory is read and written through
 * /proc/self/mem, system calls asked of it run here (a control block or a patch mapped
 * by the code under test lands in this process). Its threads are made up: each has a
 * thread pointer, a stack given as a list of PCs, and a way to answer a stop.
 */

#include <stdbool.h>
#include <stdint.h>

#include "patcher/target.h"

#define FAKE_MAX_THREADS 64
#define FAKE_MAX_FRAMES 16

typedef enum FakeStop {
        FAKE_STOPS,              /* stops when asked */
        FAKE_LATE,               /* never stops in time (a vfork parent in D state) */
} FakeStop;

typedef struct FakeThread {
        pid_t tid;
        uint64_t tp;             /* its thread pointer (fs_base) */
        uint64_t pcs[FAKE_MAX_FRAMES]; /* its stack: pcs[0] the PC, then return addresses */
        size_t n_pcs;
        bool unreliable;         /* the unwinder says its stack is not reliable */
        bool exited;             /* gone: the next stop finds it so */
        FakeStop stop;
        unsigned stops;          /* times it was stopped (alone or with the others) */
} FakeThread;

typedef struct FakeStats {
        unsigned stop_all, resume_all, stop_one, syscalls;
        unsigned batches, batch_calls; /* system call batches begun, calls made inside one */
        unsigned gathers;        /* target_write_gather_begin() calls */
} FakeStats;

extern FakeStats fake_stats;

/* Forgets every fake thread; target_open(getpid()) then gives a target that sees the
 * threads added since. */
void fake_reset(void);
/* fake_reset() and a target for this process; fake_target_free() ends it. */
Target *fake_target_new(void);
void fake_target_free(Target *t);

/* Adds a thread with thread pointer tp (0: a fresh one) sitting at pc; the next stop
 * of every thread (target_stop_all) sees it. */
FakeThread *fake_thread_add(Target *t, uint64_t tp, uint64_t pc);
FakeThread *fake_thread(pid_t tid);
/* Sets the stack of th: n PCs, innermost first. */
void fake_thread_stack(FakeThread *th, const uint64_t *pcs, size_t n);
