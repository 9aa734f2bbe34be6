/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Executable scratch pages for the trampoline tests: near the test binary (within
 * +-2 GiB, where relocated copies and stubs must live) or far from it (beyond 4 GiB). */

#include <stddef.h>

/* Maps size bytes RWX within 1 GiB of addr, with MAP_FIXED_NOREPLACE. NULL on failure. */
void *map_near(const void *addr, size_t size);
/* Maps size bytes RWX more than 4 GiB away from addr. NULL on failure. */
void *map_far(const void *addr, size_t size);
