/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * ulp-build-diff: the object-level half of ulp-build (docs/ulp-build.md).
 *
 *     ulp-build-diff --binary PATH --out DIR --name NAME [--diff FILE --tree DIR] ORIG.o PATCHED.o [...]
 *     ulp-build-diff --check-binary PATH
 *
 * Each pair is one translation unit compiled twice with -ffunction-sections
 * -fdata-sections: from the clean tree and from the tree with the fix; ORIG.o is "-"
 * for a source file the fix adds, whose functions and variables a changed function
 * reaches through their global names and which travel in the patch. The program
 *
 *  1. finds the functions whose code differs, after normalizing what differs only by
 *     relocation (a reference is compared by what it refers to: a symbol's name, a
 *     string literal's text, an anonymous section's content), and the new ones;
 *  2. refuses what a live patch cannot do: changed initialized data or a changed size
 *     of a variable, thread-local variables, references it cannot rebind;
 *  3. walks what the changed functions reference: new functions, string literals and
 *     jump tables travel in the patch; every variable and function that the running
 *     program already has is rebound to the program's copy by a ulp_rels record
 *     (include/ulp/patch.h), by name and, for a static symbol, its position among the
 *     locals of that name in PATH's symbol table (the one in the same source file);
 *  4. writes DIR/meta.s (ulp_info, ulp_build_ids, ulp_funcs, ulp_rels, and hidden
 *     placeholders for symbols defined by PATH that no object of the patch defines) and,
 *     for pair K, DIR/anchors-K (objcopy --add-symbol arguments that name the start of
 *     each section a record points into).
 *
 * The driver (ulp-build) links the patched objects with meta.o using --gc-sections:
 * the records are the only roots, so only what the changed functions reach is kept.
 *
 * Output on stdout, one line each: "changed NAME REASON", "new NAME", "inlined NAME",
 * "rebind NAME". REASON is "changed" when the diff names the function, else "inlines
 * changed X()" when a changed function X of its source file exists only inlined, else
 * "code-differs" (a macro or a header changed it). A refusal
 * is one line on stderr and exit status 1; a usage or I/O error exits 2.
 */


#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ulpbuild/ulp-build-diff.h"

#define ULP_META_MAGIC_STR "0x31504c55"

/* ---- the comparison and the walk ---- */

typedef enum { F_SAME, F_CHANGED, F_NEW } FuncState;

typedef struct Unit {
        int k;
        bool is_new;             /* a source file the diff adds: no clean object */
        Obj orig, patched;
        FuncState *state;        /* per patched section */
        bool *kept;              /* per patched section: travels in the patch */
        bool *anchor;            /* per patched section: a record points into it */
        unsigned char **edited;  /* per patched section: its bytes with GOT loads rewritten, or NULL */
} Unit;

typedef struct Rebind {
        int unit;
        size_t sec;
        uint64_t offset;
        unsigned type;           /* ULP_REL_* */
        int64_t addend;
        char *symbol;
        unsigned pos;
} Rebind;

static Rebind *rebinds;
static size_t n_rebinds;

typedef struct Proxy {
        char *name;
} Proxy;

static Proxy *proxies;
static size_t n_proxies;
static bool any_change;

static char *strip_cold(const char *name) {
        char *s = strdup(name);
        char *c = s ? strstr(s, ".cold") : NULL;
        if (!s)
                die("out of memory");
        if (c && (c[5] == 0 || c[5] == '.'))
                *c = 0;
        return s;
}

/* What the wrapper refuses before building (docs/ulp-build.md), seen again in an object
 * it did not compile itself (a prebuilt one the build copied): LTO bytecode, and code in
 * COMDAT groups (C++ inline functions and templates), which two objects may both hold. */
static bool is_cxx(const Obj *o) {
        static const char *const ext[] = { ".cc", ".cpp", ".cxx", ".C", ".c++" };
        size_t n = strlen(o->file);

        for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
                if (n > strlen(ext[i]) && strcmp(o->file + n - strlen(ext[i]), ext[i]) == 0)
                        return true;
        return false;
}

