/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The control block: ulp's state inside each patched process, the source of truth
 * (docs/control-block.md). It lives in a private mapping of a memfd named
 * "ulp-control", so /proc/PID/maps shows "/memfd:ulp-control (deleted)"; a forked
 * child gets its own copy-on-write copy. ulpctl --direct, a restarted ulpd and
 * status readers all find it there.
 *
 * It holds the thread state table read by the dispatch stubs (threadtable.h), the
 * transition in progress, the near code areas (stubs, relocated originals), the
 * patches and, per patch, its function records. A function's stack of
 * implementations is the sequence of its records (same old_addr) in patch order.
 */

#include <stdbool.h>
#include <stdint.h>

#include "patcher/target.h"
#include "patcher/threadtable.h"

#define CONTROL_MAGIC "ULPCTRL1"
#define CONTROL_VERSION 3
#define CONTROL_MAPPING_NAME "ulp-control"
#define CONTROL_TABLE_ORDER 13
#define CONTROL_TABLE_SLOTS (1u << CONTROL_TABLE_ORDER)
#define CONTROL_MAX_THREADS (CONTROL_TABLE_SLOTS / 2)
#define CONTROL_MAX_PATCHES 64
#define CONTROL_MAX_FUNCS 8192
#define CONTROL_MAX_AREAS 64
#define CONTROL_AREA_SIZE (1u << 20)
#define CONTROL_MAX_STRAGGLERS 32
#define CONTROL_MAX_LATE 4    /* objects of a patch not loaded yet */
/* ControlPatch.late[k][CONTROL_LATE_STATE]: what happened to the late object k since it
 * was loaded; meaningless while the entry is unused (its name empty). Its name is at most
 * CONTROL_LATE_NAME_MAX characters. */
#define CONTROL_LATE_STATE 63
#define CONTROL_LATE_NAME_MAX 62
#define CONTROL_SHADOW_ENTRIES 5 /* ULP_SHADOW_N_ENTRIES (runtime/shadow-abi.h) */

/* Patch states in the control block. */
enum {
        CP_FREE = 0,
        CP_PATCHED = 1,          /* complete, all threads run it */
        CP_TRANSITION = 2,       /* the patch of the transition in progress */
        CP_UNPATCHED = 3,        /* reverted; record kept until its slot is reused */
};

/* The slots of ControlPatch.callbacks, in the order ULP_CALLBACKS names them. */
enum {
        CP_CB_PRE_PATCH = 0,
        CP_CB_POST_PATCH = 1,
        CP_CB_PRE_UNPATCH = 2,
        CP_CB_POST_UNPATCH = 3,
        CP_CB_MAX = 4,
};

enum {
        CP_FLAG_FORCED = 1 << 0, /* some thread switched without the check: never unmap */
        CP_FLAG_REPLACE = 1 << 1,
        CP_FLAG_CALLBACK = 1 << 2, /* a callback of it may still run (hdr.callback_tid): never unmap */
};

enum {
        /* transition_cancel() started: a resume finishes the cancel, not the apply */
        CT_FLAG_CANCEL = 1 << 0,
        /* Init entered no thread in the table: untabled threads are in untabled_state,
         * the initial state, until completion flips it (docs/stops.md). Older builds
         * refuse the block meanwhile (unknown flag), as they must: they would not
         * check those threads. */
        CT_FLAG_UNTABLED = 1 << 1,
        /* The int3 window of init may be open (guard at guard_block): the next driver
         * closes it before anything else (transition_resume). */
        CT_FLAG_INIT_WINDOW = 1 << 2,
        /* Completion's int3 window may be open (guard at guard_block): every thread is
         * in the target, and each entry holds the jump to its stub, its final bytes, or
         * an int3 before one of them; the next driver closes it, each entry finished or
         * undone (the same for every thread), before anything else (transition_resume). */
        CT_FLAG_END_WINDOW = 1 << 3,
};

/* ControlHeader.stage_state */
enum {
        CONTROL_STAGE_NONE = 0,
        CONTROL_STAGED = 1,
};

enum {
        CF_FLAG_NOP = 1 << 0,    /* replace patch: this function goes back to the original */
};

/* ControlHeader.load_state */
enum {
        CONTROL_LOAD_NONE = 0,
        CONTROL_LOAD_CREATING = 1,    /* memfd_create may have run: its fd is not known */
        CONTROL_LOAD_OPEN = 2,        /* the memfd is open in the target as load_fd */
};

