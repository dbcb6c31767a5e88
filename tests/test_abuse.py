"""Abuse by clients, against `collector serve` as a real process on a free loopback port, with
real clients (the project's own, grpc channels, and `h2flood.py`: HTTP/2 calls that send part of
a message and stall): unauthenticated floods, idle and slow calls, a Subscribe that would scan
the whole log, keys reaching past their projects, a drain, oversized requests, bad positions,
file modes and a disk cap. Every test checks that what was acknowledged is delivered."""

import asyncio
import glob
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import collector
from collector.analytics.deletions import dead_owner
from collector.client import Client
from collector.log import EVENTS, Log
from collector.v1 import collector_pb2 as pb
from collector.v1 import collector_pb2_grpc as pb_grpc
from procs import ENV, free_port

FLOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h2flood.py")
GOOD = {"good": [8], "other": [9]}


def batch(prefix: str, n: int = 5, project: int = 8, user: str = "u1", **header) -> bytes:
    pl = [{"euid": f"{prefix}-{i}", "ea": 6, "t": 1000 + i, "tvid": "x"} for i in range(n)]
    return json.dumps({"pid": project, "uid": user, "now": 2000, **header, "pl": pl}).encode()


def ids(data: bytes) -> set:
    return {e["euid"] for e in json.loads(data)["pl"]}


