"""Data loss and stuck sinks: a batch_id used again for other events, a damaged log, cursors
that are not on a record, a disk that fills up mid-write. Real files and real processes; the
damage is done on purpose to the files a stopped collector left."""

import asyncio
import errno
import json
import os
import subprocess
import sys
import time

import grpc
import pytest

from collector.client import Client
from collector.delivery import Delivery
from collector.log import DEAD, EVENTS, HEADER_SIZE, Log
from collector.metrics import Metrics
from collector.sinks import load
from collector.v1 import collector_pb2 as pb
from procs import ENV, Collector, free_port


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
    (closed,) = (tmp_path / sink_dir(kind)).glob("*.jsonl")
    data = closed.read_bytes()
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


# --------------------------------------------------------------- 2, 4. a damaged record in the log


def _records(log_dir) -> list:
    """Every record of a stopped collector's log."""
    the_log = Log(str(log_dir))
    try:
        return the_log.read(0, 1 << 40)
    finally:
        asyncio.run(the_log.close())


def _flip_a_bit(log_dir, position: int) -> str:
    """Flip one bit of the log at `position`; the segment file's name."""
    starts = sorted(int(p.stem) for p in log_dir.glob("*.seg"))
    start = max(s for s in starts if s <= position)
    segment = log_dir / f"{start:020d}.seg"
    with open(segment, "r+b") as f:
        f.seek(position - start)
        byte = f.read(1)
        f.seek(position - start)
        f.write(bytes([byte[0] ^ 0x10]))
    return segment.name


@pytest.mark.faults
def test_damage_in_the_last_segment_is_not_a_torn_tail(tmp_path):
    """One flipped bit in the middle of the last segment: on start, the records after it stay;
    only bytes at the very end that hold no whole record (half a record) are a torn tail."""

    async def main():
        the_log = Log(str(tmp_path))
        for i in range(100):
            await the_log.append(EVENTS, i, b"".join(b'{"event_id":"e%d-%d"}\n' % (i, j) for j in range(50)))
        await the_log.close()

    asyncio.run(main())
    records = _records(tmp_path)
    _flip_a_bit(tmp_path, records[50].position + HEADER_SIZE + 100)
    (segment,) = tmp_path.glob("*.seg")
    size = segment.stat().st_size
    torn = segment.read_bytes()[: records[1].position - 10]  # a record but its last 10 bytes
    with open(segment, "ab") as f:  # at the end, as a crash mid-write leaves it
        f.write(torn)
    the_log = Log(str(tmp_path))
    assert the_log.truncated == len(torn)  # the torn tail only
    assert segment.stat().st_size == size and the_log.end == size
    asyncio.run(the_log.close())


