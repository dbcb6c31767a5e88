"""Users' deletions and retention (ANALYTICS.md sections 5 and 6) over real files: a real log,
a real DuckDB store, the real jsonl and dead-letter sinks run by their deliveries; then a real
`collector serve` killed between a deletion's 202 and its `done`.

Every check of "gone" reads every file under the data directory byte by byte (and the DuckDB
file through DuckDB, since compression can hide plain bytes)."""

import asyncio
import json
import os
import signal
import stat
import time

import pytest

import collector
from collector.analytics.deletions import Deletions, dead_owner
from collector.analytics.duck import DuckStore
from collector.analytics.sink import StoreSink
from collector.delivery import Delivery
from collector.log import DEAD, EVENTS, HEADER_SIZE, Log
from collector.metrics import Metrics
from collector.sinks.jetstream import JetStreamSink
from collector.sinks.jsonl import DeadLetterSink, JsonlSink
from collector.sinks.webhook import WebhookSink
from procs import NatsServer, Receiver, needs_nats, stream_messages

DAY = 86_400_000
P = 8


def run(coro):
    return asyncio.run(coro)


def batch(user: str, ids: list[str], *, project: int = P, age_ms: int = 0, bad: str = "") -> bytes:
    """A compact JSON batch of `poll.voted` events; `age_ms` makes their true time that old;
    `bad` adds an event that is rejected (it reaches the dead-letter output)."""
    now = int(time.time() * 1000)
    pl = [{"euid": i, "ea": 20, "t": now - age_ms, "ac": "poll.voted",
           "pr": {"broadcastId": "b1", "pollId": "p1", "optionIndex": 1}} for i in ids]
    if bad:
        pl.append({"euid": bad, "ea": 20, "t": now, "ac": "no_dot"})
    return json.dumps({"pid": project, "uid": user, "now": now, "pl": pl}).encode()


class Rig:
    """A collector's files without its servers: log, store, sinks and deletions, in `data`."""

    def __init__(self, data, *, retention_days=365, extra_sinks=()):
        self.data = str(data)
        self.retention_days = retention_days
        self.extra_sinks = list(extra_sinks)

    async def __aenter__(self):
        self.log = Log(os.path.join(self.data, "log"))
        self.store = DuckStore(os.path.join(self.data, "analytics.duckdb"), self.retention_days)
        self.metrics = Metrics()
        sinks = [JsonlSink("jsonl", self.data, max_bytes=4096), DeadLetterSink("dead_letter", self.data),
                 StoreSink("store", self.data, store=self.store), *self.extra_sinks]
        self.deliveries = [Delivery(self.log, s, os.path.join(self.data, "cursors"), self.metrics)
                           for s in sinks]
        for d in self.deliveries:
            d.start()
        self.deletions = Deletions(self.data, self.store, self.log, self.deliveries, self.metrics)
        return self

    async def __aexit__(self, *exc):
        await self.deletions.stop()
        for d in self.deliveries:
            await d.drain(5)
            await d.stop()
        await self.log.close()
        self.store.close()

    async def send(self, data: bytes) -> None:
        """What the pipeline logs of a batch: its events, and a dead letter per rejected one."""
        received = int(time.time() * 1000)
        d = collector.decode(data, format="json", received_time=received)
        if d.events:
            await self.log.append(EVENTS, received, d.to_jsonl())
        if d.rejected:
            from collector.pipeline import _dead_record, _raw_events

            raws, user = _raw_events(data, "json", [i for i, _ in d.rejected])
            await self.log.append(DEAD, received, b"".join(
                _dead_record("b", i, code, data, "json", "", raw, (P, user))
                for (i, code), raw in zip(d.rejected, raws)))
        await self.settle()

    async def settle(self):
        for d in self.deliveries:
            assert await d.drain(10)

    async def wait(self, deletion_id: str, status: str) -> dict:
        for _ in range(500):
            rec = self.deletions.get(deletion_id)
            if rec["status"] == status:
                return rec
            await asyncio.sleep(0.02)
        raise AssertionError(f"deletion {deletion_id} never {status}: {rec}")

    def ids(self, sql_where: str) -> set:
        return {r[0] for r in self.store.query(f"SELECT event_id FROM events WHERE {sql_where}")}


