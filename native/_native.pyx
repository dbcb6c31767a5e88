# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""The native decoder: one pass over the bytes of a batch, JSON Lines out.

A reader is a cursor over `const unsigned char*`; values are recorded as slots (kind, span in
the input, number) in C arrays, checked against the tables of `collector.spec`, and written
straight into an output buffer. The only Python objects made are the output bytes and the list
of rejections, at the end. Semantics are those of `collector._pure`, which says them in Python.
"""

from libc.stdint cimport int64_t, uint64_t, uint8_t, int16_t, int32_t, uint32_t
from libc.string cimport memcpy, memset, memcmp, memchr
from libc.stdlib cimport malloc, calloc, realloc, free, qsort
from libc.math cimport isfinite
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8

import os

import msgspec

from collector import spec, wire, _pure
from collector.errors import BatchError, TooLarge
from collector.event import Decoded

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, PyObject *overflow_exception) except? -1.0
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int *ptype) except NULL
    void PyMem_Free(void *p)
    int Py_DTSF_ADD_DOT_0
    PyObject* bytes_new "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n)
    int _PyBytes_Resize(PyObject **b, Py_ssize_t n) except -1
    char* bytes_data "PyBytes_AS_STRING"(PyObject *b)
    void Py_XDECREF(PyObject *o)

ctypedef const unsigned char* cstr

cdef extern from *:
    """
    static inline int collector_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int collector_clz64(unsigned long long x) { return __builtin_clzll(x); }
    """
    int ctz64 "collector_ctz64"(uint64_t x) nogil    # x != 0
    int clz64 "collector_clz64"(uint64_t x) nogil    # x != 0

cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* The first byte from i on that is a quote, a backslash, a control character or
       non-ASCII; n if none. */
    static inline Py_ssize_t collector_skip_plain(const unsigned char *s, Py_ssize_t i, Py_ssize_t n) {
    #if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8(0x22), bslash = _mm_set1_epi8(0x5C), space = _mm_set1_epi8(0x20);
        while (i + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
            /* signed: a byte >= 0x80 is negative, below the space too */
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                     _mm_cmplt_epi8(x, space));
            int mask = _mm_movemask_epi8(m);
            if (mask) return i + __builtin_ctz((unsigned)mask);
            i += 16;
        }
    #else
        while (i + 8 <= n) {
            unsigned long long x, q, b, bad;
            memcpy(&x, s + i, 8);
            q = x ^ 0x2222222222222222ULL;
            b = x ^ 0x5C5C5C5C5C5C5C5CULL;
            bad = (x | ((x - 0x2020202020202020ULL) & ~x) | ((q - 0x0101010101010101ULL) & ~q)
                   | ((b - 0x0101010101010101ULL) & ~b)) & 0x8080808080808080ULL;
            if (bad) return i + (__builtin_ctzll(bad) >> 3);
            i += 8;
        }
    #endif
        while (i < n) {
            unsigned char c = s[i];
            if (c < 0x20 || c >= 0x80 || c == 0x22 || c == 0x5C) break;
            i++;
        }
        return i;
    }
    """
    Py_ssize_t skip_plain "collector_skip_plain"(cstr s, Py_ssize_t i, Py_ssize_t n) nogil

# ------------------------------------------------------------------------------- limits

DEF MAX_SLOTS = 48        # slots of one object layout (header or event)
DEF MAX_RECS = 160        # field records of all check lists
DEF MAX_LISTS = 32
DEF MAX_FIELDNO = 32      # protobuf field numbers we map (larger ones are unknown fields)
DEF N_KINDS = 24        # object kinds (JSON lookups / protobuf messages)
DEF HASH_BITS = 7
DEF HASH_SIZE = 128       # 2 ** HASH_BITS

# Slot kinds.
DEF ABSENT = 0
DEF NUL = 1
DEF INT = 2       # .i
DEF BIGNUM = 3    # a JSON integer outside int64: a number, .d
DEF FLOAT = 4     # .d
DEF STR = 5       # span; esc: 1 = JSON escapes inside, 2 = raw bytes that need JSON escaping
DEF TRUE_ = 6
DEF FALSE_ = 7
DEF OBJ = 8
DEF ARR = 9

# Params flags.
DEF P_DIRTY = 1     # whitespace or a big integer: must be written anew, not copied
DEF P_NONFINITE = 2
DEF P_DUP = 4       # a key may repeat in some object: the pure path settles it
DEF P_CACHED = 8    # a known sub-object whose text is the last one read (its slots copied)

# Slot roles in an object layout.
DEF R_SCALAR = 0
DEF R_SUB = 1
DEF R_PARAMS = 2
DEF R_EVENTS = 3

# Errors.
DEF E_MALFORMED = 1
DEF E_DEEP = 2

cdef struct Slot:           # 32 bytes: an event's slots are cleared for every event
    uint8_t kind
    uint8_t esc
    uint8_t flags
    int32_t start           # batches are far below 2 GiB (decode refuses larger input)
    int32_t len
    int64_t i
    double d

cdef extern from *:
    """
    /* A growing output buffer, kept in a bytes object when `obj` is set. Appending is the
       hottest operation there is, so it is C that the compiler always inlines. */
    typedef struct { char *p; Py_ssize_t n, cap; PyObject *obj; } collector_buf;

    static int collector_buf_grow(collector_buf *b, Py_ssize_t extra) {
        Py_ssize_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + extra) cap *= 2;
        if (b->obj) {
            if (_PyBytes_Resize(&b->obj, cap) < 0) return -1;
            b->p = PyBytes_AS_STRING(b->obj);
        } else {
            char *q = (char *)realloc(b->p, cap);
            if (!q) { PyErr_NoMemory(); return -1; }
            b->p = q;
        }
        b->cap = cap;
        return 0;
    }

    static inline __attribute__((always_inline))
    int collector_put(collector_buf *b, const char *s, Py_ssize_t n) {
        if (b->n + n > b->cap && collector_buf_grow(b, n) < 0) return -1;
        memcpy(b->p + b->n, s, n);
        b->n += n;
        return 0;
    }

    static inline __attribute__((always_inline)) int collector_putc(collector_buf *b, char c) {
        if (b->n + 1 > b->cap && collector_buf_grow(b, 1) < 0) return -1;
        b->p[b->n++] = c;
        return 0;
    }

    /* A short string (n <= 30) in quotes, from s where 32 bytes can be read: all 32 are
       copied at once, and the closing quote written over the byte after the string. */
    static inline __attribute__((always_inline))
    int collector_put_quoted32(collector_buf *b, const char *s, Py_ssize_t n) {
        char *q;
        if (b->n + 34 > b->cap && collector_buf_grow(b, 34) < 0) return -1;
        q = b->p + b->n;
        q[0] = '"';
        memcpy(q + 1, s, 32);
        q[1 + n] = '"';
        b->n += n + 2;
        return 0;
    }
    """
    ctypedef struct Buf "collector_buf":
        char* p
        Py_ssize_t n
        Py_ssize_t cap
        PyObject* obj
    int buf_grow "collector_buf_grow"(Buf* b, Py_ssize_t extra) except -1
    int put "collector_put"(Buf* b, const char* s, Py_ssize_t n) except -1
    int putc "collector_putc"(Buf* b, char c) except -1
    int put_quoted32 "collector_put_quoted32"(Buf* b, const char* s, Py_ssize_t n) except -1

cdef struct KeyEntry:       # JSON key -> slot, in an open-addressing table per kind
    uint64_t packed
    uint64_t quoted         # the key's bytes and its closing quote, as 8 input bytes masked
    uint64_t mask           # with this mask read them
    int16_t slot
    uint8_t role
    uint8_t sub             # kind of a sub-object's keys
    int16_t sub_start       # first slot of the sub-object (reset when it is read again)
    int16_t sub_count

cdef struct FieldEntry:     # protobuf field number -> slot, per message kind
    int16_t slot            # -1: not mapped
    uint8_t wire
    uint8_t vkind           # wire.K_*
    uint8_t role
    uint8_t sub
    int16_t sub_start
    int16_t sub_count

cdef struct Rec:            # one field check
    uint32_t fine           # slot kinds that pass with nothing more to look at
    int16_t slot
    uint8_t type
    uint8_t required
    uint8_t check
    int16_t sub_list        # for OBJECT
    int16_t code_missing
    int16_t code_invalid

cdef struct List:
    int16_t start
    int16_t count

cdef struct UrlSeen:
    int32_t start           # the url's text in the input
    int32_t len             # 0: none
    Py_ssize_t name_at      # its screen name in the output
    Py_ssize_t name_len


cdef struct Parser:
    cstr s
    Py_ssize_t n
    Py_ssize_t pos
    int err
    Py_ssize_t err_pos
    const char* err_msg
    bint proto
    # events of the last `pl`
    Slot* ev
    uint8_t* ev_isobj
    Py_ssize_t ev_count       # stored (<= MAX_EVENTS)
    Py_ssize_t ev_total       # seen
    Py_ssize_t ev_cap
    # scratch for unescaped strings
    unsigned char* scratch
    Py_ssize_t scratch_cap
    # key hashes of the objects being read in params (a stack)
    uint64_t* hashes
    Py_ssize_t nhash
    Py_ssize_t hash_cap
    # JSON events are written as they are read, when the header before `pl` is the final one
    Slot* header
    Out* out
    Py_ssize_t pl_start     # where the last `pl` array starts
    int pl_seen             # how many `pl` keys were read
    bint header_after_pl    # a header key came after `pl`: its events must be written again
    bint written            # the events of the only `pl` were written with the final header
    # SDKs repeat themselves: the last text of each known sub-object (`vo`...) and its slots
    int32_t sub_start[MAX_SLOTS]
    int32_t sub_len[MAX_SLOTS]
    uint8_t sub_valid[MAX_SLOTS]    # that last text passed its checks
    Slot sub_slots[MAX_SLOTS]
    UrlSeen urls[64]        # a few urls and where their screen names were written
    # SDKs write keys in the same order: per object kind, the key (hash index + 1, 0: none)
    # that came after each key (index HASH_SIZE: the first key) the last time
    uint8_t pred[N_KINDS][HASH_SIZE + 1]
    int32_t vo_start        # the last `vo` text written, and where its part of `app` went
    int32_t vo_len
    Py_ssize_t app_at       # in the output; -1: none
    Py_ssize_t app_len


