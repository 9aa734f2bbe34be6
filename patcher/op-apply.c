/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <elf.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/errno-clause.h"
#include "common/macro.h"
#include "elf/demangle.h"
#include "elf/maps.h"
#include "elf/patchfile.h"
#include "patcher/entry-check.h"
#include "patcher/patchcache.h"
#include "patcher/nearmem.h"
#include "patcher/op.h"
#include "patcher/procmem.h"
#include "patcher/shadow.h"
#include "patcher/x86_64/insn.h"
#include "patcher/x86_64/relocate.h"
#include "patcher/x86_64/sigtrap.h"
#include "patcher/x86_64/stub.h"

#define SMALL_FUNCTION 32


static void warn_clone(const Symbol *sym, void *userdata) {
        UlpOp *op = userdata;
        op_warn(op, "%s is a compiler clone of the patched function: its callers are not patched", sym->name);
}

static int check_build_id(UlpOp *op, const PatchMeta *meta, const char *object, const Module *m) {
        const char *want = patchmeta_build_id_for(meta, object);
        char have[2 * BUILD_ID_MAX + 1];

        if (!want)
                return 0;
        build_id_to_hex(m->build_id, m->build_id_len, have);
        if (strcmp(want, have) != 0)
                return op_fail(op, -EINVAL, "build-id mismatch for %s: the patch is for %s, the process has %s",
                               object[0] ? object : "the main executable", want, m->build_id_len ? have : "none");
        return 0;
}

/* The function's bytes and the pad_avail after it (fewer when they cannot be read: the
 * end of its mapping). The caller frees *ret. */
static int read_function(UlpOp *op, Resolved *rs, uint8_t **ret) {
        uint8_t *code = malloc(rs->old_size + rs->pad_avail);
        int r;

        if (!code)
                return -ENOMEM;
        r = target_read(op->t, rs->old_addr, code, rs->old_size + rs->pad_avail);
        if (r < 0 && rs->pad_avail) {
                rs->pad_avail = 0;
                r = target_read(op->t, rs->old_addr, code, rs->old_size);
        }
        if (r < 0) {
                free(code);
                return r;
        }
        *ret = code;
        return 0;
}

/* The bytes of a function to replace are code: a sized symbol of another kind (a label
 * in .data of an assembler file, with no type) would have the entry jump written into
 * the process's data. */
static int check_in_code(UlpOp *op, const char *name, uint64_t addr, uint64_t size) {
        const MapList *maps;
        int r = procmaps_get(op->t, &maps);

        if (r < 0)
                return op_fail(op, r, "cannot read the memory map of process %d: %s", op->t->pid, process_errno_clause(r));
        const MapEntry *e = maps_find(maps, addr);
        if (!e)
                return op_fail(op, -ENOEXEC, "cannot redirect %s: 0x%llx is not mapped in process %d; nothing written",
                               name, (unsigned long long)addr, op->t->pid);
        if (!(e->prot & PROT_EXEC) || size > e->end - addr)
                return op_fail(op, -ENOEXEC, "cannot redirect %s: its %llu bytes at 0x%llx are not in executable "
                               "memory of process %d (not code); nothing written", name, (unsigned long long)size,
                               (unsigned long long)addr, op->t->pid);
        return 0;
}

/* Whether the entry jump of name (at old_addr, over [lo, hi)) would overlap that of a
 * function a patch in the process replaces (check_duplicates()). */
static int check_patched_overlap(UlpOp *op, const char *name, uint64_t old_addr, uint64_t lo, uint64_t hi) {
        const ControlImage *img = op->c.img;

        for (unsigned k = 0; img && k < img->hdr.n_funcs; k++) {
                const ControlFunc *f = &img->funcs[k];
                uint64_t lo2 = f->old_addr + f->entry_off, hi2 = lo2 + f->displaced_len;
                /* a reverted patch's entries hold what they held before it */
                if (f->patch < img->hdr.n_patches && img->patches[f->patch].state == CP_UNPATCHED)
                        continue;
                if (f->old_addr != old_addr && lo < hi2 && lo2 < hi)
                        return op_fail(op, -EINVAL, "the entry jump of %s would overlap that of %.96s, which patch "
                                       "%.64s replaces (bytes 0x%llx-0x%llx and 0x%llx-0x%llx); nothing written", name,
                                       f->symbol, f->patch < img->hdr.n_patches ? img->patches[f->patch].name : "?",
                                       (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)lo2,
                                       (unsigned long long)hi2);
        }
        return 0;
}

/* Whether the entry of sym can take the jump (patcher/entry-check.h, the rule ulp-build
 * shares). A function shorter than the jump may use the padding after it up to the next
 * symbol (docs/reach.md). */
static int check_entry(UlpOp *op, SymTab *st, const char *name, const Symbol *sym, Resolved *ret) {
        _cleanup_free_ uint8_t *code = NULL;
        char msg[320] = "";
        int r;

        r = read_function(op, ret, &code);
        if (r < 0)
                return op_fail(op, r, "cannot redirect %s: %s", name, process_errno_clause(r));
        r = entry_check(st, name, sym, code, ret->pad_avail, ret->old_addr, &ret->rel, msg, sizeof(msg));
        if (r < 0)
                return op_fail(op, r, "%s", msg);
        if (ret->rel.padding)
                op_warn(op, "%s is %llu bytes: its entry jump also covers %zu byte(s) of the padding after it",
                        name, (unsigned long long)sym->size, ret->rel.padding);
        return 0;
}

