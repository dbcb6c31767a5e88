# The native decoder, protobuf messages read into slots: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------- protobuf: reading


cdef inline int read_varint(Parser* p, Py_ssize_t end, uint64_t* out) noexcept nogil:
    cdef uint64_t v = 0
    cdef int shift = 0, k
    cdef unsigned char b
    cdef Py_ssize_t start = p.pos
    for k in range(10):
        if p.pos >= end:
            break
        b = p.s[p.pos]
        p.pos += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return 0
        shift += 7
    return fail(p, E_MALFORMED, "protobuf: truncated or overlong varint", start)


cdef int read_field(Parser* p, Py_ssize_t end, uint64_t* number, int* wtype, uint64_t* value,
                    Py_ssize_t* vstart, Py_ssize_t* vend) noexcept nogil:
    """One field of a message: its number, wire type, and value (varint) or span."""
    cdef uint64_t key, size
    cdef Py_ssize_t start = p.pos
    if read_varint(p, end, &key) < 0:
        return -1
    number[0] = key >> 3
    wtype[0] = <int>(key & 7)
    if number[0] == 0 or number[0] > 0x1FFFFFFF:
        return fail(p, E_MALFORMED, "protobuf: invalid field number", start)
    if wtype[0] == 0:
        return read_varint(p, end, value)
    if wtype[0] == 1 or wtype[0] == 5:
        size = 8 if wtype[0] == 1 else 4
        if <uint64_t>(end - p.pos) < size:
            return fail(p, E_MALFORMED, "protobuf: truncated fixed-size field", p.pos)
    elif wtype[0] == 2:
        if read_varint(p, end, &size) < 0:
            return -1
        if size > <uint64_t>(end - p.pos):
            return fail(p, E_MALFORMED, "protobuf: length past the end", p.pos)
    else:
        return fail(p, E_MALFORMED, "protobuf: unsupported wire type", start)
    vstart[0] = p.pos
    p.pos += <Py_ssize_t>size
    vend[0] = p.pos
    return 0


