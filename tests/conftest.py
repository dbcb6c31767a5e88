import base64
import json
import pathlib

import os

import pytest
from hypothesis import settings

import collector
from collector import _pure

pytest_plugins = ["analytics_fixtures"]  # the analytics stores and scenarios

# HYPOTHESIS_PROFILE=long for a thorough local run.
settings.register_profile("default", max_examples=300)
settings.register_profile("long", max_examples=20000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

VECTORS = pathlib.Path(__file__).parent / "vectors"

try:
    from collector import _crc_native, _idset_native, _native
except ImportError:  # the extension was not built: only the pure twins run
    _native = _crc_native = _idset_native = None

IMPLS = [pytest.param(_pure, id="pure")]
if _native is not None:
    IMPLS.insert(0, pytest.param(_native, id="native"))


@pytest.fixture(params=IMPLS)
def impl(request):
    """Each decoder implementation: `impl.decode(data, format, received_time)`."""
    return request.param


def load_vectors():
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        v = json.loads(path.read_text())
        data = base64.b64decode(v["batch_base64"]) if "batch_base64" in v else v["batch"].encode()
        out.append(pytest.param(v, data, id=path.stem))
    return out


def outcome(impl, data: bytes, fmt: str = "json", received_time: int = 1765000000000):
    """What a decoder makes of a batch, as plain values that compare across implementations."""
    try:
        d = impl.decode(data, fmt, received_time)
    except collector.BatchError as exc:
        return ("batch_error", exc.code)
    return (
        "ok",
        [json.loads(line) for line in d.to_jsonl().splitlines()],
        [(i, r) for i, r in d.rejected],
    )


@pytest.fixture
def server(tmp_path):
    """`server(**config)`: a real `collector serve` in its own directory under the test's."""
    from procs import Collector

    made = []

    def make(**config):
        made.append(Collector(tmp_path / f"c{len(made)}", **config))
        return made[-1]

    yield make  # stop_leftovers stops what a test leaves running


@pytest.fixture(autouse=True)
def stop_leftovers():
    """Stop, by pid, any server a test started and did not stop (it failed half-way)."""
    yield
    from procs import RUNNING

    for proc in list(RUNNING):
        proc.stop()


def pytest_terminal_summary(terminalreporter):
    """The fault suite's table: events sent, accepted, delivered, duplicates removed, lost."""
    from procs import SUMMARY

    if not SUMMARY:
        return
    tr = terminalreporter
    tr.section("faults survived")
    head = ("scenario", "sent", "accepted", "delivered", "dups removed", "lost")
    tr.write_line(f"{head[0]:<32}" + "".join(f"{h:>14}" for h in head[1:]))
    for name, *numbers in SUMMARY:
        tr.write_line(f"{name:<32}" + "".join(f"{n:>14,}" for n in numbers))