def files_holding(data, needles: list[str]) -> dict:
    """{path: [needles]} of every file under `data` whose bytes hold one of them."""
    found = {}
    for root, _, names in os.walk(data):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                blob = f.read()
            hits = [n for n in needles if n.encode() in blob]
            if hits:
                found[path] = hits
    return found


def output_lines(data, directory="events") -> list[dict]:
    out = []
    d = os.path.join(data, directory)
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            for line in f:
                assert line.strip(), f"a blank line in {name}"
                out.append(json.loads(line))
    return out


def test_deletion_done_then_purged_from_every_file(tmp_path):
    async def main():
        async with Rig(tmp_path) as rig:
            gone = [f"gone-{i:04d}-{'x' * 20}" for i in range(40)]
            await rig.send(batch("user-a", gone[:20]))
            await rig.send(batch("user-b", [f"kept-b-{i}" for i in range(20)]))
            await rig.send(batch("user-a", gone[20:], bad="gone-dead-letter-xyz"))
            await rig.send(batch("user-a", [f"other-project-{i}" for i in range(5)], project=9))
            before = rig.ids("TRUE")
            assert set(gone) <= before

            rec = await rig.deletions.request(P, "user-a")
            assert rec["status"] == "pending" and rec["deleted"] == {}
            journal = tmp_path / "deletions.jsonl"
            assert stat.S_IMODE(journal.stat().st_mode) == 0o600
            assert rec["deletion_id"] in journal.read_text()  # durable before the answer
            await asyncio.sleep(0.01)
            await rig.send(batch("user-a", [f"after-{i}" for i in range(5)]))  # sent after it

            rig.deletions.start()
            done = await rig.wait(rec["deletion_id"], "done")
            assert done["deleted"] == {"duckdb": 40} and done["done_at"] >= done["requested_at"]
            assert not rig.ids("user_id = 'user-a' AND project_id = 8") - {f"after-{i}" for i in range(5)}
            assert rig.ids("project_id = 9") == {f"other-project-{i}" for i in range(5)}
            assert rig.deletions.hidden == {(P, "user-a"): rec["requested_at"]}

            result = await rig.deletions.purge_now()
            assert result == {"purged": [rec["deletion_id"]], "failed": []}
            purged = rig.deletions.get(rec["deletion_id"])
            assert purged["status"] == "purged" and purged["purged_at"] >= done["done_at"]
            assert purged["deleted"] == {"duckdb": 40, "log": 41, "jsonl_files": 40, "dead_letter": 1}
            assert rig.metrics.analytics_removed.labels("deletion", "log")._value.get() == 41

            # every reader of the log skips the blanked lines; the sinks' files hold none
            await rig.send(batch("user-b", ["late-b"]))
            kept = {e["event_id"] for e in output_lines(rig.data)}
            assert kept == before - set(gone) | {f"after-{i}" for i in range(5)} | {"late-b"}
            assert rig.ids("TRUE") == kept
            assert not rig.ids(f"event_id IN ({','.join(repr(g) for g in gone)})")
        assert files_holding(tmp_path, gone + ["gone-dead-letter-xyz"]) == {}
        assert stat.S_IMODE(os.stat(tmp_path / "deletions.jsonl").st_mode) == 0o600
        # the log still reads whole, positions unchanged, after a restart
        again = Log(str(tmp_path / "log"))
        records = again.read(0, 1 << 30)
        assert sum(len(r.payload) for r in records) + HEADER_SIZE * len(records) == again.end
        await again.close()

    run(main())


def test_a_deletion_survives_a_restart_before_done(tmp_path):
    async def main():
        async with Rig(tmp_path) as rig:
            await rig.send(batch("user-a", ["a-1", "a-2"]))
            rec = await rig.deletions.request(P, "user-a")
        # stopped before its background task ever ran: pending on disk
        async with Rig(tmp_path) as rig:
            assert rig.deletions.get(rec["deletion_id"])["status"] == "pending"
            assert rig.deletions.hidden == {(P, "user-a"): rec["requested_at"]}
            rig.deletions.start()
            done = await rig.wait(rec["deletion_id"], "done")
            assert done["deleted"] == {"duckdb": 2}
            assert not rig.ids("TRUE")

    run(main())