cdef int check_utf8(Parser* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i = start
    cdef int u
    cdef uint64_t w
    while i < end:
        if i + 8 <= end:
            memcpy(&w, p.s + i, 8)
            if (w & 0x8080808080808080ULL) == 0:
                i += 8
                continue
        if p.s[i] < 0x80:
            i += 1
            continue
        u = utf8_seq(p.s, i, end)
        if u == 0:
            return fail(p, E_MALFORMED, "protobuf: invalid UTF-8 in a string", i)
        i += u
    return 0


cdef inline double read_double(cstr s) noexcept nogil:
    cdef double d
    memcpy(&d, s, 8)   # little-endian hosts
    return d


cdef int pb_message(Parser* p, Py_ssize_t pos, Py_ssize_t end, int kind, Slot* slots, int depth) except -2:
    """Read a message whose fields map to slots (Batch, Event and their sub-messages)."""
    cdef uint64_t number, value
    cdef int wtype, payload = -1, ea
    cdef Py_ssize_t vs, ve, ps = 0, pe = 0, saved
    cdef FieldEntry* fe
    cdef Slot* sl
    cdef Slot* evslots
    saved = p.pos
    p.pos = pos
    while p.pos < end:
        if read_field(p, end, &number, &wtype, &value, &vs, &ve) < 0:
            return -1
        if number > MAX_FIELDNO:
            continue
        if kind == PB_EVENT and PAYLOAD_KIND[number] >= 0:
            if wtype == 2:
                payload, ps, pe = <int>number, vs, ve
            continue
        fe = &FIELDS[kind][number]
        if fe.slot < 0 or fe.wire != wtype:
            continue
        sl = &slots[fe.slot]
        sl.flags = 0
        sl.esc = 0
        if fe.role == R_EVENTS:
            evslots = new_event(p)
            p.ev_isobj[(evslots - p.ev) // N_EVENT_SLOTS] = 1
            if pb_message(p, vs, ve, PB_EVENT, evslots, depth + 1) < 0:
                return -1
        elif fe.role == R_SUB:
            memset(&slots[fe.sub_start], 0, sizeof(Slot) * fe.sub_count)
            if pb_message(p, vs, ve, fe.sub, slots, depth + 1) < 0:
                return -1
            sl.kind = OBJ
        elif fe.role == R_PARAMS:
            if pb_object(p, vs, ve, depth + 1, &sl.flags) < 0:
                return -1
            sl.kind = OBJ
            sl.start, sl.len = vs, ve - vs
        else:
            set_scalar(p, sl, fe.vkind, value, vs, ve)
            if sl.kind == STR and check_utf8(p, vs, ve) < 0:
                return -1
    if kind == PB_EVENT and payload >= 0:
        sl = &slots[S_EA]
        if sl.kind == INT and 0 <= sl.i <= MAX_ACTION_CODE_ and PAYLOAD_CODES[payload][sl.i]:
            if PAYLOAD_AS_SLOT[payload] >= 0:
                memset(&slots[PAYLOAD_SUB_START[payload]], 0, sizeof(Slot) * PAYLOAD_SUB_COUNT[payload])
                slots[PAYLOAD_AS_SLOT[payload]].kind = OBJ
            if pb_message(p, ps, pe, PAYLOAD_KIND[payload], slots, depth + 1) < 0:
                return -1
    p.pos = saved
    return 0


cdef inline void set_scalar(Parser* p, Slot* sl, int vkind, uint64_t value, Py_ssize_t vs, Py_ssize_t ve) noexcept nogil:
    if vkind == VK_INT:
        sl.kind = INT
        sl.i = <int64_t>value
        sl.len = 0
    elif vkind == VK_SINT:
        sl.kind = INT
        sl.i = <int64_t>(value >> 1) ^ -(<int64_t>(value & 1))
        sl.len = 0
    elif vkind == VK_BOOL:
        sl.kind = TRUE_ if value != 0 else FALSE_
    elif vkind == VK_DOUBLE:
        sl.kind = FLOAT
        sl.d = read_double(p.s + vs)
        sl.len = 0
    else:
        sl.kind = STR
        sl.esc = 2
        sl.start = vs
        sl.len = ve - vs


cdef int pb_last_kind(Parser* p, Py_ssize_t pos, Py_ssize_t end, uint64_t* value,
                      Py_ssize_t* vs, Py_ssize_t* ve) noexcept nogil:
    """The field of a Value's oneof that wins (the last one), 0 for none."""
    cdef uint64_t number, v
    cdef int wtype, last = 0, num
    cdef Py_ssize_t s, e
    p.pos = pos
    while p.pos < end:
        if read_field(p, end, &number, &wtype, &v, &s, &e) < 0:
            return -1
        num = <int>number       # at most 0x1FFFFFFF
        if num == V_NULL or num == V_BOOL or num == V_INT:
            if wtype != 0:
                continue
        elif num == V_DOUBLE:
            if wtype != 1:
                continue
        elif num == V_STRING or num == V_ARRAY or num == V_OBJECT:
            if wtype != 2:
                continue
        else:
            continue
        last = <int>number
        value[0], vs[0], ve[0] = v, s, e
    return last


cdef int pb_value(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags) except -2:
    """Check a Value (a container here is at JSON level `depth`)."""
    cdef uint64_t value
    cdef Py_ssize_t vs = 0, ve = 0
    cdef int last = pb_last_kind(p, pos, end, &value, &vs, &ve)
    if last < 0:
        return -1
    if last == V_DOUBLE:
        if not isfinite(read_double(p.s + vs)):
            pflags[0] |= P_NONFINITE
    elif last == V_STRING:
        return check_utf8(p, vs, ve)
    elif last == V_ARRAY:
        return pb_array(p, vs, ve, depth, pflags)
    elif last == V_OBJECT:
        return pb_object(p, vs, ve, depth, pflags)
    return 0


cdef int pb_array(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags) except -2:
    cdef uint64_t number, value
    cdef int wtype
    cdef Py_ssize_t vs, ve, here
    if depth > MAX_DEPTH_:
        return fail(p, E_DEEP, "nested too deep", pos)
    p.pos = pos
    while p.pos < end:
        if read_field(p, end, &number, &wtype, &value, &vs, &ve) < 0:
            return -1
        if number == 1 and wtype == 2:
            here = p.pos
            if pb_value(p, vs, ve, depth + 1, pflags) < 0:
                return -1
            p.pos = here
    return 0


cdef int pb_object(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags) except -2:
    """Check an Object: members' keys valid UTF-8, values checked, repeated keys noted."""
    cdef uint64_t number, value, mnumber, mvalue
    cdef int wtype, mwtype
    cdef Py_ssize_t vs, ve, ms, me, here, there, ks, ke
    cdef Py_ssize_t base = p.nhash
    if depth > MAX_DEPTH_:
        return fail(p, E_DEEP, "nested too deep", pos)
    p.pos = pos
    while p.pos < end:
        if read_field(p, end, &number, &wtype, &value, &vs, &ve) < 0:
            return -1
        if number != 1 or wtype != 2:
            continue
        here = p.pos
        p.pos = vs
        ks = ke = vs
        while p.pos < ve:
            if read_field(p, ve, &mnumber, &mwtype, &mvalue, &ms, &me) < 0:
                return -1
            if mwtype != 2:
                continue
            if mnumber == 1:
                if check_utf8(p, ms, me) < 0:
                    return -1
                ks, ke = ms, me
            elif mnumber == 2:
                there = p.pos
                if pb_value(p, ms, me, depth + 1, pflags) < 0:
                    return -1
                p.pos = there
        push_hash(p, fnv1a(p.s + ks, ke - ks))
        p.pos = here
    if p.nhash - base > 1 and has_repeat(p.hashes + base, p.nhash - base):
        pflags[0] |= P_DUP
    p.nhash = base
    return 0
