# The native decoder, its entry points (decode, event keys and ids, read_request): included by _native.pyx (see its docstring).

# ---------------------------------------------------------------------------- the entry


__all__ = ["decode", "event_keys", "event_ids", "decoded_ids", "read_request", "line_views"]


def decode(data, str format, int64_t received_time, Py_ssize_t max_output=0):
    """Decode one batch; see `collector.decode`. A contiguous buffer (bytes, a memoryview of
    a request) is read in place; anything else is copied to bytes first."""
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        PyObject_GetBuffer(bytes(data), &view, PyBUF_SIMPLE)
    try:
        return _decode(<cstr>view.buf, view.len, format, received_time, max_output)
    finally:
        PyBuffer_Release(&view)


cdef _decode(cstr s, Py_ssize_t n, str format, int64_t received_time, Py_ssize_t max_output):
    cdef Parser p
    cdef Out o
    cdef Slot header[MAX_SLOTS]
    cdef int code
    cdef Py_ssize_t i
    cdef int not_object = 0

    if n >= 0x7FFFFFFF:
        raise ValueError("a batch must be smaller than 2 GiB")
    memset(&p, 0, sizeof(Parser))
    memset(&o, 0, sizeof(Out))
    memset(header, 0, sizeof(header))
    p.s = s
    p.n = n
    p.header = header
    p.out = &o
    p.app_at = -1
    o.received = received_time
    o.limit = max_output if max_output > 0 else 0
    if format == "json":
        p.proto = 0
    elif format == "protobuf":
        p.proto = 1
    else:
        raise ValueError(f"unknown format {format!r}: use 'json' or 'protobuf'")
    # normalised events take ~2.5x their JSON, ~4x their protobuf: room for them all at once
    o.events.cap = (5 if p.proto else 3) * p.n + 4096
    o.events.obj = bytes_new(NULL, o.events.cap)
    if o.events.obj == NULL:
        raise MemoryError()
    o.events.p = bytes_data(o.events.obj)
    try:
        if p.proto:
            pb_batch(&p, header)
        else:
            not_object = read_document(&p, header)
        if p.err:
            if p.err == E_DEEP:
                raise BatchError("too_deep", f"nested deeper than {MAX_DEPTH_} levels at byte {p.err_pos}")
            raise BatchError("malformed_json", f"{p.err_msg.decode()} at byte {p.err_pos}")
        if not_object == 1:
            raise BatchError("batch_not_object", "the batch is not a JSON object")
        code = check_list(&p, header, L_HEADER)
        if code >= 0:
            raise BatchError(_CODES[code])
        if p.ev_total > MAX_EVENTS_:
            raise BatchError("too_many_events", f"{p.ev_total} events, at most {MAX_EVENTS_}")

        if not p.proto and (p.holes or p.header_after_pl):
            # JSON events written before the header was final: join them with its parts
            # (protobuf events are written once the header is: `pb_batch`)
            if o.over and not p.holes:
                # the limit was passed with the header as it was at `pl`, which may have been
                # longer: read the events again, with the final header, to know
                p.pos = p.pl_start
                events_pass(&p, 2)
            elif not o.over and rejoin_header(&p):
                o.over = 1
        if o.over:
            raise TooLarge(o.limit)
        _PyBytes_Resize(&o.events.obj, o.events.n)
        jsonl = <bytes>o.events.obj
        spans = PyBytes_FromStringAndSize(<const char*>o.id_at, sizeof(Py_ssize_t) * 2 * o.nids)
        rejected = [(o.rej_index[i], _CODES[o.rej_code[i]]) for i in range(o.nrej)]
    finally:
        Py_XDECREF(o.events.obj)
        free(o.who.p)
        free(o.sent.p)
        free(o.device.p)
        free(o.rej_index)
        free(o.rej_code)
        free(o.id_at)
        free(o.placed)
        free(p.ev_at)
        free(p.scratch)
        free(p.params.p)
        free(p.hashes)
    result = _new_decoded(Decoded)    # the slots set directly: no Python-level __init__
    result.rejected = rejected
    result._jsonl = jsonl
    result._events = None
    result._ids = spans
    result.project_id = header[H_PID].i
    return result


