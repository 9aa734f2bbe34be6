/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "elf/relr.h"
#include "patcher/control.h"
#include "patcher/ifunc.h"
#include "elf/symtab.h"
#include "patcher/loader.h"
#include "patcher/nearmem.h"
#include "patcher/procmem.h"
#include "patcher/rsys.h"
#include "patcher/symcache.h"
#include "runtime/shadow-abi.h"
#include "ulp/patch.h"

#define PAGE 4096ULL

#define _cleanup_elf_ _cleanup_(elf_endp)

static int open_elf(int fd, Elf **ret) {
        Elf *e;
        elf_version(EV_CURRENT);
        e = elf_begin_read(fd);
        if (!e)
                return -ENOEXEC;
        if (elf_kind(e) != ELF_K_ELF) {
                elf_end(e);
                return -ENOEXEC;
        }
        *ret = e;
        return 0;
}

int resolver_symtab(SymResolver *res, size_t idx, SymTab **ret) {
        if (!res->symtabs[idx]) {
                const Module *m = &res->mods->v[idx];
                int r = symcache_open(m->open_path, m->is_patch ? NULL : m->path, &res->symtabs[idx]);
                if (r < 0)
                        return r;
        }
        *ret = res->symtabs[idx];
        return 0;
}

/* As the dynamic linker's global scope: the target's objects in load order. Patches
 * already mapped are not part of it. An IFUNC definition stands for the implementation
 * the target's dynamic linker chose or its resolver returns (ifunc.h). A
 * static executable's globals of any visibility stand in for the exports it lacks. */
