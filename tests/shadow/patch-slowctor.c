/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A patch whose deposits spend most of their time in a shadow variable's constructor,
 * and whose pre-unpatch callback frees every such variable: the callback then mostly
 * runs on a thread stopped inside ulp_shadow_alloc (in the constructor), and must not
 * wait for that allocation (docs/shadow.md).
 */
#include <time.h>

#include "ulp/patch.h"
#include "ulp/shadow.h"

#define ID_SLOW 0x5eed03

struct account {
        long number;
        long balance;
};

static int v5(void) {
        return 5;
}

static int slow_ctor(void *obj, void *data, void *arg) {
        struct timespec ts = { 0, 30 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        *(long *)data = 1;
        return 0;
}

static void deposit_v5(struct account *a, long cents) {
        __atomic_add_fetch(&a->balance, cents, __ATOMIC_RELAXED);
        ulp_shadow_free(a, ID_SLOW, NULL);
        ulp_shadow_alloc(a, ID_SLOW, sizeof(long), slow_ctor, NULL);
}

/* Allocating and freeing work here, whatever the borrowed thread was doing: non-zero
 * (the revert refused) if not. */
static int pre_unpatch(void) {
        static int sentinel;
        if (!ulp_shadow_alloc(&sentinel, ID_SLOW, sizeof(long), NULL, NULL))
                return 1;
        ulp_shadow_free_all(ID_SLOW, NULL);
        return ulp_shadow_get(&sentinel, ID_SLOW) ? 2 : 0;
}

static void post_unpatch(void) {
        ulp_shadow_free_all(ID_SLOW, NULL);
}

ULP_PATCH_INFO("shadow-slowctor", "deposits inside a slow constructor");
ULP_FUNC(ULP_MAIN, "version", v5);
ULP_FUNC(ULP_MAIN, "deposit", deposit_v5);
ULP_CALLBACKS(ULP_MAIN, NULL, NULL, pre_unpatch, post_unpatch);
