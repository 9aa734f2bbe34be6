/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Included by every header of elf/, unwind/ and patcher/: those are the core's
 * internals, for the core itself and its unit tests (which get ULP_CORE_INTERNAL from
 * libulp_internal_dep). Everything else, ulpd and ulpctl first, uses the one public
 * header, include/ulp/libulp.h (docs/architecture.md, "The library boundary"), so that
 * the core can change its insides without breaking them. */

#ifndef ULP_CORE_INTERNAL
#error "internal header of the ulp core: include \"ulp/libulp.h\" instead (docs/architecture.md)"
#endif