/* Whether the ELF of a main executable has no program interpreter: statically linked. */
static bool is_static(Elf *e) {
        size_t n;

        if (elf_getphdrnum(e, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                if (gelf_getphdr(e, (int)i, &ph) && (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC))
                        return false;
        }
        return true;
}

/* A static executable exports nothing, and its libc functions are hidden: a patch's
 * undefined symbols bind to its global definitions whatever their visibility. */
static int lookup_static(Target *t, SymResolver *res, const char *name, uint64_t *ret_addr, char *err,
                         size_t errlen) {
        for (size_t i = 0; i < res->mods->n; i++) {
                const Module *m = &res->mods->v[i];
                SymTab *st;
                Symbol sym;
                if (!m->is_main || resolver_symtab(res, i, &st) < 0 || !is_static(symtab_elf(st)))
                        continue;
                if (symtab_lookup(st, name, 0, &sym) < 0 || sym.bind == STB_LOCAL)
                        return -ENOENT;
                if (sym.type == STT_GNU_IFUNC)
                        return ifunc_resolve(t, res, i, name, &sym, ret_addr, err, errlen);
                *ret_addr = sym.value + m->bias;
                return 0;
        }
        return -ENOENT;
}

int resolver_lookup_exported(Target *t, SymResolver *res, const char *name, uint64_t *ret_addr,
                             char *err, size_t errlen) {
        for (size_t i = 0; i < res->mods->n; i++) {
                const Module *m = &res->mods->v[i];
                SymTab *st;
                Symbol sym;
                if (m->is_patch || resolver_symtab(res, i, &st) < 0)
                        continue;
                if (symtab_lookup_exported(st, name, &sym) < 0)
                        continue;
                if (sym.type == STT_GNU_IFUNC)
                        return ifunc_resolve(t, res, i, name, &sym, ret_addr, err, errlen);
                *ret_addr = sym.value + m->bias;
                return 0;
        }
        return lookup_static(t, res, name, ret_addr, err, errlen);
}

/* The span of the PT_LOAD segments, page aligned. */
static int load_span(Elf *e, uint64_t *ret_lo, uint64_t *ret_hi) {
        size_t n;
        uint64_t lo = UINT64_MAX, hi = 0;
        if (elf_getphdrnum(e, &n) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
                        continue;
                lo = MIN(lo, ALIGN_DOWN(ph.p_vaddr, PAGE));
                hi = MAX(hi, ALIGN_UP(ph.p_vaddr + ph.p_memsz, PAGE));
        }
        if (hi <= lo)
                return -EBADMSG;
        *ret_lo = lo;
        *ret_hi = hi;
        return 0;
}

/*
 * Copies the patch file into the memfd the target just made, as fd remote_fd. Another
 * thread of the process may have put another file at that number since (dup2), and an
 * open of /proc/PID/fd/N for writing would open that file anew, with our credentials
 * (a file the process could only read, say /etc/passwd). So the file is taken with
 * O_PATH (nothing of it opened: a device's open could act), and written, reopened
 * through that very descriptor, only when it is what memfd_create made: an empty,
 * unlinked regular file of shared memory that the process's own user owns (a file it
 * could write itself anyway).
 */
static int copy_into_memfd(Target *t, int remote_fd, int patch_fd, char *err, size_t errlen) {
        char path[64], buf[65536];
        _cleanup_close_ int pfd = -1, fd = -1;
        struct statfs sf;
        struct stat st;
        off_t off = 0;
        uid_t owner = target_fsuid(t);

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", t->pid, remote_fd);
        pfd = open(path, O_PATH | O_CLOEXEC);
        if (pfd < 0)
                return fail(err, errlen, negative_errno(), "cannot copy the patch into the target: cannot take its "
                            "memfd (fd %d): %s", remote_fd, process_errno_clause(negative_errno()));
        if (fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 || st.st_size != 0 ||
            owner == (uid_t)-1 || st.st_uid != owner || fstatfs(pfd, &sf) < 0 || sf.f_type != TMPFS_MAGIC)
                return fail(err, errlen, -EBADF, "cannot copy the patch into the target: its fd %d is not the memfd "
                            "made for the patch any more (the process put another file at that number); nothing "
                            "was written", remote_fd);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return fail(err, errlen, negative_errno(), "cannot copy the patch into the target: %s",
                            process_errno_clause(negative_errno()));
        for (;;) {
                ssize_t n = pread(patch_fd, buf, sizeof(buf), off);
                if (n < 0)
                        return fail(err, errlen, negative_errno(), "cannot copy the patch into the target: %s",
                                    process_errno_clause(negative_errno()));
                if (n == 0)
                        return 0;
                if (pwrite(fd, buf, (size_t)n, off) != n)
                        return fail(err, errlen, -EIO, "cannot copy the patch into the target: %s",
                                    process_errno_clause(-EIO));
                off += n;
        }
}

static int prot_of(uint32_t flags) {
        return (flags & PF_R ? PROT_READ : 0) | (flags & PF_W ? PROT_WRITE : 0) |
               (flags & PF_X ? PROT_EXEC : 0);
}

/* Maps one PT_LOAD over our own reservation (MAP_FIXED is safe there: the range is
 * ours since the MAP_FIXED_NOREPLACE reservation), zeroing its .bss part. */
static int map_segment(Target *t, Thread *th, int remote_fd, uint64_t bias, const GElf_Phdr *ph) {
        uint64_t start = ALIGN_DOWN(ph->p_vaddr, PAGE), file_end = ph->p_vaddr + ph->p_filesz;
        uint64_t map_end = ALIGN_UP(file_end, PAGE), mem_end = ALIGN_UP(ph->p_vaddr + ph->p_memsz, PAGE);
        uint64_t got;
        int prot = prot_of(ph->p_flags), r;

        if (ph->p_filesz > 0) {
                r = rsys_mmap(t, th, bias + start, map_end - start, prot, MAP_PRIVATE | MAP_FIXED,
                              remote_fd, ALIGN_DOWN(ph->p_offset, PAGE), &got);
                if (r < 0)
                        return r;
        } else
                map_end = start;
        if (ph->p_memsz > ph->p_filesz && map_end > file_end) {
                static const uint8_t zero[PAGE];
                r = target_write(t, bias + file_end, zero, map_end - file_end);
                if (r < 0)
                        return r;
        }
        if (mem_end > map_end) {
                r = rsys_mmap(t, th, bias + map_end, mem_end - map_end, prot,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &got);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The reservation maps the file read-only over the whole span, page lo at offset 0
 * (reserve()): a read-only segment found there at its place in the file, with no .bss,
 * is mapped by it already (the first and third of a usual R, RX, R, RW library). */
static bool mapped_by_reservation(const GElf_Phdr *ph, uint64_t lo) {
        return prot_of(ph->p_flags) == PROT_READ && ph->p_memsz == ph->p_filesz &&
               ALIGN_DOWN(ph->p_offset, PAGE) == ALIGN_DOWN(ph->p_vaddr, PAGE) - lo;
}

static int map_segments(Target *t, Thread *th, Elf *e, int remote_fd, uint64_t lo, uint64_t bias) {
        size_t n;
        if (elf_getphdrnum(e, &n) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                int r;
                if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || mapped_by_reservation(&ph, lo))
                        continue;
                r = map_segment(t, th, remote_fd, bias, &ph);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The span, claimed with MAP_FIXED_NOREPLACE (a race with the process's own mmap fails
 * cleanly: -EEXIST): the memfd read-only from offset 0, which is already where the
 * read-only segments at their place in the file belong, the rest mapped over it. */
static int reserve(Target *t, Thread *th, int remote_fd, uint64_t addr, uint64_t len, uint64_t *ret) {
        return rsys_mmap(t, th, addr, len, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, remote_fd, 0, ret);
}

int loader_map(Target *t, Thread *th, struct Control *c, int patch_fd, const char *name, uint64_t near_lo,
               uint64_t near_hi, LoadedPatch *ret, char *err, size_t errlen) {
        _cleanup_elf_ Elf *e = NULL;
        const MapList *maps;
        char memfd_name[200];
        uint64_t lo, hi, addr = 0;
        int remote_fd = -1, r;

        r = open_elf(patch_fd, &e);
        if (r < 0)
                return fail(err, errlen, r, "the patch is not an ELF file");
        r = load_span(e, &lo, &hi);
        if (r < 0)
                return fail(err, errlen, r, "the patch has no loadable segments");

        r = procmaps_get(t, &maps);
        if (r < 0)
                return fail(err, errlen, r, "cannot read the target's memory map");
        r = nearmem_find(maps, near_lo, near_hi, hi - lo, &addr);
        if (r < 0)
                return fail(err, errlen, r, "no free address range within 2 GiB of the patched module");

        snprintf(memfd_name, sizeof(memfd_name), PATCH_MAPPING_PREFIX "%.180s", name);
        /* The memfd is an fd of the target until its close below, and the mapping is
         * nobody's until the caller records it: the block names both for as long, so
         * that the next operation takes back what a killed driver left (loader-fd.c). */
        if (c && (r = loader_fd_record(t, c, memfd_name, addr, hi - lo)) < 0)
                return fail(err, errlen, r, "cannot update the control block: %s", process_errno_clause(r));
        /* Five to eight system calls in a row on one thread: one batch (target.h). */
        r = target_syscall_batch_begin(t, th);
        if (r < 0) {
                fail(err, errlen, r, "cannot run system calls in the target: %s", process_errno_clause(r));
                goto unrecord;
        }
        r = rsys_memfd_create(t, th, memfd_name, &remote_fd);
        if (r < 0) {
                fail(err, errlen, r, "memfd_create in the target failed: %s", process_errno_clause(r));
                goto out;
        }
        if (c && (r = loader_fd_opened(t, c, remote_fd)) < 0) {
                fail(err, errlen, r, "cannot update the control block: %s", process_errno_clause(r));
                goto out;
        }
        r = copy_into_memfd(t, remote_fd, patch_fd, err, errlen);
        if (r < 0)
                goto out;
        r = reserve(t, th, remote_fd, addr, hi - lo, &addr);
        if (r == -EEXIST) {
                /* The process mapped that range since the maps were read: once more. */
                r = procmaps_get(t, &maps);
                if (r >= 0)
                        r = nearmem_find(maps, near_lo, near_hi, hi - lo, &addr);
                /* The record names the range reserved, not the one refused. */
                if (r >= 0 && c)
                        r = loader_fd_moved(t, c, addr);
                if (r >= 0)
                        r = reserve(t, th, remote_fd, addr, hi - lo, &addr);
        }
        if (r < 0) {
                fail(err, errlen, r, "cannot reserve memory near the patched module: %s", process_errno_clause(r));
                goto out;
        }
        r = map_segments(t, th, e, remote_fd, lo, addr - lo);
        if (r < 0) {
                fail(err, errlen, r, "cannot map the patch's segments: %s", process_errno_clause(r));
                (void)rsys_munmap(t, th, addr, hi - lo);
                goto out;
        }
        *ret = (LoadedPatch) { .start = addr, .size = hi - lo, .bias = addr - lo };
out:
        if (remote_fd >= 0 && rsys_close(t, th, remote_fd) < 0)
                c = NULL;   /* still open: the record stays, for the next operation */
        int k = target_syscall_batch_end(t, th);
unrecord:
        /* Loaded: the caller's write of the patch's record clears it. */
        if (c && (r < 0 || k < 0)) {
                loader_fd_clear(c);
                (void)control_write_header(t, c);
        }
        return r < 0 ? r : k;
}

int loader_unmap(Target *t, Thread *th, uint64_t start, uint64_t size) {
        return rsys_munmap(t, th, start, size);
}

/* ulp_shadow_* binds to the process's one shadow-variable runtime, whatever the target
 * exports under that name (docs/shadow.md). */
static int shadow_symbol(SymResolver *res, const char *name, bool linking, uint64_t *ret, char *err,
                         size_t errlen) {
        static const char *const names[] = { ULP_SHADOW_ENTRY_NAMES };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                if (strcmp(name, names[i]) != 0)
                        continue;
                res->wants_shadow = true;
                if (res->shadow)
                        *ret = res->shadow[i];
                else if (linking)
                        return fail(err, errlen, -ENOENT, "symbol %s: the shadow-variable runtime is not "
                                    "loaded", name);
                else
                        *ret = 0;
                return 0;
        }
        return fail(err, errlen, -ENOENT, "undefined symbol %s is not part of ulp's shadow-variable API", name);
}

/* The patch's own IFUNCs stay refused (docs/reach.md): their resolvers are the patch's
 * code, run before the patch has a record that would keep it mapped past a deadline,
 * and without the constructors such resolvers rely on. */
static int self_ifunc(const char *name, char *err, size_t errlen) {
        return fail(err, errlen, -ENOTSUP, "the patch defines an IFUNC (%s), which ulp does not support: its "
                    "resolver, the patch's own code, would run in the target before the patch is recorded "
                    "(docs/reach.md)", name);
}

/* The name of the patch's IFUNC whose resolver is at value (an IRELATIVE addend). */
static const char *ifunc_name_at(Elf *e, uint64_t value) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
                    !sh.sh_entsize || !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Sym sym;
                        const char *name;
                        if (gelf_getsym(d, (int)i, &sym) && GELF_ST_TYPE(sym.st_info) == STT_GNU_IFUNC &&
                            sym.st_value == value && (name = elf_strptr(e, sh.sh_link, sym.st_name)) && name[0])
                                return name;
                }
        }
        return "unnamed";
}

