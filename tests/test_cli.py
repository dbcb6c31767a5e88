"""`collector decode`, run as a user runs it: a subprocess, with the package found via PYTHONPATH."""

import base64
import json
import os
import pty
import subprocess
import sys
import time

import collector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
COMMAND = [sys.executable, "-m", "collector"]

# event 1 has an action code the SPEC does not list: the event is rejected, the batch goes on
GOOD = b'{"pid":1,"uid":"u","now":10,"pl":[{"euid":"a","ea":4,"t":5,"st":"Home"},{"euid":"b","ea":3,"t":5}]}'
CLEAN = b'{"pid":2,"uid":"v","now":10,"pl":[{"euid":"c","ea":0,"t":9}]}'
BAD = b'{"pid":1,"uid":"u","now":10,"pl":[}'  # malformed: the whole batch is refused
NOT_OBJECT = b"[1,2]"


def run(args, stdin=b""):
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True, env=ENV, timeout=60)


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def delimited(messages) -> bytes:
    """Varint length prefixes, as protobuf's writeDelimitedTo writes them."""
    out = b""
    for m in messages:
        n = len(m)
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        out += bytes([n]) + m
    return out


def test_json_lines_events_and_dead_letters(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD + b"\n\n  \n" + BAD + b"\n" + CLEAN + b"\r\n" + NOT_OBJECT + b"\n" + GOOD)
    dead = tmp_path / "dead.jsonl"
    out = run(["decode", "--received-at", "1000", "--dead-letter", str(dead), str(src)])
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""
    expected = [collector.decode(b, received_time=1000).to_jsonl() for b in (GOOD, CLEAN, GOOD)]
    assert out.stdout == b"".join(expected)
    recs = records(dead.read_bytes())
    assert [(r["batch"], r["index"], r["reason"]) for r in recs] == [
        (0, 1, "unknown_action"), (1, None, "malformed_json"), (3, None, "batch_not_object"),
        (4, 1, "unknown_action")]
    assert json.loads(recs[0]["raw"]) == {"euid": "b", "ea": 3, "t": 5}
    assert "message" not in recs[0] and "raw_encoding" not in recs[0]
    assert recs[1]["raw"] == BAD.decode()
    assert isinstance(recs[1]["message"], str) and recs[1]["message"]
    assert recs[2]["raw"] == NOT_OBJECT.decode()


def test_batch_error_raw_is_text_even_for_bad_utf8(tmp_path):
    bad_utf8 = b'{"pid":1,"uid":"\xff","now":1,"pl":[]}'
    out = run(["decode", "--received-at", "1"], stdin=bad_utf8 + b"\n")
    assert out.returncode == 0
    (rec,) = records(out.stderr)
    assert rec["index"] is None and rec["reason"] == "malformed_json"
    assert rec["raw"] == bad_utf8.decode("utf-8", "replace")


def test_stdin_by_default_and_as_dash(tmp_path):
    out = run(["decode", "--received-at", "7"], stdin=GOOD + b"\n")
    assert out.returncode == 0
    assert out.stdout == collector.decode(GOOD, received_time=7).to_jsonl()
    assert [r["reason"] for r in records(out.stderr)] == ["unknown_action"]

    # batches are numbered across all inputs, in the order given
    first = tmp_path / "first.jsonl"
    first.write_bytes(CLEAN + b"\n" + CLEAN + b"\n")
    out = run(["decode", "--received-at", "7", str(first), "-"], stdin=GOOD + b"\n")
    assert out.returncode == 0
    assert out.stdout == (collector.decode(CLEAN, received_time=7).to_jsonl() * 2
                          + collector.decode(GOOD, received_time=7).to_jsonl())
    assert [(r["batch"], r["index"]) for r in records(out.stderr)] == [(2, 1)]


def test_received_time_defaults_to_arrival():
    before = int(time.time() * 1000)
    out = run(["decode"], stdin=CLEAN + b"\n")
    after = int(time.time() * 1000)
    assert out.returncode == 0
    (event,) = records(out.stdout)
    assert before <= event["received_time"] <= after


