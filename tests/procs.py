"""Real servers for tests: nats-server with JetStream, `collector serve`, an HTTP receiver.

Each listens on a free loopback port and is stopped by its pid (or closed) when the test ends.
"""

import asyncio
import glob
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from collector.config import toml_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
needs_nats = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server is not installed "
                                "(apt-get install -y nats-server; .ci/run does it)")


KEEP_DAYS = 3650  # the retention of every test's store, unless a test sets its own

# Processes started and not yet stopped: the `stop_leftovers` fixture (conftest) stops them after
# each test, so a test that fails half-way leaves nothing running.
RUNNING: set = set()

# Rows of the fault suite's table: (scenario, sent, accepted, delivered, duplicates removed, lost).
SUMMARY: list[tuple] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class NatsServer:
    """`nats-server -js` on a free loopback port with its store in a temporary directory; it can
    be stopped and started again on the same port and store (an outage)."""

    def __init__(self, store_dir):
        self.store = str(store_dir)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        RUNNING.add(self)
        wait_port(self.port)
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        RUNNING.discard(self)


async def stream_messages(url: str, stream: str = "EVENTS", timeout: float = 5.0):
    """Every message of a JetStream stream: [(Nats-Msg-Id, subject, data)], in stream order."""
    import nats

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(((msg.headers or {}).get("Nats-Msg-Id"), msg.subject, msg.data))
        return out
    finally:
        await nc.close()


class Collector:
    """`collector serve` as a process on a free loopback port, stopped by its pid."""

    def __init__(self, directory, sinks=(), metrics=False, top=None, **sections):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.data = directory / "data"
        self.config = directory / "collector.toml"
        self.metrics_port = free_port() if metrics else 0
        lines = ['listen = "127.0.0.1:0"', f'data_dir = "{self.data}"',
                 f'metrics_listen = "{f"127.0.0.1:{self.metrics_port}" if metrics else ""}"']
        if "http_listen" not in (top or {}):  # off unless asked for: tests run side by side
            lines.append('http_listen = ""')
        lines += [f"{k} = {toml_value(v)}" for k, v in (top or {}).items()]
        # the scenarios' events are of 2026: no test may see them expire as the calendar moves
        sections["analytics"] = {"retention_days": KEEP_DAYS, **sections.get("analytics", {})}
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        for sink in sinks:
            lines.append("[[sinks]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in sink.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.returncode = None
        self.stderr = ""

    def start(self):
        self.err = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=self.err, env=ENV)
        RUNNING.add(self)
        line = self.proc.stdout.readline().decode()
        match = re.search(r"\(port (\d+)\)", line)
        assert match, line + (self.dir / "stderr.log").read_text()
        self.port = int(match.group(1))
        self.target = f"127.0.0.1:{self.port}"
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.wait(timeout)

    def wait(self, timeout=30) -> int | None:
        """Its exit status once it ended (killed at the timeout), with nothing sent to it."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        self.err.close()
        self.proc = None
        RUNNING.discard(self)
        self.returncode = code
        self.stderr = (self.dir / "stderr.log").read_text()
        return code

    def rss_peak_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))

    def output_ids(self) -> list:
        """The event ids in the jsonl sink's files (whole lines), in file order."""
        ids = []
        for path in sorted(glob.glob(str(self.data / "events" / "*.jsonl*"))):
            try:
                with open(path, "rb") as f:
                    whole = f.read().rpartition(b"\n")[0]  # a line being written is not yet there
            except FileNotFoundError:  # a .part closed (renamed) since the listing: read again
                return self.output_ids()
            ids += [json.loads(line)["event_id"] for line in whole.splitlines()]
        return ids

    def wait_output(self, want: set, timeout=20.0) -> set:
        got = set()
        for _ in range(int(timeout / 0.05)):
            got = set(self.output_ids())
            if want <= got:
                break
            time.sleep(0.05)
        return got

    def metric(self, name: str, **labels) -> float:
        """One sample of the Prometheus endpoint (0 if it is not there yet)."""
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.decode().splitlines():
            if line.startswith(name + ("{" + want + "}" if want else " ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


class Receiver:
    """An HTTP receiver for the webhook sink on a free loopback port, in the test's event loop.

    `behave(n)` decides what the n-th request gets: an int status, ("sleep", seconds) to outlast
    the sender's timeout, or (429, retry_after). Every request's signature is checked."""

    def __init__(self, secret: str, behave=None):
        self.secret = secret.encode()
        self.behave = behave or (lambda n: 200)
        self.requests = 0
        self.bad_signatures = 0
        self.deliveries: list[dict] = []  # events of requests answered 2xx, in arrival order
        self.refused: list[dict] = []  # events of requests answered with a final 4xx
        self.statuses: list = []
        self.late = 0  # requests answered after the sender's timeout

    async def _handle(self, request):
        from aiohttp import web

        n = self.requests
        self.requests += 1
        body = await request.read()
        stamp = request.headers.get("X-Timestamp", "")
        want = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers.get("X-Signature", "")) \
                or abs(time.time() - int(stamp or 0)) > 300:
            self.bad_signatures += 1
            self.statuses.append(401)
            return web.Response(status=401, text="bad signature")
        action = self.behave(n)
        self.statuses.append(action)
        if isinstance(action, tuple) and action[0] == "sleep":
            await asyncio.sleep(action[1])
            action = 200  # the sender gave up already: it will send these again
            self.late += 1
        if isinstance(action, tuple):
            return web.Response(status=action[0], headers={"Retry-After": str(action[1])})
        if 200 <= action < 300:
            self.deliveries += json.loads(body)
        elif 400 <= action < 500:
            self.refused += json.loads(body)
        return web.Response(status=action, text="ok" if action < 300 else "no")

    async def __aenter__(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()
