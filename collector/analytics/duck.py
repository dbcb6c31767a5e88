"""The embedded engine: one DuckDB file (0600, in a 0700 directory), the default store.

An insert hands DuckDB the lines themselves (one Arrow column over the JSON Lines' bytes) and
DuckDB makes the rows (`LOAD`: one parse of each line, in C++, on every core), then adds those
whose event it does not hold yet, in one transaction with the insert's token, so that a
retried insert adds nothing. "Holds already" is checked by the event's key and device time,
which every copy of an event carries unchanged: the check reads only the stored rows of the
batch's few device-time ranges, which the row groups' min-max skip everywhere else. (A primary
key did the same at a tenth of the speed, and kept an index of every event in memory.) The
`event` text is compressed with zstd: DuckDB's default string compression (FSST, chosen per
segment) took three times as long to write and made a file five times larger.

Reads run on their own cursor (a connection of the same database) per thread, so an export
never waits for the sink, nor the sink for an export. Writes take one lock. `purge` copies the
live rows into a new file and swaps it in: a DELETE only marks rows, and freed blocks keep
their old bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import duckdb

from ..decode import line_views
from ..log import fsync_path
from .rows import COMMERCE, PARAMS, REGION, STORED
from .store import Store

DDL = """
CREATE TABLE IF NOT EXISTS {db}events (
    project_id UINTEGER NOT NULL,
    event_id VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    time BIGINT NOT NULL,
    received_time BIGINT NOT NULL,
    device_time BIGINT NOT NULL,
    broadcast_id VARCHAR,
    campaign_id VARCHAR,
    sponsor_id VARCHAR,
    order_id VARCHAR,
    poll_id VARCHAR,
    country VARCHAR,
    amount DECIMAL(38, 9),
    currency VARCHAR,
    items HUGEINT,
    option_index BIGINT,
    option VARCHAR,
    question VARCHAR,
    event VARCHAR NOT NULL USING COMPRESSION zstd
);
CREATE TABLE IF NOT EXISTS {db}loads (
    token VARCHAR PRIMARY KEY,
    loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""


TOKEN_DAYS = 30  # how long an insert's token is remembered


def _id(x: str) -> str:
    """An id attribute (rows.id_attribute) of a JSON value."""
    return (f"CASE json_type({x}) WHEN 'VARCHAR' THEN nullif({x} ->> '$', '') "
            f"WHEN 'BIGINT' THEN {x}::VARCHAR WHEN 'UBIGINT' THEN {x}::VARCHAR END")


def _int(x: str) -> str:
    return f"json_type({x}) IN ('BIGINT', 'UBIGINT')"


def _text(x: str) -> str:
    return f"CASE WHEN json_type({x}) = 'VARCHAR' THEN {x} ->> '$' END"


def _number(x: str) -> str:
    """A JSON number as DECIMAL(38, 9); null for anything else, or beyond its range."""
    return (f"CASE json_type({x}) WHEN 'DOUBLE' THEN TRY_CAST({x}::DOUBLE AS DECIMAL(38, 9)) "
            f"WHEN 'BIGINT' THEN TRY_CAST({x}::VARCHAR AS DECIMAL(38, 9)) "
            f"WHEN 'UBIGINT' THEN TRY_CAST({x}::VARCHAR AS DECIMAL(38, 9)) END")


def _region(x: str) -> str:
    r = f"regexp_extract({x} ->> '$', '{REGION}', 1)"
    return f"CASE WHEN json_type({x}) = 'VARCHAR' AND regexp_full_match({r}, '[A-Za-z]{{2}}') THEN upper({r}) END"


_SHAPE = ('{"project_id":"UINTEGER","event_id":"VARCHAR","action":"VARCHAR","user_id":"VARCHAR",'
          '"time":"BIGINT","received_time":"BIGINT","device_time":"BIGINT","device":{"locale":"JSON"},'
          '"params":{' + ",".join(f'"{k}":"JSON"' for k in PARAMS) + "}}")
_QTY = "json_extract(x, '$.qty')"
# the rows of `batch`'s lines (ANALYTICS.md section 1) but `event`, the line itself, which the
# insert takes from `batch` (by `n`) rather than copying it through
STAGE = f"""
SELECT project_id, event_id, action, user_id, time, received_time, device_time,
    {_id('p.broadcastId')} AS broadcast_id, {_id('p.campaignId')} AS campaign_id,
    {_id('p.sponsorId')} AS sponsor_id,
    coalesce({_id('p.orderId')},
             CASE WHEN action = 'transaction.complete' THEN {_id('p.transaction_id')} END) AS order_id,
    {_id('p.pollId')} AS poll_id,
    {_region('locale')} AS country,
    CASE action WHEN 'checkout.completed' THEN {_number('p.total')}
                WHEN 'transaction.complete' THEN {_number('p.value')} END AS amount,
    CASE WHEN action IN {COMMERCE} THEN {_text('p.currency')} END AS currency,
    CASE WHEN action = 'checkout.completed' AND json_type(p.items) = 'ARRAY' THEN coalesce(list_sum(
        list_transform(json_extract(p.items, '$[*]'), lambda x: CASE WHEN {_int(_QTY)}
            AND TRY_CAST({_QTY}::VARCHAR AS HUGEINT) >= 1 THEN TRY_CAST({_QTY}::VARCHAR AS HUGEINT)
            ELSE 1 END)), 0) END AS items,
    CASE WHEN action = 'poll.voted' AND {_int('p.optionIndex')}
         THEN TRY_CAST(p.optionIndex::VARCHAR AS BIGINT) END AS option_index,
    CASE WHEN action = 'poll.voted' THEN {_text('p.optionSelected')} END AS option,
    CASE WHEN action = 'poll.voted' THEN {_text('p.questionText')} END AS question,
    n
FROM (SELECT j.project_id, j.event_id, j.action, j.user_id, j.time, j.received_time,
             j.device_time, j.params AS p, j.device.locale AS locale, n
      FROM (SELECT from_json(line, '{_SHAPE}') AS j, line, n FROM batch))
"""
UNFIT = "SELECT count(*) FROM staged WHERE " + " OR ".join(f"{name} IS NULL" for name in STORED)
COPIES = "SELECT count(*) - count(DISTINCT (project_id, event_id, device_time)) FROM staged"
FIRSTS = """SELECT * FROM staged
QUALIFY row_number() OVER (PARTITION BY project_id, event_id, device_time ORDER BY n) = 1"""
LOAD = """
INSERT INTO events SELECT s.* EXCLUDE (n), b.line FROM staged s JOIN batch b USING (n) WHERE NOT EXISTS (
    SELECT 1 FROM events e WHERE ({ranges}) AND e.device_time = s.device_time
        AND e.event_id = s.event_id AND e.project_id = s.project_id)
"""
RANGE_GAP_MS = 600_000  # device times further apart than this are looked up as ranges apart
MAX_RANGES = 64


def ranges(times) -> list[tuple[int, int]]:
    """The sorted distinct device times as a few [first, last] ranges, split at the gaps wider
    than RANGE_GAP_MS (and wider, until they are at most MAX_RANGES): the live traffic of a
    batch is one narrow range, an offline device's backlog a few more."""
    gap = RANGE_GAP_MS
    while True:
        out = [[times[0], times[0]]]
        for t in times[1:]:
            if t - out[-1][1] > gap:
                out.append([t, t])
            else:
                out[-1][1] = t
        if len(out) <= MAX_RANGES:
            return [(a, b) for a, b in out]
        gap *= 10


def lines_table(jsonl: list[bytes]):
    """JSON Lines as an Arrow table of columns `line` (each line without its newline) and `n`
    (its place), in slices that DuckDB reads on every core. The lines are string views into
    the pieces themselves (`line_views`, in C), not copied: a copy of their bytes (page faults
    on a fresh buffer included) cost as much as DuckDB's parse."""
    import numpy as np
    import pyarrow as pa

    pieces = [p for p in jsonl if p]
    n, views = line_views(pieces)
    lines = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views)]
                                  + [pa.py_buffer(piece) for piece in pieces])
    table = pa.table({"line": lines, "n": np.arange(n, dtype=np.int64)})
    return pa.Table.from_batches(table.to_batches(max_chunksize=2048))


