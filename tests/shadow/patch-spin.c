/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A patch whose deposits spend much of their time inside the shadow-variable runtime
 * holding its writers' lock (ulp_shadow_free_all walks every bucket), and whose
 * pre-unpatch callback allocates: a callback borrowing the thread while it holds the
 * lock would find its own lock taken (the allocation gives up, the revert is refused).
 * The patcher does not borrow a thread inside the runtime (docs/shadow.md).
 */
#include "ulp/patch.h"
#include "ulp/shadow.h"

#define ID_SPIN 0x5eed04
#define ID_SENTINEL 0x5eed05

struct account {
        long number;
        long balance;
};

static int v6(void) {
        return 6;
}

static void deposit_v6(struct account *a, long cents) {
        __atomic_add_fetch(&a->balance, cents, __ATOMIC_RELAXED);
        for (int i = 0; i < 200; i++) {
                ulp_shadow_free_all(ID_SPIN, NULL);
                for (volatile int k = 0; k < 3000; k++)
                        ;
        }
}

static int pre_unpatch(void) {
        static int sentinel;
        if (!ulp_shadow_alloc(&sentinel, ID_SENTINEL, sizeof(long), NULL, NULL))
                return 1;
        ulp_shadow_free(&sentinel, ID_SENTINEL, NULL);
        return 0;
}

ULP_PATCH_INFO("shadow-spin", "deposits inside the runtime's lock");
ULP_FUNC(ULP_MAIN, "version", v6);
ULP_FUNC(ULP_MAIN, "deposit", deposit_v6);
ULP_CALLBACKS(ULP_MAIN, NULL, NULL, pre_unpatch, NULL);
