"""What a new user's mistakes get, run as a user runs them: one line naming the flag or setting
and the problem, exit status 2 for usage and configuration, 1 for a failure at run time, in
seconds, and nothing half started (no data directory, no port left listening)."""

import socket
import subprocess
import sys
import time

import pytest

from procs import ENV, Collector, free_port

COMMAND = [sys.executable, "-m", "collector"]
BATCH = b'{"pid":8,"uid":"u","now":1,"pl":[{"euid":"a","ea":0,"t":1}]}\n'


def run(args, cwd, env=None, timeout=30):
    started = time.monotonic()
    out = subprocess.run([*COMMAND, *args], capture_output=True, cwd=cwd, timeout=timeout,
                         env={**ENV, **(env or {})})
    return out.returncode, out.stderr.decode(), time.monotonic() - started


def fails(args, cwd, status, line, env=None):
    """The command exits with `status` and says exactly `line` on stderr, nothing else."""
    code, err, took = run(args, cwd, env)
    assert (code, err) == (status, line + "\n")
    return took


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def occupied():
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ------------------------------------------------------------------------ send, tail, decode


def test_send_an_input_that_cannot_be_read(tmp_path):
    took = fails(["send", "127.0.0.1:1", "missing.jsonl"], tmp_path, 1,
                 "collector send: missing.jsonl: No such file or directory")
    assert took < 10
    fails(["send", "127.0.0.1:1", "."], tmp_path, 1, "collector send: .: Is a directory")


