# The native decoder, constants (limits, slot kinds, flags, roles, errors): included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------------- limits

DEF MAX_SLOTS = 48        # slots of one object layout (header or event)
DEF MAX_RECS = 160        # field records of all check lists
DEF MAX_LISTS = 32
DEF MAX_FIELDNO = 31      # protobuf field numbers we map: their keys fit in one byte (two on the wire)
DEF N_TAGS = (MAX_FIELDNO + 1) << 3      # a message's keys (number << 3 | wire type) we map
DEF N_KINDS = 24        # object kinds (JSON lookups / protobuf messages)
DEF HASH_BITS = 7
DEF HASH_SIZE = 128       # 2 ** HASH_BITS
DEF N_ACTIONS = 21        # room for action codes 0..20 (spec.MAX_ACTION_CODE, checked at import)
DEF N_CURRENCIES = 1000   # room for currency codes 0..999 (spec.CURRENCY_MAX, checked at import)
DEF MAX_ENUMS = 8         # enums written by name (connectivity, orientation...)
DEF MAX_ENUM_SIZE = 8     # names of one enum
DEF MAX_PARAMS = 8        # keys of one action's params

# How an action's params are written (from the spec field each comes from).
DEF W_STR = 0
DEF W_INT = 1
DEF W_BOOL = 2
DEF W_NUMBER = 3
DEF W_ENUM = 4
DEF W_CURRENCY = 5

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

# What a protobuf field's key asks of the reader (`TagEntry.act`).
DEF A_SKIP = 0      # not ours, or not of our wire type: read over
DEF A_VARINT = 1
DEF A_DOUBLE = 2
DEF A_STRING = 3
DEF A_SUB = 4
DEF A_PARAMS = 5
DEF A_EVENTS = 6
DEF A_PAYLOAD = 7   # an event's payload, read once its action is known

# Errors.
DEF E_MALFORMED = 1
DEF E_DEEP = 2
