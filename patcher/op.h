/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/* Internals shared by the operation files (op-*.c): the UlpOp object and its helpers. */

#include "elf/module.h"
#include "elf/patchmeta.h"
#include "elf/symtab.h"
#include "patcher/control.h"
#include "patcher/loader.h"
#include "patcher/target.h"
#include "patcher/transition.h"
#include "ulp/libulp.h"
#include "patcher/x86_64/relocate.h"
#include "unwind/unwind.h"

/* A patch callback may run so long, unless the caller says (UlpOptions). */
#define CALLBACK_TIMEOUT_MS 10000
/* A borrow (load, callbacks) happens once per operation and holds no other thread. It
 * waits at least this long, and as long as the caller lets a callback hold it (the
 * callback timeout: 1 s in ulpd, whose loop it holds; 10 s by default with --direct),
 * within the operation's deadline: a thread slow to stop on a loaded machine is waited
 * for, not taken for a failure. */
#define OP_BORROW_MS 2000

typedef enum OpKind {
        OP_APPLY,
        OP_REVERT,
} OpKind;

struct UlpOp {
        OpKind kind;
        UlpOptions o;
        UlpReport *report;       /* the caller's; must outlive the op */
        Target *t;
        Control c;
        ModuleList mods;
        SymTab **symtabs;        /* one per module of mods */
        SymResolver res;
        Unwinder *u;
        uint8_t u_image[16];     /* the image's AT_RANDOM bytes when u was taken (unwcache.h) */
        bool u_keyed;            /* u_image is known: u may be kept for the next operation */
        Transition tr;
        bool tr_ready;
        bool done;
        bool reversing;          /* the deadline passed: going back */
        int patch;               /* index in the control block */
        uint64_t start_ns;
        uint64_t deadline_ns;
        unsigned backoff_ms;
        bool init_pending;       /* the transition's stop-the-world did not happen yet: a
                                  * thread could not be stopped; retried by each step */
        uint64_t reverse_until_ns; /* a reversal (or a --force) held back by a thread that
                                  * cannot be stopped is retried until then; 0 not started */
        size_t forced_threads;   /* the stragglers --force switched unchecked */
        uint64_t next_pass_ns;   /* steps before then only detach late threads */
        /* The start of an operation that needs a borrowed thread (an apply's load and
         * pre-patch callback): while no thread can be stopped at once it returns -EAGAIN
         * and each step tries it again, until the deadline (docs/stops.md). NULL once
         * done; its data freed with it. */
        int (*prologue)(UlpOp *op);
        void *prologue_data;
        void (*prologue_free)(void *data);
        bool borrow_retry;       /* op_borrow makes one short attempt: -EAGAIN when it
                                  * failed with time left (set while a prologue runs) */
        bool callback_returned;  /* the last op_run_callback's callback returned (its int
                                  * is known even if resuming its thread then failed) */
        bool callback_entered;   /* its thread was resumed into it: it ran, if only to
                                  * crash or to be left past its deadline */
};

uint64_t op_now_ns(void);

