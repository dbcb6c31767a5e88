"""Signatures of the log's native checksums (native/_crc_native.pyx, compiled with binding=False:
these stubs are the only place they are written). The twin of `collector._crc_pure`."""

__all__ = ["crc32", "record_headers"]

def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int: ...
def record_headers(records: list[tuple[int, int, bytes]]) -> list[bytes]: ...
