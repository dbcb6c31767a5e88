"""Users' deletions (ANALYTICS.md section 5) and retention (section 6), across every file the
collector keeps: the analytics store, the local log, the JSON Lines and dead-letter output.

A deletion is a line of a journal (`<data_dir>/deletions.jsonl`, fsynced) before it is
acknowledged, and each change of its status is another line, so a crash at any point resumes it
on the next start. It is `done` once every read path hides the user's events received up to
the request: the store has loaded the log up to the request and removed them, and
`Events.Subscribe` skips them while the log still holds them (`hidden`). It is `purged` once
their bytes are gone too; purges are batched (many deletions share one rewrite of each file)
and run `purge_interval_hours` after the oldest waiting request, or at once on `purge_now`:
- the store rewrites what held them (`Store.purge`);
- the log's records keep their length and position (the sinks' cursors point into it): the
  user's lines are blanked to spaces (`Log.rewrite`), which every reader skips;
- the jsonl and dead-letter files are rewritten without those lines, each atomically.
Sinks that cannot take back what they delivered (webhook, NATS) are sent a `user.deleted` notice
once they have delivered everything up to the request, so it comes after the events it covers.

Retention runs at start and every day: the store's expired events, and the jsonl and dead-letter
lines older than their project's retention (an event by its `time`, a dead letter by when it
was received). The log keeps its own retention (by size, and what every sink has read).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf.message import DecodeError

from ..log import DEAD, EVENTS, Log, fsync_path
from ..sinks.jsonl import DeadLetterSink, JsonlSink
from ..v1 import batch_pb2
from .store import Store

log = logging.getLogger("collector.analytics.deletions")

JOURNAL = "deletions.jsonl"
PUBLIC = ("deletion_id", "user_id", "project_id", "status", "requested_at", "done_at",
          "purged_at", "deleted")
DAY = 86_400.0
CATCH_UP_SECONDS = 30.0  # how long a stage waits for a sink to deliver up to its target
HIDE_AFTER_PURGE_MS = 600_000  # a subscriber may still hold a record read before the blanking
_any = msgspec.json.Decoder()
_encode = msgspec.json.encode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Event(msgspec.Struct):
    """What a deletion or retention reads of a normalised event's line."""

    project_id: int
    user_id: str
    time: int
    received_time: int


class _Dead(msgspec.Struct):
    """What they read of a dead-letter line (`pipeline._dead_record`, the webhook's refusals)."""

    received_time: int = 0
    raw: str | None = None
    raw_encoding: str | None = None
    project_id: int | None = None
    user_id: str | None = None


_events = msgspec.json.Decoder(_Event)
_deads = msgspec.json.Decoder(_Dead)


def dead_owner(line: bytes) -> tuple[int | None, str | None, bytes]:
    """(project, user, raw bytes) of a dead-letter line: from the line's own fields (a rejected
    event's), else from what its raw bytes are (a whole batch: JSON or protobuf; a normalised
    event); None where they cannot be read (then the raw bytes tell whether a user is in it)."""
    d = _deads.decode(line)
    raw = (d.raw or "").encode()
    if d.raw_encoding == "base64":
        raw = base64.b64decode(raw)
        if d.user_id is not None:  # the line's own fields: the project the key was checked for
            return d.project_id, d.user_id, raw
        try:
            b = batch_pb2.Batch.FromString(raw)
        except DecodeError:  # not a batch: the bytes alone
            return d.project_id, d.user_id, raw
        if b.HasField("project_id") and b.HasField("user_id"):
            return b.project_id, b.user_id, raw
        return d.project_id, d.user_id, raw
    if d.user_id is not None:
        return d.project_id, d.user_id, raw
    try:
        doc = _any.decode(raw)
    except msgspec.DecodeError:
        return None, None, raw
    if type(doc) is dict:
        if type(doc.get("user_id")) is str:  # a normalised event a webhook refused
            return doc.get("project_id"), doc["user_id"], raw
        if type(doc.get("uid")) is str:  # a batch refused whole
            return doc.get("pid"), doc["uid"], raw
    return None, None, raw