def test_send_and_tail_to_nothing_give_up_in_seconds(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(BATCH)
    port = free_port()
    for command in (["send", f"127.0.0.1:{port}", "b.jsonl"], ["tail", f"127.0.0.1:{port}"]):
        took = fails([*command, "--connect-timeout", "1"], tmp_path, 1,
                     f"collector {command[0]}: 127.0.0.1:{port}: no connection within 1 s (is a "
                     "collector listening there? with TLS, is --tls-root right?)")
        assert took < 10


def test_send_and_tail_refused_say_why_at_once(tmp_path):
    node = Collector(tmp_path, top={"api_keys": {"k-8": [8]}}).start()
    (tmp_path / "b.jsonl").write_bytes(BATCH)
    unknown = ("UNAUTHENTICATED: missing or unknown API key (authorization: Bearer <key>)")
    assert fails(["send", node.target, "b.jsonl"], tmp_path, 1, f"collector send: {unknown}") < 10
    fails(["tail", node.target], tmp_path, 1, f"collector tail: {unknown}")
    (tmp_path / "other.jsonl").write_bytes(BATCH.replace(b'"pid":8', b'"pid":9'))
    fails(["send", node.target, "other.jsonl", "--api-key", "k-8"], tmp_path, 1,
          "collector send: PERMISSION_DENIED: this API key may not send to project 9")
    fails(["tail", node.target, "--api-key", "k-8", "--project", "9"], tmp_path, 1,
          "collector tail: PERMISSION_DENIED: this API key may not see projects [9]")
    assert node.stop() == 0


def test_send_counts_rejected_batches_and_events_apart(tmp_path):
    node = Collector(tmp_path).start()
    bad_event = BATCH.replace(b'"ea":0', b'"ea":99').replace(b'"a"', b'"b"')
    (tmp_path / "b.jsonl").write_bytes(BATCH + b"{not json\n" + bad_event)
    out = subprocess.run([*COMMAND, "send", node.target, "b.jsonl"], capture_output=True,
                         cwd=tmp_path, env=ENV, timeout=30)
    assert (out.returncode, out.stderr) == (0, b"")
    assert out.stdout == (b'{"batches": 3, "rejected_batches": 1, "refused_batches": 0, '
                          b'"accepted": 1, "duplicate": 0, "filtered": 0, "rejected": 1}\n')
    assert node.stop() == 0


def test_usage_errors_of_send_and_tail(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(BATCH)
    for command in ("send", "tail"):
        fails([command, "127.0.0.1:1", *(["b.jsonl"] if command == "send" else []),
               "--tls-root", "ca.pem"], tmp_path, 2,
              f"collector {command}: --tls-root ca.pem: No such file or directory")
    fails(["tail", "127.0.0.1:1", "--from", "position:abc"], tmp_path, 2,
          "collector tail: --from position:abc: not now, position:N or time:MS")
    fails(["tail", "--nats", "nats://127.0.0.1:1", "--from", "later"], tmp_path, 2,
          "collector tail: --from later: not all, now, position:N or time:MS")


def test_tail_nats_to_nothing_gives_up_in_seconds(tmp_path):
    code, err, took = run(["tail", "--nats", "nats://127.0.0.1:1", "--connect-timeout", "1"], tmp_path)
    assert code == 1 and took < 10
    assert err.startswith("collector tail: nats://127.0.0.1:1: no connection within 1 s (")
    assert err.count("\n") == 1


def test_decode_protobuf_that_is_not_stops_at_a_length_over_the_limit(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\xff" * 7 + b"\x7f" + BATCH)  # a length of 2^56 - 1 bytes
    out = subprocess.run([*COMMAND, "decode", "--format", "protobuf", "b.bin"], capture_output=True,
                         cwd=tmp_path, env=ENV, timeout=30)
    assert out.returncode == 0 and out.stdout == b""
    assert b"a length prefix of 72057594037927935 bytes, over limits.max_message_bytes (4194304)" \
        in out.stderr


# ------------------------------------------------------------------------------------- serve


def serve_fails(tmp_path, line, config="", env=None, flags=()):
    """`collector serve` refuses at once with `line`, leaving no data directory behind."""
    (tmp_path / "c.toml").write_text('data_dir = "data"\nmetrics_listen = ""\nlisten = "127.0.0.1:0"\n'
                                     + config)
    fails(["serve", "--config", "c.toml", *flags], tmp_path, 2, f"collector serve: {line}", env)
    assert not (tmp_path / "data").exists()


def test_serve_ports_in_use(tmp_path, occupied):
    metrics = free_port()
    serve_fails(tmp_path, f"listen 127.0.0.1:{occupied}: address already in use",
                flags=["--listen", f"127.0.0.1:{occupied}", "--metrics-listen", f"127.0.0.1:{metrics}"])
    assert bindable(metrics)
    serve_fails(tmp_path, f"metrics_listen 127.0.0.1:{occupied}: address already in use",
                flags=["--metrics-listen", f"127.0.0.1:{occupied}"])


def test_serve_bad_data_dir_and_tls_files(tmp_path):
    (tmp_path / "file").write_text("")
    port = free_port()
    (tmp_path / "c.toml").write_text(f'data_dir = "file/data"\nlisten = "127.0.0.1:{port}"\n'
                                     'metrics_listen = ""\n')
    fails(["serve", "--config", "c.toml"], tmp_path, 2,
          "collector serve: data_dir file/data: not a directory")
    assert bindable(port)
    serve_fails(tmp_path, "tls.cert server.pem: no such file or directory",
                '[tls]\ncert = "server.pem"\nkey = "server.key"\n')
    serve_fails(tmp_path, "tls.cert: needs tls.key too (file c.toml)", '[tls]\ncert = "server.pem"\n')


@pytest.mark.parametrize("config, line", [
    ('[[sinks]]\ntype = "kafka"\n', "sinks: no sink type 'kafka' (built in: jsonl, dead_letter, "
     "stdout, nats, webhook, store; others are entry points of the collector.sinks group) (file c.toml)"),
    ('[[sinks]]\ntype = "jsonl"\nmax_size = 1\n', "sink jsonl: no option 'max_size' (it takes: "
     "directory, max_bytes, max_seconds, fsync, linger_seconds) (file c.toml)"),
    ('[[sinks]]\ntype = "jsonl"\nmax_bytes = "1MB"\n',
     "sink jsonl: max_bytes: Expected `int`, got `str` (file c.toml)"),
    ('[[sinks]]\ntype = "stdout"\nmax_bytes = 1\n',
     "sink stdout: no option 'max_bytes' (it takes: none) (file c.toml)"),
    ('[[sinks]]\ntype = "webhook"\n', "sink webhook: option 'url' is required (file c.toml)"),
    ('[[sinks]]\ntype = "jsonl"\n[[sinks]]\ntype = "jsonl"\ndirectory = "more"\n',
     "sink jsonl: sinks[0] has this name too: give each sink its own `name` (file c.toml)"),
    ('[rules.abc]\ndeny = ["touch.*"]\n', "rules.abc: not a project id (a number) (file c.toml)"),
    ('[rules.8]\ndenny = ["touch.*"]\n', "rules.8.denny: no such setting (file c.toml)"),
    ('[limits]\nmax_streams = 0\n', "limits.max_streams: 0: must be positive (file c.toml)"),
    ('[analytics]\nretention_days_by_project = { x = 3 }\n',
     "analytics.retention_days_by_project.x: not a project id (a number) (file c.toml)"),
    ('log_format = "xml"\n', "log_format: 'xml' is not one of 'auto', 'json', 'text' (file c.toml)"),
])
def test_serve_configuration_mistakes(tmp_path, config, line):
    serve_fails(tmp_path, line, config)


def test_serve_environment_and_flag_mistakes(tmp_path):
    serve_fails(tmp_path, "COLLECTOR_LISTNE: no such setting (environment)",
                env={"COLLECTOR_LISTNE": "127.0.0.1:1"})
    serve_fails(tmp_path, "limits.max_streams: Expected `int`, got `str` "
                "(env COLLECTOR_LIMITS_MAX_STREAMS)", env={"COLLECTOR_LIMITS_MAX_STREAMS": "many"})
    serve_fails(tmp_path, "listen: '50051' is not host:port (flag --listen)", flags=["--listen", "50051"])
    fails(["serve", "--config", "nothing.toml"], tmp_path, 2,
          "collector serve: --config nothing.toml: no such file or directory")
