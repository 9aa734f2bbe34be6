/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Validation of a control block read from a target: every count, offset, address and
 * string bounded before use (control.h, docs/control-block.md). */
#include <stdio.h>
#include <string.h>

#include "common/errfmt.h"
#include "common/macro.h"
#include "patcher/control-internal.h"
#include "runtime/shadow-abi.h"
#include "patcher/x86_64/sigtrap.h"

/* A malformed block: the one failure of validation, with what is wrong in why. */
#define WHY(...) fail(why, why_len, -EBADMSG, __VA_ARGS__)

/* NUL-terminated inside its array, and no control character (a newline would forge a
 * line in a log, an escape sequence would talk to a terminal). */
static bool string_ok(const char *s, size_t size) {
        size_t n = strnlen(s, size);
        if (n == size)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
                        return false;
        return true;
}

static bool range_ok(uint64_t addr, uint64_t size) {
        return addr + size >= addr;
}

/* [addr, addr + len) lies inside the used part of one of the areas ulp made. */
static bool in_areas(const ControlImage *img, uint64_t addr, uint64_t len) {
        for (unsigned i = 0; i < img->hdr.n_areas; i++) {
                const ControlArea *a = &img->areas[i];
                if (addr >= a->addr && addr - a->addr <= a->used && len <= a->used - (addr - a->addr))
                        return true;
        }
        return false;
}

static bool in_patch(const ControlPatch *p, uint64_t addr) {
        return addr >= p->map_start && addr - p->map_start < p->map_size;
}

/* The shadow-variable runtime: none (all zero), or a mapping holding its entry points and
 * its counters (docs/shadow.md). */
static int validate_shadow(const ControlHeader *h, char *why, size_t why_len) {
        const uint64_t base = h->shadow_base, size = h->shadow_size;
        const uint64_t stats_size = sizeof(struct ulp_shadow_stats);
        bool any = base || size || h->shadow_stats;

        for (unsigned i = 0; i < CONTROL_SHADOW_ENTRIES; i++)
                any |= h->shadow_entry[i] != 0;
        if (!any)
                return 0;
        if (base == 0 || base % 4096 || size == 0 || size > (64u << 20) || !range_ok(base, size))
                return WHY("the shadow-variable runtime is not a sane mapping");
        for (unsigned i = 0; i < CONTROL_SHADOW_ENTRIES; i++)
                if (h->shadow_entry[i] < base || h->shadow_entry[i] - base >= size)
                        return WHY("shadow-variable entry %u is outside its runtime", i);
        if (h->shadow_stats < base || h->shadow_stats - base > size - stats_size || h->shadow_stats % 8)
                return WHY("the shadow-variable counters are outside their runtime");
        return 0;
}

/* A staged compaction (op-compact.c) lies in the free tail of funcs[], after the records
 * it replaces, and only between transitions. */
static int validate_stage(const ControlHeader *h, char *why, size_t why_len) {
        if (h->stage_state == CONTROL_STAGE_NONE) {
                if (h->stage_at || h->stage_patches || h->stage_funcs)
                        return WHY("a compaction's stage without its state");
                return 0;
        }
        if (h->stage_state != CONTROL_STAGED)
                return WHY("unknown stage state %u", h->stage_state);
        if (h->stage_patches > CONTROL_MAX_PATCHES || h->stage_funcs > CONTROL_MAX_FUNCS ||
            h->stage_at < h->stage_funcs || h->stage_at > CONTROL_MAX_FUNCS ||
            control_stage_records(h->stage_patches, h->stage_funcs) > CONTROL_MAX_FUNCS - h->stage_at)
                return WHY("a compaction's stage out of range (%u patches, %u functions at %u)", h->stage_patches,
                           h->stage_funcs, h->stage_at);
        if (h->transition_patch != -1)
                return WHY("a compaction staged during a transition");
        return 0;
}

