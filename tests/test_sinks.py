"""The webhook and NATS JetStream sinks against a real HTTP receiver and a real nats-server."""

import asyncio
import json
import subprocess
import sys
import time

import msgspec
import pytest

import collector
from collector.client import Client
from collector.log import EVENTS, Record
from collector.sinks import load
from collector.sinks.jetstream import subject
from collector.sinks.webhook import export, iso_ms, retry_after, sign
from collector.v1 import collector_pb2 as pb
from collector.v1 import event_pb2
from procs import ENV, NatsServer, Receiver, needs_nats, stream_messages
from test_server import Running, run, vector

SEED = vector("seed_example_all_actions")["batch"].encode()
SECRET = "s3cret"


def events_batch(prefix: str, n: int, project: int = 8) -> bytes:
    pl = [{"euid": f"{prefix}{i}", "ea": 20, "t": 1000 + i, "ac": "poll.voted", "lb": "vote",
           "pr": {"pollId": f"p{i}", "n": i, "ok": True}} if i % 2 else
          {"euid": f"{prefix}{i}", "ea": 6, "t": 1000 + i, "tvid": f"t{i}"} for i in range(n)]
    return json.dumps({"pid": project, "uid": "u1", "sn": 4, "now": 2000, "pl": pl}).encode()


def test_helpers():
    assert iso_ms(1765000000123) == "2025-12-06T05:46:40.123Z"
    assert iso_ms(5) == "1970-01-01T00:00:00.005Z"
    assert subject("events", 8, "poll.voted") == "events.8.poll.voted"
    assert subject("events", 8, "a b*>..c.") == "events.8.a_b__._.c"
    assert retry_after("2", 0) == 2.0 and retry_after(None, 0) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("soon", 0) is None
    assert sign(b"k", "1", b"[]") == sign(b"k", "1", b"[]") != sign(b"k", "2", b"[]")


def test_export_shape():
    line = collector.decode(SEED, received_time=1765000000000).to_jsonl().splitlines()[0]
    ev = json.loads(line)
    got = msgspec.to_builtins(export(line))
    assert list(got) == ["event", "eventId", "userId", "sessionId", "projectId", "broadcastId",
                         "campaignId", "timestamp", "label", "data"]
    assert got["event"] == ev["action"] and got["eventId"] == ev["event_id"]
    assert got["userId"] == ev["user_id"] and got["sessionId"] == ev["session_id"]
    assert got["projectId"] == ev["project_id"] and got["label"] == ev["label"]
    assert got["timestamp"] == iso_ms(ev["time"]) and got["data"] == ev["params"]
    assert got["broadcastId"] is None and got["campaignId"] is None


@pytest.mark.parametrize("action, params, top, data", [
    ("poll.voted", {"broadcastId": "b1", "campaignId": 35, "pollId": "p", "optionIndex": 1},
     {"broadcastId": "b1", "campaignId": 35}, {"pollId": "p", "optionIndex": 1}),
    ("checkout.completed", {"broadcastId": "b1", "orderId": "o1", "sponsorId": 12, "total": 99.5,
                            "currency": "NOK", "items": [{"qty": 2}]},
     {"broadcastId": "b1", "campaignId": None, "orderId": "o1", "sponsorId": 12,
      "items": [{"qty": 2}], "total": 99.5}, {"currency": "NOK"}),
    ("cart.item_added", {"productId": "p5"},
     {"broadcastId": None, "campaignId": None, "orderId": None, "sponsorId": None, "items": None,
      "total": None}, {"productId": "p5"}),
])
def test_export_lifts_the_documented_keys_out_of_data(action, params, top, data):
    """The product's webhook payload: broadcastId and campaignId on every event, and orderId,
    sponsorId, items and total on commerce events, at the top level; the rest stays in data."""
    batch = json.dumps({"pid": 8, "uid": "u", "now": 2000, "pl": [
        {"euid": "e1", "ea": 20, "t": 1000, "ac": action, "pr": params}]}).encode()
    got = msgspec.to_builtins(export(collector.decode(batch, received_time=3000).to_jsonl()))
    assert {k: got[k] for k in top} == top and got["data"] == data
    assert list(got)[-1] == "data" and set(got) - set(top) - {"data"} == {
        "event", "eventId", "userId", "sessionId", "projectId", "timestamp", "label"}


def _webhook(url, **kw):
    return {"type": "webhook", "url": url, "secret": SECRET, "linger_seconds": 0.05, **kw}


def test_webhook_delivers_signed_batches(tmp_path):
    async def main():
        async with Receiver(SECRET) as rx:
            sinks = [{"type": "jsonl"}, _webhook(rx.url, max_events=5)]
            async with Running(tmp_path, sinks=sinks) as srv, Client(srv.target) as client:
                reply = await client.send(SEED, batch_id="seed")
                assert reply.accepted == 12
                for _ in range(500):
                    if len(rx.deliveries) >= 12:
                        break
                    await asyncio.sleep(0.02)
                events = await srv.delivered(12)
            return rx, events

    rx, events = run(main())
    assert rx.bad_signatures == 0 and rx.requests >= 3  # 12 events, at most 5 a request
    want = [msgspec.to_builtins(export(json.dumps(e).encode())) for e in events]
    assert rx.deliveries == want


