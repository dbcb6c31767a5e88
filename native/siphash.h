/* SipHash-1-3 for dedup's fingerprints. */
#ifndef COLLECTOR_SIPHASH_H
#define COLLECTOR_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* SipHash-1-3 with 128-bit output (Aumasson and Bernstein, "SipHash: a fast short-input
   PRF", 2012: one compression round and three finalization rounds, as CPython's own str
   hash), over the 8 bytes of `first` (little-endian) followed by s[0:n]. */
#define COLLECTOR_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define COLLECTOR_SIPROUND do { \
    v0 += v1; v1 = COLLECTOR_ROTL(v1, 13); v1 ^= v0; v0 = COLLECTOR_ROTL(v0, 32); \
    v2 += v3; v3 = COLLECTOR_ROTL(v3, 16); v3 ^= v2; \
    v0 += v3; v3 = COLLECTOR_ROTL(v3, 21); v3 ^= v0; \
    v2 += v1; v1 = COLLECTOR_ROTL(v1, 17); v1 ^= v2; v2 = COLLECTOR_ROTL(v2, 32); \
} while (0)
static inline uint64_t collector_le64(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}
static void collector_sip13_128(uint64_t k0, uint64_t k1, uint64_t first,
                                const unsigned char *s, size_t n, uint64_t *out) {
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t m, b = (uint64_t)(n + 8) << 56;
    size_t i, left;
    v3 ^= first; COLLECTOR_SIPROUND; v0 ^= first;
    for (i = 0; i + 8 <= n; i += 8) {
        m = collector_le64(s + i);
        v3 ^= m; COLLECTOR_SIPROUND; v0 ^= m;
    }
    for (left = n - i; left > 0; left--)
        b |= (uint64_t)s[i + left - 1] << (8 * (left - 1));
    v3 ^= b; COLLECTOR_SIPROUND; v0 ^= b;
    v2 ^= 0xee;
    COLLECTOR_SIPROUND; COLLECTOR_SIPROUND; COLLECTOR_SIPROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    COLLECTOR_SIPROUND; COLLECTOR_SIPROUND; COLLECTOR_SIPROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

#endif /* COLLECTOR_SIPHASH_H */
