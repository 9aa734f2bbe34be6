/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One unwind of a stopped thread and its reliability verdict (docs/architecture.md,
 * "unreliable stack" and hazard 7): libdwfl walks the frames, and every frame is
 * checked here against the same CFI libdwfl used to unwind it, because libdwfl
 * silently falls back to guessing (frame pointers, see x86_64_unwind) and ends
 * "normally" in cases that are not the end of the stack (a return address that reads
 * as zero or cannot be read at all).
 *
 * A stack is reliable iff:
 *   - every frame's lookup PC (the PC itself for the initial frame and for the frame
 *     interrupted by a signal, PC - 1 for return addresses) is inside a reported module
 *     and covered by an FDE of its .eh_frame or .debug_frame: then libdwfl unwound the
 *     next frame by CFI, not by a guess;
 *   - no frame is a signal frame: code interrupted asynchronously may sit where its CFI
 *     is not exact (only -fasynchronous-unwind-tables promises that); the kernel's
 *     reliable unwinder refuses interrupt frames for the same reason;
 *   - the last frame's CFI explicitly marks its return address undefined (_start,
 *     clone/clone3 child), and libdwfl ended the walk there (returned 0);
 *   - no memory read failed, and there are at most UNWIND_MAX_FRAMES frames.
 * The reason of the first violation is kept.
 */

#include <elfutils/libdw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/errno-clause.h"
#include "common/macro.h"
#include "patcher/x86_64/abi.h"
#include "unwind/unwind-internal.h"

/* Records the first reason the stack is not reliable; later ones are ignored. */
__attribute__((format(printf, 2, 3)))
static void walk_unreliable(UnwindWalk *w, const char *fmt, ...) {
        va_list ap;

        if (w->res->reason[0])
                return;
        va_start(ap, fmt);
        vsnprintf(w->res->reason, sizeof(w->res->reason), fmt, ap);
        va_end(ap);
        if (!w->res->reason[0])
                strcpy(w->res->reason, "unreliable");
}

static const char *module_basename(Dwfl_Module *mod) {
        const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        const char *slash;

        if (!name)
                return "?";
        slash = strrchr(name, '/');
        return slash ? slash + 1 : name;
}

/* The CFI entry covering lookup_pc in mod, searched in the order libdwfl searches when it
 * unwinds (.eh_frame, then .debug_frame), so that what we check is what it used. Returns
 * a malloc'd frame or NULL. */
static Dwarf_Frame *module_addrframe(Dwfl_Module *mod, Dwarf_Addr lookup_pc) {
        Dwarf_Frame *frame;
        Dwarf_Addr bias;
        Dwarf_CFI *cfi;

        cfi = dwfl_module_eh_cfi(mod, &bias);
        if (cfi && dwarf_cfi_addrframe(cfi, lookup_pc - bias, &frame) == 0)
                return frame;
        cfi = dwfl_module_dwarf_cfi(mod, &bias);
        if (cfi && dwarf_cfi_addrframe(cfi, lookup_pc - bias, &frame) == 0)
                return frame;
        return NULL;
}

/* Checks the frame just appended to the result (PC pc; exact for the initial frame and
 * the one a signal interrupted) and records what its CFI says, for the check of the next
 * frame and for the end of the walk. */
static void walk_check_frame(Unwinder *u, Dwarf_Addr pc, bool exact) {
        UnwindWalk *w = &u->walk;
        Dwarf_Addr lookup = exact ? pc : pc - 1;
        size_t idx = w->res->n - 1;
        Dwfl_Module *mod;
        Dwarf_Frame *frame;
        Dwarf_Op ops_mem[3], *ops = NULL;
        size_t nops = 0;
        bool signal = false;

        w->last_ra_undefined = false;
        w->next_is_signal = false;

        mod = dwfl_addrmodule(u->dwfl, lookup);
        if (!mod) {
                walk_unreliable(w, "frame #%zu pc 0x%" PRIx64 " is outside any module",
                                idx, (uint64_t) pc);
                return;
        }
        frame = module_addrframe(mod, lookup);
        if (!frame) {
                walk_unreliable(w, "frame #%zu pc 0x%" PRIx64 " in %s has no CFI "
                                "(its caller would be a frame-pointer guess)",
                                idx, (uint64_t) pc, module_basename(mod));
                return;
        }

        if (dwarf_frame_info(frame, NULL, NULL, &signal) >= 0 && signal) {
                /* The signal trampoline (__restore_rt): its "caller" is the interrupted
                 * state, at an exact PC. */
                w->next_is_signal = true;
                walk_unreliable(w, "frame #%zu pc 0x%" PRIx64 " in %s is a signal frame "
                                "(interrupted code below)",
                                idx, (uint64_t) pc, module_basename(mod));
        }
        if (dwarf_frame_register(frame, ARCH_DWARF_RA, ops_mem, &ops, &nops) == 0 &&
            nops == 0 && ops == ops_mem)
                w->last_ra_undefined = true;
        free(frame);
}

