/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Patch metadata read from the fixture patches, checked against their symbol tables. */

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/patchfile.h"
#include "elf/patchmeta.h"
#include "elf/symtab.h"
#include "test.h"
#include "ulp/patch.h"

/* Reads PATCH_DIR/file; returns patchmeta_read()'s result. */
static int read_patch(const char *file, PatchMeta **ret, char *err, size_t errlen) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return patchmeta_read(fd, path, ret, err, errlen);
}

/* ---- crafted files: patch-full.so with one field broken ---------------------------- */

typedef struct Image {
        unsigned char *b;
        size_t size;
} Image;

static void image_done(Image *img) {
        free(img->b);
}

static Image image_load(const char *file) {
        char path[4096];
        struct stat st;
        Image img = {};

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !(img.b = malloc((size_t)st.st_size)) ||
            read(fd, img.b, (size_t)st.st_size) != st.st_size)
                TEST__FAIL("cannot read %s", path);
        img.size = (size_t)st.st_size;
        return img;
}

static Elf64_Ehdr *img_ehdr(Image *img) {
        return (Elf64_Ehdr *)img->b;
}

static Elf64_Phdr *img_phdr(Image *img, unsigned type, unsigned flags, unsigned *ret_idx) {
        Elf64_Ehdr *eh = img_ehdr(img);
        for (unsigned i = 0; i < eh->e_phnum; i++) {
                Elf64_Phdr *ph = (Elf64_Phdr *)(img->b + eh->e_phoff) + i;
                if (ph->p_type == type && (flags == 0 || ph->p_flags == flags)) {
                        if (ret_idx)
                                *ret_idx = i;
                        return ph;
                }
        }
        TEST__FAIL("no program header of type %u", type);
}

static Elf64_Shdr *img_shdr(Image *img, const char *name, unsigned *ret_idx) {
        Elf64_Ehdr *eh = img_ehdr(img);
        Elf64_Shdr *sh = (Elf64_Shdr *)(img->b + eh->e_shoff);
        const char *names = (const char *)img->b + sh[eh->e_shstrndx].sh_offset;
        for (unsigned i = 0; i < eh->e_shnum; i++)
                if (strcmp(names + sh[i].sh_name, name) == 0) {
                        if (ret_idx)
                                *ret_idx = i;
                        return &sh[i];
                }
        TEST__FAIL("no section %s", name);
}

/* The first relocation of .rela.dyn of the given type. */
static Elf64_Rela *img_rela(Image *img, unsigned type, unsigned *ret_idx) {
        Elf64_Shdr *sh = img_shdr(img, ".rela.dyn", NULL);
        Elf64_Rela *v = (Elf64_Rela *)(img->b + sh->sh_offset);
        for (unsigned i = 0; i < sh->sh_size / sizeof(*v); i++)
                if (ELF64_R_TYPE(v[i].r_info) == type) {
                        *ret_idx = i;
                        return &v[i];
                }
        TEST__FAIL("no relocation of type %u", type);
}

/* Reads img as a patch file; when $PATCHMETA_DUMP_DIR is set, also leaves it there (as
 * a seed for the patchmeta fuzz target). */
static int read_image(const Image *img, const char *tag, char *err, size_t errlen) {
        _cleanup_close_ int fd = memfd_create(tag, MFD_CLOEXEC);
        const char *dump = getenv("PATCHMETA_DUMP_DIR");
        PatchMeta *m = NULL;

        if (fd < 0 || write(fd, img->b, img->size) != (ssize_t)img->size)
                TEST__FAIL("cannot write a memfd");
        if (dump) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", dump, tag);
                _cleanup_close_ int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (out < 0 || write(out, img->b, img->size) != (ssize_t)img->size)
                        TEST__FAIL("cannot write %s", path);
        }
        err[0] = 0;
        int r = patchmeta_read(fd, "crafted.so", &m, err, errlen);
        patchmeta_free(m);
        return r;
}

#define ASSERT_REFUSED(img, tag, error, msg) do { \
                char _err[256]; \
                ASSERT_ERR(read_image(img, tag, _err, sizeof(_err)), error); \
                ASSERT_STREQ(_err, msg); \
        } while (0)

