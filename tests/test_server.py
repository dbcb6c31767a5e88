"""The collector service, in process, on a free loopback port, with real gRPC clients."""

import asyncio
import glob
import json
import os
import time

import grpc
import msgspec
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import collector
from collector import config as configuration
from collector.client import Client
from collector.convert import protobuf_to_event
from collector.server import Service
from collector.v1 import collector_pb2 as pb
from collector.v1 import collector_pb2_grpc as pb_grpc

VECTORS = os.path.join(os.path.dirname(__file__), "vectors")


def vector(name):
    with open(os.path.join(VECTORS, name + ".json")) as f:
        return json.load(f)


def batch(project=8, n=3, prefix="e", user="u1", extra=()):
    events = [{"euid": f"{prefix}{i}", "ea": 4, "t": 1000 + i, "st": f"Screen {i}",
               "url": f"app://x?title=S{i}"} for i in range(n)]
    events += list(extra)
    return json.dumps({"pid": project, "uid": user, "now": 2000, "pl": events}).encode()


def output(data_dir, kind="events"):
    lines = []
    for path in sorted(glob.glob(os.path.join(data_dir, kind, "*.jsonl*"))):
        with open(path, "rb") as f:
            whole = f.read().rpartition(b"\n")[0]  # a line being written is not yet there
        lines += [json.loads(line) for line in whole.splitlines()]
    return lines


def without_clock(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if k not in ("time", "received_time")}


class Running:
    """A Service on a free loopback port for the duration of a test."""

    def __init__(self, tmp_path, **overrides):
        overrides.setdefault("listen", "127.0.0.1:0")
        overrides.setdefault("metrics_listen", "")
        overrides.setdefault("http_listen", "")
        overrides.setdefault("data_dir", str(tmp_path / "data"))
        overrides.setdefault("drain_seconds", 5.0)
        self.config = configuration.load(environ={}, **overrides)
        self.service = Service(self.config)

    async def __aenter__(self):
        await self.service.start()
        self.target = f"127.0.0.1:{self.service.port}"
        return self

    async def __aexit__(self, *exc):
        await self.service.stop()

    async def delivered(self, count: int, kind="events", timeout=10.0):
        for _ in range(int(timeout / 0.02)):
            found = output(self.config.data_dir, kind)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        return output(self.config.data_dir, kind)


def run(coro):
    return asyncio.run(coro)


def test_both_rpcs_end_to_end(tmp_path):
    seed = vector("seed_example_all_actions")["batch"].encode()
    errors = vector("event_errors")["batch"].encode()

    async def main():
        async with Running(tmp_path) as srv, Client(srv.target) as client:
            reply = await client.send(seed, batch_id="seed")
            assert (reply.accepted, reply.rejected, reply.durability) == (12, 0, pb.DURABILITY_LOGGED)
            pbatch = collector.json_to_protobuf(seed.replace(b'"euid-', b'"pb-'))
            replies = [r async for r in client.stream([
                Client.request(errors, batch_id="errors"),
                Client.request(pbatch, format="protobuf", batch_id="pb"),
            ])]
            by_id = {r.batch_id: r for r in replies}
            err = by_id["errors"]
            assert err.accepted == 1 and err.rejected == 27 and err.duplicate == 1
            expected = {(i["index"], i["reason"]) for i in vector("event_errors")["rejected"]}
            got = {(r.index, r.code) for r in err.results}
            assert expected <= got and (28, "duplicate") in got
            assert by_id["pb"].accepted == 12
            events = await srv.delivered(25)
            dead = await srv.delivered(27, "dead_letter")
        want = [without_clock(msgspec.to_builtins(e)) for e in collector.decode(seed).events]
        assert [without_clock(e) for e in events[:12]] == want
        assert [without_clock(e)["event_id"] for e in events[13:]] == [
            e["event_id"].replace("euid-", "pb-") for e in want]
        assert sorted((d["index"], d["reason"]) for d in dead) == sorted(expected)
        assert all(d["batch_id"] == "errors" and d["raw"] for d in dead)

    run(main())


