"""Shared fixtures of the analytics tests (a pytest plugin, see conftest.py).

`store` is each engine in turn: DuckDB in the test's directory, and ClickHouse in process
(chdb); with CLICKHOUSE_URL set (http://user:password@host:8123), a real server too. chdb runs
one engine per process and cannot move it to another directory while it is open, so every chdb
test shares one engine for the session and gets a database of its own.
"""

import json
import math
import os
import pathlib
import uuid

import pytest

from collector.analytics.rows import check
from procs import KEEP_DAYS

SCENARIOS = pathlib.Path(__file__).parent / "analytics" / "scenarios"
ENGINES = ["duckdb", "chdb"] + (["clickhouse"] if os.environ.get("CLICKHOUSE_URL") else [])


def scenario(name: str) -> dict:
    with open(SCENARIOS / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def event_lines(events: list[dict]) -> list[str]:
    """The events as the collector writes them: compact JSON, UTF-8 as is."""
    return [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in events]


def lines_of(lines: list[str]) -> list[bytes]:
    """Lines as `collector import` hands them to the store: checked, the first copy of each
    event, in one piece of JSON Lines."""
    good, bad = check([line.encode() for line in lines])
    assert not bad, bad
    return [good]


def load_scenario(store, name: str) -> list[str]:
    """Insert a scenario's events (in one insert, the first copy of each winning); their lines."""
    lines = event_lines(scenario(name)["events"])
    store.insert(lines_of(lines), f"scenario:{name}")
    return lines


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chdb")


def _clickhouse(base: str, database: str):
    """A ClickHouseStore in a new database of the engine at `base`; dropped when closed."""
    import clickhouse_connect

    from collector.analytics.clickhouse import ClickHouseStore

    admin = clickhouse_connect.get_client(dsn=base)
    admin.command(f"CREATE DATABASE {database}")
    sep = "&" if "?" in base else "?"
    store = ClickHouseStore(f"{base}{sep}database={database}", KEEP_DAYS)
    return store, admin


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    """A new, empty store of each engine."""
    if request.param == "duckdb":
        from collector.analytics.duck import DuckStore

        s = DuckStore(str(tmp_path / "store" / "analytics.duckdb"), KEEP_DAYS)
        yield s
        s.close()
        return
    base = (f"chdb://{request.getfixturevalue('chdb_dir')}" if request.param == "chdb"
            else os.environ["CLICKHOUSE_URL"])
    database = f"t_{uuid.uuid4().hex[:12]}"
    s, admin = _clickhouse(base, database)
    yield s
    s.close()
    admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    admin.close()


def same(got, want, path="") -> None:
    """Equal, numbers within 1e-9 relative (the contract's tolerance for money)."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9), (path, got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, got, want)
        for k in want:
            same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]")
    else:
        assert got == want and type(got) is type(want), (path, got, want)
