/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The return trap's trampoline, hand-encoded (trap.h). */

#include <string.h>

#include "patcher/x86_64/trap.h"

size_t trap_encode(uint8_t b[static TRAP_ENCODE_SIZE], uint64_t state_addr, uint8_t state, uint64_t ret) {
        size_t n = 0;
        b[n++] = 0x49; b[n++] = 0xbb;                    /* movabs r11, imm64 */
        memcpy(b + n, &state_addr, 8); n += 8;
        b[n++] = 0x41; b[n++] = 0xc6; b[n++] = 0x03;     /* mov byte [r11], imm8 */
        b[n++] = state;
        b[n++] = 0x49; b[n++] = 0xbb;                    /* movabs r11, imm64 */
        memcpy(b + n, &ret, 8); n += 8;
        b[n++] = 0x41; b[n++] = 0xff; b[n++] = 0xe3;     /* jmp r11 */
        return n;
}
