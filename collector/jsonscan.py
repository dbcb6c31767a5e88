"""Where a JSON document first goes wrong, read left to right as the native decoder reads it.

The pure decoder lets msgspec parse; only when that fails does it ask this module what is wrong
and where. The answer never comes from a library's error text (which changes between releases):
it is the first fault a single left-to-right reading meets, invalid UTF-8 in a string and a
bracket past the depth limit included, with the same wording and byte offset as the native
decoder's.
"""

import re
from typing import NoReturn

from . import spec
from .errors import BatchError

_WS = re.compile(rb"[ \t\r\n]*")
_PLAIN = re.compile(rb'[^"\\\x00-\x1f\x80-\xff]*')
_INT = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_FRACTION = re.compile(rb"\.[0-9]+")
_EXPONENT = re.compile(rb"[eE][+-]?[0-9]+")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')
_LITERALS = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}


class _Fault(Exception):
    def __init__(self, code: str, message: str, at: int):
        super().__init__(code, message, at)
        self.error = BatchError(code, f"{message} at byte {at}")


def _malformed(message: str, at: int) -> NoReturn:
    raise _Fault("malformed_json", message, at)


def _skip(pattern: re.Pattern[bytes], data: bytes, i: int) -> int:
    """The offset after what `pattern` (one that matches anywhere, maybe nothing) takes at i."""
    m = pattern.match(data, i)
    assert m is not None
    return m.end()


def first_error(data: bytes) -> BatchError:
    """The first fault of a document that is not strict JSON (malformed_json or too_deep)."""
    try:
        end = _value(data, _skip(_WS, data, 0), 1)
        end = _skip(_WS, data, end)
        if end < len(data):
            _malformed("trailing characters", end)
    except _Fault as fault:  # (the depth check bounds the recursion)
        return fault.error
    # Strict JSON by this reading: the parser refused it for a limit of its own.
    return BatchError("malformed_json", "not readable as JSON")


def _utf8_length(data: bytes, i: int) -> int:
    """Length of the valid UTF-8 sequence at i (a non-ASCII byte), or 0."""
    for n in (2, 3, 4):
        try:
            data[i : i + n].decode("utf-8")
            return n
        except UnicodeDecodeError as exc:
            if exc.start != 0 or exc.reason != "unexpected end of data":
                return 0
    return 0


def _string(data: bytes, start: int) -> int:
    """At an opening quote: the offset after the closing one."""
    n = len(data)
    i = start + 1
    while True:
        i = _skip(_PLAIN, data, i)
        if i >= n:
            _malformed("unterminated string", start)
        c = data[i]
        if c == 0x22:
            return i + 1
        if c == 0x5C:
            if i + 1 >= n:
                _malformed("unterminated string", start)
            e = data[i + 1]
            if e == 0x75:
                if not _HEX4.match(data, i + 2):
                    _malformed("invalid \\u escape", i)
                u = int(data[i + 2 : i + 6], 16)
                if 0xD800 <= u <= 0xDBFF:
                    low = data[i + 6 : i + 8] == b"\\u" and _HEX4.match(data, i + 8)
                    if low and 0xDC00 <= int(data[i + 8 : i + 12], 16) <= 0xDFFF:
                        i += 12
                        continue
                    _malformed("unpaired surrogate escape", i)
                if 0xDC00 <= u <= 0xDFFF:
                    _malformed("unpaired surrogate escape", i)
                i += 6
            elif e in _SIMPLE_ESCAPES:
                i += 2
            else:
                _malformed("invalid escape", i)
        elif c < 0x20:
            _malformed("control character in string", i)
        else:
            length = _utf8_length(data, i)
            if not length:
                _malformed("invalid UTF-8", i)
            i += length


def _number(data: bytes, start: int) -> int:
    """The offset after the number at `start`: a fraction or an exponent once begun must have
    its digits; whatever follows a whole number is for the container to judge."""
    end = _digits(_INT, data, start, start)
    if data[end : end + 1] == b".":
        end = _digits(_FRACTION, data, end, start)
    if data[end : end + 1] in (b"e", b"E"):
        end = _digits(_EXPONENT, data, end, start)
    return end


def _digits(part: re.Pattern, data: bytes, at: int, start: int) -> int:
    m = part.match(data, at)
    if m is None:
        _malformed("invalid number", start)
    return m.end()


def _value(data: bytes, i: int, depth: int) -> int:
    """Check the value at i (a container there is at level `depth`); the offset after it."""
    n = len(data)
    if i >= n:
        _malformed("unexpected end of data", i)
    c = data[i]
    if c == 0x22:
        return _string(data, i)
    if c == 0x2D or 0x30 <= c <= 0x39:
        return _number(data, i)
    if c in _LITERALS:
        word = _LITERALS[c]
        if data[i : i + len(word)] != word:
            _malformed("invalid literal", i)
        return i + len(word)
    if c == 0x5B or c == 0x7B:
        if depth > spec.MAX_DEPTH:
            raise _Fault("too_deep", f"nested deeper than {spec.MAX_DEPTH} levels", i)
        close = 0x5D if c == 0x5B else 0x7D
        i = _skip(_WS, data, i + 1)
        if i < n and data[i] == close:
            return i + 1
        while True:
            if c == 0x7B:
                if i >= n or data[i] != 0x22:
                    _malformed("expected a key", i)
                i = _skip(_WS, data, _string(data, i))
                if i >= n or data[i] != 0x3A:
                    _malformed("expected ':'", i)
                i = _skip(_WS, data, i + 1)
            i = _skip(_WS, data, _value(data, i, depth + 1))
            if i >= n:
                _malformed("unterminated array" if c == 0x5B else "unterminated object", i)
            if data[i] == close:
                return i + 1
            if data[i] != 0x2C:
                _malformed("expected ',' or ']'" if c == 0x5B else "expected ',' or '}'", i)
            i = _skip(_WS, data, i + 1)
    _malformed("unexpected character", i)
