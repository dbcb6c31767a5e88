# The native decoder, JSON objects read into slots, the events of `pl`: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------- JSON: objects, events


cdef int events_pass(Parser* p, int depth) except -2:
    """At '[' of `pl`: read each event, check it and write it out at once, while its slots are
    hot. The parts that come from the header are those of the header read so far when it is
    sound, else left out (`holes`); either way `rejoin_header` makes them the final header's
    when a header key comes after `pl`, copying the events' text, not reading it again."""
    cdef Slot ev[MAX_SLOTS]
    cdef Out* o = p.out
    cdef unsigned char c
    cdef Py_ssize_t idx
    p.ev_total = 0
    p.header_after_pl = 0
    p.holes = check_list(p, p.header, L_HEADER) >= 0
    start_output(p)
    p.pos += 1
    skip_ws(p)
    if p.pos < p.n and p.s[p.pos] == 93:
        p.pos += 1
        return 0
    while True:
        idx = p.ev_total
        p.ev_total += 1
        if p.pos < p.n and p.s[p.pos] == 123:
            memset(ev, 0, sizeof(Slot) * N_EVENT_SLOTS)
            if parse_object(p, K_EVENT, ev, depth + 1) < 0:
                return -1
            if idx < MAX_EVENTS_:
                process_event(p, idx, ev)
        else:
            if skip_value(p, depth + 1, NULL) < 0:
                return -1
            if idx < MAX_EVENTS_:
                add_rejection(o, idx, CODE_NOT_OBJECT)
        skip_ws(p)
        if p.pos >= p.n:
            return fail(p, E_MALFORMED, "unterminated array", p.pos)
        c = p.s[p.pos]
        p.pos += 1
        if c == 93:
            return 0
        if c != 44:
            return fail(p, E_MALFORMED, "expected ',' or ']'", p.pos - 1)
        skip_ws(p)


cdef int start_output(Parser* p) except -1:
    """Empty the output and write the header's parts of every event (none in `holes`)."""
    cdef Out* o = p.out
    o.events.n = o.who.n = o.sent.n = o.device.n = 0
    o.nrej = o.nids = o.nplaced = 0
    o.over = 0
    p.app_at = -1
    memset(p.urls, 0, sizeof(p.urls))
    if p.holes:
        return 0
    return put_header_parts(p, p.header, o.received, &o.who, &o.sent, &o.device)


cdef int add_rejection(Out* o, Py_ssize_t index, int code) except -1:
    cdef void* q
    if o.nrej == o.rej_cap:
        o.rej_cap = o.rej_cap * 2 + 16
        q = realloc(o.rej_index, sizeof(int32_t) * o.rej_cap)
        if q == NULL:
            raise MemoryError()
        o.rej_index = <int32_t*>q
        q = realloc(o.rej_code, sizeof(int16_t) * o.rej_cap)
        if q == NULL:
            raise MemoryError()
        o.rej_code = <int16_t*>q
    o.rej_index[o.nrej] = <int32_t>index
    o.rej_code[o.nrej] = <int16_t>code
    o.nrej += 1
    return 0


cdef int process_event(Parser* p, Py_ssize_t index, Slot* ev) except -1:
    """Check one event's slots; write it out, or record why it is rejected."""
    cdef Out* o = p.out
    cdef int code
    cdef bytes params = None
    if o.over:              # past the output limit: this pass writes nothing more
        return 0
    code = check_list(p, ev, L_COMMON)
    if code < 0:
        code = check_list(p, ev, L_ACTION[ev[S_EA].i])
    if code < 0 and ev[S_EA].i == CUSTOM_EA and ev[S_PR].kind == OBJ:
        if ev[S_PR].flags & P_DUP:
            params = settle_params(p, &ev[S_PR])
            if params is None:
                code = CODE_BAD_PARAMS
        elif ev[S_PR].flags & P_NONFINITE:
            code = CODE_BAD_PARAMS
    if code >= 0:
        return add_rejection(o, index, code)
    put_event(p, &o.events, ev, p.header, &o.who, &o.sent, &o.device, o.received, params)
    if o.limit and o.events.n > o.limit:    # stop writing before the memory is taken; the
        o.over = 1                          # last pass over the events decides (TooLarge)
    return 0


cdef inline uint64_t short_key(Parser* p) noexcept nogil:
    """At a key's quote: a key of up to 6 plain bytes, packed, with the cursor after it;
    0 (cursor unmoved) for any other key."""
    cdef Py_ssize_t i = p.pos + 1, j = 0
    cdef uint64_t packed = 0, w, bad
    cdef unsigned char c
    if i + 8 <= p.n:
        memcpy(&w, p.s + i, 8)
        bad = not_plain8(w)     # the first flagged byte is exact
        if bad == 0:
            return 0
        j = ctz64(bad) >> 3
        if j == 0 or j > 6 or p.s[i + j] != 34:
            return 0
        p.pos = i + j + 1
        return (w & ((<uint64_t>1 << (8 * j)) - 1)) | (<uint64_t>j << 56)
    while j < 7 and i + j < p.n:
        c = p.s[i + j]
        if c == 34:
            if j == 0:
                return 0
            p.pos = i + j + 1
            return packed | (<uint64_t>j << 56)
        if not STR_PLAIN[c]:
            return 0
        packed |= (<uint64_t>c) << (8 * j)
        j += 1
    return 0


