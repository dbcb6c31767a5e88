"""The raw export read in spans of time, on each engine: whatever the spans (one, or many
small ones with buckets counted again and a crowded millisecond), every format holds the
matching events in order, the same bytes as the formats make of the events sorted here, so
both engines give the same bytes. (The HTTP side is in test_http_api.py.)"""

import itertools
import json
import random

import pytest

from analytics_fixtures import event_lines, lines_of, scenario
from collector.analytics import export
from collector.analytics.query import parse
from reference_rows import row

CROWDED = 1773261000000  # a millisecond holding more events than a small span


def load(store) -> list[str]:
    """The small show, events of project 8 inserted out of time order, and 300 events of one
    millisecond; the stored lines (first copies) of project 8, in export order."""
    events = scenario("show_small")["events"]
    rnd = random.Random(3)
    base = events[0]
    extra = [dict(base, event_id=f"r-{rnd.getrandbits(40):010x}", project_id=8,
                  time=1773260000000 + rnd.randrange(3_600_000), params={"pad": "é" * rnd.randrange(300)})
             for _ in range(2000)]
    extra += [dict(base, event_id=f"c-{i:03d}", project_id=8, time=CROWDED) for i in range(300)]
    lines = event_lines(events + extra)
    rnd.shuffle(lines)
    rows = [row(line) for line in lines]
    for i in range(0, len(lines), 700):
        store.insert(lines_of(lines[i:i + 700]), f"load:{i}")
    first = {}
    for r in rows:  # the first copy inserted is kept
        first.setdefault((r.project_id, r.event_id), r)
    return [r.event for r in sorted(first.values(), key=lambda r: (r.time, r.event_id))
            if r.project_id == 8]


def export_bytes(store, fmt: str, params: dict) -> bytes:
    q = parse(params, None, extra=("userId", "action", "format"))
    return b"".join(export.chunks(fmt, export.pages(store, export.condition(store, q, None))))


@pytest.mark.parametrize("span_bytes", [export.SPAN_BYTES, 20_000], ids=["one span", "many spans"])
def test_every_format_holds_the_events_in_order_whatever_the_spans(store, monkeypatch, span_bytes):
    want = load(store)
    monkeypatch.setattr(export, "SPAN_BYTES", span_bytes)
    monkeypatch.setattr(export, "BATCH_BYTES", 7_000)
    jsonl = export_bytes(store, "jsonl", {"projectId": "8"})
    assert jsonl == "".join(line + "\n" for line in want).encode()
    for fmt in ("json", "csv", "parquet"):  # as made of the events in one page
        assert export_bytes(store, fmt, {"projectId": "8"}) == b"".join(export.chunks(fmt, (page for page in [want])))
    lo, hi = 1773261000000, 1773262000000
    part = export_bytes(store, "jsonl", {"projectId": "8", "from": str(lo), "to": str(hi)})
    assert part == "".join(line + "\n" for line in want if lo <= json.loads(line)["time"] < hi).encode()
    assert export_bytes(store, "csv", {"projectId": "8", "from": "2026-01-01", "to": "2026-01-02"}).count(b"\r\n") == 1


def test_spans_are_disjoint_complete_and_small(store):
    want = load(store)
    q = parse({"projectId": "8"}, None)
    where = export.condition(store, q, None)
    times = [json.loads(line)["time"] for line in want]
    lo, hi, rows = times[0], times[-1] + 1, 40
    spans = list(export.spans(store, where, lo, hi, len(want), rows))
    assert spans[0][0] == lo and spans[-1][1] == hi
    assert all(a < b == c for (a, b), (c, _) in itertools.pairwise(spans))  # edge to edge
    held = [sum(a <= t < b for t in times) for a, b in spans]
    assert sum(held) == len(want)
    assert all(n <= rows or b - a == 1 for n, (a, b) in zip(held, spans))
    assert (CROWDED, CROWDED + 1) in spans  # its 300 events: one span, never split
    assert len(spans) > len(want) // rows
