"""The log's checksums in Python: zlib's CRC-32 and the record headers of a group commit.
The twin of `collector._crc_native`, which computes the same without the GIL."""

import struct
import zlib

_HEADER = struct.Struct("<IIBq")  # the log's record header: length, crc32, kind, time
_KIND_TIME = struct.Struct("<Bq")

crc32 = zlib.crc32


def record_headers(records: list) -> list[bytes]:
    """The header of each log record (kind, ms, payload), as `collector.log` writes them."""
    out = []
    for kind, ms, payload in records:
        if not isinstance(payload, bytes):
            raise TypeError("a record's payload must be bytes")
        if not 0 <= kind <= 255 or not -2**63 <= ms < 2**63:
            raise ValueError("a record's kind is a byte and its time an int64")
        if len(payload) > 0xFFFFFFFF:
            raise ValueError("a record's payload is at most 4 GiB")
        head = _KIND_TIME.pack(kind, ms)
        out.append(_HEADER.pack(len(payload), crc32(payload, crc32(head)), kind, ms))
    return out


__all__ = ["crc32", "record_headers"]
