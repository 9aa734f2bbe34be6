/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of unwind/ without another process: the test process unwinds itself from
 * registers captured in a live function, and from forged register sets and stacks that
 * provoke the cases where libdwfl ends a walk "normally" although the stack did not end
 * (return address 0, return address unreadable).
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/module.h"
#include "tests/test.h"
#include "unwind/unwind.h"

static pid_t self;

/* Reads our own memory through the kernel (as the real caller reads a target's), so that
 * sanitizers do not see reads of other frames' redzones. */
static int read_self(void *userdata, uint64_t addr, void *buf, size_t len) {
        struct iovec local = { buf, len }, remote = { (void *) (uintptr_t) addr, len };
        ssize_t n = process_vm_readv(self, &local, 1, &remote, 1, 0);

        if (n < 0)
                return negative_errno();
        return (size_t) n == len ? 0 : -EIO;
}

static int read_fail(void *userdata, uint64_t addr, void *buf, size_t len) {
        return -EFAULT;
}

static Unwinder *self_unwinder(ModuleList *mods, unwind_read_fn fn) {
        Unwinder *u = NULL;

        self = getpid();
        ASSERT_OK(modules_read(self, mods));
        ASSERT_OK(unwinder_new(self, mods, fn, NULL, &u));
        return u;
}

/* A function with CFI whose entry we use as a forged PC: there, CFA = rsp + 8 and the
 * return address is at [rsp]. */
__attribute__((noinline, noipa)) void unit_leaf(void);
__attribute__((noinline, noipa)) void unit_leaf(void) {
        __asm__ volatile("");
}

TEST(invalid_arguments) {
        ModuleList none = {};
        struct user_regs_struct regs = {};
        UnwindResult res;
        Unwinder *u = NULL;

        ASSERT_ERR(unwinder_new(0, &none, read_self, NULL, &u), -EINVAL);
        ASSERT_ERR(unwinder_new(getpid(), NULL, read_self, NULL, &u), -EINVAL);
        ASSERT_ERR(unwinder_new(getpid(), &none, NULL, NULL, &u), -EINVAL);
        ASSERT_OK(unwinder_new(getpid(), &none, read_self, NULL, &u));
        ASSERT_ERR(unwinder_unwind(u, 0, &regs, &res), -EINVAL);
        ASSERT_ERR(unwinder_unwind(u, getpid(), NULL, &res), -EINVAL);
        ASSERT_ERR(unwinder_set_modules(u, NULL), -EINVAL);
        unwinder_free(u);
        unwinder_free(NULL);
}

/* Captures the registers at a point inside this function and unwinds from there while
 * the function is still running: its frame and its callers' are intact. */
__attribute__((noinline, noipa)) static int unwind_here(Unwinder *u, UnwindResult *res) {
        struct user_regs_struct regs = {};

        __asm__ volatile(
                "lea 0f(%%rip), %%rax\n\t"
                "mov %%rax, %0\n\t"
                "mov %%rsp, %1\n\t"
                "mov %%rbp, %2\n\t"
                "mov %%rbx, %3\n\t"
                "mov %%r12, %4\n\t"
                "mov %%r13, %5\n\t"
                "mov %%r14, %6\n\t"
                "mov %%r15, %7\n"
                "0:"
                : "=m"(regs.rip), "=m"(regs.rsp), "=m"(regs.rbp), "=m"(regs.rbx),
                  "=m"(regs.r12), "=m"(regs.r13), "=m"(regs.r14), "=m"(regs.r15)
                : : "rax");
        int r = unwinder_unwind(u, gettid(), &regs, res);
        __asm__ volatile("" ::: "memory"); /* keep this frame alive past the call */
        return r;
}

TEST(self_unwind_reliable) {
        _cleanup_(modulelist_done) ModuleList mods = {};
        Unwinder *u = self_unwinder(&mods, read_self);
        UnwindResult res;

        ASSERT_OK(unwind_here(u, &res));
        if (!res.reliable)
                fprintf(stderr, "  %s\n", res.reason);
        ASSERT_TRUE(res.reliable);
        /* unwind_here, this test, main, __libc_start_call_main, __libc_start_main, _start */
        ASSERT_TRUE(res.n >= 6);
        ASSERT_TRUE(res.pcs[0] >= (uint64_t) (uintptr_t) unwind_here);
        ASSERT_TRUE(modules_find_addr(&mods, res.pcs[res.n - 1]) != NULL);
        ASSERT_TRUE(modules_find_addr(&mods, res.pcs[res.n - 1])->is_main); /* _start */
        unwinder_free(u);
}

/* The unwind of a made-up thread at pc with the stack pointer sp, its memory read
 * through fn: n frames (at least one when n is 0; pcs[0] == pc), unreliable, for a
 * reason that says why. */
static void expect_unreliable(unwind_read_fn fn, uint64_t pc, uint64_t sp, size_t n, const char *why) {
        _cleanup_(modulelist_done) ModuleList mods = {};
        Unwinder *u = self_unwinder(&mods, fn);
        struct user_regs_struct regs = { .rip = pc, .rsp = sp };
        UnwindResult res;

        ASSERT_OK(unwinder_unwind(u, gettid(), &regs, &res));
        ASSERT_TRUE(n ? res.n == n : res.n >= 1);
        ASSERT_EQ_U64(res.pcs[0], pc);
        ASSERT_TRUE(!res.reliable);
        if (!strstr(res.reason, why))
                TEST__FAIL("reason \"%s\" does not say \"%s\"", res.reason, why);
        unwinder_free(u);
}

/* libdwfl ends a walk "normally" (returns 0) when a return address reads as 0; only CFI
 * marking the return address undefined is the end of a stack. */
TEST(zero_return_address_unreliable) {
        uint64_t stack[8] = {};

        expect_unreliable(read_self, (uint64_t) (uintptr_t) unit_leaf, (uint64_t) (uintptr_t) stack,
                          1, "does not mark the outermost frame");
}

/* ...and also when the return address cannot be read at all. */
TEST(unreadable_stack_unreliable) {
        expect_unreliable(read_fail, (uint64_t) (uintptr_t) unit_leaf, 0x7ff0, 1, "cannot read 0x7ff0");
}

TEST(pc_outside_modules_unreliable) {
        uint64_t stack[8] = {};

        expect_unreliable(read_self, 0x1000, (uint64_t) (uintptr_t) stack,
                          0, "frame #0 pc 0x1000 is outside any module");
}

TEST_MAIN()
