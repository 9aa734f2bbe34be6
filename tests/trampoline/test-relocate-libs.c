/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relocator on real code: every function (STT_FUNC, at least 5 bytes) of a few
 * system libraries, read from the file. Each relocation that succeeds is checked
 * instruction by instruction with capstone, independently of the relocator's own
 * classification: same operation, same absolute branch targets and RIP-relative
 * addresses seen from the copy, and a final jump back to the right place.
 */

#include <fcntl.h>
#include <gelf.h>
#include <stdarg.h>
#include <libelf.h>
#include <stdint.h>
#include <capstone/capstone.h>

#include "common/macro.h"
#include "patcher/x86_64/relocate.h"
#include "tests/test.h"

#define LOAD_BASE 0x7f0000000000ULL    /* where the library pretends to be mapped */
#define COPY_DELTA 0x10000000ULL       /* and its copies: far, but within reach */

typedef struct Func {
        uint64_t addr, size;
        const uint8_t *code;
} Func;

typedef struct Stats {
        unsigned total, ok, enospc, exdev, eilseq, enotsup, erange, other, mismatches;
} Stats;

static void cs_free_1(cs_insn **p) {
        if (*p)
                cs_free(*p, 1);
}

static int func_cmp(const void *a, const void *b) {
        const Func *x = a, *y = b;

        return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The bytes of [addr, addr + size) if an executable section holds them all. */
static const uint8_t *func_bytes(Elf *e, uint64_t addr, uint64_t size) {
        for (Elf_Scn *s = elf_nextscn(e, NULL); s; s = elf_nextscn(e, s)) {
                GElf_Shdr sh;
                Elf_Data *d;

                if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_PROGBITS ||
                    !(sh.sh_flags & SHF_EXECINSTR))
                        continue;
                if (addr < sh.sh_addr || addr + size > sh.sh_addr + sh.sh_size)
                        continue;
                d = elf_getdata(s, NULL);
                if (!d || !d->d_buf || d->d_size < sh.sh_size)
                        return NULL;
                return (const uint8_t *)d->d_buf + (addr - sh.sh_addr);
        }
        return NULL;
}

/* Functions of the symbol table (.symtab, else .dynsym), sorted, aliases merged. */
static size_t collect_funcs(Elf *e, Func **ret) {
        Elf_Scn *symscn = NULL;
        Func *f = NULL;
        size_t n = 0, cap = 0, m = 0;

        for (Elf_Scn *s = elf_nextscn(e, NULL); s; s = elf_nextscn(e, s)) {
                GElf_Shdr sh;

                if (gelf_getshdr(s, &sh) && sh.sh_type == SHT_SYMTAB)
                        symscn = s;
                else if (gelf_getshdr(s, &sh) && sh.sh_type == SHT_DYNSYM && !symscn)
                        symscn = s;
        }
        for (size_t i = 0; symscn; i++) {
                Elf_Data *d = elf_getdata(symscn, NULL);
                GElf_Sym sym;

                if (!d || !gelf_getsym(d, (int)i, &sym))
                        break;
                if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
                    sym.st_size < JMP_REL32_SIZE)
                        continue;
                if (n == cap) {
                        cap = cap ? 2 * cap : 1024;
                        f = realloc(f, cap * sizeof(*f));
                        ASSERT_TRUE(f);
                }
                f[n] = (Func) { sym.st_value, sym.st_size, func_bytes(e, sym.st_value, sym.st_size) };
                if (f[n].code)
                        n++;
        }
        if (n > 0)
                qsort(f, n, sizeof(*f), func_cmp);
        for (size_t i = 0; i < n; i++)
                if (m == 0 || f[m - 1].addr != f[i].addr)
                        f[m++] = f[i];
        *ret = f;
        return m;
}

static bool is_loop(unsigned id) {
        return id == X86_INS_LOOP || id == X86_INS_LOOPE || id == X86_INS_LOOPNE ||
               id == X86_INS_JRCXZ || id == X86_INS_JECXZ;
}

static bool direct_target(const cs_insn *i, uint64_t *ret) {
        const cs_detail *d = i->detail;
        bool branch = false;

        for (unsigned g = 0; g < d->groups_count; g++)
                branch |= d->groups[g] == CS_GRP_JUMP || d->groups[g] == CS_GRP_CALL;
        if (!branch || d->x86.op_count != 1 || d->x86.operands[0].type != X86_OP_IMM)
                return false;
        *ret = d->x86.operands[0].imm;
        return true;
}

