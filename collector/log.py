"""The local write-ahead log: what makes restarts and sink outages lose nothing.

Records are appended to segment files named by the log position (a byte offset that only grows)
of their first record. Each record is checksummed, so a torn tail left by a crash is found and
cut off on the next start; bytes that are not a sound record elsewhere (with sound records after
them) are damage, not a tail: readers move them aside to `quarantine/` and go on at the next
sound record, found by its framing.

Appends are committed in groups: whatever arrives while one fsync runs goes into the next, and
group commits start at most every `commit_interval` seconds, so that under steady load each
fsync serves more batches (an fsync costs far more CPU than the bytes it writes); a reply that
says `logged` waits for at most two fsyncs and one interval, and an append after a quiet spell
is committed at once. Readers (sinks, subscribers) only ever see what has been fsynced.

The event loop queues appends and hands out positions; checksums, writes and fsyncs run on the
log's own thread (the native module computes the checksums of a group commit without the GIL;
without it, the loop computes them, since a thread that takes the GIL back for each one while
the loop is busy waits a switch interval each time). The records of the last group commits are
kept in memory (`cache_bytes`), so that readers that keep up (sinks, subscribers) get them
without reading the file back and checking it again.
"""

import asyncio
import bisect
import concurrent.futures
import io
import logging
import os
import re
import struct
import threading
import time

import msgspec

from . import implementation

log = logging.getLogger("collector.log")

EVENTS = 1  # payload: the JSON Lines of a batch's accepted events
DEAD = 2  # payload: the JSON Lines of its dead-letter records

# length of payload, crc32 of the rest, kind, received time (ms)
_HEADER = struct.Struct("<IIBq")
HEADER_SIZE = _HEADER.size
_SUFFIX = ".seg"
_BAD = ".bad"  # damaged bytes moved aside, in quarantine/


class Record(msgspec.Struct, frozen=True, gc=False):
    position: int  # where the record starts
    kind: int
    time: int
    payload: bytes

    @property
    def end(self) -> int:
        """The position of the next record."""
        return self.position + HEADER_SIZE + len(self.payload)


class LogFull(Exception):
    """The log is at its disk cap: ingest must be refused until sinks catch up."""


_KIND_TIME = struct.Struct("<Bq")
crc32 = implementation.crc.crc32  # zlib's crc32, several times faster natively where the CPU allows


def _header(kind: int, ms: int, payload: bytes) -> bytes:
    crc = crc32(payload, crc32(_KIND_TIME.pack(kind, ms)))
    return _HEADER.pack(len(payload), crc, kind, ms)


# The header of each record (kind, ms, payload); the native one computes the checksums of a
# whole group commit without the GIL.
_headers = implementation.crc.record_headers
_headers_nogil = _headers if implementation.NATIVE else None


def _decode_at(data: bytes | memoryview, offset: int):
    """(kind, time, payload, size) of the record at offset, or None if it is not whole and sound."""
    if len(data) - offset < HEADER_SIZE:
        return None
    length, crc, kind, ms = _HEADER.unpack_from(data, offset)
    end = offset + HEADER_SIZE + length
    if end > len(data) or kind not in (EVENTS, DEAD):
        return None
    payload = bytes(data[offset + HEADER_SIZE : end])
    if crc32(payload, crc32(_KIND_TIME.pack(kind, ms))) != crc:
        return None
    return kind, ms, payload, end - offset


# a byte that can be a header's kind, and where a header has it
_KIND = re.compile(b"[" + bytes([EVENTS, DEAD]) + b"]")
_KIND_AT = struct.calcsize("<II")


def _next_sound(data, offset: int) -> int:
    """The offset of the first sound record after `offset`, found by its framing (a kind byte
    where a header has it, a length that fits, a checksum that holds); len(data) if none. The
    JSON Lines that records hold never have those bytes, so few places are tried."""
    search = offset + 1 + _KIND_AT
    while (found := _KIND.search(data, search)) is not None:
        if _decode_at(data, found.start() - _KIND_AT) is not None:
            return found.start() - _KIND_AT
        search = found.start() + 1
    return len(data)


def _frames(data):
    """(offset, size, sound) of each record of a segment's bytes in turn; bytes that are not a
    sound record (damage) make one frame up to the next sound record, or to the end."""
    offset = 0
    while offset < len(data):
        rec = _decode_at(data, offset)
        size = rec[3] if rec is not None else _next_sound(data, offset) - offset
        yield offset, size, rec is not None
        offset += size