/* A C++ translation unit whose code changed (not only its debug information) is
 * refused: its inline functions and templates sit in COMDAT groups, which the objects
 * of several files may hold, and which the comparison does not follow. */
static void refuse_cxx(const Unit *u) {
        const Obj *p = &u->patched;

        if (!is_cxx(p) && !is_cxx(&u->orig))
                return;
        for (size_t i = 1; i < p->shnum; i++)
                if (u->state[i] != F_SAME)
                        refuse("the diff changes %s() of the C++ file %s: C++ is not supported (inline functions and "
                               "templates are in COMDAT groups, which ulp-build does not compare)",
                               p->symname[p->primary[i]], p->file);
}

static void check_kind(const Unit *u, const Obj *o) {
        if (is_cxx(&u->patched) || is_cxx(&u->orig))
                return;          /* refuse_cxx(), when its code changed */
        for (size_t i = 1; i < o->shnum; i++) {
                if (strncmp(o->sname[i], ".gnu.lto_", 9) == 0)
                        refuse("%s was compiled with -flto: link-time optimization is not supported; build without "
                               "-flto", o->file[0] ? o->file : o->path);
                if (o->sh[i].sh_type != SHT_GROUP || !o->data[i] || o->data[i]->d_size < 4)
                        continue;
                const uint32_t *w = o->data[i]->d_buf;
                if (!(w[0] & GRP_COMDAT))
                        continue;
                for (size_t k = 1; k < o->data[i]->d_size / 4; k++)
                        if (w[k] < o->shnum && (o->sh[w[k]].sh_flags & SHF_ALLOC))
                                refuse("%s has code or data in a COMDAT group (%s): C++ is not supported", o->file[0] ?
                                       o->file : o->path, o->sname[w[k]]);
        }
}

static void compare_functions(Unit *u) {
        Obj *o = &u->orig, *p = &u->patched;

        check_kind(u, o);
        check_kind(u, p);

        for (size_t i = 1; i < p->shnum; i++) {
                if (!sec_is_code(p, i))
                        continue;
                if (!p->primary[i]) {
                        /* Code not in a function section of its own: compare it whole. */
                        size_t j;
                        for (j = 1; j < o->shnum; j++)
                                if (sec_is_code(o, j) && !o->primary[j] && strcmp(o->sname[j], p->sname[i]) == 0)
                                        break;
                        if (j >= o->shnum || !sec_same(o, j, p, i))
                                refuse("%s: code in %s changed outside a function section of its own (was it "
                                       "built with -ffunction-sections?)", p->file, p->sname[i]);
                        continue;
                }
                size_t j = obj_find(o, p->symname[p->primary[i]], true);
                u->state[i] = !j ? F_NEW : sec_same(o, j, p, i) ? F_SAME : F_CHANGED;
        }
        /* A changed cold part changes its function: the new one jumps to the new part. */
        for (size_t i = 1; i < p->shnum; i++) {
                if (u->state[i] == F_SAME || !sec_is_code(p, i) || !p->primary[i] ||
                    !strstr(p->symname[p->primary[i]], ".cold"))
                        continue;
                char *parent = strip_cold(p->symname[p->primary[i]]);
                size_t j = obj_find(p, parent, true);
                if (j && u->state[j] == F_SAME)
                        u->state[j] = F_CHANGED;
                free(parent);
        }
}

/* The clean build must be what the program runs: every function of the compared
 * source files that the program has must have its size and bytes there. */