def test_a_torn_journal_line_is_cut(tmp_path):
    async def main():
        async with Rig(tmp_path) as rig:
            rec = await rig.deletions.request(P, "user-a")
        with open(tmp_path / "deletions.jsonl", "ab") as f:
            f.write(b'{"deletion_id": "half')
        async with Rig(tmp_path) as rig:
            assert rig.deletions.get(rec["deletion_id"])["status"] == "pending"
            second = await rig.deletions.request(P, "user-b")
        async with Rig(tmp_path) as rig:
            assert rig.deletions.get(second["deletion_id"])["user_id"] == "user-b"

    run(main())


def test_dead_letters_name_their_owner():
    import base64

    from collector.pipeline import _dead_record

    data = batch("user-z", ["e1"], bad="e2")
    whole = _dead_record("b", None, "malformed_json", data, "json")
    assert dead_owner(whole)[:2] == (P, "user-z")
    pb = collector.json_to_protobuf(data)
    assert dead_owner(_dead_record("b", None, "x", pb, "protobuf"))[:2] == (P, "user-z")
    assert base64.b64decode(json.loads(_dead_record("b", None, "x", pb, "protobuf"))["raw"]) == pb
    torn = _dead_record("b", None, "malformed_json", data[:-9], "json")
    assert dead_owner(torn)[:2] == (None, None) and b'"user-z"' in dead_owner(torn)[2]


def test_retention_removes_old_events_from_every_store(tmp_path):
    async def main():
        async with Rig(tmp_path, retention_days=30) as rig:
            await rig.send(batch("user-a", [f"old-{i}" for i in range(10)], age_ms=40 * DAY))
            await rig.send(batch("user-a", [f"new-{i}" for i in range(10)], age_ms=20 * DAY))
            # between passes, reads never see them: the store's shared WHERE clause
            from collector.analytics.query import Query

            q = Query(P, None, int(time.time() * 1000) + 1, {}, {})
            seen = {r[0] for r in rig.store.query(f"SELECT event_id FROM events WHERE {rig.store.where(q)}")}
            assert seen == {f"new-{i}" for i in range(10)}
            assert len(rig.ids("TRUE")) == 20  # still held

            removed = await rig.deletions.retain()
            assert removed == {"duckdb": 10, "jsonl_files": 10, "dead_letter": 0}
            assert rig.ids("TRUE") == {f"new-{i}" for i in range(10)}
            assert {e["event_id"] for e in output_lines(rig.data)} == {f"new-{i}" for i in range(10)}
            assert rig.metrics.analytics_removed.labels("retention", "duckdb")._value.get() == 10
        # the log keeps its own retention (by size and sinks); every other file is clean
        found = files_holding(tmp_path, [f"old-{i}" for i in range(10)])
        assert set(found) <= {str(p) for p in (tmp_path / "log").iterdir()}

    run(main())


def test_a_webhook_is_told_after_the_events_it_covers(tmp_path):
    async def main():
        async with Receiver("s3cret") as receiver:
            hook = WebhookSink("hook", str(tmp_path), url=receiver.url, secret="s3cret", linger_seconds=0)
            async with Rig(tmp_path, extra_sinks=[hook]) as rig:
                await rig.send(batch("user-a", ["a-1", "a-2"]))
                rec = await rig.deletions.request(P, "user-a")
                rig.deletions.start()
                await rig.wait(rec["deletion_id"], "done")
                for _ in range(500):
                    if "hook" in rig.deletions.journal.records[rec["deletion_id"]]["notified"]:
                        break
                    await asyncio.sleep(0.02)
        assert receiver.bad_signatures == 0
        assert [(d["event"], d["eventId"]) for d in receiver.deliveries] == [
            ("poll.voted", "a-1"), ("poll.voted", "a-2"), ("user.deleted", rec["deletion_id"])]
        notice = receiver.deliveries[-1]
        assert (notice["userId"], notice["projectId"]) == ("user-a", P)
        assert notice["data"] == {"deletion_id": rec["deletion_id"], "received_up_to": rec["requested_at"]}

    run(main())


