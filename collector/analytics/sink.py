"""The store sink: the log's events loaded into the analytics store.

Each write is one insert whose token names the log range it holds (`first position-last end`:
positions never change), so an insert retried after a failure, or again after a restart,
adds nothing; and the store keeps one row per event whatever arrives twice. The insert runs
in a worker thread and the cursor moves only once it returned, committed. Writes are big (up
to 64 MiB of log): an engine loads a few big inserts much faster than many small ones. The
lines go to the store as the log holds them, unchecked (the collector wrote them): the engine
parses them anyway and refuses a line it cannot store, and only then are they checked one by
one, so that such a line (none should be) goes to the dead-letter output rather than stopping
the sink.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from ..log import EVENTS
from ..sinks import Sink
from .rows import check


class StoreSink(Sink):
    kinds = frozenset({EVENTS})
    batch_bytes = 64 << 20

    def __init__(self, name, data_dir, *, linger_seconds: float = 0.2, store=None):
        super().__init__(name, data_dir)
        self.linger_seconds = linger_seconds  # bigger inserts: a store loads a few big ones best
        self.store = store  # the service's own (see `attach`)

    async def write(self, records) -> None:
        mine = [r for r in records if r.kind in self.kinds]
        if mine:
            bad = await asyncio.to_thread(self._load, mine, f"{mine[0].position}-{mine[-1].end}")
            if bad:
                await self.dead_letter(bad)

    def _load(self, records, token: str) -> list[bytes]:
        """Insert the records' lines; if the store refuses them and `check` finds lines it cannot
        hold, those go to the dead letter and the rest is inserted under a token of their own
        (the same every time: `check` finds the same lines; a refused insert may have loaded a
        part, which then arrives again as copies the store keeps once). A refusal with no such
        line is the store's: raised."""
        try:
            self.store.insert([record.payload for record in records], token)
            return []
        except Exception:
            good, bad = check([line for r in records for line in r.payload.split(b"\n")])
            if not bad:
                raise
        self.store.insert([good], token + "/checked")
        return [_dead(self.name, why, line) for _, line, why in bad]


def attach(sinks: list, store, data_dir: str) -> list:
    """The service's sinks with the store's: configured `store` sinks get the service's store;
    with none configured, one is added (the store is on by default)."""
    mine = [s for s in sinks if isinstance(s, StoreSink)]
    if store is None:
        if mine:
            raise ValueError("a sink of type store needs a store: [analytics] store is off")
        return sinks
    for s in mine:
        s.store = store
    return sinks if mine else [*sinks, StoreSink("store", data_dir, store=store)]


def _dead(sink: str, detail: str, line: bytes) -> bytes:
    return msgspec.json.encode({
        "batch_id": None, "index": None, "reason": "store_refused", "detail": detail, "sink": sink,
        "received_time": time.time_ns() // 1_000_000, "raw": line.decode("utf-8", "replace")}) + b"\n"