TEST(crafted_intact) {
        _cleanup_(image_done) Image img = image_load("patch-full.so");
        char err[256];

        ASSERT_OK(read_image(&img, "intact", err, sizeof(err)));
}

TEST(crafted_segments) {
        _cleanup_(image_done) Image img = image_load("patch-full.so");
        unsigned i;
        Elf64_Phdr *rw = img_phdr(&img, PT_LOAD, PF_R | PF_W, &i), save = *rw;
        char msg[256];

        /* Still inside the file, but the loader would map what follows over the .bss. */
        rw->p_filesz = rw->p_memsz + 0x100;
        snprintf(msg, sizeof(msg), "segment %u is larger in the file (%llu bytes) than in memory (%llu)",
                 i, (unsigned long long)rw->p_filesz, (unsigned long long)rw->p_memsz);
        ASSERT_REFUSED(&img, "filesz-gt-memsz", -EBADMSG, msg);
        *rw = save;

        rw->p_offset = img.size;
        snprintf(msg, sizeof(msg), "segment %u lies beyond the end of the file", i);
        ASSERT_REFUSED(&img, "segment-outside", -EBADMSG, msg);
        *rw = save;

        rw->p_memsz = 1ULL << 30;
        snprintf(msg, sizeof(msg), "segment %u spans more than 256 MiB", i);
        ASSERT_REFUSED(&img, "segment-span", -EBADMSG, msg);
        *rw = save;

        rw->p_align = 0x1001;
        snprintf(msg, sizeof(msg), "segment %u has an absurd alignment 0x1001", i);
        ASSERT_REFUSED(&img, "segment-align", -EBADMSG, msg);
        *rw = save;

        rw->p_vaddr += 8;
        snprintf(msg, sizeof(msg), "segment %u cannot be mapped: its offset and address differ within a page", i);
        ASSERT_REFUSED(&img, "segment-misaligned", -EBADMSG, msg);
        *rw = save;

        /* The code segment moved onto the first one's page. */
        Elf64_Phdr *x = img_phdr(&img, PT_LOAD, PF_R | PF_X, &i), xsave = *x;
        x->p_vaddr = 0;
        x->p_offset = 0x1000;
        snprintf(msg, sizeof(msg), "segment %u overlaps the one before it or is out of order", i);
        ASSERT_REFUSED(&img, "segment-overlap", -EBADMSG, msg);
        *x = xsave;
        /* The code segment moved in the file: it would map other bytes as the code. */
        x->p_offset += 0x1000;
        ASSERT_ERR(read_image(&img, "segment-moved", msg, sizeof(msg)), -EBADMSG);
        ASSERT_TRUE(strstr(msg, ") is not where the segments map it") != NULL);
        *x = xsave;
        /* Code cut short in the file would run as zeros. */
        x->p_filesz -= 0x10;
        snprintf(msg, sizeof(msg), "segment %u is not writable but larger in memory than in the file", i);
        ASSERT_REFUSED(&img, "segment-code-bss", -EBADMSG, msg);
        *x = xsave;

        Elf64_Phdr *stack = img_phdr(&img, PT_GNU_STACK, 0, NULL);
        stack->p_type = PT_TLS;
        ASSERT_REFUSED(&img, "segment-tls", -ENOTSUP,
                       "uses thread-local storage (PT_TLS), which ulp does not support");
}

