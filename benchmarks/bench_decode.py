"""Decode speed, side by side, in one run on one corpus: both decoders on both formats, and the
ways Python code could otherwise read the same batches.

    python benchmarks/bench_decode.py [--batches 200] [--events 50] [--repeat 5] [--json FILE]

Each row runs over the whole corpus; the best of `--repeat` runs counts. events/s counts the
corpus' events; MB/s its input bytes (the JSON corpus, or the protobuf one for protobuf rows).
Times are the process' CPU time, so that a noisy machine disturbs the comparison less.
"""

import argparse
import json
import os
import sys
import time
from typing import Any

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.corpus import make_batches, to_protobuf  # noqa: E402
from collector import _pure  # noqa: E402
from collector.v1 import batch_pb2  # noqa: E402

try:
    from collector import _native
except ImportError:
    _native = None
try:
    import orjson
except ImportError:
    orjson = None


# msgspec's typed decode: the batch as Structs, every SPEC key typed, no checks, no output.
class TypeOrigin(msgspec.Struct):
    an: str | None = None
    st: str | None = None
    sf: str | None = None


class Resolution(msgspec.Struct):
    d: float | None = None


class VersionOrigin(msgspec.Struct):
    sv: str | None = None
    sb: int | None = None
    av: str | None = None
    af: str | None = None
    ab: int | None = None


class Transaction(msgspec.Struct):
    vl: float | None = None
    cu: int | None = None
    id: str | None = None


class Event(msgspec.Struct):
    euid: str | None = None
    ea: int | None = None
    t: int | None = None
    upt: int | None = None
    url: str | None = None
    scn: int | None = None
    c: int | None = None
    ci: str | None = None
    o: int | None = None
    vo: VersionOrigin | None = None
    sn: int | None = None
    st: str | None = None
    sl: int | None = None
    tvp: str | None = None
    tvid: str | None = None
    ur: bool | None = None
    fd: int | None = None
    tvd: int | None = None
    tvv: int | None = None
    tr: Transaction | None = None
    k: str | None = None
    v: str | int | None = None
    ac: str | None = None
    lb: str | None = None
    pr: dict[str, Any] | None = None


class Batch(msgspec.Struct):
    pid: int
    uid: str
    now: int
    pl: list[Event]
    dt: int | None = None
    dma: str | None = None
    dmo: str | None = None
    os: str | None = None
    l: str | None = None  # noqa: E741
    tz: str | None = None
    to: TypeOrigin | None = None
    r: Resolution | None = None


def read_value(v):
    kind = v.WhichOneof("kind")
    if kind == "array_value":
        return [read_value(x) for x in v.array_value.items]
    if kind == "object_value":
        return {m.key: read_value(m.value) for m in v.object_value.members}
    return None if kind in (None, "null_value") else getattr(v, kind)


def _opt(msg, names):
    return [getattr(msg, n) if msg.HasField(n) else None for n in names]


EVENT_FIELDS = [f.name for f in batch_pb2.Event.DESCRIPTOR.fields if f.containing_oneof is None
                or f.containing_oneof.name != "payload"]
EVENT_FIELDS.remove("version")


def upb_read_all(data: bytes):
    """Parse with upb, then read every field into Python values: what using protobuf costs."""
    b = batch_pb2.Batch.FromString(data)
    header = _opt(b, ["project_id", "user_id", "sent_time", "device_type", "manufacturer", "model",
                      "os_version", "locale", "timezone"])
    header += _opt(b.origin, ["app_name", "sdk_type", "sdk_flavor"]) + _opt(b.resolution, ["density"])
    out = []
    for ev in b.events:
        row = _opt(ev, EVENT_FIELDS)
        if ev.HasField("version"):
            row += _opt(ev.version, ["sdk_version", "sdk_build", "app_version", "app_flavor", "app_build"])
        which = ev.WhichOneof("payload")
        if which is not None:
            payload = getattr(ev, which)
            if which == "custom":
                row += _opt(payload, ["action", "label"])
                row.append({m.key: read_value(m.value) for m in payload.params.members})
            else:
                row += _opt(payload, [f.name for f in payload.DESCRIPTOR.fields])
        out.append(row)
    return header, out


