"""The configuration: the shipped example documents every setting, `collector config check` and
`show`, the environment, and a sink whose destination refuses its configuration."""

import asyncio
import pathlib
import re
import subprocess
import sys
import time
import tomllib
import typing

import msgspec
import pytest

from collector import config as configuration
from collector import sinks
from collector.client import Client
from procs import ENV, Collector, NatsServer, needs_nats

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "collector.toml"
BUILT_IN = ("jsonl", "dead_letter", "stdout", "nats", "webhook")


def collector(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, cwd=cwd, timeout=30)


def test_the_example_loads_and_sets_every_setting():
    cfg = configuration.load(str(EXAMPLE), environ={})
    given = tomllib.loads(EXAMPLE.read_text())
    assert set(given) == set(configuration.Config.__struct_fields__)
    for section, struct in configuration.SECTIONS.items():
        assert set(given[section]) == set(struct.__struct_fields__), section
    for rules in given["rules"].values():
        assert set(rules) == set(configuration.Rules.__struct_fields__)
    defaults = configuration.load(environ={}, rules={"8": {}})  # what the example writes out
    assert msgspec.structs.replace(cfg, sinks=[]) == msgspec.structs.replace(defaults, sinks=[])
    assert [sinks.options(e) for e in cfg.sinks] == [sinks.options(e) for e in defaults.sinks]


def test_the_example_shows_every_option_of_every_built_in_sink():
    text = EXAMPLE.read_text()
    for kind in BUILT_IN:
        block = re.search(rf'^#? ?type = "{kind}".*?(?=^#? ?\[\[sinks\]\]|\Z)', text, re.M | re.S)
        assert block, kind
        shown = set(re.findall(r"^#? ?(\w+) =", block.group(0), re.M)) - {"type", "name"}
        assert shown == set(sinks.schema(sinks._class(kind))), kind


def test_environment_names_top_level_settings_before_sections():
    cfg = configuration.load(environ={"COLLECTOR_LOG_LEVEL": "debug", "COLLECTOR_LOG_FORMAT": "json",
                                      "COLLECTOR_LOG_MAX_BYTES": "1000", "COLLECTOR_NO_NATIVE": "1"})
    assert (cfg.log_level, cfg.log_format, cfg.log.max_bytes) == ("debug", "json", 1000)
    with pytest.raises(configuration.ConfigError, match=r"^log.levle: no such setting \(env COLLECTOR_LOG_LEVLE\)$"):
        configuration.load(environ={"COLLECTOR_LOG_LEVLE": "debug"})


def test_retention_is_a_positive_number_of_days_up_to_a_century(tmp_path):
    for raw, problem in [
        ("retention_days = 36501", r"analytics.retention_days: 36501: at most 36500 days"),
        ("retention_days = 0", r"analytics.retention_days: 0: must be positive"),
        ('retention_days_by_project = { "8" = 40000 }',
         r"analytics.retention_days_by_project: project 8: 40000: at most 36500 days"),
        ('retention_days_by_project = { "8" = -1 }',
         r"analytics.retention_days_by_project: project 8: -1: must be positive"),
    ]:
        path = tmp_path / "c.toml"
        path.write_text(f"[analytics]\n{raw}\n")
        with pytest.raises(configuration.ConfigError, match="^" + problem):
            configuration.load(str(path), environ={})
    path.write_text('[analytics]\nretention_days = 36500\nretention_days_by_project = { "8" = 1 }\n')
    assert configuration.load(str(path), environ={}).analytics.retention_days == 36500


def test_config_check(tmp_path):
    out = collector("config", "check", "--config", str(EXAMPLE))
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{EXAMPLE}: ok (2 sinks)\n", "")
    (tmp_path / "c.toml").write_text('[[sinks]]\ntype = "jsonl"\nmax_bytes = "big"\n')
    out = collector("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "collector config: sink jsonl: max_bytes: Expected `int`, got `str` (file c.toml)\n"


def test_config_show_says_where_each_value_came_from(tmp_path):
    (tmp_path / "c.toml").write_text('listen = "127.0.0.1:7000"\n[limits]\nmax_streams = 3\n'
                                     '[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\n')
    out = collector("config", "show", "--config", "c.toml", cwd=tmp_path,
                    env={"COLLECTOR_DEDUP_WINDOW_SECONDS": "60"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 'listen = "127.0.0.1:7000"  # file c.toml' in lines
    assert "max_streams = 3  # file c.toml" in lines
    assert "window_seconds = 60.0  # env COLLECTOR_DEDUP_WINDOW_SECONDS" in lines
    assert 'data_dir = "data"  # default' in lines
    assert 'url = "http://127.0.0.1:9/"  # file c.toml' in lines
    assert "max_events = 500  # default" in lines  # a sink's own defaults, from its signature
    shown = tomllib.loads(out.stdout)  # and it loads back as the same configuration
    again = configuration.load(environ={}, **{k: v for k, v in shown.items() if k != "sinks"},
                               sinks=shown["sinks"])
    assert msgspec.to_builtins(again) == {**msgspec.to_builtins(configuration.load(
        str(tmp_path / "c.toml"), environ={"COLLECTOR_DEDUP_WINDOW_SECONDS": "60"})),
        "sinks": shown["sinks"]}


def test_show_gives_flags_as_their_origin():
    cfg, origins = configuration.resolve(environ={}, listen="127.0.0.1:1")
    assert 'listen = "127.0.0.1:1"  # flag --listen' in configuration.show(cfg, origins)


def test_sink_options_are_converted_to_their_types():
    sink = sinks.load({"type": "webhook", "url": "http://x/", "timeout_seconds": 3}, "data")
    assert sink.timeout == 3.0 and isinstance(sink.timeout, float)
    assert typing.get_type_hints(type(sink).__init__)["timeout_seconds"] is float


@needs_nats
def test_a_stream_jetstream_will_never_create_stops_the_sink_once(tmp_path):
    broker = NatsServer(tmp_path / "nats").start()
    node = Collector(tmp_path / "node", sinks=[{"type": "nats", "url": broker.url, "replicas": 3}],
                     top={"drain_seconds": 0.5}).start()

    async def send():
        async with Client(node.target) as client:
            return (await client.send(b'{"pid":8,"uid":"u","now":1,"pl":[{"euid":"a","ea":0,"t":1}]}')).accepted

    assert asyncio.run(send()) == 1  # ingest goes on: the event waits in the log
    time.sleep(2.0)
    assert node.stop() == 0
    broker.stop()
    said = [line for line in node.stderr.splitlines() if "\"sink\":\"nats\"" in line]
    (error,) = [line for line in said if "\"level\":\"error\"" in line]
    assert "replicas > 1 not supported" in error and "stopped, not retried" in error
    assert not [line for line in said if "retrying" in line]
