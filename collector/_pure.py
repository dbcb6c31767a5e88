"""The pure-Python decoder: the readable statement of SPEC v1, and the twin of `collector._native`.

Both formats are first read into the same document shape (a dict per object, keyed by the
compact JSON keys, None for null); one normaliser then checks and converts it, driven by the
tables in `collector.spec`.
"""

import functools
import math
import re
import struct
from urllib.parse import unquote_plus

import msgspec

from . import spec, wire
from .errors import BatchError
from .event import App, Decoded, Device, NormalizedEvent
from .spec import BOOL, EVENTS, INT, NUMBER, OBJECT, PARAMS, STRING

# float_hook keeps a number too large for a double as inf (refused where it is read) instead of
# failing the whole document.
_json = msgspec.json.Decoder(float_hook=float)
_BRACKET_OR_QUOTE = re.compile(rb'[\[\]{}"]')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_CONTAINERS = frozenset((dict, list))
_BYTE_AT = re.compile(r"\(byte (\d+)\)")


def decode(data, format="json", received_time=0) -> Decoded:
    if format == "json":
        doc = parse_json(bytes(data))
    elif format == "protobuf":
        doc = parse_protobuf(bytes(data))
    else:
        raise ValueError(f"unknown format {format!r}: use 'json' or 'protobuf'")
    return normalize(doc, received_time)


# ---------------------------------------------------------------------------------- JSON


def parse_json(data: bytes):
    """The document as Python values; BatchError(malformed_json | too_deep) if it is not one."""
    try:
        doc = _json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _first_syntax_error(data, exc) from None
    if _depth_exceeded(doc):
        raise BatchError("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels")
    return doc


def _depth_exceeded(doc) -> bool:
    if type(doc) is not dict and type(doc) is not list:
        return False
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > spec.MAX_DEPTH:
            return True
        for value in obj.values() if type(obj) is dict else obj:
            if type(value) in _CONTAINERS:
                stack.append((value, depth + 1))
    return False


def _first_syntax_error(data: bytes, exc: Exception) -> BatchError:
    """The error that a single left-to-right reading meets first: too_deep or malformed_json."""
    deep_at = _too_deep_offset(data)
    if deep_at is not None and data[:deep_at].rstrip(b" \t\r\n")[-1:] not in (b"[", b",", b":"):
        deep_at = None  # a bracket cannot stand there: the text is malformed before that depth
    if deep_at is not None:
        try:
            _json.decode(data[:deep_at] + b"    ")  # spaces: a cut literal must show as wrong
        except msgspec.DecodeError as prefix_exc:
            if "truncated" in str(prefix_exc):
                return BatchError(
                    "too_deep", f"nested deeper than {spec.MAX_DEPTH} levels at byte {deep_at}"
                )
        except (UnicodeDecodeError, RecursionError):
            pass
    if isinstance(exc, UnicodeDecodeError):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as whole:
            return BatchError("malformed_json", f"invalid UTF-8 at byte {whole.start}")
    if isinstance(exc, RecursionError):
        return BatchError("malformed_json", "nested too deeply to read")
    text = str(exc).replace("JSON is malformed: ", "")
    if "truncated" in text:
        return BatchError("malformed_json", f"unexpected end of data at byte {len(data)}")
    return BatchError("malformed_json", _BYTE_AT.sub(r"at byte \1", text))


def _too_deep_offset(data: bytes) -> int | None:
    """Offset of the bracket that opens level MAX_DEPTH + 1, strings skipped over."""
    depth = pos = 0
    while True:
        m = _BRACKET_OR_QUOTE.search(data, pos)
        if m is None:
            return None
        pos = m.end()
        ch = data[m.start()]
        if ch == 0x22:
            s = _STRING.match(data, m.start())
            if s is None:
                return None
            pos = s.end()
        elif ch == 0x5B or ch == 0x7B:
            depth += 1
            if depth > spec.MAX_DEPTH:
                return m.start()
        else:
            depth -= 1


# ------------------------------------------------------------------------------ protobuf


def _malformed(what: str, at: int):
    raise BatchError("malformed_json", f"protobuf: {what} at byte {at}")


