# The native decoder, protobuf messages read into slots: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------- protobuf: reading


cdef inline int read_varint(Parser* p, Py_ssize_t* pos, Py_ssize_t end, uint64_t* out) noexcept nogil:
    """A varint at the cursor pos[0] (p.pos, or a reader's local one, which the compiler can
    keep in a register), moved past it."""
    cdef uint64_t v = 0
    cdef int shift = 0, k
    cdef unsigned char b
    cdef Py_ssize_t start = pos[0]
    if start < end and p.s[start] < 0x80:     # the usual one: a single byte
        out[0] = p.s[start]
        pos[0] = start + 1
        return 0
    if start + 1 < end and p.s[start + 1] < 0x80:     # two: keys of fields 16..2047, values < 2^14
        out[0] = (p.s[start] & 0x7F) | (<uint64_t>p.s[start + 1] << 7)
        pos[0] = start + 2
        return 0
    for k in range(10):
        if pos[0] >= end:
            break
        b = p.s[pos[0]]
        pos[0] += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return 0
        shift += 7
    return fail(p, E_MALFORMED, "protobuf: truncated or overlong varint", start)


cdef inline int64_t unzigzag(uint64_t v) noexcept nogil:
    """A sint64's value from its varint (0, -1, 1, -2... as 0, 1, 2, 3...)."""
    return <int64_t>(v >> 1) ^ -(<int64_t>(v & 1))


cdef inline int read_len(Parser* p, Py_ssize_t* pos, Py_ssize_t end, Py_ssize_t* vstart, Py_ssize_t* vend) noexcept nogil:
    """A length-delimited value's span, the cursor moved past it."""
    cdef uint64_t size
    if read_varint(p, pos, end, &size) < 0:
        return -1
    if size > <uint64_t>(end - pos[0]):
        return fail(p, E_MALFORMED, "protobuf: length past the end", pos[0])
    vstart[0] = pos[0]
    pos[0] += <Py_ssize_t>size
    vend[0] = pos[0]
    return 0


cdef inline int read_fixed(Parser* p, Py_ssize_t* pos, Py_ssize_t end, Py_ssize_t size,
                           Py_ssize_t* vstart, Py_ssize_t* vend) noexcept nogil:
    """A fixed-size value's span (8 or 4 bytes), the cursor moved past it."""
    if end - pos[0] < size:
        return fail(p, E_MALFORMED, "protobuf: truncated fixed-size field", pos[0])
    vstart[0] = pos[0]
    pos[0] += size
    vend[0] = pos[0]
    return 0


cdef inline int read_value(Parser* p, Py_ssize_t* pos, Py_ssize_t end, uint64_t key, Py_ssize_t kstart,
                           uint64_t* value, Py_ssize_t* vstart, Py_ssize_t* vend) noexcept nogil:
    """The value of a field whose key (number << 3 | wire type, read from kstart) is read:
    a varint's value, or the span of any other."""
    cdef int wtype = <int>(key & 7)
    if key - 8 > 0xFFFFFFF7ULL:      # number 0, or past 2^29 - 1: keys 8..2^32 - 1 are sound
        return fail(p, E_MALFORMED, "protobuf: invalid field number", kstart)
    if wtype == 0:
        return read_varint(p, pos, end, value)
    if wtype == 2:
        return read_len(p, pos, end, vstart, vend)
    if wtype == 1 or wtype == 5:
        return read_fixed(p, pos, end, 8 if wtype == 1 else 4, vstart, vend)
    return fail(p, E_MALFORMED, "protobuf: unsupported wire type", kstart)


cdef inline int read_field(Parser* p, Py_ssize_t* pos, Py_ssize_t end, uint64_t* number, int* wtype,
                           uint64_t* value, Py_ssize_t* vstart, Py_ssize_t* vend) noexcept nogil:
    """One field of a message: its number, wire type, and value (varint) or span."""
    cdef uint64_t key
    cdef Py_ssize_t start = pos[0]
    if read_varint(p, pos, end, &key) < 0:
        return -1
    number[0] = key >> 3
    wtype[0] = <int>(key & 7)
    return read_value(p, pos, end, key, start, value, vstart, vend)


