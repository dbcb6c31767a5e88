"""JSON Lines files, rotated by size and age: ready for a warehouse load.

The file being written is `<prefix>-<start>.jsonl.part`; once rotated it is renamed to
`<prefix>-<start>.jsonl` and never touched again, so a loader takes `*.jsonl` files only. After
a crash, the `.part` files are finished on start, a half-written last line cut off first; a
write that fails part-way (a full disk) is cut off before its retry, so no line is ever in a
file half or twice.
"""

import asyncio
import io
import os
import threading
import time

from ..log import DEAD, EVENTS, cut_back, sync_and_drop, unblanked, write_all
from . import Sink


class JsonlSink(Sink):
    kinds = frozenset({EVENTS})
    default_dir = "events"
    prefix = "events"

    def __init__(self, name, data_dir, *, directory: str = "", max_bytes: int = 128 << 20,
                 max_seconds: float = 3600.0, fsync: bool = True, linger_seconds: float = 0.05):
        super().__init__(name, data_dir)
        self.linger_seconds = linger_seconds  # fewer, bigger writes (and fsyncs) under load
        self.directory = directory or os.path.join(data_dir, self.default_dir)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.fsync = fsync
        self._f: io.FileIO | None = None
        self._lock = threading.Lock()  # a write in a worker thread, and the close of a stop
        self._path = ""
        self._opened = 0.0
        self._size = 0

    async def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):  # left open by a stop or a crash: finish them
            if name.endswith(".jsonl.part"):
                path = os.path.join(self.directory, name)
                if _cut_torn_line(path):
                    os.replace(path, path[: -len(".part")])
                else:  # nothing whole in it
                    os.remove(path)

    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        base = os.path.join(self.directory, f"{self.prefix}-{stamp}-{time.time_ns() % 10**9:09d}")
        self._path = base + ".jsonl.part"
        self._f = open(self._path, "ab", buffering=0)
        self._opened = time.monotonic()
        self._size = 0

    def _close(self) -> None:
        if self._f is not None:
            cut_back(self._f.fileno(), self._size)  # a closed file is complete
            self._f.close()
            os.replace(self._path, self._path[: -len(".part")])
            self._f = None

    def _write(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._write_locked(chunks)

    def _write_locked(self, chunks: list[bytes]) -> None:
        if self._f is not None and (
            self._size >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds
        ):
            self._close()
        if self._f is None:
            self._open()
            assert self._f is not None
        fd, start = self._f.fileno(), self._size
        cut_back(fd, start)  # what a failed write left: its retry is this write
        written = write_all(fd, chunks)  # one system call for many records
        if self.fsync:
            sync_and_drop(fd, start, written)
        self._size = start + written

    async def write(self, records) -> None:
        chunks = [unblanked(r.payload) for r in records if r.kind in self.kinds]
        if chunks:
            await asyncio.to_thread(self._write, chunks)

    def finish_file(self) -> None:
        """Finish the file being written (the next write opens a new one): every `*.jsonl`
        file is then closed for good, for a deletion's or retention's rewrite of it."""
        with self._lock:
            self._close()

    async def stop(self) -> None:
        with self._lock:
            self._close()


def _cut_torn_line(path: str) -> int:
    """Drop a last line a crash left half-written; the bytes left. Its events come again: the
    cursor had not moved past them, since the write they were part of never returned."""
    with open(path, "r+b") as f:
        size = end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            f.truncate(end)
            os.fsync(f.fileno())
        return end


class DeadLetterSink(JsonlSink):
    """Every rejected event and refused batch, with its reason and raw bytes."""

    kinds = frozenset({DEAD})
    default_dir = "dead_letter"
    prefix = "dead-letter"
