"""The engine at scale: ClickHouse through clickhouse-connect, a server (`http(s)://...`) or
in-process (`chdb:///dir`). The table and why it is shaped so are in docs/analytics.md.

One (project_id, event_id) is one row: the table is a ReplacingMergeTree whose key ends with
the event id, after the day of the event's device clock, which every copy of an event carries
unchanged, so copies share a key and a partition. Each insert's rows carry a version that
decreases with load order so the first copy loaded is the one kept, and reads run with
`final = 1`, so copies not merged yet (the same event through two collectors) are read once;
with the key led by the day, the parts of past days do not overlap and `FINAL` merges only
the few recent parts that do. A retried insert is dropped by ClickHouse's own insert
deduplication, keyed by the insert's token.

An insert sends the lines themselves (format LineAsString) to `events_raw`, a table that keeps
nothing; a materialized view makes them rows of `events` in the same insert, parsing each line
once, so that loading costs the collector no work per event beyond `rows.check`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor, wait

from .rows import COMMERCE, REGION
from .store import Store

DAY_FIRST, DAY_LAST = 10_957, 47_846  # 2000-01-01, 2100-12-31 in days since 1970-01-01

READ = {"final": 1}  # every read sees one copy of an event, merged or not
MUTATE = {"mutations_sync": 2, "lightweight_deletes_sync": 2}  # done on every replica when it returns


def ddl(retention_days: int, engine: str = "ReplacingMergeTree(version)", table: str = "events") -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    project_id UInt32,
    event_id String,
    action LowCardinality(String),
    user_id String,
    time Int64,
    received_time Int64,
    device_time Int64,
    -- the device's day, bounded to 2000-01-01..2100-12-31 so that a wrong clock cannot make
    -- more than about 1,200 partitions
    device_day Date MATERIALIZED toDate(toUInt16(least(greatest(intDiv(device_time, 86400000),
        {DAY_FIRST}), {DAY_LAST}))),
    broadcast_id LowCardinality(Nullable(String)),
    campaign_id LowCardinality(Nullable(String)),
    sponsor_id LowCardinality(Nullable(String)),
    order_id Nullable(String),
    poll_id LowCardinality(Nullable(String)),
    country LowCardinality(Nullable(String)),
    amount Nullable(Decimal(38, 9)),
    currency LowCardinality(Nullable(String)),
    items Nullable(Int128),
    option_index Nullable(Int64),
    option LowCardinality(Nullable(String)),
    question LowCardinality(Nullable(String)),
    event String CODEC(ZSTD(3)),
    version UInt64,
    -- rows are sorted by device day, which `time` follows but for a skewed clock: the time
    -- range of each granule lets a read of a show skip the rest of the season
    INDEX time_range time TYPE minmax GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toYYYYMM(device_day)
ORDER BY (project_id, device_day, event_id)
TTL {_ttl(retention_days)}
SETTINGS non_replicated_deduplication_window = 10000, old_parts_lifetime = 1,
    cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 0,
    fsync_after_insert = 1, fsync_part_directory = 1, min_compressed_bytes_to_fsync_after_merge = 1
"""


# A param is read as its JSON text (`p[key]`: '' when absent), so that its JSON type decides, as
# the contract says: a string's text starts with a quote, an int's is digits.
def _text(r: str) -> str:
    return f"if(startsWith({r}, '\"'), JSONExtractString({r}), NULL)"


def _is_int(r: str) -> str:
    return f"match({r}, '^-?[0-9]+$')"


def _id(r: str) -> str:
    """An id attribute (rows.id_attribute)."""
    return f"multiIf(startsWith({r}, '\"'), nullIf(JSONExtractString({r}), ''), {_is_int(r)}, {r}, NULL)"


def _number(r: str) -> str:
    """A JSON number as Decimal(38, 9), by its text; null for anything else, or beyond its range."""
    return f"if(match({r}, '^-?[0-9]'), toDecimal128OrNull({r}, 9), NULL)"


def _p(key: str) -> str:
    return f"p['{key}']"


# what an event must have is Nullable here: a line without it (or not JSON) gives a null,
# which the insert into the table's plain column refuses, failing the insert
_SHAPE = ("Tuple(project_id Nullable(UInt32), event_id Nullable(String), action Nullable(String), "
          "user_id Nullable(String), time Nullable(Int64), received_time Nullable(Int64), "
          "device_time Nullable(Int64), params String, device String)")