def _frame_holding(data, offset: int) -> tuple:
    """(start, size, sound) of the frame that holds `offset`; past the end, an empty damaged
    frame at the end (bytes the file should hold and does not)."""
    for frame in _frames(data):
        if frame[0] + frame[1] > offset:
            return frame
    return len(data), 0, False


def unblanked(payload: bytes) -> bytes:
    """A record's payload without the lines a user's deletion blanked to spaces (`Log.rewrite`):
    what every reader of payloads goes through. Payload lines start with `{`, so a payload with
    no blanked line is returned as it is after one search."""
    if payload[:1] != b" " and b"\n " not in payload:
        return payload
    return b"".join(line + b"\n" for line in payload.split(b"\n") if line.strip())


def write_all(fd: int, buffers: list) -> int:
    """Write the buffers whole, in as few system calls as the OS allows (no copies to join
    them, and the GIL released once per call, not once per buffer); returns the bytes written."""
    views = [memoryview(b) for b in buffers if b]
    total = sum(map(len, views))
    while views:
        written = os.writev(fd, views[:1024])
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0
    return total


def cut_back(fd: int, size: int) -> None:
    """Cut a file back to `size`, the end of its last whole write, if a write that failed
    part-way (a full disk) left bytes after it: a retry must never follow half a record or half
    a line, nor write again what the failed write did get onto the disk."""
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)


_fadvise = getattr(os, "posix_fadvise", None)