/* The value a dynamic relocation's symbol stands for. */
static int reloc_symbol(Target *t, Elf *e, GElf_Shdr *rsh, uint32_t symidx, SymResolver *res,
                        const LoadedPatch *lp, uint64_t *ret, char *err, size_t errlen) {
        Elf_Scn *symscn = elf_getscn(e, rsh->sh_link);
        GElf_Shdr ssh;
        GElf_Sym sym;
        Elf_Data *d;
        const char *name;
        int r;

        if (!symscn || !gelf_getshdr(symscn, &ssh) || !(d = elf_getdata(symscn, NULL)) ||
            !gelf_getsym(d, (int)symidx, &sym))
                return fail(err, errlen, -EBADMSG, "bad symbol index %u in a relocation", symidx);
        name = elf_strptr(e, ssh.sh_link, sym.st_name);
        if (!name)
                name = "?";
        if (GELF_ST_TYPE(sym.st_info) == STT_GNU_IFUNC && sym.st_shndx != SHN_UNDEF)
                return self_ifunc(name, err, errlen);
        if (GELF_ST_TYPE(sym.st_info) == STT_TLS)
                return fail(err, errlen, -ENOTSUP, "the patch uses thread-local storage (%s): not supported", name);
        if (sym.st_shndx != SHN_UNDEF) {
                *ret = sym.st_value + (lp ? lp->bias : 0);
                return 0;
        }
        if (strncmp(name, "ulp_shadow_", strlen("ulp_shadow_")) == 0)
                return shadow_symbol(res, name, lp != NULL, ret, err, errlen);
        r = resolver_lookup_exported(t, res, name, ret, err, errlen);
        /* A dry run: the resolver runs when the patch is linked for real. */
        if ((r == -EAGAIN && !lp) || (r == -ENOENT && GELF_ST_BIND(sym.st_info) == STB_WEAK)) {
                *ret = 0;
                return 0;
        }
        if (r == -ENOENT)
                return fail(err, errlen, -ENOENT, "undefined symbol %s not found in the target", name);
        return r;
}

