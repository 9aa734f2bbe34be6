/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/* /proc/PID/maps, parsed. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct MapEntry {
        uint64_t start, end;     /* [start, end) */
        uint64_t offset;         /* file offset of start */
        int prot;                /* PROT_READ | PROT_WRITE | PROT_EXEC */
        bool shared;             /* 's' rather than 'p' */
        unsigned dev_major, dev_minor;
        uint64_t inode;
        char *path;              /* NULL when anonymous; "[stack]", "[vdso]"... kept as is;
                                  * a trailing " (deleted)" is stripped and sets deleted */
        bool deleted;
} MapEntry;

typedef struct MapList {
        MapEntry *v;
        size_t n;
} MapList;

/* Reads /proc/PID/maps (in address order). Returns 0, or -errno
 * (-ESRCH when the process does not exist, -EFBIG past 32 MiB of text: elf/maps.c).
 * ret is filled, free with maplist_done(). */
int maps_read(pid_t pid, MapList *ret);

/* Parses the text of a maps file (for tests and for maps_read). */
int maps_parse(const char *text, MapList *ret);

void maplist_done(MapList *l);

/* The entry containing addr, or NULL. */
const MapEntry *maps_find(const MapList *l, uint64_t addr);
