"""The analytics store, on each engine: what goes in comes out byte for byte, once per event
(the first copy), deletion and retention take rows out of every read at once, and a purge
leaves no file holding them. Then the store sink in a real `collector serve`, and `collector
import`."""

import asyncio
import glob
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_fixtures import event_lines, lines_of, load_scenario, scenario
from collector.analytics.rows import COLUMNS, PARAMS
from collector.analytics.sink import StoreSink
from collector.client import Client
from procs import ENV, Collector
from reference_rows import row

EXPORT = "SELECT event FROM events ORDER BY time, event_id"
T = 1_773_260_000_000


def first_copies(lines: list[str]) -> list[str]:
    """The first line of each (project_id, event_id), ordered as an export is."""
    kept = {}
    for line in lines:
        r = row(line)
        kept.setdefault((r.project_id, r.event_id), (r.time, r.event_id, line))
    return [line for *_, line in sorted(kept.values())]


def exported(store) -> list[str]:
    return [event for (event,) in store.query(EXPORT)]


def copy(line: str, **changes) -> str:
    return json.dumps({**json.loads(line), **changes}, ensure_ascii=False, separators=(",", ":"))


def files_holding(root, text: str) -> list[str]:
    return [p for p in glob.glob(os.path.join(root, "**"), recursive=True)
            if os.path.isfile(p) and text.encode() in open(p, "rb").read()]


def test_export_is_the_input_byte_for_byte(store):
    lines = load_scenario(store, "show_medium")
    want = first_copies(lines)
    assert len(want) < len(lines)  # the scenario holds repeats
    assert exported(store) == want
    streamed = [e for batch in store.stream(EXPORT, batch_rows=1000) for (e,) in batch]
    assert streamed == want


def test_duplicates_are_kept_once_and_the_first_wins(store):
    lines = event_lines(scenario("show_small")["events"][:40])
    a, b = lines[0], lines[1]
    a2 = copy(a, received_time=json.loads(a)["received_time"] + 5)
    store.insert([f"{a}\n{b}\n".encode(), f"{a2}\n".encode()], "one")  # twice in one insert, unchecked
    b2 = copy(b, label="second copy")
    store.insert(lines_of([b2]), "two")  # again in another insert
    store.insert(lines_of(lines[2:]), "three")
    store.insert(lines_of([copy(lines[2], event_id="new-under-an-old-token")]), "three")  # a retry
    assert exported(store) == first_copies(lines)
    assert store.query("SELECT count() FROM events WHERE event_id = 'new-under-an-old-token'") == [(0,)]


def test_a_copy_in_another_month_is_still_one_event(store):
    line = event_lines(scenario("show_small")["events"][:1])[0]
    first = copy(line, time=1772323199999)  # 2026-02-28T23:59:59.999Z
    later = copy(line, time=1772323200000)  # the same event a millisecond later: March
    store.insert(lines_of([first]), "a")
    store.insert(lines_of([later]), "b")
    assert exported(store) == [first]


def test_device_clocks_of_any_month_load_in_one_insert(store):
    """An offline device's backlog, a clock at 1970 or in the next century: one insert holding
    events of 150 device months (more than ClickHouse's partitions per insert by default) loads."""
    line = event_lines(scenario("show_small")["events"][:1])[0]
    month = 31 * 86_400_000
    clocks = [0, 2**62] + [1_500_000_000_000 + i * month for i in range(148)]
    lines = [copy(line, event_id=f"clock-{i}", device_time=t) for i, t in enumerate(clocks)]
    assert store.insert(lines_of(lines), "backlog") == 150
    assert sorted(exported(store)) == sorted(lines)


def test_a_century_of_retention_keeps_todays_events(store):
    """Expiry a hundred years on is past ClickHouse's DateTime (2106): it must not wrap round to
    1970 and expire the event at once."""
    line = event_lines(scenario("show_small")["events"][:1])[0]
    now = int(time.time() * 1000)
    store.insert(lines_of([copy(line, time=now, device_time=now)]), "a")
    if store.dialect == "clickhouse":
        from collector.analytics.clickhouse import ClickHouseStore

        store = ClickHouseStore(store.url, 36_500)
        store._client().command("OPTIMIZE TABLE events FINAL")  # a merge applies the TTL
    else:
        store.retention_days = 36_500
        store.expire({}, store.cutoff(8))
    assert store.query("SELECT count() FROM events") == [(1,)]


