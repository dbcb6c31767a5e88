"""The event store behind one small interface, with two engines: DuckDB (embedded, the default)
and ClickHouse (at scale). The sink, import, the API, deletion and retention speak only to
`Store`; the engines differ in their DDL, their literals and how they load and remove rows.

Reads are SQL over one table, `events` (columns: `rows.COLUMNS`), written with the few functions
both engines share; `where` gives the clause every read starts from (project, time range,
filters, retention), so that no read can forget one of them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Generator

from .query import COLUMNS, Query

DAY_MS = 86_400_000


class Store(abc.ABC):
    dialect: str  # "duckdb" or "clickhouse"
    name: str  # what deletion reports count under

    def __init__(self, retention_days: int = 365, retention_by_project: dict[int, int] | None = None):
        self.retention_days = retention_days
        self.retention_by_project = dict(retention_by_project or {})

    # --- writing
    @abc.abstractmethod
    def insert(self, jsonl: list[bytes], token: str) -> int:
        """Load normalised events, JSON Lines in pieces (each a run of whole lines, as the log's
        records hold them), keeping one row per event: the first copy loaded wins (within the
        insert too), a copy of an event stored already is skipped, and a retried insert of the
        same `token` (a log range, a file and line range) adds nothing. Durable when it
        returns. Raises, adding nothing, when a line is not an event it can store
        (`rows.check` says which). Rows added."""

    @abc.abstractmethod
    def delete_user(self, project_id: int, user_id: str, received_up_to: int) -> int:
        """Remove the user's events received up to that time from every read, at once (their
        bytes may stay on disk until `purge`). Events removed."""

    @abc.abstractmethod
    def expire(self, cutoffs: dict[int, int], default_cutoff: int) -> int:
        """Remove events whose `time` is before their project's cutoff (ms). Events removed."""

    @abc.abstractmethod
    def purge(self) -> None:
        """Rewrite what holds removed rows, so that no file of the store keeps their bytes."""

    # --- reading
    @abc.abstractmethod
    def query(self, sql: str) -> list[tuple]:
        """The rows of a read."""

    @abc.abstractmethod
    def stream(self, sql: str, batch_rows: int = 10_000) -> Generator[list[tuple], None, None]:
        """The rows of a read in batches, never all in memory; closing the iterator stops it."""

    @abc.abstractmethod
    def quote(self, value) -> str:
        """A value as an SQL literal of this engine (None, bool, int, str)."""

    def close(self) -> None:  # noqa: B027 - an engine with nothing to release keeps it
        """Release the engine."""

    # --- shared
    def cutoff(self, project_id: int, now_ms: int | None = None) -> int:
        """The oldest `time` the project's retention keeps (ms)."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return now_ms - self.retention_by_project.get(project_id, self.retention_days) * DAY_MS

    def where(self, query: Query, *, ignore: tuple[str, ...] = ()) -> str:
        """The condition every read of `query` starts from: its project, its time range (never
        before the retention's cutoff, even between two passes), and its filters but those in
        `ignore` (filter parameter names)."""
        start = max(query.start if query.start is not None else -(2**62), self.cutoff(query.project_id))
        parts = [f"project_id = {int(query.project_id)}", f"time >= {int(start)}",
                 f"time < {int(query.end)}"]
        for name, value in sorted(query.filters.items()):
            if name not in ignore:
                parts.append(f"{COLUMNS[name]} = {self.quote(value)}")
        return " AND ".join(parts)


def open_store(config) -> Store | None:
    """The store the configuration names (`[analytics] store`), or None when it is off."""
    a = config.analytics
    by_project = {int(k): v for k, v in a.retention_days_by_project.items()}
    if a.store == "":
        return None
    if a.store == "duckdb":
        from .duck import DuckStore
        import os

        path = a.path or os.path.join(config.data_dir, "analytics.duckdb")
        return DuckStore(path, a.retention_days, by_project, a.memory_limit_mb)
    if a.store == "clickhouse":
        from .clickhouse import ClickHouseStore

        return ClickHouseStore(a.clickhouse_url, a.retention_days, by_project)
    raise ValueError(f"analytics.store: {a.store!r} is not one of duckdb, clickhouse, \"\" (off)")
