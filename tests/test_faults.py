"""Faults survived, checked by event id against real processes: nats-server stopped and started,
a webhook receiver that fails and stalls on purpose, a collector killed with SIGKILL while its
sinks are behind, two collectors behind one round_robin client. Run alone: `pytest -m faults`.

Each test adds a row to the summary table printed at the end of the run (see conftest)."""

import asyncio
import json
import random
import signal
import time

import pytest

from collector.client import Client
from procs import SUMMARY, Collector, NatsServer, Receiver, needs_nats, stream_messages

pytestmark = pytest.mark.faults
SECRET = "fault-secret"


def batch(prefix: str, n: int = 25) -> bytes:
    pl = [{"euid": f"{prefix}-{i}", "ea": 20, "t": 1000 + i, "ac": "poll.voted", "lb": "vote",
           "pr": {"pollId": prefix, "option": i}} if i % 3 == 0 else
          {"euid": f"{prefix}-{i}", "ea": 6, "t": 1000 + i, "tvid": f"t{i}"} for i in range(n)]
    return json.dumps({"pid": 8, "uid": "u1", "sn": 1, "now": 2000, "pl": pl}).encode()


def accepted_ids(request, reply) -> set:
    """The ids of a batch's events that its reply says were accepted."""
    events = json.loads(request.json)["pl"]
    refused = {r.index for r in reply.results}
    return {e["euid"] for i, e in enumerate(events) if i not in refused}


async def send(target: str, batches: list[bytes], *, interval: float = 0.0, streams: int = 1,
               options=(), tag: str = "") -> tuple[int, set]:
    """Send the batches over `streams` IngestStreams, pacing them; (events sent, accepted ids)."""
    accepted: set = set()
    async with Client(target, options=options, max_attempts=500) as client:
        await client.channel.channel_ready()
        if "," in target:  # round_robin spreads calls over the addresses that are connected
            await asyncio.sleep(0.5)
        async def one(k):
            async def requests():
                for i in range(k, len(batches), streams):
                    yield Client.request(batches[i], batch_id=f"{tag}{i}")
                    if interval:
                        await asyncio.sleep(interval * streams)
            by_id = {}
            async for reply in client.stream(requests()):
                by_id[reply.batch_id] = reply
            for batch_id, reply in by_id.items():
                accepted.update(accepted_ids(Client.request(batches[int(batch_id[len(tag):])]), reply))
        await asyncio.gather(*(one(k) for k in range(streams)))
    return sum(len(json.loads(b)["pl"]) for b in batches), accepted


async def wait_for(check, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every)


async def nats_ids(url, want: set, timeout: float = 60.0) -> list:
    """The Nats-Msg-Id of every message in the stream, once it holds `want` (or at the timeout)."""
    async def check():
        try:
            ids = [m[0] for m in await stream_messages(url)]
        except Exception:  # noqa: BLE001 - the broker or the stream is not there yet
            return None
        return ids if want <= set(ids) else None

    return await wait_for(check, timeout) or [m[0] for m in await stream_messages(url)]


def row(name, sent, accepted: set, delivered: list, duplicates_removed: int):
    unique = set(delivered)
    SUMMARY.append((name, sent, len(accepted), len(unique & accepted), duplicates_removed,
                    len(accepted - unique)))
    assert accepted - unique == set(), "lost"
    assert unique - accepted == set(), "delivered but never accepted"


@needs_nats
def test_nats_outage_during_a_steady_stream(tmp_path):
    broker = NatsServer(tmp_path / "nats").start()
    node = Collector(tmp_path / "c", sinks=[{"type": "nats", "url": broker.url, "ack_timeout": 1.0}],
                     metrics=True).start()
    try:
        async def main():
            sender = asyncio.ensure_future(
                send(node.target, [batch(f"n{i}") for i in range(60)], interval=0.05))
            await asyncio.sleep(1.0)
            broker.stop(signal.SIGKILL)  # the broker dies mid-stream...
            await asyncio.sleep(2.0)
            broker.start()  # ...and comes back on the same port and store
            sent, accepted = await sender
            return sent, accepted, await nats_ids(broker.url, accepted)

        sent, accepted, ids = asyncio.run(main())
        assert len(ids) == len(set(ids)), "JetStream holds an event twice"
        assert node.metric("collector_sink_errors_total", sink="nats") > 0  # the outage was seen
        row("NATS down 2 s mid-stream", sent, accepted, ids,
            int(node.metric("collector_sink_events_total", sink="nats", outcome="duplicate")))
    finally:
        node.stop()
        broker.stop()