cdef int read_document(Parser* p, Slot* header) except -2:
    """The whole JSON document: 0, or 1 when it is valid JSON but not an object."""
    cdef int not_object = 0
    skip_ws(p)
    if p.pos < p.n and p.s[p.pos] == 123:
        if parse_object(p, K_HEADER, header, 1) < 0:
            return -1
    else:
        if skip_value(p, 1, NULL) < 0:
            return -1
        not_object = 1
    skip_ws(p)
    if p.pos != p.n:
        return fail(p, E_MALFORMED, "trailing characters", p.pos)
    return not_object


def event_keys(bytes jsonl):
    """(event_id, action) of each line of normalised JSON Lines, as `decode` writes them: read
    off the start of each line, where both keys always are; the twin of `_pure.event_keys`."""
    keys = _keys(jsonl, True)
    return _pure.event_keys(jsonl) if keys is None else keys  # not as `decode` writes it: read as JSON


def event_ids(bytes jsonl):
    """The event_id of each line, as `event_keys` reads it; the twin of `_pure.event_ids`."""
    ids = _keys(jsonl, False)
    return _pure.event_ids(jsonl) if ids is None else ids


def decoded_ids(decoded):
    """The event_id of each event of a Decoded, in order, made from where `decode` wrote them
    (no second reading of the JSON Lines); the twin of `_pure.decoded_ids`."""
    cdef bytes jsonl
    cdef const Py_ssize_t* at
    cdef const char* s
    cdef Py_ssize_t i, a, e, n
    spans = decoded._ids
    if type(spans) is list:
        return spans
    if type(spans) is not bytes:    # not made by this decoder: read the JSON Lines
        ids = event_ids(decoded.to_jsonl())
    else:
        jsonl = decoded._jsonl
        s = PyBytes_AS_STRING(jsonl)
        at = <const Py_ssize_t*>PyBytes_AS_STRING(spans)
        n = PyBytes_GET_SIZE(spans) // (2 * sizeof(Py_ssize_t))
        ids = []
        for i in range(n):
            a = at[2 * i] + 1       # inside the quotes
            e = at[2 * i + 1] - 1
            ids.append(json_text(s, a, e, memchr(s + a, 92, e - a) != NULL))
    decoded._ids = ids
    return ids


def line_views(pieces):
    """The lines of pieces of JSON Lines (bytes; a piece's last line needs no newline) as Arrow
    string views, 16 bytes each: length, then the line itself when it is at most 12 bytes, else
    its first 4 bytes, the piece's index and the line's offset in it. (count, views): what an
    Arrow `string_view` array over the pieces is made of, with no line copied. The twin of
    `_pure.line_views`."""
    cdef Py_ssize_t count = 0, cap = 0, j, n, start
    cdef const char* s
    cdef const char* nl
    cdef int32_t* v
    cdef Buf out
    cdef int32_t length
    memset(&out, 0, sizeof(Buf))
    try:
        for j in range(len(pieces)):
            piece = pieces[j]
            if type(piece) is not bytes:
                raise TypeError("line_views takes a list of bytes")
            s = PyBytes_AS_STRING(piece)
            n = PyBytes_GET_SIZE(piece)
            if n > 0x7FFFFFFF:
                raise ValueError("a piece of JSON Lines passes 2 GiB")
            start = 0
            while start < n:
                nl = <const char*>memchr(s + start, 10, n - start)
                length = <int32_t>((nl - s if nl != NULL else n) - start)
                if out.n + 16 > out.cap:
                    buf_grow(&out, 16)
                v = <int32_t*>(out.p + out.n)
                memset(v, 0, 16)
                v[0] = length
                if length <= 12:
                    memcpy(&v[1], s + start, length)
                else:
                    memcpy(&v[1], s + start, 4)
                    v[2] = <int32_t>j
                    v[3] = <int32_t>start
                out.n += 16
                count += 1
                start += length + 1
        return count, PyBytes_FromStringAndSize(out.p, out.n)
    finally:
        free(out.p)


