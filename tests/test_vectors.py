"""Every conformance vector, through every decoder, as JSON and as protobuf."""

import json

import msgspec
import pytest

import collector
from conftest import load_vectors


@pytest.mark.parametrize("vector,data", load_vectors())
def test_json(impl, vector, data):
    rt = vector["received_time"]
    if "batch_error" in vector:
        with pytest.raises(collector.BatchError) as exc:
            impl.decode(data, "json", rt)
        assert exc.value.code == vector["batch_error"]
        return
    d = impl.decode(data, "json", rt)
    assert [json.loads(line) for line in d.to_jsonl().splitlines()] == vector["events"]
    assert [{"index": i, "reason": r} for i, r in d.rejected] == vector["rejected"]
    # the event objects say the same as the JSON Lines
    assert msgspec.to_builtins(d.events) == vector["events"]


@pytest.mark.parametrize("vector,data", load_vectors())
def test_protobuf(impl, vector, data):
    if "batch_error" in vector or vector["rejected"]:
        pytest.skip("protobuf carries batches without rejections")
    pb = collector.json_to_protobuf(data)
    d = impl.decode(pb, "protobuf", vector["received_time"])
    assert [json.loads(line) for line in d.to_jsonl().splitlines()] == vector["events"]
    assert d.rejected == []
    assert msgspec.to_builtins(d.events) == vector["events"]


def test_vectors_are_the_contracts():
    """The copy in tests/vectors matches the contract's, where the contract is at hand."""
    import pathlib

    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "vectors"
    if not shared.is_dir():
        pytest.skip("the contract's vectors are not beside this checkout")
    mine = pathlib.Path(__file__).parent / "vectors"
    for path in shared.glob("*.json"):
        assert (mine / path.name).read_bytes() == path.read_bytes(), path.name
