# The native decoder, JSON scanning (strings, numbers, literals, skipped values): included by _native.pyx (see its docstring).

cdef extern from "scan.h":
    int ctz64 "collector_ctz64"(uint64_t x) nogil    # x != 0
    int clz64 "collector_clz64"(uint64_t x) nogil    # x != 0
    Py_ssize_t skip_plain "collector_skip_plain"(cstr s, Py_ssize_t i, Py_ssize_t n) nogil
    Py_ssize_t skip_plain_in "collector_skip_plain_in"(cstr s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t limit) nogil
    bint plain16 "collector_plain16"(cstr s, Py_ssize_t n) nogil


# ----------------------------------------------------------------------- JSON: scanning


cdef inline int skip_ws(Parser* p) noexcept nogil:
    """Skip whitespace; return how many bytes were skipped."""
    if p.pos < p.n and p.s[p.pos] > 32:     # compact JSON: nothing to skip
        return 0
    return skip_ws_run(p)


cdef int skip_ws_run(Parser* p) noexcept nogil:
    cdef Py_ssize_t start = p.pos
    cdef unsigned char c
    while p.pos < p.n:
        c = p.s[p.pos]
        if c == 32 or c == 10 or c == 13 or c == 9:
            p.pos += 1
        else:
            break
    return <int>(p.pos - start)


cdef inline int hex4(Parser* p, Py_ssize_t at) noexcept nogil:
    """The value of 4 hex digits at `at`, or -1."""
    cdef int v = 0, j, h
    if at + 4 > p.n:
        return -1
    for j in range(4):
        h = HEX[p.s[at + j]]
        if h == 0xFF:
            return -1
        v = (v << 4) | h
    return v


