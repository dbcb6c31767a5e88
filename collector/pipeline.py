"""What happens to one batch: admission, decode, per-project rules, dedup, the log, the reply.

Every event gets a result, every reply says how durable the data is, and a refusal for load
says when to come back. Nothing is acknowledged as `logged` before it is fsynced.
"""

import asyncio
import base64
import collections
import fnmatch
import re
import time

import grpc
import msgspec

from .decode import decode as _decode_batch
from .errors import BatchError
from .log import DEAD, EVENTS, Log, LogFull
from .v1 import collector_pb2 as pb

_STATUS = {code: code.value[0] for code in grpc.StatusCode}


class _Key(msgspec.Struct):
    """The fields of a normalised event that the pipeline itself looks at."""

    event_id: str
    action: str


_keys = msgspec.json.Decoder(_Key)
_any = msgspec.json.Decoder()
_encode = msgspec.json.encode


def patterns(names: list[str]):
    """A matcher for action names: exact names and shell-style patterns (`poll.*`)."""
    if not names:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(n)})" for n in names)).match


class Rules:
    """Per-project allow and deny lists; a denied event is `filtered` (counted, not dead)."""

    def __init__(self, rules: dict):
        self._by_project = {
            int(project): (patterns(r.allow), patterns(r.deny)) for project, r in rules.items()
        }

    def filtered(self, project: int, action: str) -> bool:
        allow, deny = self._by_project.get(project, (None, None))
        if deny is not None and deny(action):
            return True
        return allow is not None and not allow(action)


class Dedup:
    """(project, event id) pairs seen within the window: the last `max_events` accepted ids
    that arrived within `max_seconds`. An id is held as `pending` while its batch is being
    logged, so that two copies arriving at once cannot both be accepted."""

    def __init__(self, max_events: int, max_seconds: float):
        self.max_events = max_events
        self.max_seconds = max_seconds
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._pending: set = set()

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen and (len(seen) > self.max_events or next(iter(seen.values())) < now - self.max_seconds):
            seen.popitem(last=False)

    def seen(self, key) -> bool:
        return key in self._seen or key in self._pending

    def hold(self, keys) -> None:
        self._pending.update(keys)

    def commit(self, keys, now: float) -> None:
        for key in keys:
            self._pending.discard(key)
            self._seen[key] = now
        self._expire(now)

    def release(self, keys) -> None:
        self._pending.difference_update(keys)


class Budget:
    """Bytes of batches in flight, all together and per project. Taking more than there is
    fails at once: the caller is told to slow down instead of being queued."""

    def __init__(self, total: int, per_project: int):
        self.total = total
        self.per_project = per_project
        self.used = 0
        self._by_project: dict[int, int] = collections.defaultdict(int)

    def take(self, size: int, project: int) -> bool:
        if self.used + size > self.total:
            return False
        if project and self._by_project[project] + size > self.per_project:
            return False
        self.used += size
        if project:
            self._by_project[project] += size
        return True

    def give(self, size: int, project: int) -> None:
        self.used -= size
        if project:
            self._by_project[project] -= size
            if not self._by_project[project]:
                del self._by_project[project]


class Refused(Exception):
    """The batch is refused as a whole: carries the gRPC status and the reply to send."""

    def __init__(self, status: grpc.StatusCode, reply: pb.IngestReply):
        super().__init__(reply.detail)
        self.status = status
        self.reply = reply


