/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relocator on hand-written functions (corpus.S): each relocatable one is
 * relocated into a page near it and the copy is run for real, jumping back into the
 * original's remaining bytes, and must compute what the original computes; the others
 * must be refused with the right error.
 */

#include <stdint.h>
#include <sys/mman.h>

#include "patcher/x86_64/relocate.h"
#include "tests/test.h"
#include "tests/trampoline/near.h"

#define CORPUS(name) extern uint8_t name[]; extern const uint64_t name##_len
CORPUS(c_load); CORPUS(c_store_imm); CORPUS(c_store_imm64); CORPUS(c_cmp_imm);
CORPUS(c_lea); CORPUS(c_sse); CORPUS(c_jcc_short); CORPUS(c_jmp_short);
CORPUS(c_jrcxz); CORPUS(c_jecxz); CORPUS(c_loop); CORPUS(c_loop_to_entry);
CORPUS(c_call_first); CORPUS(c_helper); CORPUS(c_call_not_last); CORPUS(c_endbr);
CORPUS(c_backjump); CORPUS(c_tiny); CORPUS(c_tiny_endbr); CORPUS(c_jumptable);
CORPUS(c_jumptable_ibt); CORPUS(c_tailcall_ibt); CORPUS(c_tailcall_got);
CORPUS(c_ret_not_last); CORPUS(c_bad); CORPUS(c_bad_later); CORPUS(c_getpc);
extern uint64_t c_data, c_data2;
extern uint32_t c_word;

typedef long (*fn2_t)(long, long);

#define FN(name) ((fn2_t)(void *)(name))
#define RELOCATE(name, r) relocate_near((name), name##_len, (r))

/* Relocates the function at fn into a fresh page near it and returns the copy, ready to
 * run: called, it behaves as the original (entered after any endbr64). */
static fn2_t relocate_near(const uint8_t *fn, uint64_t len, Relocation *r) {
        char err[256] = "";
        uint8_t *page;
        int k;

        page = map_near(fn, 4096);
        ASSERT_TRUE(page);
        k = relocate_entry(fn, len, (uint64_t)fn, (uint64_t)page, r, err, sizeof(err));
        if (k < 0)
                TEST__FAIL("relocate_entry: %s (%s)", strerror(-k), err);
        ASSERT_TRUE(r->code_len <= sizeof(r->code));
        memcpy(page, r->code, r->code_len);
        __builtin___clear_cache((char *)page, (char *)page + r->code_len);
        return (fn2_t)(void *)page;
}

/* The copy's last 5 bytes jump back to the original right after the displaced bytes. */
static void assert_jumps_back(const Relocation *r, const uint8_t *fn, fn2_t copy) {
        int32_t rel;

        ASSERT_TRUE(r->code_len >= 5);
        ASSERT_EQ(r->code[r->code_len - 5], 0xe9);
        memcpy(&rel, r->code + r->code_len - 4, sizeof(rel));
        ASSERT_EQ_U64((uint64_t)(void *)copy + r->code_len + rel,
                      (uint64_t)fn + r->entry_offset + r->displaced_len);
}

TEST(encode_jmp_rel32) {
        uint8_t b[JMP_REL32_SIZE];
        int32_t rel;

        ASSERT_OK(encode_jmp_rel32(b, 0x1000, 0x2000));
        memcpy(&rel, b + 1, sizeof(rel));
        ASSERT_EQ(b[0], 0xe9);
        ASSERT_EQ(rel, 0x2000 - 0x1005);
        ASSERT_OK(encode_jmp_rel32(b, 0x80000000, 0x5));
        memcpy(&rel, b + 1, sizeof(rel));
        ASSERT_EQ(rel, INT32_MIN);
        ASSERT_OK(encode_jmp_rel32(b, 0x1000, 0x1005 + (uint64_t)INT32_MAX));
        ASSERT_ERR(encode_jmp_rel32(b, 0x1000, 0x1006 + (uint64_t)INT32_MAX), -ERANGE);
        ASSERT_ERR(encode_jmp_rel32(b, 0x100000000, 0x1000), -ERANGE);
}

TEST(relocate_rip_load) {
        Relocation r;
        fn2_t copy = RELOCATE(c_load, &r);

        ASSERT_EQ(r.entry_offset, 0);
        ASSERT_EQ(r.displaced_len, 7);
        ASSERT_EQ(r.n_insns, 1);
        ASSERT_EQ(r.code_len, 7 + 5);
        assert_jumps_back(&r, c_load, copy);
        c_data = 1000;
        ASSERT_EQ(copy(5, 0), 1005);
        ASSERT_EQ(copy(5, 0), FN(c_load)(5, 0));
}

