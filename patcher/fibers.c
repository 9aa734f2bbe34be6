/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stackful user-level threads (docs/symbols.md): fibers made with makecontext() and
 * switched with swapcontext(), coroutine and fiber libraries, a Go runtime. A thread
 * runs one stack at a time; the others are parked in memory where no stack check
 * looks, so a per-thread (or global) check cannot vouch that none of them is inside a
 * function being replaced. Such a process is refused before anything is written,
 * unless the operator forces it.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/op.h"

/* Imports that make stacks of their own and switch between them. getcontext() and
 * setcontext() alone do not (they save and restore one stack's state). */
static const char *const fiber_imports[] = { "makecontext", "swapcontext", NULL };

/* Libraries of stackful coroutines or fibers, by the start of their soname. */
static const char *const fiber_libraries[] = {
        "libboost_context", "libboost_coroutine", "libboost_fiber", "libdill", "libmill",
        "libpth.", "libaco", "libcoro.", "libmarl", "libfiber.", "libtask.",
};

/* Why module m makes stacks of its own, in a few words (into buf), or false. */
static bool module_fibers(UlpOp *op, size_t i, char *buf, size_t len) {
        const Module *m = &op->mods.v[i];
        const char *base = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
        const char *name = m->soname ? m->soname : base;
        const char *imp;
        SymTab *st;

        for (size_t k = 0; k < ELEMENTSOF(fiber_libraries); k++)
                if (strncmp(name, fiber_libraries[k], strlen(fiber_libraries[k])) == 0) {
                        snprintf(buf, len, "%s is a fiber library", name);
                        return true;
                }
        if (resolver_symtab(&op->res, i, &st) < 0)
                return false;
        imp = symtab_find_import(st, fiber_imports);
        if (imp) {
                snprintf(buf, len, "%s imports %s", m->path, imp);
                return true;
        }
        /* Go: goroutines run on stacks of the runtime's own. A stripped Go program keeps
         * .go.buildinfo; the name is looked for in the file's own tables only, without
         * reading every symbol of every module (docs/symbols.md). */
        if (symtab_has_section(st, ".go.buildinfo") || symtab_file_defines(st, "runtime.goexit")) {
                snprintf(buf, len, "%s is a Go program", m->path);
                return true;
        }
        return false;
}

/* A revert switches threads between the same two versions of code as an apply: a parked
 * fiber inside the patch's code is as unseen either way, so both are refused alike. */
int op_check_fibers(UlpOp *op) {
        const char *verb = op->kind == OP_REVERT ? "reverts" : "patches";
        char why[300];

        for (size_t i = 0; i < op->mods.n; i++) {
                if (op->mods.v[i].is_patch || !module_fibers(op, i, why, sizeof(why)))
                        continue;
                if (op->o.force) {
                        op_warn(op, "process %d runs stackful user-level threads (%s): the stacks of "
                                "parked fibers are not checked (--force)", op->t->pid, why);
                        return 0;
                }
                return op_fail(op, -ENOTSUP, "process %d runs stackful user-level threads (%s): the "
                               "stacks of parked fibers are invisible to the stack check; --force %s "
                               "without checking them (docs/symbols.md)", op->t->pid, why, verb);
        }
        return 0;
}