def test_delete_user_and_expire_take_rows_out_of_every_read(store):
    lines = load_scenario(store, "show_small")
    rows = [row(line) for line in first_copies(lines)]
    received = {}
    for r in rows:
        received.setdefault((r.project_id, r.user_id), set()).add(r.received_time)
    victim = max(received, key=lambda k: len(received[k]))  # some of theirs came later
    theirs = [r for r in rows if (r.project_id, r.user_id) == victim]
    late = max(r.received_time for r in theirs)
    kept = [r for r in theirs if r.received_time == late]  # received after the request: kept
    removed = store.delete_user(*victim, late - 1)
    assert removed == len(theirs) - len(kept) > 0
    left = [r for r in rows if r not in theirs or r in kept]
    assert exported(store) == [r.event for r in left]
    count = f"SELECT count() FROM events WHERE user_id = {store.quote(victim[1])}"
    assert store.query(count) == [(len(kept),)]

    times = sorted(r.time for r in left)
    middle = times[len(times) // 2]
    projects = sorted({r.project_id for r in left})
    cutoffs = {projects[0]: 0}  # this project keeps everything, the others lose the older half
    assert store.expire(cutoffs, middle) == sum(
        1 for r in left if r.project_id != projects[0] and r.time < middle)
    assert exported(store) == [r.event for r in left if r.project_id == projects[0] or r.time >= middle]


def test_purge_leaves_no_file_holding_a_deleted_user(store, request):
    lines = event_lines(scenario("show_small")["events"][:200])
    marker = "gone-" + secrets.token_hex(16)
    lines = [copy(line, user_id=marker, project_id=8) if i % 4 == 0 else line
             for i, line in enumerate(lines)]
    store.insert(lines_of(lines), "x")
    store.insert(lines_of(lines[1::2]), "y")  # and copies of them
    assert store.delete_user(8, marker, 2**62) == 50
    if store.dialect == "duckdb":
        root = os.path.dirname(store.path)
        store.query("CHECKPOINT")
    else:
        if "chdb" not in request.node.callspec.id:
            return  # a server's files are not ours to read
        root = str(request.getfixturevalue("chdb_dir"))
    assert files_holding(root, marker)  # the check can see them: DELETE only hid them
    store.purge()
    for _ in range(100):  # ClickHouse may still be removing an outdated part's directory
        if not files_holding(root, marker):  # (`delete_tmp_...`), gone from system.parts already
            break
        time.sleep(0.1)
    assert files_holding(root, marker) == []
    assert store.query(f"SELECT count() FROM events WHERE user_id = {store.quote(marker)}") == [(0,)]
    assert exported(store) == first_copies([line for line in lines if marker not in line])


def test_quote_round_trips(store):
    for value in ["it's", "back\\slash", "é ☀️", "", "a'\\'b", 7, -3, None, True]:
        assert store.query(f"SELECT {store.quote(value)}") == [(value,)]


def _scenario_batch(events: list[dict], project: int, user: str, now: int) -> bytes:
    pl = [{"euid": e, "ea": 20, "ac": "poll.voted", "t": now - 1000,
           "pr": {"pollId": "p1", "optionIndex": i % 3, "broadcastId": "b1"}} for i, e in enumerate(events)]
    return json.dumps({"pid": project, "uid": user, "now": now, "pl": pl}).encode()


def test_sink_in_collector_serve_loads_each_event_once(tmp_path):
    now = 1_773_000_000_000
    first = _scenario_batch(["e1", "e2", "e1", "e3"], 8, "u1", now)  # e1 twice: a duplicate
    second = _scenario_batch(["e3", "e4"], 8, "u1", now)  # e3 again, in another batch

    async def send(target, batches):
        async with Client(target, max_attempts=3) as client:
            return [await client.send(b, batch_id=i) for i, b in batches]

    srv = Collector(tmp_path / "c").start()
    replies = asyncio.run(send(srv.target, [("a", first)]))
    assert (replies[0].accepted, replies[0].duplicate) == (3, 1)
    assert srv.stop() == 0
    srv.start()  # its dedup window starts empty: what comes again reaches the log and the store
    asyncio.run(send(srv.target, [("a-again", first), ("b", second)]))
    assert srv.stop() == 0
    logged = [json.loads(line) for p in sorted(glob.glob(str(srv.data / "events" / "*.jsonl")))
              for line in open(p, encoding="utf-8")]
    assert sorted(e["event_id"] for e in logged) == ["e1", "e1", "e2", "e2", "e3", "e3", "e4"]

    from collector.analytics.duck import DuckStore

    store = DuckStore(str(srv.data / "analytics.duckdb"))
    try:
        got = store.query("SELECT event_id, event FROM events ORDER BY event_id")
    finally:
        store.close()
    jsonl = [line.rstrip("\n") for p in sorted(glob.glob(str(srv.data / "events" / "*.jsonl")))
             for line in open(p, encoding="utf-8")]
    assert got == [(r.event_id, r.event) for r in map(row, first_copies(jsonl))]
    assert [e for e, _ in got] == ["e1", "e2", "e3", "e4"]


def _import(*args):
    return subprocess.run([sys.executable, "-m", "collector", "import", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=120)


def test_import_twice_is_once(tmp_path):
    lines = event_lines(scenario("show_small")["events"])
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    one = _import("--data-dir", data, path)
    assert one.returncode == 0, one.stderr
    two = _import("--data-dir", data, path)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["loaded"] == 0 < json.loads(one.stdout)["loaded"]

    from collector.analytics.duck import DuckStore

    store = DuckStore(str(data / "analytics.duckdb"))
    try:
        assert exported(store) == first_copies(lines)
    finally:
        store.close()
    assert oct(os.stat(data / "analytics.duckdb").st_mode & 0o777) == "0o600"


def test_import_says_which_file_and_line_is_wrong(tmp_path):
    good = event_lines(scenario("show_small")["events"][:3])
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(good) + "\n\n{\"event_id\": \n", encoding="utf-8")
    bad = _import("--data-dir", tmp_path / "data", path)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"collector import: {path}:5: ") and bad.stderr.count("\n") == 1
    missing = _import("--data-dir", tmp_path / "data", tmp_path / "nothing.jsonl")
    assert missing.returncode == 2 and "nothing.jsonl" in missing.stderr


