"""Sinks: where events go once they are in the local log.

A sink is a small async class. The collector runs each one with its own durable cursor in the
log: it hands the sink records from the cursor on, and moves the cursor only after `write`
returned, so delivery is at-least-once and resumes where it stopped after a restart. A `write`
that raises is retried, with backoff, until it succeeds. A sink that wants bigger batches sets
`linger_seconds`: it is then handed records once there are a few MiB or once it waited that long.
What a destination refuses for good goes to `await self.dead_letter(lines)` (JSON Lines, each
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

from importlib.metadata import entry_points

from ..log import EVENTS, Record


class Sink:
    kinds = frozenset({EVENTS})
    linger_seconds = 0.0
    metrics = None  # set by the collector before start()

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


def load(options: dict, data_dir: str) -> Sink:
    """The sink a configuration entry describes."""
    options = dict(options)
    kind = options.pop("type")
    name = options.pop("name", "") or kind
    cls = _builtin(kind)
    if cls is None:
        found = [ep for ep in entry_points(group="collector.sinks") if ep.name == kind]
        if not found:
            raise ValueError(f"no sink type {kind!r} (built in: jsonl, dead_letter, stdout, nats, webhook, store)")
        cls = found[0].load()
    return cls(name, data_dir, **options)


__all__ = ["Sink", "Record", "load"]
