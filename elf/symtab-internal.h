/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The inside of a SymTab, shared by the files that make it: symtab.c (reading the
 * symbols, the name index, lookups by name) and symtab-index.c (the indexes built on
 * first use: by address, and compiler clones). Not for other callers.
 */

#include <gelf.h>
#include <stdbool.h>
#include <stdint.h>

#include "elf/symtab.h"

#define NO_ENTRY UINT32_MAX

typedef struct SymEntry {
        Symbol sym;
        uint32_t next;           /* the next entry of the same name in table order, or NO_ENTRY */
        bool from_dynsym;        /* this entry was read from .dynsym */
        bool in_dynsym;          /* present in .dynsym (exported to the dynamic linker) */
        bool hidden_version;     /* a non-default symbol version (name@VER, not name@@VER) */
        bool dropped;            /* a .dynsym entry repeating a .symtab one: no symbol of its own */
        bool head;               /* the first entry of its name */
} SymEntry;

/* A slot of the hash index: the name's hash and its first entry plus one (0: empty). */
typedef struct HashSlot {
        uint32_t hash;
        uint32_t head1;
} HashSlot;

/* A PT_LOAD segment of the running file, for checking a debug file's symbols. */
typedef struct LoadSeg {
        uint64_t vaddr, memsz;
        bool exec;
} LoadSeg;

struct SymTab {
        int fd;
        Elf *elf;
        char *path;              /* the module's real path, to find its debug file; or NULL */
        SymTabIndex want_index;
        bool debug_looked;       /* the debug file was looked for (symtab_find_debug()) */
        bool ready;              /* the symbols were read and indexed (symtab_ready())... */
        int ready_err;           /* ...or failed so: each later query returns it */
        int library;             /* a shared library (is_library()): 1, 0, or -1 not known yet */
        unsigned scans;          /* exported lookups answered from .dynsym without the index */
        int debug_fd;            /* the separate debug file the .symtab came from, or -1 */
        Elf *debug_elf;
        char *debug_path;
        char *searched;          /* what was searched, for messages (debugfile.c) */
        SymEntry *v;             /* in table order, dropped entries included */
        size_t n;
        SymTabIndex index;
        uint64_t seed;
        HashSlot *slots;         /* SYMTAB_INDEX_HASH: size mask + 1 */
        size_t mask;
        uint32_t *sorted;        /* SYMTAB_INDEX_SORTED: each name's first entry, by name */
        size_t n_sorted;
        LoadSeg *segs;           /* while loading a debug file's symbols */
        size_t n_segs;
        /* Built on first use. */
        bool addr_ready;
        uint32_t *by_addr;       /* sized functions, by value */
        size_t n_addr;
        bool clones_ready;
        uint32_t *clones;        /* functions whose name has a '.', by (name, table order) */
        size_t n_clones;
};

/* The symbols read and indexed, on the first query that needs them; 0, or the error of
 * that first try, for every query after it. */
int symtab__ready(const SymTab *st);

/* Binding rank for aliases at one address: the global name is the one to report. */
static inline int symtab__bind_rank(unsigned char bind) {
        return bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
}
