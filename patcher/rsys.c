/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/mman.h>
#include <sys/syscall.h>

#include "common/macro.h"
#include "patcher/procmem.h"
#include "patcher/rsys.h"

int rsys(Target *t, Thread *th, long nr, long a0, long a1, long a2, long a3, long a4, long a5,
         long *ret) {
        const long args[6] = { a0, a1, a2, a3, a4, a5 };
        long r;
        int k;

        k = target_syscall(t, th, nr, args, &r);
        procmaps_drop(t);   /* it may have changed the mappings */
        if (k < 0)
                return k;
        if (r < 0 && r > -4096)
                return (int)r;
        if (ret)
                *ret = r;
        return 0;
}

/* The name goes below the borrowed thread's red zone, in the scratch room target_syscall()
 * leaves free (TARGET_SCRATCH): the thread is stopped and its stack pointer is not
 * moved, so nothing of the thread's is overwritten. */
int rsys_memfd_create(Target *t, Thread *th, const char *name, int *ret_fd) {
        size_t len = strlen(name) + 1;
        uint64_t where = ALIGN_DOWN(regs_sp(&th->regs) - 128 - 512, 16);
        long r = 0;
        int k;

        if (len > 256)
                return -ENAMETOOLONG;
        k = target_write(t, where, name, len);
        if (k < 0)
                return k;
        /* MFD_EXEC: patch code is mapped executable from it (vm.memfd_noexec); kernels
         * before 6.3 do not know the flag and refuse it with EINVAL. */
        k = rsys(t, th, SYS_memfd_create, (long)where, MFD_CLOEXEC | 0x0010U /* MFD_EXEC */,
                 0, 0, 0, 0, &r);
        if (k == -EINVAL)
                k = rsys(t, th, SYS_memfd_create, (long)where, MFD_CLOEXEC, 0, 0, 0, 0, &r);
        if (k < 0)
                return k;
        *ret_fd = (int)r;
        return 0;
}

int rsys_close(Target *t, Thread *th, int fd) {
        return rsys(t, th, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
}

int rsys_ftruncate(Target *t, Thread *th, int fd, uint64_t size) {
        return rsys(t, th, SYS_ftruncate, fd, (long)size, 0, 0, 0, 0, NULL);
}

int rsys_mmap(Target *t, Thread *th, uint64_t addr, uint64_t len, int prot, int flags, int fd,
              uint64_t off, uint64_t *ret_addr) {
        long r = 0;
        int k = rsys(t, th, SYS_mmap, (long)addr, (long)len, prot, flags, fd, (long)off, &r);
        if (k < 0)
                return k;
        if (addr && (uint64_t)r != addr) {
                /* A kernel without MAP_FIXED_NOREPLACE treats it as a hint. */
                (void)rsys_munmap(t, th, (uint64_t)r, len);
                return -EEXIST;
        }
        *ret_addr = (uint64_t)r;
        return 0;
}

int rsys_munmap(Target *t, Thread *th, uint64_t addr, uint64_t len) {
        return rsys(t, th, SYS_munmap, (long)addr, (long)len, 0, 0, 0, 0, NULL);
}