def _fields(data: bytes, pos: int, end: int):
    """Yield (field number, wire type, value, start) of one message; a LEN value is (start, end).

    Lengths are checked against what is left, never trusted.
    """
    while pos < end:
        start = pos
        key, pos = _varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            _malformed(f"invalid field number {number}", start)
        if wire_type == wire.VARINT:
            value, pos = _varint(data, pos, end)
        elif wire_type == wire.I64 or wire_type == wire.I32:
            size = 8 if wire_type == wire.I64 else 4
            if end - pos < size:
                _malformed("truncated fixed-size field", pos)
            value, pos = pos, pos + size
        elif wire_type == wire.LEN:
            size, pos = _varint(data, pos, end)
            if size > end - pos:
                _malformed("length past the end", pos)
            value, pos = (pos, pos + size), pos + size
        else:
            _malformed(f"unsupported wire type {wire_type}", start)
        yield number, wire_type, value


def _varint(data: bytes, pos: int, end: int):
    result = shift = 0
    for i in range(pos, min(pos + 10, end)):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, i + 1
        shift += 7
    _malformed("truncated or overlong varint", pos)


_unpack_double = struct.Struct("<d").unpack_from


def _scalar(data: bytes, kind: int, value):
    if kind == wire.K_INT:
        return value - (1 << 64) if value >> 63 else value
    if kind == wire.K_SINT:
        return (value >> 1) ^ -(value & 1)
    if kind == wire.K_BOOL:
        return value != 0
    if kind == wire.K_DOUBLE:
        return _unpack_double(data, value)[0]
    try:
        return data[value[0] : value[1]].decode("utf-8")
    except UnicodeDecodeError as exc:
        _malformed("invalid UTF-8 in a string", value[0] + exc.start)


def parse_protobuf(data: bytes) -> dict:
    """A protobuf `Batch` in the document shape of the JSON batch.

    Where a singular field repeats, the last one wins (messages are not merged); fields with an
    unknown number or an unexpected wire type are skipped, as unknown JSON keys are ignored.
    """
    return _message(data, 0, len(data), "Batch")


def _message(data: bytes, pos: int, end: int, name: str) -> dict:
    table = wire.MESSAGES[name]
    doc = {}
    payload = None
    for number, wire_type, value in _fields(data, pos, end):
        entry = table.get(number)
        if entry is None or entry[2] != wire_type:
            continue
        key, kind, _, sub, repeated = entry
        if number in wire.PAYLOADS and name == "Event":
            payload = (number, value)  # read once the action is known
        elif kind != wire.K_MESSAGE:
            doc[key] = _scalar(data, kind, value)
        elif repeated:  # `pl`
            doc.setdefault(key, []).append(_message(data, *value, sub))
        elif sub == "Object":
            doc[key] = _object(data, *value, 4)  # `pr` is level 4: batch, pl, event, pr
        else:
            doc[key] = _message(data, *value, sub)
    if name == "Batch":
        doc.setdefault("pl", [])
    elif payload is not None:
        number, span = payload
        codes, as_key = wire.PAYLOADS[number]
        if doc.get("ea") in codes:
            fields = _message(data, *span, table[number][3])
            if as_key:
                doc[as_key] = fields
            else:
                doc.update(fields)
    return doc


def _object(data: bytes, pos: int, end: int, depth: int) -> dict:
    """An `Object`: members in order, the last of a repeated key winning."""
    if depth > spec.MAX_DEPTH:
        raise BatchError("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels at byte {pos}")
    obj = {}
    for number, wire_type, value in _fields(data, pos, end):
        if number != 1 or wire_type != wire.LEN:
            continue
        key, item = "", None
        for mnumber, mwire, mvalue in _fields(data, *value):
            if mnumber == 1 and mwire == wire.LEN:
                key = _scalar(data, wire.K_STRING, mvalue)
            elif mnumber == 2 and mwire == wire.LEN:
                item = _value(data, *mvalue, depth + 1)
        obj[key] = item
    return obj


def _array(data: bytes, pos: int, end: int, depth: int) -> list:
    if depth > spec.MAX_DEPTH:
        raise BatchError("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels at byte {pos}")
    return [
        _value(data, *value, depth + 1)
        for number, wire_type, value in _fields(data, pos, end)
        if number == 1 and wire_type == wire.LEN
    ]


_VALUE_WIRE = {
    wire.VALUE_NULL: wire.VARINT,
    wire.VALUE_BOOL: wire.VARINT,
    wire.VALUE_INT: wire.VARINT,
    wire.VALUE_DOUBLE: wire.I64,
    wire.VALUE_STRING: wire.LEN,
    wire.VALUE_ARRAY: wire.LEN,
    wire.VALUE_OBJECT: wire.LEN,
}