cdef int parse_object(Parser* p, int kind, Slot* slots, int depth) except -2:
    """At '{' of an object whose keys are known (header, event, and their sub-objects)."""
    cdef Slot key
    cdef Slot* sl
    cdef KeyEntry* ke
    cdef KeyEntry* table = KEYS[kind]
    cdef uint8_t* pred = p.pred[kind]
    cdef const unsigned char* kb
    cdef Py_ssize_t kn, vstart, n
    cdef uint64_t packed, w
    cdef unsigned char c
    cdef int h, last = HASH_SIZE
    if depth > MAX_DEPTH_:
        return fail(p, E_DEEP, "nested too deep", p.pos)
    p.pos += 1
    skip_ws(p)
    if p.pos < p.n and p.s[p.pos] == 125:
        p.pos += 1
        return 0
    while True:
        if p.pos >= p.n or p.s[p.pos] != 34:
            return fail(p, E_MALFORMED, "expected a key", p.pos)
        packed = 0
        h = pred[last] - 1
        if h >= 0 and p.pos + 9 <= p.n:
            # the key that came next last time: its bytes and the closing quote, or not
            ke = &table[h]
            memcpy(&w, p.s + p.pos + 1, 8)
            if (w & ke.mask) == ke.quoted:
                packed = ke.packed
                p.pos += <int>(packed >> 56) + 2
        if packed == 0:
            packed = short_key(p)
            if packed == 0:         # long, escaped or bad: the general way
                if scan_string(p, &key) < 0:
                    return -1
                kb = string_bytes(p, &key, &kn)
                packed = pack_key(kb, kn)
            h = key_hash(kind, packed)
            ke = &table[h]
        if p.pos + 1 < p.n and p.s[p.pos] == 58 and p.s[p.pos + 1] > 32:
            p.pos += 1          # compact JSON: the value right after the colon
        else:
            skip_ws(p)
            if p.pos >= p.n or p.s[p.pos] != 58:
                return fail(p, E_MALFORMED, "expected ':'", p.pos)
            p.pos += 1
            skip_ws(p)
            if p.pos >= p.n:
                return fail(p, E_MALFORMED, "unexpected end of data", p.pos)
        if ke.packed != packed:
            if skip_value(p, depth + 1, NULL) < 0:
                return -1
        else:
            pred[last] = <uint8_t>(h + 1)
            last = h
            if kind == K_HEADER and p.pl_seen:
                p.header_after_pl = 1
            sl = &slots[ke.slot]
            c = p.s[p.pos]
            sl.flags = 0
            sl.esc = 0
            if ke.role == R_SUB and c != 123:
                memset(&slots[ke.sub_start], 0, sizeof(Slot) * ke.sub_count)
            if c == 34:
                if scan_string(p, sl) < 0:
                    return -1
            elif c == 45 or 48 <= c <= 57:
                if scan_number(p, sl, 1) < 0:
                    return -1
            elif c == 123:
                vstart = p.pos
                if ke.role == R_SUB:
                    n = p.sub_len[ke.slot] if kind == K_EVENT else 0
                    if n and p.pos + n <= p.n and memcmp(p.s + p.pos, p.s + p.sub_start[ke.slot], n) == 0:
                        # the same text as last time: the same (valid) object
                        memcpy(&slots[ke.sub_start], &p.sub_slots[ke.sub_start], sizeof(Slot) * ke.sub_count)
                        p.pos += n
                        sl.flags = P_CACHED
                    else:
                        memset(&slots[ke.sub_start], 0, sizeof(Slot) * ke.sub_count)
                        if parse_object(p, ke.sub, slots, depth + 1) < 0:
                            return -1
                        if kind == K_EVENT:
                            p.sub_start[ke.slot] = <int32_t>vstart
                            p.sub_len[ke.slot] = <int32_t>(p.pos - vstart)
                            p.sub_valid[ke.slot] = 0
                            memcpy(&p.sub_slots[ke.sub_start], &slots[ke.sub_start], sizeof(Slot) * ke.sub_count)
                elif skip_value(p, depth + 1, &sl.flags if ke.role == R_PARAMS else NULL) < 0:
                    return -1
                sl.kind = OBJ
                sl.start = vstart
                sl.len = p.pos - vstart
            elif c == 91:
                sl.kind = ARR
                if ke.role == R_EVENTS:
                    p.pl_seen += 1
                    p.pl_start = p.pos
                    if events_pass(p, depth + 1) < 0:
                        return -1
                elif skip_value(p, depth + 1, NULL) < 0:
                    return -1
            else:
                if skip_value(p, depth + 1, NULL) < 0:
                    return -1
                sl.kind = TRUE_ if c == 116 else (FALSE_ if c == 102 else NUL)
        if p.pos + 1 < p.n and p.s[p.pos] == 44 and p.s[p.pos + 1] == 34:
            p.pos += 1          # compact JSON: the next key right after the comma
            continue
        skip_ws(p)
        if p.pos >= p.n:
            return fail(p, E_MALFORMED, "unterminated object", p.pos)
        c = p.s[p.pos]
        p.pos += 1
        if c == 125:
            return 0
        if c != 44:
            return fail(p, E_MALFORMED, "expected ',' or '}'", p.pos - 1)
        skip_ws(p)
