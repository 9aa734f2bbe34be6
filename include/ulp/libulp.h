/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libulp: the one public header of the ulp core (elf/, unwind/, patcher/). ulpd,
 * ulpctl and any other program include this and nothing else of the core; the core's
 * own headers are internal (docs/architecture.md, "The library boundary"). It needs
 * only libc headers, so that a client that merely talks to ulpd compiles against it
 * without libelf, libdw or capstone.
 *
 * The operations ulpctl --direct and ulpd perform on target processes.
 * The library prints nothing and never exits: every function returns 0 (or a
 * positive value where said) or -errno, and fills a UlpReport whose message is the
 * one clear line to show the operator.
 *
 * An apply or revert is an UlpOp: started with ulp_op_apply()/ulp_op_revert(), which
 * load the patch and write the code (one short stop-the-world) and begin the
 * transition, then driven by ulp_op_step() until it finishes, like the kernel's
 * klp_try_complete_transition() retried from delayed work. ulp_apply() and
 * ulp_revert() do both in a loop, for callers that can block.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define ULP_DEFAULT_TIMEOUT_MS 30000

typedef struct UlpOptions {
        unsigned timeout_ms;     /* 0: ULP_DEFAULT_TIMEOUT_MS */
        bool force;              /* switch the stragglers without the check at the timeout */
        bool global;             /* global mode: stop all, check all, switch all or none */
        bool return_trap;        /* catch stragglers on their way out of the patched frames */
        /* Act on a control block that carries no valid MAC (ulp did not provably make it
         * in this process, docs/control-block.md). Only for an unprivileged caller acting
         * on processes the kernel lets it trace; never for root, nor for work nobody asked
         * for (recovery, sticky patches, objects loaded later). */
        bool trust_unsigned;
        unsigned callback_timeout_ms; /* for each patch callback; 0: 10 s. The caller waits
                                       * that long for a callback that spins. */
        /* Authorization by the client's own access (ulpd): with auth_mem set, auth_mem_fd is
         * a /proc/PID/mem descriptor of the target that an authorized client opened. The
         * operation acts only while the target runs the image that descriptor refers to,
         * checked when it starts and at every stop; otherwise it fails with -ESTALE before
         * writing anything. The descriptor stays the caller's. Every operation, bound or
         * not, aborts with -ESTALE when the target executes a new program meanwhile. */
        bool auth_mem;
        int auth_mem_fd;
        /* Who asks for an apply, recorded with the patch (status): requester_uid when
         * requester_set (ulpd: its client's uid), else the caller's effective uid. */
        bool requester_set;
        uid_t requester_uid;
} UlpOptions;

typedef struct UlpStraggler {
        pid_t tid;
        char comm[16];
        char function[128];      /* "compute" or "compute+0x12", or why its stack is unreliable */
} UlpStraggler;

typedef struct UlpReport {
        char message[512];       /* the one line for the operator on failure; empty on success */
        char patch_name[128];
        char **warnings;         /* clones, likely inlined callers...; NULL-terminated or NULL */
        size_t n_warnings;
        unsigned threads;        /* threads of the target */
        unsigned switched;       /* threads switched by the check (not counting new threads) */
        unsigned retries;        /* try_complete passes after the first */
        uint64_t max_thread_stop_us; /* longest time any single thread was stopped */
        uint64_t max_stw_us;     /* longest window with every thread stopped */
        uint64_t total_ms;
        bool forced;
        UlpStraggler *stragglers;
        size_t n_stragglers;
} UlpReport;

void ulp_report_done(UlpReport *r);

typedef struct UlpOp UlpOp;

/* Starts applying the patch open at patch_fd (name_hint: its file name) to pid. The
 * file is read once, before pid is touched, into a sealed copy (elf/patchfile.h) that
 * all the rest works from; patch_fd is not kept.
 * -EEXIST already applied, -ENOENT symbol or object missing, -EPERM no permission,
 * -ESRCH no such process, -ENOEXEC/-ENOMSG/-EBADMSG bad patch file, -ENOTSUP a feature
 * of the patch ulp does not support (RELR, TLS, IFUNC), -EFBIG/-EBADF larger than
 * 64 MiB or not a readable regular file, -EINVAL build-id mismatch, -ENOSPC function
 * too small, -ECANCELED pre-patch callback refused. */
