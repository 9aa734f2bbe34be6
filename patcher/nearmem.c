/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/mman.h>

#include "common/invariant.h"
#include "common/macro.h"
#include "patcher/nearmem.h"
#include "patcher/procmem.h"
#include "patcher/rsys.h"
#include "patcher/x86_64/relocate.h"

#define PAGE 4096ULL
#define USER_TOP 0x7ffffffff000ULL
#define USER_BOTTOM 0x10000ULL

bool nearmem_reaches(uint64_t a, uint64_t alen, uint64_t lo, uint64_t hi) {
        return a + alen <= lo + NEAR_REACH && a + NEAR_REACH >= hi;
}

/* Tries the part of gap [gs, ge) closest to [lo, hi); one guard page on each side. */
static bool try_gap(uint64_t gs, uint64_t ge, uint64_t lo, uint64_t hi, uint64_t len,
                    uint64_t *best, uint64_t *best_dist) {
        uint64_t cand, dist;

        gs += PAGE;
        if (ge < PAGE || ge - PAGE < gs || ge - PAGE - gs < len)
                return false;
        ge -= PAGE;
        if (gs >= hi)
                cand = gs;                       /* above: as low as possible */
        else if (ge <= lo)
                cand = ALIGN_DOWN(ge - len, PAGE); /* below: as high as possible */
        else
                return false;                    /* a gap inside the range itself */
        if (!nearmem_reaches(cand, len, lo, hi))
                return false;
        dist = cand >= hi ? cand - hi : lo - (cand + len);
        if (*best && dist >= *best_dist)
                return false;
        *best = cand;
        *best_dist = dist;
        return true;
}

int nearmem_find(const MapList *maps, uint64_t lo, uint64_t hi, uint64_t len, uint64_t *ret) {
        uint64_t best = 0, best_dist = 0, prev_end = USER_BOTTOM;

        len = ALIGN_UP(len, PAGE);
        for (size_t i = 0; i <= maps->n; i++) {
                uint64_t start = i < maps->n ? maps->v[i].start : USER_TOP;
                if (start > prev_end)
                        try_gap(prev_end, start, lo, hi, len, &best, &best_dist);
                if (i < maps->n)
                        prev_end = MAX(prev_end, maps->v[i].end);
        }
        if (!best)
                return -ENOSPC;
        *ret = best;
        return 0;
}

/* A free range near [lo, hi) in the maps last read, mapped for an area. Tried twice: a
 * range the process mapped since that read is refused (EEXIST), and the maps read again. */
static int area_map(Target *t, Thread *th, uint64_t lo, uint64_t hi, uint64_t *ret) {
        int r = -EEXIST;

        for (int try = 0; try < 2 && r == -EEXIST; try++) {
                const MapList *maps;
                uint64_t addr = 0;
                r = procmaps_get(t, &maps);
                if (r >= 0)
                        r = nearmem_find(maps, lo, hi, CONTROL_AREA_SIZE, &addr);
                if (r >= 0)
                        r = rsys_mmap(t, th, addr, CONTROL_AREA_SIZE, PROT_READ | PROT_EXEC,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0, ret);
        }
        return r;
}

static int area_new(Target *t, Thread *th, Control *c, uint64_t lo, uint64_t hi) {
        uint64_t addr = 0;
        ControlArea *a;
        int r;

        if (c->img->hdr.n_areas >= CONTROL_MAX_AREAS)
                return -ENOSPC;
        r = area_map(t, th, lo, hi, &addr);
        if (r < 0)
                return r;
        a = &c->img->areas[c->img->hdr.n_areas++];
        *a = (ControlArea) { .addr = addr, .size = CONTROL_AREA_SIZE };
        if (!c->img->hdr.trap_addr) {
                /* 16 int3 bytes, then the restorer calls on a borrowed thread return
                 * through (NEARMEM_CALL_RETURN_OFF, target_call()). */
                uint8_t code[NEARMEM_CALL_RETURN_OFF + 16];
                memset(code, INSN_INT3, sizeof(code));
                (void)target_call_return_code(code + NEARMEM_CALL_RETURN_OFF);
                r = target_write(t, addr, code, sizeof(code));
                if (r < 0)
                        return r;
                c->img->hdr.trap_addr = addr;
                a->used = sizeof(code);
        }
        return (int)(c->img->hdr.n_areas - 1);
}

/* The first area with len bytes free past used[i] (its bytes in use) near [lo, hi),
 * or -1. len is aligned already. */
static int area_with_room(const Control *c, const uint64_t *used, uint64_t lo, uint64_t hi, size_t len) {
        for (unsigned i = 0; i < c->img->hdr.n_areas && i < CONTROL_MAX_AREAS; i++) {
                const ControlArea *a = &c->img->areas[i];
                if (used[i] <= a->size && a->size - used[i] >= len && nearmem_reaches(a->addr, a->size, lo, hi))
                        return (int)i;
        }
        return -1;
}

static void areas_used(const Control *c, uint64_t used[static CONTROL_MAX_AREAS]) {
        for (unsigned i = 0; i < c->img->hdr.n_areas && i < CONTROL_MAX_AREAS; i++)
                used[i] = c->img->areas[i].used;
}

bool area_fits_in_one(const Control *c, const AreaWant *v, size_t n) {
        for (unsigned i = 0; i < c->img->hdr.n_areas && i < CONTROL_MAX_AREAS; i++) {
                const ControlArea *a = &c->img->areas[i];
                uint64_t sum = 0;
                bool ok = a->used <= a->size;
                for (size_t k = 0; k < n && ok; k++) {
                        ok = nearmem_reaches(a->addr, a->size, v[k].lo, v[k].hi);
                        sum += ALIGN_UP(v[k].len, 16);
                }
                if (ok && a->size - a->used >= sum)
                        return true;
        }
        return false;
}

bool area_fits(const Control *c, const AreaWant *v, size_t n) {
        uint64_t used[CONTROL_MAX_AREAS];

        areas_used(c, used);
        for (size_t k = 0; k < n; k++) {
                size_t len = ALIGN_UP(v[k].len, 16);
                int i = area_with_room(c, used, v[k].lo, v[k].hi, len);
                if (i < 0)
                        return false;
                used[i] += len;
        }
        return true;
}

int area_alloc(Target *t, Thread *th, Control *c, uint64_t lo, uint64_t hi, size_t len,
               uint64_t *ret) {
        uint64_t used[CONTROL_MAX_AREAS];
        int idx, r;

        len = ALIGN_UP(len, 16);
        areas_used(c, used);
        idx = area_with_room(c, used, lo, hi, len);
        if (idx < 0) {
                /* a caller without a thread made sure of room (area_fits()) */
                ASSERT_RETURN(th, -EUCLEAN);
                idx = area_new(t, th, c, lo, hi);
                if (idx < 0)
                        return idx;
        }
        *ret = c->img->areas[idx].addr + c->img->areas[idx].used;
        c->img->areas[idx].used += len;
        r = control_write_areas(t, c);
        return r < 0 ? r : 0;
}