def fsync_path(path: str) -> None:
    """fsync a file or a directory by its path (a directory: so that a new or renamed entry
    in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_and_drop(fd: int, start: int, length: int) -> None:
    """fsync, then drop the bytes just written from the page cache. The log and the sinks'
    files are written once and read later, if at all (readers that keep up get records from
    the log's memory); left cached, every write takes fresh pages and the cache grows until
    the kernel has to reclaim, which costs more CPU than the writes themselves."""
    os.fsync(fd)
    if _fadvise is not None and length:
        _fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


def _resolve(fut: asyncio.Future):
    """An append's callback that settles the future."""

    def done(positions, error):
        if not fut.done():
            if error is None:
                fut.set_result(positions)
            else:
                fut.set_exception(error)

    return done


def _call(done, positions, error) -> None:
    try:
        done(positions, error)
    except Exception:  # noqa: BLE001 - one waiter's bug must not stop the log's writer
        log.exception("log: a commit callback failed")


class Log:
    """Append, read from a position, and drop what every consumer has read."""

    def __init__(
        self,
        directory: str,
        *,
        segment_bytes: int = 64 << 20,
        max_bytes: int = 4 << 30,
        fsync: bool = True,
        cache_bytes: int = 16 << 20,
        commit_interval: float = 0.01,
    ):
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.cache_bytes = cache_bytes
        os.makedirs(directory, exist_ok=True)
        self._segments: list[int] = []  # start positions, ascending
        self._fd = -1
        self._end = 0  # position after the last record written
        self._durable = 0  # position up to which everything is fsynced
        # appends not yet handed to the writer: (records [(kind, ms, payload)], done callback)
        self._pending: list[tuple[list, object]] = []
        self._wakeup: asyncio.Event  # these two are made with the writer (_ensure_writer)
        self._grown: asyncio.Condition
        self._writer: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._readers: dict[int, io.BufferedReader] = {}
        # the last durable records, oldest first, for readers: Records and their positions
        self._recent: list[Record] = []
        self._recent_positions: list[int] = []
        self._recent_size = 0
        self.commit_interval = commit_interval
        self._last_commit = float("-inf")  # when the last group commit started (loop time)
        self.fsync_seconds = 0.0  # of the last group commit
        self.on_commit = None  # called with each group commit's seconds (a metric)
        self.truncated = 0  # bytes of torn tail cut off when opened
        self._skips: dict[int, int] = {}  # damage moved aside: its position -> the next record's
        self.on_quarantine = None  # called with the bytes of each damage moved aside (a metric)
        self._open()

    # ------------------------------------------------------------------------ opening

    def _path(self, start: int) -> str:
        return os.path.join(self.directory, f"{start:020d}{_SUFFIX}")

    def _open(self) -> None:
        starts = sorted(
            int(name[: -len(_SUFFIX)])
            for name in os.listdir(self.directory)
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit()
        )
        if not starts:
            starts = [0]
            open(self._path(0), "ab").close()
        self._segments = starts
        last = starts[-1]
        path = self._path(last)
        with open(path, "rb") as f:
            data = f.read()
        good = 0  # the end of the last sound record
        for offset, size, sound in _frames(data):
            if sound:
                good = offset + size
            elif offset + size < len(data):  # sound records follow: damage, not a torn tail
                log.error("log: %d damaged bytes in %s at offset %d, kept: readers move them "
                          "aside to quarantine/ and go on after them", size, path, offset)
        if good < len(data):  # a torn tail: keep every complete record, drop the rest
            self.truncated = len(data) - good
            log.warning("log: cut a torn tail of %d bytes from %s", self.truncated, path)
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._end = self._durable = last + good

    # ---------------------------------------------------------------------- appending

    @property
    def start(self) -> int:
        """The oldest position still held."""
        return self._segments[0]

    @property
    def end(self) -> int:
        """The position after the last durable record."""
        return self._durable

    @property
    def size(self) -> int:
        return self._end - self._segments[0]

    def full(self) -> bool:
        return self.size >= self.max_bytes

    async def append(self, kind: int, ms: int, payload: bytes) -> int:
        """Append a record; return its position once it is fsynced. Raises LogFull."""
        fut = self.append_many([(kind, ms, payload)])
        assert fut is not None  # no callback: a future
        return (await fut)[0]

    def append_many(self, records: list, done=None) -> asyncio.Future | None:
        """Queue records [(kind, ms, payload)] to be appended together (in one group commit).
        Once they are fsynced (or the disk failed), `done(positions, error)` is called; without
        `done`, the future returned gives the positions or the error. Raises LogFull.

        A callback is called by the log's writer as soon as the commit is done, without a trip
        through the event loop for each batch as a future's callbacks take."""
        if self.full():
            raise LogFull(f"the local log holds {self.size} bytes, its cap is {self.max_bytes}")
        self._ensure_writer()
        fut = None
        if done is None:
            fut = asyncio.get_running_loop().create_future()
            done = _resolve(fut)
        self._pending.append((records, done))
        self._wakeup.set()
        return fut

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._wakeup = asyncio.Event()
            self._grown = asyncio.Condition()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="collector-log")
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            wait = self._last_commit + self.commit_interval - loop.time()
            if wait > 0:  # the last commit was just now: let this group grow for the rest
                await asyncio.sleep(wait)
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self._last_commit = loop.time()
            try:
                records = [r for rs, _ in batch for r in rs]
                entries = []  # (position, kind, ms, payload)
                end = self._end
                for kind, ms, payload in records:
                    entries.append((end, kind, ms, payload))
                    end += HEADER_SIZE + len(payload)
                self._end = end
                headers = _headers(records) if _headers_nogil is None else None
                started = time.perf_counter()
                await loop.run_in_executor(self._executor, self._frame_and_sync, records, headers)
                self.fsync_seconds = time.perf_counter() - started
                if self._end - self._segments[-1] >= self.segment_bytes:
                    self._rotate()
            except Exception as exc:  # noqa: BLE001 - the disk failed us: every waiter hears it
                log.error("log: append failed: %s", exc)
                self._end = self._durable  # the next write cuts what this one left
                for _, done in batch:
                    _call(done, None, exc)
                continue
            self._durable = self._end
            self._remember(entries)
            n = 0
            for records, done in batch:
                k = len(records)
                _call(done, [e[0] for e in entries[n : n + k]], None)
                n += k
            if self.on_commit is not None:
                self.on_commit(self.fsync_seconds)
            async with self._grown:
                self._grown.notify_all()

    def _remember(self, entries) -> None:
        """Keep the records just made durable for readers, within `cache_bytes`."""
        if self.cache_bytes <= 0:
            return
        recent, positions = self._recent, self._recent_positions
        for position, kind, ms, payload in entries:
            recent.append(Record(position, kind, ms, payload))
            positions.append(position)
            self._recent_size += HEADER_SIZE + len(payload)
        drop = 0
        while self._recent_size > self.cache_bytes and drop < len(recent) - 1:
            self._recent_size -= HEADER_SIZE + len(recent[drop].payload)
            drop += 1
        if drop:
            del recent[:drop], positions[:drop]

    def _frame_and_sync(self, records: list, headers: list | None) -> None:
        """On the log's thread: the records' headers (unless the loop made them), then write."""
        if headers is None:
            assert _headers_nogil is not None  # the loop made them otherwise
            headers = _headers_nogil(records)
        buffers: list[bytes] = []
        for header, (_, _, payload) in zip(headers, records):
            buffers += (header, payload)
        self._write_and_sync(buffers)

    def _write_and_sync(self, buffers: list) -> None:
        """Write the buffers, then fsync. Runs on the log's thread, which takes the GIL as few
        times as it can (once per system call): a thread that wants the GIL back while the
        event loop is busy may wait a switch interval (5 ms) each time."""
        start = self._durable - self._segments[-1]
        cut_back(self._fd, start)
        written = write_all(self._fd, buffers)
        if self.fsync:
            sync_and_drop(self._fd, start, written)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._segments.append(self._end)
        self._fd = os.open(self._path(self._end), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.fsync:
            fsync_path(self.directory)

    async def close(self) -> None:
        """Write and fsync what is pending, then stop."""
        if self._writer is not None:
            for _ in range(10000):  # at most ~10 s for the last group commits
                if not self._pending and self._durable == self._end:
                    break
                self._wakeup.set()
                await asyncio.sleep(0.001)
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._recent.clear()
        self._recent_positions.clear()
        self._recent_size = 0
        for f in self._readers.values():
            f.close()
        self._readers.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------------ reading

    def read(self, position: int, max_bytes: int = 1 << 20) -> list[Record]:
        """Durable records from `position` on, about max_bytes of them (at least one if there
        is one). A position before the oldest segment still held starts at the oldest record."""
        position = max(position, self._segments[0])
        positions = self._recent_positions
        if positions and position >= positions[0]:  # recent: from memory
            i = bisect.bisect_left(positions, position)
            if i == len(positions) and position >= self._durable:
                return []
            if i < len(positions) and positions[i] == position:
                out: list[Record] = []
                total = 0
                recent = self._recent
                while i < len(recent) and total < max_bytes:
                    rec = recent[i]
                    out.append(rec)
                    total += HEADER_SIZE + len(rec.payload)
                    i += 1
                return out
        out = []
        total = 0
        while position < self._durable and total < max_bytes:
            seg = self._segment_of(position)
            bound = min(self._durable, self._next_start(seg))
            f = self._reader(seg)
            f.seek(position - seg)
            data = f.read(min(bound - position, max(max_bytes - total, 1 << 16)))
            offset = 0
            while total < max_bytes and (rec := _decode_at(data, offset)) is not None:
                out.append(Record(position + offset, rec[0], rec[1], rec[2]))
                offset += rec[3]
                total += rec[3]
            if offset == 0:  # the next record is larger than what was read, or damaged
                offset = self._read_whole(seg, position, bound, out)
                total += offset
            position += offset
        return out

    def _read_whole(self, seg: int, position: int, bound: int, out: list) -> int:
        """The record at `position`, however large, added to `out`; or, if the bytes there are
        not a sound record, those bytes moved aside. How far to go on."""
        rec = None
        if position not in self._skips:
            f = self._reader(seg)
            f.seek(position - seg)
            rec = _decode_at(f.read(bound - position), 0)
        if rec is None:
            return self._quarantine(seg, position, bound) - position
        out.append(Record(position, rec[0], rec[1], rec[2]))
        return rec[3]

    def _quarantine(self, seg: int, position: int, bound: int) -> int:
        """Move aside the damage that starts at `position`: its bytes, up to the next sound
        record (or `bound`), are copied to quarantine/, counted and logged with their segment
        and offset, and readers skip them; the position they go on from. A damaged record
        must never stop delivery, nor be passed over without a trace."""
        end = self._skips.get(position)
        if end is not None:  # another reader moved it aside already
            return end
        data = self._segment_bytes(seg)
        start, size, sound = _frame_holding(data, position - seg)
        if sound or seg + start != position:
            raise ValueError(f"log: position {position} is not where a record starts")
        end = seg + start + size if start + size < len(data) else bound
        directory = os.path.join(self.directory, "quarantine")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{position:020d}{_BAD}")
        with open(path, "wb") as moved:
            moved.write(data[start : end - seg])
            os.fsync(moved.fileno())
        log.error("log: %d damaged bytes in %s at offset %d (position %d) moved aside to %s; "
                  "readers go on at position %d", end - position, self._path(seg), start, position,
                  path, end)
        self._skips[position] = end
        if self.on_quarantine is not None:
            self.on_quarantine(end - position)
        return end

    async def wait_beyond(self, position: int, timeout: float | None = None) -> bool:
        """Wait until there is a durable record at or after `position`; False on timeout."""
        position = self._skips.get(position, position)  # damage moved aside is not a record
        self._ensure_writer()
        if self._durable > position:
            return True
        try:
            async with self._grown:
                await asyncio.wait_for(
                    self._grown.wait_for(lambda: self._durable > position), timeout
                )
        except TimeoutError:
            return False
        return True

    def position_at_time(self, ms: int) -> int:
        """The position of the first record received at or after `ms` (the end if none)."""
        position = self._segments[0]
        while position < self._durable:
            batch = self.read(position, 1 << 20)
            if not batch:  # damage up to the end
                break
            for rec in batch:
                if rec.time >= ms:
                    return rec.position
            position = batch[-1].end
        return self._durable

    async def find_time(self, ms: int) -> int:
        """`position_at_time` without holding the event loop (a Subscribe from a time): the
        segment to look in is found by the time of each segment's first record (one header read
        each), and only it and the one before it are read, on a thread, through files of its own.
        Received times follow log order but for a group commit's jitter, which the segment
        before covers."""
        return await asyncio.to_thread(self._find_time, list(self._segments), self._durable, ms)

    def _find_time(self, segments: list, durable: int, ms: int) -> int:
        bounds = [(seg, min(durable, nxt)) for seg, nxt in zip(segments, segments[1:] + [durable])]
        bounds = [(seg, end) for seg, end in bounds if end > seg]
        first = len(bounds)  # the first segment whose first record is at or after ms
        for i, (seg, _) in enumerate(bounds):
            try:
                with open(self._path(seg), "rb") as f:
                    head = f.read(HEADER_SIZE)
            except FileNotFoundError:  # released meanwhile
                continue
            if len(head) == HEADER_SIZE and _HEADER.unpack(head)[3] >= ms:
                first = i
                break
        for seg, end in bounds[max(0, first - 1):]:
            try:
                with open(self._path(seg), "rb") as f:
                    data = f.read(end - seg)
            except FileNotFoundError:
                continue
            for offset, _, sound in _frames(data):
                if sound and _HEADER.unpack_from(data, offset)[3] >= ms:
                    return seg + offset
        return durable

    async def record_start(self, position: int) -> int:
        """`boundary` for a reader asking to start at `position`, without holding the event
        loop: the position itself when a record starts there (the usual case: one record read),
        else the start of the record that holds it, found by reading its segment on a thread."""
        if position >= self._durable:
            return self._durable
        i = bisect.bisect_left(self._recent_positions, position)
        if i < len(self._recent_positions) and self._recent_positions[i] == position:
            return position
        seg = self._segment_of(position)
        if position <= seg:
            return seg
        end = min(self._durable, self._next_start(seg))
        return await asyncio.to_thread(self._record_start, seg, end, position)

    def _record_start(self, seg: int, end: int, position: int) -> int:
        try:
            with open(self._path(seg), "rb") as f:
                f.seek(position - seg)
                head = f.read(HEADER_SIZE)
                if len(head) == HEADER_SIZE:
                    length = _HEADER.unpack(head)[0]
                    if position + HEADER_SIZE + length <= end:
                        if _decode_at(head + f.read(length), 0) is not None:
                            return position
                f.seek(0)
                data = f.read(end - seg)
        except FileNotFoundError:  # released meanwhile: the oldest record then
            return self._segments[0]
        return seg + _frame_holding(data, position - seg)[0]

    def boundary(self, position: int) -> int:
        """Where a reader at `position` starts without skipping anything: the start of the
        record (or damage) that holds it, the end for a position past it. Reads the position's
        segment: for a check on start."""
        if position >= self._durable:
            return self._durable
        seg = self._segment_of(position)
        if position <= seg:
            return seg
        return seg + _frame_holding(self._segment_bytes(seg), position - seg)[0]

    def _segment_bytes(self, seg: int) -> bytes:
        """A segment's durable bytes, all of them: for a rare look at its framing."""
        f = self._reader(seg)
        f.seek(0)
        return f.read(min(self._durable, self._next_start(seg)) - seg)

    def _segment_of(self, position: int) -> int:
        seg = self._segments[0]
        for start in self._segments:
            if start > position:
                break
            seg = start
        return seg

    def _next_start(self, seg: int) -> int:
        i = self._segments.index(seg)
        return self._segments[i + 1] if i + 1 < len(self._segments) else self._end

    def _reader(self, seg: int):
        f = self._readers.get(seg)
        if f is None:
            f = self._readers[seg] = open(self._path(seg), "rb")
        return f

    # ----------------------------------------------------------------------- rewriting

    async def rewrite(self, record: Record, payload: bytes) -> bool:
        """Replace a durable record's payload with one of the same length (a deleted user's
        lines blanked to spaces) and a new checksum, in place: every position stays where it
        is, so the sinks' cursors stay valid. Runs on the log's thread, between group commits.
        False if the record's segment was released already."""
        if len(payload) != len(record.payload) or record.end > self._durable:
            raise ValueError("log: a rewrite keeps a durable record's length")
        seg = self._segment_of(record.position)
        path = self._path(seg)
        data = _header(record.kind, record.time, payload) + payload

        def write() -> bool:
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                return False
            try:
                os.pwrite(fd, data, record.position - seg)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            return True

        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._executor, write)
        f = self._readers.pop(seg, None)  # a buffered reader may hold the old bytes
        if f is not None:
            f.close()
        i = bisect.bisect_left(self._recent_positions, record.position)
        if i < len(self._recent) and self._recent[i].position == record.position:
            self._recent[i] = Record(record.position, record.kind, record.time, payload)
        return done

    # ---------------------------------------------------------------------- retention

    def release(self, position: int) -> int:
        """Delete the segments wholly before `position` (what every consumer has read).
        Returns the bytes freed."""
        freed = 0
        while len(self._segments) > 1 and self._segments[1] <= position:
            seg = self._segments.pop(0)
            f = self._readers.pop(seg, None)
            if f is not None:
                f.close()
            path = self._path(seg)
            freed += os.path.getsize(path)
            os.unlink(path)
        return freed


