# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""The log's checksums, native: zlib's CRC-32 (folded with carry-less multiplication where the
CPU has it, `crc32.h`) and the record headers of a group commit, computed without the GIL.
The twin of `collector._crc_pure`; `collector.implementation` picks one."""

from libc.stdint cimport int64_t, uint64_t, uint32_t
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef extern from "crc32.h":
    uint32_t crc32_bytes "collector_crc32"(uint32_t crc, const unsigned char *buf, size_t n) nogil

DEF HEADER = 17  # the log's record header: length u32, crc32 u32, kind u8, time i64 (little-endian)


cdef inline void put_le(unsigned char* at, uint64_t value, int size) noexcept nogil:
    cdef int i
    for i in range(size):
        at[i] = <unsigned char>(value >> (8 * i))


cdef uint32_t checksum(const unsigned char* head, const unsigned char* payload, Py_ssize_t n) noexcept nogil:
    """crc32 of the header's kind and time, then of the payload."""
    return crc32_bytes(crc32_bytes(0, head + 8, 9), payload, <size_t>n)


__all__ = ["crc32", "record_headers"]


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