TEST(crafted_relocations) {
        _cleanup_(image_done) Image img = image_load("patch-full.so");
        unsigned i;
        char msg[256];
        Elf64_Rela *rel = img_rela(&img, R_X86_64_RELATIVE, &i), save = *rel;

        /* Into the patch's own code: at load time, a write wherever the bias puts it. */
        rel->r_offset = 0x1040;
        snprintf(msg, sizeof(msg), "relocation %u writes at 0x1040, outside the patch's writable segments", i);
        ASSERT_REFUSED(&img, "reloc-outside", -EBADMSG, msg);
        rel->r_offset = UINT64_MAX - 3;
        snprintf(msg, sizeof(msg), "relocation %u writes at 0xfffffffffffffffc, outside the patch's writable segments", i);
        ASSERT_REFUSED(&img, "reloc-wrap", -EBADMSG, msg);
        *rel = save;

        rel->r_info = ELF64_R_INFO(0, 200);
        snprintf(msg, sizeof(msg), "has relocation type 200 (relocation %u), which ulp does not support", i);
        ASSERT_REFUSED(&img, "reloc-type", -ENOTSUP, msg);
        rel->r_info = ELF64_R_INFO(0, R_X86_64_DTPMOD64);
        ASSERT_REFUSED(&img, "reloc-tls", -ENOTSUP, "uses thread-local storage, which ulp does not support");
        rel->r_info = ELF64_R_INFO(0, R_X86_64_IRELATIVE);
        snprintf(msg, sizeof(msg), "defines an IFUNC (IRELATIVE relocation %u), which ulp does not support: its "
                 "resolver, the patch's own code, would run in the target before the patch is recorded "
                 "(docs/reach.md)", i);
        ASSERT_REFUSED(&img, "reloc-ifunc", -ENOTSUP, msg);
        *rel = save;

        Elf64_Rela *sym = img_rela(&img, R_X86_64_GLOB_DAT, &i), sym_save = *sym;
        sym->r_info = ELF64_R_INFO(100000, R_X86_64_GLOB_DAT);
        snprintf(msg, sizeof(msg), "relocation %u: symbol index 100000 out of range", i);
        ASSERT_REFUSED(&img, "reloc-symbol", -EBADMSG, msg);
        *sym = sym_save;

        /* A GLOB_DAT to a symbol the patch defines, moved out of it: the loader would
         * put that address in the patch's GOT (checked as R_X86_64_64's are). */
        Elf64_Shdr *rd = img_shdr(&img, ".rela.dyn", NULL), *ds = img_shdr(&img, ".dynsym", NULL);
        Elf64_Rela *v = (Elf64_Rela *)(img.b + rd->sh_offset);
        Elf64_Sym *syms = (Elf64_Sym *)(img.b + ds->sh_offset);
        unsigned first = UINT32_MAX;
        for (unsigned k = 0; k < rd->sh_size / sizeof(*v) && first == UINT32_MAX; k++) {
                Elf64_Sym *y = &syms[ELF64_R_SYM(v[k].r_info)];
                if (ELF64_R_SYM(v[k].r_info) && y->st_shndx != SHN_UNDEF &&
                    ELF64_ST_TYPE(y->st_info) == STT_OBJECT &&
                    (ELF64_R_TYPE(v[k].r_info) == R_X86_64_GLOB_DAT || ELF64_R_TYPE(v[k].r_info) == R_X86_64_64))
                        first = k;
        }
        ASSERT_TRUE(first != UINT32_MAX);
        ASSERT_EQ(ELF64_R_TYPE(v[first].r_info), R_X86_64_GLOB_DAT);
        syms[ELF64_R_SYM(v[first].r_info)].st_value = 0x10000000;
        snprintf(msg, sizeof(msg), "relocation %u points outside the patch", first);
        ASSERT_REFUSED(&img, "reloc-globdat-outside", -EBADMSG, msg);
}

TEST(crafted_sections) {
        _cleanup_(image_done) Image img = image_load("patch-full.so");
        unsigned i;
        char msg[256];
        Elf64_Shdr *sh = img_shdr(&img, ".comment", &i), save = *sh;

        sh->sh_offset = img.size - 4;
        snprintf(msg, sizeof(msg), "section %u lies beyond the end of the file", i);
        ASSERT_REFUSED(&img, "section-outside", -EBADMSG, msg);
        *sh = save;

        sh->sh_link = 1000;
        snprintf(msg, sizeof(msg), "section %u links to section 1000, which does not exist", i);
        ASSERT_REFUSED(&img, "section-link", -EBADMSG, msg);
        *sh = save;

        /* ulp_refs renamed: its records would be skipped, the slots never filled. */
        Elf64_Shdr *refs = img_shdr(&img, "ulp_refs", NULL), *data = img_shdr(&img, ".data", NULL);
        uint32_t refs_name = refs->sh_name;
        refs->sh_name = data->sh_name;
        ASSERT_REFUSED(&img, "section-renamed", -EBADMSG, "a record of the patch lies outside section ulp_refs");
        refs->sh_name = refs_name;

        /* An empty ulp_refs put before the real one: found first, the records skipped. */
        unsigned refs_idx, early_idx;
        img_shdr(&img, "ulp_refs", &refs_idx);
        sh = img_shdr(&img, ".eh_frame_hdr", &early_idx);
        ASSERT_TRUE(early_idx < refs_idx);
        save = *sh;
        sh->sh_name = refs_name;
        sh->sh_type = SHT_PROGBITS;
        sh->sh_size = 0;
        sh->sh_addr = refs->sh_addr;
        sh->sh_offset = refs->sh_offset;
        ASSERT_REFUSED(&img, "section-twice", -EBADMSG, "there are two sections called ulp_refs");
        *sh = save;

        sh = img_shdr(&img, ".dynstr", &i);
        img.b[sh->sh_offset + sh->sh_size - 1] = 'x';
        snprintf(msg, sizeof(msg), "string table %u does not end with a NUL", i);
        ASSERT_REFUSED(&img, "strtab-nul", -EBADMSG, msg);
}