static bool rip_address(const cs_insn *i, uint64_t *ret) {
        for (unsigned k = 0; k < i->detail->x86.op_count; k++) {
                const cs_x86_op *o = &i->detail->x86.operands[k];

                if (o->type == X86_OP_MEM && o->mem.base == X86_REG_RIP) {
                        *ret = i->address + i->size + o->mem.disp;
                        return true;
                }
        }
        return false;
}

/* Decodes one instruction of buf[off..len) at address base + off into i. */
static bool decode(csh h, const uint8_t *buf, size_t len, size_t off, uint64_t base, cs_insn *i) {
        const uint8_t *p = buf + off;
        size_t left = len - off;
        uint64_t a = base + off;

        return off < len && cs_disasm_iter(h, &p, &left, &a, i);
}

__attribute__((format(printf, 3, 4)))
static void say(char *why, size_t whylen, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
}

#define MISMATCH(...) do { say(why, whylen, __VA_ARGS__); return false; } while (0)

/* Checks one displaced instruction o against its relocated form at c, which must end
 * at copy offset end. */
static bool verify_insn(csh h, const Relocation *r, uint64_t copy, const cs_insn *o,
                        cs_insn *c, size_t end, char *why, size_t whylen) {
        uint64_t to = 0, tc = 0, ao = 0, ac = 0;
        size_t coff = c->address - copy;

        if (o->id != c->id)
                MISMATCH("'%s %s' became '%s %s'", o->mnemonic, o->op_str, c->mnemonic, c->op_str);
        if (is_loop(o->id)) {
                direct_target(o, &to);
                if (!direct_target(c, &tc) || tc != c->address + c->size + 2)
                        MISMATCH("%s: not over the short jmp", o->mnemonic);
                if (!decode(h, r->code, r->code_len, coff + c->size, copy, c) ||
                    !direct_target(c, &tc) || tc != copy + end || c->size != 2)
                        MISMATCH("%s: no short jmp to the next instruction", o->mnemonic);
                if (!decode(h, r->code, r->code_len, coff + o->size + 2, copy, c) ||
                    c->id != X86_INS_JMP || !direct_target(c, &tc) || tc != to ||
                    c->address + c->size != copy + end)
                        MISMATCH("%s: no jmp to 0x%" PRIx64, o->mnemonic, to);
                return true;
        }
        if (c->address + c->size != copy + end)
                MISMATCH("'%s %s' relocated to %u bytes, next at +%zu", o->mnemonic, o->op_str, c->size, end);
        if (direct_target(o, &to)) {
                if (!direct_target(c, &tc) || tc != to)
                        MISMATCH("'%s %s' now goes to '%s'", o->mnemonic, o->op_str, c->op_str);
                return true;
        }
        if (c->size != o->size)
                MISMATCH("'%s %s' changed size", o->mnemonic, o->op_str);
        if (rip_address(o, &ao)) {
                int first = -1, last = -1;

                if (!rip_address(c, &ac) || ac != ao)
                        MISMATCH("'%s %s' now addresses '%s'", o->mnemonic, o->op_str, c->op_str);
                /* not trusting capstone's disp_offset: the changes fit in 4 bytes */
                for (int k = 0; k < o->size; k++)
                        if (o->bytes[k] != c->bytes[k]) {
                                first = first < 0 ? k : first;
                                last = k;
                        }
                if (last - first >= 4)
                        MISMATCH("'%s %s': more than the displacement changed", o->mnemonic, o->op_str);
                return true;
        }
        if (memcmp(o->bytes, c->bytes, o->size) != 0)
                MISMATCH("'%s %s' changed", o->mnemonic, o->op_str);
        return true;
}

