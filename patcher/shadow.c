/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shadow-variable runtime in a target (docs/shadow.md). The patcher carries the
 * runtime it was built with (runtime/meson.build embeds it) and maps it like a patch,
 * from a memfd named "ulp-patch:ulp-shadow-runtime", so that the unwinder reads its
 * unwind tables through /proc/PID/map_files as for any patch. Once mapped it stays: the
 * header records its entry points, which every later patch binds to, whichever ulp
 * applies it.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "elf/maps.h"
#include "elf/symtab.h"
#include "patcher/shadow.h"
#include "patcher/x86_64/regs.h"
#include "runtime/shadow-abi.h"

extern const unsigned char shadow_runtime_image[];
extern const size_t shadow_runtime_image_size;

_Static_assert(ULP_SHADOW_N_ENTRIES == CONTROL_SHADOW_ENTRIES, "the header's shadow entries");

static int image_fd(void) {
        int fd = memfd_create(SHADOW_RUNTIME_NAME, MFD_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (write(fd, shadow_runtime_image, shadow_runtime_image_size) != (ssize_t)shadow_runtime_image_size) {
                close(fd);
                return -EIO;
        }
        return fd;
}

/* The runtime's exported addresses, as the header records them. */
static int runtime_symbols(int fd, const LoadedPatch *lp, ControlHeader *h) {
        static const char *const names[] = { ULP_SHADOW_ENTRY_NAMES };
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol sym;
        int r = symtab_open_fd(fd, &st);

        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                if (symtab_lookup(st, names[i], 0, &sym) < 0)
                        return -ENOENT;
                h->shadow_entry[i] = sym.value + lp->bias;
        }
        if (symtab_lookup(st, ULP_SHADOW_STATS_SYMBOL, 0, &sym) < 0)
                return -ENOENT;
        h->shadow_stats = sym.value + lp->bias;
        h->shadow_base = lp->start;
        h->shadow_size = lp->size;
        return 0;
}

static bool is_runtime(const MapEntry *e) {
        return e->path && strcmp(e->path, "/memfd:" PATCH_MAPPING_PREFIX SHADOW_RUNTIME_NAME) == 0;
}

/* Whether a patch record claims [lo, hi): a patch named like the runtime maps a memfd
 * of the same name. */
static bool claimed(const ControlImage *img, uint64_t lo, uint64_t hi) {
        for (unsigned i = 0; i < img->hdr.n_patches; i++) {
                const ControlPatch *p = &img->patches[i];
                if (p->map_size && p->map_start < hi && lo < p->map_start + p->map_size)
                        return true;
        }
        return false;
}

/* With no runtime in the header, any mapping of one that no patch record claims was left
 * by a driver killed between its mapping and the header write: no patch binds to it (the
 * header is written before a patch is linked), no thread runs it. Unmapped, so that the
 * process keeps one runtime. */
static int unmap_left(Target *t, Thread *th, const ControlImage *img, char *err, size_t errlen) {
        MapList l = {};
        int r = maps_read(t->pid, &l);

        if (r < 0)
                return fail(err, errlen, r, "cannot read the memory map of process %d", t->pid);
        for (size_t i = 0; i < l.n && r >= 0; i++)
                if (is_runtime(&l.v[i]) && !claimed(img, l.v[i].start, l.v[i].end))
                        r = loader_unmap(t, th, l.v[i].start, l.v[i].end - l.v[i].start);
        maplist_done(&l);
        return r < 0 ? fail(err, errlen, r, "cannot unmap a shadow-variable runtime left by a killed driver: %s",
                            process_errno_clause(r)) : 0;
}

