# The native decoder, the JSON Lines writer: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------------ writing

cdef uint8_t ESCAPE[256]       # 0: copy; else the letter of a short escape, or 'u'
for _i in range(256):
    ESCAPE[_i] = 0
for _i in range(32):
    ESCAPE[_i] = ord("u")
ESCAPE[8], ESCAPE[9], ESCAPE[10], ESCAPE[12], ESCAPE[13] = ord("b"), ord("t"), ord("n"), ord("f"), ord("r")
ESCAPE[34], ESCAPE[92] = 34, 92


cdef int put_escaped(Buf* b, const unsigned char* s, Py_ssize_t n) except -1:
    """UTF-8 bytes as the content of a JSON string."""
    cdef Py_ssize_t i = 0, run = 0
    cdef uint8_t e
    cdef char u[6]
    cdef uint64_t w
    while i < n:
        if i + 8 <= n:
            memcpy(&w, s + i, 8)
            if safe8(w):
                i += 8
                continue
        e = ESCAPE[s[i]]
        if e == 0:
            i += 1
            continue
        put(b, <const char*>s + run, i - run)
        if e == 117:
            u[0], u[1], u[2], u[3] = 92, 117, 48, 48
            u[4] = HEXDIGITS[s[i] >> 4]
            u[5] = HEXDIGITS[s[i] & 15]
            put(b, u, 6)
        else:
            u[0], u[1] = 92, e
            put(b, u, 2)
        i += 1
        run = i
    put(b, <const char*>s + run, n - run)
    return 0


cdef inline int put_str(Parser* p, Buf* b, Slot* sl) except -1:
    """A string slot as a JSON string (JSON input is already valid JSON text: copied)."""
    if sl.kind == STR and sl.esc != 2 and sl.len <= 30 and sl.start + 32 <= p.n:
        return put_quoted32(b, <const char*>p.s + sl.start, sl.len)    # the usual short one
    return put_str_any(p, b, sl)


cdef int put_str_any(Parser* p, Buf* b, Slot* sl) except -1:
    if sl.kind != STR:
        return put(b, "null", 4)
    putc(b, 34)
    if sl.esc == 2:
        put_escaped(b, p.s + sl.start, sl.len)
    else:
        put(b, <const char*>p.s + sl.start, sl.len)
    return putc(b, 34)


cdef inline int put_int_slot(Parser* p, Buf* b, Slot* sl) except -1:
    """An INT slot: the number's text in the input copied when it has one (JSON), else written."""
    if sl.len and sl.start + 24 <= p.n:
        if b.n + 24 > b.cap:
            buf_grow(b, 24)
        memcpy(b.p + b.n, p.s + sl.start, 24)       # at most 16 of them count
        b.n += sl.len
        return 0
    return put_int(b, sl.i)


cdef inline int put_opt_int(Parser* p, Buf* b, Slot* sl) except -1:
    if sl.kind != INT:
        return put(b, "null", 4)
    return put_int_slot(p, b, sl)


cdef inline int put_bool(Buf* b, Slot* sl) except -1:
    if sl.kind == TRUE_:
        return put(b, "true", 4)
    if sl.kind == FALSE_:
        return put(b, "false", 5)
    return put(b, "null", 4)


cdef inline int put_number(Parser* p, Buf* b, Slot* sl) except -1:
    """A NUMBER field as a double."""
    if sl.kind == FLOAT and sl.len:
        return put(b, <const char*>p.s + sl.start, sl.len)    # its text is its repr
    if sl.kind == INT:
        return put_double(b, <double>sl.i)
    if sl.kind == FLOAT or sl.kind == BIGNUM:
        return put_double(b, sl.d)
    return put(b, "null", 4)


cdef inline int put_name(Buf* b, const Name* nm) except -1:
    if b.n + 40 > b.cap:
        buf_grow(b, 40)
    memcpy(b.p + b.n, nm.s, 40)
    b.n += nm.n
    return 0


cdef inline int put_enum(Buf* b, Slot* sl, const Name* names, int64_t lo, int64_t count) except -1:
    if sl.kind != INT:
        return put(b, "null", 4)
    if lo <= sl.i < lo + count:
        return put_name(b, &names[sl.i - lo])
    return put(b, '"unknown"', 9)


cdef int put_params_json(Parser* p, Buf* b, Slot* sl) except -1:
    """JSON custom params: copied when they are already compact, else written anew."""
    cdef Py_ssize_t saved = p.pos
    if not (sl.flags & P_DIRTY):
        return put(b, <const char*>p.s + sl.start, sl.len)
    try:
        return _put_params_anew(p, b, sl.start, sl.start + sl.len)
    finally:
        p.pos = saved      # the reader may be in the middle of the batch


