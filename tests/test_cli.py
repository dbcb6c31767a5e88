"""`collector decode`, run as a user runs it."""

import json
import os
import subprocess
import sys

import collector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

GOOD = b'{"pid":1,"uid":"u","now":10,"pl":[{"euid":"a","ea":4,"t":5,"st":"Home"},{"euid":"b","ea":3,"t":5}]}'
BAD = b'{"pid":1,"uid":"u","now":10,"pl":[}'


def run(args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "collector", *args], input=stdin,
                          capture_output=True, env=ENV, timeout=60)


def test_decode_json_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD + b"\n\n" + BAD + b"\n" + GOOD + b"\n")
    dead = tmp_path / "dead.jsonl"
    out = run(["decode", "--received-at", "1000", "--dead-letter", str(dead), str(src)])
    assert out.returncode == 0, out.stderr
    expected = collector.decode(GOOD, received_time=1000).to_jsonl()
    assert out.stdout == expected * 2
    records = [json.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["batch"], r["index"], r["reason"]) for r in records] == [
        (0, 1, "unknown_action"), (1, None, "malformed_json"), (2, 1, "unknown_action")]
    assert json.loads(records[0]["raw"]) == {"euid": "b", "ea": 3, "t": 5}
    assert records[1]["raw"] == BAD.decode() and "byte" in records[1]["message"]


def test_decode_stdin_and_dead_letter_on_stderr():
    out = run(["decode", "--received-at", "7"], stdin=GOOD + b"\n")
    assert out.returncode == 0
    assert out.stdout == collector.decode(GOOD, received_time=7).to_jsonl()
    assert json.loads(out.stderr.splitlines()[0])["reason"] == "unknown_action"


def _delimited(messages):
    out = b""
    for m in messages:
        n = len(m)
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        out += bytes([n]) + m
    return out


def test_decode_protobuf_stream(tmp_path):
    pb = collector.json_to_protobuf(GOOD)
    src = tmp_path / "in.bin"
    src.write_bytes(_delimited([pb, pb]) + b"\x05ab")  # the last message is cut short
    out = run(["decode", "--format", "protobuf", "--received-at", "3", str(src)])
    assert out.returncode == 0
    assert out.stdout == collector.decode(pb, format="protobuf", received_time=3).to_jsonl() * 2
    records = [json.loads(line) for line in out.stderr.splitlines()]
    assert [r["reason"] for r in records] == ["unknown_action", "unknown_action", "malformed_json"]
    assert records[0]["raw_encoding"] == "base64"


def test_exit_codes(tmp_path):
    assert run(["decode", str(tmp_path / "missing.jsonl")]).returncode == 1
    assert run(["decode", "--format", "xml"]).returncode == 2
    assert run([]).returncode == 2