def _create(path: str, data: bytes) -> None:
    """A new file that holds `data` whole or does not exist (written aside, then renamed)."""
    aside = path + ".new.tmp"
    with open(aside, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(aside, path)


class Cursor:
    """A consumer's durable position in the log: a small file written in place.

    `note` records each move at the cost of one write to the page cache (it survives a crash
    of the process, not of the machine); `save` also makes it durable (fsync), which the caller
    does at most once a second and at a stop. Either is called only once the sink holds what
    the position passes, so the file on disk is never ahead of what was delivered: after a
    crash of the machine a sink delivers again at most what followed the last `save`.

    A new cursor's file is written whole before it is used, so an empty one is damage, as is
    one that holds no number: `problem` then says which ("empty", "unreadable") and the
    position is 0, from which the whole log is delivered again (at-least-once).
    """

    _WIDTH = 20  # digits: every position has the same length, so a write in place replaces it whole

    def __init__(self, directory: str, name: str):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, name + ".pos")
        # a save may still run in a worker thread when the sink stops and saves again
        self._lock = threading.Lock()
        for stale in os.listdir(directory):  # left by older versions, which replaced the file
            if stale.startswith(name + ".pos.") and stale.endswith(".tmp"):
                os.remove(os.path.join(directory, stale))
        if not os.path.exists(self.path):
            _create(self.path, b"%0*d\n" % (self._WIDTH, 0))
        self._fd = os.open(self.path, os.O_RDWR)
        text = os.pread(self._fd, 64, 0).strip()
        self.problem = ""
        try:
            self.position = int(text)
        except ValueError:
            self.problem = "unreadable" if text else "empty"
            self.position = 0

    def reset(self, position: int) -> None:
        """Replace, durably, a position found unusable on start (the one move back)."""
        self.position = position
        self.save(position)

    def note(self, position: int) -> None:
        with self._lock:
            self._write(position)

    def save(self, position: int) -> None:
        with self._lock:
            if self._write(position):
                os.fsync(self._fd)

    def _write(self, position: int) -> bool:
        if self._fd < 0:  # closed: the last save is done
            return False
        position = max(position, self.position)  # a save that ran late never moves it back
        os.pwrite(self._fd, b"%0*d\n" % (self._WIDTH, position), 0)
        self.position = position
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
