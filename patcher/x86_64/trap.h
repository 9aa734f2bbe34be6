/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The code of a return trap's trampoline (patcher/transition-trap.c): the thread that
 * returns into it writes its own state byte and goes on to the real return address,
 * using r11 only (clobbered by any call), flags and stack untouched:
 *
 *     movabs r11, state_addr
 *     mov    byte [r11], state
 *     movabs r11, ret
 *     jmp    r11
 */

#include <stddef.h>
#include <stdint.h>

#define TRAP_ENCODE_SIZE 27

/* Writes the trampoline into b (TRAP_ENCODE_SIZE bytes); returns its length. */
size_t trap_encode(uint8_t b[static TRAP_ENCODE_SIZE], uint64_t state_addr, uint8_t state, uint64_t ret);
