"""`collector serve` as a real process: crash safety, graceful shutdown, a flood, send and tail."""

import asyncio
import glob
import json
import os
import signal
import subprocess
import sys

import grpc
import pytest

from collector.client import Client
from procs import ENV


def batch(i: int, n: int = 50, pad: int = 0) -> bytes:
    events = [{"euid": f"b{i}-e{j}", "ea": 6, "t": 1000, "tvid": "ok" + "x" * pad} for j in range(n)]
    return json.dumps({"pid": 8, "uid": "u", "now": 2000, "pl": events}).encode()


async def stream_until(target, count, stop_after=None, on_reply=None):
    """Stream `count` batches; return the event ids of every reply that said `logged`."""
    logged = set()
    replies = 0
    try:
        async with Client(target, max_attempts=3) as client:
            async for reply in client.stream(Client.request(batch(i), batch_id=f"b{i}") for i in range(count)):
                replies += 1
                if reply.durability == 1:
                    i = int(reply.batch_id[1:])
                    logged |= {f"b{i}-e{j}" for j in range(50)}
                if on_reply is not None and replies == stop_after:
                    on_reply()
    except grpc.aio.AioRpcError:
        pass  # the server went away mid-stream
    return logged


def test_sigkill_mid_stream_loses_nothing_logged(server):
    srv = server().start()
    logged = asyncio.run(stream_until(srv.target, 400, stop_after=60, on_reply=lambda: srv.stop(signal.SIGKILL)))
    assert len(logged) >= 60 * 50
    assert srv.returncode == -signal.SIGKILL
    # a crash in the middle of a write leaves half a record behind
    (segment,) = sorted(glob.glob(str(srv.data / "log" / "*.seg")))[-1:]
    with open(segment, "ab") as f:
        f.write(b"\xff\x00\x00\x00\x12\x34\x56")
    srv.start()
    got = srv.wait_output(logged)
    assert logged <= got, f"{len(logged - got)} logged events lost"
    assert srv.stop() == 0
    assert "torn tail" in srv.stderr


def test_sigterm_drains_and_exits_zero(server):
    srv = server().start()
    logged = asyncio.run(stream_until(srv.target, 300, stop_after=40,
                                      on_reply=lambda: os.kill(srv.proc.pid, signal.SIGTERM)))
    assert srv.wait() == 0
    assert len(logged) >= 40 * 50
    assert logged <= set(srv.output_ids())  # delivered before the exit, nothing lost


def test_flood_memory_stays_bounded(server):
    """A flood of 1 MB batches: what is not refused is logged, and the server's memory levels
    off instead of growing with what is thrown at it. The store loads all of it too, within
    the buffer pool it is given."""
    store_mb = 128
    srv = server(limits={"inflight_bytes": 8 << 20, "inflight_bytes_per_project": 8 << 20,
                         "retry_after_ms": 100, "max_concurrent_rpcs": 16},
                 dedup={"window_events": 20000}, analytics={"memory_limit_mb": store_mb}).start()
    big = batch(0, n=1000, pad=900)  # about 1 MB
    assert len(big) > 900_000

    async def flood(waves, first):
        outcomes = []
        async with Client(srv.target, max_attempts=1) as client:
            for wave in range(first, first + waves):
                calls = [client.stub.Ingest(Client.request(big.replace(b'"b0-', f'"w{wave}c{c}-'.encode())))
                         for c in range(40)]
                for r in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(r, grpc.aio.AioRpcError):
                        assert r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, r
                        outcomes.append("refused")
                    else:
                        assert r.accepted == 1000
                        outcomes.append("logged")
        return outcomes

    baseline = srv.rss_peak_kb()
    outcomes = asyncio.run(flood(4, 0))
    settled = srv.rss_peak_kb()
    outcomes += asyncio.run(flood(12, 4))
    final = srv.rss_peak_kb()
    assert "logged" in outcomes
    # 640 MB thrown at it; three times more traffic after the first waves hardly moves the peak
    assert final - settled < 300_000, (baseline, settled, final)
    assert final - baseline < 450_000 + store_mb * 1024, (baseline, settled, final)
    assert srv.stop() == 0


def test_a_batch_that_normalises_to_gigabytes_is_refused_without_taking_them(server):
    """Every event repeats the batch's header: 1000 events under a 1 MB `dma` would normalise to
    1 GB. The decoder stops at the output limit; the call is INVALID_ARGUMENT saying why, and
    the server's memory hardly moves."""
    srv = server().start()
    events = [{"euid": f"g{j}", "ea": 6, "t": 1000, "tvid": "ok"} for j in range(1000)]
    bomb = json.dumps({"pid": 8, "uid": "u", "now": 2000, "dma": "x" * 1_000_000, "pl": events}).encode()
    assert len(bomb) < 1_100_000

    async def send():
        async with Client(srv.target, max_attempts=1) as client:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await client.send(bomb)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "max_batch_output_bytes" in exc.value.details()
            return (await client.send(batch(1))).accepted  # the server goes on

    baseline = srv.rss_peak_kb()
    assert asyncio.run(send()) == 50
    assert srv.rss_peak_kb() - baseline < 150_000  # the 32 MiB limit and the request, not 1 GB
    assert srv.stop() == 0


def test_send_and_tail_commands(server, tmp_path):
    srv = server().start()
    src = tmp_path / "batches.jsonl"
    src.write_bytes(b"".join(batch(i, n=5) + b"\n" for i in range(10)))
    tail = subprocess.Popen(
        [sys.executable, "-m", "collector", "tail", srv.target, "--from", "position:0", "--limit", "20",
         "--action", "touch.*"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    sent = subprocess.run([sys.executable, "-m", "collector", "send", "--streams", "2", srv.target, str(src)],
                          capture_output=True, env=ENV, timeout=60)
    assert sent.returncode == 0, sent.stderr
    totals = json.loads(sent.stdout.splitlines()[-1])
    assert totals["batches"] == 10 and totals["accepted"] == 50
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 20 and all(e["action"] == "touch.tap" for e in events)
    assert srv.stop() == 0
