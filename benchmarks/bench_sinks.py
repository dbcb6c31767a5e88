"""How fast the network sinks hand events on: the corpus's normalised events written through the
NATS JetStream sink (to a real `nats-server -js` on loopback) and the webhook sink (to an aiohttp
receiver on loopback that verifies every signature), as the collector runs them: records of the
log, acknowledged before the next write.

    python benchmarks/bench_sinks.py [--events N] [--batch-events N]
"""

import argparse
import asyncio
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collector  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402
from collector.log import EVENTS, Record  # noqa: E402
from collector.sinks import load  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(n_events: int, per_batch: int) -> list[Record]:
    out, position = [], 0
    for b in make_batches(n_events // per_batch, per_batch, seed=3):
        payload = collector.decode(b).to_jsonl()
        out.append(Record(position, EVENTS, 0, payload))
        position += len(payload) + 32
    return out


async def run_sink(sink, recs, chunk: int) -> float:
    await sink.start()
    t = time.perf_counter()
    for i in range(0, len(recs), chunk):  # the delivery loop hands a few MiB at a time
        await sink.write(recs[i:i + chunk])
    elapsed = time.perf_counter() - t
    await sink.stop()
    return elapsed


async def bench_nats(recs, chunk, fmt) -> float:
    nats_server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    store = tempfile.mkdtemp()
    port = free_port()
    proc = subprocess.Popen([nats_server, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        sink = load({"type": "nats", "url": f"nats://127.0.0.1:{port}", "format": fmt,
                     "stream": f"B{fmt.upper()}"}, store)
        return await run_sink(sink, recs, chunk)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(store, ignore_errors=True)


async def bench_webhook(recs, chunk, max_events) -> tuple[float, int]:
    from aiohttp import web

    secret = b"bench"
    got = {"events": 0}

    async def handle(request):
        body = await request.read()
        stamp = request.headers["X-Timestamp"]
        want = "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers["X-Signature"]):
            return web.Response(status=401)
        got["events"] += body.count(b'"eventId"')
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        sink = load({"type": "webhook", "url": f"http://127.0.0.1:{port}/", "secret": "bench",
                     "max_events": max_events}, tempfile.gettempdir())
        return await run_sink(sink, recs, chunk), got["events"]
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch-events", type=int, default=50)
    ap.add_argument("--webhook-events", type=int, default=500, help="events per webhook request")
    args = ap.parse_args()
    recs = records(args.events, args.batch_events)
    n = sum(r.payload.count(b"\n") for r in recs)
    mb = sum(len(r.payload) for r in recs) / 1e6
    chunk = max(1, (4 << 20) // (len(recs[0].payload) or 1))
    rows = []
    for fmt in ("json", "protobuf"):
        secs = asyncio.run(bench_nats(recs, chunk, fmt))
        rows.append((f"nats ({fmt}), acked", n, secs))
    secs, received = asyncio.run(bench_webhook(recs, chunk, args.webhook_events))
    assert received == n, (received, n)
    rows.append((f"webhook ({args.webhook_events}/request), signed", n, secs))
    print(f"{n:,} events, {mb:.1f} MB of normalised JSON, native={collector.NATIVE}")
    print(f"{'sink':<34}{'events/s':>12}{'MB/s':>8}")
    for name, count, secs in rows:
        print(f"{name:<34}{count / secs:>12,.0f}{mb / secs:>8.1f}")


if __name__ == "__main__":
    main()
