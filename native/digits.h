/* Integers written in decimal, 8 digits at a time (SWAR): the writer's hottest path after
   copying, so C that the compiler always inlines. */
#ifndef COLLECTOR_DIGITS_H
#define COLLECTOR_DIGITS_H

#include <stdint.h>
#include <string.h>
#include "buf.h"

/* v < 10**8 as 8 ASCII digits, zero-padded, the first in the lowest byte. */
static inline uint64_t collector_ascii8(uint64_t v) {
    uint64_t x = (v / 10000) | ((v % 10000) << 32), q;
    q = ((x * 10486) >> 20) & 0x0000007F0000007FULL;      /* each half / 100 */
    x = q | ((x - q * 100) << 16);
    q = ((x * 103) >> 10) & 0x000F000F000F000FULL;        /* each quarter / 10 */
    x = q | ((x - q * 10) << 8);
    return x | 0x3030303030303030ULL;
}

static const uint64_t collector_pow10u[9] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL};

/* v < 10**8 without leading zeros at q (8 bytes there are writable); returns its end. */
static inline char *collector_digits8(char *q, uint64_t v) {
    int nd;
    uint64_t x;
    if (v < 10) {
        q[0] = (char)('0' + v);
        return q + 1;
    }
    nd = ((64 - __builtin_clzll(v)) * 1233) >> 12;       /* digits, or one too few */
    nd += v >= collector_pow10u[nd];
    x = collector_ascii8(v) >> (8 * (8 - nd));
    memcpy(q, &x, 8);
    return q + nd;
}

/* v in decimal at the end of b. */
static inline __attribute__((always_inline)) int collector_put_int(collector_buf *b, int64_t v) {
    uint64_t u, hi, x;
    char *q;
    if (b->n + 32 > b->cap && collector_buf_grow(b, 32) < 0) return -1;
    q = b->p + b->n;
    if (v < 0) {
        *q++ = '-';
        u = (uint64_t)0 - (uint64_t)v;
    } else {
        u = (uint64_t)v;
    }
    if (u < 100000000) {
        q = collector_digits8(q, u);
    } else {
        hi = u / 100000000;
        u -= hi * 100000000;
        if (hi - 10000 < 90000) {               /* 13 digits: a time in ms */
            x = collector_ascii8(hi) >> 24;
            memcpy(q, &x, 8);
            q += 5;
        } else if (hi < 100000000) {
            q = collector_digits8(q, hi);
        } else {
            q = collector_digits8(q, hi / 100000000);
            x = collector_ascii8(hi % 100000000);
            memcpy(q, &x, 8);
            q += 8;
        }
        x = collector_ascii8(u);
        memcpy(q, &x, 8);
        q += 8;
    }
    b->n = q - b->p;
    return 0;
}

#endif /* COLLECTOR_DIGITS_H */
