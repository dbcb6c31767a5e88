# The native decoder, UTF-8 validation: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------------ UTF-8


cdef inline int utf8_lead(unsigned char c, unsigned char* lo, unsigned char* hi) noexcept nogil:
    """How many continuation bytes a UTF-8 lead byte takes (0: it is not one), and the range
    allowed for the first of them (lo, hi); the others are always 0x80-0xBF."""
    lo[0], hi[0] = 0x80, 0xBF
    if 0xC2 <= c <= 0xDF:
        return 1
    if 0xE0 <= c <= 0xEF:
        if c == 0xE0:
            lo[0] = 0xA0
        elif c == 0xED:
            hi[0] = 0x9F
        return 2
    if 0xF0 <= c <= 0xF4:
        if c == 0xF0:
            lo[0] = 0x90
        elif c == 0xF4:
            hi[0] = 0x8F
        return 3
    return 0


cdef inline int utf8_seq(cstr s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Length of the valid UTF-8 sequence of a non-ASCII byte at i, or 0."""
    cdef unsigned char c = s[i], lo, hi
    cdef int need, k
    if c < 0x80:
        return 1
    need = utf8_lead(c, &lo, &hi)
    if need == 0 or i + need >= n or not (lo <= <unsigned char>s[i + 1] <= hi):
        return 0
    for k in range(2, need + 1):
        if not (0x80 <= <unsigned char>s[i + k] <= 0xBF):
            return 0
    return need + 1
