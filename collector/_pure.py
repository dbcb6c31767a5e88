"""The pure-Python decoder: the readable statement of SPEC v1, and the twin of `collector._native`.

Both formats are first read into the same document shape (a dict per object, keyed by the
compact JSON keys, None for null); one normaliser then checks and converts it, driven by the
tables in `collector.spec`.
"""

import functools
import re
import struct
from typing import Annotated, Union
from urllib.parse import unquote_plus

import msgspec

from . import jsonscan, spec, wire
from .errors import BatchError
from .event import App, Decoded, Device, NormalizedEvent, encode_lines
from .spec import BOOL, EVENTS, INT, NUMBER, OBJECT, PARAMS, STRING
from .values import (  # noqa: F401 - the names this module has always used
    Invalid as _Invalid,
    fields as _fields,
    is_int as _is_int,
    malformed as _malformed,
    number as _number,
    params as _params,
    read_object as _object,
    scalar as _scalar,
)

# float_hook keeps a number too large for a double as inf (refused where it is read) instead of
# failing the whole document.
_json = msgspec.json.Decoder(float_hook=float)
_CONTAINERS = frozenset((dict, list))


def decode(data, format="json", received_time=0, max_output=0) -> Decoded:
    if format == "json":
        data = bytes(data)
        decoded = _fast(data, received_time)
        if decoded is None:
            decoded = normalize(parse_json(data), received_time)
    elif format == "protobuf":
        decoded = normalize(parse_protobuf(bytes(data)), received_time)
    else:
        raise ValueError(f"unknown format {format!r}: use 'json' or 'protobuf'")
    if max_output:  # the events share the header's values until they are written out
        decoded._jsonl = encode_lines(decoded.events, max_output)
    return decoded


def decoded_ids(decoded: Decoded) -> list[str]:
    """The event_id of each event of a Decoded, in order: all dedup needs."""
    if type(decoded._ids) is not list:
        decoded._ids = [ev.event_id for ev in decoded.events]
    return decoded._ids


def read_request(data) -> tuple:
    """A serialized IngestRequest, read in place: (batch_id, format, batch, project_id), where
    `batch` is a memoryview of the batch's bytes inside `data` (format and batch are None when
    the request holds no batch). Raises ValueError when the bytes are not an IngestRequest."""
    view = memoryview(data if type(data) is bytes else bytes(data))
    batch_id, batch, fmt, project = "", None, None, 0
    try:
        for number, wire_type, value in _fields(view, 0, len(view)):
            if wire_type == wire.LEN:  # a field of another wire type than its own is unknown
                if number == wire.REQUEST_BATCH_ID:  # a string: each one set must be UTF-8
                    batch_id = str(view[value[0] : value[1]], "utf-8")
                elif number in wire.REQUEST_FORMATS:  # the oneof: the last one set wins
                    fmt = wire.REQUEST_FORMATS[number]
                    batch = view[value[0] : value[1]]
            elif wire_type == wire.VARINT and number == wire.REQUEST_PROJECT_ID:
                project = value - (1 << 64) if value >> 63 else value
    except BatchError as exc:
        raise ValueError(f"not an IngestRequest: {exc.message}") from None
    except UnicodeDecodeError:
        raise ValueError("not an IngestRequest: batch_id is not UTF-8") from None
    return batch_id, fmt, batch, project


class _Key(msgspec.Struct, gc=False):
    event_id: str
    action: str


_keys = msgspec.json.Decoder(_Key)


def event_keys(jsonl: bytes) -> list[tuple[str, str]]:
    """(event_id, action) of each line of normalised JSON Lines: what the pipeline needs for
    dedup and rules, without reading whole events."""
    return [(k.event_id, k.action) for k in _keys.decode_lines(jsonl)]


def line_views(pieces: list[bytes]) -> tuple[int, bytes]:
    """The lines of pieces of JSON Lines (a piece's last line needs no newline) as Arrow string
    views, 16 bytes each: length, then the line itself when it is at most 12 bytes, else its
    first 4 bytes, the piece's index and the line's offset in it. (count, views): what an Arrow
    `string_view` array over the pieces is made of, with no line copied."""
    out = bytearray()
    count = 0
    for j, piece in enumerate(pieces):
        if type(piece) is not bytes:
            raise TypeError("line_views takes a list of bytes")
        start = 0
        while start < len(piece):
            end = piece.find(b"\n", start)
            end = len(piece) if end < 0 else end
            line = piece[start:end]
            if len(line) <= 12:
                out += struct.pack("<i12s", len(line), line)
            else:
                out += struct.pack("<i4sii", len(line), line[:4], j, start)
            count += 1
            start = end + 1
    return count, bytes(out)