def _value(data: bytes, pos: int, end: int, depth: int):
    """A `Value`: the last field of its oneof wins; none at all is null. `depth` is the JSON
    level a container here would have."""
    last = None
    for number, wire_type, value in _fields(data, pos, end):
        if _VALUE_WIRE.get(number) == wire_type:
            last = (number, value)
    if last is None:
        return None
    number, value = last
    if number == wire.VALUE_NULL:
        return None
    if number == wire.VALUE_BOOL:
        return value != 0
    if number == wire.VALUE_INT:
        return _scalar(data, wire.K_SINT, value)
    if number == wire.VALUE_DOUBLE:
        return _unpack_double(data, value)[0]
    if number == wire.VALUE_STRING:
        return _scalar(data, wire.K_STRING, value)
    if number == wire.VALUE_ARRAY:
        return _array(data, *value, depth)
    return _object(data, *value, depth)


# ----------------------------------------------------------------------------- normalise


class _Invalid(Exception):
    """A field's fault: carries its SPEC code."""


def _number(value):
    """A JSON number as a finite double, or None."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _is_int(value) -> bool:
    return type(value) is int and spec.INT64_MIN <= value <= spec.INT64_MAX


def _params(value):
    """Custom params as kept: ints outside int64 become doubles (they are numbers, not ints);
    a number that is not a finite double is refused."""
    kind = type(value)
    if kind is dict:
        return {k: _params(v) for k, v in value.items()}
    if kind is list:
        return [_params(v) for v in value]
    if kind is int and not _is_int(value) or kind is float:
        number = _number(value)
        if number is None:
            raise _Invalid
        return number
    return value


def _compile_check(fields, name: str):
    """A function `check(obj) -> code | None` for a field table: the code of the first field
    that `obj` gets wrong, in table order. Written out from the table once, at import, so that
    checking an event costs no more than the tests themselves."""
    lines = [f"def {name}(obj):"]

    def emit(fields, obj: str, prefix: str, indent: str) -> None:
        for f in fields:
            v = "v_" + (prefix + f.key).replace(".", "_")
            invalid = repr(f"invalid_field:{prefix}{f.key}")
            lines.append(f"{indent}{v} = {obj}.get({f.key!r})")
            if f.required:
                lines.append(f"{indent}if {v} is None: return {f'missing_field:{prefix}{f.key}'!r}")
                inner = indent
            else:
                lines.append(f"{indent}if {v} is not None:")
                inner = indent + "    "
            wrong = {
                INT: f"type({v}) is not int or not {spec.INT64_MIN} <= {v} <= {spec.INT64_MAX}",
                STRING: f"type({v}) is not str",
                NUMBER: f"_number({v}) is None",
                BOOL: f"type({v}) is not bool",
                OBJECT: f"type({v}) is not dict",
                PARAMS: f"type({v}) is not dict",
                EVENTS: f"type({v}) is not list",
            }[f.type]
            lines.append(f"{inner}if {wrong}: return {invalid}")
            check = {
                spec.ANY: None,
                spec.POSITIVE: (f"{v} < 1", invalid),
                spec.NON_NEGATIVE: (f"{v} < 0", invalid),
                spec.ID: (f"not 0 < len({v}.encode()) <= {spec.MAX_ID_BYTES}", invalid),
                spec.CURRENCY: (f"not 0 <= {v} <= 999", invalid),
                spec.DENSITY: (f"not {spec.DENSITY_MIN} <= {v} <= {spec.DENSITY_MAX}", invalid),
                spec.ACTION_CODE: (f"{v} not in _ACTIONS", "'unknown_action'"),
                spec.ACTION_NAME: (f"not _valid_action_name({v})", "'invalid_action_name'"),
            }[f.check]
            if check:
                lines.append(f"{inner}if {check[0]}: return {check[1]}")
            if f.type == OBJECT:
                emit(f.fields, v, f"{prefix}{f.key}.", inner)

    emit(fields, "obj", "", "    ")
    lines.append("    return None")
    namespace = {"_number": _number, "_ACTIONS": spec.ACTIONS, "_valid_action_name": spec.valid_action_name}
    exec("\n".join(lines), namespace)
    return namespace[name]


_check_header = _compile_check(spec.HEADER, "check_header")
_check_common = _compile_check(spec.COMMON, "check_common")
_check_action = {
    ea: _compile_check(fields, f"check_action_{ea}") for ea, (_, fields, _) in spec.ACTIONS.items()
}


def screen_name(url: str | None) -> str | None:
    """The first `title=` parameter of the url's query (up to any `#`), unquoted."""
    if url is None or "?" not in url:
        return None
    return _title(url)


