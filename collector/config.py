"""Configuration: one TOML file, overridden by environment variables, then by flags.

Every default works on a laptop: listen on loopback, keep the log and the JSON Lines output in
./data, no API keys (open to any client on loopback).

Environment variables are COLLECTOR_<SECTION>_<KEY> (or COLLECTOR_<KEY> for top-level keys),
e.g. COLLECTOR_LISTEN=127.0.0.1:6000, COLLECTOR_LIMITS_MAX_MESSAGE_BYTES=1048576; values are
parsed as TOML values when they can be (numbers, booleans, arrays) and taken as strings if not.

Everything is checked at load, sinks included (each is built from its options), so that a
mistake is one line naming the setting, the problem and where the value came from, before
anything starts; a COLLECTOR_ variable that names no setting is such a mistake too.
"""

import json
import os
import tomllib
import typing
from typing import Any

import msgspec

from . import sinks as sink_types


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_message_bytes: int = 4 << 20  # the gRPC message size limit
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
    # DuckDB's memory: 0 is its own default (80% of the machine's); a bound must leave room for
    # the primary key's index, which is in memory (256 MB holds about 600,000 events' keys)
    memory_limit_mb: int = 0


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


class ConfigError(ValueError):
    """A setting that cannot be used: one line naming it, the problem and where it came from."""


SECTIONS = {name: t for name, t in typing.get_type_hints(Config).items()
            if isinstance(t, type) and issubclass(t, msgspec.Struct)}
OTHER_ENV = {"COLLECTOR_NO_NATIVE"}  # read elsewhere (collector.decode), not a setting
# numbers for which 0 means something (at once, no cache, no wait, the engine's own default);
# every other must be positive
ZERO_ALLOWED = {"drain_seconds", "limits.retry_after_ms", "log.cache_bytes",
                "log.commit_interval_seconds", "analytics.memory_limit_mb"}
BY_PROJECT = {"rules", "analytics.retention_days_by_project"}  # keyed by project id


def reason(exc: OSError) -> str:
    """Why a file or a socket failed, as the end of a sentence: `address already in use`."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _one_of(*choices):
    return lambda v: None if v in choices else f"{v!r} is not one of {', '.join(map(repr, choices))}"


def _address(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return f"{value!r} is not host:port"
    return None


def _address_or_none(value: str) -> str | None:
    return None if value == "" else _address(value)


MAX_RETENTION_DAYS = 36_500  # a century: the stores' dates and TTLs stay in range


def _retention(days: int) -> str | None:
    if days < 1:
        return f"{days}: must be positive"
    return f"{days}: at most {MAX_RETENTION_DAYS} days" if days > MAX_RETENTION_DAYS else None


def _retention_by_project(days: dict) -> str | None:
    return next((f"project {p}: {_retention(d)}" for p, d in days.items() if _retention(d)), None)


CHECKS = {
    "listen": _address,
    "metrics_listen": _address_or_none,
    "http_listen": _address_or_none,
    "log_format": _one_of("auto", "json", "text"),
    "log_level": _one_of("debug", "info", "warning", "error", "critical"),
    "analytics.store": _one_of("duckdb", "clickhouse", ""),
    "analytics.retention_days": _retention,
    "analytics.retention_days_by_project": _retention_by_project,
}


def _origin(origins: dict, name: str) -> str:
    """Where a setting came from: its own entry, else its table's, else the default."""
    while name:
        if name in origins:
            return origins[name]
        name = name.rpartition(".")[0]
    return "default"


def _error(origins: dict, name: str, problem: str) -> ConfigError:
    return ConfigError(f"{name}: {problem} ({_origin(origins, name)})")


def _env_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _env_setting(var: str) -> tuple[str, ...]:
    """The setting a variable names: top-level keys first (`COLLECTOR_LOG_LEVEL` is `log_level`,
    not `level` of [log]), then a section's."""
    name = var[len("COLLECTOR_"):].lower()
    if name in Config.__struct_fields__:
        return (name,)
    for section in SECTIONS:
        if name.startswith(section + "_"):
            return section, name[len(section) + 1:]
    raise ConfigError(f"{var}: no such setting (environment)")


def _apply_env(raw: dict, origins: dict, environ) -> None:
    for var, text in environ.items():
        if not var.startswith("COLLECTOR_") or var in OTHER_ENV:
            continue
        *section, key = _env_setting(var)
        table = raw.setdefault(section[0], {}) if section else raw
        if not isinstance(table, dict):
            raise _error(origins, section[0], "a section, given as a value")
        table[key] = _env_value(text)
        origins[".".join((*section, key))] = f"env {var}"