def test_protobuf_stream(tmp_path):
    pb = collector.json_to_protobuf(GOOD)
    # enough events for a length over 127 bytes: a varint of two bytes
    many = collector.json_to_protobuf(
        b'{"pid":3,"uid":"w","now":10,"pl":['
        + b",".join(b'{"euid":"e%d","ea":0,"t":1}' % i for i in range(40)) + b"]}")
    assert len(many) >= 0x80
    garbage = b"\xff\xff\xff"
    src = tmp_path / "in.bin"
    src.write_bytes(delimited([pb, many, garbage, pb]) + b"\x05ab")  # the last message is cut short
    out = run(["decode", "--format", "protobuf", "--received-at", "3", str(src)])
    assert out.returncode == 0
    decoded = [collector.decode(b, format="protobuf", received_time=3).to_jsonl() for b in (pb, many, pb)]
    assert out.stdout == b"".join(decoded)
    assert decoded[0] == collector.decode(GOOD, received_time=3).to_jsonl()
    recs = records(out.stderr)
    assert [(r["batch"], r["index"], r["reason"]) for r in recs] == [
        (0, 1, "unknown_action"), (2, None, "malformed_json"), (3, 1, "unknown_action"),
        (4, None, "malformed_json")]
    assert all(r["raw_encoding"] == "base64" for r in recs)
    assert base64.b64decode(recs[0]["raw"]) == pb
    assert base64.b64decode(recs[1]["raw"]) == garbage
    assert base64.b64decode(recs[3]["raw"]) == b"ab"
    assert str(src) in recs[3]["message"]


def test_protobuf_stdin_truncated_prefix():
    pb = collector.json_to_protobuf(CLEAN)
    out = run(["decode", "--format", "protobuf", "--received-at", "3"], stdin=delimited([pb]) + b"\x80")
    assert out.returncode == 0
    assert out.stdout == collector.decode(pb, format="protobuf", received_time=3).to_jsonl()
    (rec,) = records(out.stderr)
    assert (rec["batch"], rec["index"], rec["reason"]) == (1, None, "malformed_json")
    assert rec["message"]


def test_exit_codes(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(CLEAN + b"\n")
    missing = tmp_path / "missing.jsonl"
    out = run(["decode", "--received-at", "1", str(missing), str(good)])
    assert out.returncode == 1
    assert b"missing.jsonl" in out.stderr
    assert out.stdout == collector.decode(CLEAN, received_time=1).to_jsonl()  # the others still run

    out = run(["decode", "--dead-letter", str(tmp_path), str(good)])  # a directory
    assert out.returncode == 1 and out.stderr

    assert run(["decode", "--format", "xml"]).returncode == 2
    assert run(["decode", "--received-at", "-1"]).returncode == 2
    assert run(["decode", "--received-at", "soon"]).returncode == 2
    assert run(["decode", "--bogus"]).returncode == 2
    assert run([]).returncode == 2


def _slow_run(args, stderr, chunks, pause=1.3):
    """The CLI fed batch by batch with a pause: more than a second of work, on a tiny input."""
    p = subprocess.Popen([*COMMAND, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=stderr, env=ENV)
    for i, chunk in enumerate(chunks):
        if i:
            time.sleep(pause)
        p.stdin.write(chunk)
        p.stdin.flush()
    p.stdin.close()
    stdout = p.stdout.read()
    return p.wait(timeout=60), stdout


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path):
    err = tmp_path / "err"
    with open(err, "wb") as f:
        rc, stdout = _slow_run(["decode", "--received-at", "1"], f, [GOOD + b"\n"] * 3)
    assert rc == 0
    assert stdout == collector.decode(GOOD, received_time=1).to_jsonl() * 3
    text = err.read_bytes()
    assert b"\r" not in text and b"batches" not in text
    assert [r["batch"] for r in records(text)] == [0, 1, 2]  # nothing but dead-letter records


def test_progress_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    try:
        dead = tmp_path / "dead.jsonl"
        rc, _ = _slow_run(["decode", "--received-at", "1", "--dead-letter", str(dead)], slave,
                          [GOOD + b"\n"] * 3)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert rc == 0
    assert b"\r" in shown and b"3 batches" in shown and b"3 rejected" in shown
    assert len(records(dead.read_bytes())) == 3