static void check_clean_build(const Obj *o) {
        for (size_t i = 1; i < o->shnum; i++) {
                unsigned pos;
                if (!sec_is_code(o, i) || !o->primary[i])
                        continue;
                const char *fname = o->symname[o->primary[i]];
                const BinSym *bs = bin_lookup(fname, o->file, GELF_ST_BIND(o->sym[o->primary[i]].st_info) == STB_LOCAL,
                                              &pos);
                if (!bs || !bs->func)
                        continue;
                if (bs->size != o->sh[i].sh_size)
                        refuse("the clean build differs from %s: %s() of %s is %" PRIu64 " bytes there and %" PRIu64
                               " in the build; give the source tree and build command (compiler, flags) that built it",
                               binary_path, fname, o->file, bs->size, (uint64_t)o->sh[i].sh_size);
                uint64_t at = bin_differs(o, i, bs);
                if (at != UINT64_MAX)
                        refuse("the clean build differs from %s: %s() of %s has other bytes there (at +0x%" PRIx64 "); "
                               "give the source tree and build command (compiler, flags) that built it", binary_path,
                               fname, o->file, at);
        }
}

static void compare_data(Unit *u) {
        Obj *o = &u->orig, *p = &u->patched;

        for (size_t j = 1; j < o->shnum; j++) {
                if (!o->primary[j] || sec_is_code(o, j) || !(o->sh[j].sh_flags & SHF_ALLOC))
                        continue;
                const char *name = o->symname[o->primary[j]];
                size_t i = obj_find(p, name, false);
                if (!i)
                        continue;        /* no longer used by the fixed code */
                if (o->sh[j].sh_size != p->sh[i].sh_size)
                        refuse("the diff changes the size of %s in %s (%" PRIu64 " to %" PRIu64 " bytes): a live "
                               "patch cannot change the layout of data; keep new fields in shadow variables "
                               "(ulp/shadow.h)", name, p->file, (uint64_t)o->sh[j].sh_size,
                               (uint64_t)p->sh[i].sh_size);
                if (!sec_same(o, j, p, i))
                        refuse("the diff changes the initial value of %s in %s: a live patch cannot change data "
                               "the program already holds; set it from a post_patch callback, or keep new state "
                               "in shadow variables (ulp/shadow.h)", name, p->file);
        }
}

static void add_proxy(const char *name) {
        for (size_t i = 0; i < n_proxies; i++)
                if (strcmp(proxies[i].name, name) == 0)
                        return;
        proxies = realloc(proxies, (n_proxies + 1) * sizeof(*proxies));
        if (!proxies || !(proxies[n_proxies].name = strdup(name)))
                die("out of memory");
        n_proxies++;
}

static void add_rebind(Unit *u, size_t sec, const GElf_Rela *r, unsigned type, int64_t addend,
                       const char *symbol, unsigned pos) {
        rebinds = realloc(rebinds, (n_rebinds + 1) * sizeof(*rebinds));
        if (!rebinds)
                die("out of memory");
        rebinds[n_rebinds++] = (Rebind){ .unit = u->k, .sec = sec, .offset = r->r_offset, .type = type,
                                         .addend = addend, .symbol = strdup(symbol), .pos = pos };
        u->anchor[sec] = true;
}

/* Whether the program's copy of the function or variable named by patched symbol s
 * is what the new code must use: it exists in the program, and is neither changed
 * nor new. */
static bool use_programs(Unit *u, size_t s, const BinSym **bs, unsigned *pos) {
        Obj *p = &u->patched;
        size_t sec = p->sym[s].st_shndx;
        bool code = sec < p->shnum && sec_is_code(p, sec);
        const char *name = p->symname[s];

        if (code && u->state[sec] != F_SAME)
                return false;
        if (!obj_find(&u->orig, name, code))
                return false;            /* new in the fix */
        *bs = bin_lookup(name, p->file, GELF_ST_BIND(p->sym[s].st_info) == STB_LOCAL, pos);
        if (!*bs && !code)
                refuse("%s of %s is not in %s's symbol table: cannot refer to the program's copy", name, p->file,
                       binary_path);
        if (*bs && strstr(name, ".cold"))
                return false;
        return *bs != NULL;
}

static void walk(Unit *u, size_t sec);

/* Every unit, for a reference from one to a function or variable of a new one. */
static Unit *units;
static int n_units;

/* The section of a fixed object that defines the global name (which the program does
 * not have: a function or variable the fix adds, in a new source file or an existing
 * one), or 0. What a changed function reaches there travels in the patch, where the
 * link resolves the reference, and is walked like the rest. */