int ulp_op_apply(pid_t pid, int patch_fd, const char *name_hint, const UlpOptions *o,
                 UlpOp **ret, UlpReport *report);

/* Starts reverting the patch called name in pid. -ENOENT no such patch applied. */
int ulp_op_revert(pid_t pid, const char *name, const UlpOptions *o, UlpOp **ret,
                  UlpReport *report);

/* Takes over a transition left unfinished in pid (by a daemon that died), in the
 * direction it was going. -ENOENT when pid has none. With no timeout_ms in o, the
 * timeout its first driver recorded in the control block, counted from now. */
int ulp_op_resume(pid_t pid, const UlpOptions *o, UlpOp **ret, UlpReport *report);

/* One pass over the pending threads. Returns 1 when the operation finished (report
 * complete), 0 when threads are still pending (*ret_next_ms: when to call again), or
 * -errno when it failed; -ETIMEDOUT: not finished in time, reversed, stragglers in the
 * report (or, with force, forced: then 1). */
int ulp_op_step(UlpOp *op, unsigned *ret_next_ms);

/* Progress for a UI: threads switched so far, and in total. */
void ulp_op_progress(const UlpOp *op, unsigned *ret_switched, unsigned *ret_total);
pid_t ulp_op_pid(const UlpOp *op);
/* The thread holding the transition up longest (found most often in a function being
 * replaced) at the last pass, for a progress line. Returns false when none is pending. */
bool ulp_op_worst_straggler(UlpOp *op, UlpStraggler *ret);

/* Does the control block, as op last read or wrote it, name an object loaded late or
 * still waited for (of a patch not reverted)? False when op never read one. A service
 * that watches such processes (ulpd) asks it at an operation's end instead of reading
 * the status of every process it patched again. */
bool ulp_op_has_late(const UlpOp *op);

/* Frees op. An unfinished transition stays in the target, consistent, for ulp_op_resume(). */
void ulp_op_free(UlpOp *op);

/* Threads an operation asked to stop that had not stopped when it ended (a vfork parent
 * waits in D state until its child exits or execs, and the kernel cannot detach a thread
 * before it stops) stay traced by the calling thread. This detaches those that stopped
 * since, without blocking, and returns how many are left: a caller that outlives its
 * operations (a service) calls it every few ms while it is not 0. A process that exits
 * needs nothing: the kernel detaches them then. */
size_t ulp_release_late(void);
/* Does the calling thread still trace threads of pid left so (see above)? A later
 * operation on pid takes them over when it runs in this thread; in another thread it
 * would find them traced by another (-EBUSY) until they stopped and were let go. */
bool ulp_late_holds(pid_t pid);
/* A multithreaded caller that runs operations in several threads (a service, a pool):
 * makes the calling thread's waits for its tracees' stops sleep until the very thread
 * waited for reports, where they napped on SIGCHLD, which any thread of the process may
 * take. The library makes a timer of this thread that sends signo to it alone, armed
 * only during such a wait to end it at its deadline, and unblocks signo in this thread;
 * the caller must have installed signo's handler (one that does nothing will do)
 * without SA_RESTART. Per thread; ulp_wait_timer_stop() before the thread ends. -errno
 * when no timer could be made: the waits nap as before. */
int ulp_wait_timer_start(int signo);
void ulp_wait_timer_stop(void);

/* Blocking forms: start, then step until done. Return 0, or -errno as above. */
int ulp_apply(pid_t pid, int patch_fd, const char *name_hint, const UlpOptions *o, UlpReport *report);
int ulp_revert(pid_t pid, const char *name, const UlpOptions *o, UlpReport *report);

