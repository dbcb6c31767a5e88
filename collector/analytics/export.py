"""The raw export (ANALYTICS.md section 4): every matching event, the normalised event exactly as
the collector wrote it, ordered by time then event id, as JSON Lines, one JSON array, CSV or
Parquet, read a span of time at a time so that memory never holds more than one span.

One ordered read of the whole export would be sorted whole before its first row (in memory, or
spilled, whatever its size), and pages read by key (after the last row sent, `LIMIT`) each
read again what follows the key, so their cost grows with the square of the export's size.
Spans of time do neither: a first pass counts the matching events per time bucket from the
`time` column alone; consecutive buckets are merged into spans of about `SPAN_BYTES` of events
(a bucket holding more is counted again in finer buckets; a millisecond is never split); each
span is one ordered read, which the engine sorts in its own memory (DuckDB's `memory_limit`)
and Python takes `BATCH_BYTES` at a time. An engine reads only the blocks whose times overlap
the span (DuckDB's row groups and ClickHouse's parts, by the least and greatest `time` each
holds), so when the table is roughly in time order, as events are loaded, every block is read
about once. (In a table whose order has nothing to do with time, every span reads the whole
range: the square again, divided by the span's size.) The spans' edges make them disjoint and,
together, the whole range. The rows are the store's `event` text, so a JSON Lines export is
byte for byte what the collector wrote, nothing decoded; CSV and Parquet decode each event
once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import operator
import types
import typing
from collections.abc import Generator, Iterator

import msgspec

from ..event import NormalizedEvent
from ..pipeline import patterns
from .query import Query
from .store import Store

SPAN_BYTES = 32 << 20  # the events of one ordered read, about: what the engine sorts
BATCH_BYTES = 1 << 20  # the events Python holds at once, about
SAMPLE_ROWS = 1_000  # events whose size gives the size of the rest
MAX_BUCKETS = 10_000  # counted in one pass over a range
ROW_GROUP_ROWS = 10_000  # a Parquet export's row groups, whatever the spans
# format -> (Content-Type, file name extension)
FORMATS = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "json": ("application/json", "json"),
    "csv": ("text/csv; charset=utf-8; header=present", "csv"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
}
_decode = msgspec.json.Decoder()
_encode = msgspec.json.encode


def _leaves(struct, prefix=()) -> list[tuple[tuple[str, ...], type]]:
    """(path, Python type) of every leaf of the normalised event, in SPEC order; a nested
    struct's leaves are its own (`device.locale`); `params` is one leaf (its JSON text)."""
    out = []
    for field in msgspec.structs.fields(struct):
        kind = field.type
        if isinstance(kind, types.UnionType):  # `str | None`: the type
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            out += _leaves(kind, (*prefix, field.name))
        else:
            out.append(((*prefix, field.name), kind if kind in (int, float, str) else dict))
    return out


LEAVES = _leaves(NormalizedEvent)
COLUMNS = [".".join(path) for path, _ in LEAVES]  # the CSV header and the Parquet columns


def flat(event: dict) -> list:
    """The leaves of a decoded event, in `COLUMNS` order; `params` as its JSON text."""
    out = []
    for path, kind in LEAVES:
        value: typing.Any = event
        for key in path:
            value = value.get(key) if type(value) is dict else None
        out.append(_encode(value).decode() if kind is dict else value)
    return out


_event = msgspec.json.Decoder(NormalizedEvent)
_GETTERS = [operator.attrgetter(name) for name in COLUMNS]
_JSON_LEAVES = [i for i, (_, kind) in enumerate(LEAVES) if kind is dict]


def columns(page: list[str]) -> list[list]:
    """The leaves of the events, a list per column of `COLUMNS`, `params` as JSON text: each
    event decoded once, into the normalised event's struct; a page holding an event of another
    shape (`collector import` loads any with the table's columns) leaf by leaf, by `flat`."""
    try:
        events = list(map(_event.decode, page))
    except msgspec.ValidationError:
        return [list(column) for column in zip(*(flat(_decode.decode(text)) for text in page))]
    out = [list(map(get, events)) for get in _GETTERS]
    for i in _JSON_LEAVES:
        out[i] = [_encode(v).decode() for v in out[i]]
    return out


def actions(store: Store, query: Query, pattern: str) -> list[str]:
    """The actions in the query's range that `pattern` matches, by the collector's own matcher
    (the rules' and `Events.Subscribe`'s: exact names, `poll.*`): the pattern is never
    translated into SQL, so the export cannot match differently from the rest."""
    if not any(c in pattern for c in "*?["):
        return [pattern]
    match = patterns([pattern])
    return sorted(a for (a,) in store.query(f"SELECT DISTINCT action FROM events WHERE "
                                            f"{store.where(query)}") if match(a))