static int apply_rela(Target *t, Elf *e, const GElf_Rela *rel, GElf_Shdr *rsh, SymResolver *res,
                      const LoadedPatch *lp, char *err, size_t errlen) {
        uint32_t type = GELF_R_TYPE(rel->r_info);
        uint64_t v = 0, s = 0;
        int r;

        switch (type) {
        case R_X86_64_NONE:
                return 0;
        case R_X86_64_RELATIVE:
                v = (lp ? lp->bias : 0) + (uint64_t)rel->r_addend;
                break;
        case R_X86_64_64:
        case R_X86_64_GLOB_DAT:
        case R_X86_64_JUMP_SLOT:
                r = reloc_symbol(t, e, rsh, GELF_R_SYM(rel->r_info), res, lp, &s, err, errlen);
                if (r < 0)
                        return r;
                v = s + (type == R_X86_64_64 ? (uint64_t)rel->r_addend : 0);
                break;
        case R_X86_64_DTPMOD64:
        case R_X86_64_DTPOFF64:
        case R_X86_64_TPOFF64:
        case R_X86_64_TLSDESC:
                return fail(err, errlen, -ENOTSUP, "the patch uses thread-local storage: not supported");
        case R_X86_64_IRELATIVE:
                return self_ifunc(ifunc_name_at(e, (uint64_t)rel->r_addend), err, errlen);
        default:
                return fail(err, errlen, -ENOTSUP, "relocation type %u in the patch is not supported", type);
        }
        if (!lp)
                return 0;
        return target_write(t, lp->bias + rel->r_offset, &v, sizeof(v));
}

