"""The collector's own counters and histograms (plain numbers, read when scraped) expose what a
Prometheus `Counter` and `Histogram` would; a running collector exposes its process, its log's
capacity, and what every sink delivered and failed, in events."""

import asyncio
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.build import DECODER, release
from collector.client import Client
from collector.metrics import Counts, Timings
from procs import Collector

BUCKETS = (1e-5, 1e-3, 0.1, 1.0)


def samples(registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples if not s.name.endswith("_created")}


def test_counts_and_timings_scrape_as_prometheus_own():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counts = Counts("c_events", "Events", ["outcome", "reason"], ours)
    counter = Counter("c_events", "Events", ["outcome", "reason"], registry=theirs)
    timings = Timings("c_seconds", "Seconds", BUCKETS, ours)
    histogram = Histogram("c_seconds", "Seconds", buckets=BUCKETS, registry=theirs)
    for outcome, reason, n in (("accepted", "", 3), ("rejected", "bad_type", 1), ("accepted", "", 2)):
        counts.inc((outcome, reason), n)
        counter.labels(outcome, reason).inc(n)
    for seconds in (0.0, 1e-5, 5e-4, 1e-3, 0.05, 0.1, 0.7, 1.0, 3.0):  # on and between the bounds
        timings.observe(seconds)
        histogram.observe(seconds)
    assert samples(ours) == samples(theirs)
    assert samples(ours)[("c_seconds_bucket", (("le", "0.001"),))] == 4


def test_a_collector_exposes_its_process_capacity_and_every_sink(tmp_path):
    node = Collector(tmp_path, metrics=True, log={"max_bytes": 1 << 30}, top={"drain_seconds": 0.5},
                     sinks=[{"type": "jsonl"}, {"type": "dead_letter"},
                            {"type": "webhook", "url": "http://127.0.0.1:9/", "max_backoff_seconds": 0.1}]).start()

    async def send():
        async with Client(node.target) as client:
            await client.send(b'{"pid":8,"uid":"u","now":1,"pl":[{"euid":"a","ea":0,"t":1},'
                              b'{"euid":"b","ea":0,"t":1},{"euid":"c","ea":99,"t":1}]}')

    asyncio.run(send())
    for _ in range(100):
        if node.metric("collector_sink_events_total", sink="dead_letter", outcome="delivered") \
                and node.metric("collector_sink_error_events_total", sink="webhook") >= 4:
            break
        time.sleep(0.05)
    assert node.metric("process_resident_memory_bytes") > 0 and node.metric("process_start_time_seconds") > 0
    assert node.metric("collector_log_max_bytes") == 1 << 30
    # which decoder runs: the one this test process runs too (the same install and switch)
    assert node.metric("collector_build_info", decoder=DECODER, version=release()) == 1
    assert node.metric("collector_sink_events_total", sink="jsonl", outcome="delivered") == 2
    assert node.metric("collector_sink_events_total", sink="dead_letter", outcome="delivered") == 1
    attempts = node.metric("collector_sink_errors_total", sink="webhook")
    assert attempts >= 2  # the receiver is not there: each attempt failed with both events
    # scraped after the attempts: at least two events for each of them
    assert node.metric("collector_sink_error_events_total", sink="webhook") >= 2 * attempts
    assert node.stop() == 0