def condition(store: Store, query: Query, actions_: list[str] | None) -> str:
    """What an exported event satisfies: the common WHERE, `userId`, the matched actions."""
    parts = [store.where(query)]
    if "userId" in query.extra:
        parts.append(f"user_id = {store.quote(query.extra['userId'])}")
    if actions_ is not None:
        parts.append(f"action IN ({', '.join(store.quote(a) for a in actions_)})" if actions_ else "1 = 0")
    return " AND ".join(parts)


def pages(store: Store, where: str) -> Generator[list[str], None, None]:
    """The `event` texts matching `where`, ordered by time then event id, about BATCH_BYTES at a
    time: each span is one ordered read, which the engine sorts and Python takes in batches."""
    ((lo, hi, n),) = store.query(f"SELECT min(time), max(time), count(*) FROM events WHERE {where}")
    if not n:
        return
    # the events' size, from the first few
    ((size, sampled),) = store.query(f"SELECT sum(length(event)), count(*) FROM (SELECT event "
                                     f"FROM events WHERE {where} LIMIT {SAMPLE_ROWS})")
    if not sampled:  # removed meanwhile
        return
    rows, batch = (max(1, limit * sampled // int(size)) for limit in (SPAN_BYTES, BATCH_BYTES))
    for a, b in spans(store, where, lo, hi + 1, n, rows):
        with contextlib.closing(store.stream(
                f"SELECT event FROM events WHERE {where} AND time >= {a} AND time < {b} "
                f"ORDER BY time, event_id", batch)) as batches:
            for page in batches:
                yield [r[0] for r in page]


def spans(store: Store, where: str, lo: int, hi: int, n: int, rows: int) -> Iterator[tuple[int, int]]:
    """Spans of time [a, b) that together are [lo, hi), in order, each holding at most `rows` of
    the `n` events matching `where` in [lo, hi) (but a millisecond holding more, which is one
    span), counted per bucket of time and merged; a bucket holding more is counted again."""
    if n <= rows or hi - lo == 1:
        yield lo, hi
        return
    width = -(-(hi - lo) // min(MAX_BUCKETS, 4 * -(-n // rows)))
    x = f"(time - {lo})"
    counts = store.query(f"SELECT {x} - {x} % {width} AS bucket, count(*) FROM events WHERE {where} "
                         f"AND time >= {lo} AND time < {hi} GROUP BY bucket ORDER BY bucket")
    start, held = lo, 0  # the span being merged: where it starts, its events
    for bucket, count in counts:
        begins = lo + int(bucket)
        if held and held + count > rows:
            yield start, begins
            start, held = begins, 0
        if count > rows:
            if start < begins:  # no events, but the spans leave no time out
                yield start, begins
            ends = min(begins + width, hi)
            yield from spans(store, where, begins, ends, count, rows)
            start = ends
        else:
            held += count
    if start < hi:
        yield start, hi


def chunks(fmt: str, events: Generator[list[str], None, None]) -> Generator[bytes, None, None]:
    """The export's bytes in `fmt`, a chunk per batch of events; closing it ends the read."""
    with contextlib.closing(events):
        yield from _WRITERS[fmt](events)


def _jsonl(events):
    for page in events:  # each text encoded alone: one non-ASCII character widens a joined str
        yield b"\n".join([text.encode() for text in page]) + b"\n"


def _json(events):
    sep = "[\n"
    for page in events:
        yield (sep + ",\n".join(page)).encode()
        sep = ",\n"
    yield b"[]\n" if sep == "[\n" else b"\n]\n"


def _csv(events):
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled when needed
    out.writerow(COLUMNS)
    for page in events:  # None as an empty cell
        out.writerows(zip(*columns(page)))
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():  # the header of an empty export
        yield buf.getvalue().encode()


class _Taken:
    """A file for the Parquet writer whose bytes are taken away as they come."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _parquet(events):
    """Row groups of ROW_GROUP_ROWS events, typed columns (`COLUMNS`; params as JSON text),
    written by pyarrow to a file whose bytes go out as each row group is done: streamed (DuckDB's
    COPY or ClickHouse's FORMAT Parquet would write the whole file before its first byte could
    be sent), and the same bytes from both engines, whose spans may differ."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {int: pa.int64(), float: pa.float64(), str: pa.string(), dict: pa.string()}
    schema = pa.schema([(name, kinds[kind]) for name, (_, kind) in zip(COLUMNS, LEAVES)])
    sink = _Taken()
    held = schema.empty_table()
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd") as writer:
        for page in events:
            held = pa.concat_tables([held, pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(columns(page), schema)], schema=schema)])
            while held.num_rows >= ROW_GROUP_ROWS:
                writer.write_table(held.slice(0, ROW_GROUP_ROWS).combine_chunks())
                held = held.slice(ROW_GROUP_ROWS)
            yield sink.take()
        if held.num_rows:
            writer.write_table(held.combine_chunks())
    yield sink.take()


_WRITERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}