/* dwfl_getthread_frames callback: called for each frame, innermost first. */
static int walk_frame_cb(Dwfl_Frame *state, void *arg) {
        Unwinder *u = arg;
        UnwindWalk *w = &u->walk;
        Dwarf_Addr pc;
        Dwarf_Word sp;
        bool exact;

        if (w->res->n >= UNWIND_MAX_FRAMES) {
                w->capped = true;
                return DWARF_CB_ABORT;
        }
        /* No isactivation: we know it (initial frame, or after a signal frame), and asking
         * would make libdwfl unwind this frame before we looked at it. */
        if (!dwfl_frame_pc(state, &pc, NULL)) {
                walk_unreliable(w, "no pc for frame #%zu: %s", w->res->n, dwfl_errmsg(-1));
                return DWARF_CB_ABORT;
        }
        exact = w->res->n == 0 || w->next_is_signal;
        if (dwfl_frame_reg(state, ARCH_DWARF_SP, &sp) != 0)
                sp = 0;
        w->res->sps[w->res->n] = sp;
        w->res->pcs[w->res->n++] = pc;
        walk_check_frame(u, pc, exact);
        return DWARF_CB_OK;
}

/* The verdict on how the walk ended, once every frame was checked. */
static void walk_check_end(UnwindWalk *w, int r) {
        uint64_t last = w->res->pcs[w->res->n - 1];

        if (w->capped)
                walk_unreliable(w, "more than %d frames", UNWIND_MAX_FRAMES);
        else if (w->reads > UNWIND_READ_BUDGET)
                walk_unreliable(w, "unwind stopped after 0x%" PRIx64 ": its CFI asked for more than %u "
                                "memory reads", last, UNWIND_READ_BUDGET);
        else if (w->read_error < 0)
                /* libdwfl carries on without a register whose saved value it could not
                 * read, and ends "normally" when that is the return address. */
                walk_unreliable(w, "unwind error after 0x%" PRIx64 ": cannot read 0x%"
                                PRIx64 ": %s", last, w->read_error_addr,
                                process_errno_clause(w->read_error));
        else if (r < 0)
                walk_unreliable(w, "unwind error after 0x%" PRIx64 ": %s", last,
                                dwfl_errmsg(-1));
        else if (r > 0)
                walk_unreliable(w, "unwind aborted after 0x%" PRIx64, last);
        else if (!w->last_ra_undefined)
                /* libdwfl also ends "normally" when the return address reads as 0; only
                 * CFI saying "no caller" is the end of a stack. */
                walk_unreliable(w, "unwind stopped at 0x%" PRIx64 " whose CFI does not "
                                "mark the outermost frame", last);
}

int unwinder_unwind(Unwinder *u, pid_t tid, const struct user_regs_struct *regs,
                    UnwindResult *ret) {
        UnwindWalk *w;
        int r;

        if (!u || tid <= 0 || !regs || !ret)
                return -EINVAL;

        w = &u->walk;
        *w = (UnwindWalk) { .tid = tid, .regs = regs, .res = ret };
        ret->n = 0;
        ret->reliable = false;
        ret->reason[0] = '\0';
        unwinder_cache_reset(u);
        (void) dwfl_errno(); /* start without a stale error */

        r = dwfl_getthread_frames(u->dwfl, tid, walk_frame_cb, u);
        if (ret->n == 0) {
                /* Not even the initial frame: nothing could be unwound at all. */
                *w = (UnwindWalk) {};
                (void) dwfl_errno();
                return -EIO;
        }
        walk_check_end(w, r);
        ret->reliable = ret->reason[0] == '\0';

        *w = (UnwindWalk) {};
        (void) dwfl_errno();
        return 0;
}
