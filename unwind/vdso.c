/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The target's vDSO as an unwinder module. It has no file: its image is read from the
 * target's memory, once per Unwinder (the kernel maps it at exec and never moves it,
 * unless the process mremap()s it, which only checkpoint/restore does), into a sealed
 * memfd that libdwfl opens like any ELF file. Without it a thread stopped in
 * clock_gettime() or gettimeofday() (a hot loop of them is common) has its innermost
 * frame "outside any module": unreliable, retried, and an apply takes seconds.
 *
 * The image is the target's memory: hostile. libelf and libdw parse it as they parse
 * the target's files; it is bounded in size here, and what it could lie about (its CFI)
 * only decides whether that target's own threads look switchable.
 */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "unwind/unwind-internal.h"

/* The x86-64 vDSO is two pages; anything much larger is not one. */
#define VDSO_MAX (64u * 1024u)

/* The load bias of the image: its first PT_LOAD's page holds file offset 0, at start. */
static int vdso_bias(const uint8_t *img, size_t size, uint64_t start, uint64_t *ret) {
        Elf64_Ehdr eh;

        if (size < sizeof(eh))
                return -ENOEXEC;
        memcpy(&eh, img, sizeof(eh));
        if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
            eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > size ||
            (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > size - eh.e_phoff)
                return -ENOEXEC;
        for (size_t i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
                if (ph.p_type != PT_LOAD)
                        continue;
                *ret = start - ALIGN_DOWN(ph.p_vaddr - ph.p_offset, (uint64_t)4096);
                return 0;
        }
        return -ENOEXEC;
}

/* [vdso] in the target's maps, read now. */
static int vdso_find(pid_t pid, uint64_t *ret_start, uint64_t *ret_end) {
        _cleanup_(maplist_done) MapList maps = {};
        int r;

        r = maps_read(pid, &maps);
        if (r < 0)
                return r;
        for (size_t i = 0; i < maps.n; i++)
                if (maps.v[i].path && strcmp(maps.v[i].path, "[vdso]") == 0) {
                        *ret_start = maps.v[i].start;
                        *ret_end = maps.v[i].end;
                        return 0;
                }
        return -ENOENT;
}

/* Copies the target's vDSO image into a sealed memfd. Returns 0 with u->vdso_fd set, or
 * -errno (-ENOENT: the process has none, e.g. vdso=0). The module list's read of the
 * maps gives where it is, when it was taken from them: one read of /proc/PID/maps less
 * an operation. */
int unwinder_vdso_load(Unwinder *u, uint64_t start, uint64_t end) {
        _cleanup_free_ uint8_t *img = NULL;
        _cleanup_close_ int fd = -1;
        size_t size;
        int r;

        if (end == 0) {
                r = vdso_find(u->pid, &start, &end);
                if (r < 0)
                        return r;
        }
        if (end <= start)
                return -EINVAL;
        size = end - start;
        if (size == 0 || size > VDSO_MAX)
                return -EFBIG;
        img = malloc(size);
        if (!img)
                return -ENOMEM;
        r = u->read(u->userdata, start, img, size);
        if (r < 0)
                return r;
        r = vdso_bias(img, size, start, &u->vdso_bias);
        if (r < 0)
                return r;

        fd = memfd_create("ulp-vdso", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        if (pwrite(fd, img, size, 0) != (ssize_t)size)
                return -EIO;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
                return negative_errno();
        u->vdso_start = start;
        u->vdso_end = end;
        u->vdso_fd = TAKE_FD(fd);
        return 0;
}