def test_webhook_retries_honours_429_and_dead_letters_4xx(tmp_path):
    # request 0 fails, 1 is rate-limited, 2 outlasts the timeout (the receiver still takes it:
    # those 4 events arrive twice), 3 gets through, 4 (the next 4 events) is refused for good.
    plan = {0: 500, 1: (429, 1), 2: ("sleep", 1.5), 3: 200, 4: 422}
    times = []

    def behave(n):
        times.append(time.monotonic())
        return plan.get(n, 200)

    async def main():
        async with Receiver(SECRET, behave) as rx:
            sinks = [{"type": "dead_letter"},
                     _webhook(rx.url, max_events=4, timeout_seconds=0.5, max_backoff_seconds=0.2)]
            async with Running(tmp_path, sinks=sinks) as srv, Client(srv.target) as client:
                accepted = set()
                for k in range(3):
                    reply = await client.send(events_batch(f"b{k}-", 8), batch_id=f"b{k}")
                    assert reply.accepted == 8
                    accepted |= {f"b{k}-{i}" for i in range(8)}
                for _ in range(1000):
                    delivered = {e["eventId"] for e in rx.deliveries}
                    if len(delivered) + len(rx.refused) >= len(accepted):
                        break
                    await asyncio.sleep(0.02)
                dead = await srv.delivered(4, "dead_letter")
                metrics = srv.service.metrics
                counts = {o: metrics.sink_events.labels("webhook", o)._value.get()
                          for o in ("delivered", "dead")}
            return rx, accepted, dead, counts

    rx, accepted, dead, counts = run(main())
    assert rx.statuses[:5] == [500, (429, 1), ("sleep", 1.5), 200, 422]
    assert times[2] - times[1] >= 0.9  # Retry-After: 1 was honoured, not the 0.2 s backoff cap
    refused = {e["eventId"] for e in rx.refused}
    assert len(refused) == 4
    assert {d["event_id"] for d in dead} == refused
    assert all(d["reason"] == "webhook_refused" and d["status"] == 422 and d["sink"] == "webhook"
               and json.loads(d["raw"])["event_id"] == d["event_id"] for d in dead)
    delivered = {e["eventId"] for e in rx.deliveries}
    assert delivered | refused == accepted and not delivered & refused
    assert rx.late == 1 and len(rx.deliveries) == len(delivered) + 4  # at least once
    assert counts == {"delivered": 20, "dead": 4}


def test_webhook_wrong_secret_is_refused_to_dead_letter(tmp_path):
    async def main():
        async with Receiver("other secret") as rx:
            sinks = [{"type": "dead_letter"}, _webhook(rx.url)]
            async with Running(tmp_path, sinks=sinks) as srv, Client(srv.target) as client:
                await client.send(events_batch("x", 3), batch_id="x")
                dead = await srv.delivered(3, "dead_letter")
            return rx, dead

    rx, dead = run(main())
    assert rx.bad_signatures >= 1 and not rx.deliveries
    assert sorted(d["event_id"] for d in dead) == ["x0", "x1", "x2"]
    assert {d["status"] for d in dead} == {401}


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats")
    yield server
    server.stop()


async def _wait_stream(url, count, timeout=20.0):
    got = []
    for _ in range(int(timeout / 0.1)):
        try:
            got = await stream_messages(url)
        except Exception:  # noqa: BLE001 - the stream is not there yet
            got = []
        if len(got) >= count:
            break
        await asyncio.sleep(0.1)
    return got


@needs_nats
def test_nats_sink_publishes_once_per_event_id(tmp_path, nats_server):
    nats_server.start()

    async def main():
        sink_cfg = {"type": "nats", "url": nats_server.url}
        async with Running(tmp_path, sinks=[{"type": "jsonl"}, sink_cfg]) as srv, \
                Client(srv.target) as client:
            assert (await client.send(SEED, batch_id="seed")).accepted == 12
            events = await srv.delivered(12)
            msgs = await _wait_stream(nats_server.url, 12)
        # the same records again, as after a crash before the cursor moved: JetStream drops them
        sink = load(sink_cfg, str(tmp_path))
        payload = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n"
                          for e in events).encode()
        await sink.write([Record(0, EVENTS, 0, payload)])
        await sink.stop()
        return events, msgs, await stream_messages(nats_server.url)

    events, msgs, again = run(main())
    assert [m[0] for m in msgs] == [e["event_id"] for e in events]
    assert [m[1] for m in msgs] == [f"events.{e['project_id']}.{e['action']}" for e in events]
    assert [json.loads(m[2]) for m in msgs] == events
    assert again == msgs


