# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""The native decoder: one pass over the bytes of a batch, JSON Lines out.

A reader is a cursor over `const unsigned char*`; values are recorded as slots (kind, span in
the input, number) in C arrays, checked against the tables of `collector.spec`, and written
straight into an output buffer. The only Python objects made are the output bytes and the list
of rejections, at the end. Semantics are those of `collector._pure`, which says them in Python.

This file is the hub: each concern is a file of its own, included here in this order (they
share one C module, so the hot paths still inline across them), and the C helpers are headers:
  consts.pxi        limits, slot kinds, flags and roles (compile-time constants)
  structs.pxi       slots, key and field tables, the parser and the output (buf.h: the buffer)
  parts.pxi         an event's parts in spec.EVENT_KEYS' order (written by the build: parts.py)
  tables.pxi        the tables, built from collector.spec and collector.wire at import
  util.pxi          errors, integers (digits.h) and doubles written, scratch space
  utf8.pxi          UTF-8 validation
  json_scan.pxi     JSON strings, numbers, literals, skipped values (scan.h: the SSE2 scan)
  objects.pxi       JSON objects read into slots, the events of `pl`
  protobuf.pxi      protobuf messages read into slots
  checks.pxi        the spec's field checks
  writer.pxi        the JSON Lines writer
  screen_names.pxi  a url's `title` parameter, unquoted
  entry.pxi         decode, event_keys, event_ids, decoded_ids, read_request
The log's checksums (_crc_native.pyx, crc32.h) and dedup's set of ids (_idset_native.pyx, siphash.h) are
extension modules of their own.
"""

from libc.stdint cimport int64_t, uint64_t, uint8_t, int16_t, int32_t, uint32_t
from libc.string cimport memcpy, memset, memcmp, memchr
from libc.stdlib cimport malloc, calloc, realloc, free, qsort
from libc.math cimport isfinite, fabs, rint
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8

import msgspec

from collector import spec, values, wire, _pure
from collector.errors import BatchError, TooLarge
from collector.event import Decoded

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, PyObject *overflow_exception) except? -1.0
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int *ptype) except NULL
    void PyMem_Free(void *p)
    int Py_DTSF_ADD_DOT_0
    PyObject* bytes_new "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n)
    int _PyBytes_Resize(PyObject **b, Py_ssize_t n) except -1
    char* bytes_data "PyBytes_AS_STRING"(PyObject *b)
    Py_ssize_t bytes_size "PyBytes_GET_SIZE"(PyObject *b)
    void Py_XDECREF(PyObject *o)

ctypedef const unsigned char* cstr

include "consts.pxi"
include "structs.pxi"
include "parts.pxi"
include "tables.pxi"
include "util.pxi"
include "utf8.pxi"
include "json_scan.pxi"
include "objects.pxi"
include "protobuf.pxi"
include "checks.pxi"
include "writer.pxi"
include "screen_names.pxi"
include "entry.pxi"
