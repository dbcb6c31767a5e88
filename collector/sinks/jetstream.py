"""NATS JetStream: one message per event on `<prefix>.<project_id>.<action>` (`events.8.poll.voted`),
with `Nats-Msg-Id` set to the event id, so JetStream itself drops a repeat that arrives within the
stream's duplicate window: after a retry, after a restart, or from another collector.

`write` returns only once JetStream acknowledged every message, so the cursor never passes an
event the broker does not hold. While the broker is away, `write` fails, the local log keeps the
backlog, and delivery resumes by itself when it is back. Messages acknowledged before a failed
attempt are not sent again when the same records are retried.

Options (the `[[sinks]]` table): `url` (comma-separated servers), `stream`, `subject_prefix`,
`subjects` (of a stream it creates; default `<prefix>.>`), `format` (`json` or `protobuf`: the
`collector.v1.NormalizedEvent` message), `create_stream`, `retention` (limits, interest,
workqueue), `storage` (file, memory), `replicas`, `max_age_seconds`, `max_bytes`,
`duplicate_window_seconds`, `ack_timeout`, `max_pending` (messages awaiting acks at once),
`user`, `password`, `token`, `creds` (a credentials file).
"""

import asyncio
import logging
from typing import Any

import msgspec

from ..event import NormalizedEvent
from ..log import EVENTS, unblanked
from . import Misconfigured, Sink

log = logging.getLogger("collector.sinks.nats")


class _Key(msgspec.Struct):
    event_id: str
    action: str
    project_id: int


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict | None = None


_keys = msgspec.json.Decoder(_Key)
_ack = msgspec.json.Decoder(_PubAck)
_events = msgspec.json.Decoder(NormalizedEvent)
# what JetStream answers to a stream configuration it will never accept (beyond its bad
# requests): more replicas than a single server has
_REFUSED_FOR_GOOD = {10074}
_UNSAFE = str.maketrans({c: "_" for c in " \t\r\n*>"})  # not allowed in a subject token


def subject(prefix: str, project_id: int, action: str) -> str:
    """The subject of an event: subscribers filter with `events.8.poll.*` or `events.*.touch.>`."""
    action = action.translate(_UNSAFE).strip(".") or "_"
    while ".." in action:
        action = action.replace("..", "._.")
    return f"{prefix}.{project_id}.{action}"