/* A patch load in progress: its driver, and the memfd's name (ulp's) and fd. */
static int validate_load(const ControlHeader *h, char *why, size_t why_len) {
        if (h->load_state == CONTROL_LOAD_NONE)
                return 0;
        if (h->load_state != CONTROL_LOAD_CREATING && h->load_state != CONTROL_LOAD_OPEN)
                return WHY("unknown load state %u", h->load_state);
        if (h->load_pid <= 0 || h->load_fd < 0 || (h->load_state == CONTROL_LOAD_OPEN) != (h->load_ino != 0))
                return WHY("a patch load without its driver, fd or inode");
        if (h->load_addr % 4096 || h->load_size % 4096 || h->load_size == 0 || h->load_size > (1ULL << 32) ||
            !range_ok(h->load_addr, h->load_size))
                return WHY("a patch load's range is not a sane mapping");
        if (!string_ok(h->load_name, sizeof(h->load_name)) ||
            strncmp(h->load_name, "ulp-patch:", strlen("ulp-patch:")) != 0)
                return WHY("a patch load's memfd name is not ulp's");
        return 0;
}

int control__validate_header(const ControlHeader *h, uint64_t self, char *why, size_t why_len) {
        if (memcmp(h->magic, CONTROL_MAGIC, sizeof(h->magic)) != 0)
                return WHY("bad magic");
        if (h->version != CONTROL_VERSION)
                return WHY("version %u, this ulp knows version %u", h->version, CONTROL_VERSION);
        if (h->image_size != sizeof(ControlImage))
                return WHY("size %u, expected %zu", h->image_size, sizeof(ControlImage));
        if (h->self != self)
                return WHY("it says it lives at 0x%llx, it is mapped at 0x%llx", (unsigned long long)h->self,
                           (unsigned long long)self);
        if (h->n_patches > CONTROL_MAX_PATCHES || h->n_funcs > CONTROL_MAX_FUNCS || h->n_areas > CONTROL_MAX_AREAS)
                return WHY("counts out of range (%u patches, %u functions, %u areas)", h->n_patches, h->n_funcs,
                           h->n_areas);
        if (h->target_state != THREAD_UNDEFINED && h->target_state != THREAD_UNPATCHED &&
            h->target_state != THREAD_PATCHED)
                return WHY("unknown target state %d", h->target_state);
        if (h->untabled_state != THREAD_UNDEFINED && h->untabled_state != THREAD_UNPATCHED &&
            h->untabled_state != THREAD_PATCHED)
                return WHY("unknown untabled state %d", h->untabled_state);
        if (h->transition_patch < -1 || h->transition_patch >= (int32_t)h->n_patches)
                return WHY("transition patch %d out of range (%u patches)", h->transition_patch, h->n_patches);
        if (h->transition_patch >= 0 && h->target_state == THREAD_UNDEFINED)
                return WHY("a transition without a target state");
        if (h->driver_pid < 0 || h->owner_pid < 0 || h->writer_pid < 0 || h->writer_target < 0 ||
            h->callback_tid < 0)
                return WHY("negative process id");
        if (h->transition_flags & ~(uint32_t)(CT_FLAG_CANCEL | CT_FLAG_UNTABLED | CT_FLAG_INIT_WINDOW | CT_FLAG_END_WINDOW))
                return WHY("unknown transition flags 0x%x", h->transition_flags);
        if (h->transition_flags && h->transition_patch < 0)
                return WHY("transition flags without a transition");
        if ((h->transition_flags & CT_FLAG_UNTABLED) && h->untabled_state == THREAD_UNDEFINED)
                return WHY("untabled threads without a state");
        if ((h->transition_flags & CT_FLAG_INIT_WINDOW) && !h->guard_block)
                return WHY("an init window without its guard");
        if ((h->transition_flags & CT_FLAG_END_WINDOW) && (!h->guard_block || (h->transition_flags & CT_FLAG_INIT_WINDOW)))
                return WHY("a completion window without its guard, or with an init window");
        if ((h->callback_tid == 0) != (h->callback_frame == 0))
                return WHY("a running callback without its thread or frame");
        if (validate_shadow(h, why, why_len) < 0)
                return -EBADMSG;
        if (validate_load(h, why, why_len) < 0)
                return -EBADMSG;
        return validate_stage(h, why, why_len);
}