def http(port: int, method: str, path: str):
    """(status, body) of a request to the collector's HTTP API with the admin token."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": "Bearer tok"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_deletion_killed_before_done_completes_after_a_restart(tmp_path):
    pytest.importorskip("collector.analytics.api")
    from collector.client import Client
    from collector.v1 import collector_pb2 as pb
    from collector.v1 import collector_pb2_grpc as pb_grpc
    from procs import Collector, free_port

    port = free_port()
    srv = Collector(tmp_path / "c", analytics={"store": "duckdb"},
                    top={"http_listen": f"127.0.0.1:{port}", "admin_tokens": {"tok": [P]}}).start()
    gone = [f"gone-{i:03d}-{'q' * 16}" for i in range(40)]

    async def send(batches):
        async with Client(srv.target) as client:
            for b in batches:
                assert (await client.send(b)).accepted > 0

    # the user's events, then many others' that keep the store busy loading while the request comes
    asyncio.run(send([batch("user-a", gone[:20]), batch("user-a", gone[20:], bad="gone-dead-xyz")]
                     + [batch(f"other-{n}", [f"o{n}-{i}" for i in range(500)]) for n in range(40)]))
    status, body = http(port, "DELETE", f"/v1/users/user-a/events?projectId={P}")
    assert status == 202, body
    deletion = json.loads(body)
    assert deletion["status"] == "pending"
    srv.stop(signal.SIGKILL)

    srv.start()
    for _ in range(1000):
        status, body = http(port, "GET", f"/v1/deletions/{deletion['deletion_id']}")
        if json.loads(body)["status"] == "done":
            break
        time.sleep(0.02)
    rec = json.loads(body)
    assert rec["status"] == "done" and rec["deleted"]["duckdb"] == 40, rec
    asyncio.run(send([batch("user-a", ["after-1", "after-2"])]))  # sent after the request: kept

    def exported():
        _, text = http(port, "GET", f"/v1/analytics/events?projectId={P}&userId=user-a")
        return {json.loads(line)["event_id"] for line in text.splitlines() if line.strip()}

    for _ in range(500):
        if exported() == {"after-1", "after-2"}:
            break
        time.sleep(0.02)
    assert exported() == {"after-1", "after-2"}

    async def replay():
        async with Client(srv.target) as client:
            stub = pb_grpc.EventsStub(client.channel)
            call = stub.Subscribe(pb.SubscribeRequest(project_ids=[P], user_id="user-a", from_position=0))
            got = []
            async for ev in call:
                got.append(ev.event_id)
                if ev.event_id == "after-2":
                    call.cancel()
                    break
            return got

    assert asyncio.run(replay()) == ["after-1", "after-2"]  # done: replays hide the rest

    status, body = http(port, "POST", "/v1/deletions/purge")
    assert status == 200, body
    rec = json.loads(http(port, "GET", f"/v1/deletions/{deletion['deletion_id']}")[1])
    assert rec["status"] == "purged" and rec["deleted"]["log"] == 41 and rec["deleted"]["dead_letter"] == 1, rec
    assert asyncio.run(replay()) == ["after-1", "after-2"]
    assert srv.stop() == 0
    assert files_holding(srv.data, gone + ["gone-dead-xyz"]) == {}
    store = DuckStore(str(srv.data / "analytics.duckdb"))
    try:
        assert {r[0] for r in store.query("SELECT event_id FROM events WHERE user_id = 'user-a'")} \
            == {"after-1", "after-2"}
    finally:
        store.close()


@needs_nats
def test_nats_is_told_on_the_deleted_subject(tmp_path):
    async def main():
        nats = NatsServer(tmp_path / "nats").start()
        try:
            js = JetStreamSink("nats", str(tmp_path), url=nats.url)
            async with Rig(tmp_path / "data", extra_sinks=[js]) as rig:
                await rig.send(batch("user-a", ["a-1"]))
                rec = await rig.deletions.request(P, "user-a")
                rig.deletions.start()
                await rig.wait(rec["deletion_id"], "done")
                for _ in range(500):
                    if "nats" in rig.deletions.journal.records[rec["deletion_id"]]["notified"]:
                        break
                    await asyncio.sleep(0.02)
            got = await stream_messages(nats.url)
        finally:
            nats.stop()
        assert [(m[0], m[1]) for m in got] == [("a-1", f"events.{P}.poll.voted"),
                                               ("deletion-" + rec["deletion_id"], f"events.deleted.{P}")]
        assert json.loads(got[1][2]) == {k: rec[k] for k in ("deletion_id", "project_id", "user_id",
                                                             "requested_at")}

    run(main())