static size_t unit_defines(const char *name, Unit **ret) {
        for (int k = 0; k < n_units; k++) {
                Obj *p = &units[k].patched;
                for (size_t s = 1; s < p->nsym; s++)
                        if (sym_is_named(p, s) && GELF_ST_BIND(p->sym[s].st_info) != STB_LOCAL &&
                            p->sym[s].st_shndx < p->shnum && strcmp(p->symname[s], name) == 0) {
                                *ret = &units[k];
                                return p->sym[s].st_shndx;
                        }
        }
        return 0;
}

/* Position-independent code reaches a global through the GOT: "mov sym@GOTPCREL(%rip),
 * %reg", or "call/jmp *sym@GOTPCREL(%rip)" without a PLT. For the program's own symbol,
 * the instruction is rewritten as the linker relaxes it when the symbol is local, into
 * "lea sym(%rip), %reg" or "addr32 call/jmp sym" of the same length, so that its field
 * is a displacement to the symbol, which a ulp_rels record fills. Returns false when
 * the instruction is none of those. */
static bool relax_got_load(Unit *u, size_t sec, uint64_t off) {
        Obj *p = &u->patched;
        const unsigned char *b = sec_bytes(p, sec);
        size_t n = p->sh[sec].sh_size;

        if (!b || off < 2 || off + 4 > n)
                return false;
        if (!u->edited[sec]) {
                u->edited[sec] = xcalloc(n, 1);
                memcpy(u->edited[sec], b, n);
        }
        unsigned char *e = u->edited[sec];
        unsigned char op = e[off - 2], modrm = e[off - 1];
        if ((modrm & 0xc7) != 0x05)
                return false;            /* not RIP-relative */
        if (op == 0x8b) {
                e[off - 2] = 0x8d;
                return true;
        }
        if (op == 0xff && (modrm == 0x15 || modrm == 0x25)) {
                e[off - 2] = 0x67;
                e[off - 1] = modrm == 0x15 ? 0xe8 : 0xe9;
                return true;
        }
        return false;
}

/* The ulp_rels type of a reference to the program's symbol, rewriting a GOT load. */
static unsigned rebind_type(Unit *u, size_t sec, const GElf_Rela *r, const char *fn, const char *target) {
        unsigned type = GELF_R_TYPE(r->r_info);

        switch (type) {
        case R_X86_64_PC32: case R_X86_64_PLT32:
                return 1;
        case R_X86_64_64:
                return 2;
        case R_X86_64_GOTPCREL: case R_X86_64_GOTPCRELX: case R_X86_64_REX_GOTPCRELX:
                if (relax_got_load(u, sec, r->r_offset))
                        return 1;
                refuse("%s in %s reaches %s through the GOT with an instruction ulp-build cannot rewrite",
                       fn, u->patched.file, target);
        default:
                refuse("%s in %s refers to %s with relocation type %u (built without -fPIE or -fPIC?): not "
                       "supported", fn, u->patched.file, target, type);
        }
}