cdef inline uint64_t not_plain8(uint64_t x) noexcept nogil:
    """The high bit of each byte of x that is a quote, a backslash, a control character or
    non-ASCII; a borrow may also flag bytes after a flagged one, never before it."""
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL, b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return (x | ((x - 0x2020202020202020ULL) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs


cdef inline bint safe8(uint64_t x) noexcept nogil:
    """No byte of x needs escaping in a JSON string (non-ASCII bytes are fine)."""
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL, b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return ((((x - 0x2020202020202020ULL) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs) == 0


cdef int scan_string(Parser* p, Slot* out) noexcept nogil:
    """At an opening quote: check the string (escapes, surrogate pairs, UTF-8) and record its
    content span."""
    cdef cstr s = p.s
    cdef Py_ssize_t i = p.pos + 1, n = p.n
    cdef unsigned char c, c1
    cdef int esc = 0, u, u2
    while True:
        i = skip_plain(s, i, n)     # to the next byte that needs a look
        if i >= n:
            return fail(p, E_MALFORMED, "unterminated string", p.pos)
        c = s[i]
        if c == 34:
            break
        if c == 92:
            esc = 1
            if i + 1 >= n:
                return fail(p, E_MALFORMED, "unterminated string", p.pos)
            c1 = s[i + 1]
            if c1 == 117:  # \uXXXX
                u = hex4(p, i + 2)
                if u < 0:
                    return fail(p, E_MALFORMED, "invalid \\u escape", i)
                if 0xD800 <= u <= 0xDBFF:
                    if i + 7 < n and s[i + 6] == 92 and s[i + 7] == 117:
                        u2 = hex4(p, i + 8)
                        if 0xDC00 <= u2 <= 0xDFFF:
                            i += 12
                            continue
                    return fail(p, E_MALFORMED, "unpaired surrogate escape", i)
                if 0xDC00 <= u <= 0xDFFF:
                    return fail(p, E_MALFORMED, "unpaired surrogate escape", i)
                i += 6
            elif c1 == 34 or c1 == 92 or c1 == 47 or c1 == 98 or c1 == 102 or c1 == 110 or c1 == 114 or c1 == 116:
                i += 2
            else:
                return fail(p, E_MALFORMED, "invalid escape", i)
        elif c < 0x20:
            return fail(p, E_MALFORMED, "control character in string", i)
        else:
            u = utf8_seq(s, i, n)
            if u == 0:
                return fail(p, E_MALFORMED, "invalid UTF-8", i)
            i += u
    out.kind = STR
    out.esc = esc
    out.start = p.pos + 1
    out.len = i - p.pos - 1
    p.pos = i + 1
    return 0


cdef Py_ssize_t unescape(cstr src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    """Decode the content of a checked JSON string into UTF-8; dst needs n bytes."""
    cdef Py_ssize_t i = 0, o = 0
    cdef unsigned char c
    cdef unsigned int u, u2
    while i < n:
        c = src[i]
        if c != 92:
            dst[o] = c
            o += 1
            i += 1
            continue
        c = src[i + 1]
        if c == 117:
            u = (HEX[src[i + 2]] << 12) | (HEX[src[i + 3]] << 8) | (HEX[src[i + 4]] << 4) | HEX[src[i + 5]]
            i += 6
            if 0xD800 <= u <= 0xDBFF:
                u2 = (HEX[src[i + 2]] << 12) | (HEX[src[i + 3]] << 8) | (HEX[src[i + 4]] << 4) | HEX[src[i + 5]]
                i += 6
                u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00)
            if u < 0x80:
                dst[o] = <unsigned char>u
                o += 1
            elif u < 0x800:
                dst[o] = <unsigned char>(0xC0 | (u >> 6))
                dst[o + 1] = <unsigned char>(0x80 | (u & 0x3F))
                o += 2
            elif u < 0x10000:
                dst[o] = <unsigned char>(0xE0 | (u >> 12))
                dst[o + 1] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                dst[o + 2] = <unsigned char>(0x80 | (u & 0x3F))
                o += 3
            else:
                dst[o] = <unsigned char>(0xF0 | (u >> 18))
                dst[o + 1] = <unsigned char>(0x80 | ((u >> 12) & 0x3F))
                dst[o + 2] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                dst[o + 3] = <unsigned char>(0x80 | (u & 0x3F))
                o += 4
            continue
        if c == 98:
            dst[o] = 8
        elif c == 102:
            dst[o] = 12
        elif c == 110:
            dst[o] = 10
        elif c == 114:
            dst[o] = 13
        elif c == 116:
            dst[o] = 9
        else:
            dst[o] = c
        o += 1
        i += 2
    return o


cdef const unsigned char* string_bytes(Parser* p, Slot* sl, Py_ssize_t* n) except? NULL:
    """The UTF-8 bytes of a string slot (unescaped into the scratch buffer if need be)."""
    if sl.esc != 1:
        n[0] = sl.len
        return p.s + sl.start
    scratch_reserve(p, sl.len)
    n[0] = unescape(p.s + sl.start, sl.len, p.scratch)
    return p.scratch


cdef inline int lead_digits(uint64_t w) noexcept nogil:
    """How many of the 8 bytes of w (first byte lowest) are ASCII digits before any other."""
    cdef uint64_t z = ((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL) | \
        (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
    # a carry out of a byte >= 0xFA can only spoil bytes after it: the first non-digit is exact
    z = (((z & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | z) & 0x8080808080808080ULL
    if z == 0:
        return 8
    return ctz64(z) >> 3


cdef inline uint64_t eight_digits(uint64_t w) noexcept nogil:
    """The value of 8 ASCII digits (first byte lowest); 0x00 bytes count as leading zeros."""
    w = ((w & 0x0F0F0F0F0F0F0F0FULL) * 2561) >> 8
    w = ((w & 0x00FF00FF00FF00FFULL) * 6553601) >> 16
    return ((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32


cdef inline int scan_number(Parser* p, Slot* out, bint want) noexcept:
    """Check a number's grammar; if `want`, record its value: INT inside int64, else a double
    (BIGNUM for an integer outside int64, FLOAT otherwise). The usual number, a plain integer
    of at most 15 digits with 16 readable bytes after its sign, is read 8 digits at a time."""
    cdef cstr s = p.s
    cdef Py_ssize_t i = p.pos, n = p.n
    cdef bint neg = s[i] == 45
    cdef uint64_t w, mant
    cdef int nd, count
    cdef unsigned char c
    i += neg
    if i + 16 <= n:
        memcpy(&w, s + i, 8)
        nd = lead_digits(w)
        if nd == 0:
            return scan_number_slow(p, out, want)
        mant = eight_digits(w << (64 - 8 * nd))
        count = nd
        if nd == 8:
            memcpy(&w, s + i + 8, 8)
            nd = lead_digits(w)
            if nd == 8:
                return scan_number_slow(p, out, want)
            if nd:
                mant = mant * POW10U[nd] + eight_digits(w << (64 - 8 * nd))
                count += nd
        c = s[i + count]            # i + count < i + 16 <= n
        if c == 46 or c == 101 or c == 69 or (s[i] == 48 and count > 1):
            return scan_number_slow(p, out, want)
        p.pos = i + count
        if want:
            out.kind = INT
            out.i = -<int64_t>mant if neg else <int64_t>mant
            # its text is the number's own decimal form, to be copied out ("-0" is not)
            out.start = <int32_t>(i - neg)
            out.len = (count + neg) if (mant or not neg) else 0
        return 0
    return scan_number_slow(p, out, want)


cdef inline bint repr_like(cstr s, Py_ssize_t int_start, Py_ssize_t int_end, Py_ssize_t frac_start,
                           Py_ssize_t frac_end) noexcept nogil:
    """Whether a number of at most 15 significant digits written as int.frac, no exponent, is
    already Python's repr of its double (the shortest text that reads back the same): no
    trailing zero in the fraction but in "N.0", and not below 0.0001, where repr switches to
    an exponent."""
    if frac_end - frac_start == 1:
        return 1                # "N.d": d != 0, or "N.0"
    if s[frac_end - 1] == 48:
        return 0
    if int_end - int_start > 1 or s[int_start] != 48:
        return 1                # at least 1
    if frac_end - frac_start < 4:
        return 1                # "0.dd", "0.ddd", its last digit not 0: at least 0.001
    # "0.dddd...": at least 0.0001 unless its first four digits are zeros
    return not (s[frac_start] == 48 and s[frac_start + 1] == 48 and s[frac_start + 2] == 48
                and s[frac_start + 3] == 48)


cdef int scan_number_slow(Parser* p, Slot* out, bint want) noexcept:
    cdef cstr s = p.s
    cdef Py_ssize_t start = p.pos, i = p.pos, n = p.n, int_end, frac_start
    cdef bint neg = 0, is_float = 0
    cdef uint64_t mant = 0
    cdef int sig = 0, exp10 = 0, e = 0, esign = 1
    cdef bint overflow = 0
    cdef char small[64]
    cdef char* tmp
    cdef Py_ssize_t length, j
    if want:
        out.len = 0     # no text to copy out
    if s[i] == 45:
        neg = 1
        i += 1
    # the usual number: a plain integer of at most 18 digits
    j = i
    while j < n and 48 <= s[j] <= 57:
        mant = mant * 10 + (s[j] - 48)
        j += 1
    if 0 < j - i <= 18 and not (s[i] == 48 and j - i > 1) and (
            j >= n or (s[j] != 46 and s[j] != 101 and s[j] != 69)):
        p.pos = j
        if want:
            out.kind = INT
            out.i = -<int64_t>mant if neg else <int64_t>mant
        return 0
    mant = 0
    if i >= n or not (48 <= s[i] <= 57):
        return fail(p, E_MALFORMED, "invalid number", start)
    if s[i] == 48:
        i += 1
    else:
        while i < n and 48 <= s[i] <= 57:
            if sig < 19:
                mant = mant * 10 + (s[i] - 48)
                sig += 1
            else:
                exp10 += 1
                overflow = 1
            i += 1
    int_end = i
    if i < n and s[i] == 46:
        is_float = 1
        i += 1
        frac_start = i
        if i >= n or not (48 <= s[i] <= 57):
            return fail(p, E_MALFORMED, "invalid number", start)
        while i < n and 48 <= s[i] <= 57:
            if sig == 0 and s[i] == 48:
                exp10 -= 1
            elif sig < 19:
                mant = mant * 10 + (s[i] - 48)
                sig += 1
                exp10 -= 1
            i += 1
        if want and sig <= 15 and not overflow and repr_like(s, start + neg, int_end, frac_start, i):
            out.start = <int32_t>start
            out.len = <int32_t>(i - start)
    if i < n and (s[i] == 101 or s[i] == 69):
        if want:
            out.len = 0
        is_float = 1
        i += 1
        if i < n and (s[i] == 43 or s[i] == 45):
            if s[i] == 45:
                esign = -1
            i += 1
        if i >= n or not (48 <= s[i] <= 57):
            return fail(p, E_MALFORMED, "invalid number", start)
        while i < n and 48 <= s[i] <= 57:
            if e < 100000:
                e = e * 10 + (s[i] - 48)
            i += 1
    p.pos = i
    if not want:
        return 0
    if not is_float and not overflow:
        # an integer of at most 19 digits
        if not neg and mant <= 0x7FFFFFFFFFFFFFFFULL:
            out.kind = INT
            out.i = <int64_t>mant
            return 0
        if neg and mant <= 0x8000000000000000ULL:
            out.kind = INT
            out.i = <int64_t>(<uint64_t>0 - mant)
            return 0
    exp10 += esign * e
    if sig <= 15 and -22 <= exp10 <= 22:
        out.d = <double>mant
        if exp10 >= 0:
            out.d *= POW10[exp10]
        else:
            out.d /= POW10[-exp10]
        if neg:
            out.d = -out.d
    else:
        length = i - start
        if length < 64:
            tmp = small
        else:
            tmp = <char*>malloc(length + 1)
        if tmp == NULL:
            return fail(p, E_MALFORMED, "out of memory", start)
        memcpy(tmp, s + start, length)
        tmp[length] = 0
        try:
            out.d = PyOS_string_to_double(tmp, NULL, NULL)
        except Exception:
            out.d = 0.0
        if tmp != small:
            free(tmp)
    out.kind = FLOAT if is_float else BIGNUM
    return 0


cdef inline int scan_literal(Parser* p, const char* word, int n) noexcept nogil:
    if p.pos + n > p.n or memcmp(p.s + p.pos, word, n) != 0:
        return fail(p, E_MALFORMED, "invalid literal", p.pos)
    p.pos += n
    return 0


cdef int push_hash(Parser* p, uint64_t h) except -1:
    cdef uint64_t* q
    if p.nhash == p.hash_cap:
        q = <uint64_t*>realloc(p.hashes, sizeof(uint64_t) * (p.hash_cap * 2 + 64))
        if q == NULL:
            raise MemoryError()
        p.hashes = q
        p.hash_cap = p.hash_cap * 2 + 64
    p.hashes[p.nhash] = h
    p.nhash += 1
    return 0


cdef int cmp_u64(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0], y = (<const uint64_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef bint has_repeat(uint64_t* h, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    if n <= 16:
        for i in range(n):
            for j in range(i):
                if h[i] == h[j]:
                    return 1
        return 0
    qsort(h, n, sizeof(uint64_t), cmp_u64)
    for i in range(1, n):
        if h[i] == h[i - 1]:
            return 1
    return 0


cdef inline uint64_t fnv1a(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 0x100000001B3ULL
    return h


cdef int skip_value(Parser* p, int depth, uint8_t* pflags) except -2:
    """Check any JSON value (a container here is at level `depth`). With `pflags` (custom
    params), also note what keeps it from being copied as it is."""
    cdef unsigned char c
    cdef Slot tmp
    cdef Py_ssize_t base, n
    cdef const unsigned char* kb
    if p.pos >= p.n:
        return fail(p, E_MALFORMED, "unexpected end of data", p.pos)
    c = p.s[p.pos]
    if c == 34:
        return scan_string(p, &tmp)
    if c == 45 or 48 <= c <= 57:
        if scan_number(p, &tmp, pflags != NULL) < 0:
            return -1
        if pflags != NULL and tmp.kind != INT:
            if tmp.kind == BIGNUM:
                pflags[0] |= P_DIRTY
            if not isfinite(tmp.d):
                pflags[0] |= P_NONFINITE | P_DIRTY
        return 0
    if c == 116:
        return scan_literal(p, "true", 4)
    if c == 102:
        return scan_literal(p, "false", 5)
    if c == 110:
        return scan_literal(p, "null", 4)
    if c == 91:
        if depth > MAX_DEPTH_:
            return fail(p, E_DEEP, "nested too deep", p.pos)
        p.pos += 1
        if skip_ws(p) and pflags != NULL:
            pflags[0] |= P_DIRTY
        if p.pos < p.n and p.s[p.pos] == 93:
            p.pos += 1
            return 0
        while True:
            if skip_value(p, depth + 1, pflags) < 0:
                return -1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n:
                return fail(p, E_MALFORMED, "unterminated array", p.pos)
            c = p.s[p.pos]
            p.pos += 1
            if c == 93:
                return 0
            if c != 44:
                return fail(p, E_MALFORMED, "expected ',' or ']'", p.pos - 1)
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
    if c == 123:
        if depth > MAX_DEPTH_:
            return fail(p, E_DEEP, "nested too deep", p.pos)
        p.pos += 1
        if skip_ws(p) and pflags != NULL:
            pflags[0] |= P_DIRTY
        if p.pos < p.n and p.s[p.pos] == 125:
            p.pos += 1
            return 0
        base = p.nhash
        while True:
            if p.pos >= p.n or p.s[p.pos] != 34:
                return fail(p, E_MALFORMED, "expected a key", p.pos)
            if scan_string(p, &tmp) < 0:
                return -1
            if pflags != NULL:
                kb = string_bytes(p, &tmp, &n)
                push_hash(p, fnv1a(kb, n))
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n or p.s[p.pos] != 58:
                return fail(p, E_MALFORMED, "expected ':'", p.pos)
            p.pos += 1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if skip_value(p, depth + 1, pflags) < 0:
                return -1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n:
                return fail(p, E_MALFORMED, "unterminated object", p.pos)
            c = p.s[p.pos]
            p.pos += 1
            if c == 125:
                break
            if c != 44:
                return fail(p, E_MALFORMED, "expected ',' or '}'", p.pos - 1)
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
        if pflags != NULL:
            if p.nhash - base > 1 and has_repeat(p.hashes + base, p.nhash - base):
                pflags[0] |= P_DUP
            p.nhash = base
        return 0
    return fail(p, E_MALFORMED, "unexpected character", p.pos)
