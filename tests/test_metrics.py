"""The collector's own counters and histograms (plain numbers, read when scraped) expose what a
Prometheus `Counter` and `Histogram` would."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import Counts, Timings

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