class Pipeline:
    def __init__(self, config, log: Log, metrics):
        self.config = config
        self.log = log
        self.metrics = metrics
        self.rules = Rules(config.rules)
        self.dedup = Dedup(config.dedup.window_events, config.dedup.window_seconds)
        self.budget = Budget(config.limits.inflight_bytes, config.limits.inflight_bytes_per_project)
        self.keys = {key: frozenset(projects) for key, projects in config.api_keys.items()}
        self._replies: collections.OrderedDict = collections.OrderedDict()  # idempotent resends

    # ------------------------------------------------------------------------------ auth

    def projects_for(self, key: str | None):
        """The projects a key may send to (None: any), or raise Refused(UNAUTHENTICATED)."""
        if not self.keys:
            return None
        if key is None or key not in self.keys:
            raise self._refuse("", grpc.StatusCode.UNAUTHENTICATED,
                               "missing or unknown API key (authorization: Bearer <key>)")
        return self.keys[key]

    # ---------------------------------------------------------------------------- ingest

    def _refuse(self, batch_id: str, status, detail: str, retry_after_ms: int = 0, code: str = ""):
        self.metrics.batches.labels("refused", status.name.lower()).inc()
        reply = pb.IngestReply(batch_id=batch_id, detail=detail, batch_error=code,
                               retry_after_ms=retry_after_ms, status=_STATUS[status])
        return Refused(status, reply)

    async def ingest(self, request: pb.IngestRequest, allowed, key: str | None) -> pb.IngestReply:
        """The reply to one batch; raises Refused when the whole batch is refused."""
        batch_id = request.batch_id
        cached = self._replies.get((key, batch_id)) if batch_id else None
        if cached is not None:  # a resend of a batch already logged: the same answer
            return cached
        which = request.WhichOneof("batch")
        if which is None:
            raise self._refuse(batch_id, grpc.StatusCode.INVALID_ARGUMENT, "no batch in the request")
        data = request.json if which == "json" else request.protobuf
        project = request.project_id
        if allowed is not None and project and project not in allowed:
            raise self._refuse(batch_id, grpc.StatusCode.PERMISSION_DENIED,
                               f"this API key may not send to project {project}")
        limits = self.config.limits
        if self.log.full():
            raise self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "the local log is at its disk cap; sinks are behind",
                               limits.retry_after_ms * 5)
        size = len(data)
        if not self.budget.take(size, project):
            raise self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "too many bytes in flight; slow down", limits.retry_after_ms)
        self.metrics.inflight_bytes.set(self.budget.used)
        try:
            return await self._ingest(batch_id, data, which, allowed, key)
        finally:
            self.budget.give(size, project)
            self.metrics.inflight_bytes.set(self.budget.used)

    async def _ingest(self, batch_id, data: bytes, fmt: str, allowed, key) -> pb.IngestReply:
        received = time.time_ns() // 1_000_000
        started = time.perf_counter()
        try:
            decoded = _decode_batch(data, format=fmt, received_time=received)
        except BatchError as exc:
            self.metrics.batches.labels("batch_error", exc.code).inc()
            record = _dead_record(batch_id, None, exc.code, data, fmt, exc.message)
            await self._append(batch_id, [(DEAD, received, record)])
            reply = pb.IngestReply(batch_id=batch_id, batch_error=exc.code, detail=exc.message,
                                   durability=pb.DURABILITY_LOGGED,
                                   status=_STATUS[grpc.StatusCode.INVALID_ARGUMENT])
            self._remember(key, batch_id, reply)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, reply) from None
        finally:
            self.metrics.decode_seconds.observe(time.perf_counter() - started)

        jsonl = decoded.to_jsonl()
        rejected = dict(decoded.rejected)
        keys = _keys.decode_lines(jsonl)
        project = decoded.project_id
        if allowed is not None and project not in allowed:
            raise self._refuse(batch_id, grpc.StatusCode.PERMISSION_DENIED,
                               f"this API key may not send to project {project}")
        indexes = [i for i in range(len(keys) + len(rejected)) if i not in rejected]

        results = [pb.EventResult(index=i, code=code) for i, code in decoded.rejected]
        kept, held = [], []  # kept: positions in the batch's lines
        filtered = duplicate = 0
        batch_ids = set()
        for n, (k, index) in enumerate(zip(keys, indexes)):
            if self.rules.filtered(project, k.action):
                filtered += 1
                results.append(pb.EventResult(index=index, code="filtered",
                                              detail=f"{k.action} is filtered for project {project}"))
                continue
            dedup_key = (project, k.event_id)
            if dedup_key in batch_ids or self.dedup.seen(dedup_key):
                duplicate += 1
                results.append(pb.EventResult(index=index, code="duplicate",
                                              detail=f"event {k.event_id} was already accepted"))
                continue
            batch_ids.add(dedup_key)
            held.append(dedup_key)
            kept.append(n)
        results.sort(key=lambda r: r.index)

        records = []
        if len(kept) == len(keys) and kept:  # the usual case: every decoded event is kept
            records.append((EVENTS, received, jsonl))
        elif kept:
            lines = jsonl.split(b"\n")
            records.append((EVENTS, received, b"".join(lines[n] + b"\n" for n in kept)))
        if rejected:
            records.append((DEAD, received, b"".join(
                _dead_record(batch_id, i, code, data, fmt, "", raw)
                for (i, code), raw in zip(decoded.rejected, _raw_events(data, fmt, rejected)))))
        self.dedup.hold(held)
        try:
            await self._append(batch_id, records)
        except BaseException:
            self.dedup.release(held)
            raise
        self.dedup.commit(held, time.monotonic())

        m = self.metrics.events
        m.labels("accepted", "").inc(len(kept))
        if duplicate:
            m.labels("duplicate", "").inc(duplicate)
        if filtered:
            m.labels("filtered", "").inc(filtered)
        for _, code in decoded.rejected:
            m.labels("rejected", code).inc()
        self.metrics.batches.labels("ok", "").inc()
        reply = pb.IngestReply(
            batch_id=batch_id, accepted=len(kept), duplicate=duplicate, filtered=filtered,
            rejected=len(rejected), results=results, durability=pb.DURABILITY_LOGGED,
        )
        self._remember(key, batch_id, reply)
        return reply

    async def _append(self, batch_id: str, records) -> None:
        if not records:
            return
        try:
            await asyncio.gather(*(self.log.append(*r) for r in records))
        except LogFull as exc:
            raise self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                               self.config.limits.retry_after_ms * 5) from None
        except OSError as exc:
            raise self._refuse(batch_id, grpc.StatusCode.UNAVAILABLE,
                               f"the local log failed: {exc}", self.config.limits.retry_after_ms) from None
        finally:
            self.metrics.log_bytes.set(self.log.size)
            self.metrics.fsync_seconds.observe(self.log.fsync_seconds)

    def _remember(self, key, batch_id: str, reply) -> None:
        if not batch_id:
            return
        self._replies[(key, batch_id)] = reply
        while len(self._replies) > 10_000:
            self._replies.popitem(last=False)


def _raw_events(data: bytes, fmt: str, rejected: dict):
    """The raw text of each rejected event (JSON), or None where it cannot be had."""
    if fmt == "json":
        try:
            pl = _any.decode(data)["pl"]
            return [_encode(pl[i]).decode("utf-8", "replace") for i in sorted(rejected)]
        except Exception:  # noqa: BLE001 - the record then carries the whole batch
            pass
    return [None] * len(rejected)


def _dead_record(batch_id, index, reason, data: bytes, fmt: str, detail: str = "", raw=None) -> bytes:
    """One dead-letter line: what was refused, why, and the bytes to look at."""
    rec = {"batch_id": batch_id, "index": index, "reason": reason, "detail": detail,
           "received_time": time.time_ns() // 1_000_000}
    if raw is not None:
        rec["raw"] = raw
    elif fmt == "json":
        try:
            rec["raw"] = data.decode("utf-8")
        except UnicodeDecodeError:
            rec["raw"], rec["raw_encoding"] = base64.b64encode(data).decode(), "base64"
    else:
        rec["raw"], rec["raw_encoding"] = base64.b64encode(data).decode(), "base64"
    return _encode(rec) + b"\n"