def test_import_while_serve_holds_the_file_says_so(tmp_path):
    srv = Collector(tmp_path / "c").start()
    path = tmp_path / "events.jsonl"
    path.write_text(event_lines(scenario("show_small")["events"][:3])[0] + "\n", encoding="utf-8")
    locked = _import("--data-dir", srv.data, path)
    srv.stop()
    assert locked.returncode == 2
    assert "in use by another process" in locked.stderr and locked.stderr.count("\n") == 1


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), TEXT,
                   st.sampled_from([0.5, 12.99, -3.25, 1e-7, 1e30, 99999.99, 0.1]),
                   st.lists(st.integers(0, 3), max_size=2))
ITEM = st.one_of(st.dictionaries(st.sampled_from(["qty", "sku"]), st.one_of(st.integers(-2, 5), st.booleans(), TEXT),
                                 max_size=2), st.integers(0, 3), TEXT)
LOCALES = st.one_of(st.none(), st.integers(), TEXT, st.sampled_from(
    ["en_US", "nb-no", "de_DE@euro", "fr", "zh_Hant_TW", "pt-BR.UTF-8", "_us", "x_éU", "es-419"]))
examples = itertools.count(1)


@st.composite
def odd_events(draw):
    """Events whose params and locale take every JSON type where the columns expect one."""
    out = []
    for i in range(draw(st.integers(1, 12))):
        keys = draw(st.lists(st.sampled_from([k for k in PARAMS if k != "items"]), unique=True))
        params = {k: draw(VALUES) for k in keys}
        if draw(st.booleans()):
            params["items"] = draw(st.one_of(st.lists(ITEM, max_size=3), VALUES))
        out.append({"event_id": f"odd-{i}", "action": draw(st.sampled_from(
                        ["checkout.completed", "transaction.complete", "poll.voted", "show.liked"])),
                    "project_id": 0, "user_id": "u", "time": T, "device_time": T, "received_time": T,
                    "device": draw(st.one_of(st.none(), st.fixed_dictionaries({"locale": LOCALES}))),
                    "params": params})
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=odd_events())
def test_each_engine_derives_the_columns_as_the_contract_says(store, events):
    """The engines make the rows themselves, in SQL: each column is what ANALYTICS.md section 1
    says of the event (reference_rows.row, in Python), whatever JSON type its param has."""
    project = next(examples)
    lines = [json.dumps({**e, "project_id": project}, ensure_ascii=False) for e in events]
    store.insert(lines_of(lines), f"odd-{project}")
    names = ", ".join(COLUMNS)
    got = store.query(f"SELECT {names} FROM events WHERE project_id = {project} ORDER BY event_id")
    want = sorted((row(line) for line in lines), key=lambda r: r.event_id)
    assert [tuple(r) for r in got] == [tuple(r) for r in want]


