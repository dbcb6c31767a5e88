"""Prometheus metrics, in a registry of the collector's own (several can run in one process)."""

import bisect
import collections

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from .build import DECODER, release


class Counts:
    """A counter by label values, kept as plain ints and read when scraped: the ingest path
    adds to it for every batch, where a Prometheus `Counter` would take a lock each time. Only
    the event loop adds; a scrape (another thread) reads a copy."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry):
        self._family = (name, documentation, labelnames)
        self.values: dict[tuple, int] = collections.defaultdict(int)
        registry.register(self)

    def inc(self, labels: tuple, amount: int = 1) -> None:
        self.values[labels] += amount

    def describe(self):
        return [CounterMetricFamily(*self._family[:2], labels=self._family[2])]

    def collect(self):
        family = CounterMetricFamily(*self._family[:2], labels=self._family[2])
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return [family]


class Timings:
    """A histogram of seconds kept as plain numbers and read when scraped, for the same reason
    as `Counts` (a Prometheus `Histogram` takes two locks per observation)."""

    def __init__(self, name: str, documentation: str, buckets: tuple, registry):
        self._family = (name, documentation)
        self._bounds = list(buckets)
        self._counts = [0] * (len(buckets) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0
        registry.register(self)

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def describe(self):
        return [HistogramMetricFamily(*self._family)]

    def collect(self):
        counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, n in zip(self._bounds + [float("inf")], counts):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return [HistogramMetricFamily(*self._family, buckets=buckets, sum_value=total)]


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        Gauge("collector_build_info", "Always 1: the release and which decoder runs (native, pure)",
              ["version", "decoder"], registry=r).labels(release(), DECODER).set(1)
        self.events = Counts(
            "collector_events", "Events by outcome (accepted, duplicate, filtered, rejected) and "
            "reason (a SPEC code for rejections)", ["outcome", "reason"], registry=r)
        self.batches = Counts(
            "collector_batches", "Batches by outcome (ok, batch_error, refused)",
            ["outcome", "reason"], registry=r)
        self.decode_seconds = Timings(
            "collector_batch_decode_seconds", "Time to decode one batch", registry=r,
            buckets=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1))
        self.log_bytes = Gauge("collector_log_bytes", "Bytes held by the local log", registry=r)  # read when scraped
        self.log_max_bytes = Gauge(
            "collector_log_max_bytes", "The local log's disk cap (log.max_bytes): past it, ingest "
            "is refused", registry=r)
        self.fsync_seconds = Timings(
            "collector_log_fsync_seconds", "Time of a group commit's write and fsync", registry=r,
            buckets=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0))
        self.log_quarantined = Counter(
            "collector_log_quarantined_bytes", "Damaged log bytes moved aside to the log's "
            "quarantine/ directory, which readers then skip (each damage counted once)", registry=r)
        self.cursor_resets = Counter(
            "collector_sink_cursor_resets", "Sink cursors found on start to be no record's "
            "position, and where they were moved, by reason: empty or unreadable (the oldest "
            "record: the whole log is delivered again), past_end (the log's end), mid_record "
            "(the start of its record)", ["sink", "reason"], registry=r)
        self.sink_lag = Gauge("collector_sink_lag_bytes", "Log bytes a sink has yet to deliver",
                              ["sink"], registry=r)
        self.sink_errors = Counter("collector_sink_errors", "Failed sink writes (retried)",
                                   ["sink"], registry=r)
        self.sink_error_events = Counter(
            "collector_sink_error_events", "Events in failed sink writes (retried: an event "
            "counts again at each failure)", ["sink"], registry=r)
        self.sink_events = Counter(
            "collector_sink_events", "Events a sink handed on, by outcome: delivered; duplicate "
            "(the destination already had it, e.g. JetStream's duplicate window); dead (refused "
            "by the destination, sent to the dead-letter output)", ["sink", "outcome"], registry=r)
        self.subscribers = Gauge("collector_subscribers", "Open subscriptions", registry=r)
        self.subscribers_dropped = Counter(
            "collector_subscribers_dropped", "Subscribers dropped for being too slow", registry=r)
        self.analytics_removed = Counter(
            "collector_analytics_removed", "Events removed from a store the collector keeps "
            "(duckdb, clickhouse, jsonl_files, dead_letter, log), by reason: retention, deletion",
            ["reason", "store"], registry=r)
        self.inflight_bytes = Gauge("collector_inflight_bytes", "Bytes of batches being worked on",
                                    registry=r)  # read when scraped
        ProcessCollector(registry=r)  # process_*: CPU, memory, open files, start time

    def sink_failed(self, sink: str, events: int) -> None:
        """A sink's write failed (it is retried): counted as an attempt and in events."""
        self.sink_errors.labels(sink).inc()
        self.sink_error_events.labels(sink).inc(events)


def serve(metrics: Metrics, listen: str):
    """Expose the metrics over HTTP; returns the server (call .shutdown() to stop it)."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    return server