#ifndef SHT_RELR
#define SHT_RELR 19
#endif

typedef struct RelrCtx {
        Target *t;
        Elf *e;
        const LoadedPatch *lp;
} RelrCtx;

/* The file's word at vaddr, from the writable PT_LOAD whose file image holds it: what
 * the mapping holds there before the loader writes (patchmeta.c checked the same). */
static int file_word(Elf *e, uint64_t vaddr, uint64_t *ret) {
        size_t n;
        if (elf_getphdrnum(e, &n) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                Elf_Data *d;
                if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_W) ||
                    vaddr < ph.p_vaddr || vaddr - ph.p_vaddr > ph.p_filesz ||
                    ph.p_filesz - (vaddr - ph.p_vaddr) < sizeof(*ret))
                        continue;
                d = elf_getdata_rawchunk(e, (int64_t)(ph.p_offset + (vaddr - ph.p_vaddr)), sizeof(*ret), ELF_T_BYTE);
                if (!d || d->d_size != sizeof(*ret))
                        return -EBADMSG;
                memcpy(ret, d->d_buf, sizeof(*ret));
                return 0;
        }
        return -EBADMSG;
}

static int apply_relr(uint64_t vaddr, void *userdata) {
        RelrCtx *c = userdata;
        uint64_t v;
        int r = file_word(c->e, vaddr, &v);

        if (r < 0 || !c->lp)
                return r;
        v += c->lp->bias;
        return target_write(c->t, c->lp->bias + vaddr, &v, sizeof(v));
}