cdef struct Out:
    Buf events
    Buf who                 # the parts of every event that come from the header
    Buf sent
    Buf device
    int64_t received
    bint emit
    int32_t* rej_index      # rejected events: index in `pl` and code id
    int16_t* rej_code
    Py_ssize_t nrej
    Py_ssize_t rej_cap
    Py_ssize_t limit        # the most bytes of events that may be written (0: no limit)
    bint over               # this pass passed it: nothing more is written
    Py_ssize_t* id_at       # each written event's event_id: start and end of its JSON string
    Py_ssize_t nids
    Py_ssize_t ids_cap

# ------------------------------------------------------------------------- the tables

cdef KeyEntry KEYS[N_KINDS][HASH_SIZE]
cdef uint64_t KEY_MUL[N_KINDS]
cdef FieldEntry FIELDS[N_KINDS][MAX_FIELDNO + 1]
cdef Rec RECS[MAX_RECS]
cdef List LISTS[MAX_LISTS]
cdef int N_HEADER_SLOTS, N_EVENT_SLOTS
cdef int K_HEADER, K_EVENT, PB_BATCH, PB_EVENT
cdef int L_HEADER, L_COMMON
cdef int L_ACTION[21]       # -1: unknown action
cdef int PAYLOAD_KIND[MAX_FIELDNO + 1]     # payload field number -> message kind, -1 if none
cdef uint8_t PAYLOAD_CODES[MAX_FIELDNO + 1][21]
cdef int PAYLOAD_AS_SLOT[MAX_FIELDNO + 1]  # slot when the payload is one key's object (`tr`)
cdef int PAYLOAD_SUB_START[MAX_FIELDNO + 1]
cdef int PAYLOAD_SUB_COUNT[MAX_FIELDNO + 1]
cdef int LABEL_SLOT[21]
cdef int CODE_NOT_OBJECT, CODE_UNKNOWN_ACTION, CODE_BAD_ACTION_NAME, CODE_TOO_MANY
cdef int CUSTOM_EA, CODE_BAD_PARAMS
# spec field types and checks, wire kinds and Value fields, as C values
cdef int T_INT, T_NUMBER, T_STRING, T_BOOL, T_OBJECT, T_PARAMS
cdef int C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID, C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE
cdef int VK_INT, VK_SINT, VK_DOUBLE, VK_BOOL
cdef int V_NULL, V_BOOL, V_INT, V_DOUBLE, V_STRING, V_ARRAY, V_OBJECT
cdef const char* HEXDIGITS = b"0123456789abcdef"

# header slots
cdef int H_PID, H_UID, H_NOW, H_PL, H_DT, H_DMA, H_DMO, H_OS, H_L, H_TZ, H_TO, H_R
cdef int H_AN, H_ST, H_SF, H_D
# event slots
cdef int S_EUID, S_EA, S_T, S_UPT, S_URL, S_SCN, S_C, S_CI, S_O, S_VO, S_SN
cdef int S_SV, S_SB, S_AV, S_AF, S_AB
cdef int S_ST, S_SL, S_TVP, S_TVID, S_UR, S_FD, S_TVD, S_TVV, S_TR, S_VL, S_CU, S_ID
cdef int S_K, S_V, S_AC, S_LB, S_PR

# small enums and names, JSON-quoted
cdef struct Name:           # a short JSON text, copied whole (its length says what counts)
    char s[40]
    int n

cdef Name ACTION_JSON[21]
cdef char CURRENCY[1000][4]
cdef Name CONNECTIVITY[6]
cdef Name ORIENTATION[2]
cdef Name DEVICE_TYPE[2]
cdef Name DIRECTION[5]
cdef int MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_
cdef double DENSITY_MIN_, DENSITY_MAX_

CODES = []          # code id -> SPEC code string

cdef uint8_t ACTION_CHAR[256]
cdef uint8_t HEX[256]
cdef uint8_t STR_PLAIN[256]     # JSON string bytes that need no attention


cdef uint64_t pack_key(const unsigned char* k, Py_ssize_t n) noexcept nogil:
    cdef uint64_t v = <uint64_t>n << 56
    cdef Py_ssize_t j
    if n > 6:
        return 0xFFFFFFFFFFFFFFFFULL
    for j in range(n):
        v |= (<uint64_t>k[j]) << (8 * j)
    return v


cdef inline int key_hash(int kind, uint64_t packed) noexcept nogil:
    return <int>((packed * KEY_MUL[kind]) >> (64 - HASH_BITS))


cdef int _code(str code):
    if code not in CODES:
        CODES.append(code)
    return CODES.index(code)


