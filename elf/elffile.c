/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Reading an ELF file with libelf: opening it (read whole or mapped), its sections, its
 * build-id. What every reader of the core's ELF files shares (elf/symtab.h declares it);
 * the symbols themselves are elf/symtab.c's.
 */

#include <errno.h>
#include <gelf.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/symtab.h"

/*
 * A mapping costs an munmap() at elf_end(), and in a process whose threads ran on several
 * CPUs an unmap interrupts each of them to flush its TLB: ulpd opens the same small patch
 * and modules in every operation, on many drivers (docs/performance.md). A small file is
 * read part by part, as libelf needs it (ELF_C_READ): the headers and the sections asked
 * for, into memory that elf_end() frees. Read whole (ELF_C_FDREAD), the 200 KiB of a
 * program whose build-id and dynamic section alone are wanted cost a copy and a page
 * fault for each of its pages, in the fresh memory of a short-lived ulpctl --direct
 * (docs/performance.md, tenth round).
 */
Elf *elf_begin_read(int fd) {
        struct stat st;

        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= ELF_READ_WHOLE_MAX)
                return elf_begin(fd, ELF_C_READ, NULL);
        /* A larger file is mapped only when no one but root can truncate it under us
         * (elf_file_fixed()); any other is read part by part too: a truncation then fails
         * a read instead of killing the process. */
        return elf_begin(fd, elf_file_fixed(fd) ? ELF_C_READ_MMAP : ELF_C_READ, NULL);
}

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

int elf_phdr_count(Elf *elf, size_t *ret) {
        size_t n;

        if (elf_getphdrnum(elf, &n) < 0 || n > ELF_PHDRS_MAX)
                return -ENOEXEC;
        *ret = n;
        return 0;
}

bool elf_file_fixed(int fd) {
        struct statfs sf;
        struct stat st;
        int seals = fcntl(fd, F_GET_SEALS);

        if (seals >= 0)
                return (seals & F_SEAL_SHRINK) != 0;
        /* (a file of our own user: only we or root can change it, as for ulpctl --direct
         * run by the user on their own process) */
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
            (st.st_mode & (S_IWGRP | S_IWOTH)))
                return false;
        return fstatfs(fd, &sf) == 0 && sf.f_type != FUSE_SUPER_MAGIC;
}

int elf_open_fd(int fd, Elf **ret) {
        if (elf_version(EV_CURRENT) == EV_NONE)
                return -ELIBBAD;

        Elf *elf = elf_begin_read(fd);
        if (!elf)
                return -ENOEXEC;
        if (elf_kind(elf) != ELF_K_ELF || gelf_getclass(elf) != ELFCLASS64) {
                elf_end(elf);
                return -ENOEXEC;
        }
        *ret = elf;
        return 0;
}

bool elf_has_section_type(Elf *elf, Elf32_Word type) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                if (gelf_getshdr(scn, &sh) && sh.sh_type == type)
                        return true;
        }
        return false;
}

/* Finds NT_GNU_BUILD_ID in one note data buffer; returns its length, 0 when absent. */
static int build_id_in_notes(Elf_Data *data, uint8_t *buf, size_t bufsize) {
        GElf_Nhdr nh;
        size_t off = 0, name_off, desc_off;

        while (data && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
                if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
                    memcmp((const char *)data->d_buf + name_off, "GNU", 4) != 0)
                        continue;
                if (nh.n_descsz == 0 || nh.n_descsz > bufsize)
                        return -ENOBUFS;
                memcpy(buf, (const char *)data->d_buf + desc_off, nh.n_descsz);
                return (int)nh.n_descsz;
        }
        return 0;
}

/* Looks in the PT_NOTE segments first (present in every loadable object), then in the
 * SHT_NOTE sections (present in separate debug files, which may lack the segments). */
int elf_read_build_id(Elf *elf, uint8_t *buf, size_t bufsize) {
        size_t nph = 0;
        int r;

        if (elf_phdr_count(elf, &nph) == 0)
                for (size_t i = 0; i < nph; i++) {
                        GElf_Phdr ph;
                        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_NOTE)
                                continue;
                        Elf_Data *d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz,
                                                           ph.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
                        r = build_id_in_notes(d, buf, bufsize);
                        if (r != 0)
                                return r;
                }

        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
                        continue;
                r = build_id_in_notes(elf_getdata(scn, NULL), buf, bufsize);
                if (r != 0)
                        return r;
        }
        return 0;
}
