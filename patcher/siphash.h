/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * SipHash-2-4 (Aumasson and Bernstein), a keyed pseudo-random function for short
 * messages: the MAC of the control block's identity (control-trust.c). Written from the
 * paper's description; tests/core/test-control.c checks it against the paper's vectors.
 */

#include <stddef.h>
#include <stdint.h>

/* The 64-bit output. */
uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

/* The 128-bit output variant, into out[16]. */
void siphash24_128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16]);