TEST(crafted_metadata) {
        _cleanup_(image_done) Image img = image_load("patch-full.so");
        Elf64_Shdr *info = img_shdr(&img, "ulp_info", NULL);
        Elf64_Shdr *ro = img_shdr(&img, ".rodata", NULL);
        Elf64_Shdr *rsh = img_shdr(&img, ".rela.dyn", NULL);
        Elf64_Rela *v = (Elf64_Rela *)(img.b + rsh->sh_offset), *name = NULL;
        char *s;

        for (unsigned i = 0; i < rsh->sh_size / sizeof(*v); i++)
                if (v[i].r_offset == info->sh_addr + offsetof(struct ulp_meta_info, name))
                        name = &v[i];
        ASSERT_TRUE(name != NULL);
        /* The name string, "full-patch", in .rodata: a newline would forge a log line. */
        s = memmem(img.b + ro->sh_offset, ro->sh_size, "full-patch", 11);
        ASSERT_TRUE(s != NULL);
        s[4] = '\n';
        ASSERT_REFUSED(&img, "name-newline", -EBADMSG, "ulp_info[0]: name has a non-printable byte 0x0a");
        s[4] = ' ';
        ASSERT_REFUSED(&img, "name-space", -EBADMSG,
                       "the patch name has a byte 0x20 at 4: only printable characters other than space "
                       "are allowed");
        /* revert takes a name or a file: a name it would read as a file can never be named. */
        s[4] = '/';
        ASSERT_REFUSED(&img, "name-slash", -EBADMSG,
                       "the patch name \"full/patch\" has a '/': revert could not tell it from a file name");
        s[4] = '-';
        memcpy(s + 7, ".so", 3);
        ASSERT_REFUSED(&img, "name-dotso", -EBADMSG,
                       "the patch name \"full-pa.so\" ends in \".so\": revert could not tell it from a file name");
        memcpy(s + 7, "tch", 3);

        int64_t save = name->r_addend;
        char msg[128];
        name->r_addend = 0x7fff0000;
        snprintf(msg, sizeof(msg), "relocation %u points outside the patch", (unsigned)(name - v));
        ASSERT_REFUSED(&img, "name-outside", -EBADMSG, msg);
        /* Inside the patch, but not in its file image (.bss). */
        name->r_addend = (int64_t)img_shdr(&img, ".bss", NULL)->sh_addr;
        ASSERT_REFUSED(&img, "name-bss", -EBADMSG, "ulp_info[0]: name out of bounds");
        name->r_addend = save;
        name->r_info = ELF64_R_INFO(1, R_X86_64_RELATIVE);
        ASSERT_REFUSED(&img, "relative-symbol", -EBADMSG, msg);
        name->r_info = ELF64_R_INFO(0, R_X86_64_64);
        snprintf(msg, sizeof(msg), "relocation %u of type 1 has no symbol", (unsigned)(name - v));
        ASSERT_REFUSED(&img, "reloc-nosymbol", -EBADMSG, msg);
        name->r_info = ELF64_R_INFO(0, R_X86_64_RELATIVE);
        name->r_addend = save;

        /* A new function or a slot moved by a few bytes: still code, still data, but not
         * what the macros recorded; run or written in the target, it would break it. */
        Elf64_Shdr *funcs = img_shdr(&img, "ulp_funcs", NULL), *refs = img_shdr(&img, "ulp_refs", NULL);
        unsigned found = 0;
        for (unsigned i = 0; i < rsh->sh_size / sizeof(*v); i++) {
                if (v[i].r_offset == funcs->sh_addr + offsetof(struct ulp_meta_func, new_func)) {
                        found++;
                        v[i].r_addend += 1;
                        ASSERT_REFUSED(&img, "func-inside", -EBADMSG,
                                       "ulp_funcs[0]: new function is not the start of a function of the patch");
                        v[i].r_addend -= 1;
                }
                if (v[i].r_offset == refs->sh_addr + offsetof(struct ulp_meta_ref, slot)) {
                        found++;
                        v[i].r_addend += 4;
                        ASSERT_REFUSED(&img, "slot-inside", -EBADMSG,
                                       "ulp_refs[0]: slot is not a pointer variable of the patch");
                        v[i].r_addend -= 4;
                }
        }
        ASSERT_EQ(found, 2);
}

