"""End-to-end load: concurrent IngestStreams sending the corpus to `collector serve` (jsonl sink,
log fsync on), against a bare grpc.aio server that only counts bytes (the transport floor), each
in a process of its own, on the same machine in the same run, loaded by the same client.

    python benchmarks/bench_server.py [--batches 1500] [--streams 4] [--rounds 5] [--warmup 40]

Wall time on a small shared machine is noisy, so the two are measured in turns (`--rounds`,
each on a fresh server, the order alternating) and the best run of each is compared (the
medians are printed beside, and each server's CPU time per batch). Runs of a few hundred
batches last a fraction of a second: the defaults make each run last about a second. Each
server first gets `--warmup` batches of another corpus (not timed), so that one-time costs of
a fresh process (first connections, threads, allocations) are not in the figures of either.
"""

import argparse
import asyncio
import os
import re
import statistics
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


async def load(target: str, batches: list[bytes], streams: int, events: int, tag: str = ""):
    """Send the batches over `streams` IngestStreams; batch ids start with `tag` (a batch id
    the server has answered before gets its remembered reply, so runs must not share ids)."""
    latencies = []

    async def one(index: int):
        async with Client(target) as client:
            sent = {}

            def requests():
                for i in range(index, len(batches), streams):
                    batch_id = f"{tag}{index}-{i}"
                    sent[batch_id] = time.perf_counter()
                    yield Client.request(batches[i], batch_id=batch_id)

            async for reply in client.stream(requests()):
                latencies.append(time.perf_counter() - sent[reply.batch_id])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {"events_per_s": len(batches) * events / seconds,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


async def serve_floor() -> None:
    """The floor's server, run as its own process (as the collector is): prints its port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20)])
    pb_grpc.add_CollectorServicer_to_server(Floor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"floor serving (port {port})", flush=True)
    await server.wait_for_termination()


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(command, env=None):
    """Start a server process that prints `(port N)`: (the process, its address)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        port = re.search(r"\(port (\d+)\)", proc.stdout.readline().decode()).group(1)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, f"127.0.0.1:{port}"


def collector_command(root: str, data: str):
    """`collector serve` from the checkout at `root`, its data in `data`: (command, env). The
    interpreter runs with -P, so that the checkout the benchmark was started in (the working
    directory) does not come before `root`."""
    config = os.path.join(data, "collector.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\nmetrics_listen = ""\nhttp_listen = ""\ndata_dir = "{data}"\n'
                "[dedup]\nwindow_events = 1000000\n")
    return ([sys.executable, "-P", "-m", "collector", "serve", "--config", config],
            {**os.environ, "PYTHONPATH": root})


def run_against(command, batches, streams, events, warmup=(), env=None):
    """Start a server process (it prints `(port N)`), load it, stop it by its pid. Besides the
    rates, says the server's CPU time per batch: on a small shared machine it varies less than
    wall time, and the client and the server share the cores, so it is what bounds the rate."""
    proc, target = start(command, env)
    try:

        async def run():
            if warmup:
                await load(target, warmup, streams, events, tag="warmup-")
            before = cpu_seconds(proc.pid)
            result = await load(target, batches, streams, events)
            after = cpu_seconds(proc.pid)
            if before is not None and after is not None:
                result["cpu_us"] = (after - before) / len(batches) * 1e6
            return result

        return asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def floor_run(batches, streams, events, warmup=()):
    return run_against([sys.executable, os.path.abspath(__file__), "--serve-floor"],
                       batches, streams, events, warmup)


def collector_run(batches, streams, events, warmup=()):
    with tempfile.TemporaryDirectory() as data:
        command, env = collector_command(ROOT, data)
        return run_against(command, batches, streams, events, warmup, env)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=1500)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5, help="runs of each, in turns; the best counts")
    p.add_argument("--warmup", type=int, default=40, help="untimed batches first (0: none)")
    p.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_floor:
        asyncio.run(serve_floor())
        return 0
    batches = make_batches(args.batches, args.events, seed=5)
    warmup = make_batches(args.warmup, args.events, seed=6) if args.warmup else []
    runs = {"floor": [], "collector": []}
    for i in range(args.rounds):
        order = ("floor", "collector") if i % 2 == 0 else ("collector", "floor")
        for name in order:
            if name == "floor":
                runs[name].append(floor_run(batches, args.streams, args.events, warmup))
            else:
                runs[name].append(collector_run(batches, args.streams, args.events, warmup))
    floor = max(runs["floor"], key=lambda r: r["events_per_s"])
    collector = max(runs["collector"], key=lambda r: r["events_per_s"])
    print(f"{args.batches} batches x {args.events} events over {args.streams} streams, "
          f"best of {args.rounds} runs each (in turns)")
    print(f"{'':32} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>8}   all runs (events/s)")
    for name, r, key in (("transport floor (bytes only)", floor, "floor"),
                         ("collector serve (fsync, jsonl)", collector, "collector")):
        every = " ".join(f"{x['events_per_s']:,.0f}" for x in runs[key])
        cpu = [x["cpu_us"] for x in runs[key] if "cpu_us" in x]
        cpu = f"{statistics.median(cpu):8.0f}" if cpu else f"{'-':>8}"
        print(f"{name:32} {r['events_per_s']:10,.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {cpu}   {every}")
    print("(CPU us: the server's CPU time per batch, all its threads, median of the runs)")
    ratio = collector["events_per_s"] / floor["events_per_s"]
    medians = statistics.median(r["events_per_s"] for r in runs["collector"]) / statistics.median(
        r["events_per_s"] for r in runs["floor"])
    print(f"\n{'PASS' if ratio >= 0.7 else 'FAIL'}  collector >= 0.7x the floor: {ratio:.2f}x "
          f"(best against best; median against median: {medians:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