static void walk_rel(Unit *u, size_t sec, const GElf_Rela *r) {
        Obj *p = &u->patched;
        unsigned type = GELF_R_TYPE(r->r_info);
        Target t = rel_target(p, r);
        const char *fn = p->primary[sec] ? p->symname[p->primary[sec]] : p->sname[sec];
        const BinSym *bs = NULL;
        unsigned pos = 0;

        if (!rel_width(type))
                refuse("%s in %s: relocation type %u is not supported", fn, p->file, type);
        if (type == R_X86_64_TPOFF32 || type == R_X86_64_GOTTPOFF || type == R_X86_64_TLSGD ||
            type == R_X86_64_TLSLD || type == R_X86_64_DTPOFF32 ||
            (t.sec && (p->sh[t.sec].sh_flags & SHF_TLS)))
                refuse("%s in %s uses the thread-local variable %s: not supported", fn, p->file,
                       p->symname[t.named ? t.named : t.sym]);
        if (!t.sec) {
                const char *name = p->symname[t.sym];
                Unit *v;
                size_t vsec;
                /* Defined by the program itself (another source file, or a copy
                 * relocation of a library's variable): rebound to it. Else, defined by
                 * the fix (in a new source file or another changed one): it travels.
                 * Else the patch's own dynamic linking finds it (a library function
                 * through the PLT). */
                bs = bin_lookup(name, "", false, &pos);
                if (!bs && (vsec = unit_defines(name, &v))) {
                        walk(v, vsec);
                        return;
                }
                if (!bs) {
                        if (type == R_X86_64_PC32 || type == R_X86_64_32 || type == R_X86_64_32S)
                                refuse("%s in %s refers to %s, which %s does not define, in a way only a "
                                       "link-time address can fill", fn, p->file, name, binary_path);
                        return;
                }
                unsigned rt = rebind_type(u, sec, r, fn, name);
                add_proxy(name);
                add_rebind(u, sec, r, rt, r->r_addend, name, pos);
                return;
        }
        if (t.named && use_programs(u, t.named, &bs, &pos)) {
                unsigned rt = rebind_type(u, sec, r, fn, p->symname[t.named]);
                int64_t a = (int64_t)((uint64_t)r->r_addend + p->sym[t.sym].st_value - p->sym[t.named].st_value);
                add_rebind(u, sec, r, rt, a, p->symname[t.named], pos);
                return;
        }
        /* New code or data, a string literal, a jump table: it travels in the patch. */
        walk(u, t.sec);
}

static void walk(Unit *u, size_t sec) {
        Obj *p = &u->patched;

        if (u->kept[sec] || !(p->sh[sec].sh_flags & SHF_ALLOC))
                return;
        u->kept[sec] = true;
        for (size_t i = 0, n = obj_nrela(p, sec); i < n; i++) {
                GElf_Rela r = obj_rela(p, sec, i);
                walk_rel(u, sec, &r);
        }
}

/* ---- output ---- */

static FILE *out_open(const char *dir, const char *name) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        if (!f)
                die("cannot write %s: %s", path, strerror(errno));
        return f;
}

static void emit_string(FILE *f, const char *label, const char *s) {
        fprintf(f, "%s:\n        .byte ", label);
        for (; *s; s++)
                fprintf(f, "%u,", (unsigned char)*s);
        fprintf(f, "0\n");
}

typedef struct Func {
        int unit;
        size_t sec;
        char *symbol;
        unsigned pos;
} Func;

