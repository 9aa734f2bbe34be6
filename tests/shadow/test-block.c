/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the patcher believes of a process's shadow-variable runtime (docs/shadow.md): the
 * control block's shadow fields, the runtime's counters read from target memory, and
 * which threads are never borrowed for a callback.
 */
#include <stdlib.h>

#include "patcher/shadow.h"
#include "runtime/shadow-abi.h"
#include "tests/control/control-sample.h"
#include "tests/test.h"

#define BASE 0x7f0000400000ULL

static ControlImage *sample(void) {
        static ControlImage *img;
        if (!img)
                img = malloc(sizeof(*img));
        control_sample(img);
        img->hdr.shadow_base = BASE;
        img->hdr.shadow_size = 0x25000;
        for (unsigned i = 0; i < CONTROL_SHADOW_ENTRIES; i++)
                img->hdr.shadow_entry[i] = BASE + 0x1000 + 0x100 * i;
        img->hdr.shadow_stats = BASE + 0x4000;
        return img;
}

static void refused(const ControlImage *img, const char *want) {
        char why[200] = "";
        int r = control_validate(img, SAMPLE_SELF, why, sizeof(why));
        if (r != -EBADMSG || strcmp(why, want) != 0) {
                fprintf(stderr, "  got %d '%s', expected '%s'\n", r, why, want);
                ASSERT_TRUE(false);
        }
}

TEST(block_fields) {
        char why[200] = "";
        ControlImage *img = sample();
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        control_sample(img);   /* none at all: as every block before */
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));

        img = sample();
        img->hdr.shadow_base = BASE + 8;
        refused(img, "the shadow-variable runtime is not a sane mapping");
        img = sample();
        img->hdr.shadow_size = 1ULL << 40;
        refused(img, "the shadow-variable runtime is not a sane mapping");
        img = sample();
        img->hdr.shadow_base = 0xfffffffffffff000ULL;
        refused(img, "the shadow-variable runtime is not a sane mapping");
        img = sample();
        img->hdr.shadow_base = 0;   /* entries without a runtime */
        refused(img, "the shadow-variable runtime is not a sane mapping");
        img = sample();
        img->hdr.shadow_entry[3] = BASE + 0x25000;
        refused(img, "shadow-variable entry 3 is outside its runtime");
        img = sample();
        img->hdr.shadow_entry[0] = 0x401000;
        refused(img, "shadow-variable entry 0 is outside its runtime");
        img = sample();
        img->hdr.shadow_stats = BASE + 0x25000 - 8;
        refused(img, "the shadow-variable counters are outside their runtime");
        img = sample();
        img->hdr.shadow_stats = BASE + 0x4001;
        refused(img, "the shadow-variable counters are outside their runtime");
}

TEST(counters) {
        struct ulp_shadow_stats s = { ULP_SHADOW_STATS_MAGIC, ULP_SHADOW_ABI, 0, 4, 32, 131072 };
        ShadowStats st;
        ASSERT_OK(shadow_check_stats(&s, &st));
        ASSERT_EQ(st.variables, 4);
        ASSERT_EQ(st.bytes, 32);
        ASSERT_EQ(st.mapped, 131072);
        s.magic++;
        ASSERT_ERR(shadow_check_stats(&s, &st), -EBADMSG);
        s.magic--;
        s.abi = 2;
        ASSERT_ERR(shadow_check_stats(&s, &st), -EBADMSG);
        s.abi = ULP_SHADOW_ABI;
        s.bytes = s.mapped + 1;
        ASSERT_ERR(shadow_check_stats(&s, &st), -EBADMSG);
        s.bytes = 32;
        s.variables = s.mapped;
        ASSERT_ERR(shadow_check_stats(&s, &st), -EBADMSG);
        s.variables = 4;
        s.mapped = UINT64_MAX;
        ASSERT_ERR(shadow_check_stats(&s, &st), -EBADMSG);
}

/* A thread whose pc lies in the runtime may hold its writers' lock: not for callbacks. */
TEST(borrowable) {
        ControlImage *img = sample();
        Thread th = {};
        regs_set_pc(&th.regs, BASE + 0x1234);
        ASSERT_TRUE(shadow_has_thread(img, &th));
        regs_set_pc(&th.regs, BASE);
        ASSERT_TRUE(shadow_has_thread(img, &th));
        regs_set_pc(&th.regs, BASE + 0x25000);
        ASSERT_TRUE(!shadow_has_thread(img, &th));
        regs_set_pc(&th.regs, BASE - 1);
        ASSERT_TRUE(!shadow_has_thread(img, &th));
        control_sample(img);
        regs_set_pc(&th.regs, 0);
        ASSERT_TRUE(!shadow_has_thread(img, &th));
}

TEST_MAIN()