def test_batch_errors_unary_and_stream(tmp_path):
    async def main():
        async with Running(tmp_path) as srv, Client(srv.target) as client:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await client.send(b'{"pid":1,"uid":"u","now":1,"pl":[', batch_id="m")
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed_json" in exc.value.details()
            replies = [r async for r in client.stream([
                Client.request(b"[]", batch_id="a"), Client.request(batch(), batch_id="b")])]
            by_id = {r.batch_id: r for r in replies}
            assert by_id["a"].batch_error == "batch_not_object"
            assert by_id["a"].status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert by_id["b"].accepted == 3  # the stream stayed open
            dead = await srv.delivered(2, "dead_letter")
        assert {d["reason"] for d in dead} == {"malformed_json", "batch_not_object"}
        assert all(d["index"] is None for d in dead)

    run(main())


def test_bytes_that_are_not_a_request_are_invalid_argument(tmp_path):
    """A request the server cannot read as an IngestRequest: INVALID_ARGUMENT saying why; on a
    stream, the batches before it are answered first."""
    bad = b"\x12\x50{}"  # the json field says 80 bytes, 2 follow

    async def main():
        async with Running(tmp_path) as srv:
            async with grpc.aio.insecure_channel(srv.target) as channel:
                unary = channel.unary_unary("/collector.v1.Collector/Ingest",
                                            response_deserializer=pb.IngestReply.FromString)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await unary(bad)
                assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "not an IngestRequest" in exc.value.details()

                stream = channel.stream_stream("/collector.v1.Collector/IngestStream",
                                               response_deserializer=pb.IngestReply.FromString)
                good = Client.request(batch(), batch_id="good").SerializeToString()
                call = stream(iter([good, bad]))
                replies = [r async for r in _until_status(call)]
                assert [(r.batch_id, r.accepted) for r in replies] == [("good", 3)]
                assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "length past the end" in await call.details()
            assert len(await srv.delivered(3)) == 3

    run(main())


def test_a_failure_while_reading_a_stream_is_internal_not_ok(tmp_path, monkeypatch):
    """Should reading a stream fail (a bug), the batches before answer as usual and the call
    ends INTERNAL, not OK as if every request had been read."""
    import collector.server as server
    from collector.decode import read_request as real

    def read_request(raw):
        if b"boom" in raw:
            raise RuntimeError("boom")
        return real(raw)

    monkeypatch.setattr(server, "read_request", read_request)

    async def main():
        async with Running(tmp_path) as srv:
            async with grpc.aio.insecure_channel(srv.target) as channel:
                stream = channel.stream_stream("/collector.v1.Collector/IngestStream",
                                               response_deserializer=pb.IngestReply.FromString)
                call = stream(iter([Client.request(batch(), batch_id="good").SerializeToString(),
                                    Client.request(batch(), batch_id="boom").SerializeToString()]))
                replies = [r async for r in _until_status(call)]
                assert [(r.batch_id, r.accepted) for r in replies] == [("good", 3)]
                assert await call.code() == grpc.StatusCode.INTERNAL
                assert "boom" in await call.details()

    run(main())


async def _until_status(call):
    try:
        async for reply in call:
            yield reply
    except grpc.aio.AioRpcError:
        return


def test_auth(tmp_path):
    async def main():
        async with Running(tmp_path, api_keys={"k8": [8], "k9": [9]}) as srv:
            for key, code in [(None, grpc.StatusCode.UNAUTHENTICATED),
                              ("nope", grpc.StatusCode.UNAUTHENTICATED),
                              ("k9", grpc.StatusCode.PERMISSION_DENIED)]:
                async with Client(srv.target, api_key=key, max_attempts=1) as client:
                    with pytest.raises(grpc.aio.AioRpcError) as exc:
                        await client.send(batch(project=8))
                    assert exc.value.code() == code
            async with Client(srv.target, api_key="k8") as client:
                assert (await client.send(batch(project=8))).accepted == 3
                with pytest.raises(grpc.aio.AioRpcError) as exc:  # hint names another project
                    await client.send(batch(project=8), project_id=9)
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED

    run(main())


def test_tls(tmp_path):
    cert, key = self_signed(tmp_path)

    async def main():
        async with Running(tmp_path, tls={"cert": cert, "key": key}) as srv:
            with open(cert, "rb") as f:
                root = f.read()
            target = f"localhost:{srv.service.port}"
            async with Client(target, tls_root=root) as client:
                assert (await client.send(batch())).accepted == 3
            async with Client(target, max_attempts=1) as plain:  # no TLS: no answer
                with pytest.raises(grpc.aio.AioRpcError):
                    await asyncio.wait_for(plain.send(batch()), 5)

    run(main())


