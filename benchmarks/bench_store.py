"""How fast the analytics store loads: the corpus's normalised events (JSON Lines, as the log
holds them) made into rows and inserted into DuckDB and into ClickHouse in process (chDB), in
inserts of a given size with a token each, as the store sink does. Prints events/s for making
the rows, for the inserts alone, and for both; then how long a purge takes (one user deleted:
DuckDB copies the live rows into a new file, ClickHouse rewrites the partitions holding them),
and the store's size on disk.

    python benchmarks/bench_store.py [--events N] [--insert-events N]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from collector.analytics.rows import rows  # noqa: E402


def jsonl_chunks(n_events: int, per_insert: int) -> list[bytes]:
    events = b"".join(collector.decode(b).to_jsonl() for b in make_batches(n_events // 50, 50, seed=3))
    lines = events.splitlines(keepends=True)
    return [b"".join(lines[i:i + per_insert]) for i in range(0, len(lines), per_insert)]


def load(store, chunks: list[bytes]) -> tuple[float, float, int]:
    """Seconds making rows, seconds inserting, events loaded."""
    make = insert = 0.0
    n = 0
    for i, chunk in enumerate(chunks):
        t = time.perf_counter()
        batch = rows(chunk)
        t1 = time.perf_counter()
        store.insert(batch, f"bench-{i}")
        t2 = time.perf_counter()
        make, insert, n = make + t1 - t, insert + t2 - t1, n + len(batch)
    return make, insert, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--insert-events", type=int, default=5_000,
                   help="events per insert (the sink's: a few MiB of log)")
    args = p.parse_args()
    chunks = jsonl_chunks(args.events, args.insert_events)
    size = sum(map(len, chunks))
    print(f"{args.events:,} events ({size / 1e6:.0f} MB of JSON Lines), {args.insert_events:,} a insert")
    print(f"{'store':<10}{'rows/s':>12}{'insert/s':>12}{'total/s':>12}{'purge s':>10}{'MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        from collector.analytics.clickhouse import ClickHouseStore
        from collector.analytics.duck import DuckStore

        for name, make_store in (("duckdb", lambda: DuckStore(os.path.join(tmp, "d", "a.duckdb"))),
                                 ("chdb", lambda: ClickHouseStore(f"chdb://{tmp}/ch"))):
            store = make_store()
            make, insert, n = load(store, chunks)
            (project, user), = store.query("SELECT project_id, user_id FROM events LIMIT 1")
            store.delete_user(project, user, 2**62)
            t = time.perf_counter()
            store.purge()
            purge = time.perf_counter() - t
            store.close()
            root = os.path.join(tmp, "d" if name == "duckdb" else "ch")
            mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / 1e6
            print(f"{name:<10}{n / make:>12,.0f}{n / insert:>12,.0f}{n / (make + insert):>12,.0f}"
                  f"{purge:>10.1f}{mb:>8.0f}")


if __name__ == "__main__":
    main()