def _init():
    global N_HEADER_SLOTS, N_EVENT_SLOTS, K_HEADER, K_EVENT, PB_BATCH, PB_EVENT
    global L_HEADER, L_COMMON, CODE_NOT_OBJECT, CODE_UNKNOWN_ACTION, CODE_BAD_ACTION_NAME
    global CODE_TOO_MANY, CUSTOM_EA, MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_
    global DENSITY_MIN_, DENSITY_MAX_, CODE_BAD_PARAMS
    global T_INT, T_NUMBER, T_STRING, T_BOOL, T_OBJECT, T_PARAMS
    global C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID, C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE
    global VK_INT, VK_SINT, VK_DOUBLE, VK_BOOL
    global V_NULL, V_BOOL, V_INT, V_DOUBLE, V_STRING, V_ARRAY, V_OBJECT
    global H_PID, H_UID, H_NOW, H_PL, H_DT, H_DMA, H_DMO, H_OS, H_L, H_TZ, H_TO, H_R
    global H_AN, H_ST, H_SF, H_D
    global S_EUID, S_EA, S_T, S_UPT, S_URL, S_SCN, S_C, S_CI, S_O, S_VO, S_SN
    global S_SV, S_SB, S_AV, S_AF, S_AB
    global S_ST, S_SL, S_TVP, S_TVID, S_UR, S_FD, S_TVD, S_TVV, S_TR, S_VL, S_CU, S_ID
    global S_K, S_V, S_AC, S_LB, S_PR
    cdef int i, j, kind, slot, h
    cdef uint64_t packed, mul
    cdef bytes b

    MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_ = spec.MAX_EVENTS, spec.MAX_DEPTH, spec.MAX_ID_BYTES
    DENSITY_MIN_, DENSITY_MAX_ = spec.DENSITY_MIN, spec.DENSITY_MAX
    CUSTOM_EA = spec.CUSTOM
    T_INT, T_NUMBER, T_STRING, T_BOOL = spec.INT, spec.NUMBER, spec.STRING, spec.BOOL
    T_OBJECT, T_PARAMS = spec.OBJECT, spec.PARAMS
    C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID = spec.ANY, spec.POSITIVE, spec.NON_NEGATIVE, spec.ID
    C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE = spec.CURRENCY, spec.DENSITY, spec.ACTION_NAME, spec.ACTION_CODE
    VK_INT, VK_SINT, VK_DOUBLE, VK_BOOL = wire.K_INT, wire.K_SINT, wire.K_DOUBLE, wire.K_BOOL
    V_NULL, V_BOOL, V_INT, V_DOUBLE = wire.VALUE_NULL, wire.VALUE_BOOL, wire.VALUE_INT, wire.VALUE_DOUBLE
    V_STRING, V_ARRAY, V_OBJECT = wire.VALUE_STRING, wire.VALUE_ARRAY, wire.VALUE_OBJECT

    # Slot layouts: every key of an object and of its sub-objects ("vo.sv") gets a slot.
    event_fields = list(spec.COMMON)
    for ea, (_, fields, _) in sorted(spec.ACTIONS.items()):
        for f in fields:
            if f.key not in [g.key for g in event_fields]:
                event_fields.append(f)

    def layout(fields):
        slots = {}
        for f in fields:
            slots[f.key] = len(slots)
            for sub in f.fields:
                slots[f.key + "." + sub.key] = len(slots)
        return slots

    header_slots = layout(spec.HEADER)
    event_slots = layout(event_fields)
    assert len(header_slots) <= MAX_SLOTS and len(event_slots) <= MAX_SLOTS
    N_HEADER_SLOTS, N_EVENT_SLOTS = len(header_slots), len(event_slots)

    H_PID, H_UID, H_NOW, H_PL = header_slots["pid"], header_slots["uid"], header_slots["now"], header_slots["pl"]
    H_DT, H_DMA, H_DMO, H_OS = header_slots["dt"], header_slots["dma"], header_slots["dmo"], header_slots["os"]
    H_L, H_TZ, H_TO, H_R = header_slots["l"], header_slots["tz"], header_slots["to"], header_slots["r"]
    H_AN, H_ST, H_SF, H_D = header_slots["to.an"], header_slots["to.st"], header_slots["to.sf"], header_slots["r.d"]
    e = event_slots
    S_EUID, S_EA, S_T, S_UPT, S_URL, S_SCN = e["euid"], e["ea"], e["t"], e["upt"], e["url"], e["scn"]
    S_C, S_CI, S_O, S_VO, S_SN = e["c"], e["ci"], e["o"], e["vo"], e["sn"]
    S_SV, S_SB, S_AV, S_AF, S_AB = e["vo.sv"], e["vo.sb"], e["vo.av"], e["vo.af"], e["vo.ab"]
    S_ST, S_SL, S_TVP, S_TVID, S_UR = e["st"], e["sl"], e["tvp"], e["tvid"], e["ur"]
    S_FD, S_TVD, S_TVV, S_TR = e["fd"], e["tvd"], e["tvv"], e["tr"]
    S_VL, S_CU, S_ID = e["tr.vl"], e["tr.cu"], e["tr.id"]
    S_K, S_V, S_AC, S_LB, S_PR = e["k"], e["v"], e["ac"], e["lb"], e["pr"]

    # JSON key tables, one per object kind.
    kinds = []

    def add_kind(fields, slots, prefix):
        kind = len(kinds)
        kinds.append(None)
        entries = []
        for f in fields:
            slot = slots[prefix + f.key]
            role, sub, sub_start, sub_count = R_SCALAR, 0, 0, 0
            if f.type == spec.OBJECT:
                role = R_SUB
                sub = add_kind(f.fields, slots, prefix + f.key + ".")
                sub_start, sub_count = slots[prefix + f.key + "." + f.fields[0].key], len(f.fields)
            elif f.type == spec.PARAMS:
                role = R_PARAMS
            elif f.type == spec.EVENTS:
                role = R_EVENTS
            entries.append((f.key.encode(), slot, role, sub, sub_start, sub_count))
        fill_keys(kind, entries)
        return kind

    K_HEADER = add_kind(spec.HEADER, header_slots, "")
    K_EVENT = add_kind(event_fields, event_slots, "")
    assert len(kinds) <= N_KINDS

    # Check lists.
    nrecs = [0]
    nlists = [0]

    def add_list(fields, slots, prefix):
        idx = nlists[0]
        nlists[0] += 1
        start = nrecs[0]
        nrecs[0] += len(fields)
        assert nrecs[0] <= MAX_RECS and nlists[0] <= MAX_LISTS
        LISTS[idx].start, LISTS[idx].count = start, len(fields)
        for j, f in enumerate(fields):
            RECS[start + j].slot = slots[prefix + f.key]
            RECS[start + j].type = f.type
            RECS[start + j].required = f.required
            RECS[start + j].check = f.check
            RECS[start + j].code_missing = _code(f"missing_field:{prefix}{f.key}")
            RECS[start + j].code_invalid = _code(f"invalid_field:{prefix}{f.key}")
            RECS[start + j].sub_list = add_list(f.fields, slots, prefix + f.key + ".") if f.type == spec.OBJECT else -1
            fine = 0 if f.required else (1 << ABSENT) | (1 << NUL)
            if f.check == spec.ANY:
                fine |= {spec.INT: 1 << INT, spec.STRING: 1 << STR, spec.BOOL: (1 << TRUE_) | (1 << FALSE_),
                         spec.PARAMS: 1 << OBJ, spec.EVENTS: 1 << ARR}.get(f.type, 0)
            RECS[start + j].fine = fine
        return idx

    L_HEADER = add_list(spec.HEADER, header_slots, "")
    L_COMMON = add_list(spec.COMMON, event_slots, "")
    for i in range(21):
        L_ACTION[i] = -1
        LABEL_SLOT[i] = -1
    for ea, (name, fields, _) in spec.ACTIONS.items():
        L_ACTION[ea] = add_list(fields, event_slots, "")
        b = (b'"' + name.encode() + b'"') if name else b""
        set_name(&ACTION_JSON[ea], b)
    for ea, key in spec.LABEL_KEY.items():
        LABEL_SLOT[ea] = event_slots[key]
    CODE_NOT_OBJECT = _code("event_not_object")
    CODE_UNKNOWN_ACTION = _code("unknown_action")
    CODE_BAD_ACTION_NAME = _code("invalid_action_name")
    CODE_TOO_MANY = _code("too_many_events")
    CODE_BAD_PARAMS = _code("invalid_field:pr")

    # Protobuf field tables, one per message kind.
    msg_kind = {name: i for i, name in enumerate(wire.MESSAGES)}
    assert len(msg_kind) <= N_KINDS
    PB_BATCH, PB_EVENT = msg_kind["Batch"], msg_kind["Event"]

    def fill_fields(msg, slots, prefix):
        kind = msg_kind[msg]
        for j in range(MAX_FIELDNO + 1):
            FIELDS[kind][j].slot = -1
        for number, (key, vkind, wtype, sub, repeated) in wire.MESSAGES[msg].items():
            if number > MAX_FIELDNO:
                continue
            FIELDS[kind][number].wire = wtype
            FIELDS[kind][number].vkind = vkind
            FIELDS[kind][number].role = R_SCALAR
            if msg == "Event" and number in wire.PAYLOADS:
                continue        # read after the event, through PAYLOAD_*
            if prefix + key not in slots:
                continue
            FIELDS[kind][number].slot = slots[prefix + key]
            if sub == "Event":
                FIELDS[kind][number].role = R_EVENTS
            elif sub == "Object":
                FIELDS[kind][number].role = R_PARAMS
            elif sub is not None:
                FIELDS[kind][number].role = R_SUB
                FIELDS[kind][number].sub = fill_fields(sub, slots, prefix + key + ".")
                subkeys = [k for k in slots if k.startswith(prefix + key + ".")]
                FIELDS[kind][number].sub_start = slots[subkeys[0]]
                FIELDS[kind][number].sub_count = len(subkeys)
        return kind

    fill_fields("Batch", header_slots, "")
    fill_fields("Event", event_slots, "")
    for j in range(MAX_FIELDNO + 1):
        PAYLOAD_KIND[j] = -1
        PAYLOAD_AS_SLOT[j] = -1
        memset(PAYLOAD_CODES[j], 0, 21)
    for number, (codes, as_key) in wire.PAYLOADS.items():
        sub = wire.MESSAGES["Event"][number][3]
        for ea in codes:
            PAYLOAD_CODES[number][ea] = 1
        if as_key is not None:
            PAYLOAD_AS_SLOT[number] = event_slots[as_key]
            PAYLOAD_KIND[number] = fill_fields(sub, event_slots, as_key + ".")
            subkeys = [k for k in event_slots if k.startswith(as_key + ".")]
            PAYLOAD_SUB_START[number], PAYLOAD_SUB_COUNT[number] = event_slots[subkeys[0]], len(subkeys)
        else:
            PAYLOAD_KIND[number] = fill_fields(sub, event_slots, "")

    # Names.
    for i in range(1000):
        CURRENCY[i][0] = 0
    for code, alpha in spec.CURRENCIES.items():
        b = alpha.encode()
        memcpy(CURRENCY[code], <char*>b, 3)
        CURRENCY[code][3] = 0

    def names(table, lo, n):
        return [b'"' + table[lo + i].encode() + b'"' for i in range(n)]

    for i, b in enumerate(names(spec.CONNECTIVITY, -1, 6)):
        set_name(&CONNECTIVITY[i], b)
    for i, b in enumerate(names(spec.ORIENTATIONS, 0, 2)):
        set_name(&ORIENTATION[i], b)
    for i, b in enumerate(names(spec.DEVICE_TYPES, 4, 2)):
        set_name(&DEVICE_TYPE[i], b)
    for i, b in enumerate(names(spec.DIRECTIONS, 1, 5)):
        set_name(&DIRECTION[i], b)

    memset(ACTION_CHAR, 0, 256)
    for ch in spec.ACTION_NAME_CHARS:
        ACTION_CHAR[ord(ch)] = 1
    memset(HEX, 0xFF, 256)
    for i in range(10):
        HEX[ord("0") + i] = i
    for i in range(6):
        HEX[ord("a") + i] = 10 + i
        HEX[ord("A") + i] = 10 + i
    for i in range(256):
        STR_PLAIN[i] = 1 if (0x20 <= i < 0x80 and i != 0x22 and i != 0x5C) else 0


cdef void set_name(Name* nm, bytes b) except *:
    if len(b) > 39:
        raise RuntimeError(f"name too long for the tables: {b!r}")
    memset(nm.s, 0, sizeof(nm.s))
    memcpy(nm.s, <char*>b, len(b))
    nm.n = len(b)


