"""The public API: what other code and users rely on."""

import json
import os
import subprocess
import sys
import time

import msgspec
import pytest

import collector
from collector.convert import Unrepresentable
from conftest import _native

BATCH = (b'{"pid":3,"uid":"u1","now":2000,"pl":[{"euid":"a","ea":4,"t":1000,"st":"Home"},7,'
         b'{"euid":"b","ea":6,"t":1500,"tvid":"ok"}]}')


def test_decode_events_and_rejections(impl):
    d = impl.decode(BATCH, "json", 5000)
    assert [e.event_id for e in d.events] == ["a", "b"]
    assert d.events[0].action == "screen.view" and d.events[0].label == "Home"
    assert d.events[1].device.type is None and d.events[1].app.name is None
    assert d.events[0].time == 5000 - 1000
    assert d.rejected == [(1, "event_not_object")]
    lines = d.to_jsonl().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert [json.loads(line)["event_id"] for line in lines[:-1]] == ["a", "b"]
    assert list(json.loads(lines[0])) == list(collector.NormalizedEvent.__struct_fields__)


def test_public_decode_defaults_received_time_to_now():
    before = time.time_ns() // 1_000_000
    d = collector.decode(BATCH)
    after = time.time_ns() // 1_000_000
    assert before <= d.events[0].received_time <= after


def test_public_decode_checks_its_arguments():
    with pytest.raises(ValueError):
        collector.decode(BATCH, format="xml")
    with pytest.raises(ValueError):
        collector.decode(BATCH, received_time=-1)
    assert len(collector.decode(bytearray(BATCH), received_time=1).events) == 2
    assert len(collector.decode(memoryview(BATCH), received_time=1).events) == 2


@pytest.mark.parametrize(
    "data,code,where",
    [
        (b'{"pid":1,"uid":"u","now":1,"pl":[}', "malformed_json", "byte 33"),
        (b'{"pid":1,"uid":"u","now":1,"pl":[]} x', "malformed_json", "byte 3"),
        (b'{"pid":1,"uid":"\xff","now":1,"pl":[]}', "malformed_json", "byte 16"),
        (b"", "malformed_json", "byte 0"),
        (b"[" * 70 + b"]" * 70, "too_deep", ""),
        (b"42", "batch_not_object", ""),
        (b'{"pid":"1","uid":"u","now":1,"pl":[]}', "invalid_field:pid", ""),
        (b'{"pid":1,"uid":"u","now":1,"pl":[],"r":{"d":0.5}}', "invalid_field:r.d", ""),
        (b'{"pid":1,"uid":"u","now":1,"pl":[],"to":{"an":5}}', "invalid_field:to.an", ""),
    ],
)
def test_batch_errors_say_what_and_where(impl, data, code, where):
    with pytest.raises(collector.BatchError) as exc:
        impl.decode(data, "json", 1)
    assert exc.value.code == code
    assert where in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_protobuf_errors(impl):
    good = collector.json_to_protobuf(BATCH.replace(b",7", b""))
    assert len(impl.decode(good, "protobuf", 1).events) == 2
    with pytest.raises(collector.BatchError) as exc:
        impl.decode(good[:-3], "protobuf", 1)
    assert exc.value.code == "malformed_json" and "protobuf" in exc.value.message


def test_json_to_protobuf_keeps_types_and_faults():
    text = (b'{"pid":1,"uid":"u","now":9,"pl":[{"euid":"e","ea":20,"t":1,"ac":"poll.voted",'
            b'"pr":{"i":1,"f":1.0,"n":null,"b":true,"l":[1,"x",{"y":[]}]}},{"euid":"f","ea":3,"t":1}]}')
    pb = collector.json_to_protobuf(text)
    d = collector.decode(pb, format="protobuf", received_time=1)
    assert d.events[0].params == {"i": 1, "f": 1.0, "n": None, "b": True, "l": [1, "x", {"y": []}]}
    assert type(d.events[0].params["i"]) is int and type(d.events[0].params["f"]) is float
    assert d.rejected == [(1, "unknown_action")]
    with pytest.raises(Unrepresentable):
        collector.json_to_protobuf(b'{"pid":1,"uid":"u","now":9,"pl":[{"euid":"e","ea":0,"t":"1"}]}')
    with pytest.raises(collector.BatchError):
        collector.json_to_protobuf(b'{"pid":1}')


def test_events_built_lazily_match_the_lines(impl):
    d = impl.decode(BATCH, "json", 5)
    assert msgspec.to_builtins(d.events) == [json.loads(x) for x in d.to_jsonl().splitlines()]


def test_native_flag_and_switch():
    """COLLECTOR_NO_NATIVE=1 forces the pure twin; without it the compiled one is used if built."""
    code = "import collector; print(collector.NATIVE)"
    env = {**os.environ, "COLLECTOR_NO_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    env.pop("COLLECTOR_NO_NATIVE")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(_native is not None)
    assert collector.NATIVE == (_native is not None and not os.environ.get("COLLECTOR_NO_NATIVE"))


def test_normalized_event_proto_mirrors_the_struct():
    from collector.v1 import event_pb2

    for message, struct in [
        (event_pb2.NormalizedEvent, collector.NormalizedEvent),
        (event_pb2.Device, collector.Device),
        (event_pb2.App, collector.App),
    ]:
        fields = [f for f in message.DESCRIPTOR.fields_by_name if f != "position"]
        assert fields == list(struct.__struct_fields__)


def test_decoded_knows_its_project(impl):
    assert impl.decode(BATCH, "json", 1).project_id == 3
