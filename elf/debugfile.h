/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Separate debug files of stripped objects (docs/symbols.md): by build-id,
 * ROOT/.build-id/ab/cdef....debug, then by .gnu_debuglink, DIR/NAME, DIR/.debug/NAME and
 * ROOT/DIR/NAME, where ROOT is /usr/lib/debug (or $ULP_DEBUG_ROOT) and DIR the directory
 * of the object. Local files only: nothing is ever downloaded.
 */

#include <libelf.h>
#include <stdint.h>

#define DEBUGFILE_ROOT "/usr/lib/debug"

/* The root searched: $ULP_DEBUG_ROOT when set (and the process is not set-uid), else
 * DEBUGFILE_ROOT. */
const char *debugfile_root(void);

/* Finds the debug file of elf, the file at path (its real path, for .gnu_debuglink). A
 * candidate is used only if it has a .symtab and belongs to elf: the same build-id, or,
 * when elf has none, the CRC its .gnu_debuglink records. Returns 0 with *ret_fd and
 * *ret_path (the caller's), or -ENOENT; either way *ret_searched, when not NULL, is a
 * line saying what was tried and why each candidate was not used (the caller's). */
int debugfile_find(Elf *elf, const char *path, int *ret_fd, char **ret_path, char **ret_searched);

/* The CRC-32 .gnu_debuglink uses (the zlib/ISO-HDLC one) of the whole file at fd. */
int debugfile_crc32(int fd, uint32_t *ret);
