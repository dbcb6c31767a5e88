"""Decode speed, side by side, in one run on one corpus: both decoders on both formats, and the
ways Python code could otherwise read the same batches; then the native JSON decoder and
msgspec's typed decode on the same batches with their keys in other orders (`pl` first, the
header around `pl`, alphabetical as Go writes maps, shuffled at every level).

    python benchmarks/bench_decode.py [--batches 200] [--events 50] [--repeat 7] [--json FILE]

Each row runs over the whole corpus; the best of `--repeat` runs counts (wall clock,
time.perf_counter). events/s counts the corpus' events; MB/s its input bytes (the JSON corpus, or
the protobuf one for protobuf rows).
"""

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.corpus import ORDERS, make_batches, reorder, to_protobuf  # noqa: E402
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

RECEIVED_TIME = 1_765_000_000_000
BASELINE = "msgspec typed decode"


# msgspec's typed decode: the batch as Structs, every SPEC key typed, no checks, no output. The
# fastest way plain Python code could read a batch, so it is the yardstick of the native decoder.
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


typed_decode = msgspec.json.Decoder(Batch).decode


# What reading a protobuf batch costs Python code: upb parses lazily, so the parse alone says
# little; reading every field into Python values is the work a decoder has to do.
def _names(descriptor, skip=()) -> list[str]:
    return [f.name for f in descriptor.fields if f.name not in skip]


_HEADER = _names(batch_pb2.Batch.DESCRIPTOR, ("events", "origin", "resolution"))
_ORIGIN = _names(batch_pb2.TypeOrigin.DESCRIPTOR)
_RESOLUTION = _names(batch_pb2.Resolution.DESCRIPTOR)
_VERSION = _names(batch_pb2.VersionOrigin.DESCRIPTOR)
_PAYLOAD = batch_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"]
_PAYLOADS = {f.name: _names(f.message_type, ("params",)) for f in _PAYLOAD.fields}
_COMMON = _names(batch_pb2.Event.DESCRIPTOR, ("version", *_PAYLOADS))


def _opt(msg, names: list[str]) -> list:
    return [getattr(msg, n) if msg.HasField(n) else None for n in names]


def read_value(v):
    kind = v.WhichOneof("kind")
    if kind == "array_value":
        return [read_value(x) for x in v.array_value.items]
    if kind == "object_value":
        return {m.key: read_value(m.value) for m in v.object_value.members}
    return None if kind is None or kind == "null_value" else getattr(v, kind)


def upb_read_all(data: bytes) -> tuple[list, list]:
    """Parse with upb, then every field of the header and of each event as Python values."""
    b = batch_pb2.Batch.FromString(data)
    header = _opt(b, _HEADER)
    header += _opt(b.origin, _ORIGIN) if b.HasField("origin") else [None] * len(_ORIGIN)
    header += _opt(b.resolution, _RESOLUTION) if b.HasField("resolution") else [None]
    events = []
    for ev in b.events:
        row = _opt(ev, _COMMON)
        if ev.HasField("version"):
            row += _opt(ev.version, _VERSION)
        which = ev.WhichOneof("payload")
        if which is not None:
            payload = getattr(ev, which)
            row += _opt(payload, _PAYLOADS[which])
            if which == "custom" and payload.HasField("params"):
                row.append({m.key: read_value(m.value) for m in payload.params.members})
        events.append(row)
    return header, events


# ------------------------------------------------------------------------------- running


def rows_for(corpus: list[bytes], pcorpus: list[bytes],
             orders: dict[str, list[bytes]]) -> list[tuple[str, list | None, Any]]:
    """(name, inputs, fn) per row; inputs None marks a row that cannot run here."""
    rt = RECEIVED_TIME
    native = _native
    reordered = []
    for order, batches in orders.items():
        reordered += [
            (f"native json, {order}", batches, native and (lambda b: native.decode(b, "json", rt).to_jsonl())),
            (f"msgspec typed, {order}", batches, typed_decode),
        ]
    rows = [
        ("native json decode+to_jsonl", corpus,
         native and (lambda b: native.decode(b, "json", rt).to_jsonl())),
        ("native protobuf decode+to_jsonl", pcorpus,
         native and (lambda b: native.decode(b, "protobuf", rt).to_jsonl())),
        ("pure json decode", corpus, lambda b: _pure.decode(b, "json", rt)),
        ("pure json decode+to_jsonl", corpus, lambda b: _pure.decode(b, "json", rt).to_jsonl()),
        ("pure protobuf decode", pcorpus, lambda b: _pure.decode(b, "protobuf", rt)),
        ("json.loads", corpus, json.loads),
        ("orjson.loads", corpus, orjson and orjson.loads),
        (BASELINE, corpus, typed_decode),
        ("upb ParseFromString", pcorpus, batch_pb2.Batch.FromString),
        ("upb parse + read every field", pcorpus, upb_read_all),
        *reordered,
    ]
    return [(name, items if fn else None, fn) for name, items, fn in rows]