/* The state byte of a late object (CONTROL_LATE_STATE, after its name's NUL). */
enum {
        CONTROL_LATE_WAITING = 0,     /* not loaded yet, or loaded and nothing run yet */
        CONTROL_LATE_PREPATCHED = 1,  /* loaded: its pre_patch ran, its switch is still to do */
        CONTROL_LATE_LOADED = 2,      /* loaded and patched: watched for its unloading */
        CONTROL_LATE_POSTPENDING = 3, /* loaded and patched, its post_patch still to run */
        /* Its pre_patch's or post_patch's call is armed or runs: the header names its
         * thread and frame (callback_tid), the call slot says how far it got
         * (docs/fault-tolerance.md, "A late object's callbacks and a driver's death"). */
        CONTROL_LATE_PRECALL = 4,     /* loaded: pre_patch armed, running, or returned */
        CONTROL_LATE_POSTCALL = 5,    /* loaded and patched: post_patch armed, running, or returned */
};

/*
 * The call slot: 8 bytes right past the image, in the last page of the block's mapping,
 * which no writer of the block writes and no reader reads. A late object's callback is
 * entered through code that writes it (target_call_record_code()): the driver arms it,
 * the target's thread itself records that the call started and what it returned, so
 * that a driver killed at any point leaves the outcome in the target.
 */
#define CONTROL_CALL_SLOT_OFF sizeof(ControlImage)
#define CONTROL_CALL_ARMED (1ULL << 32)    /* written by the driver before the call */
#define CONTROL_CALL_STARTED (2ULL << 32)  /* by the thread, its first instruction */
#define CONTROL_CALL_RETURNED (3ULL << 32) /* by the thread, with the 32-bit return value */

/*
 * Version 3 (docs/control-block.md): the header carries a seqlock (generation, odd while
 * a writer is inside, with the writer's identity so that a dead writer is recognised)
 * and the block's identity with its MAC under the per-boot key (control_trust.c).
 * Blocks of versions 1 and 2 are refused, never converted: they can only come from an
 * older ulp still running, and its transitions are its own to finish.
 */
typedef struct ControlHeader {
        char magic[8];
        uint32_t version;
        uint32_t image_size;
        uint64_t self;           /* address of the block in the target */
        int32_t owner_pid;       /* process that created it; a forked child differs */
        uint32_t pad0;
        /* The seqlock (control_write_begin/end), written as one piece. */
        uint32_t generation;     /* odd while a writer is inside, even when it is done */
        int32_t writer_pid;      /* the last writer, against pid reuse with its start time */
        uint64_t writer_start;
        int32_t writer_target;   /* the pid it was writing; another pid: a forked copy */
        int8_t target_state;     /* the transition's target state */
        /* Read by the stubs: the state of a thread not in the table. The target state,
         * except while CT_FLAG_UNTABLED says that init left the threads untabled in the
         * transition's initial state (docs/stops.md, "The untabled state"); in pad1[0]
         * before, which older builds kept equal to nothing (their stubs read
         * target_state, and their transitions never carry CT_FLAG_UNTABLED). */
        int8_t untabled_state;
        uint8_t pad1[2];
        int32_t transition_patch;/* index of the patch in transition, -1 none */
        uint32_t transition_flags; /* CT_FLAG_* */
        uint32_t n_patches;      /* slots used in patches[] (including CP_UNPATCHED) */
        uint32_t n_funcs;        /* records used in funcs[] */
        uint32_t n_areas;
        uint32_t pad2;
        uint64_t trap_addr;      /* an int3 byte, for calls on a borrowed thread */
        uint64_t transition_started_ns; /* CLOCK_REALTIME */
        int32_t driver_pid;      /* the process driving the transition (ulpctl or ulpd) */
        uint32_t timeout_ms;     /* the transition's timeout, for a driver that takes it over; 0 default */
        uint64_t driver_start;   /* its start time (/proc/PID/stat), against pid reuse */
        /* Identity and its MAC (control_sign/control_verify): all zero when the creator
         * could not read the key (an unprivileged ulpctl --direct). */
        uint64_t owner_start;    /* start time of owner_pid */
        uint8_t nonce[16];
        uint8_t mac[16];
        /* A callback left running past its deadline (op.c, docs/fault-tolerance.md): its
         * thread and the address of its frame, 0 none. The patches whose code it may
         * run carry CP_FLAG_CALLBACK and stay mapped until the thread is out. */
        int32_t callback_tid;
        uint32_t pad3;
        uint64_t callback_frame;
        /* The shadow-variable runtime (docs/shadow.md): mapped once, when a patch first
         * refers to ulp_shadow_*, and never unmapped; all zero until then. Its entry
         * points in the order of ULP_SHADOW_ENTRY_NAMES, and its counters. */
        uint64_t shadow_base;
        uint64_t shadow_size;
        uint64_t shadow_entry[CONTROL_SHADOW_ENTRIES];
        uint64_t shadow_stats;
        /* A compaction staged but not yet copied into place (op-compact.c): while
         * stage_state is CONTROL_STAGED the block's patches and function records are the
         * stage_funcs records at funcs[stage_at] followed by stage_patches patch records
         * (as bytes), and what lies at the front of both arrays is not read. */
        uint32_t stage_state;
        uint32_t stage_at;
        uint32_t stage_patches;
        uint32_t stage_funcs;
        /* A patch being loaded (loader-fd.c, docs/fault-tolerance.md): the memfd the
         * loader creates in the target is an fd of the target until its close, and its
         * code is mapped before any record names it; a driver killed in between would
         * leave both for good. The driver (pid, start time) records the memfd's name and
         * the range it reserves before memfd_create (LOAD_CREATING), the fd and inode
         * right after (LOAD_OPEN); the write that publishes the patch's record (or the
         * shadow runtime's) clears it. The next apply, revert or resume closes and
         * unmaps what a dead driver left. */
        uint32_t load_state;     /* CONTROL_LOAD_* */
        int32_t load_pid;
        uint64_t load_start;
        int32_t load_fd;
        uint32_t pad4;
        uint64_t load_ino;
        uint64_t load_addr;      /* the reservation the segments go into */
        uint64_t load_size;
        char load_name[192];     /* the memfd's name, "ulp-patch:NAME" */
        /* The SIGTRAP guard block of the int3 windows (trapguard.h), allocated once in
         * an area, 0 none yet: a window a dead driver left open is found there. */
        uint64_t guard_block;
        uint8_t reserved[4096 - 496];
} ControlHeader;

