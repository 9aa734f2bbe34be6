/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Packed relative relocations (SHT_RELR, DT_RELR, "-z pack-relative-relocs"): a list of
 * 64-bit words. An even word is the address of a word to relocate; the odd words after
 * it are bitmaps, bit i (1..63) of each standing for the word (i - 1) * 8 bytes past the
 * base, the base moving 63 words on after each bitmap. Each relocated word gets the load
 * bias added to what the file holds there (the addend is implicit).
 */

#include <stddef.h>
#include <stdint.h>

#define RELR_ENTSIZE 8

typedef int (*RelrFn)(uint64_t vaddr, void *userdata);

/* Calls fn for each address words[0..n) relocates, in increasing order and at least 8
 * bytes apart: so the count is bounded by the bytes the callee accepts as targets. Stops
 * at the first negative return of fn and returns it. -EDOM: a bitmap before any
 * address, an address below what earlier words covered, or a base that wraps. */
int relr_foreach(const uint64_t *words, size_t n, RelrFn fn, void *userdata);
