# The native decoder, screen names (a url's `title` parameter, unquoted): included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------ screen names


cdef int put_title(Buf* b, const unsigned char* s, Py_ssize_t n) except -1:
    """`put_unquoted` of a usual title, straight into b: plain bytes, '+', and %XX escapes that
    make whole UTF-8 characters needing no JSON escape. Returns 1, with nothing written, for
    any other title (a bad sequence, a control character, a quote...): `put_unquoted` then."""
    cdef Py_ssize_t i = 0, j, k, need
    cdef unsigned char* q
    cdef unsigned char c, v, lo, hi
    if b.n + n > b.cap:
        buf_grow(b, n)          # never longer than s: each escape makes one byte of three
    q = <unsigned char*>b.p + b.n
    while i < n:
        c = s[i]
        if c == 37 and i + 2 < n and HEX[s[i + 1]] != 0xFF and HEX[s[i + 2]] != 0xFF:
            v = <unsigned char>((HEX[s[i + 1]] << 4) | HEX[s[i + 2]])
            if v < 0x80:
                if v < 0x20 or v == 34 or v == 92:
                    return 1
                q[0] = v
                q += 1
                i += 3
                continue
            need = utf8_lead(v, &lo, &hi)
            if need == 0:
                return 1
            q[0] = v
            for k in range(1, need + 1):
                j = i + 3 * k
                if j + 2 >= n or s[j] != 37 or HEX[s[j + 1]] == 0xFF or HEX[s[j + 2]] == 0xFF:
                    return 1
                v = <unsigned char>((HEX[s[j + 1]] << 4) | HEX[s[j + 2]])
                if not (lo <= v <= hi):
                    return 1
                lo, hi = 0x80, 0xBF
                q[k] = v
            q += need + 1
            i += 3 * (need + 1)
        elif c == 43:
            q[0] = 32
            q += 1
            i += 1
        elif c < 0x20 or c == 34 or c == 92:
            return 1
        else:
            q[0] = c            # a '%' that starts no escape, or a byte of valid UTF-8
            q += 1
            i += 1
    b.n = <char*>q - b.p
    return 0


cdef int put_unquoted(Buf* b, const unsigned char* s, Py_ssize_t n) except -1:
    """`urllib.parse.unquote_plus` of s (UTF-8), as JSON string content: '+' is a space, runs of
    %XX bytes are decoded as UTF-8 with each bad sequence replaced by U+FFFD."""
    cdef unsigned char small[512]
    cdef unsigned char* out = small
    cdef unsigned char* tmp
    cdef Py_ssize_t i = 0, o = 0, j, m, k
    cdef unsigned char c
    if n * 4 + 1 > 512:
        out = <unsigned char*>malloc(n * 4 + 1)
        if out == NULL:
            raise MemoryError()
    try:
        while i < n:
            c = s[i]
            if c == 43:
                out[o] = 32
                o += 1
                i += 1
            elif c == 37:
                # a run of decodable bytes: %XX escapes and the ASCII between them
                m = 0
                j = i
                tmp = out + 3 * n       # the run's bytes, never longer than what is left
                while j < n and s[j] < 0x80:
                    if s[j] == 37 and j + 2 < n and HEX[s[j + 1]] != 0xFF and HEX[s[j + 2]] != 0xFF:
                        tmp[m] = <unsigned char>((HEX[s[j + 1]] << 4) | HEX[s[j + 2]])
                        j += 3
                    elif s[j] == 43:
                        tmp[m] = 32
                        j += 1
                    else:
                        tmp[m] = s[j]
                        j += 1
                    m += 1
                o = put_replacing(tmp, m, out, o)
                i = j
            else:
                out[o] = c
                o += 1
                i += 1
        put_escaped(b, out, o)
    finally:
        if out != small:
            free(out)
    return 0


cdef Py_ssize_t put_replacing(const unsigned char* s, Py_ssize_t n, unsigned char* out, Py_ssize_t o) noexcept nogil:
    """Copy bytes as UTF-8, each maximal invalid subpart replaced by U+FFFD (as Python does)."""
    cdef Py_ssize_t i = 0, k, need
    cdef unsigned char c, lo, hi
    while i < n:
        c = s[i]
        if c < 0x80:
            out[o] = c
            o += 1
            i += 1
            continue
        need = utf8_lead(c, &lo, &hi)
        k = 1
        if need:
            while k <= need and i + k < n:
                if k == 1:
                    if not (lo <= s[i + 1] <= hi):
                        break
                elif not (0x80 <= s[i + k] <= 0xBF):
                    break
                k += 1
        if need and k == need + 1:
            memcpy(out + o, s + i, k)
            o += k
            i += k
        else:
            out[o], out[o + 1], out[o + 2] = 0xEF, 0xBF, 0xBD
            o += 3
            i += k if need else 1
    return o


cdef int put_screen_name(Parser* p, Buf* b, Slot* url) except -1:
    """The first `title=` parameter of the url's query (up to any '#'), unquoted, or null."""
    cdef uint64_t w, h
    cdef UrlSeen* seen
    cdef Py_ssize_t at, k
    if url.kind != STR:
        return put(b, "null", 4)
    # a hash of the whole text, 8 bytes at a time (urls that differ in one digit are common)
    h = <uint64_t>url.len
    k = 0
    while k + 8 <= url.len:
        memcpy(&w, p.s + url.start + k, 8)
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL
        k += 8
    if k < url.len:
        w = 0
        if url.len >= 8:
            memcpy(&w, p.s + url.start + url.len - 8, 8)
        else:
            memcpy(&w, p.s + url.start, url.len)
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL
    h ^= h >> 29
    seen = &p.urls[(h * 0x9E3779B97F4A7C15ULL) >> 58]
    if seen.len and url.len == seen.len and memcmp(p.s + url.start, p.s + seen.start, url.len) == 0:
        # a url seen before in this batch: its screen name is already written
        if b.n + seen.name_len > b.cap:
            buf_grow(b, seen.name_len)
        memcpy(b.p + b.n, b.p + seen.name_at, seen.name_len)
        b.n += seen.name_len
        return 0
    at = b.n
    _put_screen_name(p, b, url)
    if url.len:
        seen.start, seen.len = url.start, url.len
        seen.name_at, seen.name_len = at, b.n - at
    return 0


cdef int _put_screen_name(Parser* p, Buf* b, Slot* url) except -1:
    cdef const unsigned char* s
    cdef const unsigned char* hit
    cdef Py_ssize_t n, end, start, amp
    s = string_bytes(p, url, &n)
    hit = <const unsigned char*>memchr(s, 63, n)
    if hit == NULL:
        return put(b, "null", 4)
    start = hit - s + 1
    hit = <const unsigned char*>memchr(s + start, 35, n - start)
    end = n if hit == NULL else hit - s
    while start <= end:
        hit = <const unsigned char*>memchr(s + start, 38, end - start)
        amp = end if hit == NULL else hit - s
        if amp - start >= 6 and memcmp(s + start, b"title=", 6) == 0:
            putc(b, 34)
            # s is the input or the scratch buffer, never b
            if put_title(b, s + start + 6, amp - start - 6):
                put_unquoted(b, s + start + 6, amp - start - 6)
            return putc(b, 34)
        start = amp + 1
    return put(b, "null", 4)