int op_resolve_func(UlpOp *op, const PatchMeta *meta, const PatchFunc *pf, Resolved *ret) {
        const char *obj = pf->object[0] ? pf->object : "the main executable";
        SymTab *st;
        Symbol sym;
        int r;

        ret->mod = modules_find_object(&op->mods, pf->object);
        if (!ret->mod)
                return op_fail(op, -ENOENT, "object %s is not loaded in process %d", obj, op->t->pid);
        r = check_build_id(op, meta, pf->object, ret->mod);
        if (r < 0)
                return r;
        r = resolver_symtab(&op->res, (size_t)(ret->mod - op->mods.v), &st);
        if (r < 0)
                return op_fail(op, r, "cannot read the symbols of %s: %s", obj, errno_clause(r));
        r = symtab_lookup(st, pf->symbol, pf->pos, &sym);
        if (r == -ENOTUNIQ)
                return op_fail(op, r, "several local functions are called %s in %s: use ULP_FUNC_POS%s", pf->symbol, obj,
                               demangle_looks_demangled(pf->symbol) ? " or the mangled name" : "");
        if (r == -ENOTSUP)
                return op_fail(op, r, "cannot demangle the C++ names of %s (libstdc++.so.6 is not available): "
                               "name %s by its mangled symbol", obj, pf->symbol);
        if (r < 0 || (sym.type != STT_FUNC && sym.type != STT_NOTYPE))
                return op_fail(op, -ENOENT, "function %s not found in %s (%s%s%s)", pf->symbol, obj,
                               ret->mod->path,
                               symtab_debug_path(st) ? ", and its debug file " :
                               symtab_searched(st) ? ", stripped: " : "",
                               symtab_debug_path(st) ? symtab_debug_path(st) :
                               symtab_searched(st) ? symtab_searched(st) : "");
        ret->old_addr = sym.value + ret->mod->bias;
        ret->old_size = sym.size;
        r = check_in_code(op, pf->symbol, ret->old_addr, MAX(sym.size, (uint64_t)1));
        if (r < 0)
                return r;
        if (sym.from_debug_file)
                op_warn(op, "%s: symbol from the debug file %s of %s (build-id checked)", pf->symbol,
                        symtab_debug_path(st), ret->mod->path);
        symtab_foreach_clone(st, sym.name, warn_clone, op);
        if (sym.bind == STB_LOCAL && sym.size <= SMALL_FUNCTION)
                op_warn(op, "%s is a small static function (%llu bytes): callers may have inlined it",
                        pf->symbol, (unsigned long long)sym.size);

        ret->pad_avail = entry_pad_after(st, &sym);
        ret->shared = op->c.img ? control_any_func(&op->c, ret->old_addr) : -1;
        if (ret->shared >= 0)
                return 0;
        /* Before its bytes are decoded: inside a patched function's first instructions
         * they are that function's jump now. The jump takes 5 bytes at least. */
        r = check_patched_overlap(op, pf->symbol, ret->old_addr, ret->old_addr, ret->old_addr + JMP_REL32_SIZE);
        if (r < 0)
                return r;
        return check_entry(op, st, pf->symbol, &sym, ret);
}

/* [*lo, *hi): the bytes the entry jump of r replaces (those of the existing record when
 * it shares one). */
static void entry_span(const Control *c, const Resolved *r, uint64_t *lo, uint64_t *hi) {
        if (r->shared >= 0) {
                const ControlFunc *f = &c->img->funcs[r->shared];
                *lo = f->old_addr + f->entry_off;
                *hi = *lo + f->displaced_len;
        } else {
                *lo = r->old_addr + r->rel.entry_offset;
                *hi = *lo + r->rel.displaced_len;
        }
}

/*
 * Two functions named twice, or whose entry jumps would cover some of the same bytes (a
 * symbol that starts inside another's first instructions, an assembler's second entry
 * point): the second jump would be written over part of the first, and calls of either
 * would land in the middle of an instruction. Against this patch's other functions and
 * every function a patch in the process replaces already.
 */
