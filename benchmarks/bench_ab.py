"""Paired comparison of two builds of `collector serve`, for regressions: both serve at once,
loaded at once by one client, and each one's CPU time per batch is compared, round by round.

    python benchmarks/bench_ab.py OTHER_CHECKOUT [--rounds 6] [--batches 3000] [--streams 4]
    (A is OTHER_CHECKOUT, B this checkout; each needs its native module built, e.g. with
    `python setup.py build_ext --inplace`; the same checkout twice measures the noise)

On a small shared machine, `bench_server.py`'s events/s move by 15% between runs of the same
code (the host's neighbours, the clock); here those changes fall on both builds alike, so the
ratio of their CPU per batch moves by about 3% and small differences show.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_server import ROOT, collector_command, cpu_seconds, load, start  # noqa: E402
from benchmarks.corpus import make_batches  # noqa: E402


def one_round(roots: dict, batches, warmup, streams: int, events: int, tag: str) -> dict:
    """Both servers started, warmed up, loaded together, stopped: CPU us per batch of each."""
    data = {name: tempfile.mkdtemp(prefix=f"bench-ab-{name}-") for name in roots}
    servers = {}
    try:
        for name, root in roots.items():
            servers[name] = start(*collector_command(root, data[name]))

        async def run():
            await asyncio.gather(*(load(target, warmup, streams, events, tag=f"w{tag}{name}-")
                                   for name, (_, target) in servers.items()))
            before = {name: cpu_seconds(proc.pid) for name, (proc, _) in servers.items()}
            await asyncio.gather(*(load(target, batches, streams, events, tag=f"m{tag}{name}-")
                                   for name, (_, target) in servers.items()))
            return {name: (cpu_seconds(proc.pid) - before[name]) / len(batches) * 1e6
                    for name, (proc, _) in servers.items()}

        return asyncio.run(run())
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            proc.wait(timeout=60)
        for path in data.values():
            shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", help="the checkout to compare this one with (A)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batches", type=int, default=3000)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--streams", type=int, default=4)
    args = p.parse_args()
    if cpu_seconds(os.getpid()) is None:
        sys.exit("bench_ab: needs /proc (Linux) to read each server's CPU time")
    roots = {"A": os.path.abspath(args.other), "B": ROOT}
    batches = make_batches(args.batches, args.events, seed=5)
    warmup = make_batches(40, args.events, seed=6)
    print(f"A: {roots['A']}\nB: {roots['B']}\n{args.batches} batches x {args.events} events "
          f"over {args.streams} streams to each, both at once\n")
    print(f"{'round':>5} {'A us/batch':>11} {'B us/batch':>11} {'B/A':>7}")
    ratios = []
    for i in range(args.rounds):
        cpu = one_round(roots, batches, warmup, args.streams, args.events, tag=str(i))
        ratios.append(cpu["B"] / cpu["A"])
        print(f"{i:5} {cpu['A']:11.0f} {cpu['B']:11.0f} {ratios[-1]:7.3f}", flush=True)
    print(f"\nB/A CPU per batch: median {statistics.median(ratios):.3f} "
          f"(from {min(ratios):.3f} to {max(ratios):.3f}); below 1: B does the same work for less")
    return 0


if __name__ == "__main__":
    sys.exit(main())