_LOCALE = "JSONExtractRaw(j.device, 'locale')"
_QTY = "JSONExtractRaw(x, 'qty')"
# the rows of the lines inserted into `events_raw` (ANALYTICS.md section 1); the version falls
# with the load's time and each line's place, so that the first copy loaded is the one kept
LOAD = f"""
SELECT j.project_id AS project_id, j.event_id AS event_id, j.action AS action, j.user_id AS user_id,
    j.time AS time, j.received_time AS received_time, j.device_time AS device_time,
    {_id(_p('broadcastId'))} AS broadcast_id, {_id(_p('campaignId'))} AS campaign_id,
    {_id(_p('sponsorId'))} AS sponsor_id,
    coalesce({_id(_p('orderId'))},
             if(j.action = 'transaction.complete', {_id(_p('transaction_id'))}, NULL)) AS order_id,
    {_id(_p('pollId'))} AS poll_id,
    if(match(extract({_text(_LOCALE)}, '{REGION}'), '^[A-Za-z]{{2}}$'),
       upper(extract({_text(_LOCALE)}, '{REGION}')), NULL) AS country,
    multiIf(j.action = 'checkout.completed', {_number(_p('total'))},
            j.action = 'transaction.complete', {_number(_p('value'))}, NULL) AS amount,
    if(j.action IN {COMMERCE}, {_text(_p('currency'))}, NULL) AS currency,
    if(j.action = 'checkout.completed' AND startsWith(p['items'], '['),
       arraySum(arrayMap(x -> if({_is_int(_QTY)} AND toInt128OrZero({_QTY}) >= 1,
                                 toInt128OrZero({_QTY}), toInt128(1)),
                         JSONExtractArrayRaw(p['items']))), NULL) AS items,
    if(j.action = 'poll.voted' AND {_is_int(_p('optionIndex'))},
       toInt64OrNull({_p('optionIndex')}), NULL) AS option_index,
    if(j.action = 'poll.voted', {_text(_p('optionSelected'))}, NULL) AS option,
    if(j.action = 'poll.voted', {_text(_p('questionText'))}, NULL) AS question,
    event,
    toUInt64({2**64 - 1}) - toUInt64(toUnixTimestamp64Nano(now64(9))) - rowNumberInAllBlocks() AS version
FROM (SELECT j, CAST(JSONExtractKeysAndValuesRaw(j.params), 'Map(String, String)') AS p, event
      FROM (SELECT JSONExtract(event, '{_SHAPE}') AS j, event FROM events_raw))
"""
# named for its text, so that a collector with another loader adds its own view beside this
# one (their rows are the same events, read once) and drops the views of older loaders
LOADER = "events_load_" + hashlib.sha256(LOAD.encode()).hexdigest()[:12]


def _ttl(days: int) -> str:
    """When a row expires: `days` after its time, within DateTime's range (1970..2106)."""
    return f"toDateTime(least(greatest(intDiv(time, 1000) + {int(days) * 86400}, 0), 4294967295))"