static int validate_areas(const ControlImage *img, char *why, size_t why_len) {
        for (unsigned i = 0; i < img->hdr.n_areas; i++) {
                const ControlArea *a = &img->areas[i];
                if (a->addr == 0 || a->addr % 4096 || a->size == 0 || a->size > CONTROL_AREA_SIZE ||
                    a->used > a->size || !range_ok(a->addr, a->size))
                        return WHY("area %u is not a sane mapping", i);
        }
        if (img->hdr.guard_block && !in_areas(img, img->hdr.guard_block, SIGTRAP_BLOCK_SIZE))
                return WHY("the SIGTRAP guard block 0x%llx is outside the areas",
                           (unsigned long long)img->hdr.guard_block);
        if (img->hdr.trap_addr && !in_areas(img, img->hdr.trap_addr, 1))
                return WHY("the trap address is outside ulp's areas");
        return 0;
}

static int validate_patch(const ControlImage *img, unsigned i, char *why, size_t why_len) {
        const ControlPatch *p = &img->patches[i];
        bool live = p->state == CP_PATCHED || p->state == CP_TRANSITION ||
                    img->hdr.transition_patch == (int32_t)i;

        if (p->state > CP_UNPATCHED)
                return WHY("patch %u has unknown state %u", i, p->state);
        /* The writers' order (transition.c) never leaves a patch in transition that the
         * header does not name; the header may name a patch not marked yet (init cut
         * short) or already in its final state (finish cut short). */
        if (p->state == CP_TRANSITION && img->hdr.transition_patch != (int32_t)i)
                return WHY("patch %u is in transition, the header names %d", i, img->hdr.transition_patch);
        if (p->state == CP_FREE && img->hdr.transition_patch == (int32_t)i)
                return WHY("the transition's patch %u is a free slot", i);
        if (p->flags & ~(uint32_t)(CP_FLAG_FORCED | CP_FLAG_REPLACE | CP_FLAG_CALLBACK))
                return WHY("patch %u has unknown flags 0x%x", i, p->flags);
        if (p->first_func > img->hdr.n_funcs || p->n_funcs > img->hdr.n_funcs - p->first_func)
                return WHY("patch %u: its function records %u..+%u are outside the %u records", i, p->first_func,
                           p->n_funcs, img->hdr.n_funcs);
        if (!string_ok(p->name, sizeof(p->name)) || !p->name[0])
                return WHY("patch %u: its name is not a terminated printable string", i);
        if (!string_ok(p->file, sizeof(p->file)))
                return WHY("patch %u: its file name is not a terminated printable string", i);
        for (unsigned k = 0; k < CONTROL_MAX_LATE; k++) {
                uint8_t st = (uint8_t)p->late[k][CONTROL_LATE_STATE];
                if (!string_ok(p->late[k], sizeof(p->late[k])))
                        return WHY("patch %u: late object %u is not a terminated printable string", i, k);
                /* On an unused entry the state means nothing: an older build frees an
                 * entry by its first byte only. */
                if (st > CONTROL_LATE_POSTCALL)
                        return WHY("patch %u: late object %u has state %u", i, k, st);
        }
        if (p->build_id_len > sizeof(p->build_id))
                return WHY("patch %u: build-id length %u", i, p->build_id_len);
        if (!range_ok(p->map_start, p->map_size) || p->map_size > (1ULL << 40))
                return WHY("patch %u: its mapping wraps around", i);
        if (live && p->map_size == 0)
                return WHY("patch %u is live without code", i);
        for (unsigned k = 0; live && k < CP_CB_MAX; k++)
                if (p->callbacks[k] && !in_patch(p, p->callbacks[k]))
                        return WHY("patch %u: callback %u is outside the patch's code", i, k);
        return 0;
}