/* A packed relative relocation section (elf/relr.h); its bounds were checked by
 * patchmeta.c, and are again here: every word written is in the patch's writable file
 * image. */
static int link_relr(Target *t, Elf *e, Elf_Scn *scn, const GElf_Shdr *sh, const LoadedPatch *lp,
                     char *err, size_t errlen) {
        Elf_Data *d = elf_getdata(scn, NULL);
        _cleanup_free_ uint64_t *words = NULL;
        RelrCtx c = { t, e, lp };
        int r;

        if (!d || d->d_size != sh->sh_size || sh->sh_size % RELR_ENTSIZE != 0)
                return fail(err, errlen, -EBADMSG, "the patch's RELR section is malformed");
        words = malloc(sh->sh_size ? sh->sh_size : 1);
        if (!words)
                return -ENOMEM;
        memcpy(words, d->d_buf, sh->sh_size);
        r = relr_foreach(words, sh->sh_size / RELR_ENTSIZE, apply_relr, &c);
        if (r == -EDOM || r == -EBADMSG)
                return fail(err, errlen, -EBADMSG, "the patch's RELR relocations are malformed");
        if (r < 0)
                return fail(err, errlen, r, "cannot apply the patch's RELR relocations: %s", process_errno_clause(r));
        return 0;
}