static int map_runtime(Target *t, Thread *th, Control *c, SymResolver *res, uint64_t near_lo, uint64_t near_hi,
                       char *err, size_t errlen) {
        _cleanup_close_ int fd = image_fd();
        const PatchMeta none = {};
        ControlHeader *h = &c->img->hdr;
        LoadedPatch lp;
        int r;

        if (fd < 0)
                return fail(err, errlen, fd, "cannot copy the shadow-variable runtime: %s", errno_clause(fd));
        r = unmap_left(t, th, c->img, err, errlen);
        if (r < 0)
                return r;
        r = loader_map(t, th, c, fd, SHADOW_RUNTIME_NAME, near_lo, near_hi, &lp, err, errlen);
        if (r < 0)
                return r;
        r = loader_link(t, fd, &none, res, &lp, err, errlen);
        if (r >= 0) {
                r = runtime_symbols(fd, &lp, h);
                if (r < 0)
                        fail(err, errlen, r, "the shadow-variable runtime lacks its symbols");
        }
        /* The mapping first, then the header naming it: a driver killed in between leaves
         * a few unreferenced pages, never a header naming nothing. */
        loader_fd_clear(c);   /* the load's record goes with the header naming it */
        if (r >= 0) {
                r = control_write_header(t, c);
                if (r < 0)
                        fail(err, errlen, r, "cannot record the shadow-variable runtime: %s", process_errno_clause(r));
        }
        if (r < 0) {
                memset(h->shadow_entry, 0, sizeof(h->shadow_entry));
                h->shadow_base = h->shadow_size = h->shadow_stats = 0;
                if (loader_unmap(t, th, lp.start, lp.size) >= 0)
                        (void)control_write_header(t, c);
        }
        return r;
}

/* The runtime the header names is mapped there, from ulp's memfd: the header is the
 * target's memory, and patches are about to call into what it names. */
static int check_mapped(Target *t, const ControlHeader *h, char *err, size_t errlen) {
        MapList l = {};
        bool found = false;
        int r = maps_read(t->pid, &l);

        if (r < 0)
                return fail(err, errlen, r, "cannot read the memory map of process %d", t->pid);
        for (size_t i = 0; i < l.n && !found; i++)
                found = is_runtime(&l.v[i]) && l.v[i].start == h->shadow_base;
        maplist_done(&l);
        if (!found)
                return fail(err, errlen, -EBADMSG, "the shadow-variable runtime the control block of process %d "
                            "names is not mapped there", t->pid);
        return 0;
}

int shadow_ensure(Target *t, Thread *th, Control *c, SymResolver *res, uint64_t near_lo, uint64_t near_hi,
                  char *err, size_t errlen) {
        if (c->img->hdr.shadow_base) {
                int r = check_mapped(t, &c->img->hdr, err, errlen);
                if (r < 0)
                        return r;
        } else {
                int r = map_runtime(t, th, c, res, near_lo, near_hi, err, errlen);
                if (r < 0)
                        return r;
        }
        res->shadow = c->img->hdr.shadow_entry;
        return 0;
}

bool shadow_has_thread(const ControlImage *img, const Thread *th) {
        uint64_t pc = regs_pc(&th->regs);
        return img->hdr.shadow_base && pc >= img->hdr.shadow_base && pc - img->hdr.shadow_base < img->hdr.shadow_size;
}

int shadow_check_stats(const struct ulp_shadow_stats *s, ShadowStats *ret) {
        /* Counts of a runtime that can map at most the address space: a variable takes at
         * least 16 bytes of data. */
        if (s->magic != ULP_SHADOW_STATS_MAGIC || s->abi != ULP_SHADOW_ABI || s->mapped > (1ULL << 47) ||
            s->bytes > s->mapped || s->variables > s->mapped / 16)
                return -EBADMSG;
        *ret = (ShadowStats) { s->variables, s->bytes, s->mapped };
        return 0;
}

int shadow_read_stats(Target *t, const ControlImage *img, ShadowStats *ret) {
        struct ulp_shadow_stats s;
        int r;

        if (!img->hdr.shadow_base)
                return -ENOENT;
        r = target_read(t, img->hdr.shadow_stats, &s, sizeof(s));
        if (r < 0)
                return r;
        return shadow_check_stats(&s, ret);
}