class ClickHouseStore(Store):
    dialect = "clickhouse"
    name = "clickhouse"

    def __init__(self, url: str, retention_days: int = 365, by_project: dict[int, int] | None = None):
        super().__init__(retention_days, by_project)
        if not url:
            raise ValueError("analytics.clickhouse_url is empty (http://user:password@host:8123/db "
                             "or chdb:///dir)")
        self.url = url
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # the second insert's thread
        days = max([retention_days, *self.retention_by_project.values()])
        client = self._client()
        client.command(ddl(days))
        # what an insert writes: its lines, into a table that keeps nothing, whose view makes
        # them rows of `events` (one parse of each line, by ClickHouse)
        client.command("CREATE TABLE IF NOT EXISTS events_raw (event String) ENGINE = Null")
        client.command(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {LOADER} TO events AS {LOAD}")
        for (old,) in client.query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() AND "
                f"name LIKE 'events\\_load\\_%' AND name != '{LOADER}'").result_rows:
            client.command(f"DROP VIEW IF EXISTS {old}")
        # the longest retention: per-project cutoffs are the reads' and `expire`'s
        client.command(f"ALTER TABLE events MODIFY TTL {_ttl(days)}",
                       settings={"materialize_ttl_after_modify": 0})

    def _client(self):
        """This thread's client: a chdb handle or an HTTP session is used by one thread at a time."""
        client = getattr(self._local, "client", None)
        if client is None:
            import clickhouse_connect

            extra = {} if self.url.startswith("chdb:") else {"autogenerate_session_id": False}
            client = clickhouse_connect.get_client(dsn=self.url, **extra)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    # --- reading
    def query(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self._client().query(sql, settings=READ).result_rows]

    def stream(self, sql: str, batch_rows: int = 10_000) -> Generator[list[tuple], None, None]:
        settings = {**READ, "max_block_size": batch_rows}
        with self._client().query_row_block_stream(sql, settings=settings) as blocks:
            for block in blocks:
                yield [tuple(r) for r in block]

    def quote(self, value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        raise TypeError(f"no ClickHouse literal for {type(value).__name__}")

    # --- writing
    def insert(self, jsonl: list[bytes], token: str) -> int:
        """Two inserts at once, the first and second half of the pieces, under tokens of their
        own (`token/0`, `token/1`: the same pieces split the same way again): ClickHouse parses,
        sorts and compresses an insert on one thread, and in-process (chDB) it shares the
        collector's cores. A retry adds neither again; after a half failed, what the other
        loaded arrives again only with different lines (see the store sink), as a copy that
        the table's key keeps once."""
        if not any(jsonl):
            return 0
        if len(jsonl) < 2:
            return self._insert(jsonl, token)
        half = len(jsonl) // 2
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
            second = self._pool.submit(self._insert, jsonl[half:], f"{token}/1")
        try:
            first = self._insert(jsonl[:half], f"{token}/0")
        finally:
            wait([second])
        return first + second.result()

    def _insert(self, jsonl: list[bytes], token: str) -> int:
        summary = self._client().raw_insert(
            "events_raw", ["event"], iter(jsonl), fmt="LineAsString",
            settings={"insert_deduplication_token": token, "insert_deduplicate": 1,
                      "deduplicate_blocks_in_dependent_materialized_views": 1,
                      "async_insert": 0, "max_insert_block_size": 1 << 30,  # one block, one token
                      # copies within the insert are left to FINAL, like any others: 8% faster
                      "optimize_on_insert": 0,
                      # events from many months (an offline device's backlog) never fail a load
                      "throw_on_max_partitions_per_insert_block": 0})
        return summary.written_rows

    def _count(self, condition: str) -> int:
        return self._client().query(f"SELECT count() FROM events WHERE {condition}",
                                    settings=READ).result_rows[0][0]

    def _delete(self, condition: str) -> int:
        n = self._count(condition)
        if n:
            self._client().command(f"DELETE FROM events WHERE {condition}", settings=MUTATE)
        return n

    def delete_user(self, project_id: int, user_id: str, received_up_to: int) -> int:
        # by the id's digest: a DELETE's text is kept on disk (the mutation's record, until a
        # later part outdates it) and must not name the user
        digest = hashlib.md5(user_id.encode()).hexdigest().upper()
        return self._delete(f"project_id = {int(project_id)} AND hex(MD5(user_id)) = '{digest}' "
                            f"AND received_time <= {int(received_up_to)}")

    def expire(self, cutoffs: dict[int, int], default_cutoff: int) -> int:
        limit = ", ".join(f"project_id = {int(p)}, {int(c)}" for p, c in sorted(cutoffs.items()))
        limit = f"multiIf({limit}, {int(default_cutoff)})" if limit else str(int(default_cutoff))
        return self._delete(f"time < {limit}")

    def purge(self, wait_seconds: float = 120.0) -> None:
        """Rewrite the partitions whose parts hold deleted rows (masked by DELETE) without them,
        until no part holds one (a merge running meanwhile can leave a masked row in a new
        part), then wait until the old parts are gone from disk too (within seconds: the
        table's cleanup periods are short)."""
        client = self._client()
        deadline = time.monotonic() + wait_seconds
        while True:
            masked = client.query(
                "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
                "AND table = 'events' AND active AND has_lightweight_delete").result_rows
            for (partition,) in masked:
                client.command(f"OPTIMIZE TABLE events PARTITION ID {self.quote(partition)} FINAL",
                               settings=MUTATE)
            old = client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                               "AND table = 'events' AND NOT active").result_rows[0][0]
            if not masked and not old:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("purge: parts of `events` holding deleted rows are still on disk")
            time.sleep(0.2)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
        for client in clients:
            client.close()
