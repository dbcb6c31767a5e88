"""How fast the raw export streams, per format and store, and what it costs the server in
memory: the corpus's normalised events imported into a store (DuckDB, chDB or both), a
`collector serve` on it, then each format exported twice over HTTP (the first round warms the
store's block cache and the formatters' pools). Prints, for the second round, the reply's size,
MB/s, events/s (project 8's, three in five of those stored), seconds to its first byte, and the
server's RSS before and at most during it (from /proc/<pid>/status).

    python benchmarks/bench_export.py [--events N] [--store duckdb|chdb|both] [--keep DIR]

Generating and loading take longer than exporting at 10 million events (about 8 GB of JSON
Lines; DuckDB loads some 40,000 events a second): `--keep DIR` keeps the events and the loaded
stores in DIR, so that a later run of the same size exports at once.
"""

import argparse
import http.client
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.corpus import make_batch  # noqa: E402
from tests.procs import free_port, wait_port  # noqa: E402

FORMATS = ("jsonl", "json", "csv", "parquet")
STORES = {  # name -> the [analytics] section, given the store's directory
    "duckdb": lambda d: 'store = "duckdb"\n',
    "chdb": lambda d: f'store = "clickhouse"\nclickhouse_url = "chdb://{d}/chdb"\n',
}


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024


def events_file(work: str, n: int) -> str:
    """The corpus's first `n` events (seed 5) as JSON Lines, written a batch at a time, each
    batch decoded as received when it was sent (its `now`): the events' times are those of a
    live app, a batch a second holding events up to a minute old, not all of them squeezed into
    the seconds that generating them takes."""
    path = os.path.join(work, f"events-{n}.jsonl")
    if not os.path.exists(path):
        r = random.Random(5)
        with open(path + ".part", "wb") as f:
            for b in range(n // 50):
                batch = make_batch(r, b, 50)
                sent = msgspec.json.decode(batch)["now"]
                f.write(collector.decode(batch, received_time=sent).to_jsonl())
        os.replace(path + ".part", path)
    return path


def config(directory: str, store: str, port: int) -> str:
    path = os.path.join(directory, "collector.toml")
    with open(path, "w") as f:  # retention far off: the corpus's times are of December 2025
        f.write(f'listen = "127.0.0.1:0"\nmetrics_listen = ""\ndata_dir = "{directory}/data"\n'
                f'http_listen = "127.0.0.1:{port}"\nadmin_tokens = {{"bench" = [8]}}\n'
                f'[analytics]\nretention_days = 3650\n{STORES[store](directory)}')
    return path


def load(work: str, store: str, n: int) -> str:
    """The directory of a store holding the corpus's first `n` events, imported if need be."""
    directory = os.path.join(work, f"{store}-{n}")
    if not os.path.exists(os.path.join(directory, "loaded")):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        events = events_file(work, n)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "collector", "import", "--config",
                        config(directory, store, 0), events], check=True, capture_output=True)
        print(f"{store}: {n:,} events loaded in {time.perf_counter() - started:.0f} s", flush=True)
        open(os.path.join(directory, "loaded"), "w").close()
    return directory


def export(port: int, pid: int, fmt: str) -> tuple[int, int, float, float, int]:
    """(bytes, lines, seconds, seconds to the first byte, peak RSS in MB) of one export of
    project 8 (the corpus's busiest: three events in five)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    started = time.perf_counter()
    conn.request("GET", f"/v1/analytics/events?projectId=8&format={fmt}",
                 headers={"Authorization": "Bearer bench"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    size, lines, peak, first = 0, 0, 0, None
    while chunk := resp.read1(1 << 20):
        first = first or time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
        peak = max(peak, rss_mb(pid))
    conn.close()
    return size, lines, time.perf_counter() - started, first or 0.0, peak


def bench(directory: str, store: str, n: int) -> None:
    port = free_port()
    log = open(os.path.join(directory, "serve.log"), "ab")  # the server's own account
    proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--config",
                             config(directory, store, port)], stdout=log, stderr=log)
    try:
        wait_port(port, 120)
        warm = {fmt: export(port, proc.pid, fmt) for fmt in FORMATS}
        events = warm["jsonl"][1]  # a line each
        for fmt in FORMATS:
            before = rss_mb(proc.pid)
            size, _, seconds, first, peak = export(port, proc.pid, fmt)
            print(f"{store:<8}{n:>12,}{fmt:>9}{size / 1e6:>10.1f}{size / 1e6 / seconds:>8.1f}"
                  f"{events / seconds:>10,.0f}{first:>9.2f}{before:>12}{peak:>10}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--store", choices=(*STORES, "both"), default="duckdb")
    ap.add_argument("--keep", metavar="DIR", help="keep the events and loaded stores here")
    args = ap.parse_args()
    stores = list(STORES) if args.store == "both" else [args.store]
    work = args.keep or tempfile.mkdtemp(prefix="bench_export.")
    os.makedirs(work, exist_ok=True)
    try:
        directories = {store: load(work, store, args.events) for store in stores}
        print(f"{'store':<8}{'stored':>12}{'format':>9}{'MB':>10}{'MB/s':>8}{'events/s':>10}"
              f"{'first s':>9}{'RSS before':>12}{'peak':>10}  (RSS in MB)")
        for store in stores:
            bench(directories[store], store, args.events)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
