"""The embedded engine: one DuckDB file (0600, in a 0700 directory), the default store.

Rows go in as an Arrow table with the table's own types (inferring them from Python values
mistypes a column whose first values are null), in one transaction with the insert's token, so
a retried insert adds nothing; the primary key keeps the first copy of each event. The `event`
text is compressed with zstd: DuckDB's default string compression (FSST, chosen per segment)
took three times as long to write and made a file five times larger.

Reads run on their own cursor (a connection of the same database) per thread, so an export
never waits for the sink, nor the sink for an export. Writes take one lock. `purge` copies the
live rows into a new file and swaps it in: a DELETE only marks rows, and freed blocks keep
their old bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb

from ..log import fsync_path
from .rows import Row, unique
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
    event VARCHAR NOT NULL USING COMPRESSION zstd,
    PRIMARY KEY (project_id, event_id)
);
CREATE TABLE IF NOT EXISTS {db}loads (
    token VARCHAR PRIMARY KEY,
    loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""


TOKEN_DAYS = 30  # how long an insert's token is remembered


def _schema():
    import pyarrow as pa

    s, i64 = pa.string(), pa.int64()
    return pa.schema(list(zip(Row._fields, [
        pa.uint32(), s, s, s, i64, i64, i64, s, s, s, s, s, s, pa.decimal128(38, 9), s,
        pa.decimal128(38, 0), i64, s, s, pa.large_string()])))


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
        self._schema = _schema()
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
                cursor = self._con.cursor()
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
            cur = shared.cursor()  # its own: a query on this thread's cursor must not end it
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
    def insert(self, rows: Sequence[Row], token: str) -> int:
        import pyarrow as pa

        rows = unique(list(rows))
        batch = pa.Table.from_arrays(  # noqa: F841 - read by name in the INSERT below
            [pa.array(col, type=f.type) for col, f in zip(zip(*rows), self._schema)] if rows
            else self._schema.empty_table().columns, schema=self._schema)
        with self._write:
            con = self._con  # under the lock: a purge swaps it
            con.execute("BEGIN")
            try:
                if con.execute("INSERT INTO loads (token) VALUES (?) ON CONFLICT DO NOTHING",
                               [token]).fetchone()[0] == 0:
                    con.execute("ROLLBACK")  # loaded already: a retry
                    return 0
                added = con.execute("INSERT INTO events SELECT * FROM batch ON CONFLICT DO NOTHING"
                                    ).fetchone()[0]
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


def _connect(path: str, memory_limit_mb: int):
    """DuckDB's buffer pool takes up to 80% of the machine's memory unless bounded (0: that
    default). A bound must leave room for the primary key's index, which lives in memory: at
    256 MB an insert fails past about 600,000 events."""
    config: dict[str, Any] = {"memory_limit": f"{memory_limit_mb}MB"} if memory_limit_mb else {}
    try:
        return duckdb.connect(path, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise Locked(f"{path} is in use by another process (a running collector serve?): "
                         "stop it first, or load through it") from None
        raise