TEST(name_too_long) {
        char hint[128], path[4096];
        PatchMeta *m = NULL;
        char err[256] = "";

        memset(hint, 'n', 80);
        strcpy(hint + 80, ".so");
        snprintf(path, sizeof(path), "%s/patch-noinfo.so", PATCH_DIR);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(patchmeta_read(fd, hint, &m, err, sizeof(err)), -EBADMSG);
        ASSERT_STREQ(err, "the patch name (from the file name) is 80 bytes long, at most 64 are allowed");
        /* 64 bytes are kept whole. */
        strcpy(hint + 64, ".so");
        ASSERT_OK(patchmeta_read(fd, hint, &m, err, sizeof(err)));
        ASSERT_EQ(strlen(m->name), 64);
        patchmeta_free(m);
}

/* The shadow-variable runtime's mapping is found by its name: no patch may take it. */
TEST(name_of_the_runtime) {
        char path[4096];
        PatchMeta *m = NULL;
        char err[256] = "";

        snprintf(path, sizeof(path), "%s/patch-noinfo.so", PATCH_DIR);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(patchmeta_read(fd, "/x/ulp-shadow-runtime.so", &m, err, sizeof(err)), -EBADMSG);
        ASSERT_STREQ(err, "the patch name (from the file name) \"ulp-shadow-runtime\" is reserved for ulp's "
                     "shadow-variable runtime: ULP_PATCH_INFO must give the patch another name");
        ASSERT_OK(patchmeta_read(fd, "/x/ulp-shadow-runtime2.so", &m, err, sizeof(err)));
        ASSERT_STREQ(m->name, "ulp-shadow-runtime2");
        patchmeta_free(m);
}

/* The file is copied once, up to the cap, whatever size it claims. */
TEST(too_large) {
        PatchMeta *m = NULL;
        char err[256] = "";
        _cleanup_close_ int fd = memfd_create("big", MFD_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, (off_t)PATCH_FILE_MAX + 1));
        ASSERT_ERR(patchmeta_read(fd, "big.so", &m, err, sizeof(err)), -EFBIG);
        ASSERT_STREQ(err, "the patch file is larger than 64 MiB");
}

static uint64_t symbol_value(const char *file, const char *name) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        char path[4096];
        Symbol s;

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        if (symtab_open(path, &st) < 0 || symtab_lookup(st, name, 0, &s) < 0)
                return UINT64_MAX;
        return s.value;
}

/* The records of a section come in no particular order (gcc emits those of one file in
 * reverse): tests find them by symbol. */
static const PatchFunc *find_func(const PatchMeta *m, const char *object, const char *symbol) {
        for (size_t i = 0; i < m->n_funcs; i++)
                if (strcmp(m->funcs[i].object, object) == 0 && strcmp(m->funcs[i].symbol, symbol) == 0)
                        return &m->funcs[i];
        TEST__FAIL("no ULP_FUNC for %s:%s", object, symbol);
}

static const PatchRef *find_ref(const PatchMeta *m, const char *symbol) {
        for (size_t i = 0; i < m->n_refs; i++)
                if (strcmp(m->refs[i].symbol, symbol) == 0)
                        return &m->refs[i];
        TEST__FAIL("no ULP_REF for %s", symbol);
}