TEST(relocate_rip_store_imm) {
        Relocation r;
        fn2_t copy = RELOCATE(c_store_imm, &r);

        ASSERT_EQ(r.displaced_len, 10);
        c_word = 0;
        ASSERT_EQ(copy(3, 0), 10);
        ASSERT_EQ(c_word, 7);
        c_word = 0;
        ASSERT_EQ(FN(c_store_imm)(3, 0), 10);

        copy = RELOCATE(c_store_imm64, &r);
        ASSERT_EQ(r.displaced_len, 11);
        c_data2 = 0;
        ASSERT_EQ(copy(1, 0), 0x1234568);
        ASSERT_EQ_U64(c_data2, 0x1234567);
}

TEST(relocate_rip_cmp_imm) {
        Relocation r;
        fn2_t copy = RELOCATE(c_cmp_imm, &r);

        ASSERT_EQ(r.displaced_len, 7);
        c_word = 9;
        ASSERT_EQ(copy(0, 0), 1);
        ASSERT_EQ(FN(c_cmp_imm)(0, 0), 1);
        c_word = 5;
        ASSERT_EQ(copy(0, 0), 0);
        ASSERT_EQ(FN(c_cmp_imm)(0, 0), 0);
}

TEST(relocate_rip_lea_sse) {
        Relocation r;
        fn2_t copy = RELOCATE(c_lea, &r);
        double (*dcopy)(void);

        ASSERT_EQ_U64(copy(0, 0), (uint64_t)&c_data);
        dcopy = (double (*)(void))(void *)RELOCATE(c_sse, &r);
        ASSERT_EQ(r.displaced_len, 8);
        ASSERT_TRUE(dcopy() == 2.5);
}

TEST(relocate_jcc_short) {
        Relocation r;
        fn2_t copy = RELOCATE(c_jcc_short, &r);
        uint64_t f = (uint64_t)c_jcc_short, c = (uint64_t)(void *)copy;

        ASSERT_EQ(r.n_insns, 3);
        ASSERT_EQ(r.displaced_len, 6);
        ASSERT_EQ(r.code[2], 0x0f);               /* js widened to rel32 */
        ASSERT_EQ(r.code[3], 0x88);
        ASSERT_EQ(copy(-5, 0), 5);
        ASSERT_EQ(copy(5, 0), 5);
        ASSERT_EQ(copy(-7, 0), FN(c_jcc_short)(-7, 0));
        assert_jumps_back(&r, c_jcc_short, copy);

        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f), c);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 2), c + 2);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 4), c + 8);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 1), 0);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 3), 0);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 6), 0);
}

/* The map of an entry rebuilt from its displaced bytes alone (as a later transition does
 * from the control block) is the one relocate_entry made: same copy, same offsets. */
static void assert_rebuilds(const Relocation *r, const uint8_t *fn, uint64_t copy) {
        uint64_t at = (uint64_t)fn + r->entry_offset;
        Relocation b;
        char err[256] = "";
        int k = relocation_rebuild(fn + r->entry_offset, r->displaced_len, at, copy, &b, err, sizeof(err));

        if (k < 0)
                TEST__FAIL("relocation_rebuild: %s (%s)", strerror(-k), err);
        ASSERT_EQ(b.n_insns, r->n_insns);
        ASSERT_EQ(b.code_len, r->code_len);
        ASSERT_TRUE(memcmp(b.code, r->code, r->code_len) == 0);
        for (size_t i = 0; i < r->n_insns; i++) {
                ASSERT_EQ(b.orig_off[i] + r->entry_offset, r->orig_off[i]);
                ASSERT_EQ(b.copy_off[i], r->copy_off[i]);
        }
        /* Bytes cut inside an instruction are refused. */
        ASSERT_EQ(relocation_rebuild(fn + r->entry_offset, r->displaced_len + 1, at, copy, &b, err, sizeof(err)),
                  -EILSEQ);
}

TEST(relocation_rebuild) {
        Relocation r;
        fn2_t copy = RELOCATE(c_jcc_short, &r);
        uint64_t f = (uint64_t)c_jcc_short, c = (uint64_t)(void *)copy;

        assert_rebuilds(&r, c_jcc_short, c);
        ASSERT_EQ_U64(relocation_map_pc(&r, f, c, f + 2), c + 2);
        copy = RELOCATE(c_endbr, &r);
        assert_rebuilds(&r, c_endbr, (uint64_t)(void *)copy);
        copy = RELOCATE(c_call_first, &r);
        assert_rebuilds(&r, c_call_first, (uint64_t)(void *)copy);
}