def measure(rows, repeat: int) -> dict:
    """Best time of each row over the whole corpus. Rows take turns, run after run, so that a
    slow spell of the machine falls on all of them alike."""
    best = {name: float("inf") for name, _, _ in rows}
    for _ in range(repeat):
        for name, items, fn in rows:
            start = time.process_time()  # CPU time: what a noisy neighbour takes is not counted
            for item in items:
                fn(item)
            best[name] = min(best[name], time.process_time() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--events", type=int, default=50, help="events per batch")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args()

    corpus = make_batches(args.batches, args.events)
    pcorpus = to_protobuf(corpus)
    events = args.batches * args.events
    jbytes, pbytes = sum(map(len, corpus)), sum(map(len, pcorpus))
    rt = 1_765_000_000_000
    for b in corpus[:20]:
        assert not _pure.decode(b, "json", rt).rejected

    typed = msgspec.json.Decoder(Batch)
    rows = []  # name, corpus, fn
    if _native is not None:
        rows += [
            ("native json decode+to_jsonl", corpus, lambda b: _native.decode(b, "json", rt).to_jsonl()),
            ("native protobuf decode+to_jsonl", pcorpus, lambda b: _native.decode(b, "protobuf", rt).to_jsonl()),
        ]
    rows += [
        ("pure json decode", corpus, lambda b: _pure.decode(b, "json", rt)),
        ("pure json decode+to_jsonl", corpus, lambda b: _pure.decode(b, "json", rt).to_jsonl()),
        ("pure protobuf decode", pcorpus, lambda b: _pure.decode(b, "protobuf", rt)),
        ("json.loads", corpus, json.loads),
    ]
    if orjson is not None:
        rows.append(("orjson.loads", corpus, orjson.loads))
    rows += [
        ("msgspec typed decode", corpus, typed.decode),
        ("upb ParseFromString", pcorpus, batch_pb2.Batch.FromString),
        ("upb parse + read every field", pcorpus, upb_read_all),
    ]

    results = {}
    best = measure(rows, args.repeat)
    for name, items, fn in rows:
        seconds = best[name]
        size = pbytes if items is pcorpus else jbytes
        results[name] = {"events_per_s": events / seconds, "mb_per_s": size / seconds / 1e6, "seconds": seconds}

    base = results["msgspec typed decode"]["events_per_s"]
    print(f"corpus: {args.batches} batches x {args.events} events; JSON {jbytes / 1e6:.2f} MB, "
          f"protobuf {pbytes / 1e6:.2f} MB; native decoder: {'yes' if _native else 'NOT BUILT'}")
    print(f"{'':34} {'events/s':>12} {'MB/s':>8} {'vs msgspec typed':>17}")
    for name, r in results.items():
        print(f"{name:34} {r['events_per_s']:12,.0f} {r['mb_per_s']:8.1f} {r['events_per_s'] / base:16.2f}x")

    def ratio(a, b):
        return results[a]["events_per_s"] / results[b]["events_per_s"]

    goals = [("pure json decode >= 0.5x json.loads", ratio("pure json decode", "json.loads"), 0.5)]
    if _native is not None:
        goals = [
            ("native json >= 1.5x msgspec typed decode",
             ratio("native json decode+to_jsonl", "msgspec typed decode"), 1.5),
            ("native protobuf >= 2x upb parse + read every field",
             ratio("native protobuf decode+to_jsonl", "upb parse + read every field"), 2.0),
        ] + goals
    print()
    for text, value, goal in goals:
        print(f"{'PASS' if value >= goal else 'FAIL'}  {text}: {value:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "goals": {t: v for t, v, _ in goals}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