/* Every field of patch-full.c round-trips; file is patch-full.so or patch-relr.so. */
static void check_full(const char *file) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;
        char err[256] = "";

        if (read_patch(file, &m, err, sizeof(err)) < 0)
                TEST__FAIL("%s: %s", file, err);
        ASSERT_STREQ(m->name, "full-patch");
        ASSERT_STREQ(m->description, "every macro once");
        ASSERT_TRUE(m->replace);

        ASSERT_EQ(m->n_funcs, 3);
        const PatchFunc *f = find_func(m, "", "fixture_compute");
        ASSERT_EQ(f->pos, 0);
        ASSERT_STREQ(f->new_name, "compute_v2");
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "compute_v2"));
        f = find_func(m, "", "helper");
        ASSERT_EQ(f->pos, 2);
        ASSERT_STREQ(f->new_name, "helper_v2");
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "helper_v2"));
        f = find_func(m, "libfoo.so.1", "foo_parse");
        ASSERT_EQ(f->pos, 0);
        ASSERT_EQ_U64(f->new_vaddr, symbol_value(file, "compute_v2"));

        ASSERT_EQ(m->n_refs, 2);
        const PatchRef *r = find_ref(m, "fixture_counter");
        ASSERT_STREQ(r->object, "");
        ASSERT_EQ(r->pos, 0);
        ASSERT_EQ_U64(r->slot_vaddr, symbol_value(file, "counter_p"));
        r = find_ref(m, "fixture_global");
        ASSERT_EQ(r->pos, 1);
        ASSERT_EQ_U64(r->slot_vaddr, symbol_value(file, "global_p"));

        ASSERT_EQ(m->n_build_ids, 2);
        ASSERT_STREQ(patchmeta_build_id_for(m, ""), "0123456789abcdef0123");
        ASSERT_STREQ(patchmeta_build_id_for(m, "libc.so.6"), "aa55");
        ASSERT_TRUE(patchmeta_build_id_for(m, "libz.so.1") == NULL);

        ASSERT_EQ(m->n_callbacks, 1);
        ASSERT_STREQ(m->callbacks[0].object, "");
        ASSERT_EQ_U64(m->callbacks[0].pre_patch, symbol_value(file, "pre_patch"));
        ASSERT_EQ_U64(m->callbacks[0].post_patch, 0);
        ASSERT_EQ_U64(m->callbacks[0].pre_unpatch, 0);
        ASSERT_EQ_U64(m->callbacks[0].post_unpatch, symbol_value(file, "post_unpatch"));

        ASSERT_TRUE(m->build_id_len > 0);
}

TEST(full) {
        check_full("patch-full.so");
}

/* Packed relative relocations: the records' pointers come out as with RELA. */
TEST(packed_relocs) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;
        char err[256] = "";

        check_full("patch-relr.so");
        ASSERT_EQ(read_patch("patch-relr.so", &m, err, sizeof(err)), 0);
        ASSERT_TRUE(m->n_relr > 0);
}

/* The dynamic section's DT_RELR, as a 64-bit value at the tag's entry. */
static Elf64_Dyn *img_dyn(Image *img, int64_t tag) {
        Elf64_Phdr *ph = img_phdr(img, PT_DYNAMIC, 0, NULL);
        Elf64_Dyn *d = (Elf64_Dyn *)(img->b + ph->p_offset);
        for (size_t i = 0; i < ph->p_filesz / sizeof(*d) && d[i].d_tag != DT_NULL; i++)
                if (d[i].d_tag == tag)
                        return &d[i];
        TEST__FAIL("no dynamic tag %" PRId64, tag);
}