def event_ids(jsonl: bytes) -> list[str]:
    """The event_id of each line, as `event_keys` reads it (all dedup needs)."""
    return [k.event_id for k in _keys.decode_lines(jsonl)]


# ---------------------------------------------------------------------------------- JSON


def parse_json(data: bytes):
    """The document as Python values; BatchError(malformed_json | too_deep) if it is not one."""
    try:
        doc = _json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise jsonscan.first_error(data) from None
    if _depth_exceeded(doc) or _text_too_deep(data):  # the reading that finds where
        raise jsonscan.first_error(data)
    return doc


_STRING_TEXT = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _text_too_deep(data: bytes) -> bool:
    """Whether the text nests past the limit where the parsed document does not show it: inside
    the value of a key that repeats (the last one wins, but the document is still too deep)."""
    if data.count(b"[") + data.count(b"{") <= spec.MAX_DEPTH:
        return False
    depth = 0
    for c in _STRING_TEXT.sub(b"", data).translate(None, _NOT_BRACKETS):
        if c == 0x5B or c == 0x7B:
            depth += 1
            if depth > spec.MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


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


# ------------------------------------------------------------------------------ protobuf


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


# ----------------------------------------------------------------------------- normalise


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


_EMPTY: dict = {}


# ------------------------------------------------------------------------- batch as Structs
#
# A batch that passed the checks is read into Structs made from the same tables (one Struct per
# action, told apart by `ea`), and events are built from those. A JSON batch is first tried
# straight into strict Structs (unknown keys refused, so no value goes unseen): when every
# event is valid, as nearly all are, msgspec does all the checking it can in C, and what it
# cannot (UTF-8 length of ids, custom action names, params) is checked while building. Any
# doubt, and the batch takes the checked path, which finds the exact code of every fault.

_FLOAT_MAX = 1.7976931348623157e308
_INT_RANGE = {
    spec.ANY: (spec.INT64_MIN, spec.INT64_MAX),
    spec.POSITIVE: (1, spec.INT64_MAX),
    spec.NON_NEGATIVE: (0, spec.INT64_MAX),
    spec.CURRENCY: (0, 999),
}


def _annotation(f, name: str, strict: bool):
    if f.type == INT:
        lo, hi = _INT_RANGE[f.check]
        return Annotated[int, msgspec.Meta(ge=lo, le=hi)]
    if f.type == NUMBER:
        if f.check == spec.DENSITY:
            return Annotated[float, msgspec.Meta(ge=spec.DENSITY_MIN, le=spec.DENSITY_MAX)]
        return Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]
    if f.type == STRING:
        if f.check == spec.ID:  # characters here; UTF-8 bytes are checked when building
            return Annotated[str, msgspec.Meta(min_length=1, max_length=spec.MAX_ID_BYTES)]
        return str
    if f.type == BOOL:
        return bool
    if f.type == OBJECT:
        return _struct(name + f.key.title(), f.fields, strict)
    if f.type == PARAMS:
        return dict
    raise AssertionError(f.type)


def _struct(name: str, fields, strict: bool, extra=(), **options):
    members = list(extra)
    for f in fields:
        if f.check == spec.ACTION_CODE:
            continue  # `ea` is the tag that picks the Struct
        kind = _annotation(f, name, strict)
        members.append((f.key, kind) if f.required else (f.key, kind | None, None))
    return msgspec.defstruct(name, members, kw_only=True, forbid_unknown_fields=strict, gc=False,
                             **options)


def _batch_type(strict: bool):
    events = []
    for ea, (action, fields, _) in spec.ACTIONS.items():
        cls = _struct(f"Event{ea}", spec.COMMON + fields, strict, tag=ea, tag_field="ea")
        cls.action, cls.label = action, spec.LABEL_KEY.get(ea)  # custom: action None, it is `ac`
        cls.params = staticmethod(_PARAMS[ea])
        events.append(cls)
    pl = Annotated[list[Union[tuple(events)]],  # type: ignore[valid-type,misc]  # noqa: UP007
                   msgspec.Meta(max_length=spec.MAX_EVENTS)]
    return _struct("Batch", [f for f in spec.HEADER if f.type != EVENTS], strict, extra=[("pl", pl)])