typedef struct ControlArea {
        uint64_t addr;
        uint64_t size;
        uint64_t used;
        uint64_t reserved;
} ControlArea;

typedef struct ControlPatch {
        char name[128];
        uint32_t state;          /* CP_* */
        uint32_t flags;          /* CP_FLAG_* */
        uint32_t first_func;     /* its records: funcs[first_func .. first_func+n_funcs) */
        uint32_t n_funcs;
        uint32_t seq;            /* order in which patches were applied */
        uint32_t applied_uid;    /* who asked for it (ulpd: its client); valid when applied_ns is */
        uint64_t map_start;      /* the patch's mapping */
        uint64_t map_size;
        uint64_t bias;
        uint64_t callbacks[CP_CB_MAX]; /* by CP_CB_*; 0 none */
        uint8_t build_id[20];
        uint32_t build_id_len;
        char file[120];          /* file name it was applied from, informational */
        uint64_t applied_ns;     /* CLOCK_REALTIME when it was applied; 0 unknown (a block made
                                  * before these two fields, in what were file's last bytes) */
        /* Objects the patch names that the process had not loaded when it was applied
         * (klp_is_object_loaded): their functions have no records yet; "" unused. The
         * last byte is the object's state (CONTROL_LATE_*), after the name's NUL. */
        char late[CONTROL_MAX_LATE][64];
} ControlPatch;

typedef struct ControlFunc {
        uint32_t patch;          /* index in patches[] */
        uint32_t flags;          /* CF_FLAG_* */
        uint64_t old_addr;       /* function in the target (its ELF symbol address) */
        uint64_t old_size;
        uint64_t new_addr;       /* this patch's implementation (old copy for a nop) */
        uint64_t new_size;
        uint64_t prev_addr;      /* the implementation below in the stack when applied */
        uint64_t stub_addr;      /* this record's dispatch stub */
        uint64_t copy_addr;      /* relocated original of old_addr (shared by the stack) */
        uint8_t orig_bytes[16];  /* bytes at old_addr + entry_off before any patch */
        uint8_t entry_off;       /* 4 after endbr64 */
        uint8_t displaced_len;
        uint8_t pad[2];
        int32_t far_off;         /* 0, or the entry jumps to old_addr + far_off: a far jump to
                                  * new_addr in ulp's areas, new_addr being beyond +-2 GiB
                                  * (docs/reach.md); written once, never changed or freed */
        char object[64];
        char symbol[96];
} ControlFunc;

/* A thread holding the transition up at the last pass, for status readers in other
 * processes. Written by the process driving the transition after each pass (no thread
 * of the target needs to be stopped: only ulp reads it). */
typedef struct ControlStraggler {
        int32_t tid;
        char comm[16];
        char blocker[108];
} ControlStraggler;

