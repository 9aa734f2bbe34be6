/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The patch file as an ELF file, checked before any record is read from it
 * (patchmeta-file.c): its segments, relocations (RELA and RELR), sections and symbols.
 * Private to elf/patchmeta*.c.
 */

#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"

#ifndef SHT_RELR
#define SHT_RELR 19
#endif
#ifndef DT_RELRSZ
#define DT_RELRSZ 35
#define DT_RELR 36
#define DT_RELRENT 37
#endif

#define PATCH_PAGE 4096ULL
/* A patch's segments are mapped within 2 GiB of the code they patch, in one range
 * reserved up front: a span above this is a malformed file, not a patch. */
#define PATCH_SPAN_MAX (256ULL << 20)
#define PATCH_MAX_LOADS 16

typedef struct Reloc {
        uint64_t offset;         /* vaddr of the relocated word */
        uint64_t value;          /* the word's value at load bias 0 */
        bool resolved;           /* false: against a symbol the patch does not define */
} Reloc;

typedef struct PatchFile {
        int fd;                  /* our sealed copy (patchfile.h) */
        Elf *elf;
        const unsigned char *raw;
        size_t raw_size;
        GElf_Phdr *loads;
        size_t n_loads;
        Reloc *relocs;           /* sorted by offset */
        size_t n_relocs, alloc_relocs;
        size_t n_relr;           /* of them, from SHT_RELR sections */
        uint64_t dt_relr, dt_relrsz; /* what the dynamic section declares (0: none) */
        uint64_t relr_addr, relr_size; /* the allocated SHT_RELR section (size 0: none) */
        uint64_t *funcs, *objects; /* sorted starts of defined functions and of pointer
                                    * variables (not records), from .symtab or .dynsym */
        size_t n_funcs, n_objects;
        bool have_symtab;        /* stripped (no .symtab): starts are not checked */
        char *errbuf;
        size_t errlen;
} PatchFile;

/* A record being read: its section, index and address, for field reads and messages. */
typedef struct Rec {
        const char *sect;
        size_t index;
        uint64_t vaddr;
        const unsigned char *bytes;
} Rec;

const GElf_Phdr *pf_segment(const PatchFile *pf, uint64_t vaddr, uint64_t len);
const unsigned char *pf_bytes(const PatchFile *pf, uint64_t vaddr, uint64_t len);
bool pf_writable(const PatchFile *pf, uint64_t vaddr, uint64_t len);
int pf_read_segments(PatchFile *pf);
int pf_check_sections(PatchFile *pf);
int pf_check_section_placement(PatchFile *pf);
int pf_read_relocs(PatchFile *pf);
int pf_read_symbols(PatchFile *pf);
bool pf_starts(const PatchFile *pf, const uint64_t *v, size_t n, uint64_t vaddr);
const Reloc *pf_find_reloc(const PatchFile *pf, uint64_t vaddr);
