# The native decoder, its structs (slots, key and field tables, the parser, the output): included by _native.pyx (see its docstring).

cdef struct Slot:           # 32 bytes: an event's slots are cleared for every event
    uint8_t kind
    uint8_t esc
    uint8_t flags
    int32_t start           # batches are far below 2 GiB (decode refuses larger input)
    int32_t len
    int64_t i
    double d

cdef extern from "buf.h":
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

cdef struct TagEntry:       # a protobuf field's key (number << 3 | wire type) -> what to do, per message kind
    uint8_t act             # A_*
    uint8_t slot
    uint8_t vkind           # wire.K_*
    uint8_t sub             # kind of a sub-message's fields
    uint8_t number          # a payload's field number
    uint8_t sub_start       # first slot of the sub-message (reset when it is read again)
    uint8_t sub_count

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
    Py_ssize_t ev_total       # seen
    int32_t* ev_at            # protobuf: each event's bytes, [start, end) (read after the batch's own fields)
    Py_ssize_t ev_cap
    # scratch for unescaped strings
    unsigned char* scratch
    Py_ssize_t scratch_cap
    Buf params              # protobuf: the last `pr` read, as JSON (written as it is checked)
    # key hashes of the objects being read in params (a stack)
    uint64_t* hashes
    Py_ssize_t nhash
    Py_ssize_t hash_cap
    # JSON events are written as they are read, with the header's parts as they are when `pl`
    # starts (none if the header is not sound yet); a header key after `pl` means the parts
    # are joined anew with the events' own text when the document ends (`rejoin_header`)
    Slot* header
    Out* out
    Py_ssize_t pl_start     # where the last `pl` array starts
    int pl_seen             # how many `pl` keys were read
    bint header_after_pl    # a header key came after the last `pl`
    bint holes              # the last `pl`'s events were written without the header's parts
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


cdef struct Placed:         # where a written event's parts from the header went
    Py_ssize_t start        # the event's line: [start, end)
    Py_ssize_t who          # its `who` part (as long as Out.who was when it was written)
    Py_ssize_t time         # its time's digits: [time, time_end)
    Py_ssize_t time_end
    Py_ssize_t sent
    Py_ssize_t device
    Py_ssize_t end
    int64_t t               # its device time, which its time is computed from


cdef struct Out:
    Buf events
    Buf who                 # the parts of every event that come from the header
    Buf sent
    Buf device
    int64_t received
    int32_t* rej_index      # rejected events: index in `pl` and code id
    int16_t* rej_code
    Py_ssize_t nrej
    Py_ssize_t rej_cap
    Py_ssize_t limit        # the most bytes of events that may be written (0: no limit)
    bint over               # this pass passed it: nothing more is written
    Py_ssize_t* id_at       # each written event's event_id: start and end of its JSON string
    Py_ssize_t nids
    Py_ssize_t ids_cap
    Placed* placed          # each written event's parts from the header (JSON only)
    Py_ssize_t nplaced
    Py_ssize_t placed_cap


cdef struct EventWrite:     # what the writers of an event's parts write from (writer.pxi)
    Parser* p
    Buf* b
    Slot* ev
    Buf* who                # the header's parts (Out.who...)
    Buf* sent
    Buf* device
    Placed* pl              # where its parts from the header go
    int64_t time            # its time: received_time - max(0, sent_time - device_time)
    int ea
    PyObject* params        # custom params settled in Python (bytes), or NULL
