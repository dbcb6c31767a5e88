"""End-to-end load: concurrent IngestStreams sending the corpus to `collector serve` (jsonl sink,
log fsync on), against a bare grpc.aio server that only counts bytes (the transport floor), on
the same machine in the same run.

    python benchmarks/bench_server.py [--batches 400] [--streams 4]
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.corpus import make_batches  # noqa: E402
from collector.client import Client  # noqa: E402
from collector.v1 import collector_pb2 as pb  # noqa: E402
from collector.v1 import collector_pb2_grpc as pb_grpc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Floor(pb_grpc.CollectorServicer):
    """Receives batches and answers each with its id: no decoding, no disk."""

    def __init__(self):
        self.bytes = 0

    async def IngestStream(self, request_iterator, context):
        async for request in request_iterator:
            self.bytes += request.ByteSize()
            yield pb.IngestReply(batch_id=request.batch_id)


async def load(target: str, batches: list[bytes], streams: int, events: int):
    latencies = []

    async def one(index: int):
        async with Client(target) as client:
            sent = {}

            def requests():
                for i in range(index, len(batches), streams):
                    sent[f"{index}-{i}"] = time.perf_counter()
                    yield Client.request(batches[i], batch_id=f"{index}-{i}")

            async for reply in client.stream(requests()):
                latencies.append(time.perf_counter() - sent[reply.batch_id])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {"events_per_s": len(batches) * events / seconds,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


async def floor_run(batches, streams, events):
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20)])
    pb_grpc.add_CollectorServicer_to_server(Floor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await load(f"127.0.0.1:{port}", batches, streams, events)
    finally:
        await server.stop(None)


def collector_run(batches, streams, events):
    with tempfile.TemporaryDirectory() as data:
        config = os.path.join(data, "collector.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:0"\nmetrics_listen = ""\ndata_dir = "{data}"\n'
                    "[dedup]\nwindow_events = 1000000\n")
        env = {**os.environ, "PYTHONPATH": ROOT}
        proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--config", config],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            port = re.search(r"\(port (\d+)\)", proc.stdout.readline().decode()).group(1)
            return asyncio.run(load(f"127.0.0.1:{port}", batches, streams, events))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=400)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--streams", type=int, default=4)
    args = p.parse_args()
    batches = make_batches(args.batches, args.events, seed=5)
    floor = asyncio.run(floor_run(batches, args.streams, args.events))
    collector = collector_run(batches, args.streams, args.events)
    print(f"{args.batches} batches x {args.events} events over {args.streams} streams")
    print(f"{'':32} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in (("transport floor (bytes only)", floor), ("collector serve (fsync, jsonl)", collector)):
        print(f"{name:32} {r['events_per_s']:10,.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")
    ratio = collector["events_per_s"] / floor["events_per_s"]
    print(f"\n{'PASS' if ratio >= 0.7 else 'FAIL'}  collector >= 0.7x the floor: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