/* Each bound of a RELR table: order, place, what it points to, the dynamic section. */
TEST(crafted_relr) {
        _cleanup_(image_done) Image img = image_load("patch-relr.so");
        Elf64_Shdr *sh = img_shdr(&img, ".relr.dyn", NULL);
        uint64_t *w = (uint64_t *)(img.b + sh->sh_offset), save = w[0];
        Elf64_Dyn *sz = img_dyn(&img, 35 /* DT_RELRSZ */);
        char msg[256];

        ASSERT_TRUE(sh->sh_size >= 8);
        w[0] = 3;                       /* a bitmap before any address */
        ASSERT_REFUSED(&img, "relr-bitmap-first", -EBADMSG,
                       "the RELR section is malformed (a bitmap first, or addresses out of order)");
        w[0] = 0x1040;                  /* into the patch's code */
        ASSERT_REFUSED(&img, "relr-outside", -EBADMSG,
                       "RELR relocation 0 writes at 0x1040, outside the patch's writable segments");
        w[0] = UINT64_MAX - 7;
        ASSERT_REFUSED(&img, "relr-wrap", -EBADMSG,
                       "the RELR section is malformed (a bitmap first, or addresses out of order)");
        w[0] = save;
        if (sh->sh_size >= 16 && !(w[1] & 1)) {
                uint64_t save1 = w[1];
                w[1] = w[0];            /* the same word twice */
                ASSERT_REFUSED(&img, "relr-order", -EBADMSG,
                               "the RELR section is malformed (a bitmap first, or addresses out of order)");
                w[1] = save1;
        }
        sz->d_un.d_val += 8;            /* declares more than the section holds */
        snprintf(msg, sizeof(msg), "DT_RELR (0x%" PRIx64 ", %" PRIu64 " bytes) is not the RELR section",
                 (uint64_t)sh->sh_addr, (uint64_t)sz->d_un.d_val);
        ASSERT_REFUSED(&img, "relr-dynamic", -EBADMSG, msg);
        sz->d_un.d_val -= 8;
        {
                char err[256];
                ASSERT_EQ(read_image(&img, "relr-intact", err, sizeof(err)), 0);
        }
}

TEST(own_build_id) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;
        _cleanup_(symtab_freep) SymTab *st = NULL;
        uint8_t id[BUILD_ID_MAX];

        ASSERT_OK(read_patch("patch-full.so", &m, NULL, 0));
        ASSERT_OK(symtab_open(PATCH_DIR "/patch-full.so", &st));
        int n = elf_read_build_id(symtab_elf(st), id, sizeof(id));
        ASSERT_TRUE(n > 0);
        ASSERT_EQ(m->build_id_len, (size_t)n);
        ASSERT_TRUE(memcmp(m->build_id, id, (size_t)n) == 0);
}

TEST(name_from_file) {
        _cleanup_(patchmeta_freep) PatchMeta *m = NULL;

        ASSERT_OK(read_patch("patch-noinfo.so", &m, NULL, 0));
        ASSERT_STREQ(m->name, "patch-noinfo");
        ASSERT_STREQ(m->description, "");
        ASSERT_TRUE(!m->replace);
        ASSERT_EQ(m->n_funcs, 1);
        ASSERT_EQ(m->n_refs + m->n_build_ids + m->n_callbacks, 0);
        ASSERT_EQ_U64(m->funcs[0].new_vaddr, symbol_value("patch-noinfo.so", "helper_v3"));
}

TEST(no_metadata) {
        PatchMeta *m = NULL;
        char err[256] = "";

        ASSERT_ERR(read_patch("patch-nometa.so", &m, err, sizeof(err)), -ENOMSG);
        ASSERT_TRUE(m == NULL);
        ASSERT_TRUE(strstr(err, "ulp_funcs") != NULL);
}

TEST(not_elf) {
        PatchMeta *m = NULL;
        char err[256] = "";
        _cleanup_close_ int fd = open(SOURCE_DIR "/patch-full.c", O_RDONLY | O_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(patchmeta_read(fd, "patch-full.c", &m, err, sizeof(err)), -ENOEXEC);
        ASSERT_STREQ(err, "not an ELF file");
        /* An executable is ELF, but not a patch. */
        ASSERT_ERR(read_patch("../../tests/elf/elf-fixture-nopie", &m, err, sizeof(err)), -ENOEXEC);
        ASSERT_TRUE(m == NULL);
}

TEST(bad_build_id) {
        PatchMeta *m = NULL;
        char err[256] = "";

        ASSERT_ERR(read_patch("patch-badbid.so", &m, err, sizeof(err)), -EBADMSG);
        ASSERT_STREQ(err, "ulp_build_ids[0]: \"not-hex!\" is not a hex build-id");
        ASSERT_TRUE(m == NULL);
}

TEST_MAIN();
