"""Data loss and stuck sinks: a batch_id used again for other events, a damaged log, cursors
that are not on a record, a disk that fills up mid-write. Real files and real processes; the
damage is done on purpose to the files a stopped collector left."""

import asyncio
import errno
import glob
import json
import os
import subprocess
import sys

import grpc
import pytest

from collector.client import Client
from collector.delivery import Delivery
from collector.log import DEAD, EVENTS, Log
from collector.metrics import Metrics
from collector.sinks import load
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


# ----------------------------------------------------------------- 5. a disk full in mid-write


def _disk_full_once(monkeypatch, fd_of, cut: int = 7):
    """os.writev on the file `fd_of()` names writes part of a line, then fails with ENOSPC, once."""
    writev = os.writev
    state = {"calls": 0}

    def disk_full(fd, buffers):
        if fd == fd_of() and state["calls"] < 2:
            state["calls"] += 1
            if state["calls"] == 1:  # room for a part of the first buffer only
                return writev(fd, [memoryview(buffers[0])[: len(buffers[0]) // 2 + cut]])
            raise OSError(errno.ENOSPC, "No space left on device")
        return writev(fd, buffers)

    monkeypatch.setattr(os, "writev", disk_full)
    return state


@pytest.mark.parametrize("kind", ["jsonl", "dead_letter"])
def test_a_disk_full_mid_write_leaves_whole_lines_and_no_duplicates(tmp_path, monkeypatch, kind):
    """The sink's write fails part-way with ENOSPC and is retried by the delivery: the closed
    file holds every line once, each whole."""
    record_kind = EVENTS if kind == "jsonl" else DEAD
    lines = [json.dumps({"event_id": f"e{i}", "pad": "x" * 200}).encode() + b"\n" for i in range(300)]

    async def main():
        the_log = Log(str(tmp_path / "log"))
        for k in range(0, 300, 30):
            await the_log.append(record_kind, 1, b"".join(lines[k : k + 30]))
        sink = load({"type": kind, "linger_seconds": 0.0}, str(tmp_path))
        state = _disk_full_once(monkeypatch, lambda: sink._f.fileno() if sink._f else None)
        delivery = Delivery(the_log, sink, str(tmp_path / "cursors"), Metrics())
        delivery.start()
        for _ in range(200):
            if delivery.position == the_log.end:
                break
            await asyncio.sleep(0.02)
        await delivery.stop()
        await the_log.close()
        assert state["calls"] == 2  # the disk did fill up

    asyncio.run(main())
    (closed,) = glob.glob(str(tmp_path / sink_dir(kind) / "*.jsonl"))
    data = open(closed, "rb").read()
    assert data.endswith(b"\n")
    got = [json.loads(line)["event_id"] for line in data.splitlines()]  # every line whole
    assert got == [f"e{i}" for i in range(300)]  # once each, in order


def sink_dir(kind: str) -> str:
    return "events" if kind == "jsonl" else "dead_letter"


def test_the_log_cuts_a_failed_write_before_the_next_one(tmp_path, monkeypatch):
    """An append that fails part-way leaves half a record, and the first cut of it fails too
    (EIO): no record is written after it until it is cut, so each is where its position says."""

    async def main():
        the_log = Log(str(tmp_path), cache_bytes=0)  # every read from the file
        await the_log.append(EVENTS, 1, b"kept\n")
        _disk_full_once(monkeypatch, lambda: the_log._fd)
        ftruncate = os.ftruncate
        failed = []

        def broken_once(fd, size):
            if not failed:
                failed.append(size)
                raise OSError(errno.EIO, "Input/output error")
            ftruncate(fd, size)

        monkeypatch.setattr(os, "ftruncate", broken_once)
        with pytest.raises(OSError):
            await the_log.append(EVENTS, 2, b"lost\n" * 100)
        with pytest.raises(OSError):  # the cut before it failed: it is not written
            await the_log.append(EVENTS, 3, b"lost too\n")
        assert failed
        await the_log.append(EVENTS, 4, b"after\n")
        assert [r.payload for r in the_log.read(0)] == [b"kept\n", b"after\n"]
        await the_log.close()

    asyncio.run(main())
    again = Log(str(tmp_path))
    assert [r.payload for r in again.read(0)] == [b"kept\n", b"after\n"] and again.truncated == 0
