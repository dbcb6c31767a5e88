"""How fast the raw export streams, per format, and what it costs the server in memory: the
corpus's normalised events imported into a DuckDB store, a `collector serve` on it, then each
format exported twice over HTTP (the first round warms the store's block cache and the
formatters' pools). Prints MB/s of the reply and the server's RSS before and at most during the
second round's export, read from /proc/<pid>/status.

    python benchmarks/bench_export.py [--events N]
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from tests.procs import free_port, wait_port  # noqa: E402

FORMATS = ("jsonl", "json", "csv", "parquet")


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024


def export(port: int, pid: int, fmt: str) -> tuple[int, float, int]:
    """(bytes, seconds, peak RSS in MB) of one export of project 8 (the corpus's busiest)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", f"/v1/analytics/events?projectId=8&format={fmt}",
                 headers={"Authorization": "Bearer bench"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    size, peak = 0, 0
    while chunk := resp.read(1 << 20):
        size += len(chunk)
        peak = max(peak, rss_mb(pid))
    conn.close()
    return size, time.perf_counter() - started, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = os.path.join(tmp, "collector.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:0"\nmetrics_listen = ""\ndata_dir = "{tmp}/data"\n'
                    f'http_listen = "127.0.0.1:{port}"\nadmin_tokens = {{"bench" = [8]}}\n')
        events = os.path.join(tmp, "events.jsonl")
        with open(events, "wb") as f:
            for b in make_batches(args.events // 50, 50, seed=5):
                f.write(collector.decode(b).to_jsonl())
        subprocess.run([sys.executable, "-m", "collector", "import", "--config", config, events],
                       check=True, capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--config", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 60)
            for fmt in FORMATS:
                export(port, proc.pid, fmt)
            print(f"{args.events:,} events; server RSS {rss_mb(proc.pid)} MB after a first round")
            print(f"{'format':<8}{'MB':>8}{'MB/s':>8}{'peak RSS MB':>13}")
            for fmt in FORMATS:
                size, seconds, peak = export(port, proc.pid, fmt)
                print(f"{fmt:<8}{size / 1e6:>8.1f}{size / 1e6 / seconds:>8.1f}{peak:>13}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