def _params_maker(outs):
    """A function of a valid event (its Struct) that makes its `params`, as `spec.ACTION_PARAMS`
    lays them out: compiled from the table once, so that it is the only place they are spelled."""
    tables = {}
    items = []
    for out in outs:
        value = "ev." + out.source
        if out.how == spec.ENUM:
            tables[f"_t{len(tables)}"] = out.table
            value = f"_enum(_t{len(tables) - 1}, {value})"
        elif out.how == spec.CURRENCY_NAME:
            value = f"_currencies.get({value})"
        items.append(f"{out.name!r}: {value}")
    namespace = {"_enum": _enum, "_currencies": spec.CURRENCIES, **tables}
    exec(f"def make(ev):\n    return {{{', '.join(items)}}}\n", namespace)  # noqa: S102
    return namespace["make"]


_PARAMS = {ea: _params_maker(outs) for ea, outs in spec.ACTION_PARAMS.items()}
_PARAMS[spec.CUSTOM] = lambda ev: {} if ev.pr is None else _params(ev.pr)  # `pr` as sent


_Strict = _batch_type(strict=True)
_Lenient = _batch_type(strict=False)
_strict_json = msgspec.json.Decoder(_Strict, float_hook=float)
_EMPTY_VO = _struct("Vo", next(f for f in spec.COMMON if f.key == "vo").fields, False)()


def _fast(data: bytes, received_time: int) -> Decoded | None:
    """A JSON batch whose every event is valid, decoded straight into Structs; None otherwise."""
    try:
        batch = _strict_json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if len(batch.uid) > 32 and len(batch.uid.encode()) > spec.MAX_ID_BYTES:
        return None
    for ev in batch.pl:
        if len(ev.euid) > 32 and len(ev.euid.encode()) > spec.MAX_ID_BYTES:
            return None
        if ev.action is None and not spec.valid_action_name(ev.ac):
            return None
    try:
        events = _build(batch, received_time)
    except _Invalid:
        return None
    return Decoded([], events=events, project_id=batch.pid)


def _build(batch, received_time: int) -> list[NormalizedEvent]:
    """The normalised events of a batch of valid events."""
    to, r = batch.to, batch.r
    device = Device(_enum(spec.DEVICE_TYPES, batch.dt), batch.dma, batch.dmo, batch.os, batch.l,
                    batch.tz, None if r is None or r.d is None else float(r.d))
    app_name, sdk_type, sdk_flavor = (None, None, None) if to is None else (to.an, to.st, to.sf)
    project_id, user_id, sent_time = batch.pid, batch.uid, batch.now
    connectivity, orientations, unknown, title = spec.CONNECTIVITY, spec.ORIENTATIONS, spec.UNKNOWN, _title
    events = []
    for ev in batch.pl:
        label, url, c, o, vo = ev.label, ev.url, ev.c, ev.o, ev.vo or _EMPTY_VO
        device_time = ev.t
        events.append(NormalizedEvent(
            ev.euid,
            ev.action or ev.ac,
            None if label is None else getattr(ev, label),
            project_id,
            user_id,
            ev.sn,
            received_time - max(0, sent_time - device_time),
            device_time,
            sent_time,
            received_time,
            ev.upt,
            url,
            None if url is None or "?" not in url else title(url),
            ev.scn,
            None if c is None else connectivity.get(c, unknown),
            ev.ci,
            None if o is None else orientations.get(o, unknown),
            device,
            App(app_name, sdk_type, sdk_flavor, vo.sv, vo.sb, vo.av, vo.af, vo.ab),
            ev.params(ev),
        ))
    return events


def normalize(doc, received_time: int) -> Decoded:
    """Check a document against the SPEC and turn its valid events into normalised events."""
    if type(doc) is not dict:
        raise BatchError("batch_not_object", "the batch is not a JSON object")
    fault = _check_header(doc)
    if fault:
        raise BatchError(fault)
    pl = doc["pl"]
    if len(pl) > spec.MAX_EVENTS:
        raise BatchError("too_many_events", f"{len(pl)} events, at most {spec.MAX_EVENTS}")
    valid, rejected = [], []
    for index, ev in enumerate(pl):
        if type(ev) is not dict:
            rejected.append((index, "event_not_object"))
            continue
        fault = _check_common(ev) or _check_action[ev["ea"]](ev)
        if fault is None and ev["ea"] == spec.CUSTOM:
            try:
                _params(ev.get("pr") or _EMPTY)
            except _Invalid:
                fault = "invalid_field:pr"
        if fault:
            rejected.append((index, fault))
        else:
            valid.append(ev)
    batch = msgspec.convert({**doc, "pl": valid}, _Lenient)
    return Decoded(rejected, events=_build(batch, received_time), project_id=batch.pid)


# the twin API of `collector._native` (parse_json, normalize... serve `collector.convert`)
__all__ = ["decode", "event_keys", "event_ids", "decoded_ids", "read_request", "line_views"]