def _read_file(path: str, origins: dict) -> dict:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {reason(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not TOML: {exc}") from None
    for key, value in raw.items():
        subkeys = value if key in SECTIONS and isinstance(value, dict) else ()
        origins.update({f"{key}.{sub}": f"file {path}" for sub in subkeys} or {key: f"file {path}"})
    return raw


def _value(t, value, name: str, origins: dict):
    """`value` as type `t`, checked: sections and per-project tables key by key."""
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        if not isinstance(value, dict):
            raise _error(origins, name, f"a section ([{name}]), given as a value")
        return _build(t, value, name + ".", origins)
    if name in BY_PROJECT and isinstance(value, dict):
        for key in value:
            if not key.isdigit():
                raise _error(origins, f"{name}.{key}", "not a project id (a number)")
    if typing.get_origin(t) is dict and isinstance(value, dict):
        item = typing.get_args(t)[1]
        if isinstance(item, type) and issubclass(item, msgspec.Struct):
            return {key: _value(item, v, f"{name}.{key}", origins) for key, v in value.items()}
    try:
        value = msgspec.convert(value, t)
    except msgspec.ValidationError as exc:
        raise _error(origins, name, str(exc)) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0 or (value == 0 and name not in ZERO_ALLOWED):
            raise _error(origins, name, f"{value}: must be positive")
    problem = CHECKS[name](value) if name in CHECKS else None
    if problem:
        raise _error(origins, name, problem)
    return value


def _build(struct: type, raw: dict, where: str, origins: dict):
    hints = typing.get_type_hints(struct)
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise _error(origins, where + key, "no such setting")
        values[key] = _value(hints[key], value, where + key, origins)
    return struct(**values)


def _check_together(cfg: Config, origins: dict) -> None:
    """What no single setting says: pairs that go together, and the sinks, each built once."""
    if bool(cfg.tls.cert) != bool(cfg.tls.key):
        given, missing = ("tls.cert", "tls.key") if cfg.tls.cert else ("tls.key", "tls.cert")
        raise _error(origins, given, f"needs {missing} too")
    if cfg.analytics.store == "clickhouse" and not cfg.analytics.clickhouse_url:
        raise _error(origins, "analytics.store", "clickhouse needs analytics.clickhouse_url")
    names: dict[str, int] = {}
    for i, entry in enumerate(cfg.sinks):
        try:
            name = sink_types.load(entry, cfg.data_dir).name
        except ValueError as exc:
            raise ConfigError(f"{exc} ({_origin(origins, 'sinks')})") from None
        if name in names:
            raise ConfigError(f"sink {name}: sinks[{names[name]}] has this name too: give each "
                              f"sink its own `name` ({_origin(origins, 'sinks')})")
        names[name] = i


def resolve(path: str | None = None, *, environ=None, **overrides) -> tuple[Config, dict]:
    """The configuration, and where each setting given came from (`file F`, `env VAR`,
    `flag --x`; the others are defaults). Raises ConfigError."""
    origins: dict = {}
    raw = _read_file(path, origins) if path else {}
    _apply_env(raw, origins, os.environ if environ is None else environ)
    for key, value in overrides.items():
        if value is not None:
            raw[key] = value
            origins[key] = "flag --" + key.replace("_", "-")
    cfg = _build(Config, raw, "", origins)
    _check_together(cfg, origins)
    return cfg, origins


def load(path: str | None = None, *, environ=None, **overrides) -> Config:
    """The configuration from `path` (if any), the environment, then `overrides` (flags)."""
    return resolve(path, environ=environ, **overrides)[0]


def toml_value(v) -> str:
    """A value as TOML (strings as JSON writes them: TOML reads its escapes the same)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def _lines(values: dict, where: str, origins: dict) -> list[str]:
    return [f"{key} = {toml_value(value)}  # {_origin(origins, where + key)}"
            for key, value in values.items() if value is not None]


def show(cfg: Config, origins: dict) -> str:
    """The effective configuration as TOML that loads back, each value with its origin; every
    sink with all of its options."""
    plain = msgspec.to_builtins(cfg)
    top = {k: v for k, v in plain.items() if k not in SECTIONS and k != "sinks"}
    out = _lines(top, "", origins)
    for section in SECTIONS:
        out += ["", f"[{section}]", *_lines(plain[section], section + ".", origins)]
    given = _origin(origins, "sinks")
    for entry in cfg.sinks:
        options = sink_types.options(entry)
        out += ["", "[[sinks]]"] + [
            f"{key} = {toml_value(value)}  # {given if key in entry else 'default'}"
            for key, value in options.items() if value is not None]
    return "\n".join(out) + "\n"