/* klp_is_object_loaded: a patch naming objects the process had not loaded was applied
 * to what was loaded, the others recorded as its late objects (status lists them). Patches the
 * functions of every late object pid has loaded since, in one stop-the-world per
 * object, once no thread has one of their old functions on its stack (retried for a
 * while, then -EBUSY). No transition: the patches are complete, every thread already
 * runs them. Objects patched so and unloaded since (klp_module_going) get their unpatch
 * callbacks, lose their function records and are waited for again. Returns the number of
 * objects patched or unloaded (0: none of them loaded yet), -ENOENT when pid has no late
 * object, -EBUSY a transition is in progress or threads
 * stayed in the way, -ERANGE the object is too far from the patch's code. */
int ulp_apply_late(pid_t pid, UlpReport *report);

/* Dry run: would the patch apply to pid, and which threads block it now. Writes nothing
 * into the target. Returns 0 when it would apply at once, -EBUSY when threads block it
 * (listed as stragglers), other -errno when it would be refused. */
int ulp_check(pid_t pid, int patch_fd, const char *name_hint, UlpReport *report);
/* The same with options: only auth_mem and auth_mem_fd matter (a check bound to the
 * image a client was authorized for). */
int ulp_check_with(pid_t pid, int patch_fd, const char *name_hint, const UlpOptions *o, UlpReport *report);

/* Where a patch is in a process. Zero is "unpatched", so that a zeroed status says
 * nothing is patched. */
typedef enum UlpPatchState {
        ULP_PATCH_UNPATCHED = 0, /* reverted (the record stays until its slot is reused) */
        ULP_PATCH_PATCHED,       /* complete: every thread runs it */
        ULP_PATCH_TRANSITION,    /* the patch of the transition in progress */
        _ULP_PATCH_STATE_MAX,
} UlpPatchState;

/* The one spelling of each state, in status output and on the wire. Inline, so that a
 * client that only talks to ulpd needs nothing of the core to print one. */
static inline const char *ulp_patch_state_to_string(UlpPatchState s) {
        static const char *const table[_ULP_PATCH_STATE_MAX] = {
                [ULP_PATCH_UNPATCHED] = "unpatched",
                [ULP_PATCH_PATCHED] = "patched",
                [ULP_PATCH_TRANSITION] = "transition",
        };

        return (unsigned) s < _ULP_PATCH_STATE_MAX ? table[s] : "unpatched";
}

/* The state a string names; anything else (NULL included) is unpatched: a state that
 * cannot be read must never make a process look patched. */
static inline UlpPatchState ulp_patch_state_from_string(const char *s) {
        for (unsigned i = 0; s && i < _ULP_PATCH_STATE_MAX; i++)
                if (strcmp(s, ulp_patch_state_to_string((UlpPatchState) i)) == 0)
                        return (UlpPatchState) i;
        return ULP_PATCH_UNPATCHED;
}

/* The patches a process carries, read from its control block. */
typedef struct UlpFuncStatus {
        char object[128];
        char symbol[128];
        uint64_t addr;           /* old function's address in the target */
} UlpFuncStatus;

typedef struct UlpPatchStatus {
        char name[128];
        UlpPatchState state;
        bool forced;
        bool replace;
        /* Reverted, but its code is still mapped: left by a driver killed before it
         * unmapped it (the next apply unmaps it), or kept as forced. */
        bool code_mapped;
        UlpFuncStatus *funcs;
        size_t n_funcs;
        UlpStraggler *stragglers;/* during a transition: those of the last pass */
        size_t n_stragglers;
        /* Objects the patch names that the process has not loaded (yet): their functions
         * are patched when they are loaded (ulp_apply_late()). */
        char late_objects[4][64];
        size_t n_late_objects;
        uint64_t applied_ns;     /* when it was applied (CLOCK_REALTIME), 0 unknown */
        uid_t applied_uid;       /* and for whom; valid when applied_ns is */
        /* Objects it names that the process loaded after it and that are patched now: when
         * the process unloads one, ulp_apply_late() runs its unpatch callbacks and waits for
         * it again. */
        char loaded_late[4][64];
        size_t n_loaded_late;
} UlpPatchStatus;