def check(corpus: list[bytes], pcorpus: list[bytes], events: int, orders: dict[str, list[bytes]]) -> None:
    """Every row must do the whole job on every batch, or its speed means nothing."""
    pure = b"".join(_pure.decode(b, "json", RECEIVED_TIME).to_jsonl() for b in corpus)
    assert pure.count(b"\n") == events
    euids = [ev.euid for b in corpus for ev in typed_decode(b).pl]
    assert len(euids) == events
    assert [row[0] for b in pcorpus for row in upb_read_all(b)[1]] == euids
    if _native is not None:
        for fmt, items in (("json", corpus), ("protobuf", pcorpus)):
            out = [_native.decode(b, fmt, RECEIVED_TIME) for b in items]
            assert not any(d.rejected for d in out), f"native {fmt}: rejected events"
            lines = b"".join(d.to_jsonl() for d in out).splitlines()
            assert list(map(json.loads, lines)) == list(map(json.loads, pure.splitlines())), (
                f"native {fmt} disagrees with the pure decoder"
            )
        for order, batches in orders.items():  # the same events, whatever the key order
            out = [_native.decode(b, "json", RECEIVED_TIME) for b in batches]
            assert not any(d.rejected for d in out), f"native json, {order}: rejected events"
            lines = b"".join(d.to_jsonl() for d in out).splitlines()
            assert [_canonical(line) for line in lines] == [_canonical(line) for line in pure.splitlines()], (
                f"native json, {order}: not the events of the header-first batches"
            )


def _canonical(line: bytes):
    """An event with its params' keys sorted: a reordered batch reorders its custom params too."""
    event = json.loads(line)
    if isinstance(event["params"], dict):
        event["params"] = json.loads(json.dumps(event["params"], sort_keys=True))
    return event


def measure(rows, repeat: int) -> dict[str, float]:
    """Best time of each row over the whole corpus. Rows take turns, run after run, so that a
    slow spell of the machine falls on all of them alike."""
    best = {name: float("inf") for name, items, _ in rows if items is not None}
    for _ in range(repeat):
        for name, items, fn in rows:
            if items is None:
                continue
            gc.collect()  # garbage left by the previous row is not this row's cost
            start = time.perf_counter()
            for item in items:
                fn(item)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


GOALS = [  # (text, row, over row, at least)
    ("native json decode+to_jsonl >= 1.5x msgspec typed decode",
     "native json decode+to_jsonl", BASELINE, 1.5),
    ("native protobuf decode+to_jsonl >= 2x upb parse + read every field",
     "native protobuf decode+to_jsonl", "upb parse + read every field", 2.0),
    ("native protobuf decode+to_jsonl >= native json decode+to_jsonl (the same events)",
     "native protobuf decode+to_jsonl", "native json decode+to_jsonl", 1.0),
    ("pure json decode >= 0.5x json.loads", "pure json decode", "json.loads", 0.5),
    ("native json, pl first >= 0.9x header first",
     "native json, pl first", "native json, header first", 0.9),
    ("native json, header around pl >= 0.9x header first",
     "native json, header around pl", "native json, header first", 0.9),
    ("native json, shuffled >= 1.5x msgspec typed, shuffled",
     "native json, shuffled", "msgspec typed, shuffled", 1.5),
]


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
    orders = {order: reorder(corpus, order) for order in ORDERS}
    check(corpus, pcorpus, events, orders)
    rows = rows_for(corpus, pcorpus, orders)
    best = measure(rows, args.repeat)

    results = {}
    for name, items, _ in rows:
        if items is not None:
            size = pbytes if items is pcorpus else sum(map(len, items))
            results[name] = {"events_per_s": events / best[name], "mb_per_s": size / best[name] / 1e6,
                             "seconds": best[name]}
    base = results[BASELINE]["events_per_s"]
    for r in results.values():
        r["vs_msgspec_typed"] = r["events_per_s"] / base

    print(f"corpus: {args.batches} batches x {args.events} events = {events:,} events; "
          f"JSON {jbytes / 1e6:.2f} MB, protobuf {pbytes / 1e6:.2f} MB; best of {args.repeat}")
    print(f"{'name':34} {'events/s':>12} {'MB/s':>8} {'vs msgspec typed':>17}")
    first_reordered = f"native json, {ORDERS[0]}"
    for name, _, _ in rows:
        if name == first_reordered:
            print("the same batches, keys in other orders:")
        r = results.get(name)
        if r is None:
            why = "collector._native not built" if name.startswith("native") else "not installed"
            print(f"{name:34} {'skipped: ' + why:>39}")
        else:
            print(f"{name:34} {r['events_per_s']:12,.0f} {r['mb_per_s']:8.1f} {r['vs_msgspec_typed']:16.2f}x")

    print()
    goals = []
    for text, row, over, at_least in GOALS:
        if row in results and over in results:
            ratio = results[row]["events_per_s"] / results[over]["events_per_s"]
            status = "PASS" if ratio >= at_least else "FAIL"
            print(f"{status}  {text}: {ratio:.2f}x")
        else:
            ratio, status = None, "SKIP"
            print(f"{status}  {text}: a row did not run")
        goals.append({"goal": text, "ratio": ratio, "at_least": at_least, "status": status})

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"corpus": {"batches": args.batches, "events": events, "json_bytes": jbytes,
                                  "protobuf_bytes": pbytes, "repeat": args.repeat},
                       "results": results, "goals": goals}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