cdef int _put_params_anew(Parser* p, Buf* b, Py_ssize_t i, Py_ssize_t end) except -1:
    """Params written compactly: whitespace dropped, integers outside int64 as doubles."""
    cdef Py_ssize_t s0
    cdef unsigned char c
    cdef Slot num
    while i < end:
        c = p.s[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        elif c == 34:
            s0 = i
            i += 1
            while p.s[i] != 34:
                i += 2 if p.s[i] == 92 else 1
            i += 1
            put(b, <const char*>p.s + s0, i - s0)
        elif c == 45 or 48 <= c <= 57:
            p.pos = i
            scan_number(p, &num, 1)
            if num.kind == BIGNUM:
                put_double(b, num.d)
            else:
                put(b, <const char*>p.s + i, p.pos - i)
            i = p.pos
        else:
            putc(b, <char>c)
            i += 1
    return 0


cdef inline int put_pb_string(Parser* p, Buf* b, Py_ssize_t start, Py_ssize_t end, int esc) except -1:
    """A protobuf string (valid UTF-8; esc as `check_utf8` found) as a JSON string."""
    if esc == 0:
        if end - start <= 30 and start + 32 <= p.n:
            return put_quoted32(b, <const char*>p.s + start, end - start)
        putc(b, 34)
        put(b, <const char*>p.s + start, end - start)
        return putc(b, 34)
    putc(b, 34)
    put_escaped(b, p.s + start, end - start)
    return putc(b, 34)


cdef inline Placed* place(Out* o) except NULL:
    """A record of where the next written event's parts from the header go."""
    if o.nplaced == o.placed_cap:
        grow_placed(o)
    o.nplaced += 1
    return &o.placed[o.nplaced - 1]


cdef int grow_placed(Out* o) except -1:
    cdef void* q
    o.placed_cap = o.placed_cap * 2 + 64
    q = realloc(o.placed, sizeof(Placed) * o.placed_cap)
    if q == NULL:
        raise MemoryError()
    o.placed = <Placed*>q
    return 0


cdef inline Py_ssize_t int_len(int64_t v) noexcept nogil:
    """How many characters `put_int` writes for v."""
    cdef uint64_t u = <uint64_t>0 - <uint64_t>v if v < 0 else <uint64_t>v
    cdef Py_ssize_t n = 1 + (v < 0)
    while u >= 10:
        u //= 10
        n += 1
    return n


cdef int rejoin_header(Parser* p) except -1:
    """The events of `pl` joined anew with the final header's parts (a header key came after
    `pl`, or the header was not sound when `pl` began): each event's own text is copied around
    them. 1, with nothing written, when they would pass the output limit."""
    cdef Out* o = p.out
    cdef Py_ssize_t old_who = o.who.n, old_sent = o.sent.n, old_device = o.device.n
    cdef Py_ssize_t i, total = 0, shift
    cdef int64_t now
    cdef int64_t skew
    cdef Placed* e
    cdef Buf b
    cdef const char* s
    o.who.n = o.sent.n = o.device.n = 0
    put_header_parts(p, p.header, o.received, &o.who, &o.sent, &o.device)
    now = p.header[H_NOW].i
    for i in range(o.nplaced):
        e = &o.placed[i]
        skew = now - e.t
        if skew < 0:
            skew = 0
        total += (e.end - e.start - old_who - old_sent - old_device - (e.time_end - e.time)
                  + o.who.n + o.sent.n + o.device.n + int_len(o.received - skew))
    if o.limit and total > o.limit:
        return 1
    memset(&b, 0, sizeof(Buf))
    b.cap = total + 64
    b.obj = bytes_new(NULL, b.cap)
    if b.obj == NULL:
        raise MemoryError()
    b.p = bytes_data(b.obj)
    s = o.events.p
    for i in range(o.nplaced):
        e = &o.placed[i]
        shift = b.n - e.start
        o.id_at[2 * i] += shift         # the event_id comes before any part of the header
        o.id_at[2 * i + 1] += shift
        skew = now - e.t
        if skew < 0:
            skew = 0
        memcpy(b.p + b.n, s + e.start, e.who - e.start)
        b.n += e.who - e.start
        memcpy(b.p + b.n, o.who.p, o.who.n)
        b.n += o.who.n
        memcpy(b.p + b.n, s + e.who + old_who, e.time - e.who - old_who)
        b.n += e.time - e.who - old_who
        put_int(&b, o.received - skew)
        memcpy(b.p + b.n, s + e.time_end, e.sent - e.time_end)
        b.n += e.sent - e.time_end
        memcpy(b.p + b.n, o.sent.p, o.sent.n)
        b.n += o.sent.n
        memcpy(b.p + b.n, s + e.sent + old_sent, e.device - e.sent - old_sent)
        b.n += e.device - e.sent - old_sent
        memcpy(b.p + b.n, o.device.p, o.device.n)
        b.n += o.device.n
        memcpy(b.p + b.n, s + e.device + old_device, e.end - e.device - old_device)
        b.n += e.end - e.device - old_device
    Py_XDECREF(o.events.obj)
    o.events = b
    return 0


cdef int note_id(Out* o, Py_ssize_t start, Py_ssize_t end) except -1:
    """Where an event's event_id was written, for `decoded_ids`."""
    cdef void* q
    if o.nids == o.ids_cap:
        o.ids_cap = o.ids_cap * 2 + 64
        q = realloc(o.id_at, sizeof(Py_ssize_t) * 2 * o.ids_cap)
        if q == NULL:
            raise MemoryError()
        o.id_at = <Py_ssize_t*>q
    o.id_at[2 * o.nids] = start
    o.id_at[2 * o.nids + 1] = end
    o.nids += 1
    return 0


cdef int put_event(Parser* p, Buf* b, Slot* ev, Slot* hd, Buf* who, Buf* sent, Buf* device,
                   int64_t received, bytes params) except -1:
    """One event's line: its parts in spec.EVENT_KEYS' order (`put_parts`, parts.pxi)."""
    cdef EventWrite w
    cdef int64_t t = ev[S_T].i, skew = hd[H_NOW].i - ev[S_T].i
    if skew < 0:
        skew = 0
    w.p, w.b, w.ev, w.who, w.sent, w.device = p, b, ev, who, sent, device
    w.pl = place(p.out)
    w.pl.t = t
    w.pl.start = b.n
    w.time = received - skew
    w.ea = <int>ev[S_EA].i
    w.params = NULL if params is None else <PyObject*>params
    put_parts(&w)
    w.pl.end = b.n
    return 0


# The writers of an event's parts, each after its key (parts.pxi calls them in the spec's order).

cdef inline int put_event_id(EventWrite* w) except -1:
    cdef Py_ssize_t start = w.b.n
    put_str(w.p, w.b, &w.ev[S_EUID])
    return note_id(w.p.out, start, w.b.n)


cdef inline int put_action(EventWrite* w) except -1:
    if w.ea == CUSTOM_EA:
        return put_str(w.p, w.b, &w.ev[S_AC])
    return put_name(w.b, &ACTION_JSON[w.ea])


cdef inline int put_label(EventWrite* w) except -1:
    if LABEL_SLOT[w.ea] >= 0:
        return put_str(w.p, w.b, &w.ev[LABEL_SLOT[w.ea]])
    return put(w.b, "null", 4)


cdef inline int put_who(EventWrite* w) except -1:
    """project_id and user_id, from the header."""
    w.pl.who = w.b.n
    return put(w.b, w.who.p, w.who.n)


cdef inline int put_session_id(EventWrite* w) except -1:
    return put_opt_int(w.p, w.b, &w.ev[S_SN])


cdef inline int put_time(EventWrite* w) except -1:
    w.pl.time = w.b.n
    if not w.p.holes:       # else written when the header is known (`rejoin_header`)
        put_int(w.b, w.time)
    w.pl.time_end = w.b.n
    return 0


cdef inline int put_device_time(EventWrite* w) except -1:
    return put_int_slot(w.p, w.b, &w.ev[S_T])


cdef inline int put_sent(EventWrite* w) except -1:
    """sent_time and received_time, from the header."""
    w.pl.sent = w.b.n
    return put(w.b, w.sent.p, w.sent.n)


cdef inline int put_uptime_ms(EventWrite* w) except -1:
    return put_opt_int(w.p, w.b, &w.ev[S_UPT])


cdef inline int put_url(EventWrite* w) except -1:
    return put_str(w.p, w.b, &w.ev[S_URL])


cdef inline int put_screen_name_of(EventWrite* w) except -1:
    return put_screen_name(w.p, w.b, &w.ev[S_URL])


cdef inline int put_screen_count(EventWrite* w) except -1:
    return put_opt_int(w.p, w.b, &w.ev[S_SCN])


cdef inline int put_connectivity(EventWrite* w) except -1:
    return put_enum(w.b, &w.ev[S_C], ENUM_NAMES[E_CONNECTIVITY], ENUM_LO[E_CONNECTIVITY],
                    ENUM_COUNT[E_CONNECTIVITY])


cdef inline int put_carrier(EventWrite* w) except -1:
    return put_str(w.p, w.b, &w.ev[S_CI])


cdef inline int put_orientation(EventWrite* w) except -1:
    return put_enum(w.b, &w.ev[S_O], ENUM_NAMES[E_ORIENTATION], ENUM_LO[E_ORIENTATION],
                    ENUM_COUNT[E_ORIENTATION])


cdef inline int put_device(EventWrite* w) except -1:
    """device and app's values from the header, then app's from the event's `vo`."""
    w.pl.device = w.b.n
    put(w.b, w.device.p, w.device.n)
    return put_app_version(w.p, w.b, w.ev)


cdef inline int put_params_of(EventWrite* w) except -1:
    """The params of a known action; a custom event's own (settled when a key repeats)."""
    cdef Slot* pr = &w.ev[S_PR]
    if PARAM_N[w.ea] >= 0:
        return put_action_params(w.p, w.b, w.ev, w.ea)
    if w.ea != CUSTOM_EA:
        return put(w.b, "{}", 2)
    if w.params != NULL:
        return put(w.b, bytes_data(w.params), bytes_size(w.params))
    if pr.kind != OBJ:
        return put(w.b, "{}", 2)
    if w.p.proto:
        return put(w.b, w.p.params.p, w.p.params.n)      # written as they were checked
    return put_params_json(w.p, w.b, pr)


cdef int put_outs(Parser* p, Buf* b, Slot* slots, const ParamOut* outs, int n) except -1:
    """Keys and their values, as a table built from spec.py's layout says."""
    cdef int i
    cdef const ParamOut* o
    cdef Slot* sl
    for i in range(n):
        o = &outs[i]
        put_name(b, &o.key)
        sl = &slots[o.slot]
        if o.how == W_STR:
            put_str(p, b, sl)
        elif o.how == W_INT:
            put_opt_int(p, b, sl)
        elif o.how == W_NUMBER:
            put_number(p, b, sl)
        elif o.how == W_BOOL:
            put_bool(b, sl)
        elif o.how == W_ENUM:
            put_enum(b, sl, ENUM_NAMES[o.enum_id], ENUM_LO[o.enum_id], ENUM_COUNT[o.enum_id])
        elif sl.kind == INT and 0 <= sl.i <= CURRENCY_MAX_ and CURRENCY[sl.i][0]:   # W_CURRENCY
            putc(b, 34)
            put(b, CURRENCY[sl.i], 3)
            putc(b, 34)
        else:
            put(b, "null", 4)
    return 0


cdef int put_action_params(Parser* p, Buf* b, Slot* ev, int ea) except -1:
    """The params of a known action, as spec.ACTION_PARAMS lays them out."""
    if PARAM_N[ea] == 0:
        return put(b, "{}", 2)
    put_outs(p, b, ev, PARAM_OUT[ea], PARAM_N[ea])
    return putc(b, 125)


cdef int put_app_version(Parser* p, Buf* b, Slot* ev) except -1:
    """The event's part of `app`, from `vo` (which SDKs repeat in every event: written once)."""
    cdef Slot* vo = &ev[S_VO]
    cdef Py_ssize_t at
    if vo.kind == OBJ and vo.len and p.app_at >= 0 and vo.len == p.vo_len \
            and memcmp(p.s + vo.start, p.s + p.vo_start, vo.len) == 0:
        at = p.app_at
        if b.n + p.app_len > b.cap:
            buf_grow(b, p.app_len)
        memcpy(b.p + b.n, b.p + at, p.app_len)
        b.n += p.app_len
        return 0
    at = b.n
    put_outs(p, b, ev, VO_OUT, N_VO_OUT)
    if vo.kind == OBJ and vo.len:
        p.vo_start, p.vo_len = vo.start, vo.len
        p.app_at, p.app_len = at, b.n - at
    return 0


cdef int put_header_parts(Parser* p, Slot* hd, int64_t received, Buf* who, Buf* sent, Buf* device) except -1:
    """The parts of every event that come from the header, written once per batch."""
    put_name(who, &KEY_PROJECT_ID)
    put_int(who, hd[H_PID].i)
    put_name(who, &KEY_USER_ID)
    put_str(p, who, &hd[H_UID])
    put_name(sent, &KEY_SENT_TIME)
    put_int(sent, hd[H_NOW].i)
    put_name(sent, &KEY_RECEIVED_TIME)
    put_int(sent, received)
    put_outs(p, device, hd, HEADER_OUT, N_HEADER_OUT)   # sub-slots are absent unless `r` was an object
    return 0
