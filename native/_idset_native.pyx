# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""Dedup's set of (project, event id) pairs, native: 128-bit SipHash fingerprints
(`siphash.h`) in an open-addressing table. The twin of `collector._idset_pure`;
`collector.implementation` picks one."""

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memchr
from libc.stdlib cimport calloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8

import os

import msgspec

from collector.event import Decoded

try:  # a Decoded the native decoder made is read where it wrote its ids; any other, by its twin
    from collector._native import decoded_ids
except ImportError:
    from collector._pure import decoded_ids

_string = msgspec.json.Decoder(str)


cdef inline str json_text(const char* s, Py_ssize_t a, Py_ssize_t e, bint escaped):
    """The text of the JSON string whose contents are s[a:e] (its quotes around them)."""
    if escaped:
        return _string.decode(PyBytes_FromStringAndSize(s + a - 1, e - a + 2))
    return PyUnicode_DecodeUTF8(s + a, e - a, NULL)


cdef extern from "siphash.h":
    void sip13_128 "collector_sip13_128"(uint64_t k0, uint64_t k1, uint64_t first,
                                         const unsigned char* s, size_t n, uint64_t* out) nogil
    void prefetch "__builtin_prefetch"(const void* p) nogil

cdef extern from "Python.h":
    const char* utf8_and_size "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* n) except NULL


__all__ = ["IdSet", "Ids"]


cdef class Ids:
    """The ids an IdSet holds for one batch, as `hold_new` and `hold` give them and `drop`
    takes them back: their fingerprints, which `len` counts and slices cut."""
    cdef bytes fps     # 16 bytes an id (None in an Ids made from Python: it holds none)

    def __len__(self):
        return 0 if self.fps is None else PyBytes_GET_SIZE(self.fps) >> 4

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("Ids are taken by slices")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("Ids are taken by slices of step 1")
        return new_ids(self.fps[start * 16 : max(start, stop) * 16] if self.fps is not None else b"")


cdef Ids new_ids(bytes fps):
    cdef Ids ids = Ids.__new__(Ids)
    ids.fps = fps
    return ids


cdef class IdSet:
    """(project, event id) pairs for dedup; the twin of `collector._idset_pure.IdSet`.

    A pair is kept as a 128-bit fingerprint: SipHash-1-3 of the project and the id, under a key
    drawn when the set is made, so ids cannot be chosen to collide and two pairs share one with
    a chance of about n / 2^128 (n the pairs held). The fingerprints sit in an open-addressing
    table of linear probing, at most half full: 32 to 64 bytes per id, against about 200 for a
    Python set of strings. A batch's fingerprints are made from where the decoder wrote its ids
    (no strings), and their slots are fetched ahead before any is probed."""
    cdef uint64_t* slots    # two words per slot; (0, 0) is an empty slot, never a fingerprint
    cdef size_t mask
    cdef Py_ssize_t count
    cdef uint64_t k0, k1

    cdef int ready(self) except -1:
        """The key and the table, made on first use (a table-less set holds nothing)."""
        if self.slots != NULL:
            return 0
        key = os.urandom(16)
        memcpy(&self.k0, PyBytes_AS_STRING(key), 8)
        memcpy(&self.k1, PyBytes_AS_STRING(key) + 8, 8)
        self.slots = <uint64_t*>calloc(2 * 1024, sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = 1023
        return 0

    def __dealloc__(self):
        free(self.slots)

    def __len__(self):
        """The ids held."""
        return self.count

    cdef size_t find(self, const uint64_t* fp) noexcept nogil:
        """The slot of the fingerprint, or the empty slot where it would go."""
        cdef size_t i = fp[0] & self.mask
        cdef const uint64_t* s
        while True:
            s = self.slots + 2 * i
            if (s[0] == fp[0] and s[1] == fp[1]) or (s[0] == 0 and s[1] == 0):
                return i
            i = (i + 1) & self.mask

    cdef int reserve(self, Py_ssize_t more) except -1:
        """Room for `more` fingerprints, the table kept at most half full."""
        cdef size_t old_size = self.mask + 1, size = old_size, i
        cdef uint64_t* old = self.slots
        cdef uint64_t* s
        cdef uint64_t* d
        while <size_t>(self.count + more) * 2 > size:
            size *= 2
        if size == old_size:
            return 0
        d = <uint64_t*>calloc(2 * size, sizeof(uint64_t))
        if d == NULL:
            raise MemoryError()
        self.slots, self.mask = d, size - 1
        for i in range(old_size):
            s = old + 2 * i
            if s[0] or s[1]:
                d = self.slots + 2 * self.find(s)
                d[0], d[1] = s[0], s[1]
        free(old)
        return 0

    cdef bint add(self, const uint64_t* fp) noexcept nogil:
        """Add a fingerprint (room reserved); False if it was there already."""
        cdef uint64_t* s = self.slots + 2 * self.find(fp)
        if s[0] or s[1]:
            return False
        s[0], s[1] = fp[0], fp[1]
        self.count += 1
        return True

    cdef void remove(self, const uint64_t* fp) noexcept nogil:
        """Remove a fingerprint if it is there; the ones after it in its run move back into
        the gap where their own slot allows (so no tombstones are left)."""
        cdef size_t mask = self.mask, i = self.find(fp), j = i, home
        cdef uint64_t* gap = self.slots + 2 * i
        cdef uint64_t* t
        if not (gap[0] or gap[1]):
            return
        while True:
            j = (j + 1) & mask
            t = self.slots + 2 * j
            if not (t[0] or t[1]):
                break
            home = t[0] & mask
            if ((j - home) & mask) < ((j - i) & mask):     # its slot is after the gap: it stays
                continue
            gap[0], gap[1] = t[0], t[1]
            gap, i = t, j
        gap[0] = gap[1] = 0
        self.count -= 1

    cdef inline void fingerprint(self, uint64_t project, const char* s, Py_ssize_t n,
                                 uint64_t* out) noexcept nogil:
        """Of the id whose UTF-8 is s[:n]; never (0, 0), the empty slot."""
        sip13_128(self.k0, self.k1, project, <const unsigned char*>s, <size_t>n, out)
        if out[0] == 0 and out[1] == 0:
            out[0] = 1

    cdef int fp_str(self, uint64_t project, object event_id, uint64_t* out) except -1:
        cdef Py_ssize_t n
        cdef const char* u
        if type(event_id) is not str:
            raise TypeError(f"an event id is a str, not {type(event_id).__name__}")
        try:
            u = utf8_and_size(event_id, &n)
            self.fingerprint(project, u, n, out)
        except UnicodeEncodeError:  # lone surrogates, which a JSON escape may make
            raw = (<str>event_id).encode("utf-8", "surrogatepass")
            self.fingerprint(project, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), out)
        return 0

    cdef bytes fingerprints(self, object project, object ids):
        """The fingerprint of each id: of a list of str, or of a Decoded's ids where the decoder
        wrote them in its JSON Lines (the text inside the quotes is the id's UTF-8, unless it
        has an escape)."""
        cdef uint64_t pid = <uint64_t><int64_t>project
        cdef bytes jsonl, out
        cdef const Py_ssize_t* at
        cdef const char* s
        cdef uint64_t* fp
        cdef Py_ssize_t i, a, e, n, size
        self.ready()
        if isinstance(ids, Decoded) and type(ids._ids) is bytes and type(ids._jsonl) is bytes:
            spans, jsonl = ids._ids, ids._jsonl
            s = PyBytes_AS_STRING(jsonl)
            size = PyBytes_GET_SIZE(jsonl)
            at = <const Py_ssize_t*>PyBytes_AS_STRING(spans)
            n = PyBytes_GET_SIZE(spans) // (2 * sizeof(Py_ssize_t))
            out = PyBytes_FromStringAndSize(NULL, 16 * n)
            fp = <uint64_t*>PyBytes_AS_STRING(out)
            for i in range(n):
                a = at[2 * i] + 1       # inside the quotes
                e = at[2 * i + 1] - 1
                if not 1 <= a <= e < size:
                    raise ValueError("a Decoded whose ids are not where it says")
                if memchr(s + a, 92, e - a) == NULL:
                    self.fingerprint(pid, s + a, e - a, fp + 2 * i)
                else:
                    self.fp_str(pid, json_text(s, a, e, True), fp + 2 * i)
            return out
        if isinstance(ids, Decoded):
            ids = decoded_ids(ids)
        n = len(ids)
        out = PyBytes_FromStringAndSize(NULL, 16 * n)
        fp = <uint64_t*>PyBytes_AS_STRING(out)
        for i in range(n):
            self.fp_str(pid, ids[i], fp + 2 * i)
        return out

    def hold_new(self, project, ids):
        """Hold every id (a list of event ids, or a Decoded's), if none is held already and
        none comes twice: the Ids held; otherwise hold none and return None."""
        cdef bytes fps = self.fingerprints(project, ids)
        cdef const uint64_t* fp = <const uint64_t*>PyBytes_AS_STRING(fps)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(fps) >> 4, i, k
        self.reserve(n)
        for i in range(n):      # the slots are far apart in a large table: fetch them all first
            prefetch(self.slots + 2 * (fp[2 * i] & self.mask))
        for i in range(n):
            if not self.add(fp + 2 * i):
                for k in range(i):
                    self.remove(fp + 2 * k)
                return None
        return new_ids(fps)

    def hold(self, project, ids):
        """Hold ids known to be neither held nor twice among them: the Ids held."""
        cdef bytes fps = self.fingerprints(project, ids)
        cdef const uint64_t* fp = <const uint64_t*>PyBytes_AS_STRING(fps)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(fps) >> 4, i
        self.reserve(n)
        for i in range(n):
            self.add(fp + 2 * i)
        return new_ids(fps)

    def contains(self, project, event_id):
        """Whether the id is held."""
        cdef uint64_t fp[2]
        cdef const uint64_t* s
        if self.slots == NULL:
            return False
        self.fp_str(<uint64_t><int64_t>project, event_id, fp)
        s = self.slots + 2 * self.find(fp)
        return s[0] != 0 or s[1] != 0

    def drop(self, project, Ids ids not None):
        """Let go of ids that `hold_new` or `hold` gave (or a slice of them)."""
        cdef const uint64_t* fp
        cdef Py_ssize_t n, i
        if self.slots == NULL or ids.fps is None:
            return
        fp = <const uint64_t*>PyBytes_AS_STRING(ids.fps)
        n = PyBytes_GET_SIZE(ids.fps) >> 4
        for i in range(n):
            self.remove(fp + 2 * i)