class Matcher:
    """The lines deletions remove: events of their (project, user) received up to the request.
    `event` and `dead` give the (project, user) of a line to remove, else None."""

    def __init__(self, wanted: dict[tuple[int, str], int]):
        self.wanted = wanted  # (project, user) -> received time up to which to remove
        # a cheap first look: the longest run of plain characters of each user id (escaping
        # cannot change it) must be in a line for it to be one of theirs
        runs = [max(re.findall(r"[A-Za-z0-9_\-]*", user), key=len) for _, user in wanted]
        self.needles = None if len(runs) > 64 or any(len(r) < 4 for r in runs) else \
            [r.encode() for r in set(runs)]

    def maybe(self, data: bytes) -> bool:
        return self.needles is None or any(n in data for n in self.needles)

    def _hit(self, key, received: int):
        up_to = self.wanted.get(key)
        return key if up_to is not None and received <= up_to else None

    def event(self, line: bytes):
        if not self.maybe(line):
            return None
        try:
            e = _events.decode(line)
        except msgspec.DecodeError:
            return None
        return self._hit((e.project_id, e.user_id), e.received_time)

    def dead(self, line: bytes):
        try:
            project, user, raw = dead_owner(line)
            received = _deads.decode(line).received_time
        except msgspec.DecodeError:
            return None
        if user is not None:
            return self._hit((project, user), received)
        # whose it is cannot be read: theirs if it holds their id (as a JSON string, or bytes)
        for key in self.wanted:
            if _encode(key[1]) in raw or key[1].encode() in raw:
                return self._hit(key, received)
        return None


class Retention:
    """The lines retention removes: events older than their project's cutoff (by `time`), dead
    letters received before it. `event` and `dead` give "expired" for them, else None."""

    def __init__(self, cutoff: Callable[[int], int]):
        self.cutoff = cutoff

    def _old(self, project, t: int):
        return "expired" if t < self.cutoff(project if type(project) is int else 0) else None

    def event(self, line: bytes):
        try:
            e = _events.decode(line)
        except msgspec.DecodeError:
            return None
        return self._old(e.project_id, e.time)

    def dead(self, line: bytes):
        try:
            return self._old(dead_owner(line)[0], _deads.decode(line).received_time)
        except msgspec.DecodeError:
            return None


def rewrite_files(directory: str, drop: Callable[[bytes], object]) -> Counter:
    """Rewrite each closed output file (`*.jsonl`) of a directory that holds lines `drop` picks
    (gives a key for), without them: a new file with the same mode, fsynced, then renamed over
    the old one (a crash leaves one or the other whole); a file left empty is removed. The
    lines dropped, by key."""
    dropped: Counter = Counter()
    names = sorted(n for n in os.listdir(directory) if n.endswith(".jsonl")) \
        if os.path.isdir(directory) else []
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            if all(drop(line.rstrip(b"\n")) is None for line in f if line.strip()):
                continue
            f.seek(0)
            tmp = path + ".deleting"
            kept = 0
            with open(tmp, "wb") as out:
                os.fchmod(out.fileno(), os.fstat(f.fileno()).st_mode & 0o777)
                for line in f:
                    key = drop(line.rstrip(b"\n")) if line.strip() else None
                    if key is None:
                        out.write(line)
                        kept += 1
                    else:
                        dropped[key] += 1
                out.flush()
                os.fsync(out.fileno())
        if kept:
            os.replace(tmp, path)
        else:
            os.remove(tmp)
            os.remove(path)
    if names:
        fsync_path(directory)
    return dropped


