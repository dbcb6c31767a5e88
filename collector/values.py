"""Values as the contract keeps them, for both decoders and `collector.convert`: JSON numbers
(finite doubles, int64 ints), custom params, and the protobuf wire reading under them (fields,
varints, scalars, the `Object`/`Value` messages of custom params).

A protobuf batch that is not valid wire format is refused as `malformed_json`, with
"protobuf:" and the byte offset in the message.
"""

import math
import struct
from typing import NoReturn

from . import spec, wire
from .errors import BatchError


def malformed(what: str, at: int) -> NoReturn:
    raise BatchError("malformed_json", f"protobuf: {what} at byte {at}")


def fields(data: bytes | memoryview, pos: int, end: int):
    """Yield (field number, wire type, value, start) of one message; a LEN value is (start, end).

    Lengths are checked against what is left, never trusted.
    """
    while pos < end:
        start = pos
        key, pos = varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            malformed(f"invalid field number {number}", start)
        if wire_type == wire.VARINT:
            value, pos = varint(data, pos, end)
        elif wire_type == wire.I64 or wire_type == wire.I32:
            size = 8 if wire_type == wire.I64 else 4
            if end - pos < size:
                malformed("truncated fixed-size field", pos)
            value, pos = pos, pos + size
        elif wire_type == wire.LEN:
            size, pos = varint(data, pos, end)
            if size > end - pos:
                malformed("length past the end", pos)
            value, pos = (pos, pos + size), pos + size
        else:
            malformed(f"unsupported wire type {wire_type}", start)
        yield number, wire_type, value


def varint(data: bytes | memoryview, pos: int, end: int):
    result = shift = 0
    for i in range(pos, min(pos + 10, end)):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, i + 1
        shift += 7
    malformed("truncated or overlong varint", pos)


_unpack_double = struct.Struct("<d").unpack_from


def scalar(data: bytes, kind: int, value):
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
        malformed("invalid UTF-8 in a string", value[0] + exc.start)


def read_object(data: bytes, pos: int, end: int, depth: int) -> dict:
    """An `Object`: members in order, the last of a repeated key winning."""
    if depth > spec.MAX_DEPTH:
        raise BatchError("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels at byte {pos}")
    obj = {}
    for number, wire_type, value in fields(data, pos, end):
        if number != 1 or wire_type != wire.LEN:
            continue
        key, item = "", None
        for mnumber, mwire, mvalue in fields(data, *value):
            if mnumber == 1 and mwire == wire.LEN:
                key = scalar(data, wire.K_STRING, mvalue)
            elif mnumber == 2 and mwire == wire.LEN:
                item = read_value(data, *mvalue, depth + 1)
        obj[key] = item
    return obj


def read_array(data: bytes, pos: int, end: int, depth: int) -> list:
    if depth > spec.MAX_DEPTH:
        raise BatchError("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels at byte {pos}")
    return [
        read_value(data, *value, depth + 1)
        for number, wire_type, value in fields(data, pos, end)
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


def read_value(data: bytes, pos: int, end: int, depth: int):
    """A `Value`: the last field of its oneof wins; none at all is null. `depth` is the JSON
    level a container here would have."""
    last = None
    for number, wire_type, value in fields(data, pos, end):
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
        return scalar(data, wire.K_SINT, value)
    if number == wire.VALUE_DOUBLE:
        return _unpack_double(data, value)[0]
    if number == wire.VALUE_STRING:
        return scalar(data, wire.K_STRING, value)
    if number == wire.VALUE_ARRAY:
        return read_array(data, *value, depth)
    return read_object(data, *value, depth)


class Invalid(Exception):
    """Custom params that cannot be kept (a number that is not a finite double), or nested too
    deep (only met on the fast path, where the depth was not checked before)."""


def number(value):
    """A JSON number as a finite double, or None."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def is_int(value) -> bool:
    return type(value) is int and spec.INT64_MIN <= value <= spec.INT64_MAX


def params(value, depth: int = 4):
    """Custom params as kept: ints outside int64 become doubles (they are numbers, not ints);
    a number that is not a finite double is refused, and so is nesting past the depth limit.
    `depth` is that of `value` in the batch: `pr` is at 4 (batch, pl, event, pr)."""
    kind = type(value)
    if kind is dict or kind is list:
        if depth > spec.MAX_DEPTH:
            raise Invalid
        if kind is dict:
            return {k: params(v, depth + 1) for k, v in value.items()}
        return [params(v, depth + 1) for v in value]
    if kind is int and not is_int(value) or kind is float:
        kept = number(value)
        if kept is None:
            raise Invalid
        return kept
    return value


__all__ = ["malformed", "fields", "varint", "scalar", "read_object", "read_array", "read_value",
           "Invalid", "number", "is_int", "params"]
