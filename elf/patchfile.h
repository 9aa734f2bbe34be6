/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The one copy of a patch file that everything works from. A patch file comes from a
 * client that may still hold it writable: parsing it in place lets the client change
 * it between the check and the load, grow it past any size check, or truncate it so
 * that a mapping of it faults. So it is copied once, with read(), into a memfd of our
 * own that is then sealed: its contents and size can no longer change, and it can be
 * mapped and parsed without fear.
 */

#include <stddef.h>

#include "ulp/libulp.h"

#define PATCH_FILE_MAX ULP_PATCH_FILE_MAX

/* Whether fd is a memfd sealed against writing, growing and shrinking (its contents
 * are fixed) and no larger than PATCH_FILE_MAX. */
int patch_file_is_sealed(int fd);

/* A sealed copy of the regular file open at fd (read from offset 0, fd's offset is not
 * used), in *ret (O_CLOEXEC, the caller's to close). When fd already is a sealed copy
 * (patch_file_is_sealed), *ret is a duplicate of it and nothing is copied. Returns 0,
 * or: -EBADF fd is not a readable regular file, -EFBIG larger than PATCH_FILE_MAX
 * (checked on the bytes read, not on a size the client may change), -errno of a read
 * or of memfd_create. On error, if err is not NULL, a one-line reason is written to it. */
int patch_file_copy(int fd, int *ret, char *err, size_t errlen);
