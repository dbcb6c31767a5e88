"""Runs a sink: reads the log from the sink's durable cursor, delivers, then moves the cursor."""

import asyncio
import logging
import random

from .log import Cursor, Log

log = logging.getLogger("collector.delivery")


class Delivery:
    def __init__(self, log_: Log, sink, cursor_dir: str, metrics, *, batch_bytes: int = 4 << 20):
        self.log = log_
        self.sink = sink
        self.cursor = Cursor(cursor_dir, sink.name)
        self.metrics = metrics
        self.batch_bytes = batch_bytes
        self.position = max(self.cursor.position, log_.start)
        self._stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self.sink.start()
        backoff = 0.05
        while not self._stop.is_set():
            records = self.log.read(self.position, self.batch_bytes)
            self.metrics.sink_lag.labels(self.sink.name).set(self.log.end - self.position)
            if not records:
                await self.log.wait_beyond(self.position, timeout=0.5)
                continue
            try:
                await self.sink.write(records)
            except Exception as exc:  # the sink is down: wait, then try the same records again
                self.metrics.sink_errors.labels(self.sink.name).inc()
                log.warning("sink %s: %s; retrying in %.2fs", self.sink.name, exc, backoff)
                try:
                    await asyncio.wait_for(self._stop.wait(), backoff * (0.5 + random.random()))
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            self.position = records[-1].end
            await asyncio.to_thread(self.cursor.save, self.position)

    async def drain(self, timeout: float) -> bool:
        """Deliver what the log holds (for a graceful stop); True if the sink caught up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < self.log.end and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.position >= self.log.end

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                log.error("sink %s stopped with %s", self.sink.name, exc)
        await self.sink.stop()
