"""Runs a sink: reads the log from the sink's durable cursor, delivers, then moves the cursor."""

import asyncio
import logging
import random
import time

from .log import DEAD, Cursor, Log
from .sinks import Misconfigured

log = logging.getLogger("collector.delivery")

_WHY = {  # a cursor found unusable on start, by reason
    "empty": "is empty: the whole log is delivered again",
    "unreadable": "holds no position: the whole log is delivered again",
    "past_end": "is at {}, past the log's end",
    "mid_record": "is at {}, inside a record: that record is delivered again",
}


class Delivery:
    def __init__(self, log_: Log, sink, cursor_dir: str, metrics):
        self.log = log_
        self.sink = sink
        self.cursor = Cursor(cursor_dir, sink.name)
        self.metrics = metrics
        self.batch_bytes = sink.batch_bytes
        self.position = self._start()
        self._stop = asyncio.Event()
        self._draining = False
        self._saved = 0.0  # when the cursor was last made durable, and where it was then
        self._durable = self.cursor.position
        self.task: asyncio.Task | None = None
        sink.metrics = metrics
        sink.dead_letter = self._dead_letter

    def _start(self) -> int:
        """Where delivery starts: the cursor, checked against the log. A cursor that is no
        record's position (its file damaged, or the log cut shorter than it) would stick the
        sink for good: it moves to the start of the record that holds it, so that nothing is
        skipped (that record is delivered again), or to the end; loudly, and counted."""
        cursor, the_log = self.cursor, self.log
        wanted = max(cursor.position, the_log.start)
        position = the_log.boundary(wanted)
        reason = cursor.problem or ("past_end" if wanted > the_log.end else
                                    "mid_record" if position != wanted else "")
        if reason:
            log.error("sink %s: cursor %s %s; it now starts at position %d", self.sink.name,
                      cursor.path, _WHY[reason].format(wanted), position,
                      extra={"sink": self.sink.name, "reason": reason})
            self.metrics.cursor_resets.labels(self.sink.name, reason).inc()
            cursor.reset(position)
        return position

    async def _dead_letter(self, lines: list[bytes]) -> None:
        """What a destination refused for good: a DEAD record in the log, for the dead_letter sink."""
        if lines:
            await self.log.append(DEAD, time.time_ns() // 1_000_000, b"".join(lines))

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _read(self) -> list:
        """The next records; a sink that batches by time (`linger_seconds`) gets them once
        there are enough (half of `batch_bytes`) or once it has waited that long. It sleeps
        through the wait rather than waking at every group commit to count: under load a
        commit comes every few milliseconds, for every sink."""
        records = self.log.read(self.position, self.batch_bytes)
        linger = self.sink.linger_seconds
        if not records or not linger or self._draining:
            return records
        size = sum(len(r.payload) for r in records)
        if size >= self.batch_bytes // 2:
            return records
        await asyncio.sleep(linger)
        return records + self.log.read(records[-1].end, self.batch_bytes - size)

    async def _run(self) -> None:
        backoff = 0.05
        started = False
        while not self._stop.is_set():
            records = []
            try:
                if not started:
                    await self.sink.start()
                    started = True
                records = await self._read()
                self.metrics.sink_lag.labels(self.sink.name).set(self.log.end - self.position)
                if not records:
                    await self._save_if_due()
                    await self.log.wait_beyond(self.position, timeout=0.5)
                    continue
                await self.sink.write(records)
            except asyncio.CancelledError:
                raise
            except Misconfigured as exc:
                self.metrics.sink_failed(self.sink.name, self._events(records))
                log.error("sink %s: %s; stopped, not retried: its events wait in the log for a "
                          "restart with the configuration fixed", self.sink.name, exc,
                          extra={"sink": self.sink.name, "error": "misconfigured"})
                return
            except Exception as exc:  # noqa: BLE001 - the sink is down: wait, then try the same records again
                self.metrics.sink_failed(self.sink.name, self._events(records))
                log.warning("sink %s: %s; retrying in %.2fs", self.sink.name, exc or type(exc).__name__,
                            backoff, extra={"sink": self.sink.name, "error": type(exc).__name__})
                await self._pause(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            self.position = records[-1].end
            took = any(r.kind in self.sink.kinds for r in records)
            if took and not self.sink.counts_itself:
                self.metrics.sink_events.labels(self.sink.name, "delivered").inc(self._events(records))
            # The cursor moves at once past what the sink took (a write to the page cache,
            # which a crash of the process does not lose), and is made durable at most once a
            # second; past records it only skipped (not of its kinds) it moves then too.
            if took:
                self.cursor.note(self.position)
            await self._save_if_due()

    def _events(self, records) -> int:
        """The events (lines) of the records the sink takes."""
        return sum(r.payload.count(b"\n") for r in records if r.kind in self.sink.kinds)

    async def _save_if_due(self) -> None:
        if self.position != self._durable and time.monotonic() - self._saved >= 1.0:
            await asyncio.to_thread(self.cursor.save, self.position)
            self._saved, self._durable = time.monotonic(), self.cursor.position

    async def drain(self, timeout: float) -> bool:
        """Deliver what the log holds (for a graceful stop); True if the sink caught up."""
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < self.log.end and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.position >= self.log.end

    async def stop(self, wait: float = 5.0) -> None:
        """Let the sink finish what it is doing (a write, a cursor save: work in a thread goes
        on even when its task is cancelled), for at most `wait` seconds; then save the cursor
        and stop the sink."""
        self._stop.set()
        if self.task is not None:
            if not (await asyncio.wait({self.task}, timeout=wait))[0]:
                self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001 - stopping anyway, and said
                log.error("sink %s stopped with %s", self.sink.name, exc, extra={"sink": self.sink.name})
        if self.position != self._durable:
            await asyncio.to_thread(self.cursor.save, self.position)
        self.cursor.close()
        await self.sink.stop()