def test_the_sink_sets_aside_a_line_the_store_cannot_hold(store, tmp_path):
    """The sink hands the store the log's lines unchecked; when the store refuses them, the
    lines it cannot hold go to the dead letter and the others are loaded."""
    lines = event_lines(scenario("show_small")["events"][:6])
    bad = ["not json", '{"event_id": "x"}', copy(lines[0], event_id="neg", project_id=-1)]
    payload = ("\n".join(lines[:3] + bad + lines[3:]) + "\n").encode()
    sink = StoreSink("store", str(tmp_path), store=store)
    dead = [json.loads(d) for d in sink._load([SimpleNamespace(payload=payload)], "0-1")]
    assert [d["raw"] for d in dead] == bad
    assert {d["reason"] for d in dead} == {"store_refused"}
    assert exported(store) == first_copies(lines)
    assert sink._load([SimpleNamespace(payload=payload)], "0-1") != []  # checked again: set aside again
    assert exported(store) == first_copies(lines)  # and nothing added twice


def test_an_insert_of_many_records_retried_or_refused_in_part_loads_each_event_once(store, tmp_path):
    """An insert of several records (ClickHouse loads halves at once, each under a token of its
    own): retried, it adds nothing; refused for a bad line in one half, the other half loaded
    meanwhile, the sink sets the line aside and every event is there once."""
    lines = event_lines(scenario("show_small")["events"][:40])
    records = [("\n".join(lines[i:i + 10]) + "\n").encode() for i in range(0, 20, 10)]
    store.insert(records, "0-2")
    store.insert(records, "0-2")  # a retry
    assert exported(store) == first_copies(lines[:20]) and stored_rows(store) == 20
    records = [("\n".join(lines[i:i + 10]) + "\n").encode() for i in range(20, 40, 10)]
    records[1] = records[1] + b"not json\n"  # the second half is refused, the first loads
    sink = StoreSink("store", str(tmp_path), store=store)
    rows = []
    for _ in range(2):  # and again, as after a restart
        dead = sink._load([SimpleNamespace(payload=r) for r in records], "2-4")
        assert [json.loads(d)["raw"] for d in dead] == ["not json"]
        assert exported(store) == first_copies(lines)
        rows.append(stored_rows(store))
    assert rows[0] == rows[1]  # the second time added nothing


def stored_rows(store) -> int:
    """Rows as stored, copies not merged yet included (ClickHouse's reads say FINAL)."""
    if store.dialect == "clickhouse":
        return store._client().query("SELECT count() FROM events", settings={"final": 0}).result_rows[0][0]
    return store.query("SELECT count(*) FROM events")[0][0]


def test_an_earlier_version_of_each_store_is_taken_over(store, tmp_path):
    """DuckDB: a file keyed by the event (as earlier versions made it) is rewritten without the
    key when opened, its rows kept. ClickHouse: the view of another version's loader is dropped,
    this version's loads, and a second store on the same database adds no second view."""
    lines = event_lines(scenario("show_small")["events"][:30])
    if store.dialect == "duckdb":
        import duckdb

        from collector.analytics.duck import DDL, DuckStore

        new = DuckStore(str(tmp_path / "new" / "analytics.duckdb"))
        new.insert(lines_of(lines[:10]), "before")
        new.close()
        path = str(tmp_path / "old" / "analytics.duckdb")
        os.makedirs(os.path.dirname(path))
        con = duckdb.connect(path)
        con.execute(DDL.format(db="").replace(
            "USING COMPRESSION zstd\n", "USING COMPRESSION zstd,\n    PRIMARY KEY (project_id, event_id)\n"))
        con.execute(f"ATTACH '{new.path}' AS new (READ_ONLY)")
        con.execute("INSERT INTO events SELECT * FROM new.events")
        con.close()
        store = DuckStore(path)
        keys = ("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
                "AND table_name = 'events'")
        assert store.query(keys) == [(0,)]
    else:
        from collector.analytics.clickhouse import LOADER, ClickHouseStore

        client = store._client()
        client.command("CREATE MATERIALIZED VIEW events_load_000000000000 TO events AS "
                       "SELECT * FROM events WHERE 0")
        store = ClickHouseStore(store.url)
        views = client.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                             "AND name LIKE 'events_load_%'").result_rows
        assert views == [(LOADER,)]
        store.insert(lines_of(lines[:10]), "before")
    store.insert(lines_of(lines), "after")
    assert exported(store) == first_copies(lines)
    store.close()