TEST(relocate_jmp_short) {
        Relocation r;
        fn2_t copy = RELOCATE(c_jmp_short, &r);

        ASSERT_EQ(r.n_insns, 3);
        ASSERT_EQ(r.code[2], 0xe9);
        ASSERT_EQ(copy(4, 0), 5);
}

TEST(relocate_jrcxz_jecxz) {
        Relocation r;
        fn2_t copy = RELOCATE(c_jrcxz, &r);

        ASSERT_EQ(r.displaced_len, 5);
        ASSERT_EQ(copy(0, 0), 2);
        ASSERT_EQ(copy(7, 0), 1);
        ASSERT_EQ(copy(1L << 32, 0), 1);

        copy = RELOCATE(c_jecxz, &r);
        ASSERT_EQ(r.displaced_len, 6);
        ASSERT_EQ(r.code[3], 0x67);               /* the address-size prefix kept */
        ASSERT_EQ(copy(0, 0), 2);
        ASSERT_EQ(copy(7, 0), 1);
        ASSERT_EQ(copy(1L << 32, 0), 2);
        ASSERT_EQ(FN(c_jecxz)(1L << 32, 0), 2);
}

TEST(relocate_loop) {
        Relocation r;
        fn2_t copy = RELOCATE(c_loop, &r);
        static const uint8_t form[] = { 0xe2, 0x02, 0xeb, 0x05, 0xe9 };

        /* loop +2; jmp short +5; jmp rel32 target; jmp rel32 back */
        ASSERT_EQ(r.code_len, 3 + 9 + 5);
        ASSERT_TRUE(memcmp(r.code + 3, form, sizeof(form)) == 0);
        ASSERT_EQ(copy(1, 0), 100);
        ASSERT_EQ(copy(5, 0), 8);
        ASSERT_EQ(FN(c_loop)(5, 0), 8);

        copy = RELOCATE(c_loop_to_entry, &r);
        ASSERT_EQ(copy(5, 0), 0);
        ASSERT_EQ((int)copy(-3, 0), -4);
}

TEST(relocate_call_last) {
        Relocation r;
        fn2_t copy = RELOCATE(c_call_first, &r);

        ASSERT_EQ(r.displaced_len, 5);
        ASSERT_EQ(r.code[0], 0xe8);
        ASSERT_EQ(copy(1, 0), 12);
        ASSERT_EQ(FN(c_call_first)(1, 0), 12);
}

TEST(relocate_endbr64) {
        Relocation r;
        fn2_t copy = RELOCATE(c_endbr, &r);

        ASSERT_EQ(r.entry_offset, 4);
        ASSERT_EQ(r.displaced_len, 6);
        ASSERT_EQ(r.orig_off[0], 4);
        assert_jumps_back(&r, c_endbr, copy);
        ASSERT_EQ(copy(2, 3), 25);
}

TEST(relocate_tail_calls) {
        Relocation r;
        fn2_t copy = RELOCATE(c_tailcall_ibt, &r);

        ASSERT_EQ(copy(1, (long)(void *)c_helper), 12);
        copy = RELOCATE(c_tailcall_got, &r);
        ASSERT_EQ(copy(1, 0), 14);
        copy = RELOCATE(c_ret_not_last, &r);
        ASSERT_EQ(r.displaced_len, 5);
        ASSERT_EQ(copy(3, 0), 0);
}

/* Expects relocate_entry to refuse with error e and to say why. */
static void assert_refused(const uint8_t *fn, uint64_t len, int64_t copy_delta, int e) {
        char err[256] = "";
        Relocation r;
        int k;

        k = relocate_entry(fn, len, (uint64_t)fn, (uint64_t)fn + copy_delta, &r, err, sizeof(err));
        fprintf(stderr, "  refused %d (%s): %s\n", k, k < 0 ? strerror(-k) : "-", err);
        ASSERT_EQ(k, e);
        ASSERT_TRUE(err[0] != '\0');
}