def self_signed(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_filters_and_dedup_window(tmp_path):
    rules = {"8": {"deny": ["touch.*"]}, "9": {"allow": ["poll.*"]}}
    tap = {"euid": "tap", "ea": 6, "t": 1, "tvid": "b"}
    vote = {"euid": "vote", "ea": 20, "t": 1, "ac": "poll.voted"}
    other = {"euid": "other", "ea": 20, "t": 1, "ac": "cart.item_added"}

    async def main():
        async with Running(tmp_path, rules=rules, dedup={"window_events": 5, "window_seconds": 60}) as srv, \
                Client(srv.target) as client:
            r = await client.send(batch(project=8, n=2, extra=[tap, vote]))
            assert (r.accepted, r.filtered) == (3, 1)
            assert [(x.index, x.code) for x in r.results] == [(2, "filtered")]
            r = await client.send(batch(project=9, n=1, extra=[vote, other]))
            assert (r.accepted, r.filtered) == (1, 2)
            # the same ids again: duplicates (another batch id, so not a resend)
            r = await client.send(batch(project=8, n=2, extra=[vote]))
            assert (r.accepted, r.duplicate) == (0, 3)
            # the same ids in another project are not duplicates
            r = await client.send(batch(project=7, n=2))
            assert r.accepted == 2
            # push e0 out of the 5-event window: it is accepted again
            await client.send(batch(project=8, n=6, prefix="f"))
            r = await client.send(batch(project=8, n=1))
            assert (r.accepted, r.duplicate) == (1, 0)

    run(main())


def test_resend_by_batch_id_is_idempotent(tmp_path):
    async def main():
        async with Running(tmp_path) as srv, Client(srv.target) as client:
            first = await client.send(batch(), batch_id="same")
            again = await client.send(batch(), batch_id="same")
            assert first == again and first.accepted == 3
            assert len(await srv.delivered(3)) == 3
            await asyncio.sleep(0.2)
            assert len(output(srv.config.data_dir)) == 3

    run(main())


def test_subscribe_filters_and_replay(tmp_path):
    taps = [{"euid": f"t{i}", "ea": 6, "t": 1, "tvid": "b"} for i in range(2)]
    votes = [{"euid": f"v{i}", "ea": 20, "t": 1, "ac": "poll.voted"} for i in range(2)]

    async def main():
        async with Running(tmp_path) as srv, Client(srv.target) as client:
            await client.send(batch(project=8, n=1, extra=taps))
            events = pb_grpc.EventsStub(client.channel)
            # replay from the start of the log, polls and taps only
            call = events.Subscribe(pb.SubscribeRequest(actions=["poll.*", "touch.tap"], from_position=0))
            live = events.Subscribe(pb.SubscribeRequest(project_ids=[9], user_id="u2"))
            await asyncio.sleep(0.2)
            await client.send(batch(project=9, n=1, user="u1", extra=votes))
            await client.send(batch(project=9, n=1, user="u2", prefix="w", extra=[{**votes[0], "euid": "v9"}]))
            got = []
            async for msg in call:
                got.append((msg.event_id, msg.action, msg.position))
                if len(got) == 5:
                    break
            call.cancel()
            assert [g[:2] for g in got] == [("t0", "touch.tap"), ("t1", "touch.tap"),
                                            ("v0", "poll.voted"), ("v1", "poll.voted"), ("v9", "poll.voted")]
            assert got[0][2] == 0 and got[2][2] > 0
            seen = []
            async for msg in live:
                seen.append(protobuf_to_event(msg))
                if len(seen) == 2:
                    break
            live.cancel()
            assert [(e["event_id"], e["user_id"], e["project_id"]) for e in seen] == [
                ("w0", "u2", 9), ("v9", "u2", 9)]
            assert seen[0]["screen_name"] == "S0"
            # from a position: exactly what was logged from there on
            again = events.Subscribe(pb.SubscribeRequest(from_position=got[2][2], actions=["poll.voted"]))
            first = await again.read()
            again.cancel()
            assert first.event_id == "v0"

    run(main())


def test_slow_subscriber_is_dropped_and_ingest_goes_on(tmp_path):
    async def main():
        async with Running(tmp_path) as srv, Client(srv.target) as client:
            srv.service.subscriber_lag_bytes = 20_000
            srv.service.subscriber_write_seconds = 0.5
            events = pb_grpc.EventsStub(client.channel)
            call = events.Subscribe(pb.SubscribeRequest())  # and never reads
            await asyncio.sleep(0.2)
            for i in range(40):
                r = await client.send(batch(n=50, prefix=f"s{i}-"))
                assert r.accepted == 50
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                async for _ in call:
                    await asyncio.sleep(0.05)
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too slow" in exc.value.details()
            dropped = srv.service.metrics.registry.get_sample_value("collector_subscribers_dropped_total")
            assert dropped == 1

    run(main())


def test_overload_is_refused_with_retry_after(tmp_path):
    async def main():
        # a batch takes about 9 kB, then its events about 64 kB more: two or three fit at once
        limits = {"inflight_bytes": 200_000, "inflight_bytes_per_project": 200_000, "retry_after_ms": 50}
        async with Running(tmp_path, limits=limits) as srv:
            log = srv.service.log
            write = log._write_and_sync
            log._write_and_sync = lambda blob: (time.sleep(0.05), write(blob))  # a slow disk
            async with Client(srv.target, max_attempts=1) as client:
                calls = [client.stub.Ingest(Client.request(batch(n=100, prefix=f"o{i}-"))) for i in range(30)]
                results = await asyncio.gather(*calls, return_exceptions=True)
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            ok = [r for r in results if isinstance(r, pb.IngestReply)]
            assert refused and ok
            assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
            reply = pb.IngestReply.FromString(dict(refused[0].trailing_metadata())["collector-reply-bin"])
            assert reply.retry_after_ms == 50
            # the client that honours retry_after_ms gets every batch in
            async with Client(srv.target) as client:
                replies = [r async for r in client.stream(
                    Client.request(batch(n=100, prefix=f"r{i}-")) for i in range(30))]
            assert len(replies) == 30 and all(r.accepted == 100 for r in replies)

    run(main())


def test_a_refused_call_leaves_no_cycle_holding_its_request(tmp_path):
    """Refusals (load, a batch error, a bad key, bytes that are not a request) drop the request
    at once: nothing of it waits in a reference cycle for the garbage collector, which a flood
    of refused calls would otherwise fill memory with."""
    import gc
    import types

    big = batch(n=600, prefix="big-")
    assert len(big) > 50_000

    def big_buffer(v):
        try:
            return isinstance(v, (bytes, memoryview)) and len(v) >= len(big) // 2
        except ValueError:  # a released view
            return False

    def held(objects):  # views of a request, and frames holding its bytes
        return [o for o in objects if big_buffer(o) or isinstance(o, types.FrameType) and any(
            big_buffer(v) for v in o.f_locals.values())]

    async def main():
        limits = {"inflight_bytes_per_project": 40_000}  # a request naming project 8: over it
        async with Running(tmp_path, limits=limits, api_keys={"k": [8]}) as srv:
            async with grpc.aio.insecure_channel(srv.target) as channel:
                unary = channel.unary_unary("/collector.v1.Collector/Ingest",
                                            response_deserializer=pb.IngestReply.FromString)
                auth = (("authorization", "Bearer k"),)
                calls = [(Client.request(big, project_id=8).SerializeToString(), auth),  # for load
                         (Client.request(big[:-5]).SerializeToString(), auth),  # malformed_json
                         (Client.request(big).SerializeToString(), (("authorization", "Bearer x"),)),
                         (b"\x12\xff\xff\x07" + big, auth)]  # not a request
                gc.collect()
                gc.disable()
                gc.set_debug(gc.DEBUG_SAVEALL)
                try:
                    for raw, metadata in calls:
                        with pytest.raises(grpc.aio.AioRpcError):
                            await unary(raw, metadata=metadata)
                    for i in range(10):  # gRPC keeps the state of its last few calls
                        await unary(Client.request(batch(n=1, prefix=f"ok{i}-")).SerializeToString(),
                                    metadata=auth)
                    gc.collect()
                    leftovers = held(gc.garbage)
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
                    gc.enable()
                assert leftovers == []

    run(main())


def test_the_output_limit_refuses_a_batch_and_the_stream_goes_on(tmp_path):
    """A batch whose normalised events pass limits.max_batch_output_bytes: INVALID_ARGUMENT
    saying so (not a SPEC batch error, so not dead-lettered); the stream goes on, and the bytes
    in flight (the batch's, then its events') are all given back."""
    wide = batch(n=100, extra=(), user="u" * 30)
    small = batch(n=3, prefix="s")

    async def main():
        async with Running(tmp_path, limits={"max_batch_output_bytes": 20_000}) as srv, \
                Client(srv.target, max_attempts=1) as client:
            replies = [r async for r in client.stream([Client.request(wide, batch_id="wide"),
                                                        Client.request(small, batch_id="small")])]
            by_id = {r.batch_id: r for r in replies}
            assert by_id["wide"].status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "max_batch_output_bytes" in by_id["wide"].detail and not by_id["wide"].batch_error
            assert by_id["small"].accepted == 3
            assert srv.service.pipeline.budget.used == 0
            await srv.delivered(3)
            assert output(srv.config.data_dir, "dead_letter") == []

    run(main())


def test_health_and_reflection(tmp_path):
    async def main():
        srv = Running(tmp_path)
        async with srv:
            async with grpc.aio.insecure_channel(srv.target) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                resp = await health.Check(health_pb2.HealthCheckRequest(service="collector.v1.Collector"))
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
                refl = reflection_pb2_grpc.ServerReflectionStub(channel)
                call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
                names = {s.name async for r in call for s in r.list_services_response.service}
                assert {"collector.v1.Collector", "collector.v1.Events", "grpc.health.v1.Health"} <= names
                watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
                stopping = asyncio.ensure_future(srv.service.stop())
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
                await stopping

    run(main())


def test_metrics_endpoint(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        async with Running(tmp_path, metrics_listen=f"127.0.0.1:{port}") as srv, Client(srv.target) as client:
            await client.send(batch(extra=[{"euid": "x", "ea": 3, "t": 1}]))
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        assert 'collector_events_total{outcome="accepted",reason=""} 3.0' in text
        assert 'collector_events_total{outcome="rejected",reason="unknown_action"} 1.0' in text
        assert "collector_log_fsync_seconds_count" in text and "collector_batch_decode_seconds" in text

    run(main())


def test_configuration_file_environment_and_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('listen = "127.0.0.1:7000"\n[limits]\nmax_streams = 3\n[rules.8]\ndeny = ["touch.*"]\n')
    cfg = configuration.load(str(path), environ={"COLLECTOR_LIMITS_MAX_STREAMS": "5",
                                                 "COLLECTOR_DATA_DIR": "/srv/d"}, listen="127.0.0.1:7001")
    assert (cfg.listen, cfg.limits.max_streams, cfg.data_dir) == ("127.0.0.1:7001", 5, "/srv/d")
    assert cfg.rules["8"].deny == ["touch.*"] and cfg.log.fsync is True
    (tmp_path / "bad.toml").write_text("[limits]\nmax_streams = 'many'\n")
    with pytest.raises(ValueError):
        configuration.load(str(tmp_path / "bad.toml"), environ={})


@pytest.mark.parametrize("impl", ["native", "pure"])
def test_dedup_window_by_count_and_age(impl, monkeypatch):
    from collector import _idset_pure, pipeline

    if impl == "native":
        _idset_native = pytest.importorskip("collector._idset_native")
        monkeypatch.setattr(pipeline, "IdSet", _idset_native.IdSet)
    else:
        monkeypatch.setattr(pipeline, "IdSet", _idset_pure.IdSet)
    d = pipeline.Dedup(max_events=5, max_seconds=10)
    abc = d.hold_if_new(8, ["a", "b", "c"])
    assert len(abc) == 3 and d.held == 3 and len(d) == 0
    assert d.seen(8, "a") and d.hold_if_new(8, ["x", "a"]) is None  # held counts as seen
    assert not d.seen(8, "x")  # a batch that is not new holds none of its ids
    assert d.hold_if_new(8, ["y", "z", "y"]) is None and not d.seen(8, "y")  # twice in one batch
    d.commit(8, abc, now=0.0)
    d.commit(9, d.hold(9, ["a", "e", "f"]), now=1.0)
    assert len(d) == 5 and not d.seen(8, "a") and d.seen(8, "b") and d.seen(9, "a")  # the oldest one out
    x = d.hold(8, ["x"])
    assert d.seen(8, "x") and d.held == 1
    d.release(8, x)
    assert not d.seen(8, "x") and d.held == 0
    d.commit(8, d.hold_if_new(8, ["y"]), now=11.5)  # everything from before t=1.5 has aged out
    assert len(d) == 1 and not d.seen(8, "b") and not d.seen(9, "f") and d.seen(8, "y")
    d.commit(10, d.hold(10, []), now=12.0)  # every event of the batch filtered: nothing to hold
    d.release(10, d.hold(10, []))
    assert len(d) == 1 and d.held == 0
    if impl == "pure":
        assert set(d._ids._seen) == {8}  # no empty set stays behind for a project


def test_stream_replies_logged_only_after_the_fsync_and_shares_group_commits(tmp_path):
    async def main():
        async with Running(tmp_path) as srv:
            the_log = srv.service.log
            synced = {"records": 0, "commits": 0}
            write = the_log._write_and_sync

            def slow_write(buffers):  # a slow disk, so that batches queue up behind a commit
                time.sleep(0.01)
                write(buffers)
                synced["records"] += len(buffers) // 2
                synced["commits"] += 1

            the_log._write_and_sync = slow_write
            logged = 0
            async with Client(srv.target) as client:
                requests = (Client.request(batch(n=5, prefix=f"g{i}-"), batch_id=f"g{i}") for i in range(200))
                async for reply in client.stream(requests):
                    assert reply.durability == pb.DURABILITY_LOGGED and reply.accepted == 5
                    logged += 1
                    assert synced["records"] >= logged  # nothing said logged before its fsync
            assert logged == 200
            assert synced["commits"] < 100  # batches of the stream shared group commits
            assert srv.service.pipeline.budget.used == 0
            assert len(await srv.delivered(1000)) == 1000

    run(main())


def test_a_failing_disk_is_answered_unavailable_and_the_client_resends(tmp_path):
    async def main():
        async with Running(tmp_path, limits={"retry_after_ms": 20}) as srv:
            the_log = srv.service.log
            write = the_log._write_and_sync
            failures = {"left": 3}

            def flaky_write(buffers):
                if failures["left"]:
                    failures["left"] -= 1
                    raise OSError(5, "Input/output error")
                write(buffers)

            the_log._write_and_sync = flaky_write
            async with Client(srv.target) as client:
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await client.stub.Ingest(Client.request(batch(prefix="u")))
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                replies = [r async for r in client.stream(
                    Client.request(batch(n=4, prefix=f"h{i}-"), batch_id=f"h{i}") for i in range(20))]
            assert len(replies) == 20 and all(r.accepted == 4 and r.status == 0 for r in replies)
            dedup = srv.service.pipeline.dedup  # nothing is left held: every id seen is in the window
            assert srv.service.pipeline.budget.used == 0 and dedup.held == 0
            assert len(await srv.delivered(80)) == 80

    run(main())


def test_jsonl_sink_cuts_a_line_a_crash_tore(tmp_path):
    """A crash mid-write leaves half a line in the open `.part` file: it is cut on the next
    start (its events come again from the cursor), so every finished file is whole JSON Lines."""
    from collector.sinks.jsonl import JsonlSink

    events = tmp_path / "events"
    events.mkdir()
    (events / "events-1.jsonl.part").write_bytes(b'{"event_id":"a"}\n{"event_id":"b"}\n{"event_')
    (events / "events-2.jsonl.part").write_bytes(b'{"event_id":"c"')
    run(JsonlSink("jsonl", str(tmp_path)).start())
    assert sorted(p.name for p in events.iterdir()) == ["events-1.jsonl"]  # 2 had nothing whole
    assert (events / "events-1.jsonl").read_bytes() == b'{"event_id":"a"}\n{"event_id":"b"}\n'


def test_a_broken_stream_does_not_end_a_paced_source():
    """The stream breaks (a collector killed and restarted) while the gateway's generator is
    waiting between batches: the client resends what is unanswered and goes on with the rest of
    the generator, instead of taking the cancelled wait for its end."""

    class Breaks(pb_grpc.CollectorServicer):
        calls = 0

        async def IngestStream(self, request_iterator, context):
            Breaks.calls += 1
            async for request in request_iterator:
                if Breaks.calls == 1 and request.batch_id == "b2":  # the source is sleeping now
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
                yield pb.IngestReply(batch_id=request.batch_id, accepted=3)

    async def main():
        server = grpc.aio.server()
        pb_grpc.add_CollectorServicer_to_server(Breaks(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async def paced():
                for i in range(6):
                    yield Client.request(batch(prefix=f"p{i}-"), batch_id=f"b{i}")
                    await asyncio.sleep(0.2)

            async with Client(f"127.0.0.1:{port}") as client:
                return [r.batch_id async for r in client.stream(paced())], Breaks.calls
        finally:
            await server.stop(None)

    replies, calls = run(main())
    assert calls == 2 and sorted(replies) == [f"b{i}" for i in range(6)]
