/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/* The ELF modules (executable, shared libraries, ulp patches) of a live process. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BUILD_ID_MAX 64

typedef struct Module {
        char *path;              /* as in maps, " (deleted)" stripped; "/memfd:ulp-patch:NAME"
                                  * for patches ulp mapped */
        char *soname;            /* DT_SONAME, or NULL */
        char *open_path;         /* "/proc/PID/map_files/START-END" of its offset-0 mapping: the
                                  * very file that is mapped, even if replaced on disk; for a
                                  * patch when map_files is closed to us (no
                                  * CAP_CHECKPOINT_RESTORE), "/proc/self/fd/N" of image_fd */
        bool has_image_fd;       /* image_fd holds the patch's image, read from the target's
                                  * memory (closed by modulelist_done) */
        int image_fd;
        bool is_main;            /* the main executable */
        bool deleted;            /* the file was removed or replaced on disk since mapped */
        bool is_patch;           /* a ulp patch mapping (path starts with "/memfd:ulp-patch:") */
        uint16_t e_type;         /* ET_EXEC or ET_DYN */
        uint64_t bias;           /* load bias: runtime address = ELF vaddr + bias */
        uint64_t start, end;     /* span of all its mappings */
        uint8_t build_id[BUILD_ID_MAX];
        size_t build_id_len;     /* 0 when it has none */
        /* its offset-0 mapping as the maps showed it: modules_reread_maps() knows it again */
        uint64_t map_start, map_end, map_inode;
        unsigned map_dev_major, map_dev_minor;
} Module;

typedef struct ModuleList {
        Module *v;
        size_t n;                /* in load order: the main executable first, then the link_map
                                  * order of the target's dynamic linker (r_debug) when it can be
                                  * read, else address order; patches last */
        uint64_t vdso_start, vdso_end; /* the [vdso] mapping in the same maps; 0, 0: none,
                                  * or not read with them (the unwinder reads the maps) */
} ModuleList;

/* The most modules a process may have for ulp: every one is a file read and, in the
 * unwinder, a descriptor held for the operation, and a process can map one small ELF
 * file at tens of thousands of addresses. Real programs have a few hundred at most. */
#define MODULES_MAX 4096

/* Reads the ELF modules of process pid from /proc/PID/maps and the files behind them
 * (through /proc/PID/map_files). Needs ptrace-read permission on pid. -E2BIG when it has
 * more than MODULES_MAX (found before the rest are read). */
int modules_read(pid_t pid, ModuleList *ret);
/* The same from maps already read (elf/maps.h). */
struct MapList;
int modules_read_maps(pid_t pid, const struct MapList *maps, ModuleList *ret);
void modulelist_done(ModuleList *l);
/* As modules_read_maps(), for a list read moments ago (prev, of the same process): a
 * module whose offset-0 mapping is unchanged (range, device, inode, path, not deleted) is
 * copied from prev, not read from its file again, and when the only modules added or
 * removed are patches the order is prev's, patches last, without reading the target's
 * link_map again. Anything else is read as modules_read_maps() reads it. For a refresh
 * within one operation (after the patch's load); prev's staleness is the caller's. */
int modules_reread_maps(pid_t pid, const struct MapList *maps, const ModuleList *prev, ModuleList *ret);

/* The module an object name of the patch API designates: ULP_MAIN ("") is the main
 * executable; anything else matches a DT_SONAME, then a file basename. NULL if none. */
const Module *modules_find_object(const ModuleList *l, const char *object);

/* The module whose span contains addr, or NULL. */
const Module *modules_find_addr(const ModuleList *l, uint64_t addr);

/* Reads len bytes at addr of a process's memory: 0, or -errno when not all of them. */
typedef int (*PatchImageRead)(void *userdata, uint64_t addr, void *buf, size_t len);

/* A patch's ELF image rebuilt from memory mapped at start (docs/symbols.md): its PT_LOAD
 * segments' file bytes put back at their file offsets, the section headers dropped (they
 * are not loaded). Enough for the unwinder (program headers, PT_GNU_EH_FRAME, .eh_frame)
 * and for naming the patch's frames. At most 16 program headers and 64 MiB. Returns a
 * sealed memfd, or -errno (-ENOEXEC: not an image this rebuilds). */
int patch_image_rebuild(PatchImageRead read_mem, void *userdata, uint64_t start);

/* The cache of what modules' files say, by file identity (module.c): how often it
 * answered and how often a file was read, and emptied (for tests). */
void modules_cache_stats(unsigned long *hits, unsigned long *misses);
void modules_cache_flush(void);

/* "a50d68..." (lower-case hex) of a build-id. buf must hold 2*len+1 bytes. */
void build_id_to_hex(const uint8_t *id, size_t len, char *buf);
