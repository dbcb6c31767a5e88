"""How soon the dashboard's live viewer count moves after a viewer joins, with the collector idle
and while other clients send it batches at full speed: a real `collector serve` (DuckDB store,
its sink on), the live count's Server-Sent Events read as the page reads them, a `broadcast.
joined` of a new viewer sent every `--every` seconds, and the time from sending it to the first
update that counts them. The count is sent when viewers join or leave (at most every
`api.LIVE_SOONEST`) and at least once a second.

    python benchmarks/bench_live.py [--probes 20] [--every 1.5] [--streams 4]
"""

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_server import ROOT, load  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from collector.client import Client  # noqa: E402
from tests.procs import free_port  # noqa: E402

PROJECT, BROADCAST = 8, "live-probe"


def serve(data: str) -> tuple[subprocess.Popen, str, int]:
    """`collector serve` with its store and HTTP API on loopback: (process, gRPC target, HTTP port)."""
    grpc_port, http_port = free_port(), free_port()
    config = os.path.join(data, "collector.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{grpc_port}"\nhttp_listen = "127.0.0.1:{http_port}"\n'
                f'metrics_listen = ""\ndata_dir = "{data}"\n[dedup]\nwindow_events = 1000000\n')
    proc = subprocess.Popen([sys.executable, "-P", "-m", "collector", "serve", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": ROOT})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc, f"127.0.0.1:{grpc_port}", http_port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("collector serve did not answer /healthz within 60 s")


class Counts:
    """The live count's stream, read on a thread: each update's arrival (monotonic s, viewers)."""

    def __init__(self, http_port: int):
        self.updates: list[tuple[float, int]] = []
        self.changed = threading.Condition()
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        conn.request("GET", f"/v1/analytics/viewers/live?projectId={PROJECT}&broadcastId={BROADCAST}")
        self.resp = conn.getresponse()
        assert self.resp.status == 200, self.resp.status
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.resp:
            if line.startswith(b"data: "):
                with self.changed:
                    self.updates.append((time.monotonic(), json.loads(line[6:])["viewers"]))
                    self.changed.notify_all()

    def first_at_least(self, viewers: int, since: float, timeout: float = 30.0) -> float:
        """When the first update after `since` counting `viewers` or more arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for at, n in self.updates:
                    if at >= since and n >= viewers:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the live count never reached {viewers}")
                self.changed.wait(left)


def joined(user: str) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps({"pid": PROJECT, "uid": user, "now": now, "pl": [
        {"euid": f"{user}-{now}", "ea": 20, "t": now, "ac": "broadcast.joined",
         "pr": {"broadcastId": BROADCAST}}]}).encode()


async def probe(target: str, counts: Counts, probes: int, every: float, tag: str,
                already: int = 0) -> list[float]:
    """Seconds from sending each new viewer's join to the first update counting them (on top
    of the `already` watching)."""
    out = []
    async with Client(target) as client:
        for i in range(probes):
            sent = time.monotonic()
            reply = await client.send(joined(f"{tag}-{i}"))
            assert reply.accepted == 1, reply
            out.append(counts.first_at_least(already + i + 1, sent) - sent)
            await asyncio.sleep(max(0.0, every - (time.monotonic() - sent)))
    return out


def _flood(target: str, streams: int, stop_at: float, result) -> None:
    """Another process: the corpus sent over and over at full speed until `stop_at` (epoch s)."""
    batches = make_batches(400, 50, seed=5)
    events = sent = 0
    started = time.time()
    while time.time() < stop_at:
        asyncio.run(load(target, batches, streams, 50, tag=f"flood-{sent}-"))
        sent += 1
        events += len(batches) * 50
    result.put(events / (time.time() - started))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--every", type=float, default=1.5, help="seconds between two joins")
    p.add_argument("--streams", type=int, default=4, help="the full-speed load's streams")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as data:
        proc, target, http_port = serve(data)
        try:
            counts = Counts(http_port)
            idle = asyncio.run(probe(target, counts, args.probes, args.every, "idle"))
            rows.append(("idle", idle, None))
            span = args.probes * args.every + 5
            result = multiprocessing.Queue()
            flood = multiprocessing.Process(target=_flood, args=(
                target, args.streams, time.time() + span, result))
            flood.start()
            time.sleep(2)  # the load running first
            # the second round's viewers come on top of the first's
            busy = asyncio.run(probe(target, counts, args.probes, args.every, "busy", len(idle)))
            flood.join()
            rows.append(("ingest at full speed", busy, result.get()))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"live viewers' update latency, ms ({args.probes} joins, one every {args.every} s)")
    print(f"{'collector':<24}{'median':>10}{'p95':>10}{'max':>10}{'ingest events/s':>18}")
    for name, lat, rate in rows:
        lat = sorted(x * 1000 for x in lat)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        print(f"{name:<24}{statistics.median(lat):>10.0f}{p95:>10.0f}{lat[-1]:>10.0f}"
              f"{'' if rate is None else f'{rate:,.0f}':>18}")


if __name__ == "__main__":
    main()