static int check_duplicates(UlpOp *op, const PatchMeta *meta, const Resolved *res) {
        for (size_t i = 0; i < meta->n_funcs; i++) {
                uint64_t lo, hi, lo2, hi2;
                int r;
                if (!res[i].mod)
                        continue;
                entry_span(&op->c, &res[i], &lo, &hi);
                for (size_t j = 0; j < i; j++) {
                        if (!res[j].mod)
                                continue;
                        if (res[i].old_addr == res[j].old_addr)
                                return op_fail(op, -EINVAL, "the patch replaces %s twice", meta->funcs[i].symbol);
                        entry_span(&op->c, &res[j], &lo2, &hi2);
                        if (lo < hi2 && lo2 < hi) {
                                /* named in address order */
                                bool jf = lo2 <= lo;
                                return op_fail(op, -EINVAL, "the entry jumps of %s and %s would overlap (bytes "
                                               "0x%llx-0x%llx and 0x%llx-0x%llx): one starts inside the other's "
                                               "first instructions; nothing written",
                                               meta->funcs[jf ? j : i].symbol, meta->funcs[jf ? i : j].symbol,
                                               (unsigned long long)(jf ? lo2 : lo), (unsigned long long)(jf ? hi2 : hi),
                                               (unsigned long long)(jf ? lo : lo2), (unsigned long long)(jf ? hi : hi2));
                        }
                }
                r = check_patched_overlap(op, meta->funcs[i].symbol, res[i].old_addr, lo, hi);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* klp_is_object_loaded: a function of an object the process has not loaded (a late
 * object, res->mod NULL) is patched when it is loaded (op-late.c). At least one
 * object must be loaded: the patch is mapped near it. */
static int resolve_all(UlpOp *op, const PatchMeta *meta, Resolved *res) {
        size_t loaded = 0, late = 0;
        const char *first = NULL;

        for (size_t i = 0; i < meta->n_funcs; i++) {
                int r = op_resolve_func(op, meta, &meta->funcs[i], &res[i]);
                if (r < 0 && res[i].mod)
                        return r;
                if (r < 0) {
                        bool seen = false;
                        for (size_t j = 0; j < i; j++)
                                seen |= !res[j].mod && strcmp(meta->funcs[j].object, meta->funcs[i].object) == 0;
                        if (!seen)
                                op_warn(op, "object %s is not loaded in process %d: a late object, its functions "
                                        "are patched when it is", meta->funcs[i].object[0] ? meta->funcs[i].object : "(main)",
                                        op->t->pid);
                        late += !seen;
                        first = first ? first : meta->funcs[i].object;
                        /* the record's last byte is the object's state (control.h) */
                        if (strlen(meta->funcs[i].object) > CONTROL_LATE_NAME_MAX)
                                return op_fail(op, -ENAMETOOLONG, "object %s is not loaded in process %d, and "
                                               "its name is too long for a late object (at most %d bytes)",
                                               meta->funcs[i].object, op->t->pid, CONTROL_LATE_NAME_MAX);
                } else
                        loaded++;
        }
        if (loaded == 0)
                return op_fail(op, -ENOENT, "object %s is not loaded in process %d (no object of the patch is)",
                               first[0] ? first : "the main executable", op->t->pid);
        if (late > CONTROL_MAX_LATE)
                return op_fail(op, -E2BIG, "the patch names %zu objects process %d has not loaded (at most %d)",
                               late, op->t->pid, CONTROL_MAX_LATE);
        op->report->message[0] = 0;
        return 0;
}

/* Callbacks of an object the process has not loaded run when it loads it (op-late.c,
 * the kernel's klp_module_coming): the object must be one whose functions wait for it,
 * and, as a patch record keeps one set of callbacks, they must be the patch's only ones. */
static int check_callbacks(UlpOp *op, const PatchMeta *meta, const Resolved *res) {
        for (size_t i = 0; i < meta->n_callbacks; i++) {
                const char *obj = meta->callbacks[i].object;
                bool waits = false;
                if (modules_find_object(&op->mods, obj))
                        continue;
                for (size_t j = 0; j < meta->n_funcs; j++)
                        waits |= !res[j].mod && strcmp(meta->funcs[j].object, obj) == 0;
                if (!waits)
                        return op_fail(op, -ENOENT, "object %s of the callbacks is not loaded, and the patch "
                                       "replaces none of its functions", obj[0] ? obj : "(main)");
                if (meta->n_callbacks > 1)
                        return op_fail(op, -ENOTSUP, "the callbacks of %s, which process %d has not loaded, "
                                       "must be the patch's only ones", obj, op->t->pid);
        }
        return 0;
}

/* Everything that can be refused is refused here, before the target is written to. */
static int validate(UlpOp *op, const PatchMeta *meta, int patch_fd, Resolved *res) {
        char err[256] = "";
        int r;

        if (op->c.img && control_find_patch(&op->c, meta->name) >= 0)
                return op_fail(op, -EEXIST, "patch %s is already applied to process %d", meta->name, op->t->pid);
        if (op->c.img && op->c.img->hdr.transition_patch >= 0)
                return op_fail(op, -EBUSY, "process %d has a transition in progress (patch %s): "
                               "wait for it, or revert that patch", op->t->pid,
                               op->c.img->patches[op->c.img->hdr.transition_patch].name);
        /* Each function may need a nop record of a replace patch as well: bounded even
         * when the process has no control block yet. */
        if ((op->c.img ? op->c.img->hdr.n_funcs : 0) + meta->n_funcs * 2 > CONTROL_MAX_FUNCS)
                return op_fail(op, -E2BIG, "too many patched functions in process %d", op->t->pid);
        if (op->t->n_threads > CONTROL_MAX_THREADS && !op->o.global)
                return op_fail(op, -E2BIG, "process %d has more than %u threads: use --global",
                               op->t->pid, CONTROL_MAX_THREADS);
        r = op_check_fibers(op);
        if (r < 0)
                return r;
        r = resolve_all(op, meta, res);
        if (r < 0)
                return r;
        r = check_duplicates(op, meta, res);
        if (r < 0)
                return r;
        r = check_callbacks(op, meta, res);
        if (r < 0)
                return r;
        r = loader_link(op->t, patch_fd, meta, &op->res, NULL, err, sizeof(err));
        if (r < 0)
                return op_fail(op, r, "%s", err);
        return 0;
}

/* Writes the relocated original of a function near it, unless an earlier patch did. */
int op_write_copy(UlpOp *op, Thread *th, Resolved *rs, ControlFunc *f) {
        uint8_t *code;
        char err[160] = "";
        int r;

        /* Looked up again: compaction may have moved records since validation. The new
         * record itself has no copy yet, so it is never found. */
        int shared = control_any_func(&op->c, rs->old_addr);
        if (shared >= 0) {
                const ControlFunc *s = &op->c.img->funcs[shared];
                f->copy_addr = s->copy_addr;
                f->entry_off = s->entry_off;
                f->displaced_len = s->displaced_len;
                memcpy(f->orig_bytes, s->orig_bytes, sizeof(f->orig_bytes));
                return 0;
        }
        r = area_alloc(op->t, th, &op->c, rs->old_addr, rs->old_addr + rs->old_size, RELOC_MAX_CODE, &f->copy_addr);
        if (r < 0)
                return op_fail(op, r, "no memory within 2 GiB of %s for its relocated entry", f->symbol);
        r = read_function(op, rs, &code);
        if (r < 0)
                return op_fail(op, r, "cannot read %s: %s", f->symbol, process_errno_clause(r));
        r = relocate_entry_padded(code, rs->old_size, rs->pad_avail, rs->old_addr, f->copy_addr, &rs->rel, err,
                                  sizeof(err));
        if (r >= 0) {
                f->entry_off = (uint8_t)rs->rel.entry_offset;
                f->displaced_len = (uint8_t)rs->rel.displaced_len;
                memcpy(f->orig_bytes, code + rs->rel.entry_offset, MIN(rs->rel.displaced_len, sizeof(f->orig_bytes)));
                r = target_write(op->t, f->copy_addr, rs->rel.code, rs->rel.code_len);
        }
        free(code);
        if (r < 0)
                return op_fail(op, r, "cannot relocate the entry of %s: %s", f->symbol, err[0] ? err : process_errno_clause(r));
        return 0;
}

static uint64_t realtime_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static unsigned next_seq(const Control *c) {
        unsigned seq = 0;
        for (unsigned i = 0; i < c->img->hdr.n_patches; i++)
                seq = MAX(seq, c->img->patches[i].seq);
        return seq + 1;
}

/* Fills the patch record (state CP_UNPATCHED until transition_init makes it live). */
static ControlPatch *new_patch_record(UlpOp *op, const PatchMeta *meta, const LoadedPatch *lp,
                                      const char *name_hint) {
        Control *c = &op->c;
        ControlPatch *p = &c->img->patches[c->img->hdr.n_patches];

        memset(p, 0, sizeof(*p));
        snprintf(p->name, sizeof(p->name), "%s", meta->name);
        snprintf(p->file, sizeof(p->file), "%s", name_hint ? name_hint : "");
        p->applied_ns = realtime_ns();
        p->applied_uid = op->o.requester_set ? (uint32_t)op->o.requester_uid : (uint32_t)geteuid();
        p->state = CP_UNPATCHED;
        p->flags = meta->replace ? CP_FLAG_REPLACE : 0;
        p->seq = next_seq(c);
        p->first_func = c->img->hdr.n_funcs;
        p->map_start = lp->start;
        p->map_size = lp->size;
        p->bias = lp->bias;
        p->build_id_len = (uint32_t)MIN(meta->build_id_len, sizeof(p->build_id));
        memcpy(p->build_id, meta->build_id, p->build_id_len);
        for (size_t i = 0; i < meta->n_callbacks; i++) {
                const PatchCallbacks *cb = &meta->callbacks[i];
                /* Those of an object not loaded yet: recorded when it is (op-late.c). */
                if (!modules_find_object(&op->mods, cb->object))
                        continue;
                uint64_t v[CP_CB_MAX] = {
                        [CP_CB_PRE_PATCH] = cb->pre_patch, [CP_CB_POST_PATCH] = cb->post_patch,
                        [CP_CB_PRE_UNPATCH] = cb->pre_unpatch, [CP_CB_POST_UNPATCH] = cb->post_unpatch,
                };
                for (int k = 0; k < CP_CB_MAX; k++)
                        if (v[k])
                                p->callbacks[k] = v[k] + lp->bias;
        }
        return p;
}

_Static_assert(JMP_FAR_SIZE == CONTROL_FAR_JUMP_SIZE, "the control block's far jump is x86_64/'s");

/* A new function beyond the entry jump's reach (another object of the patch, mapped
 * near the first): the entry jumps to a far jump near the function (docs/reach.md). */
static int write_far_jump(UlpOp *op, Thread *th, ControlFunc *f) {
        uint8_t code[JMP_FAR_SIZE];
        uint8_t jmp[JMP_REL32_SIZE];
        uint64_t at;
        int r;

        f->far_off = 0;
        if (encode_jmp_rel32(jmp, f->old_addr + f->entry_off, f->new_addr) >= 0)
                return 0;
        r = area_alloc(op->t, th, &op->c, f->old_addr, f->old_addr + f->old_size, sizeof(code), &at);
        if (r < 0)
                return op_fail(op, r, "no memory within 2 GiB of %s for its far jump", f->symbol);
        encode_jmp_far(code, f->new_addr);
        r = target_write(op->t, at, code, sizeof(code));
        if (r < 0)
                return op_fail(op, r, "cannot write the far jump of %s: %s", f->symbol, process_errno_clause(r));
        f->far_off = (int32_t)(int64_t)(at - f->old_addr);
        return 0;
}

/* Fills the record at f for pf of patch p (index idx), with the relocated original. */
int op_fill_func_record(UlpOp *op, Thread *th, ControlFunc *f, unsigned idx, const PatchFunc *pf, Resolved *rs,
                        SymTab *patch_st, uint64_t bias) {
        Symbol nsym;

        memset(f, 0, sizeof(*f));
        f->patch = idx;
        f->old_addr = rs->old_addr;
        f->old_size = rs->old_size;
        f->new_addr = pf->new_vaddr + bias;
        f->new_size = symtab_lookup_addr(patch_st, pf->new_vaddr, &nsym) >= 0 ? nsym.size : 1;
        snprintf(f->object, sizeof(f->object), "%s", pf->object);
        snprintf(f->symbol, sizeof(f->symbol), "%s", pf->symbol);
        int r = op_write_copy(op, th, rs, f);
        return r < 0 ? r : write_far_jump(op, th, f);
}

/* Records the late objects in the patch record. */
static void record_late(ControlPatch *p, const PatchMeta *meta, const Resolved *res) {
        unsigned n = 0;
        for (size_t i = 0; i < meta->n_funcs; i++) {
                bool seen = false;
                if (res[i].mod)
                        continue;
                for (unsigned k = 0; k < n; k++)
                        seen |= strcmp(p->late[k], meta->funcs[i].object) == 0;
                if (!seen && n < CONTROL_MAX_LATE)
                        snprintf(p->late[n++], CONTROL_LATE_NAME_MAX + 1, "%s", meta->funcs[i].object);
        }
}

static int new_func_record(UlpOp *op, Thread *th, ControlPatch *p, const PatchFunc *pf, Resolved *rs,
                           SymTab *patch_st, uint64_t bias) {
        Control *c = &op->c;
        ControlFunc *f = &c->img->funcs[c->img->hdr.n_funcs];
        int r = op_fill_func_record(op, th, f, c->img->hdr.n_patches, pf, rs, patch_st, bias);

        c->img->hdr.n_funcs++;
        p->n_funcs++;
        return r;
}

/* Replace: every function of a live patch that the new one does not touch gets a nop
 * record: the new patch's version of it is the original. */
static int add_nops(UlpOp *op, ControlPatch *p) {
        Control *c = &op->c;
        unsigned n = c->img->hdr.n_funcs;

        for (unsigned i = 0; i < n; i++) {
                const ControlFunc *g = &c->img->funcs[i];
                const ControlPatch *gp = &c->img->patches[g->patch];
                ControlFunc *f;
                bool covered = false;
                if (gp == p || gp->state != CP_PATCHED)
                        continue;
                for (unsigned k = p->first_func; k < c->img->hdr.n_funcs; k++)
                        covered |= c->img->funcs[k].old_addr == g->old_addr;
                if (covered)
                        continue;
                f = &c->img->funcs[c->img->hdr.n_funcs++];
                *f = *g;
                f->patch = (uint32_t)(p - c->img->patches);
                f->flags = CF_FLAG_NOP;
                f->new_addr = g->copy_addr;
                f->far_off = 0;
                f->new_size = 0;
                p->n_funcs++;
        }
        return 0;
}

/* Whether every piece of code the load makes after its link (each function's relocated
 * entry and far jump, its stub, the stubs of a replace's nop records, the guard block)
 * fits in one area already mapped: then the load needs its borrowed thread no longer
 * (docs/stops.md, "The patch load's stop"). Counts each possible piece, made or not. */
static bool load_rest_fits(const UlpOp *op, const PatchMeta *meta, const Resolved *res) {
        const Control *c = &op->c;
        size_t n = 0;
        _cleanup_free_ AreaWant *v = calloc(3 * meta->n_funcs + c->img->hdr.n_funcs + 1, sizeof(*v));

        if (!v)
                return false;
        for (size_t i = 0; i < meta->n_funcs; i++) {
                if (!res[i].mod)
                        continue;
                AreaWant w = { res[i].old_addr, res[i].old_addr + res[i].old_size, RELOC_MAX_CODE };
                v[n++] = w;
                w.len = JMP_FAR_SIZE;
                v[n++] = w;
                w.len = STUB_MAX_SIZE;
                v[n++] = w;
        }
        if (n == 0)
                return false;
        if (meta->replace)
                for (unsigned i = 0; i < c->img->hdr.n_funcs; i++)
                        v[n++] = (AreaWant) { c->img->funcs[i].old_addr,
                                              c->img->funcs[i].old_addr + c->img->funcs[i].old_size, STUB_MAX_SIZE };
        if (!c->img->hdr.guard_block)
                v[n++] = (AreaWant) { v[0].lo, v[0].hi, SIGTRAP_BLOCK_SIZE };
        return area_fits_in_one(c, v, n);
}

/* Resumes the load's thread *th (setting it to NULL) when everything left to make fits
 * without it (load_rest_fits()); 0, or the resume's error. */
static int load_give_back(UlpOp *op, Thread **th, const PatchMeta *meta, const Resolved *res) {
        int r;

        if (!*th || !load_rest_fits(op, meta, res))
                return 0;
        r = target_resume_thread(op->t, *th);
        *th = NULL;
        return r;
}

/* The load's thread, or when the load gave it back, a thread borrowed again (for the
 * unmap of a load that failed), waited for as a step that cannot be put off; NULL when
 * none could be, the report's message kept. */
static Thread *load_thread(UlpOp *op, Thread *th) {
        char why[sizeof(op->report->message)];

        if (th)
                return th;
        snprintf(why, sizeof(why), "%s", op->report->message);
        if (op_borrow_now(op, &th) < 0)
                th = NULL;
        snprintf(op->report->message, sizeof(op->report->message), "%s", why);
        return th;
}

/* Maps and links the patch, writes copies, records and stubs: nothing is in the path
 * yet, so only the borrowed thread *thp is stopped, and only for as long as remote steps
 * need it: once the patch is mapped and the rest fits in the areas there are, it is
 * resumed and *thp set to NULL (the thread *thp names at the end is the caller's to
 * resume). */
static int load_patch(UlpOp *op, Thread **thp, const PatchMeta *meta, int patch_fd, const char *name_hint,
                      Resolved *res) {
        Thread *th = *thp;
        char err[256] = "";
        LoadedPatch lp;
        SymTab *patch_st = NULL;
        ControlPatch *p;
        const Resolved *near;
        int r;

        if (!op->c.img) {
                r = control_create(op->t, th, &op->c);
                if (r == -ENOEXEC)
                        return op_fail(op, r, "process %d has no code a system call made on its behalf could "
                                       "return through (no glibc __restore_rt): not supported", op->t->pid);
                if (r < 0)
                        return op_fail(op, r, "cannot create the control block in process %d: %s", op->t->pid, process_errno_clause(r));
        }
        r = op_reclaim_loader_fd(op, th);
        if (r < 0)
                return r;
        r = op_compact_control(op);
        if (r < 0)
                return r;
        if (op->c.img->hdr.n_patches >= CONTROL_MAX_PATCHES)
                return op_fail(op, -E2BIG, "too many patches in process %d", op->t->pid);
        near = res;
        while (!near->mod)
                near++;
        if (op->res.wants_shadow) {
                r = shadow_ensure(op->t, th, &op->c, &op->res, near->mod->start, near->mod->end, err, sizeof(err));
                if (r < 0)
                        return op_fail(op, r, "%s", err);
        }
        r = loader_map(op->t, th, &op->c, patch_fd, meta->name, near->mod->start, near->mod->end, &lp, err, sizeof(err));
        if (r < 0)
                return op_fail(op, r, "%s", err);
        /* What follows writes into the mapping, code areas and the block, none of it in
         * any thread's path: no remote step unless an IFUNC's resolver must run (it
         * borrows a thread again, op_run_resolver()) or an area must be mapped. */
        r = load_give_back(op, &th, meta, res);
        *thp = th;
        if (r < 0)
                return op_fail(op, r, "process %d went away", op->t->pid);
        OpThread rr = { op, th };
        op->res.run_resolver = op_run_resolver;
        op->res.userdata = &rr;
        r = loader_link(op->t, patch_fd, meta, &op->res, &lp, err, sizeof(err));
        op->res.run_resolver = NULL;
        op->res.userdata = NULL;
        *thp = th = rr.th;
        if (r >= 0)
                r = symtab_open_fd(patch_fd, &patch_st);
        if (r < 0) {
                if ((th = load_thread(op, th)) && loader_unmap(op->t, th, lp.start, lp.size) >= 0) {
                        loader_fd_clear(&op->c);
                        (void)control_write_header(op->t, &op->c);
                }
                *thp = th;
                return op_fail(op, r, "%s", err[0] ? err : "cannot read the patch's symbols");
        }
        r = load_give_back(op, &th, meta, res);
        *thp = th;
        if (r < 0) {
                symtab_free(patch_st);
                return op_fail(op, r, "process %d went away", op->t->pid);
        }
        p = new_patch_record(op, meta, &lp, name_hint);
        record_late(p, meta, res);
        for (size_t i = 0; i < meta->n_funcs && r >= 0; i++)
                if (res[i].mod)
                        r = new_func_record(op, th, p, &meta->funcs[i], &res[i], patch_st, lp.bias);
        symtab_free(patch_st);
        if (r >= 0 && meta->replace)
                r = add_nops(op, p);
        op->patch = (int)op->c.img->hdr.n_patches++;
        if (r >= 0 && !op->o.global)
                r = op_build_stubs(op, th, op->patch);
        /* What the next reader would refuse is never written: a patch file that got past
         * its checks with values the control block cannot hold stops here, undone. */
        if (r >= 0 && control_validate(op->c.img, op->c.addr, err, sizeof(err)) < 0)
                r = op_fail(op, -EBADMSG, "patch %s: its records would be malformed (%s): nothing changed",
                            meta->name, err);
        if (r >= 0)
                r = control_write_funcs(op->t, &op->c, p->first_func, p->n_funcs);
        if (r >= 0)
                r = control_write_patch(op->t, &op->c, (unsigned)op->patch);
        /* The header counting the record is the one that ends the load's record. */
        loader_fd_clear(&op->c);
        if (r >= 0)
                r = control_write_header(op->t, &op->c);
        if (r < 0) {
                /* Nothing is in the path: drop the record, unmap the code. */
                p->map_size = 0;
                if ((th = load_thread(op, th)))
                        (void)loader_unmap(op->t, th, lp.start, lp.size);
                op->c.img->hdr.n_funcs = p->first_func;
                op->c.img->hdr.n_patches--;
                (void)control_write_header(op->t, &op->c);
        }
        *thp = th;
        return r;
}

/* klp_cancel_transition: the pre-patch callback refused; nothing was visible. */
static int cancel(UlpOp *op, int cb_ret) {
        ControlPatch *p = &op->c.img->patches[op->patch];
        Thread *th;
        if (op_borrow(op, &th) >= 0) {
                (void)loader_unmap(op->t, th, p->map_start, p->map_size);
                (void)target_resume_thread(op->t, th);
        }
        p->map_size = 0;
        p->state = CP_UNPATCHED;
        (void)control_write_patch(op->t, &op->c, (unsigned)op->patch);
        return op_fail(op, -ECANCELED, "the patch's pre-patch callback refused (returned %d): nothing changed", cb_ret);
}

/* The patch's metadata, with the operator's message for each way it can be unusable. */
static int read_meta(UlpOp *op, int patch_fd, const char *name_hint, PatchMeta **ret_meta) {
        char err[256] = "";
        PatchMeta *meta = NULL;
        int r = patchcache_read(patch_fd, name_hint, &meta, err, sizeof(err));

        if (r == -ENOEXEC)
                return op_fail(op, r, "%s is not an ELF file", name_hint ? name_hint : "the patch");
        if (r == -ENOMSG)
                return op_fail(op, r, "%s has no ulp patch metadata (no ULP_FUNC)", name_hint ? name_hint : "the patch");
        if (r == -ENOTSUP)
                return op_fail(op, r, "patch %s %s", name_hint ? name_hint : "", err);
        if (r < 0)
                return op_fail(op, r, "bad patch %s: %s", name_hint ? name_hint : "", err[0] ? err : process_errno_clause(r));
        snprintf(op->report->patch_name, sizeof(op->report->patch_name), "%s", meta->name);
        *ret_meta = meta;
        return 0;
}

/* What apply and check share: the patch's metadata, the target, and every refusal,
 * before anything is written. *ret_meta and *ret_res are the caller's to free. */
static int open_and_validate(UlpOp *op, pid_t pid, int patch_fd, const char *name_hint,
                             PatchMeta **ret_meta, Resolved **ret_res) {
        int r = read_meta(op, patch_fd, name_hint, ret_meta);
        if (r >= 0)
                r = op_open_target(op, pid);
        if (r >= 0 && !(*ret_res = calloc((*ret_meta)->n_funcs, sizeof(Resolved))))
                r = -ENOMEM;
        if (r >= 0)
                r = validate(op, *ret_meta, patch_fd, *ret_res);
        return r;
}

/* Everything after this works from one sealed copy of the client's file (patchfile.h):
 * what was validated is what gets loaded, and a file changed meanwhile cannot hurt. */
static int seal_patch(UlpOp *op, int patch_fd, const char *name_hint, int *ret) {
        char err[256] = "";
        int r = patch_file_copy(patch_fd, ret, err, sizeof(err));

        if (r < 0)
                return op_fail(op, r, "bad patch %s: %s", name_hint ? name_hint : "", err[0] ? err : process_errno_clause(r));
        return 0;
}

/* What an apply keeps between its steps until its transition is prepared: its load and
 * pre-patch callback wait for a thread to borrow (op->prologue, docs/stops.md). */
typedef struct ApplyStart {
        int patch_fd;            /* the sealed copy */
        char *name_hint;
        PatchMeta *meta;
        Resolved *res;
        bool settled;            /* op_late_settle() ended what a killed driver left */
        bool loaded;
} ApplyStart;

static void apply_start_free(void *data) {
        ApplyStart *a = data;

        if (!a)
                return;
        closep(&a->patch_fd);
        free(a->name_hint);
        free(a->res);
        patchcache_put(a->meta);
        free(a);
}

/* Maps and links the patch on a borrowed thread; -EAGAIN while none can be stopped. */
static int apply_load(UlpOp *op, ApplyStart *a) {
        const MapList *maps;
        Thread *th;

        (void)procmaps_get(op->t, &maps);   /* for the loader, read while no thread is stopped */
        int r = op_borrow(op, &th);

        if (r == -EAGAIN)
                return r;
        if (r < 0) {
                char why[sizeof(op->report->message)];
                snprintf(why, sizeof(why), "%s", op->report->message);
                return op_fail(op, r, "%s; nothing changed", why);
        }
        r = load_patch(op, &th, a->meta, a->patch_fd, a->name_hint, a->res);
        int k = th ? target_resume_thread(op->t, th) : 0;
        if (r >= 0 && k < 0)
                r = op_fail(op, k, "process %d went away", op->t->pid);
        if (r >= 0)
                r = op_refresh_modules(op);
        if (r >= 0)
                r = op_unwinder(op);
        if (r >= 0)
                a->loaded = true;
        return r;
}

/* The apply's prologue: load, pre-patch callback, start of the transition. Each part
 * that borrows a thread may return -EAGAIN before it changed anything: the next step
 * calls this again and goes on from there. */
static int apply_prologue(UlpOp *op) {
        ApplyStart *a = op->prologue_data;
        int r = 0, cb = 0;

        if (!a->settled) {
                /* -EAGAIN while threads are in the way: the next step tries again. */
                if (op->c.img && op->c.img->hdr.transition_patch < 0 && (r = op_late_settle(op)) < 0)
                        return r;
                a->settled = true;
        }
        if (!a->loaded) {
                r = apply_load(op, a);
                if (r < 0)
                        return r;
        }
        uint64_t pre = op->c.img->patches[op->patch].callbacks[CP_CB_PRE_PATCH];
        if (pre) {
                r = op_run_callback(op, pre, &cb);
                if (r == -EAGAIN)
                        return r;
                if (r < 0) {
                        char why[sizeof(op->report->message)];
                        snprintf(why, sizeof(why), "%s", op->report->message);
                        if (r == -ETIME)   /* it ran, and runs on: its own sentence */
                                return op_fail(op, r, "%s; nothing changed", why);
                        /* Its thread is back where it was (or gone): the code goes now,
                         * unless some thread may still be in it, and its record with it. */
                        if (op_unload_failed(op) > 0)
                                return op_fail(op, r, "the pre-patch callback did not run: %s; the patch's code "
                                               "stays mapped until a later apply finds no thread in it", why);
                        return op_fail(op, r, "the pre-patch callback did not run: %s; nothing changed", why);
                }
                if (cb != 0) {
                        op->borrow_retry = false;   /* its unmap must not be put off */
                        return cancel(op, cb);
                }
        }
        r = op_start_transition(op, THREAD_PATCHED);
        /* klp_cancel_transition: nothing was visible yet; take the code back. */
        if (r < 0 && op->tr_ready)
                (void)transition_cancel(&op->tr);
        return r;
}

int ulp_op_apply(pid_t pid, int client_fd, const char *name_hint, const UlpOptions *o, UlpOp **ret,
                 UlpReport *report) {
        UlpOp *op = op_new(OP_APPLY, o, report);
        ApplyStart *a;
        int r;

        if (!op)
                return -ENOMEM;
        /* the relocation of the entries needs capstone: loaded meanwhile */
        insn_preload();
        a = calloc(1, sizeof(*a));
        if (!a) {
                ulp_op_free(op);
                return -ENOMEM;
        }
        a->patch_fd = -1;
        op->prologue = apply_prologue;
        op->prologue_data = a;
        op->prologue_free = apply_start_free;
        r = seal_patch(op, client_fd, name_hint, &a->patch_fd);
        if (r >= 0 && name_hint && !(a->name_hint = strdup(name_hint)))
                r = -ENOMEM;
        if (r >= 0)
                r = open_and_validate(op, pid, a->patch_fd, name_hint, &a->meta, &a->res);
        /* Refused before anything is loaded while an earlier callback still runs. */
        if (r >= 0)
                r = op_callback_reclaim(op, a->meta->n_callbacks > 0);
        if (r >= 0)
                r = op_reclaim_code(op);
        if (r >= 0) {
                unsigned next;
                r = ulp_op_step(op, &next);
        }
        if (r < 0 && r != -ETIMEDOUT) {
                ulp_op_free(op);
                return r;
        }
        *ret = op;
        return r;
}

/* The ranges an apply's transition would check: the top of each function's stack. */
static int check_ranges(UlpOp *op, const PatchMeta *meta, const Resolved *res, Transition *tr) {
        for (size_t i = 0; i < meta->n_funcs; i++) {
                int top = op->c.img ? control_top_func(&op->c, res[i].old_addr, -1) : -1;
                const ControlFunc *f = top >= 0 ? &op->c.img->funcs[top] : NULL;
                CodeRange *n;
                if (!res[i].mod)
                        continue;
                n = realloc(tr->ranges, (tr->n_ranges + 1) * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                tr->ranges = n;
                if (f && !(f->flags & CF_FLAG_NOP))
                        n[tr->n_ranges++] = (CodeRange) { f->new_addr, f->new_addr + f->new_size };
                else
                        n[tr->n_ranges++] = (CodeRange) { res[i].old_addr, res[i].old_addr + res[i].old_size };
        }
        return 0;
}

/* Dry run: refusals as apply would give them, then one stop-the-world to see which
 * threads would block the transition now. Writes nothing into the target. */
int ulp_check(pid_t pid, int client_fd, const char *name_hint, UlpReport *report) {
        return ulp_check_with(pid, client_fd, name_hint, NULL, report);
}

int ulp_check_with(pid_t pid, int client_fd, const char *name_hint, const UlpOptions *o, UlpReport *report) {
        UlpOp *op = op_new(OP_APPLY, o, report);
        _cleanup_close_ int patch_fd = -1;
        PatchMeta *meta = NULL;
        Resolved *res = NULL;
        Transition tr = {};
        int r, k;

        if (!op)
                return -ENOMEM;
        r = seal_patch(op, client_fd, name_hint, &patch_fd);
        if (r >= 0)
                r = open_and_validate(op, pid, patch_fd, name_hint, &meta, &res);
        if (r >= 0)
                r = op_unwinder(op);
        tr = (Transition) { .t = op->t, .c = &op->c, .u = op->u, .res = &op->res };
        if (r >= 0)
                r = check_ranges(op, meta, res, &tr);
        if (r >= 0) {
                char why[256];
                /* A few attempts (about a second, as one used to wait): a dry run has
                 * no later step to retry from. */
                r = -ETIMEDOUT;
                for (int i = 0; i < 4 && r == -ETIMEDOUT; i++) {
                        op_stop_budget(op);
                        r = target_stop_all(op->t);
                }
                if (r == -ETIMEDOUT)
                        r = op_fail(op, -EBUSY, "the threads cannot all be looked at now: %s",
                                    op_stop_error(op, r, why, sizeof(why)));
        }
        if (r >= 0) {
                for (size_t i = 0; i < op->t->n_threads; i++) {
                        Thread *th = &op->t->threads[i];
                        char blocker[128];
                        if (th->gone || !th->stopped)
                                continue;
                        tr.total++;
                        if (!transition_check_thread(&tr, th, blocker, sizeof(blocker))) {
                                UlpStraggler *s = realloc(report->stragglers, (report->n_stragglers + 1) * sizeof(*s));
                                if (!s)
                                        continue;
                                report->stragglers = s;
                                s = &s[report->n_stragglers++];
                                *s = (UlpStraggler) { .tid = th->tid };
                                target_thread_name(op->t, th->tid, s->comm);
                                snprintf(s->function, sizeof(s->function), "%s", blocker);
                        }
                }
                k = target_resume_all(op->t);
                if (k < 0)
                        r = k;
        }
        report->threads = tr.total;
        report->max_stw_us = op->t ? op->t->max_stw_ns / 1000 : 0;
        if (r >= 0 && report->n_stragglers > 0)
                r = op_fail(op, -EBUSY, "%zu thread(s) would block the transition now", report->n_stragglers);
        free(tr.ranges);
        free(res);
        patchcache_put(meta);
        ulp_op_free(op);
        return r;
}