/* Checks a whole relocation of f, whose copy is at copy. */
static bool verify(csh h, const Func *f, uint64_t faddr, uint64_t copy, const Relocation *r,
                   char *why, size_t whylen) {
        _cleanup_(cs_free_1) cs_insn *o = cs_malloc(h);
        _cleanup_(cs_free_1) cs_insn *c = cs_malloc(h);
        size_t covered = r->entry_offset;
        uint64_t t;

        for (size_t i = 0; i < r->n_insns; i++) {
                size_t end = i + 1 < r->n_insns ? r->copy_off[i + 1] : r->code_len - JMP_REL32_SIZE;

                if (r->orig_off[i] != covered)
                        MISMATCH("instruction %zu at +%zu, expected +%zu", i, r->orig_off[i], covered);
                if (!decode(h, f->code, f->size, r->orig_off[i], faddr, o) ||
                    !decode(h, r->code, r->code_len, r->copy_off[i], copy, c))
                        MISMATCH("instruction %zu does not decode", i);
                if (!verify_insn(h, r, copy, o, c, end, why, whylen))
                        return false;
                covered += o->size;
        }
        if (covered != r->entry_offset + r->displaced_len || r->displaced_len < JMP_REL32_SIZE)
                MISMATCH("displaced %zu bytes, instructions cover %zu", r->displaced_len, covered);
        if (!decode(h, r->code, r->code_len, r->code_len - JMP_REL32_SIZE, copy, c) ||
            c->id != X86_INS_JMP || c->size != JMP_REL32_SIZE || !direct_target(c, &t) ||
            t != faddr + covered)
                MISMATCH("no jump back to +%zu", covered);
        return true;
}

static void count(Stats *st, int k) {
        switch (k) {
        case 0: st->ok++; break;
        case -ENOSPC: st->enospc++; break;
        case -EXDEV: st->exdev++; break;
        case -EILSEQ: st->eilseq++; break;
        case -ENOTSUP: st->enotsup++; break;
        case -ERANGE: st->erange++; break;
        default: st->other++; break;
        }
}

/* Relocates and verifies every function of the library at path. False when absent. */
static bool corpus_library(const char *path, Stats *st) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ Func *f = NULL;
        csh h = 0;
        Elf *e;
        size_t n;

        if (fd < 0)
                return false;
        ASSERT_TRUE(elf_version(EV_CURRENT) != EV_NONE);
        e = elf_begin(fd, ELF_C_READ, NULL);
        ASSERT_TRUE(e);
        ASSERT_EQ(cs_open(CS_ARCH_X86, CS_MODE_64, &h), CS_ERR_OK);
        ASSERT_EQ(cs_option(h, CS_OPT_DETAIL, CS_OPT_ON), CS_ERR_OK);

        n = collect_funcs(e, &f);
        for (size_t i = 0; i < n; i++) {
                uint64_t faddr = LOAD_BASE + f[i].addr, copy = faddr + COPY_DELTA;
                char err[256] = "", why[256] = "";
                Relocation r;
                int k;

                k = relocate_entry(f[i].code, f[i].size, faddr, copy, &r, err, sizeof(err));
                st->total++;
                count(st, k);
                if (k == 0 && !verify(h, &f[i], faddr, copy, &r, why, sizeof(why))) {
                        if (st->mismatches++ < 20)
                                fprintf(stderr, "  MISMATCH %s +0x%" PRIx64 ": %s\n", path, f[i].addr, why);
                }
                if (k < 0 && getenv("ULP_TEST_VERBOSE"))
                        fprintf(stderr, "  %s +0x%" PRIx64 ": %s\n", path, f[i].addr, err);
        }
        cs_close(&h);
        elf_end(e);
        return true;
}

TEST(relocate_system_libraries) {
        static const char *const libs[] = {
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/lib/x86_64-linux-gnu/libcrypto.so.3",
        };
        Stats all = {};
        unsigned found = 0;

        for (size_t i = 0; i < ELEMENTSOF(libs); i++) {
                Stats st = {};

                if (!corpus_library(libs[i], &st))
                        continue;
                found++;
                fprintf(stderr, "  %s: %u functions, %u relocated (%.1f%%), refused: %u ENOSPC, "
                        "%u EXDEV, %u EILSEQ, %u ENOTSUP, %u ERANGE, %u other; %u mismatches\n",
                        libs[i], st.total, st.ok, st.total ? 100.0 * st.ok / st.total : 0.0,
                        st.enospc, st.exdev, st.eilseq, st.enotsup, st.erange, st.other,
                        st.mismatches);
                ASSERT_TRUE(st.total > 0);
                ASSERT_TRUE(st.ok * 10 > st.total * 8);
                all.total += st.total;
                all.ok += st.ok;
                all.mismatches += st.mismatches;
                all.other += st.other + st.erange;
        }
        if (found == 0)
                test_skip("none of the system libraries is present");
        ASSERT_EQ(all.mismatches, 0);
        ASSERT_EQ(all.other, 0);      /* nothing is out of reach at COPY_DELTA */
}

TEST_MAIN();
