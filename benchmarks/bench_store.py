"""How fast the analytics store loads, against how fast the collector ingests, in one run.

1. Load alone: the corpus's normalised events (JSON Lines, as the log holds them) inserted
   into DuckDB and into ClickHouse in process (chDB) as the store sink does (inserts of
   up to its batch of log, a token each), against `bench_server.py`'s end-to-end ingest
   (`collector serve`, fsync on, 4 streams, its default configuration). Goal: each store loads at least
   twice as fast as the collector ingests, so that it never becomes the bottleneck. Also: how
   long a purge takes (one user deleted: DuckDB copies the live rows into a new file,
   ClickHouse rewrites the partitions holding them), and the store's size on disk.
2. Together: `collector serve` with each store on, loaded at full speed; how long until every
   acknowledged event is in the store (its sink's lag, from /metrics, back to 0), against how
   long the ingest took. A store that keeps up is done within its linger of the last batch.

    python benchmarks/bench_store.py [--events N] [--ingest-batches N]
"""

import argparse
import asyncio
import os
import re
import socket
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.bench_server import ROOT, collector_command, collector_run, start  # noqa: E402
from benchmarks.bench_server import load as send  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from collector.analytics.sink import StoreSink  # noqa: E402

GOAL = 2.0


def log_chunks(n_events: int, seed: int = 3) -> list[list[bytes]]:
    """The events as the store sink is handed them: the log's records (one a batch of 50, its
    JSON Lines), in writes of up to the sink's batch of log each."""
    chunks, chunk, size = [], [], 0
    for b in make_batches(n_events // 50, 50, seed=seed):
        payload = collector.decode(b).to_jsonl()
        chunk.append(payload)
        size += len(payload)
        if size >= StoreSink.batch_bytes:
            chunks.append(chunk)
            chunk, size = [], 0
    return chunks + ([chunk] if chunk else [])


def load(store, chunks: list[list[bytes]], tag: str = "bench") -> tuple[float, int]:
    """Seconds inserting the chunks (unchecked, as the sink hands them), events loaded."""
    t = time.perf_counter()
    n = sum(store.insert(chunk, f"{tag}-{i}") for i, chunk in enumerate(chunks))
    return time.perf_counter() - t, n


def lag(metrics: str) -> int:
    """The store sink's lag in log bytes, from the collector's /metrics."""
    text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
    m = re.search(r'collector_sink_lag_bytes\{sink="store"\} (\S+)', text)
    return int(float(m.group(1))) if m else -1


def together(store: str, batches: list[bytes], warmup: list[bytes]) -> tuple[float, float]:
    """`collector serve` with the store on: (seconds the ingest took, seconds until the store
    held every event), from the first batch sent."""
    with tempfile.TemporaryDirectory() as data, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics = f"127.0.0.1:{s.getsockname()[1]}"
        command, env = collector_command(ROOT, data)
        store_conf = ('store = "duckdb"' if store == "duckdb" else
                      f'store = "clickhouse"\nclickhouse_url = "chdb://{data}/chdb"')
        with open(command[-1], "a") as f:
            f.write(f'[analytics]\n{store_conf}\n')
        s.close()
        with open(command[-1]) as f:
            config = f.read().replace('metrics_listen = ""', f'metrics_listen = "{metrics}"')
        with open(command[-1], "w") as f:
            f.write(config)
        proc, target = start(command, env)
        try:
            asyncio.run(send(target, warmup, 4, 50, tag="warmup-"))
            while lag(metrics) != 0:
                time.sleep(0.05)
            t = time.perf_counter()
            asyncio.run(send(target, batches, 4, 50))
            ingest = time.perf_counter() - t
            while lag(metrics) != 0:
                time.sleep(0.01)
            return ingest, time.perf_counter() - t
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--ingest-batches", type=int, default=3000, help="batches of 50 events sent to collector serve")
    args = p.parse_args()
    chunks, warm = log_chunks(args.events), log_chunks(5000, seed=4)
    size = sum(len(payload) for chunk in chunks for payload in chunk)
    batches, warmup = make_batches(args.ingest_batches, 50, seed=5), make_batches(40, 50, seed=6)
    ingest = max(collector_run(batches, 4, 50, warmup)["events_per_s"] for _ in range(2))
    print(f"{args.events:,} events ({size / 1e6:.0f} MB of JSON Lines) in {len(chunks)} inserts; "
          f"collector serve ingests {ingest:,.0f} events/s (best of 2)")
    print(f"{'store':<10}{'load/s':>12}{'x ingest':>10}{'purge s':>10}{'MB':>8}")
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        from collector.analytics.clickhouse import ClickHouseStore
        from collector.analytics.duck import DuckStore

        for name, make_store in (("duckdb", lambda: DuckStore(os.path.join(tmp, "d", "a.duckdb"))),
                                 ("chdb", lambda: ClickHouseStore(f"chdb://{tmp}/ch"))):
            store = make_store()
            load(store, warm, "warm")  # once a process: imports, the engine's first statements
            seconds, n = load(store, chunks)
            (project, user), = store.query("SELECT project_id, user_id FROM events LIMIT 1")
            store.delete_user(project, user, 2**62)
            t = time.perf_counter()
            store.purge()
            purge = time.perf_counter() - t
            store.close()
            root = os.path.join(tmp, "d" if name == "duckdb" else "ch")
            mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / 1e6
            rate = n / seconds
            print(f"{name:<10}{rate:>12,.0f}{rate / ingest:>10.2f}{purge:>10.1f}{mb:>8.0f}")
            if rate < GOAL * ingest:
                failed.append(name)
    print(f"\ntogether: collector serve with the store on, {len(batches) * 50:,} events at full speed")
    print(f"{'store':<10}{'ingest s':>10}{'events/s':>12}{'stored s':>10}{'behind s':>10}")
    for name in ("duckdb", "chdb"):
        took, stored = together(name, batches, warmup)
        print(f"{name:<10}{took:>10.2f}{len(batches) * 50 / took:>12,.0f}{stored:>10.2f}{stored - took:>10.2f}")
    for name in failed:
        print(f"FAIL  {name} loads at >= {GOAL}x the ingest rate")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
