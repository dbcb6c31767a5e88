# The native decoder, its tables, built from collector.spec and collector.wire at import: included by _native.pyx (see its docstring).

# ------------------------------------------------------------------------- the tables

cdef KeyEntry KEYS[N_KINDS][HASH_SIZE]
cdef uint64_t KEY_MUL[N_KINDS]
cdef TagEntry TAGS[N_KINDS][N_TAGS]
cdef Rec RECS[MAX_RECS]
cdef List LISTS[MAX_LISTS]
cdef int N_HEADER_SLOTS, N_EVENT_SLOTS
cdef int K_HEADER, K_EVENT, PB_BATCH, PB_EVENT
cdef int L_HEADER, L_COMMON
cdef int L_ACTION[N_ACTIONS]       # -1: unknown action
cdef int PAYLOAD_KIND[MAX_FIELDNO + 1]     # payload field number -> message kind, -1 if none
cdef uint8_t PAYLOAD_CODES[MAX_FIELDNO + 1][N_ACTIONS]
cdef int PAYLOAD_AS_SLOT[MAX_FIELDNO + 1]  # slot when the payload is one key's object (`tr`)
cdef int PAYLOAD_SUB_START[MAX_FIELDNO + 1]
cdef int PAYLOAD_SUB_COUNT[MAX_FIELDNO + 1]
cdef int LABEL_SLOT[N_ACTIONS]
cdef int CODE_NOT_OBJECT, CODE_UNKNOWN_ACTION, CODE_BAD_ACTION_NAME, CODE_TOO_MANY
cdef int CUSTOM_EA, CODE_BAD_PARAMS
# spec field types and checks, wire kinds and Value fields, as C values
cdef int T_INT, T_NUMBER, T_STRING, T_BOOL, T_OBJECT, T_PARAMS
cdef int C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID, C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE
cdef int VK_INT, VK_BOOL
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

cdef Name ACTION_JSON[N_ACTIONS]
cdef char CURRENCY[N_CURRENCIES][4]
# enums written by name: names[i] is the value lo + i; others are "unknown"
cdef Name ENUM_NAMES[MAX_ENUMS][MAX_ENUM_SIZE]
cdef int64_t ENUM_LO[MAX_ENUMS]
cdef int64_t ENUM_COUNT[MAX_ENUMS]
cdef int E_CONNECTIVITY, E_ORIENTATION, E_DEVICE_TYPE

# each action's params, as spec.ACTION_PARAMS lays them out (PARAM_N -1: `pr` as sent)
cdef struct ParamOut:
    Name key                # '{"title":' for the first, then ',"load_time_ms":'
    int16_t slot
    uint8_t how             # W_*
    uint8_t enum_id         # for W_ENUM
cdef ParamOut PARAM_OUT[N_ACTIONS][MAX_PARAMS]
cdef int PARAM_N[N_ACTIONS]
# device and app, as spec.DEVICE and spec.APP lay them out: the part from the header (written
# once per batch), then the part from the event's `vo`
cdef ParamOut HEADER_OUT[2 * MAX_PARAMS]
cdef int N_HEADER_OUT
cdef ParamOut VO_OUT[MAX_PARAMS]
cdef int N_VO_OUT
# The keys inside the header's parts, written into them once per batch (parts.pxi: HEADER_KEYS).
cdef Name KEY_PROJECT_ID, KEY_USER_ID, KEY_SENT_TIME, KEY_RECEIVED_TIME

cdef int MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_, MAX_ACTION_CODE_, MAX_ACTION_NAME_, CURRENCY_MAX_
cdef double DENSITY_MIN_, DENSITY_MAX_

_CODES = []          # code id -> SPEC code string

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
    if code not in _CODES:
        _CODES.append(code)
    return _CODES.index(code)