TEST(relocate_refusals) {
        const int64_t near = 1 << 20, far = 3LL << 30;

        assert_refused(c_call_not_last, c_call_not_last_len, near, -ENOTSUP);
        assert_refused(c_getpc, c_getpc_len, near, -ENOTSUP);
        assert_refused(c_backjump, c_backjump_len, near, -EXDEV);
        assert_refused(c_tiny, c_tiny_len, near, -ENOSPC);
        assert_refused(c_tiny_endbr, c_tiny_endbr_len, near, -ENOSPC);
        assert_refused(c_jumptable, c_jumptable_len, near, -EXDEV);
        assert_refused(c_jumptable_ibt, c_jumptable_ibt_len, near, -EXDEV);
        assert_refused(c_bad, c_bad_len, near, -EILSEQ);
        assert_refused(c_bad_later, c_bad_later_len, near, -EILSEQ);
        assert_refused(c_load, c_load_len, far, -ERANGE);
        assert_refused(c_load, c_load_len, -far, -ERANGE);
        assert_refused(c_jcc_short, c_jcc_short_len, far, -ERANGE);
        assert_refused(c_endbr, c_endbr_len, far, -ERANGE);    /* only the jump back */
        /* the symbol size is the truth, whatever padding follows */
        assert_refused(c_load, 4, near, -ENOSPC);
}

/* relocate_entry_padded on a function of n bytes followed by pad bytes it may use. */
static int padded(const uint8_t *code, size_t n, size_t pad, Relocation *r, char *err, size_t errlen) {
        err[0] = 0;
        return relocate_entry_padded(code, n, pad, 0x400000, 0x400000 + (1 << 20), r, err, errlen);
}

/* A function shorter than the jump, with the padding after it (docs/reach.md). */
TEST(relocate_tiny_padding) {
        /* lea eax, [rdi+1]; ret, then a nop and a long nop */
        static const uint8_t lea[] = { 0x8d, 0x47, 0x01, 0xc3, 0x90, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00 };
        static const uint8_t zero[] = { 0x8d, 0x47, 0x01, 0xc3, 0x00, 0x00 };
        static const uint8_t falls[] = { 0x31, 0xc0, 0xff, 0xc0, 0x90, 0x90 };
        static const uint8_t endbr[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0xc3, 0xcc, 0xcc, 0xcc };
        static const uint8_t into[] = { 0xeb, 0x01, 0xc3, 0xc3, 0x90 };
        static const uint8_t ud2[] = { 0x31, 0xc0, 0x0f, 0x0b, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0 };
        char err[256];
        Relocation r;

        ASSERT_EQ(padded(lea, 4, 7, &r, err, sizeof(err)), 0);
        ASSERT_EQ(r.displaced_len, 5);
        ASSERT_EQ(r.padding, 1);
        /* the whole function, then int3 instead of a jump back */
        ASSERT_EQ(r.code_len, 5);
        ASSERT_TRUE(memcmp(r.code, lea, 4) == 0 && r.code[4] == 0xcc);
        ASSERT_EQ(padded(endbr, 7, 3, &r, err, sizeof(err)), 0);
        ASSERT_EQ(r.entry_offset, 4);
        ASSERT_EQ(r.padding, 2);
        ASSERT_EQ(padded(ud2, 4, 9, &r, err, sizeof(err)), 0);
        ASSERT_EQ(r.padding, 1);

        ASSERT_EQ(padded(lea, 4, 0, &r, err, sizeof(err)), -ENOSPC);
        ASSERT_STREQ(err, "only 0 byte(s) of padding follow it");
        ASSERT_EQ(padded(endbr, 7, 1, &r, err, sizeof(err)), -ENOSPC);
        ASSERT_STREQ(err, "only 1 byte(s) of padding follow it");
        ASSERT_EQ(padded(zero, 4, 2, &r, err, sizeof(err)), -ENOSPC);
        ASSERT_STREQ(err, "the byte 0x00 at +0x4 after it is not padding");
        ASSERT_EQ(padded(falls, 4, 2, &r, err, sizeof(err)), -ENOSPC);
        ASSERT_STREQ(err, "its last instruction is not ret, jmp or ud2, so the bytes after it are not "
                          "unreachable padding");
        /* lea cut by the symbol size: the instructions do not end where it does */
        ASSERT_EQ(padded(lea, 2, 9, &r, err, sizeof(err)), -ENOSPC);
        ASSERT_STREQ(err, "its instructions do not end where its symbol does");
        ASSERT_EQ(padded(into, 4, 1, &r, err, sizeof(err)), -EXDEV);
        ASSERT_STREQ(err, "branch at +0x0 into the displaced bytes (+0x3)");
}

TEST_MAIN();
