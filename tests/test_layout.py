"""The normalised event's layout is spec.py's: every object's keys in its order, written so by
both decoders in both formats, and the Structs of event.py declare the same."""

import importlib.util
import json
import pathlib
import re

import msgspec
import pytest

import collector
from collector import layout, spec
from collector.event import App, Device, NormalizedEvent
from conftest import IMPLS, _native

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


def test_the_structs_are_written_from_the_spec():
    """event.py's Structs are what `python -m collector.layout` writes from spec.py."""
    source = layout.EVENT_PY.read_text()
    assert layout.written(source) == source, "run `python -m collector.layout`"
    names = lambda struct: [f.name for f in msgspec.structs.fields(struct)]  # noqa: E731
    assert names(NormalizedEvent) == list(spec.EVENT_KEYS)
    assert names(Device) == [o.name for o in spec.DEVICE]
    assert names(App) == [o.name for o in spec.APP]


def test_a_changed_spec_changes_the_structs(monkeypatch):
    """The writing follows the spec: a key moved or retyped there is moved or retyped in the
    Structs written."""
    moved = (spec.EVENT[1], spec.EVENT[0], *spec.EVENT[2:])
    monkeypatch.setattr(layout, "STRUCTS", (("NormalizedEvent", moved),))
    assert layout.structs().splitlines()[1:3] == ["    action: str", "    event_id: str"]
    retyped = spec.DEVICE[:-1] + (spec.Out("density", "dt"),)
    monkeypatch.setattr(layout, "STRUCTS", (("Device", retyped),))
    assert layout.structs().splitlines()[-1] == "    density: int | None"


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


def _parts():
    """native/parts.py, which the build reads by path to write the native writer's order."""
    found = importlib.util.spec_from_file_location("native_parts", ROOT / "native" / "parts.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


@pytest.mark.skipif(_native is None, reason="the native decoder is not built")
def test_the_native_writer_is_built_in_the_spec_order():
    assert _native.WRITTEN_ORDER == spec.EVENT_KEYS
    assert (ROOT / "native" / "parts.pxi").read_text() == _parts().render(spec.EVENT_KEYS)


def test_the_native_writer_order_follows_the_spec():
    """The writer the build writes calls each part's writer where the spec puts its key; an
    order it cannot write is refused, saying why."""
    parts = _parts()
    keys = [k for k in spec.EVENT_KEYS if k not in ("device_time", "action")]
    keys[keys.index("orientation"):keys.index("orientation")] = ["action"]
    keys = ["device_time", *keys]
    body = parts.render(keys).split("cdef inline int put_parts")[1]
    calls = re.findall(r"^    (put_\w+)\(w\)$", body, re.M)
    own = [parts.WRITERS.get(k) or parts.HEADER_PARTS.get(k, (0, None))[1] for k in keys]
    assert calls == [c for c in own if c]
    written = re.findall(r"^    put\(w\.b, '(.*)', \d+\)$", body, re.M)
    assert written[:2] == ['{"device_time":', ',"event_id":']
    assert ',"action":' in written and '},"params":' in written
    keys = list(spec.EVENT_KEYS)
    with pytest.raises(ValueError, match="user_id right after project_id"):
        parts.check(tuple(k for k in keys if k != "user_id") + ("user_id",))
    with pytest.raises(ValueError, match="in this order"):
        parts.check(("time", *(k for k in keys if k != "time")))
    with pytest.raises(ValueError, match="writes the keys"):
        parts.check((*keys, "extra"))
