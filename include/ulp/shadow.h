/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shadow variables: new data attached to an existing object of the running program,
 * by <object pointer, id>, without changing the object's layout (docs/shadow.md).
 *
 * A patch uses them with this header alone: ulp maps its shadow-variable runtime into
 * the process the first time a patch refers to ulp_shadow_*, and binds every patch's
 * references to that one runtime, so that patches stacked on each other and a cumulative
 * replacement (ULP_REPLACE) see the same variables.
 *
 *     struct acct_extra { long deposits; };
 *     #define ID_DEPOSITS 1
 *
 *     static int deposit_v2(struct account *a, long amount) {
 *             struct acct_extra *x = ulp_shadow_get_or_alloc(a, ID_DEPOSITS, sizeof(*x), NULL, NULL);
 *             if (x)
 *                     __atomic_add_fetch(&x->deposits, 1, __ATOMIC_RELAXED);
 *             ...
 *     }
 *
 * Semantics (as the kernel's klp_shadow_*):
 * - ulp_shadow_get: the variable of <obj, id>, or NULL.
 * - ulp_shadow_alloc: a new variable of size bytes, zeroed, aligned for any type; ctor
 *   (may be NULL) runs on it before any other thread can see it, and a non-zero return
 *   gives up the allocation. NULL when the pair exists, when memory is short, or when
 *   ctor refused.
 * - ulp_shadow_get_or_alloc: the existing variable, or a new one as alloc.
 * - ulp_shadow_free: dtor (may be NULL) runs on the variable, then its memory is
 *   released; nothing happens when the pair does not exist.
 * - ulp_shadow_free_all: the same for every variable with that id.
 *
 * Threads: any thread may call any of them at any time. ulp_shadow_get takes no lock and
 * makes no system call: it may be called from a signal handler. The others may not be
 * called from a signal handler that interrupted one of them on the same thread (they
 * detect it: alloc returns NULL, free does nothing). A constructor or destructor must
 * not call ulp_shadow_alloc or ulp_shadow_free for the same pair. When two threads
 * allocate the same pair at once, one wins; the other's constructor may have run on
 * memory that is then released without its destructor, so a constructor only
 * initialises shadow_data. A variable must not be used after it was freed, and get of a
 * pair must not race with its free (as with memory from malloc).
 */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int  (*ulp_shadow_ctor_t)(void *obj, void *shadow_data, void *ctor_data);
typedef void (*ulp_shadow_dtor_t)(void *obj, void *shadow_data);

void *ulp_shadow_get(void *obj, unsigned long id);
void *ulp_shadow_alloc(void *obj, unsigned long id, size_t size, ulp_shadow_ctor_t ctor, void *ctor_data);
void *ulp_shadow_get_or_alloc(void *obj, unsigned long id, size_t size, ulp_shadow_ctor_t ctor,
                              void *ctor_data);
void ulp_shadow_free(void *obj, unsigned long id, ulp_shadow_dtor_t dtor);
void ulp_shadow_free_all(unsigned long id, ulp_shadow_dtor_t dtor);

#ifdef __cplusplus
}
#endif
