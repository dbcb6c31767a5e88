"""Configuration: one TOML file, overridden by environment variables, then by flags.

Every default works on a laptop: listen on loopback, keep the log and the JSON Lines output in
./data, no API keys (open to any client on loopback).

Environment variables are COLLECTOR_<SECTION>_<KEY> (or COLLECTOR_<KEY> for top-level keys),
e.g. COLLECTOR_LISTEN=127.0.0.1:6000, COLLECTOR_LIMITS_MAX_MESSAGE_BYTES=1048576; values are
parsed as TOML values when they can be (numbers, booleans, arrays) and taken as strings if not.
"""

import os
import tomllib
from typing import Any

import msgspec


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_message_bytes: int = 4 << 20  # the gRPC message size limit
    max_events_per_batch: int = 1000  # SPEC
    # batches being worked on (their bytes, then their normalised events), all projects together
    inflight_bytes: int = 64 << 20
    inflight_bytes_per_project: int = 16 << 20
    max_streams: int = 256  # concurrent IngestStream calls
    max_subscribers: int = 64  # concurrent Subscribe calls (a budget of their own)
    # calls of one client (API key; without keys, peer address) at once: the rest stay for others
    max_calls_per_client: int = 128
    receive_seconds: float = 10.0  # an Ingest or Subscribe request must arrive whole within this
    stream_idle_seconds: float = 300.0  # an IngestStream with no batch for this long is ended
    # the log and every sink's files under data_dir (and each sink's own directory) together:
    # past it ingest is refused with RESOURCE_EXHAUSTED, as at the log's cap
    max_disk_bytes: int = 16 << 30
    # calls of any kind at once; past it gRPC itself answers RESOURCE_EXHAUSTED before reading
    # the message. With max_message_bytes, this bounds the memory that requests can take.
    max_concurrent_rpcs: int = 512
    retry_after_ms: int = 200  # what a client refused for load is told to wait
    # one batch's normalised events (each repeats the header): past it, INVALID_ARGUMENT
    max_batch_output_bytes: int = 32 << 20


class Log(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    segment_bytes: int = 64 << 20
    max_bytes: int = 4 << 30  # the disk cap; past it ingest is refused, never dropped
    fsync: bool = True
    cache_bytes: int = 16 << 20  # the latest records, kept in memory for sinks and subscribers
    # group commits start at most this often: under load, a batch waits up to this long to
    # share its fsync with more (fewer fsyncs, more throughput); 0: commit as soon as possible
    commit_interval_seconds: float = 0.01


class Dedup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_events: int = 200_000  # the last this many accepted event ids (~60 bytes each)...
    window_seconds: float = 3600.0  # ...that arrived within this long


class Rules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per project: action patterns (`poll.*`, exact names) to allow or deny."""

    allow: list[str] = []  # empty: everything not denied
    deny: list[str] = []


class Tls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cert: str = ""
    key: str = ""


class Analytics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The event store that export, the dashboard's metrics, deletion and retention read."""

    store: str = "duckdb"  # duckdb (embedded), clickhouse, or "" (off)
    path: str = ""  # the DuckDB file; default <data_dir>/analytics.duckdb
    clickhouse_url: str = ""  # http(s)://user:password@host:8123/database, or chdb:///dir
    retention_days: int = 365
    retention_days_by_project: dict[str, int] = {}  # project id (a string) -> days
    purge_interval_hours: float = 24.0  # deleted users' bytes are rewritten away this often
    memory_limit_mb: int = 256  # DuckDB's buffer pool; a query needing more spills to disk


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9464"  # empty: no metrics endpoint
    data_dir: str = "data"
    log_format: str = "auto"  # json, text, or auto: text on a terminal, JSON otherwise
    log_level: str = "info"
    drain_seconds: float = 10.0  # graceful shutdown: how long in-flight work may take
    # `collector serve`'s umask: the log, outputs, cursors and store hold user ids, so new files
    # are 0600 and directories 0700 by default (0o022 for 0644 and 0755)
    umask: int = 0o077
    api_keys: dict[str, list[int]] = {}  # key -> project ids it may send to; none: open
    # the HTTP API (export, metrics, deletion) and the dashboard; empty: off
    http_listen: str = "127.0.0.1:8080"
    admin_tokens: dict[str, list[int]] = {}  # bearer token -> projects it may read and delete in
    analytics: Analytics = Analytics()
    limits: Limits = Limits()
    log: Log = Log()
    dedup: Dedup = Dedup()
    rules: dict[str, Rules] = {}  # project id (as a string, TOML keys are) -> rules
    tls: Tls = Tls()
    # each: `type` names a built-in (jsonl, stdout, dead_letter) or an entry point of the
    # `collector.sinks` group; `name` (default: the type) names its cursor; the rest is its own
    sinks: list[dict[str, Any]] = msgspec.field(
        default_factory=lambda: [{"type": "jsonl"}, {"type": "dead_letter"}]
    )


def _env_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(raw: dict, environ) -> None:
    sections = ("limits", "log", "dedup", "tls", "analytics")
    for var, text in environ.items():
        if not var.startswith("COLLECTOR_") or var == "COLLECTOR_NO_NATIVE":
            continue
        parts = var[len("COLLECTOR_"):].lower()
        for section in sections:
            if parts.startswith(section + "_"):
                raw.setdefault(section, {})[parts[len(section) + 1 :]] = _env_value(text)
                break
        else:
            if parts in Config.__struct_fields__:
                raw[parts] = _env_value(text)


def load(path: str | None = None, *, environ=None, **overrides) -> Config:
    """The configuration from `path` (if any), the environment, then `overrides` (flags)."""
    raw: dict = {}
    if path:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    _apply_env(raw, os.environ if environ is None else environ)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ValueError(f"configuration: {exc}") from None
