/* SPDX-License-Identifier: LGPL-2.1-or-later */

#pragma once

/* ulp-build-diff's parts (docs/ulp-build.md): ulp-build-diff.c compares and writes the
 * patch's metadata; object.c reads the relocatable objects; program.c the running
 * program's binary; touched.c the functions a diff touches. */

#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elf/symtab.h"

/* The binary given with --binary, for messages. */
extern const char *binary_path;

/* A refusal: one line "ulp-build: ..." on stderr, exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) void refuse(const char *fmt, ...);
/* A usage or I/O error: exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
void *xcalloc(size_t n, size_t sz);

/* ---- relocatable objects (object.c) ---- */

typedef struct Obj {
        const char *path;
        Elf *e;
        size_t shnum;
        GElf_Shdr *sh;
        const char **sname;
        Elf_Data **data;
        size_t *rela_of;         /* section → its SHT_RELA section, 0 for none */
        GElf_Sym *sym;
        const char **symname;
        size_t nsym;
        size_t *primary;         /* section → its named symbol at offset 0, 0 for none */
        const char *file;        /* the STT_FILE name: the source file's */
} Obj;

/* Reads the object e (from path, for messages), which it then owns, and checks what
 * the rest relies on (symbol table, relocations). 0, or -errno with one line in err. */
int obj_load(Obj *o, const char *path, Elf *e, char *err, size_t errlen);
/* obj_load() of the file at path; an error exits (die()). */
void obj_open(Obj *o, const char *path);
/* Frees what obj_load() made, after a failed load too. */
void obj_close(Obj *o);
bool sec_is_code(const Obj *o, size_t i);
bool sec_is_strings(const Obj *o, size_t i);
/* A symbol that names a function or variable of the source (not a label or section). */
bool sym_is_named(const Obj *o, size_t s);
size_t obj_nrela(const Obj *o, size_t sec);
GElf_Rela obj_rela(const Obj *o, size_t sec, size_t i);
/* The section holding the function or variable called name, or 0. */
size_t obj_find(const Obj *o, const char *name, bool code);
const unsigned char *sec_bytes(const Obj *o, size_t sec);
/* The width of a relocated field, 0 for a type ulp-build does not know. */
unsigned rel_width(unsigned type);
bool rel_pcrel(unsigned type);

typedef struct Target {
        size_t sym;              /* the relocation's symbol */
        size_t sec;              /* the section it lands in, 0 when undefined */
        size_t named;            /* the function or variable it refers to, 0 for none */
} Target;

Target rel_target(const Obj *o, const GElf_Rela *r);
/* Whether section a of x and b of y hold the same code or data once relocated. */
bool sec_same(const Obj *x, size_t a, const Obj *y, size_t b);

/* ---- the running program's binary (program.c) ---- */

typedef struct BinSym {
        char *name;              /* without @VERSION */
        const char *file;        /* for a local: the STT_FILE before it */
        bool local, func;
        uint64_t value, size;
} BinSym;

extern BinSym *bsyms;
extern size_t n_bsyms;
extern char bin_object[256];     /* "" for an executable, else its soname or file name */
extern char bin_build_id[2 * 64 + 1];

/* Reads the binary e (from path, for messages), which it then owns: 0, or -errno with
 * one line in err (not an x86-64 ELF, not position-independent, no .symtab). */
int bin_load(Elf *e, const char *path, char *err, size_t errlen);
/* bin_load() of the file at path; an error is a refusal. */
void bin_open(const char *path);
/* Frees what bin_load() read, after a failed load too. */
void bin_close(void);
/* The program's symbol that name (defined in file, a local when local) is, and its
 * position for ulp's symbol lookup: 0 when the name alone finds it, else its rank
 * among the locals of that name. NULL when the program has none. */
const BinSym *bin_lookup(const char *name, const char *file, bool local, unsigned *pos);
/* The offset of the first byte where the clean build's function (section sec of o)
 * and the program's differ, the fields the linker fills left out, or UINT64_MAX. */
uint64_t bin_differs(const Obj *o, size_t sec, const BinSym *bs);

/* ---- whether ulp can redirect a function (redirect.c) ---- */

/* Whether ulp could write the entry jump of the function name (pos as for ulp's lookup)
 * of the binary whose symbols are st and whose file is e, open as fd: the patcher's own
 * check, on the file's bytes. 0, or -errno with ulpctl's line in msg. */
int redirect_check(const SymTab *st, Elf *e, int fd, const char *name, unsigned pos, char *msg, size_t msglen);
/* redirect_check() on binary_path; refuses, naming the function and why. */
void check_redirect(const char *name, const char *file, unsigned pos);

/* ---- the functions a diff touches (touched.c), for the report only ---- */

extern char **touched;
extern size_t n_touched;
bool is_touched(const char *name);
void read_diff(const char *path, const char *tree);
