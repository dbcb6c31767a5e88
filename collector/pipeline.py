"""What happens to one batch: admission, decode, per-project rules, dedup, the log, the reply.

Every event gets a result, every reply says how durable the data is, and a refusal for load
says when to come back. Nothing is acknowledged as `logged` before it is fsynced.
"""

import asyncio
import base64
import collections
import fnmatch
import logging
import re
import time

import grpc
import msgspec

from . import implementation
from .decode import decode as _decode_batch, event_keys
from .errors import BatchError, TooLarge
from .log import DEAD, EVENTS, Log, LogFull, crc32
from .v1 import collector_pb2 as pb

log = logging.getLogger("collector.pipeline")

_STATUS = {code: code.value[0] for code in grpc.StatusCode}
_ACCEPTED, _DUPLICATE, _FILTERED, _OK = ("accepted", ""), ("duplicate", ""), ("filtered", ""), ("ok", "")


IdSet = implementation.idset.IdSet  # (project, event id) pairs held for dedup, native or pure

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

    def any_for(self, project: int) -> bool:
        """Whether the project has rules at all (if not, nothing of it is filtered)."""
        allow, deny = self._by_project.get(project, (None, None))
        return allow is not None or deny is not None


class Dedup:
    """(project, event id) pairs seen within the window: the last `max_events` accepted ids
    that arrived within `max_seconds`.

    An id joins the set (`IdSet`, native or pure) when its batch is held (checked, and being
    logged), so that two copies arriving at once cannot both be accepted; it leaves again if
    the batch is not logged after all. Once logged, the batch's ids join the window's order of
    arrival, a queue of (time, project, ids), so that they age out together; held ids are not
    in that queue yet, so they never age out.
    """

    def __init__(self, max_events: int, max_seconds: float):
        self.max_events = max_events
        self.max_seconds = max_seconds
        self._ids = IdSet()
        self._order: collections.deque = collections.deque()  # [time, project, ids], oldest first
        self._size = 0

    def __len__(self) -> int:
        """The ids in the window."""
        return self._size

    @property
    def held(self) -> int:
        """The ids of batches being logged."""
        return len(self._ids) - self._size

    def _expire(self, now: float) -> None:
        order = self._order
        while order and (order[0][0] < now - self.max_seconds or self._size > self.max_events):
            entry = order[0]
            ids = entry[2]
            excess = self._size - self.max_events
            if entry[0] >= now - self.max_seconds and len(ids) > excess:  # ages out in part
                entry[2] = ids[excess:]
                ids = ids[:excess]
            else:
                order.popleft()
            self._ids.drop(entry[1], ids)
            self._size -= len(ids)

    def seen(self, project: int, event_id: str) -> bool:
        return self._ids.contains(project, event_id)

    def hold_if_new(self, project: int, ids):
        """Hold all the ids (a list, or a Decoded's), if none is in the window or held and none
        comes twice (the usual case, checked at once): what `commit` or `release` takes;
        otherwise hold none and return None."""
        return self._ids.hold_new(project, ids)

    def hold(self, project: int, ids):
        """Hold ids that are known to be neither seen nor held: what `commit` or `release` takes."""
        return self._ids.hold(project, ids)

    def commit(self, project: int, ids, now: float) -> None:
        """The held ids were accepted: they join the window's order."""
        if not len(ids):
            return
        self._size += len(ids)
        self._order.append([now, project, ids])
        self._expire(now)

    def release(self, project: int, ids) -> None:
        """The held ids were not accepted after all."""
        if len(ids):
            self._ids.drop(project, ids)


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

    def most(self, project: int) -> int:
        """The most bytes one batch can ever take."""
        return min(self.total, self.per_project) if project else self.total

    def claim(self, size: int, project: int) -> bool:
        """Count bytes already taken for no project (the request named none) against the
        batch's own project too, once its header has been read."""
        if self._by_project[project] + size > self.per_project:
            if not self._by_project[project]:
                del self._by_project[project]
            return False
        self._by_project[project] += size
        return True

    def unclaim(self, size: int, project: int) -> None:
        self._by_project[project] -= size
        if not self._by_project[project]:
            del self._by_project[project]

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
        self.disk_used = 0  # bytes of the data directory and the sinks' own, at the last count
        self.disk_log_end = log.end  # the log's end then
        log.on_commit = metrics.fsync_seconds.observe  # once per group commit
        metrics.inflight_bytes.set_function(lambda: self.budget.used)
        for labels in (_ACCEPTED, _DUPLICATE, _FILTERED):  # shown from the start, at 0
            metrics.events.inc(labels, 0)
        metrics.batches.inc(_OK, 0)

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

    def _resent(self, key, batch_id: str, data):
        """The answer to a batch_id already logged: its reply again if this is the same batch
        (a resend), a refusal if it is another one, which the first reply would lose."""
        digest, reply = self._replies[(key, batch_id)]
        if digest == _digest(data):
            return reply
        return self._refuse(batch_id, grpc.StatusCode.ALREADY_EXISTS,
                            f"batch_id {batch_id!r} was already used for another batch; nothing of "
                            "this one was kept: give each batch an id of its own")

    def _refuse(self, batch_id: str, status, detail: str, retry_after_ms: int = 0, code: str = ""):
        self.metrics.batches.inc(("refused", status.name.lower()))
        reply = pb.IngestReply(batch_id=batch_id, detail=detail, batch_error=code,
                               retry_after_ms=retry_after_ms, status=_STATUS[status])
        return Refused(status, reply)

    def _slow_down(self, batch_id: str) -> Refused:
        """Refused for the bytes in flight (the batch's, or its normalised events')."""
        return self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "too many bytes in flight; slow down", self.config.limits.retry_after_ms)

    def too_large(self, batch_id: str, size: int) -> Refused:
        """A request over limits.max_message_bytes: refused for good (not to be sent again)."""
        return self._refuse(batch_id, grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is {size} bytes, more than limits.max_message_bytes "
                            f"({self.config.limits.max_message_bytes}); nothing of it was kept and "
                            "sending it again gives the same: split the batch")

    def draining(self, batch_id: str) -> Refused:
        """A batch that came after the collector started to drain: to be sent again."""
        return self._refuse(batch_id, grpc.StatusCode.UNAVAILABLE,
                            "the collector is draining; nothing of this batch was kept",
                            self.config.limits.retry_after_ms)

    def disk_full(self) -> bool:
        """Whether the log and the sinks' files (measured every half second, plus what the
        log took since) are at limits.max_disk_bytes."""
        return self.disk_used + self.log.end - self.disk_log_end >= self.config.limits.max_disk_bytes

    def not_a_request(self, detail: str) -> pb.IngestReply:
        """The reply to bytes that are not an IngestRequest (counted as a refused batch)."""
        return self._refuse("", grpc.StatusCode.INVALID_ARGUMENT, detail).reply

    async def ingest(self, request: tuple, allowed, key: str | None):
        """The reply to one batch, or (status, reply) when the whole batch is refused (returned,
        not raised: a raised refusal would keep the caller's frame in a reference cycle)."""
        result = self.submit(request, allowed, key)
        if isinstance(result, asyncio.Future):
            result = await result
        if isinstance(result, Refused):
            return result.status, result.reply
        return result

    def submit(self, request: tuple, allowed, key: str | None, done=None):
        """Work on one batch up to the log, without waiting for the log. The request is
        (batch_id, format, batch, project_id) as `read_request` gives it. The result is the
        reply, or Refused when the whole batch is refused. It is returned when it is known at
        once (a refusal, a resend); otherwise the batch is in the log's queue, and `done(result)`
        is called once it is fsynced (or the log failed), or, without `done`, a future gives it.

        This runs the CPU work (admission, decode, rules, dedup) at once and leaves only the
        fsync to wait for, so a stream can have many batches in the log's queue without a task
        for each."""
        batch_id, which, data, project = request
        if which is None:
            return self._refuse(batch_id, grpc.StatusCode.INVALID_ARGUMENT, "no batch in the request")
        if batch_id and (key, batch_id) in self._replies:
            return self._resent(key, batch_id, data)
        if allowed is not None and project and project not in allowed:
            return self._refuse(batch_id, grpc.StatusCode.PERMISSION_DENIED,
                                f"this API key may not send to project {project}")
        limits = self.config.limits
        if self.log.full():
            return self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                "the local log is at its disk cap; sinks are behind",
                                limits.retry_after_ms * 5)
        if self.disk_full():
            return self._refuse(batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                "the log and the sinks' files are at limits.max_disk_bytes "
                                f"({limits.max_disk_bytes}); outputs must be taken away",
                                limits.retry_after_ms * 5)
        size = len(data)
        if not self.budget.take(size, project):
            return self._slow_down(batch_id)
        try:
            work = self._work(batch_id, data, which, allowed, key, project)
        except BaseException:
            self.budget.give(size, project)
            raise
        if not isinstance(work, _Logging):  # answered without the log
            self.budget.give(size, project)
            return work
        work.budget = (size + work.output, work.claimed or project)
        if done is None:  # the caller awaits; it may give up (a cancelled call), the work goes on
            fut = asyncio.get_running_loop().create_future()

            def settle(result, fut=fut):
                if not fut.done():
                    fut.set_result(result)

            work.done = settle
            return fut
        work.done = done
        return None

    def _work(self, batch_id, data, fmt: str, allowed, key, budget_project: int):
        """Decode, rules, dedup, and the records queued in the log: a _Logging, or the result
        (Refused) when there is nothing to wait for. The normalised events count against the
        bytes in flight too (`budget_project` is the project the batch's bytes were taken for):
        each event repeats the header, so they can be many times the batch."""
        received = time.time_ns() // 1_000_000
        started = time.perf_counter()
        limits = self.config.limits
        # the most its events may take: past it the batch could never be admitted
        cap = max(1, min(limits.max_batch_output_bytes, self.budget.most(budget_project) - len(data)))
        try:
            decoded = _decode_batch(data, format=fmt, received_time=received, max_output=cap)
        except TooLarge as exc:  # a limit of ours, not a fault of the batch: not dead-lettered
            return self._refuse(batch_id, grpc.StatusCode.INVALID_ARGUMENT,
                                f"{exc}, more than one batch may take (limits.max_batch_output_bytes"
                                " and inflight_bytes): send fewer events per batch, or shorter values")
        except BatchError as exc:
            self.metrics.batches.inc(("batch_error", exc.code))
            record = _dead_record(batch_id, None, exc.code, data, fmt, exc.message,
                                  owner=_claimed_owner(data, fmt, budget_project, allowed))
            reply = pb.IngestReply(batch_id=batch_id, batch_error=exc.code, detail=exc.message,
                                   durability=pb.DURABILITY_LOGGED,
                                   status=_STATUS[grpc.StatusCode.INVALID_ARGUMENT])
            return self._log(_Logging(self, batch_id, key, _digest(data), reply, batch_error=True),
                             [(DEAD, received, record)])
        finally:
            self.metrics.decode_seconds.observe(time.perf_counter() - started)

        jsonl = decoded.to_jsonl()
        project = decoded.project_id
        if allowed is not None and project not in allowed:
            return self._refuse(batch_id, grpc.StatusCode.PERMISSION_DENIED,
                                f"this API key may not send to project {project}")
        output = len(jsonl)
        if len(data) + output > self.budget.most(project):  # could never be admitted
            return self._refuse(batch_id, grpc.StatusCode.INVALID_ARGUMENT,
                                f"the batch and its normalised events take {len(data) + output} bytes, "
                                "more than one batch may take (limits.inflight_bytes_per_project): "
                                "send fewer events per batch, or shorter values")
        claimed = 0
        if not budget_project and project:  # the request named no project: the batch's own counts
            if not self.budget.claim(len(data), project):
                return self._slow_down(batch_id)
            budget_project = claimed = project
        if not self.budget.take(output, budget_project):
            if claimed:
                self.budget.unclaim(len(data), claimed)
            return self._slow_down(batch_id)
        try:
            work = self._keep(batch_id, key, data, fmt, decoded, jsonl, received)
        except BaseException:
            self.budget.give(output, budget_project)
            if claimed:
                self.budget.unclaim(len(data), claimed)
            raise
        if isinstance(work, _Logging):
            work.output = output
            work.claimed = claimed
        else:
            self.budget.give(output, budget_project)
            if claimed:
                self.budget.unclaim(len(data), claimed)
        return work

    def _keep(self, batch_id, key, data, fmt, decoded, jsonl, received):
        """Rules and dedup on the decoded batch, then its records queued in the log."""
        project = decoded.project_id
        results = [pb.EventResult(index=i, code=code) for i, code in decoded.rejected]
        filtered = duplicate = 0
        held = None if self.rules.any_for(project) else self.dedup.hold_if_new(project, decoded)
        if held is not None:  # the usual case: nothing filtered, no duplicates; every event is kept
            lines = len(held)
            kept = range(lines)
        else:
            keys = event_keys(jsonl)
            lines = len(keys)
            if decoded.rejected:  # the batch's index of each line
                gone = {i for i, _ in decoded.rejected}
                indexes = [i for i in range(len(keys) + len(gone)) if i not in gone]
            else:
                indexes = range(len(keys))
            kept, held = [], []  # kept: positions in the batch's lines
            batch_ids = set()
            for n, ((event_id, action), index) in enumerate(zip(keys, indexes)):
                if self.rules.filtered(project, action):
                    filtered += 1
                    results.append(pb.EventResult(index=index, code="filtered",
                                                  detail=f"{action} is filtered for project {project}"))
                    continue
                if event_id in batch_ids or self.dedup.seen(project, event_id):
                    duplicate += 1
                    results.append(pb.EventResult(index=index, code="duplicate",
                                                  detail=f"event {event_id} was already accepted"))
                    continue
                batch_ids.add(event_id)
                held.append(event_id)
                kept.append(n)
            results.sort(key=lambda r: r.index)
            held = self.dedup.hold(project, held)

        try:
            return self._queue(batch_id, key, data, fmt, decoded, jsonl, kept, lines, held,
                               results, duplicate, filtered, received)
        except BaseException:
            self.dedup.release(project, held)
            raise

    def _queue(self, batch_id, key, data, fmt, decoded, jsonl, kept, lines, held, results,
               duplicate, filtered, received):
        """The batch's records queued in the log (its held ids released if they cannot be)."""
        records = []
        if len(kept) == lines and kept:  # every decoded event is kept
            records.append((EVENTS, received, jsonl))
        elif kept:
            split = jsonl.split(b"\n")
            records.append((EVENTS, received, b"".join(split[n] + b"\n" for n in kept)))
        rejected = decoded.rejected
        if rejected:
            raws, user = _raw_events(data, fmt, [i for i, _ in rejected])
            owner = (decoded.project_id, user) if user is not None else None
            records.append((DEAD, received, b"".join(
                _dead_record(batch_id, i, code, data, fmt, "", raw, owner)
                for (i, code), raw in zip(rejected, raws))))
        reply = pb.IngestReply(
            batch_id=batch_id, accepted=len(kept), duplicate=duplicate, filtered=filtered,
            rejected=len(rejected), results=results, durability=pb.DURABILITY_LOGGED,
        )
        project = decoded.project_id
        work = _Logging(self, batch_id, key, _digest(data), reply, project=project, held=held,
                        rejected=rejected)
        if not records:  # nothing to log (an empty batch, or every event a duplicate)
            return work.finish()
        result = self._log(work, records)
        if not isinstance(result, _Logging):
            self.dedup.release(project, held)
        return result

    def _log(self, work: "_Logging", records):
        """Queue the records in the log: the work, now waiting for the log, or Refused."""
        try:
            self.log.append_many(records, work.logged)
        except LogFull as exc:
            return self._refuse(work.batch_id, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                self.config.limits.retry_after_ms * 5)
        return work

    def _remember(self, key, batch_id: str, digest, reply) -> None:
        if not batch_id:
            return
        self._replies[(key, batch_id)] = digest, reply
        while len(self._replies) > 10_000:
            self._replies.popitem(last=False)


