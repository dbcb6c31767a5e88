"""`collector demo`: the generated show is the same for the same seed, every batch it sends is
a valid SDK batch of the product's taxonomy, and the command streams it into a real collector."""

import collections
import json
import subprocess
import sys

import collector
from collector import demo
from procs import ENV, Collector

TAXONOMY = {"broadcast.joined", "broadcast.left", "poll.viewed", "poll.voted", "contest.viewed",
            "contest.entered", "lineup.viewed", "sponsor_moment.viewed", "sponsor_moment.tapped",
            "product.viewed", "product.tapped", "cart.item_added", "cart.item_removed",
            "checkout.started", "checkout.completed", "checkout.abandoned"}


def test_the_same_seed_gives_the_same_show():
    assert demo.plan(7, 120, 20) == demo.plan(7, 120, 20)
    assert demo.plan(7, 120, 20) != demo.plan(8, 120, 20)


def test_every_batch_is_a_valid_sdk_batch_of_the_taxonomy():
    people, events = demo.plan(3, 200, 30)
    start = 1_773_260_000_000
    sent = demo.batches(people, events, project=8, start_ms=start, speed=1, seed=3, first=0,
                        now_ms=start + 30 * 60_000)
    decoded = [collector.decode(b, received_time=start + 30 * 60_000) for b in sent]
    normalised = [json.loads(line) for d in decoded for line in d.to_jsonl().splitlines()]
    assert not [r for d in decoded for r in d.rejected]
    assert len(normalised) == len(events) and all(len(d) <= demo.BATCH_EVENTS for d in decoded)
    assert len({e["event_id"] for e in normalised}) == len(events)
    actions = collections.Counter(e["action"] for e in normalised)
    assert set(actions) == TAXONOMY
    assert {e["params"]["broadcastId"] for e in normalised} == {b for b, _ in demo.BROADCASTS}
    votes = [e["params"] for e in normalised if e["action"] == "poll.voted"]
    assert all({"pollId", "questionText", "optionSelected", "optionIndex"} <= set(v) for v in votes)
    orders = [e["params"] for e in normalised if e["action"] == "checkout.completed"]
    assert {o["currency"] for o in orders} == {"NOK", "EUR"}
    assert all(o["total"] > 0 and o["items"] and o["orderId"] for o in orders)
    assert {e["params"]["sponsorId"] for e in normalised if e["action"].startswith("sponsor_moment")} \
        == set(demo.SPONSORS)
    # another start is another show: no id shared, so nothing is taken for a duplicate
    again = demo.batches(people, events[:50], project=8, start_ms=start + 1, speed=1, seed=3,
                         first=0, now_ms=start + 60_000)
    ids = {e["euid"] for b in again for e in json.loads(b)["pl"]}
    assert not ids & {e["event_id"] for e in normalised}


def test_collector_demo_streams_the_show_into_a_collector(tmp_path):
    c = Collector(tmp_path / "collector").start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "collector", "demo", c.target, "--seed", "5", "--users", "30",
             "--minutes", "4", "--speed", "240", "--project", "12"],
            env=ENV, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        _, events = demo.plan(5, 30, 4)
        assert "http://127.0.0.1:8080/?projectId=12" in out.stdout
        assert f"sent {len(events):,} events" in out.stdout
        assert f"{len(events):,} accepted" in out.stdout
    finally:
        c.stop()
    written = [json.loads(line) for path in sorted((c.data / "events").glob("*.jsonl*"))
               for line in path.read_text().splitlines()]
    assert len(written) == len(events)
    assert {e["project_id"] for e in written} == {12}
