/* Scanning helpers of the JSON reader: bit counts and the SSE2 scan of string bytes. */
#ifndef COLLECTOR_SCAN_H
#define COLLECTOR_SCAN_H

#include <Python.h>
#include <string.h>

static inline int collector_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
static inline int collector_clz64(unsigned long long x) { return __builtin_clzll(x); }

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
/* The first byte from i on that is a quote, a backslash, a control character or
   non-ASCII; n if none. */
static inline Py_ssize_t collector_skip_plain(const unsigned char *s, Py_ssize_t i, Py_ssize_t n) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8(0x22), bslash = _mm_set1_epi8(0x5C), space = _mm_set1_epi8(0x20);
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        /* signed: a byte >= 0x80 is negative, below the space too */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                 _mm_cmplt_epi8(x, space));
        int mask = _mm_movemask_epi8(m);
        if (mask) return i + __builtin_ctz((unsigned)mask);
        i += 16;
    }
#else
    while (i + 8 <= n) {
        unsigned long long x, q, b, bad;
        memcpy(&x, s + i, 8);
        q = x ^ 0x2222222222222222ULL;
        b = x ^ 0x5C5C5C5C5C5C5C5CULL;
        bad = (x | ((x - 0x2020202020202020ULL) & ~x) | ((q - 0x0101010101010101ULL) & ~q)
               | ((b - 0x0101010101010101ULL) & ~b)) & 0x8080808080808080ULL;
        if (bad) return i + (__builtin_ctzll(bad) >> 3);
        i += 8;
    }
#endif
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x20 || c >= 0x80 || c == 0x22 || c == 0x5C) break;
        i++;
    }
    return i;
}

/* collector_skip_plain for a string [i, n) inside a buffer that goes on to `limit`: 16 bytes
   are read at a time while they lie before `limit`, those from n on ignored, so a short
   string takes one step. */
static inline Py_ssize_t collector_skip_plain_in(const unsigned char *s, Py_ssize_t i, Py_ssize_t n,
                                                  Py_ssize_t limit) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8(0x22), bslash = _mm_set1_epi8(0x5C), space = _mm_set1_epi8(0x20);
    while (i < n && i + 16 <= limit) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                 _mm_cmplt_epi8(x, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (n - i < 16) mask &= (1u << (n - i)) - 1;
        if (mask) return i + __builtin_ctz(mask);
        i += 16;
    }
    if (i >= n) return n;
#else
    (void)limit;
#endif
    return collector_skip_plain(s, i, n);
}

/* Whether the n <= 16 bytes at s (16 of them readable) are all plain: no quote, backslash,
   control character or non-ASCII byte. */
static inline int collector_plain16(const unsigned char *s, Py_ssize_t n) {
#if defined(__SSE2__)
    const __m128i x = _mm_loadu_si128((const __m128i *)s);
    const __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x22)),
                                                _mm_cmpeq_epi8(x, _mm_set1_epi8(0x5C))),
                                   _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
    return ((unsigned)_mm_movemask_epi8(m) & ((1u << n) - 1)) == 0;
#else
    return collector_skip_plain(s, 0, n) == n;
#endif
}

#endif /* COLLECTOR_SCAN_H */
