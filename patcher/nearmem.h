/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Memory near a module: everything a 5-byte jump or a RIP-relative operand of a
 * relocated instruction reaches must be within +-2 GiB. Free ranges come from the
 * gaps of /proc/PID/maps and are claimed with MAP_FIXED_NOREPLACE, so a race with the
 * target's own mmap fails cleanly instead of clobbering.
 */

#include <stdint.h>

#include "elf/maps.h"
#include "patcher/control.h"
#include "patcher/target.h"

#define NEAR_REACH ((1ULL << 31) - (1ULL << 24)) /* 2 GiB less a margin */

/* Finds len free bytes (page aligned) such that every byte is within NEAR_REACH of every
 * byte of [lo, hi). Prefers the gap closest to the range. -ENOSPC when none. */
int nearmem_find(const MapList *maps, uint64_t lo, uint64_t hi, uint64_t len, uint64_t *ret);

/* True when [a, a+alen) and [lo, hi) are all within NEAR_REACH of each other. */
bool nearmem_reaches(uint64_t a, uint64_t alen, uint64_t lo, uint64_t hi);

/* Allocates len bytes (16-byte aligned) of code space near [lo, hi) from the control
 * block's areas, mapping a new read+exec area with the borrowed thread th when none
 * has room. The first area (hdr.trap_addr) starts with 16 int3 bytes, followed by the
 * restorer of remote calls at NEARMEM_CALL_RETURN_OFF. */
#define NEARMEM_CALL_RETURN_OFF 16
int area_alloc(Target *t, Thread *th, Control *c, uint64_t lo, uint64_t hi, size_t len,
               uint64_t *ret);

/* One allocation area_alloc() would make. */
typedef struct AreaWant {
        uint64_t lo, hi;
        size_t len;
} AreaWant;
/* Whether the control block's areas have room for all n allocations, made in order as
 * area_alloc() makes them: then none needs a new area, nor a borrowed thread. */
bool area_fits(const Control *c, const AreaWant *v, size_t n);
/* Whether one area reaches every one of the n allocations and has room for all of them
 * at once: then any of them, made in any order, finds room (area_alloc() takes the first
 * area with room, and that one always has it), and none needs a borrowed thread. */
bool area_fits_in_one(const Control *c, const AreaWant *v, size_t n);
