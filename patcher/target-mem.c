/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The target's memory (target.h): process_vm_readv with /proc/PID/mem as fallback for
 * reads, pwrite on /proc/PID/mem for writes.
 */

#include <sys/uio.h>

#include "common/macro.h"
#include "patcher/target.h"

/* All of [addr, addr + len) through /proc/PID/mem, read into buf or written from it
 * (never written to: pwrite only reads it). A short transfer is resumed; one that moves
 * nothing (0, or EIO for a page not mapped) is -EFAULT. */
static int mem_xfer(Target *t, uint64_t addr, void *buf, size_t len, bool write) {
        size_t done = 0;
        while (done < len) {
                char *p = (char *)buf + done;
                off_t off = (off_t)(addr + done);
                ssize_t n = write ? pwrite(t->mem_fd, p, len - done, off) : pread(t->mem_fd, p, len - done, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EIO ? -EFAULT : negative_errno();
                if (n == 0)
                        return -EFAULT;
                done += (size_t)n;
        }
        return 0;
}

int target_read(Target *t, uint64_t addr, void *buf, size_t len) {
        if (len == 0)
                return 0;
        struct iovec local = { .iov_base = buf, .iov_len = len };
        struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
        ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
        if (n == (ssize_t)len)
                return 0;
        /* Partial or refused (unreadable but present pages, e.g. execute-only, which
         * /proc/PID/mem reads with FOLL_FORCE; or process_vm_readv unavailable). */
        return mem_xfer(t, addr, buf, len, false);
}

int target_read_many(Target *t, const uint64_t *addrs, void *bufs, size_t each, size_t n) {
        enum { BATCH = 512 };
        struct iovec local[BATCH], remote[BATCH];

        for (size_t i = 0; i < n; i += BATCH) {
                size_t k = MIN((size_t)BATCH, n - i);
                for (size_t j = 0; j < k; j++) {
                        local[j] = (struct iovec) { (char *)bufs + (i + j) * each, each };
                        remote[j] = (struct iovec) { (void *)(uintptr_t)addrs[i + j], each };
                }
                if (process_vm_readv(t->pid, local, k, remote, k, 0) == (ssize_t)(k * each))
                        continue;
                /* Partial or refused: one by one, with target_read's fallback. */
                for (size_t j = 0; j < k; j++) {
                        int r = target_read(t, addrs[i + j], (char *)bufs + (i + j) * each, each);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int target_write(Target *t, uint64_t addr, const void *buf, size_t len) {
        if (t->image_changed)
                return -ESTALE;   /* never a byte into a program we were not asked to patch */
        return mem_xfer(t, addr, (void *)buf, len, true);
}