def rss_kb(srv) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Flood:
    """h2flood.py as a process: HTTP/2 calls that send part of a message and stall."""

    def __init__(self, port: int, *args):
        self.proc = subprocess.Popen([sys.executable, FLOOD, "127.0.0.1", str(port), *map(str, args)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
        self.first = self.status(ask=False)

    def status(self, ask=True) -> dict:
        if ask:
            self.proc.stdin.write(b"?\n")
            self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


async def send_good(target, prefix: str, key="good", n_batches=3) -> set:
    """Batches from a valid key; the ids its replies say were logged."""
    async with Client(target, api_key=key, max_attempts=3) as client:
        logged = set()
        for i in range(n_batches):
            data = batch(f"{prefix}{i}")
            reply = await asyncio.wait_for(client.send(data), 10)
            assert reply.durability == pb.DURABILITY_LOGGED
            logged |= ids(data)
        return logged


def no_loss(srv, logged: set) -> None:
    """Every acknowledged event is in the jsonl output, and no sink is left behind."""
    got = srv.wait_output(logged)
    assert logged <= got, f"{len(logged - got)} acknowledged events lost"
    if srv.metrics_port:
        for _ in range(100):
            lags = [srv.metric("collector_sink_lag_bytes", sink=s) for s in ("jsonl", "dead_letter")]
            if not any(lags):
                break
            time.sleep(0.1)
        assert not any(lags), f"a sink is stuck: lag {lags}"


# -------------------------------------------------------------------------------- item 7

def test_unauthenticated_flood_of_unfinished_messages_pins_no_memory(server):
    """100 calls without a key, each sending 3.5 MB of a 4 MB message and stalling: refused as
    their headers arrive, so the server reads none of it (it took 350 MB when the key was checked
    after the whole message), and a valid key's Ingest goes through meanwhile."""
    srv = server(top={"api_keys": GOOD}, metrics=True).start()
    warm = asyncio.run(send_good(srv.target, "warm"))
    srv.wait_output(warm)
    time.sleep(1.0)  # the sinks (the store) have loaded what they are sent first
    before = rss_kb(srv)
    flood = Flood(srv.port, "--streams", 100, "--message", 4 << 20, "--send", 3_500_000)
    try:
        time.sleep(0.5)
        after = rss_kb(srv)
        logged = asyncio.run(send_good(srv.target, "during"))
        status = flood.status()
    finally:
        flood.stop()
    assert status["closed"] == 100, status  # every one answered at once
    assert flood.first["sent"] < 100 * 200_000, flood.first  # the server took next to none of it
    assert after - before < 40_000, (before, after)
    no_loss(srv, logged | warm)
    assert srv.stop() == 0


def test_tiny_unauthenticated_calls_cannot_lock_a_valid_key_out(server):
    """512 calls without a key, each holding 10 bytes of a message (the server takes 512 calls at
    once): refused at once, so a valid key's Ingest still gets in."""
    srv = server(top={"api_keys": GOOD}).start()
    flood = Flood(srv.port, "--streams", 512, "--per-connection", 8, "--send", 10)
    try:
        time.sleep(0.3)
        logged = asyncio.run(send_good(srv.target, "tiny"))
        assert flood.status()["closed"] == 512
    finally:
        flood.stop()
    no_loss(srv, logged)
    assert srv.stop() == 0


def test_one_key_cannot_take_every_call_and_slow_requests_time_out(server):
    """A valid key stalling 300 calls part-way through their messages: past
    limits.max_calls_per_client they are refused at once, those it holds end after
    limits.receive_seconds, and another key's Ingest goes through all along."""
    srv = server(top={"api_keys": GOOD}, limits={"max_calls_per_client": 40, "receive_seconds": 3.0}).start()
    flood = Flood(srv.port, "--streams", 300, "--per-connection", 10, "--send", 100_000, "--key", "other")
    try:
        time.sleep(1.0)
        assert flood.status()["closed"] == 260  # over its share: refused at once
        logged = asyncio.run(send_good(srv.target, "share"))
        time.sleep(2.5)
        assert flood.status()["closed"] == 300  # the slow ones timed out
    finally:
        flood.stop()
    no_loss(srv, logged)
    assert srv.stop() == 0


# -------------------------------------------------------------------------------- item 8

def test_idle_streams_end_and_ingest_and_subscribers_have_budgets_of_their_own(server):
    srv = server(limits={"max_streams": 2, "max_subscribers": 1, "stream_idle_seconds": 1.0,
                         "retry_after_ms": 321}).start()

    async def main():
        async with grpc.aio.insecure_channel(srv.target) as channel:
            stub = pb_grpc.CollectorStub(channel)
            events = pb_grpc.EventsStub(channel)
            idle = [stub.IngestStream() for _ in range(2)]
            await idle[0].write(Client.request(batch("idle"), batch_id="idle"))
            assert (await idle[0].read()).accepted == 5
            await idle[1].wait_for_connection()
            await asyncio.sleep(0.2)
            # the ingest streams are all taken: refused, saying when to come back
            third = stub.IngestStream()
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await third.read()
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            reply = pb.IngestReply.FromString(dict(exc.value.trailing_metadata())["collector-reply-bin"])
            assert reply.retry_after_ms == 321 and "retry after 321 ms" in exc.value.details()
            # ...but a subscriber has its own budget
            sub = events.Subscribe(pb.SubscribeRequest(from_position=0))
            assert (await sub.read()).event_id == "idle-0"
            second = events.Subscribe(pb.SubscribeRequest())
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await second.read()
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_subscribers" in exc.value.details()
            # idle ingest streams end after stream_idle_seconds, and their slots are free again
            started = time.monotonic()
            for call in idle:
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call.read()
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "idle" in exc.value.details()
            assert time.monotonic() - started < 2.5
            sub.cancel()
        async with Client(srv.target) as client:  # the project's client: one stream, retried
            data = [batch(f"after{i}") for i in range(3)]
            replies = [r async for r in client.stream(Client.request(d) for d in data)]
        assert all(r.accepted == 5 for r in replies)
        return {"idle-0", "idle-1", "idle-2", "idle-3", "idle-4"} | set().union(*map(ids, data))

    logged = asyncio.run(main())
    no_loss(srv, logged)
    assert srv.stop() == 0


# -------------------------------------------------------------------------------- item 9

@pytest.mark.faults
def test_subscribe_from_time_does_not_stall_ingest(server):
    """Subscribe(from_time) on a 320 MB log finds its position without holding the event loop:
    calls made meanwhile are answered as usual (it read and checksummed the whole log on the
    loop: seconds of stall on a large log)."""
    srv = server(analytics={"store": ""})
    log_dir = srv.data / "log"

    async def fill():
        log = Log(str(log_dir), fsync=False, cache_bytes=0, max_bytes=8 << 30)
        line = collector.decode(batch("filler", n=1, project=7)).to_jsonl()
        payload = line * (1_000_000 // len(line))  # 1 MB of project 7's events
        for i in range(320):
            await log.append_many([(EVENTS, 1_000_000 + i, payload)])
        end = log.end
        await log.close()
        return end

    end = asyncio.run(fill())
    (srv.data / "cursors").mkdir(parents=True)
    for name in ("jsonl", "dead_letter"):  # the sinks have delivered it all
        (srv.data / "cursors" / f"{name}.pos").write_bytes(b"%020d\n" % end)
    srv.start()

    async def main():
        async with grpc.aio.insecure_channel(srv.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest())
            events = pb_grpc.EventsStub(channel)
            worst = 0.0
            for from_time in (1_000_000 + 319, 1_000_000 + 318, 2_000_000):  # little to replay
                sub = events.Subscribe(pb.SubscribeRequest(from_time=from_time, project_ids=[8]))
                first = asyncio.ensure_future(sub.read())
                while not first.done():
                    started = time.monotonic()
                    await health.Check(health_pb2.HealthCheckRequest())
                    worst = max(worst, time.monotonic() - started)
                    await asyncio.sleep(0.005)
                assert first.result().position >= 0
                sub.cancel()
            return worst

    async def one_event():  # project 8's, after the filler
        async with Client(srv.target) as client:
            await client.send(batch("late"))

    asyncio.run(one_event())
    worst = asyncio.run(main())
    print(f"longest health check while Subscribe(from_time) looked: {worst:.3f} s")
    assert worst < 0.25, f"a health check waited {worst:.2f} s while Subscribe looked for its start"
    assert srv.stop() == 0


# ------------------------------------------------------------------------------- item 10

def test_the_per_project_cap_applies_when_the_request_names_no_project(server):
    """IngestRequest.project_id 0 (what Client and `collector send` send): the batch's bytes in
    flight are counted against its own project's cap once its header is read."""
    srv = server(limits={"inflight_bytes_per_project": 300_000, "retry_after_ms": 200},
                 log={"commit_interval_seconds": 0.5}).start()

    async def main():
        async with Client(srv.target, max_attempts=1) as client:
            await client.send(batch("warm"))  # the next group commit waits its interval
            data = [batch(f"p{i}", n=300) for i in range(20)]
            calls = [client.stub.Ingest(Client.request(d)) for d in data]
            results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert refused and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
        logged = set().union(*(ids(d) for d, r in zip(data, results) if isinstance(r, pb.IngestReply)))
        async with Client(srv.target) as client:  # retried after retry_after_ms, all get in
            replies = [r async for r in client.stream(Client.request(d) for d in data)]
        assert all(r.durability == pb.DURABILITY_LOGGED for r in replies), [r for r in replies if not r.durability][:1]
        return logged | set().union(*map(ids, data))

    no_loss(srv, asyncio.run(main()))
    assert srv.stop() == 0


# ------------------------------------------------------------------------------- item 11

def test_a_key_with_no_projects_sees_none_and_dead_letters_carry_the_key_s_project(server):
    srv = server(top={"api_keys": {"none": [], "k8": [8], "k12": [12]}}).start()

    async def main():
        async with Client(srv.target, api_key="k8") as client:
            await client.send(batch("secret"))
        async with grpc.aio.insecure_channel(srv.target) as channel:
            events = pb_grpc.EventsStub(channel)
            sub = events.Subscribe(pb.SubscribeRequest(from_position=0),
                                   metadata=(("authorization", "Bearer none"),))
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await asyncio.wait_for(sub.read(), 5)
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # batches refused whole (a SPEC error) that claim project 8, from a key for 12
        bad_json = batch("claim", project=8, user="victim", r={"d": 99})
        bad_pb = collector.json_to_protobuf(batch("claimpb", project=8, user="victim")) + b"\x0a"  # cut
        async with Client(srv.target, api_key="k12", max_attempts=1) as client:
            for data, fmt in ((bad_json, "json"), (bad_pb, "protobuf")):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await client.send(data, format=fmt)
                assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(main())
    no_loss(srv, ids(batch("secret")))
    for _ in range(100):
        lines = [line for path in glob.glob(str(srv.data / "dead_letter" / "*.jsonl*"))
                 for line in open(path, "rb").read().splitlines()]
        if len(lines) == 2:
            break
        time.sleep(0.1)
    owners = sorted(dead_owner(line)[:2] for line in lines if b"victim" in line)
    assert owners == [(12, "victim")], lines  # the JSON batch; the protobuf one cannot be read
    assert [dead_owner(line)[0] for line in lines] == [12, 12], lines
    assert srv.stop() == 0


# ------------------------------------------------------------------------------- item 12

def test_drain_refuses_new_batches_at_once_and_health_says_not_serving(server):
    """SIGTERM: batches taken before it are logged and answered; a batch sent on an open stream
    after it is answered UNAVAILABLE with retry_after_ms (not taken for the whole drain window),
    the stream ends UNAVAILABLE (not INTERNAL), and health answers NOT_SERVING while sinks drain."""
    dead = free_port()  # a webhook nobody answers: the sinks' drain takes drain_seconds
    srv = server(top={"drain_seconds": 4.0}, log={"commit_interval_seconds": 1.0},
                 sinks=[{"type": "jsonl"}, {"type": "dead_letter"},
                        {"type": "webhook", "url": f"http://127.0.0.1:{dead}/", "secret": "s",
                         "timeout_seconds": 0.5}]).start()

    async def main():
        async with grpc.aio.insecure_channel(srv.target) as channel:
            stub = pb_grpc.CollectorStub(channel)
            call = stub.IngestStream()
            await call.write(Client.request(batch("warm"), batch_id="warm"))
            assert (await call.read()).accepted == 5
            await call.write(Client.request(batch("taken"), batch_id="taken"))  # waits for its commit
            await asyncio.sleep(0.05)
            os.kill(srv.proc.pid, signal.SIGTERM)
            await asyncio.sleep(0.2)
            await call.write(Client.request(batch("late"), batch_id="late"))
            replies = {}
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                while True:
                    r = await asyncio.wait_for(call.read(), 3)
                    replies[r.batch_id] = r
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE, exc.value
            assert replies["taken"].durability == pb.DURABILITY_LOGGED
            late = replies["late"]
            assert late.status == grpc.StatusCode.UNAVAILABLE.value[0] and late.retry_after_ms > 0
            assert late.durability == pb.DURABILITY_NONE
            health = health_pb2_grpc.HealthStub(channel)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as exc:  # a new call: UNAVAILABLE at once
                await stub.Ingest(Client.request(batch("new")))
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE

    asyncio.run(main())
    assert srv.wait() == 0
    out = set(srv.output_ids())
    assert ids(batch("warm")) | ids(batch("taken")) <= out
    assert not out & ids(batch("late"))


# ------------------------------------------------------------------------------- item 13

def test_a_request_over_max_message_bytes_is_refused_and_the_stream_goes_on(server):
    srv = server(limits={"max_message_bytes": 1 << 20}).start()
    huge = batch("huge", n=1, dma="x" * (2 << 20))

    async def main():
        async with grpc.aio.insecure_channel(srv.target) as channel:
            stub = pb_grpc.CollectorStub(channel)
            requests = [Client.request(batch("a"), batch_id="a"), Client.request(huge, batch_id="huge"),
                        Client.request(batch("c"), batch_id="c")]
            call = stub.IngestStream(iter(requests))
            replies = {r.batch_id: r async for r in call}
            assert await call.code() == grpc.StatusCode.OK
        assert replies["a"].accepted == 5 and replies["c"].accepted == 5
        assert replies["huge"].status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "max_message_bytes" in replies["huge"].detail and not replies["huge"].retry_after_ms
        # the project's client does not send it again, and goes on with the rest
        async with Client(srv.target, max_attempts=3) as client:
            got = [r async for r in client.stream([Client.request(huge, batch_id="h2"),
                                                   Client.request(batch("d"), batch_id="d")])]
        assert sorted((r.batch_id, r.status) for r in got) == [
            ("d", 0), ("h2", grpc.StatusCode.INVALID_ARGUMENT.value[0])]
        return set().union(*(ids(batch(p)) for p in "acd"))

    no_loss(srv, asyncio.run(main()))
    assert srv.stop() == 0


# ------------------------------------------------------------------------------- item 14

def test_subscribe_from_a_position_that_is_no_record_start_says_why(server):
    srv = server().start()

    async def main():
        async with Client(srv.target) as client:
            await client.send(batch("a"))
            await client.send(batch("b"))
            events = pb_grpc.EventsStub(client.channel)
            first = await (call := events.Subscribe(pb.SubscribeRequest(from_position=0))).read()
            call.cancel()
            for position, code, words in ((7, grpc.StatusCode.INVALID_ARGUMENT, "not where a record starts"),
                                          (10 ** 12, grpc.StatusCode.OUT_OF_RANGE, "past the log's end")):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await events.Subscribe(pb.SubscribeRequest(from_position=position)).read()
                assert exc.value.code() == code and words in exc.value.details()
            assert "starts at 0" in exc.value.details() or code != grpc.StatusCode.INVALID_ARGUMENT
            assert first.position == 0

    asyncio.run(main())
    assert srv.stop() == 0


# ------------------------------------------------------------------------------- item 15

@pytest.mark.parametrize("umask,files,dirs", [(None, 0o600, 0o700), (0o022, 0o644, 0o755)])
def test_files_hold_user_ids_so_are_private_by_default(server, umask, files, dirs):
    srv = server(top={} if umask is None else {"umask": umask}).start()
    asyncio.run(send_good(srv.target, "m", key=None, n_batches=1))
    srv.wait_output(ids(batch("m0")))
    assert srv.stop() == 0
    found = {"file": 0, "dir": 0}
    for root, _, filenames in os.walk(srv.data):
        assert stat.S_IMODE(os.stat(root).st_mode) == dirs, root
        found["dir"] += 1
        for name in filenames:
            path = os.path.join(root, name)
            if name in ("analytics.duckdb", "deletions.jsonl"):  # 0600 whatever the umask
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
                continue
            assert stat.S_IMODE(os.stat(path).st_mode) == files, path
            found["file"] += 1
    assert found["file"] >= 4 and found["dir"] >= 4  # log, events, cursors, the store...


# ------------------------------------------------------------------------------- item 16

@pytest.mark.faults
def test_sinks_output_counts_against_a_disk_cap(server):
    """Small requests that normalise to MBs (every event repeats the header): the jsonl output
    grows past what the log holds; past limits.max_disk_bytes ingest is refused, and everything
    accepted is delivered."""
    cap = 40 << 20
    srv = server(limits={"max_disk_bytes": cap}, analytics={"store": ""}).start()

    async def main():
        logged, refused = set(), None
        async with Client(srv.target, max_attempts=1) as client:
            for i in range(60):
                data = batch(f"bomb{i}", n=1000, dma="x" * 3000)
                try:
                    await client.send(data)
                except grpc.aio.AioRpcError as exc:
                    refused = exc
                    break
                logged |= ids(data)
                await asyncio.sleep(0.1)
        return logged, refused

    logged, refused = asyncio.run(main())
    assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_disk_bytes" in refused.details()
    no_loss(srv, logged)
    used = sum(os.path.getsize(p) for p in glob.glob(str(srv.data / "**" / "*"), recursive=True)
               if os.path.isfile(p))
    assert used < cap + (24 << 20), used  # the cap, and what came within one count of it
    assert srv.stop() == 0