typedef struct ControlStragglers {
        uint32_t n;
        uint32_t pass;           /* the pass that found them */
        uint64_t updated_ns;     /* CLOCK_REALTIME */
        ControlStraggler v[CONTROL_MAX_STRAGGLERS];
} ControlStragglers;

typedef struct ControlImage {
        ControlHeader hdr;
        uint64_t table_tp[CONTROL_TABLE_SLOTS];
        uint8_t table_state[CONTROL_TABLE_SLOTS];
        ControlArea areas[CONTROL_MAX_AREAS];
        ControlPatch patches[CONTROL_MAX_PATCHES];
        ControlFunc funcs[CONTROL_MAX_FUNCS];
        ControlStragglers stragglers;
} ControlImage;

_Static_assert(sizeof(ControlImage) % 8 == 0 &&
               sizeof(ControlImage) + 8 <= ((sizeof(ControlImage) + 4095) & ~(size_t)4095),
               "the call slot lies in the block's mapping, past the image");

#define CONTROL_OFF(field) ((uint64_t)__builtin_offsetof(ControlImage, field))

/* A local copy of a target's control block and where it lives. */
typedef struct Control {
        uint64_t addr;           /* 0 when the target has none yet */
        /* A mapping left all zeros by a creator that died before its first write: the
         * next control_create() writes the block there instead of mapping another. */
        uint64_t unborn_addr;
        ControlImage *img;       /* local copy; table_* are read only on demand */
        bool img_mapped;         /* img is control_alloc()'s mapping (else the caller's malloc()) */
        bool trusted;            /* its MAC checks out: ulp made it in this memfd */
        bool batch;              /* inside control_batch_begin/end */
        char why[160];           /* what is wrong, after -EBADMSG or -EBUSY from a read */
} Control;

/* Finds the control block of pid in its maps. Returns 1 found (*ret_addr set), 0 none,
 * or -errno when the maps cannot be read. With control_is_mapping() (a mapping of the
 * control memfd at offset 0), in carriers.c: the one test of "carries a block". */
int control_find(pid_t pid, uint64_t *ret_addr);
/* The same in maps already read. */
struct MapList;
int control_find_in(const struct MapList *l, uint64_t *ret_addr);
struct MapEntry;
bool control_is_mapping(const struct MapEntry *e);

/*
 * Checks a copy of a block (header, areas, patches and function records; not the table
 * or the stragglers) that claims to live at self: magic, version, size, every count,
 * index, enum, string and address range. Works on a plain buffer (fuzzed); the rest of
 * ulp acts only on a block that passed. Returns 0, or -EBADMSG with what is wrong in why.
 */
int control_validate(const ControlImage *img, uint64_t self, char *why, size_t why_len);
/* The same for the thread table and for the straggler list. */
int control_validate_table(const ControlImage *img, char *why, size_t why_len);
int control_validate_stragglers(const ControlStragglers *s, char *why, size_t why_len);

/* control_load() of a block whose header is all zeros returns -ENODATA: its creator
 * died between mapping it and writing it. Nothing was recorded in it, so nothing of the
 * process depends on it; control_create() reuses the mapping (c->unborn_addr). */

/* Reads the control block at c->addr (header, areas, patches, used function records) as
 * one consistent copy (the seqlock, retried a bounded number of times), validates it and
 * checks its MAC (c->trusted). -EBADMSG: malformed or of another version; -EBUSY: another
 * process kept writing it; c->why says what. */
int control_load(Target *t, Control *c);

/* Creates the control block in the target with syscalls on the borrowed thread th
 * (memfd_create, mmap, close) and initialises it. */
int control_create(Target *t, Thread *th, Control *c);

/* Frees c's copy; a thread keeps the copy of its last operation for the next one
 * (control-image.c), cleared when taken. */
void control_done(Control *c);
/* Unmaps the copy the calling thread keeps (for tests). */
void control_kept_drop(void);

/* Several writes that readers must see as one change (records moved, with the patches
 * and header that index them): the seqlock stays odd from begin to end, and the writes in
 * between do not open brackets of their own. end is to be called even after a failed
 * write. A writer killed in between leaves a block that may be refused as malformed. */
int control_batch_begin(Target *t, Control *c);
int control_batch_end(Target *t, Control *c);

/*
 * Compaction (docs/control-block.md, "Compaction"). control_stage() writes the local
 * copy's patches and records (already compacted by the caller, with the counts in the
 * header) into the free tail of funcs[], then the header naming them: from that one
 * write on, readers take the block from the stage. control_settle() copies the stage to
 * the front and writes the header without it. A writer killed anywhere in between
 * leaves a block that reads as the compacted one; the next write of any part of the
 * block settles it first. -ENOSPC: no room for the stage (nothing written).
 */