class Locked(OSError):
    """The file is open in another process (a running `collector serve`)."""


class DuckStore(Store):
    dialect = "duckdb"
    name = "duckdb"

    def __init__(self, path: str, retention_days: int = 365, by_project: dict[int, int] | None = None,
                 memory_limit_mb: int = 0):
        super().__init__(retention_days, by_project)
        self.path = os.path.abspath(path)
        self.memory_limit_mb = memory_limit_mb
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self._write = threading.Lock()
        self._readers = threading.Condition()
        self._reading = 0  # reads in progress; a purge waits for them and holds new ones
        self._swapping = False
        self._local = threading.local()
        self._cursors: list = []  # every thread's cursor, closed before a swap
        self._open()

    def _open(self) -> None:
        with _private():
            self._con = _connect(self.path, self.memory_limit_mb)
        self._con.execute(DDL.format(db=""))
        self._generation = getattr(self, "_generation", 0) + 1
        if self._con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events' "
                             "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]:
            self.purge()  # a file of an earlier version, keyed by the event: rewritten without

    # --- reading
    @contextmanager
    def _cursor(self):
        with self._readers:
            while self._swapping:
                self._readers.wait()
            self._reading += 1
        try:
            held = getattr(self._local, "held", None)
            if held is None or held[0] != self._generation:
                cursor = _new_cursor(self._con)
                self._local.held = held = (self._generation, cursor)
                with self._readers:
                    self._cursors.append(cursor)
            yield held[1]
        finally:
            with self._readers:
                self._reading -= 1
                self._readers.notify_all()

    def query(self, sql: str) -> list[tuple]:
        with self._cursor() as cur:
            return cur.execute(sql).fetchall()

    def stream(self, sql: str, batch_rows: int = 10_000) -> Generator[list[tuple], None, None]:
        with self._cursor() as shared:
            cur = _new_cursor(shared)  # its own: a query on this thread's cursor must not end it
            try:
                cur.execute(sql)
                while batch := cur.fetchmany(batch_rows):
                    yield batch
            finally:
                cur.close()

    def quote(self, value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        raise TypeError(f"no DuckDB literal for {type(value).__name__}")

    # --- writing
    def insert(self, jsonl: list[bytes], token: str) -> int:
        if not any(jsonl):
            return 0
        batch = lines_table(jsonl)  # noqa: F841 - read by name in STAGE
        with self._cursor() as cur:  # made outside the write lock, on every core
            staged = cur.sql(STAGE).to_arrow_table()  # read by name below
            if cur.execute(UNFIT).fetchall()[0][0]:
                raise ValueError("a line is not an event the store can hold (rows.check says which)")
            if cur.execute(COPIES).fetchall()[0][0]:  # copies of an event within the batch
                staged = cur.sql(FIRSTS).to_arrow_table()  # noqa: F841 - the first of each
            times = cur.execute("SELECT DISTINCT device_time FROM staged ORDER BY 1").fetchnumpy()
        within = " OR ".join(f"e.device_time BETWEEN {a} AND {b}"
                             for a, b in ranges(times["device_time"].tolist()))
        with self._write:
            con = self._con  # under the lock: a purge swaps it
            con.execute("BEGIN")
            try:
                if con.execute("INSERT INTO loads (token) VALUES (?) ON CONFLICT DO NOTHING",
                               [token]).fetchone()[0] == 0:
                    con.execute("ROLLBACK")  # loaded already: a retry
                    return 0
                added = con.execute(LOAD.format(ranges=within)).fetchone()[0]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return added

    def _delete(self, sql: str, params=()) -> int:
        with self._write:
            return self._con.execute(sql, params).fetchone()[0]

    def delete_user(self, project_id: int, user_id: str, received_up_to: int) -> int:
        return self._delete("DELETE FROM events WHERE project_id = ? AND user_id = ? "
                            "AND received_time <= ?", [project_id, user_id, received_up_to])

    def expire(self, cutoffs: dict[int, int], default_cutoff: int) -> int:
        cases = " ".join(f"WHEN {int(p)} THEN {int(c)}" for p, c in sorted(cutoffs.items()))
        limit = f"CASE project_id {cases} ELSE {int(default_cutoff)} END" if cases else str(int(default_cutoff))
        with self._write:  # tokens are for retries, which come within minutes
            self._con.execute(f"DELETE FROM loads WHERE loaded_at < now() - INTERVAL {TOKEN_DAYS} DAY")
        return self._delete(f"DELETE FROM events WHERE time < {limit}")

    def purge(self) -> None:
        """Copy the live rows into a new file, make it durable, swap it in with a rename and
        open it; the old file, with the deleted rows' bytes, is gone with the rename."""
        fresh = self.path + ".purge"
        with self._write:
            for leftover in (fresh, fresh + ".wal"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
            with _private():
                self._con.execute(f"ATTACH {self.quote(fresh)} AS fresh")
            try:
                self._con.execute(DDL.format(db="fresh."))
                self._con.execute("INSERT INTO fresh.events SELECT * FROM events "
                                  "ORDER BY project_id, time")
                self._con.execute("INSERT INTO fresh.loads SELECT * FROM loads")
            finally:
                self._con.execute("DETACH fresh")
            fsync_path(fresh)
            with self._readers:
                self._swapping = True
                while self._reading:
                    self._readers.wait()
            try:
                self._close_all()
                os.replace(fresh, self.path)
                if os.path.exists(self.path + ".wal"):  # the old file's, checkpointed at close
                    os.unlink(self.path + ".wal")
                fsync_path(os.path.dirname(self.path))
                self._open()
            finally:
                with self._readers:
                    self._swapping = False
                    self._readers.notify_all()

    def _close_all(self) -> None:
        with self._readers:
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            cursor.close()
        self._con.close()

    def close(self) -> None:
        with self._write:
            self._close_all()


@contextmanager
def _private():
    """Files made meanwhile are 0600: DuckDB creates them with the process's umask."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


ROW_GROUP_SIZE = 16_384  # rows; DuckDB's default is 122,880


def _connect(path: str, memory_limit_mb: int):
    """The store's file, attached as `store` (the connection's and its cursors' default) with
    row groups of ROW_GROUP_SIZE rows, which only ATTACH sets: an insert's full row groups are
    then written to the file, compressed, as it runs, where DuckDB's default size (more rows than
    an insert of the sink holds) put every row through the write-ahead log first and compressed
    it at the next checkpoint; loading runs about 1.7x as fast, and most metrics read the same
    (docs/analytics.md).
    DuckDB's buffer pool takes up to 80% of the machine's memory unless bounded (0: that
    default). The write-ahead log is folded into the file at 64 MB rather than DuckDB's 16."""
    config: dict[str, Any] = {"checkpoint_threshold": "64MB"}
    if memory_limit_mb:
        config["memory_limit"] = f"{memory_limit_mb}MB"
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS store "
                    f"(ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
    except duckdb.IOException as exc:
        con.close()
        if "lock" in str(exc).lower():
            raise Locked(f"{path} is in use by another process (a running collector serve?): "
                         "stop it first, or load through it") from None
        raise
    con.execute("USE store")
    return con


def _new_cursor(con):
    """A cursor of the connection (a connection of its own), reading the store by default."""
    cursor = con.cursor()
    cursor.execute("USE store")
    return cursor