typedef struct UlpProcessStatus {
        pid_t pid;
        char comm[16];
        bool trusted;            /* its control block carries a valid MAC */
        char problem[200];       /* non-empty: the block was refused (malformed, busy) */
        UlpPatchStatus *patches;
        size_t n_patches;
        /* Shadow variables (include/ulp/shadow.h): whether the process has ulp's runtime for
         * them, its counters, or shadow_refused when they do not check out. */
        bool has_shadow;
        bool shadow_refused;
        uint64_t shadow_variables;
        uint64_t shadow_bytes;   /* the sizes the patches asked for */
        uint64_t shadow_mapped;  /* the memory the runtime holds for them */
} UlpProcessStatus;

/* Whether the process carries the patch called name (patched, or in its transition). */
static inline bool ulp_process_carries(const UlpProcessStatus *s, const char *name) {
        for (size_t i = 0; i < s->n_patches; i++)
                if (strcmp(s->patches[i].name, name) == 0 &&
                    s->patches[i].state != ULP_PATCH_UNPATCHED)
                        return true;
        return false;
}

/* -ENOENT when pid carries no ulp state. A block that cannot be used (malformed, of
 * another version, kept busy) gives -EBADMSG or -EBUSY with ret->problem and the report's
 * message set, and ret->pid and comm filled: listed as such, never acted on. */
int ulp_status(pid_t pid, UlpProcessStatus *ret, UlpReport *report);
void ulp_status_done(UlpProcessStatus *s);

/* Does mem_fd, a /proc/PID/mem descriptor, show the memory of the image pid runs now (the
 * AT_RANDOM bytes through mem_fd equal those read directly)? It does not when pid executed
 * a new program since mem_fd was opened, or when mem_fd is another process's /proc/N/mem that
 * only looks like pid's (a procfs of another pid namespace). 0 yes, -ESTALE no, -ESRCH
 * pid is gone, another error when the current image cannot be read here (-EACCES: the
 * caller lacks the right to, -ENOENT: no AT_RANDOM), so that there is nothing to compare. ulpd checks a client's proof
 * with it before any operation. */
int ulp_image_shown_by(pid_t pid, int mem_fd);

/* Every process that carries ulp state (found from /proc/PID/maps). A vfork child,
 * which maps its parent's state until its exec or exit, is not one of them. */
int ulp_list_processes(pid_t **ret, size_t *ret_n);

/* The process whose memory pid runs on: its parent, when pid is a vfork child that has
 * not called exec or exited yet; 0 when pid has memory of its own. Such a child is no
 * process to patch or look for patches in (every operation on it is refused). */
pid_t ulp_vfork_parent(pid_t pid);

/* ---- patch files ------------------------------------------------------------------- */

/* The largest patch file accepted. A real patch is a few pages; this is generous. */
#define ULP_PATCH_FILE_MAX (64ULL << 20)
/* A build-id in lower-case hex with its NUL. */
#define ULP_BUILD_ID_HEX_MAX (2 * 64 + 1)

/* A sealed copy (a memfd that can no longer be written, grown or shrunk) of the regular
 * file open at fd, read from offset 0: what a service works from, so that a client that
 * rewrites its file afterwards changes nothing. *ret: the new descriptor. -EFBIG over
 * ULP_PATCH_FILE_MAX, -EBADF not a readable regular file; err gets the reason. */
int ulp_patch_file_copy(int fd, int *ret, char *err, size_t errlen);

/* The metadata of a patch file (include/ulp/patch.h), read without running any of it. */
typedef struct UlpPatchInfo UlpPatchInfo;

/* Reads the patch open at fd (from offset 0; fd is not kept). name_hint: its file name,
 * the name of a patch without ULP_PATCH_INFO. Errors as ulp_op_apply()'s for a bad
 * file, with the reason in err: -ENOEXEC not an ELF file, -ENOMSG no ulp metadata,
 * -EBADMSG malformed, -ENOTSUP a feature ulp does not support. */
int ulp_patch_info_read(int fd, const char *name_hint, UlpPatchInfo **ret, char *err, size_t errlen);
void ulp_patch_info_free(UlpPatchInfo *pi);