class _Logging:
    """One batch whose records are in the log's queue: what to do once they are fsynced."""

    __slots__ = ("pipeline", "batch_id", "key", "digest", "reply", "project", "held", "rejected",
                 "batch_error", "budget", "output", "done", "claimed")

    def __init__(self, pipeline, batch_id, key, digest, reply, *, project=0, held=(), rejected=(),
                 batch_error=False):
        self.pipeline = pipeline
        self.project = project
        self.batch_id = batch_id
        self.key = key
        self.digest = digest  # of the batch's bytes: a resend must match it
        self.reply = reply
        self.held = held
        self.rejected = rejected
        self.batch_error = batch_error
        self.budget = None
        self.output = 0  # bytes of normalised events counted in flight
        self.claimed = 0  # the project its bytes were counted for once decoded (none named)
        self.done = None

    def logged(self, positions, exc) -> None:
        """The log's answer: reply (or refuse), and always give back the bytes in flight."""
        p = self.pipeline
        try:
            if exc is not None:
                p.dedup.release(self.project, self.held)
                if isinstance(exc, OSError):
                    result = p._refuse(self.batch_id, grpc.StatusCode.UNAVAILABLE,
                                       f"the local log failed: {exc}", p.config.limits.retry_after_ms)
                else:
                    log.error("log append failed: %r", exc)
                    result = p._refuse(self.batch_id, grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            else:
                p.dedup.commit(self.project, self.held, time.monotonic())
                result = self.finish()
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the reply
            log.exception("ingest failed")
            result = p._refuse(self.batch_id, grpc.StatusCode.INTERNAL, f"internal error: {exc}")
        finally:
            if self.budget is not None:
                p.budget.give(*self.budget)
        self.done(result)

    def finish(self):
        """The batch is logged: count it, remember the reply (for resends), and give it."""
        p, reply = self.pipeline, self.reply
        p._remember(self.key, self.batch_id, self.digest, reply)
        if self.batch_error:
            return Refused(grpc.StatusCode.INVALID_ARGUMENT, reply)
        events = p.metrics.events
        events.inc(_ACCEPTED, reply.accepted)
        if reply.duplicate:
            events.inc(_DUPLICATE, reply.duplicate)
        if reply.filtered:
            events.inc(_FILTERED, reply.filtered)
        for _, code in self.rejected:
            events.inc(("rejected", code))
        p.metrics.batches.inc(_OK)
        return reply


def _digest(data) -> tuple:
    """What ties a remembered reply to its batch: the bytes' length and CRC-32 (compiled, a
    few GB/s; a cryptographic digest would add about a tenth to a batch's decoding)."""
    return len(data), crc32(data)


def _claimed_owner(data, fmt: str, project: int | None, allowed):
    """(project, user) a batch refused whole is filed under: the project the API key was
    checked for (the request's, else the key's only one, else the batch's own if the key may
    send to it), never one the bytes merely claim; the batch's user id when it can be read.
    None when neither is known."""
    pid = uid = None
    try:
        if fmt == "json":
            doc = _any.decode(data)
            if type(doc) is dict:
                pid, uid = doc.get("pid"), doc.get("uid")
        else:
            from .v1 import batch_pb2

            b = batch_pb2.Batch.FromString(bytes(data))
            pid = b.project_id if b.HasField("project_id") else None
            uid = b.user_id if b.HasField("user_id") else None
    except Exception:  # noqa: BLE001 - bytes that cannot be read name no one
        pass
    pid = pid if type(pid) is int else None
    uid = uid if type(uid) is str else None
    if not project:
        if allowed is None or pid in allowed:
            project = pid
        elif len(allowed) == 1:
            project = next(iter(allowed))
        else:
            project = None
    if project is None and uid is None:
        return None
    return project, uid


def _raw_events(data, fmt: str, rejected: list):
    """The raw text of each rejected event (by index, JSON), or None where it cannot be had; and
    the batch's user id, which an event's own text lacks (a user's deletion finds their dead
    letters by it), or None."""
    if fmt == "json":
        try:
            batch = _any.decode(data)
            pl = batch["pl"]
            return [_encode(pl[i]).decode("utf-8", "replace") for i in sorted(rejected)], batch["uid"]
        except Exception:  # noqa: BLE001 - the record then carries the whole batch
            pass
    return [None] * len(rejected), None


def _dead_record(batch_id, index, reason, data, fmt: str, detail: str = "", raw=None,
                 owner=None) -> bytes:
    """One dead-letter line: what was refused, why, and the bytes to look at (with one event's
    bytes, `owner`: the batch's project and user)."""
    rec = {"batch_id": batch_id, "index": index, "reason": reason, "detail": detail,
           "received_time": time.time_ns() // 1_000_000}
    if owner is not None:
        rec["project_id"], rec["user_id"] = owner
    if raw is not None:
        rec["raw"] = raw
    elif fmt == "json":
        try:
            rec["raw"] = str(data, "utf-8")
        except UnicodeDecodeError:
            rec["raw"], rec["raw_encoding"] = base64.b64encode(data).decode(), "base64"
    else:
        rec["raw"], rec["raw_encoding"] = base64.b64encode(data).decode(), "base64"
    return _encode(rec) + b"\n"