def _logged(tmp_path, batches: int, events: int, **log_config) -> set:
    """A collector logs the batches and stops, its one sink (a webhook nobody answers) stuck at
    the start, so the log keeps every segment: the event ids it said were logged."""
    dead = {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/", "secret": "s"}
    node = Collector(tmp_path / "c", sinks=[dead], top={"drain_seconds": 0.5}, log=log_config).start()
    try:
        async def main():  # one after the other: a group commit each, so segments fill evenly
            async with Client(node.target) as client:
                return [await client.send(batch(f"b{i}", events), batch_id=f"b{i}") for i in range(batches)]

        replies = asyncio.run(main())
    finally:
        assert node.stop() == 0
    assert all(r.durability == pb.DURABILITY_LOGGED and r.accepted == events for r in replies)
    return set().union(*(ids(f"b{i}", events) for i in range(batches)))


@pytest.mark.faults
@pytest.mark.parametrize("where", ["an older segment", "the last segment"])
def test_a_damaged_record_is_quarantined_and_delivery_goes_on(tmp_path, where):
    """One flipped bit in a record: the sinks deliver every other event, before and after it;
    its bytes are moved aside to the log's quarantine directory, counted, and logged with
    their segment and offset. Before: the sink delivered nothing (stuck at the record for
    good), or, in the last segment, a start cut the log at the record as if it were a tail."""
    segment_bytes = 1_310_720  # 9 records of 250 events each: 5 segments, the last with 7
    logged = _logged(tmp_path, 43, 250, segment_bytes=segment_bytes)  # 10,750 events
    log_dir = tmp_path / "c" / "data" / "log"
    records = _records(log_dir)
    starts = sorted(int(p.stem) for p in log_dir.glob("*.seg"))
    assert len(starts) >= 3
    if where == "the last segment":  # the last that holds records (a rotation leaves one empty)
        chosen = [r for r in records if r.position >= max(s for s in starts if s <= records[-1].position)]
    else:
        chosen = [r for r in records if r.position < starts[1]]
    assert len(chosen) >= 3
    bad = chosen[len(chosen) // 2]
    segment = _flip_a_bit(log_dir, bad.position + HEADER_SIZE + len(bad.payload) // 2)
    lost = {json.loads(line)["event_id"] for line in bad.payload.splitlines()}

    node = Collector(tmp_path / "c", metrics=True, log={"segment_bytes": segment_bytes}).start()
    try:
        want = logged - lost
        assert node.wait_output(want) == want  # 10,500 of 10,750: all but the damaged record's
        damaged = HEADER_SIZE + len(bad.payload)
        assert node.metric("collector_log_quarantined_bytes_total") == damaged  # once, for both sinks
        moved = log_dir / "quarantine" / f"{bad.position:020d}.bad"
        assert moved.stat().st_size == damaged
    finally:
        assert node.stop() == 0
    assert f"{segment} at offset {bad.position - int(segment[:-4])} " in node.stderr
    assert sorted(node.output_ids()) == sorted(want)  # each once


# ---------------------------------------------------------- 3, 6. a cursor that is not a position


def _delivered_then_stopped(tmp_path) -> tuple:
    """A collector delivers three batches to its jsonl sink and stops: (the node, the ids, the
    jsonl cursor's file, the log's record positions and end)."""
    node = Collector(tmp_path / "c", metrics=True).start()
    try:
        async def main():
            async with Client(node.target) as client:
                for i in range(3):
                    await client.send(batch(f"old{i}", 20), batch_id=f"old{i}")

        asyncio.run(main())
        old = set().union(*(ids(f"old{i}", 20) for i in range(3)))
        assert node.wait_output(old) == old
    finally:
        assert node.stop() == 0
    log_dir = node.data / "log"
    records = _records(log_dir)
    return node, old, node.data / "cursors" / "jsonl.pos", [r.position for r in records], records[-1].end


def _send_new(node) -> set:
    async def main():
        async with Client(node.target) as client:
            for i in range(3):
                await client.send(batch(f"new{i}", 20), batch_id=f"new{i}")

    asyncio.run(main())
    return set().union(*(ids(f"new{i}", 20) for i in range(3)))


@pytest.mark.faults
@pytest.mark.parametrize("damage", ["digits cut", "past the end", "inside a record"])
def test_a_cursor_off_the_records_is_moved_to_one_and_said(tmp_path, damage):
    """A sink's cursor that is no record's position (its file's digits cut or changed, or the
    log cut shorter than it) is moved on start to the start of the record that holds it (the
    end, past the end), logged as an error and counted; the sink then delivers what comes.
    Before: every later batch was LOGGED and never delivered, and the log was never freed."""
    node, old, cursor, positions, end = _delivered_then_stopped(tmp_path)
    text = cursor.read_text()
    assert int(text) == end
    bad = {"digits cut": int(text.strip()[:-1]), "past the end": end + 1000,
           "inside a record": positions[1] + 5}[damage]
    assert bad not in positions
    cursor.write_text(text.strip()[:-1] + "\n" if damage == "digits cut" else f"{bad:020d}\n")
    reason = "past_end" if damage == "past the end" else "mid_record"
    node.start()
    try:
        new = _send_new(node)
        assert new <= node.wait_output(old | new)  # delivered, not stuck
        assert node.metric("collector_sink_cursor_resets_total", sink="jsonl", reason=reason) == 1
        assert node.metric("collector_sink_cursor_resets_total", sink="dead_letter", reason=reason) == 0
        for _ in range(100):
            if node.metric("collector_sink_lag_bytes", sink="jsonl") == 0:
                break
            time.sleep(0.05)
        assert node.metric("collector_sink_lag_bytes", sink="jsonl") == 0
    finally:
        assert node.stop() == 0
    start = end if damage == "past the end" else max(p for p in positions if p <= bad)
    assert f"cursor {cursor} is at {bad}" in node.stderr
    assert f"starts at position {start}" in node.stderr
    assert int(cursor.read_text()) > end  # the saves went on from there


@pytest.mark.faults
def test_an_empty_cursor_file_is_said_and_counted(tmp_path):
    """An empty cursor file (a new one never is: it is written whole before it is used) makes
    the sink deliver again all the log holds (at-least-once): said in the log, and counted."""
    node, old, cursor, _, _ = _delivered_then_stopped(tmp_path)
    assert "cursor" not in node.stderr  # a new collector's new cursors: nothing to say
    cursor.write_bytes(b"")
    node.start()
    try:
        assert node.metric("collector_sink_cursor_resets_total", sink="jsonl", reason="empty") == 1
        new = _send_new(node)
        for _ in range(200):  # every old event twice: the whole log again
            ids_out = node.output_ids()
            if len(ids_out) >= 2 * len(old) + len(new):
                break
            time.sleep(0.05)
        assert sorted(ids_out) == sorted(list(old) * 2 + list(new))
    finally:
        assert node.stop() == 0
    assert f"cursor {cursor} is empty" in node.stderr
