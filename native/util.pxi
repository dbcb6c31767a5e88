# The native decoder, utilities (errors, integers and doubles written, scratch space): included by _native.pyx (see its docstring).

# --------------------------------------------------------------------------- utilities


cdef int fail(Parser* p, int err, const char* msg, Py_ssize_t at) noexcept nogil:
    if p.err == 0:
        p.err = err
        p.err_msg = msg
        p.err_pos = at
    return -1


cdef inline int puts(Buf* b, const char* s) except -1:
    cdef Py_ssize_t n = 0
    while s[n]:
        n += 1
    return put(b, s, n)


cdef inline uint64_t ascii8(uint64_t v) noexcept nogil:
    """v < 10**8 as 8 ASCII digits, zero-padded, the first in the lowest byte."""
    cdef uint64_t x = (v // 10000) | ((v % 10000) << 32), q
    q = ((x * 10486) >> 20) & 0x0000007F0000007FULL        # each half // 100
    x = q | ((x - q * 100) << 16)
    q = ((x * 103) >> 10) & 0x000F000F000F000FULL          # each quarter // 10
    x = q | ((x - q * 10) << 8)
    return x | 0x3030303030303030ULL


cdef inline char* put_digits8(char* q, uint64_t v) noexcept nogil:
    """v < 10**8 without leading zeros at q (8 bytes there are writable); returns its end."""
    cdef int nd
    cdef uint64_t x
    if v < 10:
        q[0] = <char>(48 + v)
        return q + 1
    nd = ((64 - clz64(v)) * 1233) >> 12
    if v >= POW10U[nd]:
        nd += 1
    x = ascii8(v) >> (8 * (8 - nd))
    memcpy(q, &x, 8)
    return q + nd


cdef inline int put_int(Buf* b, int64_t v) except -1:
    """v in decimal: 8 digits at a time."""
    cdef uint64_t u, hi, x
    cdef char* q
    if b.n + 32 > b.cap:
        buf_grow(b, 32)
    q = b.p + b.n
    if v < 0:
        q[0] = 45
        q += 1
        u = <uint64_t>0 - <uint64_t>v
    else:
        u = <uint64_t>v
    if u < 100000000:
        q = put_digits8(q, u)
    else:
        hi = u // 100000000
        u -= hi * 100000000
        if hi < 100000000:
            q = put_digits8(q, hi)
        else:
            q = put_digits8(q, hi // 100000000)
            x = ascii8(hi % 100000000)
            memcpy(q, &x, 8)
            q += 8
        x = ascii8(u)
        memcpy(q, &x, 8)
        q += 8
    b.n = q - b.p
    return 0


cdef int put_double(Buf* b, double d) except -1:
    """Python's repr of a float: the shortest text that reads back as the same double."""
    cdef char* s = PyOS_double_to_string(d, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        puts(b, s)
    finally:
        PyMem_Free(s)
    return 0


cdef int scratch_reserve(Parser* p, Py_ssize_t n) except -1:
    cdef unsigned char* q
    if n > p.scratch_cap:
        q = <unsigned char*>realloc(p.scratch, n + 64)
        if q == NULL:
            raise MemoryError()
        p.scratch = q
        p.scratch_cap = n + 64
    return 0