@functools.lru_cache(maxsize=4096)  # apps have few screens: their urls repeat
def _title(url: str) -> str | None:
    for param in url[url.index("?") + 1 :].split("#", 1)[0].split("&"):
        if param.startswith("title="):
            return unquote_plus(param[6:])
    return None


def _enum(table: dict, value):
    return None if value is None else table.get(value, spec.UNKNOWN)


_EMPTY = {}


def normalize(doc, received_time: int) -> Decoded:
    """Check a document against the SPEC and turn its events into normalised events."""
    if type(doc) is not dict:
        raise BatchError("batch_not_object", "the batch is not a JSON object")
    fault = _check_header(doc)
    if fault:
        raise BatchError(fault)
    pl = doc["pl"]
    if len(pl) > spec.MAX_EVENTS:
        raise BatchError("too_many_events", f"{len(pl)} events, at most {spec.MAX_EVENTS}")

    to = doc.get("to") or _EMPTY
    r = doc.get("r") or _EMPTY
    density = r.get("d")
    device = Device(
        _enum(spec.DEVICE_TYPES, doc.get("dt")),
        doc.get("dma"),
        doc.get("dmo"),
        doc.get("os"),
        doc.get("l"),
        doc.get("tz"),
        None if density is None else float(density),
    )
    app_name, sdk_type, sdk_flavor = to.get("an"), to.get("st"), to.get("sf")
    project_id, user_id, sent_time = doc["pid"], doc["uid"], doc["now"]
    connectivity, orientations, unknown = spec.CONNECTIVITY, spec.ORIENTATIONS, spec.UNKNOWN

    events, rejected = [], []
    for index, ev in enumerate(pl):
        if type(ev) is not dict:
            rejected.append((index, "event_not_object"))
            continue
        fault = _check_common(ev)
        get = ev.get
        ea = get("ea")
        if fault is None:
            fault = _check_action[ea](ev)
        if fault is None:
            action, label_key, make_params = _BY_ACTION[ea]
            try:
                params = make_params(ev)
            except _Invalid:
                fault = "invalid_field:pr"
        if fault:
            rejected.append((index, fault))
            continue
        device_time = ev["t"]
        url = get("url")
        c = get("c")
        o = get("o")
        vo = get("vo") or _EMPTY
        events.append(
            NormalizedEvent(
                ev["euid"],
                action or ev["ac"],
                None if label_key is None else get(label_key),
                project_id,
                user_id,
                get("sn"),
                received_time - max(0, sent_time - device_time),
                device_time,
                sent_time,
                received_time,
                get("upt"),
                url,
                None if url is None or "?" not in url else _title(url),
                get("scn"),
                None if c is None else connectivity.get(c, unknown),
                get("ci"),
                None if o is None else orientations.get(o, unknown),
                device,
                App(
                    app_name,
                    sdk_type,
                    sdk_flavor,
                    vo.get("sv"),
                    vo.get("sb"),
                    vo.get("av"),
                    vo.get("af"),
                    vo.get("ab"),
                ),
                params,
            )
        )
    return Decoded(rejected, events=events, project_id=project_id)


def _transaction(ev):
    tr = ev["tr"]
    code = tr["cu"]
    return {
        "value": float(tr["vl"]),
        "currency_code": code,
        "currency": spec.CURRENCIES.get(code),
        "transaction_id": tr.get("id"),
    }


def _gesture(ev):
    return {
        "target_path": ev.get("tvp"),
        "target_id": ev.get("tvid"),
        "direction": _enum(spec.DIRECTIONS, ev.get("fd")),
        "distance": ev.get("tvd"),
        "velocity": ev.get("tvv"),
    }


def _variable(ev):
    return {"key": ev["k"], "value": ev["v"]}


def _custom(ev):
    return _params(ev.get("pr") or _EMPTY)


_PARAMS = {
    0: lambda ev: {},
    1: lambda ev: {},
    2: lambda ev: {},
    4: lambda ev: {"title": ev.get("st"), "load_time_ms": ev.get("sl")},
    6: lambda ev: {
        "target_path": ev.get("tvp"),
        "target_id": ev.get("tvid"),
        "responsive": ev.get("ur"),
    },
    8: lambda ev: {"target_path": ev.get("tvp"), "target_id": ev.get("tvid")},
    9: _gesture,
    10: _gesture,
    16: _transaction,
    18: _variable,
    19: _variable,
    spec.CUSTOM: _custom,
}

# ea -> (action name or None for custom, key of the label, params builder)
_BY_ACTION = {
    ea: (name, spec.LABEL_KEY.get(ea), _PARAMS[ea]) for ea, (name, _, _) in spec.ACTIONS.items()
}