static int validate_func(const ControlImage *img, unsigned i, char *why, size_t why_len) {
        const ControlFunc *f = &img->funcs[i];
        const ControlPatch *p;

        if (f->patch >= img->hdr.n_patches)
                return WHY("function record %u names patch %u of %u", i, f->patch, img->hdr.n_patches);
        p = &img->patches[f->patch];
        if (i < p->first_func || i - p->first_func >= p->n_funcs)
                return WHY("function record %u lies outside the records of its patch %u", i, f->patch);
        if (f->flags & ~(uint32_t)CF_FLAG_NOP)
                return WHY("function record %u has unknown flags 0x%x", i, f->flags);
        if (!string_ok(f->object, sizeof(f->object)) || !string_ok(f->symbol, sizeof(f->symbol)))
                return WHY("function record %u: object or symbol is not a terminated printable string", i);
        if ((unsigned)f->entry_off + f->displaced_len > sizeof(f->orig_bytes))
                return WHY("function record %u: entry offset %u and displaced length %u exceed %zu bytes", i,
                           f->entry_off, f->displaced_len, sizeof(f->orig_bytes));
        if (f->old_addr == 0 || !range_ok(f->old_addr, f->old_size) || !range_ok(f->new_addr, f->new_size) ||
            f->old_size > (1ULL << 32) || f->new_size > (1ULL << 32))
                return WHY("function record %u: address ranges wrap around or are absurd", i);
        if (f->stub_addr && !in_areas(img, f->stub_addr, 1))
                return WHY("function record %u: its stub is outside ulp's areas", i);
        if (f->far_off && !in_areas(img, control_func_entry_dest(f), CONTROL_FAR_JUMP_SIZE))
                return WHY("function record %u: its far jump is outside ulp's areas", i);
        if (f->copy_addr && !in_areas(img, f->copy_addr, 1))
                return WHY("function record %u: its relocated entry is outside ulp's areas", i);
        if ((p->state == CP_PATCHED || p->state == CP_TRANSITION) && !(f->flags & CF_FLAG_NOP) &&
            !in_patch(p, f->new_addr))
                return WHY("function record %u: its new function is outside its patch's code", i);
        return 0;
}

int control_validate(const ControlImage *img, uint64_t self, char *why, size_t why_len) {
        int r = control__validate_header(&img->hdr, self, why, why_len);
        if (r < 0)
                return r;
        r = validate_areas(img, why, why_len);
        for (unsigned i = 0; r >= 0 && i < img->hdr.n_patches; i++)
                r = validate_patch(img, i, why, why_len);
        for (unsigned i = 0; r >= 0 && i < img->hdr.n_funcs; i++)
                r = validate_func(img, i, why, why_len);
        return r;
}

int control_validate_table(const ControlImage *img, char *why, size_t why_len) {
        unsigned used = 0;
        for (unsigned i = 0; i < CONTROL_TABLE_SLOTS; i++) {
                /* An empty slot's state is never read; a thread entering the table at
                 * its own stop gets its state byte first (transition.c, enter_table()),
                 * so a driver killed there leaves an empty slot with one. */
                if (img->table_tp[i] == 0) {
                        if (img->table_state[i] != THREAD_UNPATCHED && img->table_state[i] != THREAD_PATCHED)
                                return WHY("thread table slot %u is empty but has state %u", i, img->table_state[i]);
                        continue;
                }
                if (img->table_state[i] != THREAD_UNPATCHED && img->table_state[i] != THREAD_PATCHED)
                        return WHY("thread table slot %u has unknown state %u", i, img->table_state[i]);
                used++;
        }
        /* Linear probing ends at an empty slot: a full table would never end a lookup. */
        if (used >= CONTROL_TABLE_SLOTS)
                return WHY("thread table full");
        return 0;
}

int control_validate_stragglers(const ControlStragglers *s, char *why, size_t why_len) {
        if (s->n > CONTROL_MAX_STRAGGLERS)
                return WHY("%u stragglers, at most %u", s->n, CONTROL_MAX_STRAGGLERS);
        for (unsigned i = 0; i < s->n; i++)
                if (s->v[i].tid <= 0 || !string_ok(s->v[i].comm, sizeof(s->v[i].comm)) ||
                    !string_ok(s->v[i].blocker, sizeof(s->v[i].blocker)))
                        return WHY("straggler %u is malformed", i);
        return 0;
}
