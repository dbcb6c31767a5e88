"""Webhook: POSTs events to a customer's endpoint in the export shape analytics customers consume,
a JSON array per request:

    [{"event": "poll.voted", "eventId": "...", "userId": "...", "sessionId": 7, "projectId": 8,
      "broadcastId": "real-madrid-vs-mancity-2026-03-11", "campaignId": 35,
      "timestamp": "2026-03-11T21:15:44.123Z", "label": null, "data": {"pollId": "poll_42"}}]

Every event carries `broadcastId` and `campaignId` at the top level (null when it has none),
and a commerce event (`product.*`, `cart.*`, `checkout.*`) also `orderId`, `sponsorId`, `items`
and `total`: the product's documented payload. They are lifted out of `data`, which keeps the
rest of the event's params as sent.

Requests are batched by count (`max_events`), size (`max_bytes`) and time (`linger_seconds`).
Each is signed: `X-Timestamp: <unix seconds>` and `X-Signature: sha256=<hex>`, the HMAC-SHA256
with the shared `secret` of `<timestamp>.<body>`; a receiver recomputes it over the raw body and
refuses a stale timestamp, so a captured request cannot be replayed later.

Failures: 5xx, 408, timeouts and connection errors are retried with exponential backoff and full
jitter (up to `max_backoff_seconds`); 429 waits for `Retry-After` when it is given (up to ten
minutes); any other 4xx
is final: the request's events go to the dead-letter output with the response status, and
delivery goes on. Delivery is at-least-once, so a receiver dedups by `eventId`.
"""

import asyncio
import email.utils
import hashlib
import hmac
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ..event import NormalizedEvent
from ..log import EVENTS, unblanked
from . import Sink

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("collector.sinks.webhook")


TOP = ("broadcastId", "campaignId")  # lifted out of `data` for every event
COMMERCE_TOP = ("orderId", "sponsorId", "items", "total")  # and for commerce events
COMMERCE = ("product.", "cart.", "checkout.")


class Export(msgspec.Struct, omit_defaults=True, kw_only=True):  # omitted: UNSET commerce keys
    event: str
    eventId: str
    userId: str | None
    sessionId: int | None
    projectId: int
    broadcastId: Any
    campaignId: Any
    timestamp: str
    label: str | None
    orderId: Any = msgspec.UNSET  # commerce events only
    sponsorId: Any = msgspec.UNSET
    items: Any = msgspec.UNSET
    total: Any = msgspec.UNSET
    data: dict


# What an export reads of an event: its keys typed as event.py types them, params as their text.
_READ = ("event_id", "action", "label", "project_id", "user_id", "session_id", "time")
_Event: Any = msgspec.defstruct(
    "_Event",
    [(f.name, f.type) for f in msgspec.structs.fields(NormalizedEvent) if f.name in _READ]
    + [("params", msgspec.Raw)],
)
_events = msgspec.json.Decoder(_Event)
_data = msgspec.json.Decoder(dict)
_encode = msgspec.json.encode


def iso_ms(ms: int) -> str:
    """`2026-03-11T21:15:44.123Z` from milliseconds since the epoch."""
    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