class Journal:
    """Deletions as JSON Lines: each line a deletion's whole record at one change, appended and
    fsynced before the change counts; the last line of an id wins. A line torn by a crash is
    cut off on open; the file is written again, smaller, when most of its lines are outdated.
    Its methods run in a worker thread, one at a time (the caller sees to it)."""

    def __init__(self, path: str):
        self.path = path
        self.records: dict[str, dict] = {}
        self.lines = 0
        good = 0
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            for line in data.split(b"\n")[:-1]:  # what follows the last newline is torn
                try:
                    rec = _any.decode(line)
                except msgspec.DecodeError:
                    break
                self.records[rec["deletion_id"]] = rec
                self.lines += 1
                good += len(line) + 1
            if good < len(data):
                log.warning("deletions: cut a torn line of %d bytes from %s", len(data) - good, path)
                os.truncate(path, good)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def append(self, records: list[dict]) -> None:
        os.write(self._fd, b"".join(_encode(r) + b"\n" for r in records))
        os.fsync(self._fd)
        self.lines += len(records)

    def compact(self, records: list[dict]) -> None:
        """The file holds these records only, one line each."""
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(_encode(r) + b"\n" for r in records))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_path(os.path.dirname(self.path) or ".")
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.lines = len(records)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Deletions:
    """The deletions of a collector: requested through the HTTP API, completed and purged by a
    background task (`start`/`stop`), retention passes included.

    `deliveries` are the collector's sinks as run (`collector.delivery.Delivery`): the store's
    (its sink has `.store`), the jsonl and dead-letter files', and those sent notices (a sink
    with `user_deleted`)."""

    def __init__(self, data_dir: str, store: Store, log_: Log, deliveries: list, metrics, *,
                 purge_interval_hours: float = 24.0):
        self.store = store
        self.log = log_
        self.deliveries = list(deliveries)
        self.metrics = metrics
        self.purge_interval_ms = int(purge_interval_hours * 3_600_000)
        os.makedirs(data_dir, exist_ok=True)
        self.journal = Journal(os.path.join(data_dir, JOURNAL))
        # (project, user) -> received time up to which their events are hidden from replays
        self.hidden: dict[tuple[int, str], int] = {}
        self._rehide()
        self._lock = asyncio.Lock()  # one stage at a time
        self._writing = asyncio.Lock()  # one journal write at a time
        self._wake = asyncio.Event()
        self._retry: dict[str, tuple[float, float]] = {}  # failed id -> (when, backoff seconds)
        self._notices: dict[tuple[str, str], asyncio.Task] = {}
        self._next_retention = 0.0
        self._next_rehide = 0.0
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ the API's side

    async def request(self, project_id: int, user_id: str) -> dict:
        """Record a deletion durably; its record (status `pending`)."""
        rec: dict[str, Any] = {"deletion_id": str(uuid.uuid4()), "user_id": user_id, "project_id": project_id,
               "status": "pending", "requested_at": now_ms(), "done_at": None, "purged_at": None,
               "deleted": {}, "notified": []}
        await self._write([rec])
        key = (project_id, user_id)
        self.hidden[key] = max(self.hidden.get(key, -1), rec["requested_at"])
        self._wake.set()
        return self._public(rec)

    def get(self, deletion_id: str) -> dict | None:
        rec = self.journal.records.get(deletion_id)
        return None if rec is None else self._public(rec)

    async def purge_now(self) -> dict:
        """Complete the deletions still pending, then purge every deletion not yet purged;
        returns when it is finished: {"purged": ids, "failed": ids}."""
        async with self._lock:
            await self._complete_all(force=True)
            return await self._purge_all(force=True)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._notices.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        async with self._writing:
            self.journal.close()

    # ------------------------------------------------------------------------ running

    @staticmethod
    def _public(rec: dict) -> dict:
        out = {k: rec[k] for k in PUBLIC}
        out["deleted"] = dict(rec["deleted"])
        if rec.get("reason"):
            out["reason"] = rec["reason"]
        return out

    def _rehide(self) -> None:
        """`hidden` from the journal: every deletion not purged, or purged only just now (a
        subscriber may hold a record it read before the blanking)."""
        hidden: dict[tuple[int, str], int] = {}
        recent = now_ms() - HIDE_AFTER_PURGE_MS
        for rec in self.journal.records.values():
            if rec["purged_at"] is None or rec["purged_at"] > recent:
                key = (rec["project_id"], rec["user_id"])
                hidden[key] = max(hidden.get(key, -1), rec["requested_at"])
        self.hidden.clear()  # in place: subscribers hold this dict
        self.hidden.update(hidden)

    async def _write(self, records: list[dict]) -> None:
        """Make these records durable, then current."""
        async with self._writing:
            await asyncio.to_thread(self.journal.append, records)
            for r in records:
                self.journal.records[r["deletion_id"]] = r
            if self.journal.lines > 2 * len(self.journal.records) + 1000:
                await asyncio.to_thread(self.journal.compact, list(self.journal.records.values()))

    async def _set(self, recs: list[dict], **changes) -> None:
        await self._write([{**self.journal.records[r["deletion_id"]], **changes} for r in recs])

    async def _run(self) -> None:
        while True:
            try:
                async with self._lock:
                    await self._complete_all()
                    self._send_notices()
                    await self._purge_all()
                    if time.monotonic() >= self._next_retention:
                        await self.retain()
                        self._next_retention = time.monotonic() + DAY
                if time.monotonic() >= self._next_rehide:
                    self._rehide()
                    self._next_rehide = time.monotonic() + 60.0
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug must not stop deletions for good
                log.exception("deletions: a pass failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass

    def _due(self, rec: dict, force: bool) -> bool:
        if rec["status"] != "failed" or force:
            return True
        return time.monotonic() >= self._retry.get(rec["deletion_id"], (0.0, 0.0))[0]

    async def _failed(self, recs: list[dict], reason: str) -> None:
        log.warning("deletions: %s failed: %s", ", ".join(r["deletion_id"] for r in recs), reason)
        for r in recs:
            backoff = min(self._retry.get(r["deletion_id"], (0.0, 0.5))[1] * 2, 600.0)
            self._retry[r["deletion_id"]] = (time.monotonic() + backoff * (0.5 + random.random()), backoff)
        await self._set(recs, status="failed", reason=reason)

    async def _caught_up(self, deliveries: list, target: int) -> None:
        """Wait until each of these sinks delivered the log up to `target`; raise if one does
        not within CATCH_UP_SECONDS."""
        deadline = time.monotonic() + CATCH_UP_SECONDS
        for d in deliveries:
            while d.position < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"sink {d.sink.name} has not delivered the log up to "
                                       f"position {target} (it is at {d.position})")
                await asyncio.sleep(0.02)

    async def _complete_all(self, force: bool = False) -> None:
        """pending -> running -> done: the store has loaded the log up to the request, then
        removes the user's events from every read."""
        store_sinks = [d for d in self.deliveries if getattr(d.sink, "store", None) is self.store]
        for rec in list(self.journal.records.values()):
            if rec["done_at"] is not None or not self._due(rec, force):
                continue
            try:
                if rec["status"] != "running":
                    await self._set([rec], status="running")
                await self._caught_up(store_sinks, self.log.end)
                n = await asyncio.to_thread(self.store.delete_user, rec["project_id"], rec["user_id"],
                                            rec["requested_at"])
            except Exception as exc:  # noqa: BLE001 - said in the record, and retried
                await self._failed([rec], f"{type(exc).__name__}: {exc}")
                continue
            self.metrics.analytics_removed.labels("deletion", self.store.name).inc(n)
            await self._set([rec], status="done", done_at=now_ms(), reason=None,
                            deleted={**rec["deleted"], self.store.name: n})
            self._retry.pop(rec["deletion_id"], None)

    def _send_notices(self) -> None:
        """One `user.deleted` notice to each sink that takes them, per done deletion, once the
        sink delivered everything up to the request (so the notice comes after what it covers)."""
        for rec in self.journal.records.values():
            if rec["done_at"] is None:
                continue
            for d in self.deliveries:
                key = (rec["deletion_id"], d.sink.name)
                if hasattr(d.sink, "user_deleted") and d.sink.name not in rec["notified"] \
                        and (key not in self._notices or self._notices[key].done()):
                    self._notices[key] = asyncio.get_running_loop().create_task(self._notify(rec, d))

    async def _notify(self, rec: dict, delivery) -> None:
        target = self.log.end
        backoff = 1.0
        while True:
            try:
                while delivery.position < target:
                    await asyncio.sleep(0.2)
                await delivery.sink.user_deleted({k: rec[k] for k in (
                    "deletion_id", "project_id", "user_id", "requested_at")})
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried until the sink takes it
                log.warning("deletions: notice to sink %s: %s; retrying", delivery.sink.name, exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 300.0)
        now = self.journal.records[rec["deletion_id"]]
        await self._set([now], notified=[*now["notified"], delivery.sink.name])

    async def _purge_all(self, force: bool = False) -> dict:
        """done -> purged, for every deletion waiting, once the oldest has waited the purge
        interval (or at once when forced)."""
        waiting = [r for r in self.journal.records.values()
                   if r["done_at"] is not None and r["purged_at"] is None and self._due(r, force)]
        if not waiting or not force and \
                min(r["requested_at"] for r in waiting) + self.purge_interval_ms > now_ms():
            return {"purged": [], "failed": []}
        ids = [r["deletion_id"] for r in waiting]
        try:
            counts = await self._purge(waiting)
        except Exception as exc:  # noqa: BLE001 - said in the records, and retried
            await self._failed(waiting, f"purge: {type(exc).__name__}: {exc}")
            return {"purged": [], "failed": ids}
        purged_at = now_ms()
        done = []
        for r in waiting:
            r = self.journal.records[r["deletion_id"]]
            deleted = dict(r["deleted"])
            for store, n in counts.get((r["project_id"], r["user_id"]), {}).items():
                deleted[store] = deleted.get(store, 0) + n
            done.append({**r, "status": "purged", "purged_at": purged_at, "reason": None,
                         "deleted": deleted})
            self._retry.pop(r["deletion_id"], None)
        await self._write(done)
        return {"purged": ids, "failed": []}

    async def _purge(self, recs: list[dict]) -> dict:
        """Remove the bytes of these deletions' events from every file: {(project, user):
        {store: events removed}} (a user deleted twice in one batch counts once)."""
        wanted: dict[tuple[int, str], int] = {}
        for r in recs:
            key = (r["project_id"], r["user_id"])
            wanted[key] = max(wanted.get(key, -1), r["requested_at"])
        counts: dict[tuple, dict] = {}

        def add(store: str, removed: Counter) -> None:
            for key, n in removed.items():
                counts.setdefault(key, {})[store] = counts.get(key, {}).get(store, 0) + n
                self.metrics.analytics_removed.labels("deletion", store).inc(n)

        def purge_store() -> Counter:
            # events loaded since `done` (a backfill) go too; then the store's files are rewritten
            n = Counter({key: self.store.delete_user(key[0], key[1], up_to)
                         for key, up_to in wanted.items()})
            self.store.purge()
            return n

        add(self.store.name, +await asyncio.to_thread(purge_store))
        matcher = Matcher(wanted)
        target = self.log.end
        add("log", await blank_log(self.log, matcher, target))
        files = [d for d in self.deliveries if isinstance(d.sink, JsonlSink)]
        await self._caught_up(files, target)  # what they read before the blanking is written
        for d in files:
            dead = isinstance(d.sink, DeadLetterSink)
            await asyncio.to_thread(d.sink.finish_file)
            add("dead_letter" if dead else "jsonl_files", await asyncio.to_thread(
                rewrite_files, d.sink.directory, matcher.dead if dead else matcher.event))
        return counts

    # ---------------------------------------------------------------------- retention

    async def retain(self) -> dict:
        """One retention pass over the store and the output files: {store: events removed}."""
        store = self.store
        cutoffs = {p: store.cutoff(p) for p in store.retention_by_project}
        removed = {store.name: await asyncio.to_thread(store.expire, cutoffs, store.cutoff(0))}
        if removed[store.name]:
            await asyncio.to_thread(store.purge)
        old = Retention(store.cutoff)
        for d in self.deliveries:
            if isinstance(d.sink, JsonlSink):
                dead = isinstance(d.sink, DeadLetterSink)
                await asyncio.to_thread(d.sink.finish_file)
                name = "dead_letter" if dead else "jsonl_files"
                gone = await asyncio.to_thread(rewrite_files, d.sink.directory,
                                               old.dead if dead else old.event)
                removed[name] = removed.get(name, 0) + gone["expired"]
        for name, n in removed.items():
            self.metrics.analytics_removed.labels("retention", name).inc(n)
        if any(removed.values()):
            log.info("retention: removed %s", removed)
        return removed


async def blank_log(the_log: Log, matcher: Matcher, target: int) -> Counter:
    """Blank the lines `matcher` picks, in every record the log holds before `target`, to
    spaces of the same length (`Log.rewrite`). The lines blanked, by (project, user)."""
    blanked: Counter = Counter()
    position = the_log.start
    while position < target:
        records = the_log.read(position, 4 << 20)
        if not records:
            break
        for rec in records:
            if rec.position >= target:
                return blanked
            if rec.kind == EVENTS and matcher.maybe(rec.payload):
                pick = matcher.event
            elif rec.kind == DEAD:
                pick = matcher.dead
            else:
                continue
            lines = rec.payload.split(b"\n")
            hit = False
            for i, line in enumerate(lines):
                key = pick(line) if line.strip() else None
                if key is not None:
                    lines[i] = b" " * len(line)
                    blanked[key] += 1
                    hit = True
            if hit:
                await the_log.rewrite(rec, b"\n".join(lines))
        position = records[-1].end
        await asyncio.sleep(0)  # the loop serves others between chunks
    return blanked