int main(int argc, char **argv) {
        const char *out = NULL, *name = NULL, *diff_path = NULL, *tree = NULL;
        int i;

        if (argc == 3 && strcmp(argv[1], "--check-binary") == 0) {
                /* before anything is built: a binary ulp-build cannot read or patch */
                if (elf_version(EV_CURRENT) == EV_NONE)
                        die("libelf too old");
                binary_path = argv[2];
                bin_open(binary_path);
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--binary") == 0 && i + 1 < argc)
                        binary_path = argv[++i];
                else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
                        out = argv[++i];
                else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
                        name = argv[++i];
                else if (strcmp(argv[i], "--diff") == 0 && i + 1 < argc)
                        diff_path = argv[++i];
                else if (strcmp(argv[i], "--tree") == 0 && i + 1 < argc)
                        tree = argv[++i];
                else
                        break;
        }
        if (!binary_path || !out || !name || i >= argc || (argc - i) % 2 != 0)
                die("usage: ulp-build-diff --binary PATH --out DIR --name NAME ORIG.o PATCHED.o [...]");
        if (elf_version(EV_CURRENT) == EV_NONE)
                die("libelf too old");
        bin_open(binary_path);
        if (diff_path && tree)
                read_diff(diff_path, tree);

        n_units = (argc - i) / 2;
        units = xcalloc((size_t)n_units, sizeof(*units));
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                u->k = k;
                /* "-": a source file the diff adds, whose every function is new */
                u->is_new = strcmp(argv[i + 2 * k], "-") == 0;
                if (u->is_new)
                        u->orig = (Obj){ .path = "-", .file = "" };
                else
                        obj_open(&u->orig, argv[i + 2 * k]);
                obj_open(&u->patched, argv[i + 2 * k + 1]);
                u->state = xcalloc(u->patched.shnum, sizeof(*u->state));
                u->kept = xcalloc(u->patched.shnum, sizeof(*u->kept));
                u->anchor = xcalloc(u->patched.shnum, sizeof(*u->anchor));
                u->edited = xcalloc(u->patched.shnum, sizeof(*u->edited));
                compare_functions(u);
                refuse_cxx(u);
                compare_data(u);
        }

        for (int k = 0; k < n_units; k++)
                check_clean_build(&units[k].orig);

        Func *funcs = NULL;
        size_t n_funcs = 0;
        /* A touched function the program has no symbol of exists only inlined. */
        const char *inlined = NULL;
        for (size_t t = 0; t < n_touched && !inlined; t++) {
                unsigned pos;
                bool found = false;
                for (size_t x = 0; x < n_bsyms && !found; x++)
                        found = bsyms[x].func && strcmp(bsyms[x].name, touched[t]) == 0;
                if (!found && !bin_lookup(touched[t], "", false, &pos))
                        inlined = touched[t];
        }
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                Obj *p = &u->patched;
                for (size_t s = 1; s < p->shnum; s++) {
                        if (u->state[s] != F_CHANGED)
                                continue;
                        const char *fname = p->symname[p->primary[s]];
                        any_change = true;
                        if (strstr(fname, ".cold"))
                                continue;        /* travels with its function */
                        unsigned pos;
                        const BinSym *bs = bin_lookup(fname, p->file,
                                                      GELF_ST_BIND(p->sym[p->primary[s]].st_info) == STB_LOCAL,
                                                      &pos);
                        if (!bs) {
                                /* Inlined everywhere in the program: its callers changed too. */
                                printf("inlined %s\n", fname);
                                continue;
                        }
                        check_redirect(fname, p->file, pos);
                        funcs = realloc(funcs, (n_funcs + 1) * sizeof(*funcs));
                        if (!funcs)
                                die("out of memory");
                        funcs[n_funcs++] = (Func){ .unit = k, .sec = s, .symbol = strdup(fname), .pos = pos };
                        u->anchor[s] = true;
                        if (is_touched(fname) || (!inlined && !n_touched))
                                printf("changed %s changed\n", fname);
                        else if (inlined)
                                printf("changed %s inlines changed %s()\n", fname, inlined);
                        else
                                printf("changed %s code-differs\n", fname);
                        walk(u, s);
                }
        }
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                for (size_t s = 1; s < u->patched.shnum; s++)
                        if (u->state[s] == F_NEW && u->kept[s])
                                printf("new %s\n", u->patched.symname[u->patched.primary[s]]);
        }
        if (!any_change)
                refuse("the diff changes no function of %s", binary_path);
        if (n_funcs == 0)
                refuse("every function the diff changes is inlined into callers that did not change: nothing to "
                       "redirect in %s", binary_path);

        /* Placeholders: a symbol the program defines that no patched object defines gets
         * a hidden definition, so that the link resolves; its ulp_rels record overrides. */
        FILE *m = out_open(out, "meta.s");
        fprintf(m, "        .section .note.GNU-stack,\"\",@progbits\n");
        for (size_t x = 0; x < n_proxies; x++) {
                bool defined = false;
                for (int k = 0; k < n_units && !defined; k++) {
                        Obj *p = &units[k].patched;
                        for (size_t s = 1; s < p->nsym && !defined; s++)
                                defined = GELF_ST_BIND(p->sym[s].st_info) != STB_LOCAL &&
                                          p->sym[s].st_shndx != SHN_UNDEF && strcmp(p->symname[s], proxies[x].name) == 0;
                }
                if (defined)
                        continue;
                fprintf(m, "        .section .bss.ulp_placeholder.%zu,\"aw\",@nobits\n        .balign 16\n"
                           "        .globl \"%s\"\n        .hidden \"%s\"\n\"%s\":\n        .zero 16\n",
                        x, proxies[x].name, proxies[x].name, proxies[x].name);
        }
        fprintf(m, "        .section ulp_info,\"awR\",@progbits\n        .balign 8\n"
                   "        .long " ULP_META_MAGIC_STR ", 0\n        .quad .Lname, .Ldesc\n");
        if (bin_build_id[0])
                fprintf(m, "        .section ulp_build_ids,\"awR\",@progbits\n        .balign 8\n"
                           "        .long " ULP_META_MAGIC_STR ", 0\n        .quad .Lobject, .Lbuildid\n");
        fprintf(m, "        .section ulp_funcs,\"awR\",@progbits\n        .balign 8\n");
        for (size_t f = 0; f < n_funcs; f++)
                fprintf(m, "        .long " ULP_META_MAGIC_STR ", %u\n        .quad .Lobject, .Lf%zu, ulp_a%d_%zu, .Lf%zu\n",
                        funcs[f].pos, f, funcs[f].unit, funcs[f].sec, f);
        if (n_rebinds)
                fprintf(m, "        .section ulp_rels,\"awR\",@progbits\n        .balign 8\n");
        for (size_t x = 0; x < n_rebinds; x++)
                fprintf(m, "        .long " ULP_META_MAGIC_STR ", %u\n        .quad .Lobject, .Lr%zu, "
                           "ulp_a%d_%zu + %" PRIu64 "\n        .long %u, 0\n        .quad %" PRId64 "\n",
                        rebinds[x].pos, x, rebinds[x].unit, rebinds[x].sec, rebinds[x].offset, rebinds[x].type,
                        rebinds[x].addend);
        fprintf(m, "        .section .rodata.ulp_strings,\"a\",@progbits\n");
        emit_string(m, ".Lname", name);
        emit_string(m, ".Ldesc", "made by ulp-build");
        emit_string(m, ".Lobject", bin_object);
        emit_string(m, ".Lbuildid", bin_build_id);
        for (size_t f = 0; f < n_funcs; f++) {
                char label[32];
                snprintf(label, sizeof(label), ".Lf%zu", f);
                emit_string(m, label, funcs[f].symbol);
        }
        for (size_t x = 0; x < n_rebinds; x++) {
                char label[32];
                snprintf(label, sizeof(label), ".Lr%zu", x);
                emit_string(m, label, rebinds[x].symbol);
                printf("rebind %s\n", rebinds[x].symbol);
        }
        if (fclose(m) != 0)
                die("cannot write meta.s");

        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                char fname[64];
                snprintf(fname, sizeof(fname), "anchors-%d", k);
                FILE *a = out_open(out, fname);
                for (size_t s = 1; s < u->patched.shnum; s++) {
                        if (!u->anchor[s])
                                continue;
                        for (size_t t = 1; t < u->patched.shnum; t++)
                                if (t != s && strcmp(u->patched.sname[t], u->patched.sname[s]) == 0)
                                        refuse("%s has two sections named %s: not supported", u->patched.file,
                                               u->patched.sname[s]);
                        fprintf(a, "--add-symbol\nulp_a%d_%zu=%s:0,global\n", k, s, u->patched.sname[s]);
                }
                for (size_t s = 1; s < u->patched.shnum; s++) {
                        char bin[64], path[4096];
                        if (!u->edited[s])
                                continue;
                        snprintf(bin, sizeof(bin), "section-%d-%zu", k, s);
                        FILE *b = out_open(out, bin);
                        if (fwrite(u->edited[s], 1, u->patched.sh[s].sh_size, b) != u->patched.sh[s].sh_size ||
                            fclose(b) != 0)
                                die("cannot write %s", bin);
                        snprintf(path, sizeof(path), "%s/%s", out, bin);
                        fprintf(a, "--update-section\n%s=%s\n", u->patched.sname[s], path);
                }
                if (fclose(a) != 0)
                        die("cannot write %s", fname);
        }
        return 0;
}
