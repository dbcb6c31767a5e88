"""Sinks: where events go once they are in the local log.

A sink is a small async class. The collector runs each one with its own durable cursor in the
log: it hands the sink records from the cursor on, and moves the cursor only after `write`
returned, so delivery is at-least-once and resumes where it stopped after a restart. A `write`
that raises is retried, with backoff, until it succeeds. A sink that wants bigger batches sets
`linger_seconds`: it is then handed records once there are a few MiB or once it waited that long.
A sink whose destination refuses its configuration raises `Misconfigured`: it is stopped, not
retried. What a destination refuses for good goes to `await self.dead_letter(lines)` (JSON Lines, each
with a `reason`), which puts it in the log for the dead_letter sink; `self.metrics` is the
collector's metrics (see `collector.metrics`).

    from collector.sinks import Sink
    from collector.log import EVENTS

    class Counter(Sink):
        kinds = frozenset({EVENTS})            # the records it wants (EVENTS, DEAD)

        async def write(self, records):
            for record in records:             # record.payload: JSON Lines of events
                self.count += record.payload.count(b"\\n")

Sinks are named in the configuration by `type`: a built-in name, or the name of an entry point
in the `collector.sinks` group (so a package can publish its own):

    [project.entry-points."collector.sinks"]
    counter = "mypackage:Counter"
"""

import inspect
import typing
from importlib.metadata import entry_points

import msgspec

from ..log import EVENTS, Record


class Misconfigured(Exception):
    """Raised by a sink whose destination refuses its configuration for good (a stream it may
    not create as configured): retrying cannot help, so the collector stops this sink, says so
    once, and keeps its events in the log for a restart with the configuration fixed."""


class Sink:
    kinds = frozenset({EVENTS})
    linger_seconds = 0.0
    batch_bytes = 4 << 20  # the most log a write is handed at once
    metrics = None  # set by the collector before start()
    # True: the sink counts what it handed on itself (metrics.sink_events, by outcome); if not,
    # every event of a write that returned counts as delivered
    counts_itself = False

    async def dead_letter(self, lines: list[bytes]) -> None:  # replaced by the collector
        raise RuntimeError("this sink is not run by a collector")

    def __init__(self, name: str, data_dir: str, **options):
        self.name = name
        self.data_dir = data_dir
        self.options = options

    async def start(self) -> None:
        """Open connections or files."""

    async def write(self, records: list[Record]) -> None:
        """Deliver these records; raise to have them retried."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Flush and close."""


def _builtin(name: str):
    if name == "jsonl":
        from .jsonl import JsonlSink

        return JsonlSink
    if name == "dead_letter":
        from .jsonl import DeadLetterSink

        return DeadLetterSink
    if name == "nats":
        from .jetstream import JetStreamSink

        return JetStreamSink
    if name == "webhook":
        from .webhook import WebhookSink

        return WebhookSink
    if name == "stdout":
        from .stdout import StdoutSink

        return StdoutSink
    if name == "store":
        from ..analytics.sink import StoreSink

        return StoreSink
    return None


def _class(kind):
    cls = _builtin(kind)
    if cls is None:
        found = [ep for ep in entry_points(group="collector.sinks") if ep.name == kind]
        if not found:
            raise ValueError(f"sinks: no sink type {kind!r} (built in: jsonl, dead_letter, stdout, "
                             "nats, webhook, store; others are entry points of the collector.sinks group)")
        cls = found[0].load()
    return cls


def schema(cls) -> dict[str, inspect.Parameter] | None:
    """The options a sink class takes: the keyword-only parameters of its `__init__`, whose
    annotations are their types and whose defaults are theirs (None when it takes any)."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params) and cls.__init__ is not Sink.__init__:
        return None
    return {p.name: p for p in params if p.kind is p.KEYWORD_ONLY}


def _checked(cls, name: str, options: dict) -> dict:
    """The options converted to the types the sink's signature gives; ValueError, one line
    naming the sink and the option, for an option it does not take, of the wrong type, or missing."""
    params = schema(cls)
    if params is None:
        return options
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for key, value in options.items():
        if key not in params:
            raise ValueError(f"sink {name}: no option {key!r} (it takes: {', '.join(params) or 'none'})")
        try:
            out[key] = msgspec.convert(value, hints[key]) if key in hints else value
        except msgspec.ValidationError as exc:
            raise ValueError(f"sink {name}: {key}: {exc}") from None
    for key, p in params.items():
        if p.default is p.empty and key not in out:
            raise ValueError(f"sink {name}: option {key!r} is required")
    return out


def _split(entry: dict):
    """(class, name, options) of a configuration entry."""
    options = dict(entry)
    kind = options.pop("type", None)
    if not isinstance(kind, str):
        raise ValueError(f"sinks: an entry without a `type` ({entry!r})")
    name = options.pop("name", "") or kind
    return _class(kind), name, options


def load(entry: dict, data_dir: str) -> Sink:
    """The sink a configuration entry describes; ValueError (one line) if it cannot be built."""
    cls, name, options = _split(entry)
    return cls(name, data_dir, **_checked(cls, name, options))


def options(entry: dict) -> dict:
    """A configuration entry with every option its sink takes, defaults filled in."""
    cls, name, given = _split(entry)
    defaults = {k: p.default for k, p in (schema(cls) or {}).items() if p.default is not p.empty}
    return {"type": entry["type"], "name": name, **defaults, **given}


__all__ = ["Misconfigured", "Sink", "Record", "load", "options", "schema"]