@needs_nats
def test_nats_sink_protobuf_and_broker_late(tmp_path, nats_server):
    """The broker is not there when the collector starts; events wait in the log, then go."""

    async def main():
        sink_cfg = {"type": "nats", "url": nats_server.url, "format": "protobuf", "stream": "PB",
                    "subject_prefix": "pb"}
        async with Running(tmp_path, sinks=[{"type": "jsonl"}, sink_cfg]) as srv, \
                Client(srv.target) as client:
            assert (await client.send(SEED, batch_id="seed")).durability == pb.DURABILITY_LOGGED
            events = await srv.delivered(12)
            await asyncio.sleep(0.5)
            nats_server.start()
            msgs = []
            for _ in range(200):
                try:
                    msgs = await stream_messages(nats_server.url, "PB")
                except Exception:  # noqa: BLE001
                    msgs = []
                if len(msgs) >= 12:
                    break
                await asyncio.sleep(0.1)
        return events, msgs

    events, msgs = run(main())
    assert len(msgs) == 12
    for (msg_id, subj, data), ev in zip(msgs, events):
        m = event_pb2.NormalizedEvent()
        m.ParseFromString(data)
        assert msg_id == ev["event_id"] == m.event_id and subj.startswith("pb.8.")
        assert collector.convert.protobuf_to_event(m) == ev


@needs_nats
def test_tail_nats_is_a_durable_consumer(tmp_path, nats_server):
    nats_server.start()

    def tail(*extra):
        out = subprocess.run(
            [sys.executable, "-m", "collector", "tail", "--nats", nats_server.url, "--idle", "1.5",
             "--durable", "reader", *extra], capture_output=True, env=ENV, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        return [json.loads(line) for line in out.stdout.splitlines()]

    async def send(prefix, n):
        async with Running(tmp_path, sinks=[{"type": "nats", "url": nats_server.url}]) as srv, \
                Client(srv.target) as client:
            await client.send(events_batch(prefix, n), batch_id=prefix)
            await _wait_stream(nats_server.url, n)

    run(send("a", 6))
    first = tail("--limit", "4")
    second = tail("--action", "poll.*")  # the durable goes on after the 4 acknowledged
    assert [e["event_id"] for e in first] == ["a0", "a1", "a2", "a3"]
    assert [e["event_id"] for e in second] == ["a5"]  # a4 is touch.tap: acknowledged, not shown
    assert tail() == []


@needs_nats
def test_tail_nats_from_a_time_to_the_millisecond(tmp_path, nats_server):
    nats_server.start()

    def tail(ms):
        out = subprocess.run(
            [sys.executable, "-m", "collector", "tail", "--nats", nats_server.url, "--idle", "1.5",
             "--from", f"time:{ms}"], capture_output=True, env=ENV, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        return [json.loads(line)["event_id"] for line in out.stdout.splitlines()]

    async def send():
        async with Running(tmp_path, sinks=[{"type": "nats", "url": nats_server.url}]) as srv, \
                Client(srv.target) as client:
            await client.send(events_batch("a", 3), batch_id="a")
            await _wait_stream(nats_server.url, 3)

    before = time.time_ns() // 1_000_000 - 1
    run(send())
    after = time.time_ns() // 1_000_000 + 1
    assert tail(before) == ["a0", "a1", "a2"]
    assert tail(after) == []  # the milliseconds count, not only the seconds


def test_webhook_requests_are_bounded_by_count_and_bytes():
    lines = collector.decode(SEED * 1, received_time=1).to_jsonl()
    records = [Record(i, EVENTS, 0, lines) for i in range(5)]  # 60 events
    sink = load({"type": "webhook", "url": "http://127.0.0.1:9/", "max_events": 7,
                 "max_bytes": 2500}, "/nonexistent")
    bodies = list(sink._requests(records))
    sent = [e for body, _ in bodies for e in json.loads(body)]
    assert [e["eventId"] for e in sent] == [json.loads(x)["event_id"] for x in lines.splitlines()] * 5
    assert all(len(json.loads(body)) <= 7 and len(body) <= 2500 for body, _ in bodies)
    assert all(len(json.loads(body)) == len(kept) for body, kept in bodies)
    assert len(bodies) > 60 // 7  # the byte bound split some requests further


@needs_nats
def test_nats_sink_refused_by_jetstream_fails_fast(tmp_path, nats_server):
    """No stream for the subjects (and none to be made): the write fails with the reason at
    once, not after the ack timeout, and the records are tried again later."""
    nats_server.start()

    async def main():
        sink = load({"type": "nats", "url": nats_server.url, "create_stream": False,
                     "ack_timeout": 30.0}, str(tmp_path))
        lines = collector.decode(SEED).to_jsonl()
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="12 of 12 messages not stored"):
            await sink.write([Record(0, EVENTS, 0, lines)])
        elapsed = time.monotonic() - started
        await sink.stop()
        return elapsed

    assert run(main()) < 10
