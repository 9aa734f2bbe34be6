/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The sealed copy of a patch file: see patchfile.h. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "elf/patchfile.h"

#define SEALS_FIXED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int patch_file_is_sealed(int fd) {
        struct stat st;
        int seals = fcntl(fd, F_GET_SEALS);

        /* EINVAL: not a file that can be sealed, so not one of our copies. */
        if (seals < 0 || (seals & SEALS_FIXED) != SEALS_FIXED)
                return false;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > PATCH_FILE_MAX)
                return false;
        return true;
}

/* Copies up to PATCH_FILE_MAX bytes of src into dst; -EFBIG when src holds more. The
 * size is what read() returns, never what fstat() said: the file may change meanwhile. */
static int copy_bounded(int src, int dst) {
        static const size_t chunk = 1 << 16;
        _cleanup_free_ char *buf = malloc(chunk);
        uint64_t off = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                /* One byte past the cap tells a file at the cap from one above it. */
                size_t want = (size_t)MIN((uint64_t)chunk, PATCH_FILE_MAX + 1 - off);
                ssize_t n = pread(src, buf, want, (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return 0;
                off += (uint64_t)n;
                if (off > PATCH_FILE_MAX)
                        return -EFBIG;
                for (ssize_t done = 0; done < n; ) {
                        ssize_t w = write(dst, buf + done, (size_t)(n - done));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                return w < 0 ? negative_errno() : -EIO;
                        done += w;
                }
        }
}

int patch_file_copy(int fd, int *ret, char *err, size_t errlen) {
        _cleanup_close_ int copy = -1;
        struct stat st;
        int fl, r;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return fail(err, errlen, -EBADF, "the patch is not a regular file");
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || (fl & O_PATH))
                return fail(err, errlen, -EBADF, "the patch file descriptor is not readable");
        if (patch_file_is_sealed(fd)) {
                copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (copy < 0)
                        return negative_errno();
                *ret = TAKE_FD(copy);
                return 0;
        }
        /* Refused early when the size already says so; the copy checks again. */
        if ((uint64_t)st.st_size > PATCH_FILE_MAX)
                return fail(err, errlen, -EFBIG, "the patch file is larger than %llu MiB",
                            PATCH_FILE_MAX >> 20);

        copy = memfd_create("ulp-patch-copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (copy < 0)
                return fail(err, errlen, negative_errno(), "cannot copy the patch: %s",
                            errno_clause(errno));
        r = copy_bounded(fd, copy);
        if (r == -EFBIG)
                return fail(err, errlen, r, "the patch file is larger than %llu MiB",
                            PATCH_FILE_MAX >> 20);
        if (r < 0)
                return fail(err, errlen, r, "cannot read the patch file: %s", errno_clause(r));
        if (fcntl(copy, F_ADD_SEALS, SEALS_FIXED | F_SEAL_SEAL) < 0)
                return fail(err, errlen, negative_errno(), "cannot seal the copy of the patch: %s",
                            errno_clause(errno));
        *ret = TAKE_FD(copy);
        return 0;
}
