"""The normalised event (SPEC section 3) and the result of decoding one batch."""

from typing import Any

import msgspec

from .errors import TooLarge


# gc=False: an event holds only JSON values, so it can be in no reference cycle; not tracking the
# many events a batch makes keeps the garbage collector from running over them.
# ---- written by `python -m collector.layout` from spec.py: do not edit ----
class Device(msgspec.Struct, frozen=True, gc=False):
    type: str | None
    manufacturer: str | None
    model: str | None
    os_version: str | None
    locale: str | None
    timezone: str | None
    density: float | None


class App(msgspec.Struct, frozen=True, gc=False):
    name: str | None
    sdk_type: str | None
    sdk_flavor: str | None
    sdk_version: str | None
    sdk_build: int | None
    version: str | None
    flavor: str | None
    build: int | None


class NormalizedEvent(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    action: str
    label: str | None
    project_id: int
    user_id: str
    session_id: int | None
    time: int
    device_time: int
    sent_time: int
    received_time: int
    uptime_ms: int | None
    url: str | None
    screen_name: str | None
    screen_count: int | None
    connectivity: str | None
    carrier: str | None
    orientation: str | None
    device: Device
    app: App
    params: dict[str, Any]
# ---- end of what collector.layout writes ----


_events_decoder = msgspec.json.Decoder(list[NormalizedEvent])
_encoder = msgspec.json.Encoder()


def encode_lines(events, limit: int = 0) -> bytes:
    """The events as JSON Lines; with a limit, TooLarge as soon as they pass it."""
    buf = bytearray()
    for ev in events:
        _encoder.encode_into(ev, buf, -1)
        buf += b"\n"
        if limit and len(buf) > limit:
            raise TooLarge(limit)
    return bytes(buf)


class Decoded:
    """The accepted events of one batch and the rejected ones.

    Sinks want bytes, so a decoder may hand over the JSON Lines and let the event objects be
    built on first access (the native one does); the pure decoder hands over the objects.
    """

    __slots__ = ("_events", "_jsonl", "_ids", "rejected", "project_id")

    def __init__(
        self,
        rejected: list,
        *,
        events: list | None = None,
        jsonl: bytes | None = None,
        project_id: int = 0,
    ):
        self.rejected: list[tuple[int, str]] = rejected
        self.project_id = project_id  # the batch's `pid`
        self._events = events
        self._jsonl = jsonl
        # the event ids once asked for (`decode.decoded_ids`), or where they are
        self._ids: list[str] | bytes | None = None

    @property
    def events(self) -> list[NormalizedEvent]:
        if self._events is None:
            assert self._jsonl is not None  # one of the two is always there
            self._events = _events_decoder.decode(
                b"[" + self._jsonl.rstrip(b"\n").replace(b"\n", b",") + b"]"
            )
        return self._events

    def to_jsonl(self) -> bytes:
        """Each event as its SPEC JSON object, one per line, UTF-8."""
        if self._jsonl is None:
            self._jsonl = encode_lines(self._events)
        return self._jsonl

    def __len__(self) -> int:
        if self._events is not None:
            return len(self._events)
        assert self._jsonl is not None
        return self._jsonl.count(b"\n")

    def __repr__(self) -> str:
        return f"<Decoded events={len(self)} rejected={len(self.rejected)}>"