def read_request(data):
    """A serialized IngestRequest, read in place: (batch_id, format, batch, project_id), where
    `batch` is a memoryview of the batch's bytes inside `data` (format and batch are None when
    the request holds no batch). Raises ValueError when the bytes are not an IngestRequest.
    The twin of `_pure.read_request`."""
    cdef Py_buffer view
    cdef Parser p
    cdef uint64_t number, value
    cdef int wtype, which = 0
    cdef Py_ssize_t vs, ve, bs = 0, be = 0, ids = 0, ide = 0
    cdef int64_t project = 0
    if type(data) is not bytes:     # the batch is a view of bytes, whatever the buffer's items
        data = bytes(data)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        memset(&p, 0, sizeof(Parser))
        p.s = <cstr>view.buf
        p.n = view.len
        while p.pos < p.n:
            if read_field(&p, &p.pos, p.n, &number, &wtype, &value, &vs, &ve) < 0:
                raise ValueError(f"not an IngestRequest: {p.err_msg.decode()} at byte {p.err_pos}")
            if wtype == 2:      # a field of another wire type than its own is an unknown field
                if number == RQ_BATCH_ID:     # a string: each one set must be UTF-8
                    if check_utf8(&p, vs, ve) < 0:
                        raise ValueError("not an IngestRequest: batch_id is not UTF-8")
                    ids, ide = vs, ve
                elif number == RQ_JSON or number == RQ_PROTOBUF:    # the oneof: the last one set wins
                    which, bs, be = <int>number, vs, ve
            elif wtype == 0 and number == RQ_PROJECT_ID:
                project = <int64_t>value
        batch_id = PyUnicode_DecodeUTF8(<const char*>p.s + ids, ide - ids, NULL)
    finally:
        PyBuffer_Release(&view)
    if not which:
        return batch_id, None, None, project
    return batch_id, wire.REQUEST_FORMATS[which], memoryview(data)[bs:be], project


cdef uint64_t RQ_BATCH_ID = wire.REQUEST_BATCH_ID, RQ_JSON = wire.REQUEST_JSON
cdef uint64_t RQ_PROTOBUF = wire.REQUEST_PROTOBUF, RQ_PROJECT_ID = wire.REQUEST_PROJECT_ID


cdef inline str json_text(const char* s, Py_ssize_t a, Py_ssize_t e, bint escaped):
    """The text of the JSON string whose contents are s[a:e] (its quotes around them)."""
    if escaped:
        return _string.decode(PyBytes_FromStringAndSize(s + a - 1, e - a + 2))
    return PyUnicode_DecodeUTF8(s + a, e - a, NULL)


# How `decode` starts a line when the spec puts event_id and action first (parts.pxi); else
# event_keys reads lines as JSON.
cdef bint _LEADS = WRITTEN_ORDER[:2] == ("event_id", "action")


cdef list _keys(bytes jsonl, bint actions):
    """(event_id, action) or event_id of each line, or None where a line is not as `decode`
    writes it."""
    cdef const char* s = PyBytes_AS_STRING(jsonl)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(jsonl), pos = 0, a, e, a2, e2
    cdef bint escaped
    cdef const char* nl
    out = []
    if not _LEADS:
        return None
    while pos < n:
        if n - pos < 13 or memcmp(s + pos, b'{"event_id":"', 13) != 0:
            return None
        a = e = pos + 13
        escaped = False
        while e < n and s[e] != 34:
            if s[e] == 92:
                escaped = True
                e += 1
            e += 1
        if e >= n or n - e < 12 or memcmp(s + e, b'","action":"', 12) != 0:
            return None
        a2 = e2 = e + 12
        while e2 < n and s[e2] != 34 and s[e2] != 92:
            e2 += 1
        if e2 >= n or s[e2] != 34:
            return None
        nl = <const char*>memchr(s + e2, 10, n - e2)
        if nl == NULL:
            return None
        pos = nl - s + 1
        event_id = json_text(s, a, e, escaped)
        if actions:
            out.append((event_id, PyUnicode_DecodeUTF8(s + a2, e2 - a2, NULL)))
        else:
            out.append(event_id)
    return out


_string = msgspec.json.Decoder(str)
_new_decoded = Decoded.__new__
_encode = msgspec.json.encode
_params_decoder = msgspec.json.Decoder(float_hook=float)


cdef bytes settle_params(Parser* p, Slot* sl):
    """Params where a key may repeat: the pure path keeps the last value of each key. Returns
    their JSON text, or None when they hold a number that is not a finite double."""
    cdef bytes span = PyBytes_FromStringAndSize(<const char*>p.s + sl.start, sl.len)
    if p.proto:
        obj = values.read_object(span, 0, len(span), 4)
    else:
        obj = _params_decoder.decode(span)
    try:
        params = values.params(obj)
    except values.Invalid:
        return None
    return _encode(params)
