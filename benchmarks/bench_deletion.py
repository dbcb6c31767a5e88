"""What one user's deletion costs among N events: `done` (the store's delete, after which no read
returns them) and the purge (no file holds them: the store rewritten, the log's records blanked
in place, the jsonl output rewritten), on DuckDB and on chDB (ClickHouse in-process).

The corpus's batches have one user each (50 events a batch), so the user deleted has 50 events.

    python benchmarks/bench_deletion.py [--events N] [--engines duckdb,chdb]
    (--engines "" times the log and the jsonl files only)
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from collector.analytics.deletions import Matcher, blank_log, rewrite_files  # noqa: E402
from collector.log import EVENTS, Log  # noqa: E402

RECEIVED = 1_765_000_100_000
PER_BATCH = 50


def corpus(n_events: int) -> list[bytes]:
    """The normalised events of each batch (JSON Lines), one user per batch."""
    return [collector.decode(b, received_time=RECEIVED).to_jsonl()
            for b in make_batches(n_events // PER_BATCH, PER_BATCH, seed=5)]


def open_store(engine: str, directory: str):
    if engine == "duckdb":
        from collector.analytics.duck import DuckStore

        return DuckStore(os.path.join(directory, "analytics.duckdb"))
    from collector.analytics.clickhouse import ClickHouseStore

    return ClickHouseStore(f"chdb://{os.path.join(directory, 'chdb')}")


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def bench_store(engine: str, payloads: list[bytes], victim: tuple[int, str], directory: str) -> dict:
    store = open_store(engine, directory)
    t = time.perf_counter()
    chunk = 2000  # batches (100,000 events) an insert
    for i in range(0, len(payloads), chunk):
        store.insert(payloads[i:i + chunk], f"bench:{i}")  # as the store sink does
    load = time.perf_counter() - t
    done, n = timed(store.delete_user, victim[0], victim[1], RECEIVED)
    purge, _ = timed(store.purge)
    left = store.query(f"SELECT count() FROM events WHERE user_id = {store.quote(victim[1])}")[0][0]
    total = store.query("SELECT count() FROM events")[0][0]
    store.close()
    assert n == PER_BATCH and left == 0, (n, left)
    return {"load": load, "done": done, "purge": purge, "rows": total}


async def bench_files(payloads: list[bytes], victim: tuple[int, str], directory: str) -> dict:
    log = Log(os.path.join(directory, "log"), fsync=True, cache_bytes=0,
              max_bytes=2 * sum(map(len, payloads)))  # room for the whole corpus
    for i in range(0, len(payloads), 200):
        await asyncio.gather(*(log.append(EVENTS, RECEIVED, p) for p in payloads[i:i + 200]))
    events = os.path.join(directory, "events")
    os.makedirs(events)
    size, part, n = 0, [], 0
    for p in payloads:  # files of 128 MiB, as the jsonl sink rotates them
        part.append(p)
        size += len(p)
        if size >= 128 << 20 or p is payloads[-1]:
            with open(os.path.join(events, f"events-{n:04d}.jsonl"), "wb") as f:
                f.write(b"".join(part))
            size, part, n = 0, [], n + 1
    matcher = Matcher({victim: RECEIVED})
    t = time.perf_counter()
    blanked = await blank_log(log, matcher, log.end)
    log_s = time.perf_counter() - t
    files_s, dropped = timed(rewrite_files, events, matcher.event)
    log_bytes = log.size
    await log.close()
    assert blanked[victim] == PER_BATCH and dropped[victim] == PER_BATCH
    return {"log": log_s, "files": files_s, "bytes": log_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--engines", default="duckdb,chdb")
    args = ap.parse_args()
    t = time.perf_counter()
    payloads = corpus(args.events)
    first = payloads[len(payloads) // 2].split(b"\n", 1)[0]
    import json

    ev = json.loads(first)
    victim = (ev["project_id"], ev["user_id"])
    print(f"{args.events:,} events, {sum(map(len, payloads)) / 1e6:,.0f} MB of JSON Lines "
          f"(made in {time.perf_counter() - t:.0f} s); deleting one user's {PER_BATCH}")
    print(f"{'what':<44}{'seconds':>10}")
    for engine in filter(None, args.engines.split(",")):
        directory = tempfile.mkdtemp(prefix=f"bench-deletion-{engine}-")
        try:
            r = bench_store(engine, payloads, victim, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"{engine + ': load ' + format(r['rows'], ',') + ' rows':<44}{r['load']:>10.2f}")
        print(f"{engine + ': done (delete_user)':<44}{r['done']:>10.3f}")
        print(f"{engine + ': purge (store rewritten)':<44}{r['purge']:>10.2f}")
    directory = tempfile.mkdtemp(prefix="bench-deletion-files-")
    try:
        r = asyncio.run(bench_files(payloads, victim, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{'purge: log blanked in place (' + format(r['bytes'] / 1e6, ',.0f') + ' MB)':<44}{r['log']:>10.2f}")
    print(f"{'purge: jsonl files rewritten':<44}{r['files']:>10.2f}")


if __name__ == "__main__":
    main()
