/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/* Symbols of one ELF file: .symtab and .dynsym, with sizes; static symbols included.
 * A SymTab is for one thread at a time: some indexes are built by the first lookup that
 * needs them. */

#include <stdbool.h>
#include <stdint.h>
#include <libelf.h>

#include "common/macro.h"

typedef struct SymTab SymTab;

typedef struct Symbol {
        const char *name;        /* owned by the SymTab */
        uint64_t value;          /* ELF vaddr (add the module bias for a runtime address) */
        uint64_t size;
        unsigned char type;      /* STT_* */
        unsigned char bind;      /* STB_* */
        unsigned char visibility;/* STV_* */
        uint16_t shndx;
        bool from_debug_file;    /* read from the separate debug file (symtab_debug_path()) */
} Symbol;

/* Opens the ELF file at path (or an fd: the SymTab dups it); its defined symbols are
 * read and indexed by the first query that needs them, which then returns what that
 * reading failed with (-ENOMEM, -E2BIG), as every later query does. -ENOEXEC when it is
 * not an ELF file. */
int symtab_open(const char *path, SymTab **ret);
int symtab_open_fd(int fd, SymTab **ret);

/* The same for a module of a process, open at open_path (or fd), whose real path is
 * path: when the file has no .symtab (stripped), the .symtab of its separate debug file
 * is used in its place, found by build-id or .gnu_debuglink (elf/debugfile.h) and
 * checked to belong to the file. No debug file is no error: the SymTab then has the
 * file's .dynsym only, and symtab_searched() says what was looked for. */
int symtab_open_module(const char *open_path, const char *path, SymTab **ret);
int symtab_open_module_fd(int fd, const char *path, SymTab **ret);

/* How a SymTab finds a name: by a hash of it (the default: built in one pass), or by
 * binary search in the names sorted once (what the hash index falls back to when a
 * file's names collide too often; tests compare the two). Lookups give the same answers
 * either way. */
typedef enum SymTabIndex {
        SYMTAB_INDEX_HASH,
        SYMTAB_INDEX_SORTED,
} SymTabIndex;
int symtab_open_module_fd_index(int fd, const char *path, SymTabIndex index, SymTab **ret);
/* The index the SymTab ended up with. */
SymTabIndex symtab_index(const SymTab *st);

/* The debug file the .symtab came from, or NULL (the file's own, or none). */
const char *symtab_debug_path(const SymTab *st);
/* For a stripped file: one line naming the debug files looked for and why each was not
 * used ("no /usr/lib/debug/.build-id/ab/cdef.debug"), or NULL. */
const char *symtab_searched(const SymTab *st);

/* The first of names (NULL-terminated) that the file imports: an undefined .dynsym
 * entry. NULL when none. */
const char *symtab_find_import(const SymTab *st, const char *const *names);

/* Whether the file itself (its .symtab or .dynsym, never its separate debug file)
 * defines a symbol of that name (any kind but a section or file). Does not read the
 * file's other symbols into the SymTab. */
bool symtab_file_defines(const SymTab *st, const char *name);

/* Whether the file has a section of that name. */
bool symtab_has_section(const SymTab *st, const char *name);

/* Whether elf has a section of that type. */
bool elf_has_section_type(Elf *elf, Elf32_Word type);
void symtab_free(SymTab *st);
DEFINE_TRIVIAL_CLEANUP_FUNC(SymTab *, symtab_free);
/* libelf's handle, for every user of libelf in the core. */
DEFINE_TRIVIAL_CLEANUP_FUNC(Elf *, elf_end);

/* The Elf handle behind it (owned by the SymTab), for further reading. */
Elf *symtab_elf(const SymTab *st);

