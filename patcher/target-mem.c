/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The target's memory (target.h): process_vm_readv with /proc/PID/mem as fallback for
 * reads, pwrite on /proc/PID/mem for writes, gathered writes with process_vm_writev.
 */

#include <stdlib.h>
#include <string.h>
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

/* Gathered writes: their bytes one after another in buf, their places in remote. */
#define GATHER_MAX_WRITES 256
#define GATHER_MAX_BYTES (64 * 1024)

struct TargetGather {
        size_t n, used;
        int error;               /* the first failure of a flush made for a read, kept for end */
        struct iovec remote[GATHER_MAX_WRITES];
        uint8_t buf[GATHER_MAX_BYTES];
};

/* Writes out the queue: process_vm_writev from the first write not yet done; where it
 * stops (a page it may not write), that write goes through /proc/PID/mem and the rest
 * through process_vm_writev again. Order is kept: each write lands after the ones before. */
static int gather_flush(Target *t, struct TargetGather *g) {
        struct iovec local[GATHER_MAX_WRITES];
        size_t off = 0, i = 0;
        int r = 0;

        for (size_t k = 0; k < g->n; k++) {
                local[k] = (struct iovec) { g->buf + off, g->remote[k].iov_len };
                off += g->remote[k].iov_len;
        }
        while (i < g->n && r == 0) {
                ssize_t n = process_vm_writev(t->pid, local + i, g->n - i, g->remote + i, g->n - i, 0);
                size_t done = n > 0 ? (size_t)n : 0;
                /* Past the writes it finished. */
                while (i < g->n && done >= local[i].iov_len) {
                        done -= local[i].iov_len;
                        i++;
                }
                if (i == g->n)
                        break;
                /* Write i stopped after done bytes: its rest through /proc/PID/mem. */
                r = mem_xfer(t, (uint64_t)(uintptr_t)g->remote[i].iov_base + done,
                             (uint8_t *)local[i].iov_base + done, local[i].iov_len - done, true);
                i++;
        }
        g->n = g->used = 0;
        return r;
}

int target_write_flush(Target *t) {
        if (!t->gather || t->gather->n == 0)
                return 0;
        int r = gather_flush(t, t->gather);
        if (r < 0 && t->gather->error == 0)
                t->gather->error = r;
        return r;
}

int target_write_gather_begin(Target *t) {
        if (t->gather)
                return -EINVAL;
        /* Not zeroed: 68 KiB a load, and only the header fields are read before written. */
        t->gather = malloc(sizeof(*t->gather));
        if (!t->gather)
                return -ENOMEM;
        t->gather->n = t->gather->used = 0;
        t->gather->error = 0;
        return 0;
}

int target_write_gather_end(Target *t) {
        if (!t->gather)
                return 0;
        int r = target_write_flush(t);
        if (t->gather->error)
                r = t->gather->error;
        free(t->gather);
        t->gather = NULL;
        return r;
}

int target_read(Target *t, uint64_t addr, void *buf, size_t len) {
        int k = target_write_flush(t);
        if (k < 0)
                return k;
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
        int q = target_write_flush(t);

        if (q < 0)
                return q;
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
        struct TargetGather *g = t->gather;

        if (t->image_changed)
                return -ESTALE;   /* never a byte into a program we were not asked to patch */
        if (!g || len > GATHER_MAX_BYTES) {
                int r = target_write_flush(t);
                return r < 0 ? r : mem_xfer(t, addr, (void *)buf, len, true);
        }
        if (g->n == GATHER_MAX_WRITES || GATHER_MAX_BYTES - g->used < len) {
                int r = target_write_flush(t);
                if (r < 0)
                        return r;
        }
        memcpy(g->buf + g->used, buf, len);
        g->remote[g->n++] = (struct iovec) { (void *)(uintptr_t)addr, len };
        g->used += len;
        return 0;
}
