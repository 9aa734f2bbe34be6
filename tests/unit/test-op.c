/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operation layer (patcher/op*.c, the public ulp_* calls) in-process: a real patch
 * file applied to this very process through the fake target, whose made-up threads stand
 * for the process's threads. The test then calls the patched function itself and sees
 * the new version; the revert brings the old one back.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "fake-target.h"
#include "ulp/libulp.h"
#include "test.h"

/* Called as compiled, never inlined or specialised at a call site, so that the patched
 * entry is the one the test runs. clang has no noipa: noinline and optnone come close. */
#ifdef __clang__
#define NOIPA __attribute__((noinline, optnone))
#else
#define NOIPA __attribute__((noipa))
#endif

/* The function patch-self.so replaces, and what its ULP_REF names. */
long unit_counter = 4;
long unit_value(void);
NOIPA long unit_value(void) {
        long v = unit_counter;
        for (int i = 0; i < 3; i++)
                v += unit_counter & i;
        return v - (unit_counter & 1) - (unit_counter & 2) * 2 + (unit_counter & 2);
}

/* Where the made-up threads sit: not in the function being replaced. */
static NOIPA void idle_here(void) {
}

/* As ulpctl sets them: a caller without the key (not root) signs nothing and acts on
 * its own processes' unsigned blocks. */
static UlpOptions options(unsigned timeout_ms) {
        return (UlpOptions) { .timeout_ms = timeout_ms, .trust_unsigned = geteuid() != 0 };
}

static int open_patch(const char *file) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", PATCH_DIR, file);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        return fd;
}

static void threads(unsigned n) {
        fake_reset();
        for (unsigned i = 0; i < n; i++)
                fake_thread_add(NULL, 0, (uint64_t)(uintptr_t)&idle_here);
}

static const UlpPatchStatus *find_patch(const UlpProcessStatus *s, const char *name) {
        for (size_t i = 0; i < s->n_patches; i++)
                if (strcmp(s->patches[i].name, name) == 0)
                        return &s->patches[i];
        return NULL;
}

TEST(apply_status_revert_in_process) {
        UlpOptions o = options(5000);
        UlpReport rep = {};
        UlpProcessStatus s = {};
        const UlpPatchStatus *p;
        int fd = open_patch("patch-self.so"), r;

        ASSERT_EQ(unit_value(), 4);
        threads(3);
        r = ulp_apply(getpid(), fd, "patch-self.so", &o, &rep);
        if (r < 0)
                TEST__FAIL("apply: %d %s", r, rep.message);
        ulp_report_done(&rep);
        /* The entry of unit_value now jumps to the patch: this thread runs version 2. */
        ASSERT_EQ(unit_value(), 4 * 10 + 42);

        rep = (UlpReport) {};
        ASSERT_OK(ulp_status(getpid(), &s, &rep));
        p = find_patch(&s, "unit-self");
        ASSERT_TRUE(p);
        ASSERT_STREQ(ulp_patch_state_to_string(p->state), "patched");
        ASSERT_EQ(p->n_funcs, 1);
        ASSERT_STREQ(p->funcs[0].symbol, "unit_value");
        ulp_status_done(&s);
        ulp_report_done(&rep);

        rep = (UlpReport) {};
        r = ulp_revert(getpid(), "unit-self", &o, &rep);
        if (r < 0)
                TEST__FAIL("revert: %d %s", r, rep.message);
        ulp_report_done(&rep);
        ASSERT_EQ(unit_value(), 4);
        close(fd);
}

/* A made-up thread sitting inside unit_value holds the apply back until the timeout,
 * named as the straggler; the apply is reversed and nothing changed. */
TEST(straggler_times_out_and_reverses) {
        UlpOptions o = options(300);
        UlpReport rep = {};
        FakeThread *th;
        int fd = open_patch("patch-self.so"), r;

        threads(2);
        th = fake_thread(100002);
        ASSERT_TRUE(th);
        fake_thread_stack(th, (uint64_t[]) { (uint64_t)(uintptr_t)&idle_here, (uint64_t)(uintptr_t)&unit_value + 4 }, 2);
        r = ulp_apply(getpid(), fd, "patch-self.so", &o, &rep);
        ASSERT_ERR(r, -ETIMEDOUT);
        if (!strstr(rep.message, "reversed"))
                TEST__FAIL("message: %s", rep.message);
        ASSERT_EQ(rep.n_stragglers, 1);
        ASSERT_EQ(rep.stragglers[0].tid, 100002);
        /* The return address names the call before it, by the symbol it is in. */
        ASSERT_STREQ(rep.stragglers[0].function, "unit_value+0x3");
        ulp_report_done(&rep);
        ASSERT_EQ(unit_value(), 4);
        close(fd);
}

/* Steps op to its end: 1 when it finished. */
static int op_run(UlpOp *op) {
        unsigned next_ms = 1;
        int r;

        while ((r = ulp_op_step(op, &next_ms)) == 0)
                usleep(next_ms * 1000);
        return r;
}

/* ulp_op_has_late(), which ulpd asks at an operation's end instead of reading the
 * process's status again: true once the block names an object not loaded, false for a
 * patch whose objects are all loaded and once the patch naming one is reverted. */
TEST(has_late_as_the_status_says) {
        UlpOptions o = options(5000);
        UlpReport rep = {};
        UlpProcessStatus s = {};
        const UlpPatchStatus *p;
        UlpOp *op = NULL;
        int self = open_patch("patch-self.so"), late = open_patch("patch-late.so");

        ASSERT_TRUE(!ulp_op_has_late(NULL));
        threads(2);
        ASSERT_OK(ulp_op_apply(getpid(), self, "patch-self.so", &o, &op, &rep));
        ASSERT_EQ(op_run(op), 1);
        ASSERT_TRUE(!ulp_op_has_late(op));
        ulp_op_free(op);
        ulp_report_done(&rep);
        rep = (UlpReport) {};
        ASSERT_OK(ulp_revert(getpid(), "unit-self", &o, &rep));
        ulp_report_done(&rep);

        rep = (UlpReport) {};
        ASSERT_OK(ulp_op_apply(getpid(), late, "patch-late.so", &o, &op, &rep));
        ASSERT_EQ(op_run(op), 1);
        ASSERT_TRUE(ulp_op_has_late(op));
        ulp_op_free(op);
        ulp_report_done(&rep);
        ASSERT_EQ(unit_value(), 7);
        rep = (UlpReport) {};
        ASSERT_OK(ulp_status(getpid(), &s, &rep));
        p = find_patch(&s, "unit-late");
        ASSERT_TRUE(p && p->n_late_objects == 1);
        ASSERT_STREQ(p->late_objects[0], "libulp-unit-never.so.1");
        ulp_status_done(&s);
        ulp_report_done(&rep);

        rep = (UlpReport) {};
        ASSERT_OK(ulp_op_revert(getpid(), "unit-late", &o, &op, &rep));
        ASSERT_EQ(op_run(op), 1);
        ASSERT_TRUE(!ulp_op_has_late(op));
        ulp_op_free(op);
        ulp_report_done(&rep);
        ASSERT_EQ(unit_value(), 4);
        close(self);
        close(late);
}

TEST_MAIN()
