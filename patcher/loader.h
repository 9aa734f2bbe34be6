/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The patch loader: no dlopen in the target, no preloaded agent. The patch file is
 * copied into a memfd of the target named "ulp-patch:NAME" and its PT_LOAD segments
 * are mapped from it near the module it patches, as the dynamic linker would (so
 * /proc/PID/map_files gives the whole ELF back to the unwinder and to status, even
 * after a daemon restart). Then it is linked here: relative, absolute, GOT and PLT
 * relocations; symbols it defines resolve to itself, undefined ones against the
 * target's loaded objects in load order, an IFUNC to the implementation the target's
 * dynamic linker chose or its resolver returns when run in the target (ifunc.h). TLS
 * relocations and IFUNCs the patch defines are refused (docs/reach.md).
 * Constructors of the patch are not run.
 */

#include <stdint.h>

#include "elf/module.h"
#include "elf/patchmeta.h"
#include "elf/symtab.h"
#include "patcher/target.h"

#define PATCH_MAPPING_PREFIX "ulp-patch:"

typedef struct LoadedPatch {
        uint64_t start;          /* the mapping */
        uint64_t size;
        uint64_t bias;           /* runtime address = patch ELF vaddr + bias */
} LoadedPatch;

/* Checks, without touching the target, that the patch's relocations are all of kinds we
 * link and that every undefined symbol resolves. mods/symtabs: the target's modules and
 * their SymTabs (NULL entries are opened on demand by the caller). */
typedef struct SymResolver {
        const ModuleList *mods;
        SymTab **symtabs;        /* one per module, same index; opened lazily */
        /* The shadow-variable runtime's entry points (ULP_SHADOW_ENTRY_NAMES) that the
         * patch's ulp_shadow_* symbols bind to; NULL while the process has none: a dry
         * run then notes in wants_shadow that the patch needs it (docs/shadow.md). */
        const uint64_t *shadow;
        bool wants_shadow;
        /* Runs the IFUNC resolver at addr in the target, *ret what it returned (ifunc.h).
         * NULL in a dry run: an IFUNC that needs it counts as resolvable. */
        int (*run_resolver)(void *userdata, uint64_t addr, uint64_t *ret);
        void *userdata;
} SymResolver;

int resolver_symtab(SymResolver *res, size_t idx, SymTab **ret);
/* The runtime address of name as the dynamic linker would bind it; -ENOENT not found,
 * -EAGAIN an IFUNC whose resolver must run (dry run), other errors with err set. */
int resolver_lookup_exported(Target *t, SymResolver *res, const char *name, uint64_t *ret_addr,
                             char *err, size_t errlen);

/* Maps the patch (file at patch_fd, already validated) into the target within +-2 GiB of
 * [near_lo, near_hi), on the borrowed stopped thread th. c, the target's control block
 * (NULL: none), names the memfd in the target while it is open (loader-fd.c). */
struct Control;
int loader_map(Target *t, Thread *th, struct Control *c, int patch_fd, const char *name, uint64_t near_lo,
               uint64_t near_hi, LoadedPatch *ret, char *err, size_t errlen);

/* A load until it is recorded (loader-fd.c): loader_map() names in the header its memfd
 * and reservation before memfd_create (record), then the fd (opened); on failure it
 * clears the record itself, on success the caller clears it (loader_fd_clear) in the
 * local copy, and its header write that publishes the patch's record publishes that. */
int loader_fd_record(Target *t, struct Control *c, const char *name, uint64_t addr, uint64_t size);
int loader_fd_opened(Target *t, struct Control *c, int fd);
/* The range the load reserves moved to addr (the first was taken meanwhile: EEXIST). */
int loader_fd_moved(Target *t, struct Control *c, uint64_t addr);
void loader_fd_clear(struct Control *c);
/* Whether the block names a load whose driver is gone (or this very process: operations
 * on a process do not overlap). */
bool loader_fd_left(const struct Control *c);
/* Closes, on the borrowed thread th, the memfd a load left open (the fd the header names
 * if it still is that memfd; or, killed before it knew the fd, the fds of its name that
 * nothing maps), unmaps its reservation if no record claims it and it holds only the
 * load's mappings, and clears the record: how many it closed or unmapped, or -errno. */
int loader_fd_reclaim(Target *t, Thread *th, struct Control *c);

/* Applies the patch's dynamic relocations into the mapping and fills its ULP_REF slots.
 * With lp == NULL only checks (dry run). */
int loader_link(Target *t, int patch_fd, const PatchMeta *meta, SymResolver *res,
                const LoadedPatch *lp, char *err, size_t errlen);

/* Unmaps a patch mapping. */
int loader_unmap(Target *t, Thread *th, uint64_t start, uint64_t size);
