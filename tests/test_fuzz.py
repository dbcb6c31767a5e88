"""A short, seeded fuzz smoke of the native decoder (tests/fuzz_native.py runs it for longer)."""

import pytest

from conftest import _native

pytestmark = [pytest.mark.fuzz, pytest.mark.skipif(_native is None, reason="native decoder not built")]


def test_mutated_batches_never_crash_and_agree():
    from fuzz_native import run

    assert run(count=4000, seed=7) >= 4000
