"""The raw export (ANALYTICS.md section 4): every matching event, the normalised event exactly as
the collector wrote it, ordered by time then event id, as JSON Lines, one JSON array, CSV or
Parquet, produced a page at a time so that memory never holds more than one page.

Pages are read by key (`time`, `event_id` after the last row sent, `LIMIT`), not as one ordered
read: an engine sorts a whole ordered result before its first row, in memory, whatever the
size of the export; a page's top-N needs only the page. The rows are the store's `event` text,
so a JSON Lines export is byte for byte what the collector wrote.
"""

from __future__ import annotations

import csv
import io
import types
import typing
from collections.abc import Iterator

import msgspec

from ..event import NormalizedEvent
from ..pipeline import patterns
from .query import Query
from .store import Store

PAGE_ROWS = 2_000
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
        value = event
        for key in path:
            value = value.get(key) if type(value) is dict else None
        out.append(_encode(value).decode() if kind is dict else value)
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


def pages(store: Store, where: str, page_rows: int = PAGE_ROWS) -> Iterator[list[str]]:
    """The `event` texts matching `where`, ordered by time then event id, a page at a time."""
    after = ""
    while True:
        rows = store.query(f"SELECT time, event_id, event FROM events WHERE {where}{after} "
                           f"ORDER BY time, event_id LIMIT {int(page_rows)}")
        if not rows:
            return
        yield [r[2] for r in rows]
        if len(rows) < page_rows:
            return
        t, e = int(rows[-1][0]), store.quote(rows[-1][1])
        after = f" AND time >= {t} AND (time > {t} OR event_id > {e})"


def chunks(fmt: str, events: Iterator[list[str]]) -> Iterator[bytes]:
    """The export's bytes in `fmt`, one chunk per page of events."""
    return _WRITERS[fmt](events)


def _jsonl(events):
    for page in events:
        yield ("\n".join(page) + "\n").encode()


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
    for page in events:
        for text in page:
            out.writerow(["" if v is None else v if type(v) is str else _encode(v).decode()
                          for v in flat(_decode.decode(text))])
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
    """One row group per page, typed columns (`COLUMNS`; params as JSON text), written by
    pyarrow to a file whose bytes go out as each row group is done: the same for both engines,
    and streamed (DuckDB's COPY or ClickHouse's FORMAT Parquet would write the whole file
    before its first byte could be sent)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {int: pa.int64(), float: pa.float64(), str: pa.string(), dict: pa.string()}
    schema = pa.schema([(name, kinds[kind]) for name, (_, kind) in zip(COLUMNS, LEAVES)])
    sink = _Taken()
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd") as writer:
        for page in events:
            rows = [flat(_decode.decode(text)) for text in page]
            writer.write_table(pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(zip(*rows), schema)], schema=schema))
            yield sink.take()
    yield sink.take()


_WRITERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}