def export(line: bytes) -> Export:
    """A normalised event (one JSON line) in the webhook's export shape."""
    e = _events.decode(line)
    data = _data.decode(e.params)
    lifted = {k: data.pop(k, None) for k in TOP}
    if e.action.startswith(COMMERCE):
        lifted.update((k, data.pop(k, None)) for k in COMMERCE_TOP)
    return Export(event=e.action, eventId=e.event_id, userId=e.user_id, sessionId=e.session_id,
                  projectId=e.project_id, timestamp=iso_ms(e.time), label=e.label, data=data,
                  **lifted)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Signature` value: what a receiver recomputes to check a request."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None


class WebhookSink(Sink):
    kinds = frozenset({EVENTS})
    counts_itself = True  # delivered or dead, request by request

    def __init__(self, name, data_dir, *, url: str, secret: str = "", max_events: int = 500,
                 max_bytes: int = 1 << 20, linger_seconds: float = 1.0, timeout_seconds: float = 10.0,
                 max_backoff_seconds: float = 60.0, headers: dict | None = None):
        super().__init__(name, data_dir)
        self.url = url
        self.secret = secret.encode()
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_seconds = linger_seconds
        self.timeout = timeout_seconds
        self.max_backoff = max_backoff_seconds
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    def _requests(self, records):
        """(body, lines) per request, within max_events and max_bytes."""
        items: list[bytes] = []
        lines: list[bytes] = []
        size = 2
        for record in records:
            if record.kind not in self.kinds:
                continue
            for line in unblanked(record.payload).splitlines():
                item = _encode(export(line))
                if items and (len(items) >= self.max_events or size + len(item) + 1 > self.max_bytes):
                    yield b"[" + b",".join(items) + b"]", lines
                    items, lines, size = [], [], 2
                items.append(item)
                lines.append(line)
                size += len(item) + 1
        if items:
            yield b"[" + b",".join(items) + b"]", lines

    async def write(self, records) -> None:
        for body, lines in self._requests(records):
            await self._post(body, lines)

    async def _post(self, body: bytes, lines: list[bytes]) -> None:
        import aiohttp

        session = self._session
        assert session is not None  # started
        attempt = 0
        while True:
            stamp = str(int(time.time()))  # signed afresh on every attempt
            headers = {**self.headers, "Content-Type": "application/json", "X-Timestamp": stamp}
            if self.secret:
                headers["X-Signature"] = sign(self.secret, stamp, body)
            wait = None
            try:
                async with session.post(self.url, data=body, headers=headers) as resp:
                    status = resp.status
                    text = (await resp.read())[:500].decode("utf-8", "replace")
                    wait = retry_after(resp.headers.get("Retry-After"), time.time()) if status == 429 else None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            if 200 <= status < 300:
                self._count("delivered", len(lines))
                return
            if 400 <= status < 500 and status not in (408, 429):
                log.error("sink %s: %s answered %d (%s); %d events to the dead-letter output",
                          self.name, self.url, status, text, len(lines),
                          extra={"sink": self.name, "status": status, "events": len(lines)})
                await self.dead_letter([_dead(self.name, status, text, line) for line in lines])
                self._count("dead", len(lines))
                return
            if self.metrics is not None:
                self.metrics.sink_failed(self.name, len(lines))
            if wait is None:
                wait = random.uniform(0, min(self.max_backoff, 0.1 * 2 ** min(attempt, 30)))
            else:  # the receiver said how long: that, within reason
                wait = min(wait, 600.0)
            log.warning("sink %s: %s answered %s (%s); retrying in %.2fs", self.name, self.url,
                        status or "nothing", text, wait,
                        extra={"sink": self.name, "status": status, "retry_in": round(wait, 3)})
            attempt += 1
            await asyncio.sleep(wait)

    async def user_deleted(self, notice: dict) -> None:
        """Tell the receiver that a user's events received up to a time were deleted (it cannot
        be made to forget what it was sent): one signed request, retried like events, of one
        `user.deleted` item in the export shape (`eventId` is the deletion's id)."""
        body = b"[" + _encode(Export(
            event="user.deleted", eventId=notice["deletion_id"], userId=notice["user_id"],
            sessionId=None, projectId=notice["project_id"], broadcastId=None, campaignId=None,
            timestamp=iso_ms(notice["requested_at"]), label=None,
            data={"deletion_id": notice["deletion_id"], "received_up_to": notice["requested_at"]})) + b"]"
        await self._post(body, [])

    def _count(self, outcome: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.sink_events.labels(self.name, outcome).inc(n)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _dead(sink: str, status: int, detail: str, line: bytes) -> bytes:
    event = msgspec.json.decode(line)
    return _encode({"batch_id": None, "index": None, "reason": "webhook_refused", "status": status,
                    "detail": detail, "sink": sink, "event_id": event.get("event_id"),
                    "received_time": time.time_ns() // 1_000_000,
                    "raw": line.decode("utf-8")}) + b"\n"