/* Looks up a defined symbol (function or object) by name.
 * pos == 0: the global or weak definition if there is one, else the local one if it is
 *           the only local of that name (-ENOTUNIQ when several locals share it);
 * pos >= 1: the pos-th STB_LOCAL definition of that name, in .symtab order.
 * A name that is no symbol but reads as a demangled C++ name ("ns::C::f(int) const")
 * designates the mangled symbol that demangles to it (elf/demangle.h); -ENOTUNIQ when
 * several functions do, -ENOTSUP when no demangler is available.
 * Returns 0, -ENOENT when absent. */
int symtab_lookup(const SymTab *st, const char *name, unsigned pos, Symbol *ret);

/* Looks up an exported definition (GLOBAL or WEAK, default or protected visibility),
 * as the dynamic linker would. -ENOENT when absent.
 * A .dynsym definition wins, GLOBAL before WEAK, the default symbol version (name@@V)
 * before others; failing that, a .symtab GLOBAL/WEAK of default or protected visibility
 * is returned (an executable's globals it does not export). */
int symtab_lookup_exported(const SymTab *st, const char *name, Symbol *ret);
/* How many exported lookups a shared library whose symbols are not read yet answers
 * from its .dynsym alone (each a walk over it) before its symbols are read and indexed.
 * Either way the symbol has the same name, value, type, binding and visibility; read
 * from .dynsym it is not from_debug_file and has .dynsym's size. Tests change it. */
extern unsigned symtab_scans_before_index;

/* The function symbol (STT_FUNC, or sized STT_NOTYPE) whose [value, value+size)
 * contains vaddr. -ENOENT when none. */
int symtab_lookup_addr(const SymTab *st, uint64_t vaddr, Symbol *ret);

/* The defined symbol (of any kind but absolute) starting lowest in [lo, hi). -ENOENT
 * when none starts there. */
int symtab_first_start(const SymTab *st, uint64_t lo, uint64_t hi, Symbol *ret);

/* Calls cb for every defined function symbol whose name starts with "NAME." followed by
 * a compiler clone suffix (constprop, isra, part, cold, lto_priv...). */
int symtab_foreach_clone(const SymTab *st, const char *name,
                         void (*cb)(const Symbol *sym, void *userdata), void *userdata);

/* The NT_GNU_BUILD_ID note of an ELF. Returns its length (> 0), 0 when it has none. */
int elf_read_build_id(Elf *elf, uint8_t *buf, size_t bufsize);

/* elf_begin() for reading fd: a file of at most ELF_READ_WHOLE_MAX bytes is read part by
 * part as libelf needs it, a larger one mapped when only root can change it (else read
 * part by part too). NULL when libelf refuses it. */
#define ELF_READ_WHOLE_MAX (256 * 1024)
Elf *elf_begin_read(int fd);

/* Whether fd's file is one only root (or this process's own user) can change: a sealed
 * memfd that cannot shrink, or a regular file of root's or ours, writable by no group or
 * other user, on a filesystem other than FUSE (whose server says what is in it). Only such a file may be mapped: a mapped file
 * that is truncated kills the reader with SIGBUS when it touches a page past the end, and
 * the files a target maps are its user's to truncate. */
bool elf_file_fixed(int fd);

/* The program header count of elf: 0, or -ENOEXEC when unreadable or above
 * ELF_PHDRS_MAX. Objects have a dozen; an extended count (PN_XNUM) of billions on a
 * sparse file of a target's user would hold every loop over them for minutes. */
#define ELF_PHDRS_MAX 4096
int elf_phdr_count(Elf *elf, size_t *ret);

/* Opens an ELF file for reading with libelf (elf_version() is taken care of).
 * -ENOEXEC when fd is not a 64-bit ELF file. The caller owns *ret (elf_end()); fd must
 * stay open as long as *ret is used. */
int elf_open_fd(int fd, Elf **ret);

/* Whether s (what follows a function name, e.g. ".constprop.0.isra.0" or ".cold") is a
 * sequence of compiler clone suffixes as symtab_foreach_clone() understands them. */
bool symbol_is_clone_suffix(const char *s);
