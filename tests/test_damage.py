"""Data loss and stuck sinks: a batch_id used again for other events, a damaged log, cursors
that are not on a record, a disk that fills up mid-write. Real files and real processes; the
damage is done on purpose to the files a stopped collector left."""

import asyncio
import json
import subprocess
import sys

import grpc
import pytest

from collector.client import Client
from collector.v1 import collector_pb2 as pb
from procs import ENV, Collector


def batch(prefix: str, n: int = 3) -> bytes:
    events = [{"euid": f"{prefix}-{i}", "ea": 6, "t": 1000 + i, "tvid": f"t{i}"} for i in range(n)]
    return json.dumps({"pid": 8, "uid": "u1", "now": 2000, "pl": events}).encode()


def ids(prefix: str, n: int = 3) -> set:
    return {f"{prefix}-{i}" for i in range(n)}


# ------------------------------------------------------- 1. a batch_id used again for other events


def test_a_batch_id_used_again_for_other_events_is_refused_never_dropped(tmp_path):
    node = Collector(tmp_path / "c").start()
    try:
        async def main():
            async with Client(node.target) as client:
                first = await client.send(batch("a"), batch_id="same")
                again = await client.send(batch("a"), batch_id="same")  # a resend: the same reply
                assert first == again and first.accepted == 3
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await client.send(batch("b"), batch_id="same")
                assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
                assert "same" in exc.value.details() and "other" in exc.value.details()
                replies = [r async for r in client.stream([Client.request(batch("c"), batch_id="same")])]
                assert replies[0].status == grpc.StatusCode.ALREADY_EXISTS.value[0]
                assert replies[0].accepted == 0

        asyncio.run(main())
        assert node.wait_output(ids("a")) == ids("a")
    finally:
        node.stop()


def test_collector_send_twice_from_stdin_logs_both_runs(tmp_path):
    """`collector send` names its batches so that two runs (here from stdin, `-:0, -:1, ...`)
    never share an id: the second run's events are logged, not answered from the first's."""
    node = Collector(tmp_path / "c").start()
    try:
        for run in ("r1", "r2"):
            lines = b"".join(batch(f"{run}-{i}", 20) + b"\n" for i in range(3))
            sent = subprocess.run([sys.executable, "-m", "collector", "send", node.target, "-"],
                                  input=lines, capture_output=True, env=ENV, timeout=60)
            assert sent.returncode == 0, sent.stderr
            assert json.loads(sent.stdout.splitlines()[-1])["accepted"] == 60
        want = set().union(*(ids(f"{run}-{i}", 20) for run in ("r1", "r2") for i in range(3)))
        assert node.wait_output(want) == want  # 120 of 120, not 60
    finally:
        node.stop()
