/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target: bytes as the memory of a target at a patch's mapping, rebuilt into an
 * ELF image (patch_image_rebuild(), what ulp does when /proc/PID/map_files is closed to
 * it) and read back as the unwinder and the symbol reader read it. The memory is the
 * target's, hostile: any input is refused or makes a bounded, sealed image without
 * section headers whose program headers are the ones read, and nothing crashes or leaks.
 */

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/module.h"
#include "elf/symtab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where the input lies in the pretend target: any address, not page 0. */
#define BASE 0x7f1200000000ULL

typedef struct Memory {
        const uint8_t *data;
        size_t size;
} Memory;

static int memory_read(void *userdata, uint64_t addr, void *buf, size_t len) {
        const Memory *m = userdata;

        if (addr < BASE || addr - BASE > m->size || len > m->size - (addr - BASE))
                return -EFAULT;
        memcpy(buf, m->data + (addr - BASE), len);
        return 0;
}

/* What the rebuilt image must be, and the readers of it. */
static void check_image(int fd, const Memory *mem) {
        Elf64_Ehdr eh, orig;
        struct stat st;
        SymTab *sym = NULL;
        Elf *elf = NULL;
        uint8_t id[64];

        if (fstat(fd, &st) < 0 || st.st_size > (64 << 20) || (size_t)st.st_size < sizeof(eh))
                __builtin_trap();
        if ((fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE) == 0)
                __builtin_trap();
        if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) || memory_read((void *)mem, BASE, &orig, sizeof(orig)) < 0)
                __builtin_trap();
        if (eh.e_shoff || eh.e_shnum || eh.e_phnum != orig.e_phnum || eh.e_phoff != orig.e_phoff ||
            eh.e_phnum == 0 || eh.e_phnum > 16)
                __builtin_trap();
        if (elf_open_fd(fd, &elf) >= 0) {
                (void)elf_read_build_id(elf, id, sizeof(id));
                elf_end(elf);
        }
        if (symtab_open_fd(fd, &sym) >= 0) {
                (void)symtab_lookup(sym, "ulp_patch_info", 0, NULL);    /* reads the symbols */
                symtab_free(sym);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Memory mem = { data, size };
        int fd = patch_image_rebuild(memory_read, &mem, BASE);

        if (fd >= 0) {
                check_image(fd, &mem);
                close(fd);
        } else if (fd != -ENOEXEC && fd != -EFAULT && fd != -ENOMEM) {
                __builtin_trap();   /* an error the caller would not expect */
        }
        return 0;
}
