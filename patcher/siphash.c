/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <string.h>

#include "patcher/siphash.h"

static inline uint64_t rotl(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static inline void store_le64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct SipState {
        uint64_t v0, v1, v2, v3;
} SipState;

static void sip_rounds(SipState *s, int n) {
        for (int i = 0; i < n; i++) {
                s->v0 += s->v1;
                s->v1 = rotl(s->v1, 13);
                s->v1 ^= s->v0;
                s->v0 = rotl(s->v0, 32);
                s->v2 += s->v3;
                s->v3 = rotl(s->v3, 16);
                s->v3 ^= s->v2;
                s->v0 += s->v3;
                s->v3 = rotl(s->v3, 21);
                s->v3 ^= s->v0;
                s->v2 += s->v1;
                s->v1 = rotl(s->v1, 17);
                s->v1 ^= s->v2;
                s->v2 = rotl(s->v2, 32);
        }
}

/* Initialisation and compression of the whole message, up to the finalisation. */
static void sip_absorb(SipState *s, const uint8_t key[16], const uint8_t *in, size_t len, bool wide) {
        uint64_t k0 = load_le64(key), k1 = load_le64(key + 8), m;
        uint8_t last[8] = {};
        size_t full = len & ~(size_t)7;

        s->v0 = k0 ^ 0x736f6d6570736575ULL;
        s->v1 = k1 ^ 0x646f72616e646f6dULL;
        s->v2 = k0 ^ 0x6c7967656e657261ULL;
        s->v3 = k1 ^ 0x7465646279746573ULL;
        if (wide)
                s->v1 ^= 0xee;
        for (size_t i = 0; i < full; i += 8) {
                m = load_le64(in + i);
                s->v3 ^= m;
                sip_rounds(s, 2);
                s->v0 ^= m;
        }
        memcpy(last, in + full, len - full);
        m = load_le64(last) | ((uint64_t)(len & 0xff) << 56);
        s->v3 ^= m;
        sip_rounds(s, 2);
        s->v0 ^= m;
        s->v2 ^= wide ? 0xee : 0xff;
        sip_rounds(s, 4);
}

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len) {
        SipState s;
        sip_absorb(&s, key, data, len, false);
        return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

void siphash24_128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16]) {
        SipState s;
        sip_absorb(&s, key, data, len, true);
        store_le64(out, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
        s.v1 ^= 0xdd;
        sip_rounds(&s, 4);
        store_le64(out + 8, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
}
