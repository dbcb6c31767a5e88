"""How fast the dashboard's metrics answer at scale: a season of generated shows (`collector
demo`'s shows, one an evening, two broadcasts each, viewers from one pool of fans who come back)
loaded into DuckDB and into ClickHouse in process (chDB), then every metric asked repeatedly
over the whole season and over one show, without and with filters. Prints the median and 95th
percentile of each next to a bare `SELECT count(*)` of the table in the same run.

    python benchmarks/bench_dashboard.py [--events N] [--repeat R] [--dir DIR] [--duckdb-memory-mb M]
                                         [--engines duckdb,chdb]

With --dir the stores are kept there and reused by the next run with the same --events.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgspec  # noqa: E402

from collector import demo  # noqa: E402
from collector.analytics import query as q  # noqa: E402
from collector.analytics.metrics import METRICS  # noqa: E402
from collector.analytics.rows import check  # noqa: E402

PROJECT = 8
SEASON_START = 1_767_204_000_000  # 2025-12-31T18:00:00Z; a show starts every day at 18:00 UTC
DAY = 86_400_000
SHOW_USERS, SHOW_MINUTES = 2_000, 120  # about 114,000 events a show
FANS = 60_000  # the pool each show's viewers come from
INSERT_ROWS = 100_000
_encode = msgspec.json.Encoder()


def season(n_events: int):
    """Rows of shows, a list per insert, until n_events (the same for the same n)."""
    rng = random.Random(7)
    fans = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(FANS)]
    chunk, made, show = [], 0, 0
    while made < n_events:
        people, planned = demo.plan(show, SHOW_USERS, SHOW_MINUTES)
        start = SEASON_START + show * DAY
        who = [fans[rng.randrange(FANS)] for _ in people]
        for e in planned:
            if made == n_events:
                break
            v = people[e.user]
            params = dict(e.params, broadcastId=f"{e.params['broadcastId']}-{show:03d}")
            if "orderId" in params:
                params["orderId"] = f"{params['orderId']}-{show:03d}"
            t = start + e.at
            chunk.append(_encode.encode({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "action": e.action,
                "label": None, "project_id": PROJECT, "user_id": who[e.user], "session_id": v.session,
                "time": t, "device_time": t, "sent_time": t + 900, "received_time": t + 1000,
                "uptime_ms": e.at, "url": None, "screen_name": None, "screen_count": None,
                "connectivity": "wifi", "carrier": None, "orientation": "portrait",
                "device": {"type": "phone" if v.device == 4 else "tablet", "manufacturer": None,
                           "model": None, "os_version": "18.1", "locale": v.locale,
                           "timezone": v.tz, "density": None},
                "app": {"name": "Live Demo", "sdk_type": v.platform, "sdk_flavor": "release",
                        "sdk_version": None, "sdk_build": None, "version": None, "flavor": None,
                        "build": None},
                "params": params}))
            made += 1
            if len(chunk) == INSERT_ROWS:
                yield [check(chunk)[0]]
                chunk = []
        show += 1
    if chunk:
        yield [check(chunk)[0]]


def duck(root: str, memory_limit_mb: int):
    from collector.analytics.duck import DuckStore

    return DuckStore(os.path.join(root, "duckdb", "analytics.duckdb"), memory_limit_mb=memory_limit_mb)


def load(stores, root: str, n_events: int) -> None:
    """Load the season into each store that does not hold it already (a mark per engine)."""
    marks = {name: os.path.join(root, f"loaded-{name}.json") for name in stores}
    held = {name for name, mark in marks.items()
            if os.path.exists(mark) and json.load(open(mark)) == {"events": n_events}}
    if held:
        print(f"reusing the {n_events:,} events loaded in {root} ({', '.join(sorted(held))})")
    stores = {name: s for name, s in stores.items() if name not in held}
    if not stores:
        return
    seconds = {name: 0.0 for name in stores}
    t0 = time.perf_counter()
    for i, chunk in enumerate(season(n_events)):
        for name, store in stores.items():
            t = time.perf_counter()
            store.insert(chunk, f"season-{i}")
            seconds[name] += time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"loaded {n_events:,} events in {total:.0f} s (" + ", ".join(
        f"{name} inserts {s:.0f} s" for name, s in seconds.items()) + ")")
    for name in stores:
        with open(marks[name], "w") as f:
            json.dump({"events": n_events}, f)


def cases(stores) -> list[tuple[str, str, dict]]:
    """(metric, what, params): the season and the busiest broadcast's show, bare and filtered."""
    store = next(iter(stores.values()))
    (first, last), = store.query(f"SELECT min(time), max(time) FROM events WHERE project_id = {PROJECT}")
    (broadcast, lo, hi), = store.query(
        f"SELECT broadcast_id, min(time), max(time) FROM events WHERE project_id = {PROJECT} "
        "AND broadcast_id IS NOT NULL GROUP BY broadcast_id ORDER BY count(*) DESC, broadcast_id LIMIT 1")
    whole = {"projectId": PROJECT, "from": first - first % DAY, "to": last - last % DAY + DAY}
    show = {"projectId": PROJECT, "broadcastId": broadcast, "from": lo - lo % 60_000, "to": hi + 60_000}
    campaign = {"campaignId": "35", "country": "NO"}
    out = [("viewers", "show", show), ("viewers", "show, country", {**show, "country": "NO"})]
    for name in ("engagement", "polls", "sponsors", "revenue", "funnel"):
        out += [(name, "season", whole), (name, "season, campaign+country", {**whole, **campaign})]
    out += [("activity", "season, step 1 d", {**whole, "step": 86400}),
            ("activity", "season, campaign+country", {**whole, **campaign, "step": 86400}),
            ("activity", "show, step 1 min", {**show, "step": 60})]
    return out


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median and 95th percentile of `repeat` calls (after one to warm up), in ms."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--dir", help="keep the stores here (and reuse them)")
    p.add_argument("--duckdb-memory-mb", type=int, default=0,
                   help="DuckDB's buffer pool while queried (analytics.memory_limit_mb; 0, the "
                        "default: DuckDB's own, 80%% of the machine's memory)")
    p.add_argument("--engines", default="duckdb,chdb", help="the stores to load and query")
    args = p.parse_args()
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or tmp
        stores = {}
        if "duckdb" in engines:
            stores["duckdb"] = duck(root, args.duckdb_memory_mb)
        if "chdb" in engines:
            from collector.analytics.clickhouse import ClickHouseStore

            stores["chdb"] = ClickHouseStore(f"chdb://{os.path.join(root, 'chdb')}")
        load(stores, root, args.events)
        rows = []
        scan = {name: timed(lambda s=s: s.query("SELECT count(*) FROM events"), args.repeat)
                for name, s in stores.items()}
        rows.append(("count(*)", "the table", scan))
        for name, what, params in cases(stores):
            fn, extra, needs_from = METRICS[name]
            query = q.parse({k: str(v) for k, v in params.items()}, None, extra=extra,
                            needs_from=needs_from)
            rows.append((name, what, {engine: timed(lambda s=s, fn=fn, query=query: fn(s, query), args.repeat)
                                      for engine, s in stores.items()}))
        print(f"{args.events:,} events; ms, median / p95 of {args.repeat} calls")
        print(f"{'metric':<12}{'what':<28}" + "".join(f"{name:>20}" for name in stores))
        for name, what, by in rows:
            print(f"{name:<12}{what:<28}" + "".join(
                f"{f'{med:.0f} / {p95:.0f}':>20}" for med, p95 in by.values()))
        for s in stores.values():
            s.close()


if __name__ == "__main__":
    main()
