"""The normalised event's layout is spec.py's: every object's keys in its order, written so by
both decoders in both formats, and the Structs of event.py declare the same."""

import json

import msgspec
import pytest

import collector
from collector import spec
from collector.event import App, Device, NormalizedEvent
from conftest import IMPLS

# every action, a custom event with params in a chosen order, every header key
BATCH = json.dumps({
    "pid": 3, "uid": "u", "now": 10, "dt": 4, "dma": "m", "dmo": "o", "os": "1", "l": "nb_NO",
    "tz": "Europe/Oslo", "to": {"an": "a", "st": "s", "sf": "f"}, "r": {"d": 2},
    "pl": [
        {"euid": f"e{ea}", "ea": ea, "t": 5, "vo": {"sv": "1", "sb": 2, "av": "3", "af": "x", "ab": 4},
         **{f.key: {"vl": 1.5, "cu": 978, "id": "i"} if f.key == "tr" else
            ("k" if f.type == spec.STRING else 1 if f.type == spec.INT else True)
            for f in fields if f.type not in (spec.PARAMS,)},
         **({"ac": "poll.voted", "pr": {"z": 1, "a": {"y": 2, "b": 3}}} if ea == spec.CUSTOM else {})}
        for ea, (_, fields, _) in sorted(spec.ACTIONS.items())
    ],
}).encode()


def _pairs(line: bytes):
    return json.loads(line, object_pairs_hook=lambda pairs: pairs)


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
@pytest.mark.parametrize("impl", IMPLS)
def test_every_object_in_the_spec_order(impl, fmt):
    data = BATCH if fmt == "json" else collector.json_to_protobuf(BATCH)
    decoded = impl.decode(data, fmt, 99)
    assert not decoded.rejected
    lines = decoded.to_jsonl().splitlines()
    assert len(lines) == len(spec.ACTIONS)
    for line, ea in zip(lines, sorted(spec.ACTIONS)):
        event = _pairs(line)
        assert [k for k, _ in event] == list(spec.EVENT_KEYS)
        values = dict(event)
        assert [k for k, _ in values["device"]] == [o.name for o in spec.DEVICE]
        assert [k for k, _ in values["app"]] == [o.name for o in spec.APP]
        params = [k for k, _ in values["params"]]
        if ea == spec.CUSTOM:
            assert params == ["z", "a"] and [k for k, _ in dict(values["params"])["a"]] == ["y", "b"]
        else:
            assert params == [o.name for o in spec.ACTION_PARAMS[ea]]


def test_the_structs_declare_the_spec_layout():
    names = lambda struct: [f.name for f in msgspec.structs.fields(struct)]  # noqa: E731
    assert names(NormalizedEvent) == list(spec.EVENT_KEYS)
    assert names(Device) == [o.name for o in spec.DEVICE]
    assert names(App) == [o.name for o in spec.APP]


def test_the_spec_layout_is_whole():
    """Each output value comes from a key the spec reads; every action has its params."""
    header = {f.key for f in spec.HEADER} | {f"{f.key}.{s.key}" for f in spec.HEADER for s in f.fields}
    common = {f"vo.{s.key}" for f in spec.COMMON if f.key == "vo" for s in f.fields}
    assert {o.source for o in spec.DEVICE} <= header
    assert {o.source for o in spec.APP} <= header | common
    assert set(spec.ACTION_PARAMS) | {spec.CUSTOM} == set(spec.ACTIONS)
    for ea, outs in spec.ACTION_PARAMS.items():
        keys = {f.key for f in spec.ACTIONS[ea][1]}
        keys |= {f"{f.key}.{s.key}" for f in spec.ACTIONS[ea][1] for s in f.fields}
        assert {o.source for o in outs} <= keys, ea
