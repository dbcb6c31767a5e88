"""Structured logs: JSON lines with fields, from the formatter and from `collector serve`."""

import asyncio
import json
import logging
import time

from collector.client import Client
from collector.logs import JsonFormatter
from procs import Collector


def test_json_formatter_keeps_extra_fields():
    record = logging.LogRecord("collector.sinks.webhook", logging.WARNING, __file__, 1,
                               "sink %s answered %d", ("hook", 503), None)
    record.sink, record.status = "hook", 503
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["logger"] == "collector.sinks.webhook"
    assert doc["message"] == "sink hook answered 503"
    assert (doc["sink"], doc["status"]) == ("hook", 503)
    assert doc["time"].endswith("Z") and len(doc["time"]) == 24


def test_serve_logs_json_lines_when_not_on_a_terminal(tmp_path):
    node = Collector(tmp_path, sinks=[{"type": "webhook", "url": "http://127.0.0.1:9/nothing",
                                       "max_backoff_seconds": 0.1}],
                     top={"drain_seconds": 0.5}).start()

    async def send():
        async with Client(node.target) as client:
            await client.send(b'{"pid":8,"uid":"u","now":1,"pl":[{"euid":"a","ea":0,"t":1}]}')

    asyncio.run(send())
    time.sleep(1.0)
    assert node.stop() == 0
    lines = [json.loads(line) for line in node.stderr.splitlines()]
    assert any("listening" in d["message"] and d["logger"] == "collector.server" for d in lines)
    retries = [d for d in lines if d.get("sink") == "webhook"]
    assert retries and all(d["level"] == "warning" and d["status"] == 0 for d in retries)