def test_webhook_receiver_failing_half_and_stalling(tmp_path):
    rng = random.Random(7)

    def behave(n):
        x = rng.random()
        return 503 if x < 0.5 else ("sleep", 0.6) if x < 0.6 else 200

    async def main():
        async with Receiver(SECRET, behave) as rx:
            node = Collector(tmp_path / "c", sinks=[{
                "type": "webhook", "url": rx.url, "secret": SECRET, "max_events": 50,
                "linger_seconds": 0.05, "timeout_seconds": 0.4, "max_backoff_seconds": 0.3}]).start()
            try:
                sent, accepted = await send(node.target, [batch(f"w{i}") for i in range(40)],
                                            interval=0.02)

                async def check():
                    return True if accepted <= {e["eventId"] for e in rx.deliveries} else None

                await wait_for(check)
            finally:
                node.stop()
            return sent, accepted, rx

    sent, accepted, rx = asyncio.run(main())
    failed = sum(1 for s in rx.statuses if s != 200)
    assert failed > 10 and rx.late > 0  # the receiver did fail and stall, often
    ids = [e["eventId"] for e in rx.deliveries]
    row("webhook 50% 503 + stalls", sent, accepted, ids, len(ids) - len(set(ids)))


@needs_nats
def test_sigkill_while_sinks_are_behind(tmp_path):
    """Both sinks are down while events are logged; the collector is killed; after a restart,
    delivery resumes from the cursors and nothing is lost."""
    broker = NatsServer(tmp_path / "nats")  # not started yet: the nats sink is stuck
    up = {"ok": False}

    async def main():
        async with Receiver(SECRET, lambda n: 200 if up["ok"] else 503) as rx:
            sinks = [{"type": "nats", "url": broker.url, "ack_timeout": 1.0},
                     {"type": "webhook", "url": rx.url, "secret": SECRET, "linger_seconds": 0.05,
                      "max_backoff_seconds": 0.3}]
            node = Collector(tmp_path / "c", sinks=sinks).start()
            try:
                sent, accepted = await send(node.target, [batch(f"k{i}") for i in range(30)])
                await asyncio.sleep(0.5)
            finally:
                assert node.stop(signal.SIGKILL) == -signal.SIGKILL
            broker.start()
            up["ok"] = True
            node.start()
            try:
                ids = await nats_ids(broker.url, accepted)

                async def check():
                    return True if accepted <= {e["eventId"] for e in rx.deliveries} else None

                await wait_for(check)
            finally:
                node.stop()
            return sent, accepted, ids, [e["eventId"] for e in rx.deliveries]

    try:
        sent, accepted, ids, hooks = asyncio.run(main())
    finally:
        broker.stop()
    assert len(ids) == len(set(ids))
    row("SIGKILL, sinks behind: NATS", sent, accepted, ids, 0)
    row("SIGKILL, sinks behind: webhook", sent, accepted, hooks, len(hooks) - len(set(hooks)))


@needs_nats
def test_two_collectors_round_robin_one_stream(tmp_path):
    """A gateway spreads its streams over two collectors and, as after a lost reply, sends some
    batches again (under a new batch id, so to the collectors they are new): JetStream keeps one."""
    broker = NatsServer(tmp_path / "nats").start()
    sink = {"type": "nats", "url": broker.url}
    nodes = [Collector(tmp_path / f"c{k}", sinks=[sink], metrics=True).start() for k in (1, 2)]
    target = "ipv4:" + ",".join(n.target for n in nodes)
    options = [("grpc.lb_policy_name", "round_robin")]
    batches = [batch(f"r{i}") for i in range(40)]
    again = batches[::4]
    try:
        async def main():
            sent, accepted = await send(target, batches, streams=4, options=options, tag="a")
            sent2, accepted2 = await send(target, again, streams=4, options=options, tag="b")
            return sent + sent2, accepted | accepted2, await nats_ids(broker.url, accepted | accepted2)

        sent, accepted, ids = asyncio.run(main())
        per_node = [n.metric("collector_events_total", outcome="accepted", reason="") for n in nodes]
        removed = sum(int(n.metric("collector_sink_events_total", sink="nats", outcome="duplicate"))
                      for n in nodes)
        assert all(count > 0 for count in per_node), per_node  # both took a share
        assert removed > 0  # some resends reached the other collector; JetStream dropped them
        assert len(ids) == len(set(ids)), "a consumer would see an event twice"
        row("2 collectors, round_robin", sent, accepted, ids, removed)
    finally:
        for n in nodes:
            n.stop()
        broker.stop()