const char *ulp_patch_info_name(const UlpPatchInfo *pi);
const char *ulp_patch_info_description(const UlpPatchInfo *pi);   /* "" when none */
bool ulp_patch_info_replace(const UlpPatchInfo *pi);
/* The patch file's own build-id in hex, "" when it has none. */
void ulp_patch_info_build_id(const UlpPatchInfo *pi, char hex[ULP_BUILD_ID_HEX_MAX]);
/* The build-id an object is pinned to (ULP_BUILD_ID), or NULL. object: "" for the main
 * executable. */
const char *ulp_patch_info_pin_for(const UlpPatchInfo *pi, const char *object);

/* The records, by index below the count. Strings stay valid until ulp_patch_info_free();
 * object is "" for the main executable. */
typedef struct UlpPatchFuncInfo {
        const char *object;
        const char *symbol;
        unsigned pos;            /* ULP_FUNC_POS's, 0 for ULP_FUNC */
        const char *new_name;
} UlpPatchFuncInfo;

size_t ulp_patch_info_n_funcs(const UlpPatchInfo *pi);
UlpPatchFuncInfo ulp_patch_info_func(const UlpPatchInfo *pi, size_t i);
size_t ulp_patch_info_n_refs(const UlpPatchInfo *pi);
void ulp_patch_info_ref(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_symbol);
/* The fields ulp-build's patches have filled with a program symbol's address (ulp_rels),
 * each naming its object and symbol; one symbol may have several. */
size_t ulp_patch_info_n_rels(const UlpPatchInfo *pi);
void ulp_patch_info_rel(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_symbol);
size_t ulp_patch_info_n_pins(const UlpPatchInfo *pi);
void ulp_patch_info_pin(const UlpPatchInfo *pi, size_t i, const char **ret_object, const char **ret_hex);
size_t ulp_patch_info_n_callbacks(const UlpPatchInfo *pi);
/* Packed relative relocations (DT_RELR) the patch carries. */
size_t ulp_patch_info_n_relr(const UlpPatchInfo *pi);
const char *ulp_patch_info_callbacks_object(const UlpPatchInfo *pi, size_t i);

/* ---- the objects a process has loaded ------------------------------------------------ */

/* The ELF objects a process has loaded, read once from /proc/PID/maps and their files. */
typedef struct UlpObjects UlpObjects;

/* -ESRCH gone, -EACCES/-EPERM not readable by the caller. */
int ulp_objects_read(pid_t pid, UlpObjects **ret);
void ulp_objects_free(UlpObjects *objs);

/* 1 when the process has object loaded (named as patches name them: "" for the main
 * executable, else a DT_SONAME or a file name) and, with hex non-NULL, its build-id in
 * hex ("" when it has none); 0 when it has not. */
int ulp_objects_find(const UlpObjects *objs, const char *object, char hex[ULP_BUILD_ID_HEX_MAX]);

/* The cheap look at what a process has mapped, without opening any file: calls fn for
 * every executable mapping of a file (path absolute, start its address) in address
 * order, until fn returns non-zero (returned). -errno when the maps cannot be read. */
int ulp_exec_mappings(pid_t pid, int (*fn)(const char *path, uint64_t start, void *userdata),
                      void *userdata);

/* How many internal invariants of the library have failed in this process (each time an
 * operation returned -EUCLEAN for it), and with ret_first the first one, as
 * "file:line function(): assertion ... failed" (valid for the life of the process). A
 * non-zero count is a bug of ulp: a service logs it (docs/architecture.md). */
unsigned ulp_invariant_failures(const char **ret_first);

/* For __attribute__((cleanup)) in callers: free what *p points to, NULL included. */
static inline void ulp_patch_info_freep(UlpPatchInfo **p) { ulp_patch_info_free(*p); }
static inline void ulp_objects_freep(UlpObjects **p) { ulp_objects_free(*p); }
static inline void ulp_op_freep(UlpOp **p) { ulp_op_free(*p); }