class JetStreamSink(Sink):
    kinds = frozenset({EVENTS})
    counts_itself = True  # delivered or duplicate, from JetStream's acks

    def __init__(self, name, data_dir, *, url: str = "nats://127.0.0.1:4222", stream: str = "EVENTS",
                 subject_prefix: str = "events", subjects: list[str] | None = None,
                 format: str = "json", create_stream: bool = True,
                 retention: str = "limits", storage: str = "file", replicas: int = 1,
                 max_age_seconds: float = 0.0, max_bytes: int = -1,
                 duplicate_window_seconds: float = 120.0, ack_timeout: float = 5.0,
                 max_pending: int = 4096, user: str = "", password: str = "", token: str = "",
                 creds: str = ""):
        super().__init__(name, data_dir)
        if format not in ("json", "protobuf"):
            raise ValueError(f"sink {name}: format must be json or protobuf, not {format!r}")
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.stream = stream
        self.prefix = subject_prefix
        self.subjects = list(subjects or [f"{subject_prefix}.>"])
        self.format = format
        self.create_stream = create_stream
        self.stream_options = dict(retention=retention, storage=storage, num_replicas=replicas,
                                   max_age=max_age_seconds or None, max_bytes=max_bytes,
                                   duplicate_window=duplicate_window_seconds)
        self.ack_timeout = ack_timeout
        self.max_pending = max_pending
        self.auth = {k: v for k, v in (("user", user), ("password", password), ("token", token),
                                       ("user_credentials", creds)) if v}
        self._nc: Any = None  # nats-py's client and JetStream context, imported on connecting
        self._js: Any = None
        self._acked: set[str] = set()  # of the records being retried: already in the stream
        self._inbox = ""
        self._seq = 0
        self._waiting: dict[str, str] = {}  # reply token -> event id, awaiting its ack
        self._progress = asyncio.Event()  # set when the acks went down to `_low`, or one failed
        self._low = 0
        self._ack_errors: list[str] = []
        self._delivered = self._duplicates = 0

    async def _connect(self):
        if self._js is not None:
            if not self._nc.is_connected:
                raise ConnectionError("not connected to NATS (reconnecting)")
            return self._js
        import nats
        from nats.js import api
        from nats.js.errors import APIError, BadRequestError, NotFoundError

        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                servers=self.servers, name=f"collector-{self.name}", connect_timeout=2,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect, **self.auth)
        if not self._nc.is_connected:
            raise ConnectionError("not connected to NATS (reconnecting)")
        js = self._nc.jetstream(timeout=self.ack_timeout)
        if self.create_stream:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                o = self.stream_options
                try:
                    await js.add_stream(api.StreamConfig(
                        name=self.stream, subjects=self.subjects,
                        retention=api.RetentionPolicy(o["retention"]), storage=api.StorageType(o["storage"]),
                        num_replicas=o["num_replicas"], max_age=o["max_age"], max_bytes=o["max_bytes"],
                        duplicate_window=o["duplicate_window"]))
                except APIError as exc:
                    if isinstance(exc, BadRequestError) or exc.err_code in _REFUSED_FOR_GOOD:
                        raise Misconfigured(f"JetStream will not create stream {self.stream}: "
                                            f"{exc.description}") from None
                    raise
                log.info("created JetStream stream %s for %s", self.stream, ", ".join(self.subjects))
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        self._js = js

    async def _on_error(self, exc) -> None:
        log.warning("sink %s: NATS: %s", self.name, exc, extra={"sink": self.name})

    async def _on_disconnect(self) -> None:
        log.warning("sink %s: disconnected from NATS", self.name, extra={"sink": self.name})

    async def _on_reconnect(self) -> None:
        log.info("sink %s: reconnected to NATS", self.name, extra={"sink": self.name})

    def _messages(self, records):
        for record in records:
            if record.kind not in self.kinds:
                continue
            for line in unblanked(record.payload).splitlines():
                key = _keys.decode(line)
                if key.event_id in self._acked:
                    continue
                if self.format == "json":
                    payload = line
                else:
                    from ..convert import event_to_protobuf

                    payload = event_to_protobuf(_events.decode(line)).SerializeToString()
                yield key.event_id, subject(self.prefix, key.project_id, key.action), payload

    async def write(self, records) -> None:
        """Publish every event of the records, keeping up to `max_pending` awaiting their acks
        (messages leave back to back, in a few socket writes; acks come on one reply inbox)."""
        await self._connect()
        nc = self._nc
        waiting = self._waiting = {}
        self._ack_errors = []
        self._delivered = self._duplicates = 0
        low = self.max_pending // 2
        sent = 0
        try:
            for event_id, subj, payload in self._messages(records):
                if len(waiting) >= self.max_pending:
                    await self._acks_down_to(low)
                self._seq += 1
                waiting[str(self._seq)] = event_id
                await nc.publish(subj, payload, reply=f"{self._inbox}.{self._seq}",
                                 headers={"Nats-Msg-Id": event_id})
                sent += 1
            await self._acks_down_to(0)
        except ConnectionError as exc:
            raise ConnectionError(f"{len(waiting)} of {sent} messages not stored ({exc})") from None
        finally:
            self._waiting = {}
            if self.metrics is not None:
                self.metrics.sink_events.labels(self.name, "delivered").inc(self._delivered)
                self.metrics.sink_events.labels(self.name, "duplicate").inc(self._duplicates)
        self._acked.clear()

    async def _acks_down_to(self, count: int) -> None:
        """Wait until at most `count` messages await their acks; raise if JetStream refused one,
        or if no ack came for `ack_timeout` seconds."""
        while len(self._waiting) > count:
            if self._ack_errors:
                raise ConnectionError(self._ack_errors[0])
            self._low = count
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), self.ack_timeout)
            except TimeoutError:
                raise ConnectionError("no ack in time") from None
        if self._ack_errors:
            raise ConnectionError(self._ack_errors[0])

    async def _on_ack(self, msg) -> None:
        token = msg.subject.rpartition(".")[2]
        event_id = self._waiting.get(token)
        if event_id is None:  # late: of a write given up on (it is sent again)
            return
        ack = _ack.decode(msg.data) if msg.data else _PubAck(error={"description": "no responders"})
        if ack.error is not None:
            self._ack_errors.append(ack.error.get("description", str(ack.error)))
            self._progress.set()
            return
        del self._waiting[token]
        self._acked.add(event_id)
        if ack.duplicate:
            self._duplicates += 1
        else:
            self._delivered += 1
        if len(self._waiting) <= self._low:
            self._progress.set()

    async def user_deleted(self, notice: dict) -> None:
        """Publish that a user's events received up to a time were deleted, on
        `<prefix>.deleted.<project_id>` (JSON: deletion_id, project_id, user_id, requested_at),
        once: `Nats-Msg-Id` is the deletion's id. Raises until JetStream acknowledged it."""
        await self._connect()
        ack = await self._nc.request(
            f"{self.prefix}.deleted.{notice['project_id']}", msgspec.json.encode(notice),
            timeout=self.ack_timeout, headers={"Nats-Msg-Id": "deletion-" + notice["deletion_id"]})
        if _ack.decode(ack.data).error is not None:
            raise ConnectionError(f"JetStream refused the deletion notice: {ack.data!r}")

    async def stop(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await self._nc.close()
        self._nc = self._js = None
