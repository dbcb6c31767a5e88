# The native decoder, the spec's field checks over slots: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------------ checking


cdef int check_list(Parser* p, Slot* slots, int list_id) except -2:
    """The code id of the first field the object gets wrong, or -1."""
    cdef List L = LISTS[list_id]
    cdef Rec* r
    cdef Slot* sl
    cdef int j, k, code
    cdef bint ok
    cdef double d
    cdef const unsigned char* b
    cdef Py_ssize_t n
    for j in range(L.count):
        r = &RECS[L.start + j]
        sl = &slots[r.slot]
        k = sl.kind
        if r.fine & (1 << k):
            continue
        if k == ABSENT or k == NUL:
            if r.required:
                return r.code_missing
            continue
        if r.type == T_INT:
            ok = k == INT
        elif r.type == T_STRING:
            ok = k == STR
        elif r.type == T_NUMBER:
            ok = k == INT or ((k == FLOAT or k == BIGNUM) and isfinite(sl.d))
        elif r.type == T_BOOL:
            ok = k == TRUE_ or k == FALSE_
        elif r.type == T_OBJECT:
            if k != OBJ:
                return r.code_invalid
            if sl.flags & P_CACHED and p.sub_valid[r.slot]:
                continue        # the same text as an object that passed
            code = check_list(p, slots, r.sub_list)
            if code >= 0:
                return code
            if sl.flags & P_CACHED:
                p.sub_valid[r.slot] = 1
            continue
        elif r.type == T_PARAMS:
            ok = k == OBJ
        else:
            ok = k == ARR
        if not ok:
            return r.code_invalid
        if r.check == C_ANY:
            continue
        if r.check == C_ID:
            if sl.esc == 1:
                b = string_bytes(p, sl, &n)
            else:
                n = sl.len
            ok = 0 < n <= MAX_ID_BYTES_
        elif r.check == C_POSITIVE:
            ok = sl.i >= 1
        elif r.check == C_NON_NEGATIVE:
            ok = sl.i >= 0
        elif r.check == C_CURRENCY:
            ok = 0 <= sl.i <= CURRENCY_MAX_
        elif r.check == C_DENSITY:
            d = <double>sl.i if k == INT else sl.d
            ok = DENSITY_MIN_ <= d <= DENSITY_MAX_
        elif r.check == C_ACTION_CODE:
            if not (0 <= sl.i <= MAX_ACTION_CODE_ and L_ACTION[sl.i] >= 0):
                return CODE_UNKNOWN_ACTION
        elif r.check == C_ACTION_NAME:
            b = string_bytes(p, sl, &n)
            if not valid_action_name(b, n):
                return CODE_BAD_ACTION_NAME
        if not ok:
            return r.code_invalid
    return -1


cdef bint valid_action_name(const unsigned char* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint dot = 0
    if n < 1 or n > MAX_ACTION_NAME_:
        return 0
    for i in range(n):
        if not ACTION_CHAR[b[i]]:
            return 0
        if b[i] == 46 and 0 < i < n - 1:
            dot = 1
    return dot