def _init():
    global N_HEADER_SLOTS, N_EVENT_SLOTS, K_HEADER, K_EVENT, PB_BATCH, PB_EVENT
    global L_HEADER, L_COMMON, CODE_NOT_OBJECT, CODE_UNKNOWN_ACTION, CODE_BAD_ACTION_NAME
    global CODE_TOO_MANY, CUSTOM_EA, MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_
    global DENSITY_MIN_, DENSITY_MAX_, CODE_BAD_PARAMS
    global MAX_ACTION_CODE_, MAX_ACTION_NAME_, CURRENCY_MAX_, E_CONNECTIVITY, E_ORIENTATION, E_DEVICE_TYPE
    global N_HEADER_OUT, N_VO_OUT
    global T_INT, T_NUMBER, T_STRING, T_BOOL, T_OBJECT, T_PARAMS
    global C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID, C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE
    global VK_INT, VK_BOOL
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
    cdef ParamOut* o

    MAX_EVENTS_, MAX_DEPTH_, MAX_ID_BYTES_ = spec.MAX_EVENTS, spec.MAX_DEPTH, spec.MAX_ID_BYTES
    DENSITY_MIN_, DENSITY_MAX_ = spec.DENSITY_MIN, spec.DENSITY_MAX
    MAX_ACTION_CODE_, MAX_ACTION_NAME_, CURRENCY_MAX_ = spec.MAX_ACTION_CODE, spec.MAX_ACTION_NAME, spec.CURRENCY_MAX
    if not (0 <= min(spec.ACTIONS) and spec.MAX_ACTION_CODE < N_ACTIONS and spec.CURRENCY_MAX < N_CURRENCIES):
        raise RuntimeError("the spec's action or currency codes pass the native tables' room")
    CUSTOM_EA = spec.CUSTOM
    T_INT, T_NUMBER, T_STRING, T_BOOL = spec.INT, spec.NUMBER, spec.STRING, spec.BOOL
    T_OBJECT, T_PARAMS = spec.OBJECT, spec.PARAMS
    C_ANY, C_POSITIVE, C_NON_NEGATIVE, C_ID = spec.ANY, spec.POSITIVE, spec.NON_NEGATIVE, spec.ID
    C_CURRENCY, C_DENSITY, C_ACTION_NAME, C_ACTION_CODE = spec.CURRENCY, spec.DENSITY, spec.ACTION_NAME, spec.ACTION_CODE
    VK_INT, VK_BOOL = wire.K_INT, wire.K_BOOL
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
    for i in range(N_ACTIONS):
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
        memset(TAGS[kind], 0, sizeof(TAGS[kind]))       # A_SKIP
        for number, (key, vkind, wtype, sub, repeated) in wire.MESSAGES[msg].items():
            tag = number << 3 | wtype
            if msg == "Event" and number in wire.PAYLOADS:
                if number > MAX_FIELDNO:
                    raise RuntimeError(f"payload field {number} passes the native tables' room")
                TAGS[kind][tag].act = A_PAYLOAD      # read after the event, through PAYLOAD_*
                TAGS[kind][tag].number = number
                continue
            if prefix + key not in slots:
                continue
            if number > MAX_FIELDNO:
                raise RuntimeError(f"{msg}.{key}: field {number} passes the native tables' room")
            TAGS[kind][tag].slot = slots[prefix + key]
            TAGS[kind][tag].vkind = vkind
            if sub == "Event":
                TAGS[kind][tag].act = A_EVENTS
            elif sub == "Object":
                TAGS[kind][tag].act = A_PARAMS
            elif sub is not None:
                TAGS[kind][tag].act = A_SUB
                TAGS[kind][tag].sub = fill_fields(sub, slots, prefix + key + ".")
                subkeys = [k for k in slots if k.startswith(prefix + key + ".")]
                TAGS[kind][tag].sub_start = slots[subkeys[0]]
                TAGS[kind][tag].sub_count = len(subkeys)
            elif vkind == wire.K_DOUBLE:
                TAGS[kind][tag].act = A_DOUBLE
            elif vkind == wire.K_STRING:
                TAGS[kind][tag].act = A_STRING
            else:
                TAGS[kind][tag].act = A_VARINT
        return kind

    fill_fields("Batch", header_slots, "")
    fill_fields("Event", event_slots, "")
    for j in range(MAX_FIELDNO + 1):
        PAYLOAD_KIND[j] = -1
        PAYLOAD_AS_SLOT[j] = -1
        memset(PAYLOAD_CODES[j], 0, N_ACTIONS)
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
    for i in range(N_CURRENCIES):
        CURRENCY[i][0] = 0
    for code, alpha in spec.CURRENCIES.items():
        b = alpha.encode()
        memcpy(CURRENCY[code], <char*>b, 3)
        CURRENCY[code][3] = 0

    enums = []

    def add_enum(table):
        """An enum's names, by its range of ints (which must have no gap)."""
        for i, known in enumerate(enums):
            if known is table:
                return i
        lo, count = min(table), max(table) - min(table) + 1
        if count != len(table) or count > MAX_ENUM_SIZE or len(enums) == MAX_ENUMS:
            raise RuntimeError("an enum of the spec does not fit the native tables")
        i = len(enums)
        enums.append(table)
        ENUM_LO[i], ENUM_COUNT[i] = lo, count
        for j in range(count):
            set_name(&ENUM_NAMES[i][j], b'"' + table[lo + j].encode() + b'"')
        return i

    E_CONNECTIVITY = add_enum(spec.CONNECTIVITY)
    E_ORIENTATION = add_enum(spec.ORIENTATIONS)
    E_DEVICE_TYPE = add_enum(spec.DEVICE_TYPES)

    # Params, by action: the output key, the slot of the spec field it comes from, and how
    # that field's type is written.
    writes = {spec.STRING: W_STR, spec.INT: W_INT, spec.BOOL: W_BOOL, spec.NUMBER: W_NUMBER}
    for i in range(N_ACTIONS):
        PARAM_N[i] = 0
    PARAM_N[spec.CUSTOM] = -1
    for ea, outs in spec.ACTION_PARAMS.items():
        if len(outs) > MAX_PARAMS:
            raise RuntimeError(f"action {ea} has more params than the native tables hold")
        types = {}
        for f in spec.ACTIONS[ea][1]:
            types[f.key] = f.type
            for sub in f.fields:
                types[f.key + "." + sub.key] = sub.type
        PARAM_N[ea] = len(outs)
        for j, out in enumerate(outs):
            set_name(&PARAM_OUT[ea][j].key, ("{" if j == 0 else ",").encode() + b'"' + out.name.encode() + b'":')
            PARAM_OUT[ea][j].slot = event_slots[out.source]
            if out.how == spec.ENUM:
                PARAM_OUT[ea][j].how = W_ENUM
                PARAM_OUT[ea][j].enum_id = add_enum(out.table)
            elif out.how == spec.CURRENCY_NAME:
                PARAM_OUT[ea][j].how = W_CURRENCY
            else:
                PARAM_OUT[ea][j].how = writes[types[out.source]]

    # Device and app: the header's values, then the event's (`vo`), each key after its object's
    # opening for the first of them.
    def field_types(fields):
        types = {}
        for f in fields:
            types[f.key] = f.type
            for sub in f.fields:
                types[f.key + "." + sub.key] = sub.type
        return types

    header_types, event_types = field_types(spec.HEADER), field_types(spec.COMMON)
    n_header = n_vo = 0
    if spec.EVENT_KEYS != WRITTEN_ORDER:
        raise RuntimeError("the native module was built for another order of spec.EVENT_KEYS: build it again")
    set_name(&KEY_PROJECT_ID, HEADER_KEYS["project_id"].encode())
    set_name(&KEY_USER_ID, HEADER_KEYS["user_id"].encode())
    set_name(&KEY_SENT_TIME, HEADER_KEYS["sent_time"].encode())
    set_name(&KEY_RECEIVED_TIME, HEADER_KEYS["received_time"].encode())
    for obj, outs, opening in (("device", spec.DEVICE, DEVICE_OPENING), ("app", spec.APP, '},"app":{')):
        for j, out in enumerate(outs):
            if out.source in header_types:
                if n_vo:
                    raise RuntimeError("the header's values of device and app must come first")
                o = &HEADER_OUT[n_header]
                o.slot = header_slots[out.source]
                t = header_types[out.source]
                n_header += 1
            else:
                if j == 0:
                    raise RuntimeError(f"{obj} must open with a value from the header")
                o = &VO_OUT[n_vo]
                o.slot = event_slots[out.source]
                t = event_types[out.source]
                n_vo += 1
            set_name(&o.key, ((opening if j == 0 else ",") + f'"{out.name}":').encode())
            o.how = W_ENUM if out.how == spec.ENUM else writes[t]
            o.enum_id = add_enum(out.table) if out.how == spec.ENUM else 0
    N_HEADER_OUT, N_VO_OUT = n_header, n_vo
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