cdef inline int check_utf8(Parser* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """Check a string's UTF-8: -1 when it is not valid; else 1 when a byte of it needs a JSON
    escape (a quote, a backslash, a control character), 0 when it can be copied as it is.
    Most strings are short and plain: one or two 16-byte looks, inline."""
    cdef Py_ssize_t n = end - start
    if n <= 32 and start + 32 <= p.n and plain16(p.s + start, n if n < 16 else 16) \
            and (n <= 16 or plain16(p.s + start + 16, n - 16)):
        return 0
    return check_utf8_any(p, start, end)


cdef int check_utf8_any(Parser* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i = start
    cdef int u, esc = 0
    cdef unsigned char c
    while True:
        i = skip_plain_in(p.s, i, end, p.n)    # to the next byte that is not plain ASCII
        if i >= end:
            return esc
        c = p.s[i]
        if c < 0x80:
            esc = 1
            i += 1
            continue
        u = utf8_seq(p.s, i, end)
        if u == 0:
            return fail(p, E_MALFORMED, "protobuf: invalid UTF-8 in a string", i)
        i += u


cdef inline double read_double(cstr s) noexcept nogil:
    cdef double d
    memcpy(&d, s, 8)   # little-endian hosts
    return d


cdef int pb_batch(Parser* p, Slot* header) except -2:
    """A protobuf batch: its own fields first (the header, and where each event is: lengths are
    known ahead), then each event read, checked and written at once while its slots are hot,
    like JSON's `events_pass` but with the header final. The error reported is the first in
    byte order, as a reading in order would find it."""
    cdef int err
    cdef Py_ssize_t err_pos
    cdef const char* err_msg
    header[H_PL].kind = ARR
    if pb_message(p, 0, p.n, PB_BATCH, header, 1) < 0:
        err, err_pos, err_msg = p.err, p.err_pos, p.err_msg
        p.err = 0
        if pb_events(p, 0) < 0:         # an event before the fault holds an earlier one
            return -1
        p.err, p.err_pos, p.err_msg = err, err_pos, err_msg
        return -1
    return pb_events(p, check_list(p, header, L_HEADER) < 0 and p.ev_total <= MAX_EVENTS_)


cdef int pb_events(Parser* p, bint write) except -2:
    """Read each event of `pl`; when `write` (the batch is sound so far), check and write it."""
    cdef Slot ev[MAX_SLOTS]
    cdef Py_ssize_t i
    if write:
        start_output(p)
    for i in range(p.ev_total):
        memset(ev, 0, sizeof(Slot) * N_EVENT_SLOTS)
        if pb_message(p, p.ev_at[2 * i], p.ev_at[2 * i + 1], PB_EVENT, ev, 2) < 0:
            return -1
        if write:
            process_event(p, i, ev)
    return 0


cdef int add_event(Parser* p, Py_ssize_t start, Py_ssize_t end) except -1:
    """Note where the next event of `pl` is."""
    cdef void* q
    if p.ev_total == p.ev_cap:
        p.ev_cap = p.ev_cap * 2 + 64
        q = realloc(p.ev_at, sizeof(int32_t) * 2 * p.ev_cap)
        if q == NULL:
            raise MemoryError()
        p.ev_at = <int32_t*>q
    p.ev_at[2 * p.ev_total] = <int32_t>start
    p.ev_at[2 * p.ev_total + 1] = <int32_t>end
    p.ev_total += 1
    return 0


cdef int pb_message(Parser* p, Py_ssize_t pos, Py_ssize_t end, int kind, Slot* slots, int depth) except -2:
    """Read a message whose fields map to slots (Batch, Event and their sub-messages). Each
    field's key picks what to do from the kind's table (`TAGS`): a field that is not ours, or
    not of our wire type, is read over."""
    cdef uint64_t key, value = 0
    cdef int payload = -1, esc
    cdef Py_ssize_t vs = 0, ve = 0, ps = 0, pe = 0, saved, n, kstart
    cdef TagEntry* te
    cdef Slot* sl
    saved = p.pos
    while pos < end:        # a local cursor: slot stores cannot alias it
        kstart = pos
        if read_varint(p, &pos, end, &key) < 0:
            return -1
        te = &TAGS[kind][key if key < N_TAGS else 0]      # entry 0 (field number 0): A_SKIP
        if te.act == A_VARINT:
            if read_varint(p, &pos, end, &value) < 0:
                return -1
            sl = &slots[te.slot]
            sl.flags = 0
            sl.esc = 0
            if te.vkind == VK_BOOL:
                sl.kind = TRUE_ if value != 0 else FALSE_
            else:
                sl.kind = INT
                sl.i = <int64_t>value if te.vkind == VK_INT else unzigzag(value)     # int64 or sint64
                sl.len = 0
            continue
        if te.act == A_SKIP:
            if read_value(p, &pos, end, key, kstart, &value, &vs, &ve) < 0:
                return -1
            continue
        if te.act == A_DOUBLE:
            if read_fixed(p, &pos, end, 8, &vs, &ve) < 0:
                return -1
        elif read_len(p, &pos, end, &vs, &ve) < 0:    # the rest are length-delimited
            return -1
        if te.act == A_PAYLOAD:
            payload, ps, pe = te.number, vs, ve
            continue
        sl = &slots[te.slot]
        sl.flags = 0
        sl.esc = 0
        if te.act == A_DOUBLE:
            sl.kind = FLOAT
            sl.d = read_double(p.s + vs)
            sl.len = 0
        elif te.act == A_STRING:
            esc = check_utf8(p, vs, ve)
            if esc < 0:
                return -1
            sl.kind = STR
            sl.esc = 2 if esc else 0    # 0: its bytes are already JSON string text
            sl.start = vs
            sl.len = ve - vs
        elif te.act == A_SUB:
            n = ve - vs
            if kind == PB_EVENT and n and n == p.sub_len[te.slot] \
                    and memcmp(p.s + vs, p.s + p.sub_start[te.slot], n) == 0:
                # the same bytes as the last event's (SDKs repeat `vo`): the same (valid) slots
                memcpy(&slots[te.sub_start], &p.sub_slots[te.sub_start], sizeof(Slot) * te.sub_count)
                sl.flags = P_CACHED
            else:
                memset(&slots[te.sub_start], 0, sizeof(Slot) * te.sub_count)
                if pb_message(p, vs, ve, te.sub, slots, depth + 1) < 0:
                    return -1
                if kind == PB_EVENT:
                    p.sub_start[te.slot] = <int32_t>vs
                    p.sub_len[te.slot] = <int32_t>n
                    p.sub_valid[te.slot] = 0
                    memcpy(&p.sub_slots[te.sub_start], &slots[te.sub_start], sizeof(Slot) * te.sub_count)
            sl.kind = OBJ
            sl.start, sl.len = vs, n     # its bytes: `put_app_version` writes the same once
        elif te.act == A_PARAMS:
            p.params.n = 0          # the last `pr` counts
            if pb_object(p, vs, ve, depth + 1, &sl.flags, &p.params) < 0:
                return -1
            sl.kind = OBJ
            sl.start, sl.len = vs, ve - vs
        else:
            add_event(p, vs, ve)    # A_EVENTS: read by `pb_events`, once the header is final
    if payload >= 0:
        sl = &slots[S_EA]
        if sl.kind == INT and 0 <= sl.i <= MAX_ACTION_CODE_ and PAYLOAD_CODES[payload][sl.i]:
            if PAYLOAD_AS_SLOT[payload] >= 0:
                memset(&slots[PAYLOAD_SUB_START[payload]], 0, sizeof(Slot) * PAYLOAD_SUB_COUNT[payload])
                slots[PAYLOAD_AS_SLOT[payload]].kind = OBJ
            if pb_message(p, ps, pe, PAYLOAD_KIND[payload], slots, depth + 1) < 0:
                return -1
    p.pos = saved
    return 0


cdef int pb_last_kind(Parser* p, Py_ssize_t pos, Py_ssize_t end, uint64_t* value,
                      Py_ssize_t* vs, Py_ssize_t* ve) noexcept nogil:
    """The field of a Value's oneof that wins (the last one), 0 for none."""
    cdef uint64_t number, v
    cdef int wtype, last = 0, num
    cdef Py_ssize_t s, e
    p.pos = pos
    while p.pos < end:
        if read_field(p, &p.pos, end, &number, &wtype, &v, &s, &e) < 0:
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


cdef int pb_value(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags, Buf* w) except -2:
    """Check a Value (a container here is at JSON level `depth`) and write it as JSON to w: one
    walk over the bytes does both. A number that is not finite is written as null and
    flagged (the event is then refused)."""
    cdef uint64_t value
    cdef Py_ssize_t vs = 0, ve = 0
    cdef int last = pb_last_kind(p, pos, end, &value, &vs, &ve), esc
    cdef double d
    if last < 0:
        return -1
    if last == V_STRING:
        esc = check_utf8(p, vs, ve)
        if esc < 0:
            return -1
        put_pb_string(p, w, vs, ve, esc)
    elif last == V_DOUBLE:
        d = read_double(p.s + vs)
        if isfinite(d):
            put_double(w, d)
        else:
            pflags[0] |= P_NONFINITE
            put(w, "null", 4)
    elif last == V_INT:
        put_int(w, unzigzag(value))
    elif last == V_BOOL:
        if value:
            put(w, "true", 4)
        else:
            put(w, "false", 5)
    elif last == V_ARRAY:
        return pb_array(p, vs, ve, depth, pflags, w)
    elif last == V_OBJECT:
        return pb_object(p, vs, ve, depth, pflags, w)
    else:
        put(w, "null", 4)
    return 0


cdef int pb_array(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags, Buf* w) except -2:
    cdef uint64_t number, value
    cdef int wtype
    cdef Py_ssize_t vs, ve, here
    cdef bint first = 1
    if depth > MAX_DEPTH_:
        return fail(p, E_DEEP, "nested too deep", pos)
    putc(w, 91)
    p.pos = pos
    while p.pos < end:
        if read_field(p, &p.pos, end, &number, &wtype, &value, &vs, &ve) < 0:
            return -1
        if number == 1 and wtype == 2:
            if not first:
                putc(w, 44)
            first = 0
            here = p.pos
            if pb_value(p, vs, ve, depth + 1, pflags, w) < 0:
                return -1
            p.pos = here
    putc(w, 93)
    return 0


cdef int pb_object(Parser* p, Py_ssize_t pos, Py_ssize_t end, int depth, uint8_t* pflags, Buf* w) except -2:
    """Check an Object (members' keys valid UTF-8, values checked, repeated keys noted) and
    write it as JSON to w. Within a member the last key and the last value count; a member
    whose key does not come first (or comes again after the value) is written again."""
    cdef uint64_t number, value, mnumber, mvalue
    cdef int wtype, mwtype, esc = 0
    cdef Py_ssize_t vs, ve, ms, me, here, there, ks, ke, xs, xe, m0, val_at
    cdef Py_ssize_t base = p.nhash
    cdef bint first = 1, key_first, have_val
    if depth > MAX_DEPTH_:
        return fail(p, E_DEEP, "nested too deep", pos)
    putc(w, 123)
    p.pos = pos
    while p.pos < end:
        if read_field(p, &p.pos, end, &number, &wtype, &value, &vs, &ve) < 0:
            return -1
        if number != 1 or wtype != 2:
            continue
        here = p.pos
        if not first:
            putc(w, 44)
        first = 0
        m0 = val_at = w.n
        key_first = have_val = 0
        ks = ke = xs = xe = vs
        esc = 0
        p.pos = vs
        while p.pos < ve:
            if read_field(p, &p.pos, ve, &mnumber, &mwtype, &mvalue, &ms, &me) < 0:
                return -1
            if mwtype != 2:
                continue
            if mnumber == 1:
                esc = check_utf8(p, ms, me)
                if esc < 0:
                    return -1
                ks, ke = ms, me
                key_first = not have_val
                if key_first:
                    w.n = m0
                    put_pb_string(p, w, ks, ke, esc)
                    putc(w, 58)
                    val_at = w.n
            elif mnumber == 2:
                w.n = val_at            # an earlier value of the member: checked, not kept
                xs, xe = ms, me
                have_val = 1
                there = p.pos
                if pb_value(p, ms, me, depth + 1, pflags, w) < 0:
                    return -1
                p.pos = there
        if not (key_first and have_val):        # rare: written again, in order
            w.n = m0
            put_pb_string(p, w, ks, ke, esc)
            putc(w, 58)
            if have_val:
                if pb_value(p, xs, xe, depth + 1, pflags, w) < 0:
                    return -1
            else:
                put(w, "null", 4)
        push_hash(p, fnv1a(p.s + ks, ke - ks))
        p.pos = here
    if p.nhash - base > 1 and has_repeat(p.hashes + base, p.nhash - base):
        pflags[0] |= P_DUP
    p.nhash = base
    putc(w, 125)
    return 0
