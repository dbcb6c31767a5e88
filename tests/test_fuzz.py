"""A short, seeded fuzz smoke of the native decoder, no sanitizer needed (tests/fuzz.sh fuzzes
for real, under ASan/UBSan, with atheris).

Every input goes through the fuzz target's check: the native decoder returns a Decoded whose
JSON Lines and events can be read, or raises BatchError, and the pure twin says the same.
"""

import random

import pytest

import collector
from conftest import _native

import fuzz_native

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(_native is None, reason="the native decoder is not built"),
]

INPUTS = 5000  # the seeds and corpus files, then seeded mutations of them


def test_seed_corpus_is_there():
    files = fuzz_native.corpus_inputs(fuzz_native.HERE / "fuzz_corpus")
    assert len(files) >= 20
    formats = {fuzz_native.split(data)[0] for data in files if data}
    assert formats == {"json", "protobuf"}
    assert len(fuzz_native.seeds()) >= 50


def test_seeds_and_corpus_decode_alike():
    outcomes = {"ok": 0, "batch_error": 0}
    for _, fmt, batch in fuzz_native.seeds():
        outcomes[fuzz_native.check(batch, fmt, compare=True)[0]] += 1
    for data in fuzz_native.corpus_inputs(fuzz_native.HERE / "fuzz_corpus"):
        fmt, batch = fuzz_native.split(data)
        outcomes[fuzz_native.check(batch, fmt, compare=True)[0]] += 1
    assert outcomes["ok"] >= 30 and outcomes["batch_error"] >= 10, outcomes


def test_mutated_batches_never_crash_and_agree():
    stats = {}
    n = fuzz_native.run(count=INPUTS, seed=7, compare=True, stats=stats)
    assert n == INPUTS == stats["ok"] + stats["batch_error"]
    # the mutations reach all three outcomes, not just the first syntax check
    assert stats["ok"] >= INPUTS // 20 and stats["rejected"] >= INPUTS // 100, stats
    assert stats["batch_error"] >= INPUTS // 4, stats


def test_any_short_bytes():
    r = random.Random(11)
    for _ in range(2000):
        data = bytes(r.randrange(256) for _ in range(r.randrange(1, 40)))
        fuzz_native.TestOneInput(data)
    fuzz_native.TestOneInput(b"")  # nothing to do, no failure


def test_the_target_fails_when_the_decoders_misbehave(monkeypatch):
    """The check is not vacuous: a crash other than BatchError, a disagreement, or JSON Lines
    that do not read back all fail it."""
    batch = next(b for _, fmt, b in fuzz_native.seeds() if fmt == "json")

    class Raises:
        @staticmethod
        def decode(data, fmt, received):
            raise KeyError("boom")

    monkeypatch.setattr(fuzz_native, "_native", Raises)
    with pytest.raises(KeyError):
        fuzz_native.check(batch, "json")

    class Refuses:
        @staticmethod
        def decode(data, fmt, received):
            raise collector.BatchError("malformed_json")

    monkeypatch.setattr(fuzz_native, "_native", Refuses)
    with pytest.raises(fuzz_native.Disagreement):
        fuzz_native.check(batch, "json", compare=True)

    class Garbled:
        @staticmethod
        def decode(data, fmt, received):
            d = _native.decode(data, fmt, received)
            d._jsonl = d.to_jsonl()[:-5] + b"\n"
            d._events = None
            return d

    monkeypatch.setattr(fuzz_native, "_native", Garbled)
    with pytest.raises(Exception) as info:
        fuzz_native.check(batch, "json", compare=False)
    assert not isinstance(info.value, collector.BatchError)