/* Sets the report's message (printf-like) and returns r. */
int op_fail(UlpOp *op, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void op_warn(UlpOp *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* fibers.c: refuses (-ENOTSUP) a process that runs stackful user-level threads, or
 * warns when the operator forces it. */
int op_check_fibers(UlpOp *op);

UlpOp *op_new(OpKind kind, const UlpOptions *o, UlpReport *report);

/* SymResolver.run_resolver of an apply, userdata an OpThread: the resolver called on the
 * borrowed thread within the callback deadline (docs/reach.md); with th NULL, on a thread
 * borrowed for it and left in th. */
typedef struct OpThread {
        UlpOp *op;
        Thread *th;
} OpThread;
int op_run_resolver(void *userdata, uint64_t addr, uint64_t *ret);

/* For target_open()'s -EPERM: says which check refused /proc/PID/mem, the file's mode
 * (-EACCES, naming the file, its owner and the missing capability) or the ptrace access
 * check (-EPERM). */
int op_fail_denied(UlpOp *op, pid_t pid);

/* Opens the target and reads its modules and control block (if any). */
int op_open_target(UlpOp *op, pid_t pid);
/* Its first steps: target_open() with the operator's message for each refusal; finding
 * and loading the control block: 1 loaded, 0 none, -ENODATA an unborn one (op->c.addr
 * set), other -errno with the message. */
int op_target_open(UlpOp *op, pid_t pid);
int op_find_control(UlpOp *op, pid_t pid);

/* The status of a validated block (stragglers validated too, or n = 0). ret->patches is
 * the caller's, freed by ulp_status_done(). */
int op_status_convert(const ControlImage *img, UlpProcessStatus *ret);

/* control_load() with the operator's message naming the pid and what is wrong. */
int op_load_control(UlpOp *op);

/* -EPERM with the message when the block carries no valid MAC and the caller may not act
 * on such a block (UlpOptions.trust_unsigned). */
int op_check_trust(UlpOp *op);

/* op_open_target, and -ENOENT with the message when the target has no control block. */
int op_open_with_control(UlpOp *op, pid_t pid);

/* (Re)reads the target's modules, resetting the symbol tables and the unwinder's view. */
int op_refresh_modules(UlpOp *op);

/* Creates the unwinder, once the modules are known. */
int op_unwinder(UlpOp *op);

/* Stops one thread to borrow for syscalls and calls (the main thread if it can). In a
 * prologue (borrow_retry) one attempt of at most 20 ms: -EAGAIN when it failed and the
 * operation has time left. */
int op_borrow(UlpOp *op, Thread **ret);
/* op_borrow() waited for as a step that cannot be put off, even in a prologue. */
int op_borrow_now(UlpOp *op, Thread **ret);

/* Sets how long the next stops may wait for a thread: the operation's remaining time,
 * within the bounds of one attempt (docs/stops.md). */
void op_stop_budget(UlpOp *op);

/* The operator's words for a failure r of a stop: the late thread's sentence for
 * -ETIMEDOUT, else strerror. Returns buf. */
const char *op_stop_error(UlpOp *op, int r, char *buf, size_t len);

/* Runs a callback of the patch in the target on a borrowed thread. *ret gets its int.
 * One past its deadline is left to finish by itself (op-callback.c): -ETIME. */
int op_run_callback(UlpOp *op, uint64_t addr, int *ret);
/* The same, recorded: mark(data, tid, frame) runs last before the call starts in the
 * thread (Target.call_start), and the call goes through target_call_record_code(), so
 * that the target's call slot (CONTROL_CALL_SLOT_OFF) says whether it started and what
 * it returned even when the driver is killed (docs/fault-tolerance.md, "A late
 * object's callbacks and a driver's death"). mark's writes reach the target before the
 * call starts. */
int op_run_callback_marked(UlpOp *op, uint64_t addr, int (*mark)(void *data, pid_t tid, uint64_t frame),
                           void *data, int *ret);

/* Callbacks past their deadline (op-callback.c, docs/fault-tolerance.md). */
/* The name of the callback at addr of p ("pre-patch"...). */
const char *op_callback_name(const ControlPatch *p, uint64_t addr);
/* Records that the callback of op->patch runs on in thread tid, its frame at frame. */
int op_callback_overdue(UlpOp *op, pid_t tid, uint64_t frame);
/* When a callback left past its deadline is recorded: once its thread is out, unmaps the
 * code kept for it and clears the record. While it is inside: 0, or -EBUSY with the
 * operator's message when need_callback (the operation is about to run one). */
int op_callback_reclaim(UlpOp *op, bool need_callback);
/* Whether the thread of the recorded callback is out of its call: 1 out (or none
 * recorded), 0 inside or not known, -errno. */
int op_callback_out(UlpOp *op);
/* Clears the header's record of a callback whose thread is known to be out. */
int op_callback_done(UlpOp *op);
/* op-late.c: before the record of a callback goes (its thread out), the late objects
 * whose call it was get their outcome from the call slot (op_callback_reclaim). */
int op_late_resolve(UlpOp *op);

/* Writes a fresh dispatch stub for each record of patch, from the entry's current
 * implementation (old) to the patch's (new). */
/* Whether the stubs of patch (and the guard block, if none yet) fit in the areas the
 * process has: then op_build_stubs() needs no thread (th NULL). */
bool op_stubs_fit(UlpOp *op, int patch);
int op_build_stubs(UlpOp *op, Thread *th, int patch);

/* init under a stop-the-world, retried while threads sit in code being rewritten; falls
 * back to global mode when threads share a thread pointer. */
int op_start_transition(UlpOp *op, int target_state);

/* Fills the report's figures and stragglers from the transition. */
void op_report_figures(UlpOp *op);

/* Removes reverted patches' records from the control block (no transition running),
 * each write leaving a valid block (op-compact.c). */
int op_compact_control(UlpOp *op);
/* Unmaps reverted patches' code left mapped by a driver killed before it did; stops
 * every thread (nothing may be borrowed). Best effort: code some thread may still run
 * stays, recorded, for a later apply. */
int op_reclaim_code(UlpOp *op);
/* Closes, on the borrowed thread th, the memfd of a patch load that a killed driver left
 * open in the target (loader-fd.c); 0 or a failure with its message. */
int op_reclaim_loader_fd(UlpOp *op, Thread *th);
/* The patch just loaded, whose pre-patch callback failed to run: its code unmapped and
 * its record dropped, unless a thread may be in that code (1 then). */
int op_unload_failed(UlpOp *op);
/* Ends the patching of objects loaded later that a killed driver left between its
 * records and its entries (op-late.c), within the operation's deadline. In a prologue
 * step (op->borrow_retry) it tries once: -EAGAIN while threads are in the way, for the
 * next step to call it again. */
int op_late_settle(UlpOp *op);

/* One function of a patch, resolved in the target before anything is written. */
typedef struct Resolved {
        const Module *mod;       /* NULL: its object is not loaded (late) */
        uint64_t old_addr, old_size;
        int shared;              /* a record of the same function exists: no relocation check */
        size_t pad_avail;        /* bytes after it no symbol starts in (tiny functions) */
        Relocation rel;
} Resolved;

/* Apply-side helpers (op-apply.c). */

/* Finds the old function of pf, checks the build-id pin, its size and that its entry
 * can be relocated. -ENOENT with ret->mod NULL: its object is not loaded. */
int op_resolve_func(UlpOp *op, const PatchMeta *meta, const PatchFunc *pf, Resolved *ret);

/* Writes the relocated original of the function near it (shared with an existing
 * record of the same function) into f. th: a stopped thread to borrow. */
int op_write_copy(UlpOp *op, Thread *th, Resolved *rs, ControlFunc *f);

/* Fills the record f of patch idx for pf (new function at its vaddr + bias, size from
 * patch_st), relocated original included. */
int op_fill_func_record(UlpOp *op, Thread *th, ControlFunc *f, unsigned idx, const PatchFunc *pf, Resolved *rs,
                        SymTab *patch_st, uint64_t bias);