int control_stage(Target *t, Control *c, unsigned at);
int control_settle(Target *t, Control *c);
/* Where a stage of the local copy's patches and records may go: at, the first record
 * after the used records of the target (used), if it fits; else -ENOSPC. */
int control_stage_room(const ControlImage *img, unsigned used);
/* Function records a stage of np patches and nf records takes. */
static inline uint64_t control_stage_records(uint64_t np, uint64_t nf) {
        return nf + (np * sizeof(ControlPatch) + sizeof(ControlFunc) - 1) / sizeof(ControlFunc);
}

/* Writes parts of the local copy back to the target. */
int control_write_header(Target *t, Control *c);
int control_write_patch(Target *t, Control *c, unsigned idx);
int control_write_funcs(Target *t, Control *c, unsigned first, unsigned n);
int control_write_areas(Target *t, Control *c);

/* Reads (and validates, -EBADMSG) and writes the whole thread table (every thread
 * stopped). */
int control_read_table(Target *t, Control *c);
int control_write_table(Target *t, Control *c);

/* One thread's state byte in the table; the slot it is at comes from
 * control_table_find(). The corresponding reader is the stub (stub.h). */
int control_table_find(const Control *c, uint64_t tp);
int control_write_thread_state(Target *t, Control *c, unsigned slot, uint8_t state);

/* Replaces the straggler list (at most CONTROL_MAX_STRAGGLERS are kept); n = 0 clears it. */
int control_write_stragglers(Target *t, Control *c, const ControlStraggler *v, size_t n, unsigned pass);
/* Reads them under the seqlock and validates them: -EBADMSG or -EBUSY as control_load. */
int control_read_stragglers(Target *t, Control *c);

/*
 * Authenticity (control-trust.c). A MAC under the per-boot key over the block's identity:
 * the memfd it lives in (dev and inode of its mapping), its address, its creator (pid and
 * start time) and a random nonce. control_sign() fills owner_pid, owner_start, nonce and
 * mac in the local header (the caller writes it); without access to the key (an
 * unprivileged caller) it leaves nonce and mac zero and returns -EACCES.
 * control_verify() is true when the MAC matches the block as found in the mapping with
 * that dev and inode.
 */
int control_sign(Control *c, pid_t pid, uint64_t dev, uint64_t inode);
bool control_verify(const ControlHeader *h, uint64_t dev, uint64_t inode);

/* Start time of pid in clock ticks since boot (/proc/PID/stat), 0 if unknown. */
uint64_t control_proc_start_time(pid_t pid);
/* getpid(), read once per process (a forked child reads its own): every write of the
 * block names its writer, a dozen times an operation. */
pid_t control_self_pid(void);
/* The start time for the calling process, read once per process. */
uint64_t control_self_start_time(void);

/* One driver per transition: init and resume record the calling process as the driver;
 * another process may take the transition over only once that one is gone (a
 * restarted ulpd, a killed ulpctl). Returns the live driver's pid, or 0. */
void control_claim_driver(Control *c);
pid_t control_live_driver(const Control *c);
/* The last writer of the block (the seqlock's record), when it is another process that
 * is still alive, else 0. */
pid_t control_live_writer(const Control *c, pid_t target);

/* Index of the applied (patched or in transition) patch called name, or -ENOENT. */
int control_find_patch(const Control *c, const char *name);

/* Bytes of the far jump of ControlFunc.far_off: jmp [rip+0]; .quad new_addr. */
#define CONTROL_FAR_JUMP_SIZE 14

/* Where the entry of f's function jumps when f is on top of its stack: its new
 * function, or the far jump to it. */
static inline uint64_t control_func_entry_dest(const ControlFunc *f) {
        return f->far_off ? f->old_addr + (uint64_t)(int64_t)f->far_off : f->new_addr;
}

/* The topmost live record (patched or in transition) for the function at old_addr, or
 * -1. With exclude >= 0, records of that patch are skipped. */
int control_top_func(const Control *c, uint64_t old_addr, int exclude);

/* Any live record for old_addr (to share its relocated copy), or -1. */
int control_any_func(const Control *c, uint64_t old_addr);

/* Whether p's code must stay mapped: some thread was forced past the check, or a
 * callback left past its deadline may still run patch code (op-callback.c). */
static inline bool control_keeps_code(const ControlImage *img, const ControlPatch *p) {
        return (p->flags & (CP_FLAG_FORCED | CP_FLAG_CALLBACK)) || img->hdr.callback_tid;
}