cdef void fill_keys(int kind, list entries) except *:
    """An open-addressing table of the kind's keys, with a multiplier that spreads them."""
    cdef int h, tries
    cdef uint64_t packed
    mul = 0x9E3779B97F4A7C15
    packs = [pack_key(<const unsigned char*><char*>k, len(k)) for k, *_ in entries]
    for tries in range(100000):
        if len({((p * mul) & 0xFFFFFFFFFFFFFFFF) >> (64 - HASH_BITS) for p in packs}) == len(packs):
            break
        mul = (mul * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    else:
        raise RuntimeError("no collision-free key table")
    KEY_MUL[kind] = mul
    for h in range(HASH_SIZE):
        KEYS[kind][h].slot = -1
        KEYS[kind][h].packed = 0xFFFFFFFFFFFFFFFEULL
        KEYS[kind][h].quoted, KEYS[kind][h].mask = 1, 0     # matches no input
    for (k, slot, role, sub, sub_start, sub_count), packed in zip(entries, packs):
        h = key_hash(kind, packed)
        KEYS[kind][h].packed = packed
        if len(k) <= 6:
            KEYS[kind][h].quoted = (packed & 0x00FFFFFFFFFFFFFFULL) | (<uint64_t>34 << (8 * len(k)))
            KEYS[kind][h].mask = (<uint64_t>1 << (8 * len(k) + 8)) - 1
        KEYS[kind][h].slot = slot
        KEYS[kind][h].role = role
        KEYS[kind][h].sub = sub
        KEYS[kind][h].sub_start = sub_start
        KEYS[kind][h].sub_count = sub_count


_init()

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


# ----------------------------------------------------------------------- JSON: scanning


cdef inline int skip_ws(Parser* p) noexcept nogil:
    """Skip whitespace; return how many bytes were skipped."""
    if p.pos < p.n and p.s[p.pos] > 32:     # compact JSON: nothing to skip
        return 0
    return skip_ws_run(p)


cdef int skip_ws_run(Parser* p) noexcept nogil:
    cdef Py_ssize_t start = p.pos
    cdef unsigned char c
    while p.pos < p.n:
        c = p.s[p.pos]
        if c == 32 or c == 10 or c == 13 or c == 9:
            p.pos += 1
        else:
            break
    return <int>(p.pos - start)


cdef inline int hex4(Parser* p, Py_ssize_t at) noexcept nogil:
    """The value of 4 hex digits at `at`, or -1."""
    cdef int v = 0, j, h
    if at + 4 > p.n:
        return -1
    for j in range(4):
        h = HEX[p.s[at + j]]
        if h == 0xFF:
            return -1
        v = (v << 4) | h
    return v


cdef inline uint64_t not_plain8(uint64_t x) noexcept nogil:
    """The high bit of each byte of x that is a quote, a backslash, a control character or
    non-ASCII; a borrow may also flag bytes after a flagged one, never before it."""
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL, b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return (x | ((x - 0x2020202020202020ULL) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs


cdef inline bint safe8(uint64_t x) noexcept nogil:
    """No byte of x needs escaping in a JSON string (non-ASCII bytes are fine)."""
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL, b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return ((((x - 0x2020202020202020ULL) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs) == 0


cdef int scan_string(Parser* p, Slot* out) noexcept nogil:
    """At an opening quote: check the string (escapes, surrogate pairs, UTF-8) and record its
    content span."""
    cdef cstr s = p.s
    cdef Py_ssize_t i = p.pos + 1, n = p.n
    cdef unsigned char c, c1
    cdef int esc = 0, u, u2
    while True:
        i = skip_plain(s, i, n)     # to the next byte that needs a look
        if i >= n:
            return fail(p, E_MALFORMED, "unterminated string", p.pos)
        c = s[i]
        if c == 34:
            break
        if c == 92:
            esc = 1
            if i + 1 >= n:
                return fail(p, E_MALFORMED, "unterminated string", p.pos)
            c1 = s[i + 1]
            if c1 == 117:  # \uXXXX
                u = hex4(p, i + 2)
                if u < 0:
                    return fail(p, E_MALFORMED, "invalid \\u escape", i)
                if 0xD800 <= u <= 0xDBFF:
                    if i + 7 < n and s[i + 6] == 92 and s[i + 7] == 117:
                        u2 = hex4(p, i + 8)
                        if 0xDC00 <= u2 <= 0xDFFF:
                            i += 12
                            continue
                    return fail(p, E_MALFORMED, "unpaired surrogate escape", i)
                if 0xDC00 <= u <= 0xDFFF:
                    return fail(p, E_MALFORMED, "unpaired surrogate escape", i)
                i += 6
            elif c1 == 34 or c1 == 92 or c1 == 47 or c1 == 98 or c1 == 102 or c1 == 110 or c1 == 114 or c1 == 116:
                i += 2
            else:
                return fail(p, E_MALFORMED, "invalid escape", i)
        elif c < 0x20:
            return fail(p, E_MALFORMED, "control character in string", i)
        else:
            u = utf8_seq(s, i, n)
            if u == 0:
                return fail(p, E_MALFORMED, "invalid UTF-8", i)
            i += u
    out.kind = STR
    out.esc = esc
    out.start = p.pos + 1
    out.len = i - p.pos - 1
    p.pos = i + 1
    return 0


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


cdef Py_ssize_t unescape(cstr src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    """Decode the content of a checked JSON string into UTF-8; dst needs n bytes."""
    cdef Py_ssize_t i = 0, o = 0
    cdef unsigned char c
    cdef unsigned int u, u2
    while i < n:
        c = src[i]
        if c != 92:
            dst[o] = c
            o += 1
            i += 1
            continue
        c = src[i + 1]
        if c == 117:
            u = (HEX[src[i + 2]] << 12) | (HEX[src[i + 3]] << 8) | (HEX[src[i + 4]] << 4) | HEX[src[i + 5]]
            i += 6
            if 0xD800 <= u <= 0xDBFF:
                u2 = (HEX[src[i + 2]] << 12) | (HEX[src[i + 3]] << 8) | (HEX[src[i + 4]] << 4) | HEX[src[i + 5]]
                i += 6
                u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00)
            if u < 0x80:
                dst[o] = <unsigned char>u
                o += 1
            elif u < 0x800:
                dst[o] = <unsigned char>(0xC0 | (u >> 6))
                dst[o + 1] = <unsigned char>(0x80 | (u & 0x3F))
                o += 2
            elif u < 0x10000:
                dst[o] = <unsigned char>(0xE0 | (u >> 12))
                dst[o + 1] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                dst[o + 2] = <unsigned char>(0x80 | (u & 0x3F))
                o += 3
            else:
                dst[o] = <unsigned char>(0xF0 | (u >> 18))
                dst[o + 1] = <unsigned char>(0x80 | ((u >> 12) & 0x3F))
                dst[o + 2] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                dst[o + 3] = <unsigned char>(0x80 | (u & 0x3F))
                o += 4
            continue
        if c == 98:
            dst[o] = 8
        elif c == 102:
            dst[o] = 12
        elif c == 110:
            dst[o] = 10
        elif c == 114:
            dst[o] = 13
        elif c == 116:
            dst[o] = 9
        else:
            dst[o] = c
        o += 1
        i += 2
    return o


cdef const unsigned char* string_bytes(Parser* p, Slot* sl, Py_ssize_t* n) except? NULL:
    """The UTF-8 bytes of a string slot (unescaped into the scratch buffer if need be)."""
    if sl.esc != 1:
        n[0] = sl.len
        return p.s + sl.start
    scratch_reserve(p, sl.len)
    n[0] = unescape(p.s + sl.start, sl.len, p.scratch)
    return p.scratch


cdef double POW10[23]
for _i in range(23):
    POW10[_i] = float(10 ** _i)
cdef uint64_t POW10U[20]
for _i in range(20):
    POW10U[_i] = 10 ** _i


cdef inline int lead_digits(uint64_t w) noexcept nogil:
    """How many of the 8 bytes of w (first byte lowest) are ASCII digits before any other."""
    cdef uint64_t z = ((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL) | \
        (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
    # a carry out of a byte >= 0xFA can only spoil bytes after it: the first non-digit is exact
    z = (((z & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | z) & 0x8080808080808080ULL
    if z == 0:
        return 8
    return ctz64(z) >> 3


cdef inline uint64_t eight_digits(uint64_t w) noexcept nogil:
    """The value of 8 ASCII digits (first byte lowest); 0x00 bytes count as leading zeros."""
    w = ((w & 0x0F0F0F0F0F0F0F0FULL) * 2561) >> 8
    w = ((w & 0x00FF00FF00FF00FFULL) * 6553601) >> 16
    return ((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32


cdef inline int scan_number(Parser* p, Slot* out, bint want) noexcept:
    """Check a number's grammar; if `want`, record its value: INT inside int64, else a double
    (BIGNUM for an integer outside int64, FLOAT otherwise). The usual number, a plain integer
    of at most 15 digits with 16 readable bytes after its sign, is read 8 digits at a time."""
    cdef cstr s = p.s
    cdef Py_ssize_t i = p.pos, n = p.n
    cdef bint neg = s[i] == 45
    cdef uint64_t w, mant
    cdef int nd, count
    cdef unsigned char c
    i += neg
    if i + 16 <= n:
        memcpy(&w, s + i, 8)
        nd = lead_digits(w)
        if nd == 0:
            return scan_number_slow(p, out, want)
        mant = eight_digits(w << (64 - 8 * nd))
        count = nd
        if nd == 8:
            memcpy(&w, s + i + 8, 8)
            nd = lead_digits(w)
            if nd == 8:
                return scan_number_slow(p, out, want)
            if nd:
                mant = mant * POW10U[nd] + eight_digits(w << (64 - 8 * nd))
                count += nd
        c = s[i + count]            # i + count < i + 16 <= n
        if c == 46 or c == 101 or c == 69 or (s[i] == 48 and count > 1):
            return scan_number_slow(p, out, want)
        p.pos = i + count
        if want:
            out.kind = INT
            out.i = -<int64_t>mant if neg else <int64_t>mant
            # its text is the number's own decimal form, to be copied out ("-0" is not)
            out.start = <int32_t>(i - neg)
            out.len = (count + neg) if (mant or not neg) else 0
        return 0
    return scan_number_slow(p, out, want)


cdef inline bint repr_like(cstr s, Py_ssize_t int_start, Py_ssize_t int_end, Py_ssize_t frac_start,
                           Py_ssize_t frac_end) noexcept nogil:
    """Whether a number of at most 15 significant digits written as int.frac, no exponent, is
    already Python's repr of its double (the shortest text that reads back the same): no
    trailing zero in the fraction but in "N.0", and not below 0.0001, where repr switches to
    an exponent."""
    if frac_end - frac_start == 1:
        return 1                # "N.d": d != 0, or "N.0"
    if s[frac_end - 1] == 48:
        return 0
    if int_end - int_start > 1 or s[int_start] != 48:
        return 1                # at least 1
    if frac_end - frac_start < 4:
        return 1                # "0.dd", "0.ddd", its last digit not 0: at least 0.001
    # "0.dddd...": at least 0.0001 unless its first four digits are zeros
    return not (s[frac_start] == 48 and s[frac_start + 1] == 48 and s[frac_start + 2] == 48
                and s[frac_start + 3] == 48)


cdef int scan_number_slow(Parser* p, Slot* out, bint want) noexcept:
    cdef cstr s = p.s
    cdef Py_ssize_t start = p.pos, i = p.pos, n = p.n, int_end, frac_start
    cdef bint neg = 0, is_float = 0
    cdef uint64_t mant = 0
    cdef int sig = 0, exp10 = 0, e = 0, esign = 1
    cdef bint overflow = 0
    cdef char small[64]
    cdef char* tmp
    cdef Py_ssize_t length, j
    if want:
        out.len = 0     # no text to copy out
    if s[i] == 45:
        neg = 1
        i += 1
    # the usual number: a plain integer of at most 18 digits
    j = i
    while j < n and 48 <= s[j] <= 57:
        mant = mant * 10 + (s[j] - 48)
        j += 1
    if 0 < j - i <= 18 and not (s[i] == 48 and j - i > 1) and (
            j >= n or (s[j] != 46 and s[j] != 101 and s[j] != 69)):
        p.pos = j
        if want:
            out.kind = INT
            out.i = -<int64_t>mant if neg else <int64_t>mant
        return 0
    mant = 0
    if i >= n or not (48 <= s[i] <= 57):
        return fail(p, E_MALFORMED, "invalid number", start)
    if s[i] == 48:
        i += 1
    else:
        while i < n and 48 <= s[i] <= 57:
            if sig < 19:
                mant = mant * 10 + (s[i] - 48)
                sig += 1
            else:
                exp10 += 1
                overflow = 1
            i += 1
    int_end = i
    if i < n and s[i] == 46:
        is_float = 1
        i += 1
        frac_start = i
        if i >= n or not (48 <= s[i] <= 57):
            return fail(p, E_MALFORMED, "invalid number", start)
        while i < n and 48 <= s[i] <= 57:
            if sig == 0 and s[i] == 48:
                exp10 -= 1
            elif sig < 19:
                mant = mant * 10 + (s[i] - 48)
                sig += 1
                exp10 -= 1
            i += 1
        if want and sig <= 15 and not overflow and repr_like(s, start + neg, int_end, frac_start, i):
            out.start = <int32_t>start
            out.len = <int32_t>(i - start)
    if i < n and (s[i] == 101 or s[i] == 69):
        if want:
            out.len = 0
        is_float = 1
        i += 1
        if i < n and (s[i] == 43 or s[i] == 45):
            if s[i] == 45:
                esign = -1
            i += 1
        if i >= n or not (48 <= s[i] <= 57):
            return fail(p, E_MALFORMED, "invalid number", start)
        while i < n and 48 <= s[i] <= 57:
            if e < 100000:
                e = e * 10 + (s[i] - 48)
            i += 1
    p.pos = i
    if not want:
        return 0
    if not is_float and not overflow:
        # an integer of at most 19 digits
        if not neg and mant <= 0x7FFFFFFFFFFFFFFFULL:
            out.kind = INT
            out.i = <int64_t>mant
            return 0
        if neg and mant <= 0x8000000000000000ULL:
            out.kind = INT
            out.i = <int64_t>(<uint64_t>0 - mant)
            return 0
    exp10 += esign * e
    if sig <= 15 and -22 <= exp10 <= 22:
        out.d = <double>mant
        if exp10 >= 0:
            out.d *= POW10[exp10]
        else:
            out.d /= POW10[-exp10]
        if neg:
            out.d = -out.d
    else:
        length = i - start
        if length < 64:
            tmp = small
        else:
            tmp = <char*>malloc(length + 1)
        if tmp == NULL:
            return fail(p, E_MALFORMED, "out of memory", start)
        memcpy(tmp, s + start, length)
        tmp[length] = 0
        try:
            out.d = PyOS_string_to_double(tmp, NULL, NULL)
        except Exception:
            out.d = 0.0
        if tmp != small:
            free(tmp)
    out.kind = FLOAT if is_float else BIGNUM
    return 0


cdef inline int scan_literal(Parser* p, const char* word, int n) noexcept nogil:
    if p.pos + n > p.n or memcmp(p.s + p.pos, word, n) != 0:
        return fail(p, E_MALFORMED, "invalid literal", p.pos)
    p.pos += n
    return 0


cdef int push_hash(Parser* p, uint64_t h) except -1:
    cdef uint64_t* q
    if p.nhash == p.hash_cap:
        q = <uint64_t*>realloc(p.hashes, sizeof(uint64_t) * (p.hash_cap * 2 + 64))
        if q == NULL:
            raise MemoryError()
        p.hashes = q
        p.hash_cap = p.hash_cap * 2 + 64
    p.hashes[p.nhash] = h
    p.nhash += 1
    return 0


cdef int cmp_u64(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0], y = (<const uint64_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef bint has_repeat(uint64_t* h, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    if n <= 16:
        for i in range(n):
            for j in range(i):
                if h[i] == h[j]:
                    return 1
        return 0
    qsort(h, n, sizeof(uint64_t), cmp_u64)
    for i in range(1, n):
        if h[i] == h[i - 1]:
            return 1
    return 0


cdef inline uint64_t fnv1a(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 0x100000001B3ULL
    return h


cdef int skip_value(Parser* p, int depth, uint8_t* pflags) except -2:
    """Check any JSON value (a container here is at level `depth`). With `pflags` (custom
    params), also note what keeps it from being copied as it is."""
    cdef unsigned char c
    cdef Slot tmp
    cdef Py_ssize_t base, n
    cdef const unsigned char* kb
    if p.pos >= p.n:
        return fail(p, E_MALFORMED, "unexpected end of data", p.pos)
    c = p.s[p.pos]
    if c == 34:
        return scan_string(p, &tmp)
    if c == 45 or 48 <= c <= 57:
        if scan_number(p, &tmp, pflags != NULL) < 0:
            return -1
        if pflags != NULL and tmp.kind != INT:
            if tmp.kind == BIGNUM:
                pflags[0] |= P_DIRTY
            if not isfinite(tmp.d):
                pflags[0] |= P_NONFINITE | P_DIRTY
        return 0
    if c == 116:
        return scan_literal(p, "true", 4)
    if c == 102:
        return scan_literal(p, "false", 5)
    if c == 110:
        return scan_literal(p, "null", 4)
    if c == 91:
        if depth > MAX_DEPTH_:
            return fail(p, E_DEEP, "nested too deep", p.pos)
        p.pos += 1
        if skip_ws(p) and pflags != NULL:
            pflags[0] |= P_DIRTY
        if p.pos < p.n and p.s[p.pos] == 93:
            p.pos += 1
            return 0
        while True:
            if skip_value(p, depth + 1, pflags) < 0:
                return -1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n:
                return fail(p, E_MALFORMED, "unterminated array", p.pos)
            c = p.s[p.pos]
            p.pos += 1
            if c == 93:
                return 0
            if c != 44:
                return fail(p, E_MALFORMED, "expected ',' or ']'", p.pos - 1)
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
    if c == 123:
        if depth > MAX_DEPTH_:
            return fail(p, E_DEEP, "nested too deep", p.pos)
        p.pos += 1
        if skip_ws(p) and pflags != NULL:
            pflags[0] |= P_DIRTY
        if p.pos < p.n and p.s[p.pos] == 125:
            p.pos += 1
            return 0
        base = p.nhash
        while True:
            if p.pos >= p.n or p.s[p.pos] != 34:
                return fail(p, E_MALFORMED, "expected a key", p.pos)
            if scan_string(p, &tmp) < 0:
                return -1
            if pflags != NULL:
                kb = string_bytes(p, &tmp, &n)
                push_hash(p, fnv1a(kb, n))
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n or p.s[p.pos] != 58:
                return fail(p, E_MALFORMED, "expected ':'", p.pos)
            p.pos += 1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if skip_value(p, depth + 1, pflags) < 0:
                return -1
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
            if p.pos >= p.n:
                return fail(p, E_MALFORMED, "unterminated object", p.pos)
            c = p.s[p.pos]
            p.pos += 1
            if c == 125:
                break
            if c != 44:
                return fail(p, E_MALFORMED, "expected ',' or '}'", p.pos - 1)
            if skip_ws(p) and pflags != NULL:
                pflags[0] |= P_DIRTY
        if pflags != NULL:
            if p.nhash - base > 1 and has_repeat(p.hashes + base, p.nhash - base):
                pflags[0] |= P_DUP
            p.nhash = base
        return 0
    return fail(p, E_MALFORMED, "unexpected character", p.pos)


cdef Slot* new_event(Parser* p) except NULL:
    """Slots for the next event of `pl` (past MAX_EVENTS, a scratch block that is overwritten)."""
    cdef Py_ssize_t idx = p.ev_count if p.ev_count < MAX_EVENTS_ else MAX_EVENTS_
    cdef Py_ssize_t cap
    cdef void* q
    if idx >= p.ev_cap:
        cap = p.ev_cap * 2 if p.ev_cap else 64
        if cap > MAX_EVENTS_ + 1:
            cap = MAX_EVENTS_ + 1
        q = realloc(p.ev, sizeof(Slot) * N_EVENT_SLOTS * cap)
        if q == NULL:
            raise MemoryError()
        p.ev = <Slot*>q
        q = realloc(p.ev_isobj, cap)
        if q == NULL:
            raise MemoryError()
        p.ev_isobj = <uint8_t*>q
        p.ev_cap = cap
    memset(p.ev + idx * N_EVENT_SLOTS, 0, sizeof(Slot) * N_EVENT_SLOTS)
    p.ev_isobj[idx] = 0
    if p.ev_count < MAX_EVENTS_:
        p.ev_count += 1
    p.ev_total += 1
    return p.ev + idx * N_EVENT_SLOTS


cdef int events_pass(Parser* p, int depth) except -2:
    """At '[' of `pl`: read each event and, when the header is known to be final and sound,
    check it and write it out at once, while its slots are hot."""
    cdef Slot ev[MAX_SLOTS]
    cdef Out* o = p.out
    cdef unsigned char c
    cdef Py_ssize_t idx
    p.ev_total = 0
    o.emit = 0
    o.events.n = 0
    o.nrej = o.nids = 0
    o.over = 0
    if p.pl_seen == 1 and not p.header_after_pl and check_list(p, p.header, L_HEADER) < 0:
        start_output(p)
        o.emit = 1
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
            if o.emit and idx < MAX_EVENTS_:
                process_event(p, idx, ev)
        else:
            if skip_value(p, depth + 1, NULL) < 0:
                return -1
            if o.emit and idx < MAX_EVENTS_:
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
    """Empty the output and write the header's parts of every event."""
    cdef Out* o = p.out
    o.events.n = o.who.n = o.sent.n = o.device.n = 0
    o.nrej = o.nids = 0
    o.over = 0
    p.app_at = -1
    memset(p.urls, 0, sizeof(p.urls))
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
                    p.written = p.out.emit
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
        if sl.kind == INT and 0 <= sl.i <= 20 and PAYLOAD_CODES[payload][sl.i]:
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
            ok = 0 <= sl.i <= 999
        elif r.check == C_DENSITY:
            d = <double>sl.i if k == INT else sl.d
            ok = DENSITY_MIN_ <= d <= DENSITY_MAX_
        elif r.check == C_ACTION_CODE:
            if not (0 <= sl.i <= 20 and L_ACTION[sl.i] >= 0):
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
    if n < 1 or n > 32:
        return 0
    for i in range(n):
        if not ACTION_CHAR[b[i]]:
            return 0
        if b[i] == 46 and 0 < i < n - 1:
            dot = 1
    return dot


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


cdef int put_pb_value(Parser* p, Buf* b, Py_ssize_t pos, Py_ssize_t end) except -1:
    cdef uint64_t value
    cdef Py_ssize_t vs = 0, ve = 0
    cdef int last = pb_last_kind(p, pos, end, &value, &vs, &ve)
    if last == V_BOOL:
        return put(b, "true", 4) if value else put(b, "false", 5)
    if last == V_INT:
        return put_int(b, <int64_t>(value >> 1) ^ -(<int64_t>(value & 1)))
    if last == V_DOUBLE:
        return put_double(b, read_double(p.s + vs))
    if last == V_STRING:
        putc(b, 34)
        put_escaped(b, p.s + vs, ve - vs)
        return putc(b, 34)
    if last == V_ARRAY:
        return put_pb_array(p, b, vs, ve)
    if last == V_OBJECT:
        return put_pb_object(p, b, vs, ve)
    return put(b, "null", 4)


cdef int put_pb_array(Parser* p, Buf* b, Py_ssize_t pos, Py_ssize_t end) except -1:
    cdef uint64_t number, value
    cdef int wtype
    cdef Py_ssize_t vs, ve, here
    cdef bint first = 1
    putc(b, 91)
    p.pos = pos
    while p.pos < end:
        read_field(p, end, &number, &wtype, &value, &vs, &ve)
        if number == 1 and wtype == 2:
            if not first:
                putc(b, 44)
            first = 0
            here = p.pos
            put_pb_value(p, b, vs, ve)
            p.pos = here
    return putc(b, 93)


cdef int put_pb_object(Parser* p, Buf* b, Py_ssize_t pos, Py_ssize_t end) except -1:
    cdef uint64_t number, value, mnumber, mvalue
    cdef int wtype, mwtype
    cdef Py_ssize_t vs, ve, ms, me, here, ks, ke, xs, xe
    cdef bint first = 1
    putc(b, 123)
    p.pos = pos
    while p.pos < end:
        read_field(p, end, &number, &wtype, &value, &vs, &ve)
        if number != 1 or wtype != 2:
            continue
        here = p.pos
        p.pos = vs
        ks = ke = xs = xe = vs
        while p.pos < ve:
            read_field(p, ve, &mnumber, &mwtype, &mvalue, &ms, &me)
            if mwtype == 2 and mnumber == 1:
                ks, ke = ms, me
            elif mwtype == 2 and mnumber == 2:
                xs, xe = ms, me
        if not first:
            putc(b, 44)
        first = 0
        putc(b, 34)
        put_escaped(b, p.s + ks, ke - ks)
        put(b, '":', 2)
        put_pb_value(p, b, xs, xe)
        p.pos = here
    return putc(b, 125)


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
    cdef int ea = <int>ev[S_EA].i
    cdef Py_ssize_t id_start
    cdef int64_t t = ev[S_T].i, now = hd[H_NOW].i, skew
    cdef Slot* tr
    skew = now - t
    if skew < 0:
        skew = 0
    put(b, '{"event_id":', 12)
    id_start = b.n
    put_str(p, b, &ev[S_EUID])
    note_id(p.out, id_start, b.n)
    put(b, ',"action":', 10)
    if ea == CUSTOM_EA:
        put_str(p, b, &ev[S_AC])
    else:
        put_name(b, &ACTION_JSON[ea])
    put(b, ',"label":', 9)
    if LABEL_SLOT[ea] >= 0:
        put_str(p, b, &ev[LABEL_SLOT[ea]])
    else:
        put(b, "null", 4)
    put(b, who.p, who.n)
    put(b, ',"session_id":', 14)
    put_opt_int(p, b, &ev[S_SN])
    put(b, ',"time":', 8)
    put_int(b, received - skew)
    put(b, ',"device_time":', 15)
    put_int_slot(p, b, &ev[S_T])
    put(b, sent.p, sent.n)
    put(b, ',"uptime_ms":', 13)
    put_opt_int(p, b, &ev[S_UPT])
    put(b, ',"url":', 7)
    put_str(p, b, &ev[S_URL])
    put(b, ',"screen_name":', 15)
    put_screen_name(p, b, &ev[S_URL])
    put(b, ',"screen_count":', 16)
    put_opt_int(p, b, &ev[S_SCN])
    put(b, ',"connectivity":', 16)
    put_enum(b, &ev[S_C], CONNECTIVITY, -1, 6)
    put(b, ',"carrier":', 11)
    put_str(p, b, &ev[S_CI])
    put(b, ',"orientation":', 15)
    put_enum(b, &ev[S_O], ORIENTATION, 0, 2)
    put(b, device.p, device.n)
    put_app_version(p, b, ev)
    put(b, '},"params":', 11)
    if ea == 4:
        put(b, '{"title":', 9)
        put_str(p, b, &ev[S_ST])
        put(b, ',"load_time_ms":', 16)
        put_opt_int(p, b, &ev[S_SL])
        putc(b, 125)
    elif ea == 6 or ea == 8 or ea == 9 or ea == 10:
        put(b, '{"target_path":', 15)
        put_str(p, b, &ev[S_TVP])
        put(b, ',"target_id":', 13)
        put_str(p, b, &ev[S_TVID])
        if ea == 6:
            put(b, ',"responsive":', 14)
            put_bool(b, &ev[S_UR])
        elif ea != 8:
            put(b, ',"direction":', 13)
            put_enum(b, &ev[S_FD], DIRECTION, 1, 5)
            put(b, ',"distance":', 12)
            put_opt_int(p, b, &ev[S_TVD])
            put(b, ',"velocity":', 12)
            put_opt_int(p, b, &ev[S_TVV])
        putc(b, 125)
    elif ea == 16:
        put(b, '{"value":', 9)
        put_number(p, b, &ev[S_VL])
        put(b, ',"currency_code":', 17)
        put_int_slot(p, b, &ev[S_CU])
        put(b, ',"currency":', 12)
        if CURRENCY[ev[S_CU].i][0]:
            putc(b, 34)
            put(b, CURRENCY[ev[S_CU].i], 3)
            putc(b, 34)
        else:
            put(b, "null", 4)
        put(b, ',"transaction_id":', 18)
        put_str(p, b, &ev[S_ID])
        putc(b, 125)
    elif ea == 18 or ea == 19:
        put(b, '{"key":', 7)
        put_str(p, b, &ev[S_K])
        put(b, ',"value":', 9)
        if ea == 18:
            put_str(p, b, &ev[S_V])
        else:
            put_int_slot(p, b, &ev[S_V])
        putc(b, 125)
    elif ea == CUSTOM_EA:
        if params is not None:
            put(b, <const char*>params, len(params))
        elif ev[S_PR].kind != OBJ:
            put(b, "{}", 2)
        elif p.proto:
            put_pb_object(p, b, ev[S_PR].start, ev[S_PR].start + ev[S_PR].len)
        else:
            put_params_json(p, b, &ev[S_PR])
    else:
        put(b, "{}", 2)
    put(b, "}\n", 2)
    return 0


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
    put(b, ',"sdk_version":', 15)
    put_str(p, b, &ev[S_SV])
    put(b, ',"sdk_build":', 13)
    put_opt_int(p, b, &ev[S_SB])
    put(b, ',"version":', 11)
    put_str(p, b, &ev[S_AV])
    put(b, ',"flavor":', 10)
    put_str(p, b, &ev[S_AF])
    put(b, ',"build":', 9)
    put_opt_int(p, b, &ev[S_AB])
    if vo.kind == OBJ and vo.len:
        p.vo_start, p.vo_len = vo.start, vo.len
        p.app_at, p.app_len = at, b.n - at
    return 0


cdef int put_header_parts(Parser* p, Slot* hd, int64_t received, Buf* who, Buf* sent, Buf* device) except -1:
    """The parts of every event that come from the header, written once per batch."""
    put(who, ',"project_id":', 14)
    put_int(who, hd[H_PID].i)
    put(who, ',"user_id":', 11)
    put_str(p, who, &hd[H_UID])
    put(sent, ',"sent_time":', 13)
    put_int(sent, hd[H_NOW].i)
    put(sent, ',"received_time":', 17)
    put_int(sent, received)
    put(device, ',"device":{"type":', 18)
    put_enum(device, &hd[H_DT], DEVICE_TYPE, 4, 2)
    put(device, ',"manufacturer":', 16)
    put_str(p, device, &hd[H_DMA])
    put(device, ',"model":', 9)
    put_str(p, device, &hd[H_DMO])
    put(device, ',"os_version":', 14)
    put_str(p, device, &hd[H_OS])
    put(device, ',"locale":', 10)
    put_str(p, device, &hd[H_L])
    put(device, ',"timezone":', 12)
    put_str(p, device, &hd[H_TZ])
    put(device, ',"density":', 11)
    put_number(p, device, &hd[H_D])   # sub-slots are absent unless `r` was an object
    put(device, '},"app":{"name":', 16)
    put_str(p, device, &hd[H_AN])
    put(device, ',"sdk_type":', 12)
    put_str(p, device, &hd[H_ST])
    put(device, ',"sdk_flavor":', 14)
    put_str(p, device, &hd[H_SF])
    return 0


# ---------------------------------------------------------------------------- the entry


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
    o.events.cap = 3 * p.n + 4096     # normalised events take ~2.5x the input
    o.events.obj = bytes_new(NULL, o.events.cap)
    if o.events.obj == NULL:
        raise MemoryError()
    o.events.p = bytes_data(o.events.obj)
    try:
        if p.proto:
            header[H_PL].kind = ARR
            pb_message(&p, 0, p.n, PB_BATCH, header, 1)
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
            raise BatchError(CODES[code])
        if p.ev_total > MAX_EVENTS_:
            raise BatchError("too_many_events", f"{p.ev_total} events, at most {MAX_EVENTS_}")

        if p.proto:
            start_output(&p)
            for i in range(p.ev_count):
                if p.ev_isobj[i]:
                    process_event(&p, i, p.ev + i * N_EVENT_SLOTS)
                else:
                    add_rejection(&o, i, CODE_NOT_OBJECT)
        elif not p.written or p.header_after_pl or p.pl_seen > 1:
            # the header changed after `pl` was read: read its events again, now with the
            # final header (the document is known to be sound by now)
            p.pl_seen = 1
            p.header_after_pl = 0
            p.pos = p.pl_start
            events_pass(&p, 2)
        if o.over:
            raise TooLarge(o.limit)
        _PyBytes_Resize(&o.events.obj, o.events.n)
        jsonl = <bytes>o.events.obj
        spans = PyBytes_FromStringAndSize(<const char*>o.id_at, sizeof(Py_ssize_t) * 2 * o.nids)
        rejected = [(o.rej_index[i], CODES[o.rej_code[i]]) for i in range(o.nrej)]
    finally:
        Py_XDECREF(o.events.obj)
        free(o.who.p)
        free(o.sent.p)
        free(o.device.p)
        free(o.rej_index)
        free(o.rej_code)
        free(o.id_at)
        free(p.ev)
        free(p.ev_isobj)
        free(p.scratch)
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
            if read_field(&p, p.n, &number, &wtype, &value, &vs, &ve) < 0:
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


cdef list _keys(bytes jsonl, bint actions):
    """(event_id, action) or event_id of each line, or None where a line is not as `decode`
    writes it."""
    cdef const char* s = PyBytes_AS_STRING(jsonl)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(jsonl), pos = 0, a, e, a2, e2
    cdef bint escaped
    cdef const char* nl
    out = []
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
        obj = _pure._object(span, 0, len(span), 4)
    else:
        obj = _params_decoder.decode(span)
    try:
        params = _pure._params(obj)
    except _pure._Invalid:
        return None
    return _encode(params)


# ------------------------------------------------------------------ the log's record headers

cdef extern from *:
    """
    #include <zlib.h>
    /* zlib's CRC-32, folded with carry-less multiplication where the CPU has it (the method of
       Gopal et al., "Fast CRC computation for generic polynomials using PCLMULQDQ", Intel
       2009, with its constants for this polynomial), several times faster than zlib's tables.
       The result is zlib's crc32 exactly; the tests compare the two. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    __attribute__((target("sse4.1,pclmul")))
    static uint32_t collector_crc32_fold(const unsigned char *buf, size_t len, uint32_t crc) {
        /* len >= 64 and a multiple of 16; crc is taken and given without the final inversion */
        const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
        const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
        const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
        const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
        __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;
        x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
        buf += 64; len -= 64;
        while (len >= 64) {  /* fold four lanes of 128 bits at once */
            x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
            x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
            x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
            x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
            x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
            x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
            x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
            x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
            x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(buf + 0x00)));
            x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(buf + 0x10)));
            x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(buf + 0x20)));
            x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(buf + 0x30)));
            buf += 64; len -= 64;
        }
        /* the four lanes into one */
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
        while (len >= 16) {  /* the rest, 128 bits at a time */
            x2 = _mm_loadu_si128((const __m128i *)buf);
            x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
            x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
            x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
            buf += 16; len -= 16;
        }
        /* 128 bits to 64, then Barrett reduction to 32 */
        x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
        x3 = _mm_setr_epi32(~0, 0, ~0, 0);
        x1 = _mm_srli_si128(x1, 8);
        x1 = _mm_xor_si128(x1, x2);
        x2 = _mm_srli_si128(x1, 4);
        x1 = _mm_and_si128(x1, x3);
        x1 = _mm_clmulepi64_si128(x1, k5k0, 0x00);
        x1 = _mm_xor_si128(x1, x2);
        x2 = _mm_and_si128(x1, x3);
        x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
        x2 = _mm_and_si128(x2, x3);
        x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
        x1 = _mm_xor_si128(x1, x2);
        return (uint32_t)_mm_extract_epi32(x1, 1);
    }
    static int collector_has_clmul(void) {
        static int has = -1;
        if (has < 0) {
            __builtin_cpu_init();
            has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
        }
        return has;
    }
    #endif

    static uint32_t collector_crc32(uint32_t crc, const unsigned char *buf, size_t len) {
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (len >= 64 && collector_has_clmul()) {
            size_t chunk = len & ~(size_t)15;
            crc = ~collector_crc32_fold(buf, chunk, ~crc);
            buf += chunk;
            len -= chunk;
        }
    #endif
        while (len > 0) {  /* zlib takes at most 4 GiB at a time */
            unsigned int piece = len < 0x40000000u ? (unsigned int)len : 0x40000000u;
            crc = (uint32_t)crc32(crc, buf, piece);
            buf += piece;
            len -= piece;
        }
        return crc;
    }
    """
    uint32_t crc32_bytes "collector_crc32"(uint32_t crc, const unsigned char *buf, size_t n) nogil

DEF HEADER = 17  # the log's record header: length u32, crc32 u32, kind u8, time i64 (little-endian)


cdef inline void put_le(unsigned char* at, uint64_t value, int size) noexcept nogil:
    cdef int i
    for i in range(size):
        at[i] = <unsigned char>(value >> (8 * i))


cdef uint32_t checksum(const unsigned char* head, const unsigned char* payload, Py_ssize_t n) noexcept nogil:
    """crc32 of the header's kind and time, then of the payload."""
    return crc32_bytes(crc32_bytes(0, head + 8, 9), payload, <size_t>n)


def crc32(data, uint32_t value=0):
    """zlib.crc32 of a contiguous buffer, computed as the log's checksums are (the log checks
    the records it reads back with it)."""
    cdef const unsigned char[::1] view = data
    if view.shape[0] == 0:
        return value
    return crc32_bytes(value, &view[0], view.shape[0])


def record_headers(list records):
    """The header of each log record (kind, ms, payload), as `collector.log` writes them; the
    checksums are computed without the GIL, so the log's thread does them while the event loop
    goes on. The twin of `collector.log._headers`."""
    cdef Py_ssize_t n = len(records), i, size
    cdef unsigned char* heads
    cdef const unsigned char** payloads
    cdef Py_ssize_t* sizes
    keep = []  # the payloads stay alive while the GIL is released
    heads = <unsigned char*>malloc(n * HEADER + 1)
    payloads = <const unsigned char**>malloc(n * sizeof(const unsigned char*) + 1)
    sizes = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t) + 1)
    if heads == NULL or payloads == NULL or sizes == NULL:
        free(heads); free(payloads); free(sizes)
        raise MemoryError()
    try:
        for i in range(n):
            kind, ms, payload = records[i]
            if not isinstance(payload, bytes):
                raise TypeError("a record's payload must be bytes")
            if not 0 <= kind <= 255 or not -2**63 <= ms < 2**63:
                raise ValueError("a record's kind is a byte and its time an int64")
            size = PyBytes_GET_SIZE(payload)
            if size > 0xFFFFFFFF:
                raise ValueError("a record's payload is at most 4 GiB")
            keep.append(payload)
            payloads[i] = <const unsigned char*>PyBytes_AS_STRING(payload)
            sizes[i] = size
            put_le(heads + i * HEADER, <uint64_t>size, 4)
            heads[i * HEADER + 8] = <unsigned char>kind
            put_le(heads + i * HEADER + 9, <uint64_t><int64_t>ms, 8)
        with nogil:
            for i in range(n):
                put_le(heads + i * HEADER + 4, checksum(heads + i * HEADER, payloads[i], sizes[i]), 4)
        out = []
        for i in range(n):
            out.append(PyBytes_FromStringAndSize(<char*>heads + i * HEADER, HEADER))
        return out
    finally:
        free(heads); free(payloads); free(sizes)


# ------------------------------------------------------------------ dedup's set of ids

cdef extern from *:
    """
    /* SipHash-1-3 with 128-bit output (Aumasson and Bernstein, "SipHash: a fast short-input
       PRF", 2012: one compression round and three finalization rounds, as CPython's own str
       hash), over the 8 bytes of `first` (little-endian) followed by s[0:n]. */
    #define COLLECTOR_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
    #define COLLECTOR_SIPROUND do { \
        v0 += v1; v1 = COLLECTOR_ROTL(v1, 13); v1 ^= v0; v0 = COLLECTOR_ROTL(v0, 32); \
        v2 += v3; v3 = COLLECTOR_ROTL(v3, 16); v3 ^= v2; \
        v0 += v3; v3 = COLLECTOR_ROTL(v3, 21); v3 ^= v0; \
        v2 += v1; v1 = COLLECTOR_ROTL(v1, 17); v1 ^= v2; v2 = COLLECTOR_ROTL(v2, 32); \
    } while (0)
    static inline uint64_t collector_le64(const unsigned char *p) {
        uint64_t x;
        memcpy(&x, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        x = __builtin_bswap64(x);
    #endif
        return x;
    }
    static void collector_sip13_128(uint64_t k0, uint64_t k1, uint64_t first,
                                    const unsigned char *s, size_t n, uint64_t *out) {
        uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
        uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
        uint64_t m, b = (uint64_t)(n + 8) << 56;
        size_t i, left;
        v3 ^= first; COLLECTOR_SIPROUND; v0 ^= first;
        for (i = 0; i + 8 <= n; i += 8) {
            m = collector_le64(s + i);
            v3 ^= m; COLLECTOR_SIPROUND; v0 ^= m;
        }
        for (left = n - i; left > 0; left--)
            b |= (uint64_t)s[i + left - 1] << (8 * (left - 1));
        v3 ^= b; COLLECTOR_SIPROUND; v0 ^= b;
        v2 ^= 0xee;
        COLLECTOR_SIPROUND; COLLECTOR_SIPROUND; COLLECTOR_SIPROUND;
        out[0] = v0 ^ v1 ^ v2 ^ v3;
        v1 ^= 0xdd;
        COLLECTOR_SIPROUND; COLLECTOR_SIPROUND; COLLECTOR_SIPROUND;
        out[1] = v0 ^ v1 ^ v2 ^ v3;
    }
    """
    void sip13_128 "collector_sip13_128"(uint64_t k0, uint64_t k1, uint64_t first,
                                         const unsigned char* s, size_t n, uint64_t* out) nogil
    void prefetch "__builtin_prefetch"(const void* p) nogil

cdef extern from "Python.h":
    const char* utf8_and_size "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* n) except NULL


cdef class Ids:
    """The ids an IdSet holds for one batch, as `hold_new` and `hold` give them and `drop`
    takes them back: their fingerprints, which `len` counts and slices cut."""
    cdef bytes fps     # 16 bytes an id (None in an Ids made from Python: it holds none)

    def __len__(self):
        return 0 if self.fps is None else PyBytes_GET_SIZE(self.fps) >> 4

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("Ids are taken by slices")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("Ids are taken by slices of step 1")
        return new_ids(self.fps[start * 16 : max(start, stop) * 16] if self.fps is not None else b"")


cdef Ids new_ids(bytes fps):
    cdef Ids ids = Ids.__new__(Ids)
    ids.fps = fps
    return ids


cdef class IdSet:
    """(project, event id) pairs for dedup; the twin of `_pure.IdSet`.

    A pair is kept as a 128-bit fingerprint: SipHash-1-3 of the project and the id, under a key
    drawn when the set is made, so ids cannot be chosen to collide and two pairs share one with
    a chance of about n / 2^128 (n the pairs held). The fingerprints sit in an open-addressing
    table of linear probing, at most half full: 32 to 64 bytes per id, against about 200 for a
    Python set of strings. A batch's fingerprints are made from where the decoder wrote its ids
    (no strings), and their slots are fetched ahead before any is probed."""
    cdef uint64_t* slots    # two words per slot; (0, 0) is an empty slot, never a fingerprint
    cdef size_t mask
    cdef Py_ssize_t count
    cdef uint64_t k0, k1

    cdef int ready(self) except -1:
        """The key and the table, made on first use (a table-less set holds nothing)."""
        if self.slots != NULL:
            return 0
        key = os.urandom(16)
        memcpy(&self.k0, PyBytes_AS_STRING(key), 8)
        memcpy(&self.k1, PyBytes_AS_STRING(key) + 8, 8)
        self.slots = <uint64_t*>calloc(2 * 1024, sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = 1023
        return 0

    def __dealloc__(self):
        free(self.slots)

    def __len__(self):
        """The ids held."""
        return self.count

    cdef size_t find(self, const uint64_t* fp) noexcept nogil:
        """The slot of the fingerprint, or the empty slot where it would go."""
        cdef size_t i = fp[0] & self.mask
        cdef const uint64_t* s
        while True:
            s = self.slots + 2 * i
            if (s[0] == fp[0] and s[1] == fp[1]) or (s[0] == 0 and s[1] == 0):
                return i
            i = (i + 1) & self.mask

    cdef int reserve(self, Py_ssize_t more) except -1:
        """Room for `more` fingerprints, the table kept at most half full."""
        cdef size_t old_size = self.mask + 1, size = old_size, i
        cdef uint64_t* old = self.slots
        cdef uint64_t* s
        cdef uint64_t* d
        while <size_t>(self.count + more) * 2 > size:
            size *= 2
        if size == old_size:
            return 0
        d = <uint64_t*>calloc(2 * size, sizeof(uint64_t))
        if d == NULL:
            raise MemoryError()
        self.slots, self.mask = d, size - 1
        for i in range(old_size):
            s = old + 2 * i
            if s[0] or s[1]:
                d = self.slots + 2 * self.find(s)
                d[0], d[1] = s[0], s[1]
        free(old)
        return 0

    cdef bint add(self, const uint64_t* fp) noexcept nogil:
        """Add a fingerprint (room reserved); False if it was there already."""
        cdef uint64_t* s = self.slots + 2 * self.find(fp)
        if s[0] or s[1]:
            return False
        s[0], s[1] = fp[0], fp[1]
        self.count += 1
        return True

    cdef void remove(self, const uint64_t* fp) noexcept nogil:
        """Remove a fingerprint if it is there; the ones after it in its run move back into
        the gap where their own slot allows (so no tombstones are left)."""
        cdef size_t mask = self.mask, i = self.find(fp), j = i, home
        cdef uint64_t* gap = self.slots + 2 * i
        cdef uint64_t* t
        if not (gap[0] or gap[1]):
            return
        while True:
            j = (j + 1) & mask
            t = self.slots + 2 * j
            if not (t[0] or t[1]):
                break
            home = t[0] & mask
            if ((j - home) & mask) < ((j - i) & mask):     # its slot is after the gap: it stays
                continue
            gap[0], gap[1] = t[0], t[1]
            gap, i = t, j
        gap[0] = gap[1] = 0
        self.count -= 1

    cdef inline void fingerprint(self, uint64_t project, const char* s, Py_ssize_t n,
                                 uint64_t* out) noexcept nogil:
        """Of the id whose UTF-8 is s[:n]; never (0, 0), the empty slot."""
        sip13_128(self.k0, self.k1, project, <const unsigned char*>s, <size_t>n, out)
        if out[0] == 0 and out[1] == 0:
            out[0] = 1

    cdef int fp_str(self, uint64_t project, object event_id, uint64_t* out) except -1:
        cdef Py_ssize_t n
        cdef const char* u
        if type(event_id) is not str:
            raise TypeError(f"an event id is a str, not {type(event_id).__name__}")
        try:
            u = utf8_and_size(event_id, &n)
            self.fingerprint(project, u, n, out)
        except UnicodeEncodeError:  # lone surrogates, which a JSON escape may make
            raw = (<str>event_id).encode("utf-8", "surrogatepass")
            self.fingerprint(project, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), out)
        return 0

    cdef bytes fingerprints(self, object project, object ids):
        """The fingerprint of each id: of a list of str, or of a Decoded's ids where the decoder
        wrote them in its JSON Lines (the text inside the quotes is the id's UTF-8, unless it
        has an escape)."""
        cdef uint64_t pid = <uint64_t><int64_t>project
        cdef bytes jsonl, out
        cdef const Py_ssize_t* at
        cdef const char* s
        cdef uint64_t* fp
        cdef Py_ssize_t i, a, e, n, size
        self.ready()
        if isinstance(ids, Decoded) and type(ids._ids) is bytes and type(ids._jsonl) is bytes:
            spans, jsonl = ids._ids, ids._jsonl
            s = PyBytes_AS_STRING(jsonl)
            size = PyBytes_GET_SIZE(jsonl)
            at = <const Py_ssize_t*>PyBytes_AS_STRING(spans)
            n = PyBytes_GET_SIZE(spans) // (2 * sizeof(Py_ssize_t))
            out = PyBytes_FromStringAndSize(NULL, 16 * n)
            fp = <uint64_t*>PyBytes_AS_STRING(out)
            for i in range(n):
                a = at[2 * i] + 1       # inside the quotes
                e = at[2 * i + 1] - 1
                if not 1 <= a <= e < size:
                    raise ValueError("a Decoded whose ids are not where it says")
                if memchr(s + a, 92, e - a) == NULL:
                    self.fingerprint(pid, s + a, e - a, fp + 2 * i)
                else:
                    self.fp_str(pid, json_text(s, a, e, True), fp + 2 * i)
            return out
        if isinstance(ids, Decoded):
            ids = decoded_ids(ids)
        n = len(ids)
        out = PyBytes_FromStringAndSize(NULL, 16 * n)
        fp = <uint64_t*>PyBytes_AS_STRING(out)
        for i in range(n):
            self.fp_str(pid, ids[i], fp + 2 * i)
        return out

    def hold_new(self, project, ids):
        """Hold every id (a list of event ids, or a Decoded's), if none is held already and
        none comes twice: the Ids held; otherwise hold none and return None."""
        cdef bytes fps = self.fingerprints(project, ids)
        cdef const uint64_t* fp = <const uint64_t*>PyBytes_AS_STRING(fps)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(fps) >> 4, i, k
        self.reserve(n)
        for i in range(n):      # the slots are far apart in a large table: fetch them all first
            prefetch(self.slots + 2 * (fp[2 * i] & self.mask))
        for i in range(n):
            if not self.add(fp + 2 * i):
                for k in range(i):
                    self.remove(fp + 2 * k)
                return None
        return new_ids(fps)

    def hold(self, project, ids):
        """Hold ids known to be neither held nor twice among them: the Ids held."""
        cdef bytes fps = self.fingerprints(project, ids)
        cdef const uint64_t* fp = <const uint64_t*>PyBytes_AS_STRING(fps)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(fps) >> 4, i
        self.reserve(n)
        for i in range(n):
            self.add(fp + 2 * i)
        return new_ids(fps)

    def contains(self, project, event_id):
        """Whether the id is held."""
        cdef uint64_t fp[2]
        cdef const uint64_t* s
        if self.slots == NULL:
            return False
        self.fp_str(<uint64_t><int64_t>project, event_id, fp)
        s = self.slots + 2 * self.find(fp)
        return s[0] != 0 or s[1] != 0

    def drop(self, project, Ids ids not None):
        """Let go of ids that `hold_new` or `hold` gave (or a slice of them)."""
        cdef const uint64_t* fp
        cdef Py_ssize_t n, i
        if self.slots == NULL or ids.fps is None:
            return
        fp = <const uint64_t*>PyBytes_AS_STRING(ids.fps)
        n = PyBytes_GET_SIZE(ids.fps) >> 4
        for i in range(n):
            self.remove(fp + 2 * i)
