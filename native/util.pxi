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


cdef double POW10[23]          # exact: 10**22 is the last power of ten a double holds
for _i in range(23):
    POW10[_i] = float(10 ** _i)
cdef uint64_t POW10U[20]
for _i in range(20):
    POW10U[_i] = 10 ** _i

cdef extern from "digits.h":
    int put_int "collector_put_int"(Buf* b, int64_t v) except -1


cdef int put_double(Buf* b, double d) except -1:
    """Python's repr of a float: the shortest text that reads back as the same double.

    What SDKs send (prices, ratings, coordinates) mostly has a short decimal form: the fewest
    decimals k for which the nearest integer m to |d| * 10**k gives back d as m / 10**k. Both
    sides are exact or correctly rounded in IEEE arithmetic, so that test is the reader's own;
    below 2**48 at most one integer can pass it for each k, so it is also the nearest, as repr
    picks. The rest (17 digits, exponents, -0.0) go to Python's own dtoa."""
    cdef double a = fabs(d), m
    cdef int k
    cdef char* s
    if 1e-4 <= a < 281474976710656.0:              # repr's fixed notation, m below 2**48
        for k in range(18):
            m = a * POW10[k]
            if m >= 281474976710656.0:
                break
            m = rint(m)
            if m / POW10[k] == a:
                return put_fixed(b, d < 0, <uint64_t>m, k)
    s = PyOS_double_to_string(d, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        puts(b, s)
    finally:
        PyMem_Free(s)
    return 0


cdef int put_fixed(Buf* b, bint negative, uint64_t m, int k) except -1:
    """m / 10**k with k decimals (one, 0, when k is 0), as repr writes it."""
    cdef char digits[24]
    cdef int i = 24, n
    while True:
        i -= 1
        digits[i] = <char>(48 + m % 10)
        m //= 10
        if m == 0 and 24 - i > k:
            break
    if b.n + 48 > b.cap:
        buf_grow(b, 48)
    if negative:
        b.p[b.n] = 45
        b.n += 1
    n = 24 - i - k                                  # digits before the point
    memcpy(b.p + b.n, digits + i, n)
    b.p[b.n + n] = 46
    b.n += n + 1
    if k:
        memcpy(b.p + b.n, digits + 24 - k, k)
        b.n += k
    else:
        b.p[b.n] = 48
        b.n += 1
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
