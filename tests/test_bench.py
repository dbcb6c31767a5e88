"""The decode benchmarks under pytest-benchmark: `pytest --benchmark-enable tests/test_bench.py`.

Without --benchmark-enable (the default, see addopts) each case runs once, as a smoke test: the
assertions keep a benchmark from timing a decoder that silently drops or rejects events.
"""

import json
import os
import sys

import pytest

# benchmarks/ is not part of the installed package; it lives next to tests/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_decode import RECEIVED_TIME, typed_decode  # noqa: E402
from benchmarks.corpus import make_batches, to_protobuf  # noqa: E402
from collector import _pure  # noqa: E402

try:
    from collector import _native
except ImportError:
    _native = None

BATCHES, EVENTS = 20, 50
needs_native = pytest.mark.skipif(_native is None, reason="collector._native is not built")


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return make_batches(BATCHES, EVENTS)


@pytest.fixture(scope="module")
def pcorpus(corpus) -> list[bytes]:
    return to_protobuf(corpus)


@pytest.fixture(scope="module")
def expected(corpus) -> list[dict]:
    """The corpus' normalised events, from the pure decoder: what the native rows must produce."""
    return [json.loads(line) for b in corpus
            for line in _pure.decode(b, "json", RECEIVED_TIME).to_jsonl().splitlines()]


def _native_jsonl(batches: list[bytes], fmt: str) -> bytes:
    out = []
    for b in batches:
        decoded = _native.decode(b, fmt, RECEIVED_TIME)
        assert not decoded.rejected
        out.append(decoded.to_jsonl())
    return b"".join(out)


@needs_native
def test_native_json_decode_to_jsonl(benchmark, corpus, expected):
    out = benchmark(_native_jsonl, corpus, "json")
    assert [json.loads(line) for line in out.splitlines()] == expected


@needs_native
def test_native_protobuf_decode_to_jsonl(benchmark, pcorpus, expected):
    out = benchmark(_native_jsonl, pcorpus, "protobuf")
    assert [json.loads(line) for line in out.splitlines()] == expected


def test_pure_json_decode(benchmark, corpus):
    out = benchmark(lambda: [_pure.decode(b, "json", RECEIVED_TIME) for b in corpus])
    assert sum(len(d) for d in out) == BATCHES * EVENTS
    assert not any(d.rejected for d in out)


def test_json_loads(benchmark, corpus):
    out = benchmark(lambda: [json.loads(b) for b in corpus])
    assert sum(len(doc["pl"]) for doc in out) == BATCHES * EVENTS


def test_msgspec_typed_decode(benchmark, corpus):
    out = benchmark(lambda: [typed_decode(b) for b in corpus])
    assert sum(len(batch.pl) for batch in out) == BATCHES * EVENTS
    assert all(type(ev.t) is int and ev.euid for batch in out for ev in batch.pl)