static int link_relocations(Target *t, Elf *e, SymResolver *res, const LoadedPatch *lp,
                            char *err, size_t errlen) {
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(e, scn))) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh))
                        return -EBADMSG;
                if (sh.sh_type == SHT_REL)
                        return fail(err, errlen, -ENOTSUP, "REL relocations are not supported");
                if (sh.sh_type == SHT_RELR && (sh.sh_flags & SHF_ALLOC)) {
                        int r = link_relr(t, e, scn, &sh, lp, err, errlen);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (sh.sh_type != SHT_RELA || !(sh.sh_flags & SHF_ALLOC))
                        continue;
                d = elf_getdata(scn, NULL);
                for (size_t i = 0; d && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Rela rel;
                        int r;
                        if (!gelf_getrela(d, (int)i, &rel))
                                return -EBADMSG;
                        r = apply_rela(t, e, &rel, &sh, res, lp, err, errlen);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The address in the target of a symbol a ULP_REF or ulp_rels record names (what is
 * the record's kind, for messages), as the target's dynamic linker would see it. A
 * not-found message names the object, the file searched, and its debug file or what
 * was looked for when it is stripped, as a ULP_FUNC's. linking: false for a dry run,
 * where an IFUNC whose resolver must run counts as resolvable. */
static int resolve_meta_symbol(Target *t, SymResolver *res, const char *object, const char *symbol,
                               unsigned pos, const char *what, bool linking, uint64_t *ret, char *err,
                               size_t errlen) {
        const Module *m = modules_find_object(res->mods, object);
        SymTab *st;
        Symbol sym;
        int r;

        if (!m)
                return fail(err, errlen, -ENOENT, "object %s of %s %s is not loaded in the target",
                            object[0] ? object : "(main)", what, symbol);
        r = resolver_symtab(res, (size_t)(m - res->mods->v), &st);
        if (r < 0)
                return fail(err, errlen, r, "cannot read the symbols of %s for %s %s: %s", m->path, what, symbol,
                            errno_clause(r));
        r = symtab_lookup(st, symbol, pos, &sym);
        if (r == -ENOTUNIQ)
                return fail(err, errlen, r, "%s symbol %s is ambiguous: give its position", what, symbol);
        if (r < 0) {
                const char *dbg = symtab_debug_path(st);
                const char *searched = dbg ? NULL : symtab_searched(st);
                return fail(err, errlen, -ENOENT, "%s symbol %s not found in %s (%s%s%s)", what, symbol,
                            object[0] ? object : "the main executable", m->path,
                            dbg ? ", and its debug file " : searched ? ", stripped: " : "",
                            dbg ? dbg : searched ? searched : "");
        }
        *ret = sym.value + m->bias;
        /* Its value is the resolver's: the reference is to what it chose. */
        if (sym.type == STT_GNU_IFUNC) {
                r = ifunc_resolve(t, res, (size_t)(m - res->mods->v), symbol, &sym, ret, err, errlen);
                if (r < 0 && !(r == -EAGAIN && !linking))
                        return r;
        }
        return 0;
}

static int fill_refs(Target *t, const PatchMeta *meta, SymResolver *res, const LoadedPatch *lp,
                     char *err, size_t errlen) {
        for (size_t i = 0; i < meta->n_refs; i++) {
                const PatchRef *ref = &meta->refs[i];
                uint64_t v;
                int r = resolve_meta_symbol(t, res, ref->object, ref->symbol, ref->pos, "ULP_REF", lp != NULL,
                                            &v, err, errlen);
                if (r < 0)
                        return r;
                if (lp) {
                        r = target_write(t, lp->bias + ref->slot_vaddr, &v, sizeof(v));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The fields ulp-build's patches leave to be filled with target addresses: after the
 * dynamic relocations, which may have put a placeholder there. A displacement must
 * reach from the patch to the symbol, which holds when the patch is mapped near the
 * object (nearmem.h); without lp (a check), only the symbols are resolved. */
static int fill_rels(Target *t, const PatchMeta *meta, SymResolver *res, const LoadedPatch *lp,
                     char *err, size_t errlen) {
        for (size_t i = 0; i < meta->n_rels; i++) {
                const PatchRel *rel = &meta->rels[i];
                uint64_t s, where;
                int r = resolve_meta_symbol(t, res, rel->object, rel->symbol, rel->pos, "ulp_rels", lp != NULL, &s,
                                            err, errlen);
                if (r < 0)
                        return r;
                if (!lp)
                        continue;
                where = lp->bias + rel->where_vaddr;
                if (rel->type == ULP_REL_64) {
                        uint64_t v = s + (uint64_t)rel->addend;
                        r = target_write(t, where, &v, sizeof(v));
                } else {
                        int64_t d = (int64_t)(s - where) + rel->addend;
                        int32_t v = (int32_t)d;
                        if (d != v)
                                return fail(err, errlen, -ERANGE, "the patch's code at 0x%" PRIx64 " cannot reach "
                                            "%s at 0x%" PRIx64 " (more than 2 GiB away)", where, rel->symbol, s);
                        r = target_write(t, where, &v, sizeof(v));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int loader_link(Target *t, int patch_fd, const PatchMeta *meta, SymResolver *res,
                const LoadedPatch *lp, char *err, size_t errlen) {
        _cleanup_elf_ Elf *e = NULL;
        int r = open_elf(patch_fd, &e), k;
        if (r < 0)
                return fail(err, errlen, r, "the patch is not an ELF file");
        /* One 8-byte write per relocation and reference: gathered (target.h). */
        if (lp && (r = target_write_gather_begin(t)) < 0)
                return fail(err, errlen, r, "cannot write into the target: %s", process_errno_clause(r));
        r = link_relocations(t, e, res, lp, err, errlen);
        if (r >= 0)
                r = fill_refs(t, meta, res, lp, err, errlen);
        if (r >= 0)
                r = fill_rels(t, meta, res, lp, err, errlen);
        if (!lp)
                return r;
        k = target_write_gather_end(t);
        if (r >= 0 && k < 0)
                return fail(err, errlen, k, "cannot write the patch's relocations into the target: %s",
                            process_errno_clause(k));
        return r;
}
