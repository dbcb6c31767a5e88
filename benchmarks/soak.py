"""The long soak: mixed traffic into a real `collector serve` for `--minutes` while it is killed
with SIGKILL at random times, its data directory's filesystem fills up, and nats-server goes
away and comes back; at the end every event the collector acknowledged must be in every sink.

    sudo python benchmarks/soak.py [--minutes 30] [--seed 1] [--rate 1500] [--keep DIR]

The collector runs with four sinks besides the analytics store (DuckDB): jsonl, dead_letter, a
webhook to a local receiver (tests/procs.Receiver) that answers 500 or stalls now and then, and
NATS JetStream on a real nats-server. Several IngestStreams of the project's client send JSON
and protobuf batches at a paced rate (`--rate` events per second in all): a few events are
invalid (dead letters, never acknowledged), a few batches are refused whole, some batch ids are
sent again with the same bytes and some events again under their first id in a later batch. An
event is acknowledged when its batch's final reply accepted it.

The data directory is a tmpfs of its own (root is needed to mount it; without, the disk-full
episode is skipped and said so): a ballast file fills it, ingest must be refused with a retry
hint (never acknowledged and lost), then the ballast goes and ingest resumes. nats-server is
stopped for a while and started again on the same store. After the traffic, the sinks drain
(lag 0 in /metrics, bounded), and each sink is read back by event id: the jsonl files, the
webhook receiver's record, the JetStream stream, the store's export over HTTP and the DuckDB
file after the collector stopped. jsonl, webhook and NATS are at-least-once (a SIGKILL may make
a sink deliver again what it delivered just before; a batch resent after a restart is logged
again, since replies and dedup are per process): their duplicates are counted. The store and its
export hold each event once. The exit status is 1 when any acknowledged event is missing from
any sink, or held twice by the store or its export; a table of figures is printed either way.
"""

import argparse
import asyncio
import collections
import glob
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from collector import json_to_protobuf  # noqa: E402
from collector.client import Client  # noqa: E402
from procs import NATS_SERVER, Collector, NatsServer, Receiver, free_port  # noqa: E402

SECRET = "soak-secret"
PROJECTS = (8, 12)


class Ids(collections.Counter):
    """Stands in for Receiver.deliveries: counts event ids instead of keeping whole events."""

    def __iadd__(self, events):
        for e in events:
            self[e["eventId"]] += 1
        return self


class Traffic:
    """Batches for one stream, and what became of them."""

    def __init__(self, stream: int, rng: random.Random, stats: dict):
        self.stream = stream
        self.rng = rng
        self.stats = stats
        self.n = 0
        self.pending: dict = {}  # batch id -> (request, header, events) until its final reply
        self.answered = collections.deque(maxlen=300)  # the latest of those answered (for resends)
        self.batches: dict = {}  # batch id -> (header, [event dict]) of accepted batches (for copies)
        self.acked: set = set()
        self.rejected: set = set()  # (batch id, index) of events refused one by one
        self.refused: set = set()  # batch ids refused whole
        self.sent_ids: set = set()

    def event(self, eid: str, k: int, now: int) -> dict:
        r = self.rng.random()
        t = now - self.rng.randint(0, 5000)
        if r < 0.4:
            return {"euid": eid, "ea": 4, "t": t, "st": self.rng.choice(["Home", "Café", "Поиск"]),
                    "sl": self.rng.randint(10, 3000)}
        if r < 0.75:
            return {"euid": eid, "ea": 6, "t": t, "tvid": f"btn_{k % 7}"}
        return {"euid": eid, "ea": 20, "t": t, "ac": "poll.voted", "lb": "vote",
                "pr": {"pollId": f"p{k % 9}", "option": self.rng.randint(0, 3), "name": "Ødegaard"}}

    def request(self):
        """The next request: usually a new batch; now and then one sent before, again."""
        rng = self.rng
        if self.answered and rng.random() < 0.02:
            self.stats["resent_batch_ids"] += 1
            sent = self.answered[rng.randrange(len(self.answered))]
            self.answered.remove(sent)  # not twice at once: the client keys pending by batch id
            self.pending[sent[0].batch_id] = sent
            return sent[0]
        self.n += 1
        batch_id = f"s{self.stream}-{self.n}"
        now = int(time.time() * 1000)
        size = rng.randint(10, 60)
        pl = [self.event(f"{batch_id}-{i}", i, now) for i in range(size)]
        header = {"pid": rng.choice(PROJECTS), "uid": f"u{rng.randint(1, 500)}", "sn": 1}
        if self.batches and rng.random() < 0.03:  # events sent again under their ids
            header, old = self.batches[rng.choice(list(self.batches))]
            pl += old[:rng.randint(1, 3)]
            self.stats["copied_events"] += 1
        invalid = rng.random() < 0.05
        if invalid:
            pl.insert(rng.randrange(len(pl)), {"euid": f"{batch_id}-bad", "ea": 6, "t": "soon"})
        doc = {**header, "now": now, "pl": pl}
        if rng.random() < 0.005:
            del doc["uid"]  # refused whole: missing_field:uid
        data = json.dumps(doc, ensure_ascii=False).encode()
        self.sent_ids.update(e["euid"] for e in pl)
        if not invalid and "uid" in doc and rng.random() < 0.5:
            self.stats["protobuf_batches"] += 1
            req = Client.request(json_to_protobuf(data), format="protobuf", batch_id=batch_id)
        else:
            req = Client.request(data, batch_id=batch_id)
        self.pending[batch_id] = (req, header, pl)
        return req

    def settle(self, reply) -> None:
        sent = self.pending.pop(reply.batch_id)
        _, header, pl = sent
        if reply.batch_error or reply.status:
            self.refused.add(reply.batch_id)
            return
        refused = {}
        for r in reply.results:
            refused[r.index] = r.code
            if r.code not in ("duplicate", "filtered"):
                self.rejected.add((reply.batch_id, r.index))
        kept = [e for i, e in enumerate(pl) if i not in refused]
        self.acked.update(e["euid"] for e in kept)
        self.answered.append(sent)
        if len(self.batches) < 200:
            self.batches[reply.batch_id] = (header, [e for e in kept if e.get("t") != "soon"])


async def stream_traffic(target, traffic: Traffic, rate: float, until: float, stats: dict):
    """One IngestStream sending `rate` events a second until `until` (monotonic)."""
    async def requests():
        start = time.monotonic()
        sent = 0
        while time.monotonic() < until:
            req = traffic.request()
            stats["batches_sent"] += 1
            sent += len(traffic.pending[req.batch_id][2])  # before the yield: its reply may come first
            yield req
            lag = start + sent / rate - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
            elif lag < -1.0:  # held up (a kill, a full disk): no burst to catch up
                start, sent = time.monotonic(), 0

    async with Client(target, max_attempts=10 ** 6, max_in_flight=32) as client:
        async for reply in client.stream(requests()):
            traffic.settle(reply)
            stats["replies"] += 1


def metrics_text(node) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5).read().decode()


def refusals(node) -> collections.Counter:
    """Batches refused so far by this process, by status (resource_exhausted, unavailable, ...)."""
    out = collections.Counter()
    for line in metrics_text(node).splitlines():
        m = re.match(r'collector_batches_total\{outcome="refused",reason="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] += int(float(m.group(2)))
    return out


def lags(node) -> dict:
    out = {}
    for line in metrics_text(node).splitlines():
        m = re.match(r'collector_sink_lag_bytes\{sink="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return 0


async def nats_counts(url: str) -> collections.Counter:
    """How many messages of the stream carry each Nats-Msg-Id."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("events.>", stream="EVENTS", config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1))
        counts = collections.Counter()
        total = (await js.stream_info("EVENTS")).state.messages
        seen = 0
        while seen < total:
            try:
                msgs = await sub.fetch(5000, timeout=5)
            except TimeoutError:
                break
            for m in msgs:
                counts[(m.headers or {}).get("Nats-Msg-Id")] += 1
            seen += len(msgs)
        return counts
    finally:
        await nc.close()


def export_counts(port: int) -> collections.Counter:
    """Event ids in the store's raw export over HTTP, every project."""
    counts = collections.Counter()
    for project in PROJECTS:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("GET", f"/v1/analytics/events?projectId={project}&format=jsonl"
                            "&from=2000-01-01&to=2100-01-01")
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"export: {resp.status} {resp.read()[:300]!r}")
        rest = b""
        while chunk := resp.read(1 << 20):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            counts.update(json.loads(line)["event_id"] for line in lines if line)
        if rest.strip():
            counts[json.loads(rest)["event_id"]] += 1
        conn.close()
    return counts


def store_counts(path: str) -> collections.Counter:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        return collections.Counter(dict(con.execute(
            "SELECT event_id, count(*) FROM events GROUP BY event_id").fetchall()))
    finally:
        con.close()


def dead_letters(data: pathlib.Path) -> set:
    out = set()
    for path in glob.glob(str(data / "dead_letter" / "*.jsonl*")):
        with open(path, "rb") as f:
            for line in f.read().rpartition(b"\n")[0].splitlines():
                rec = json.loads(line)
                out.add((rec.get("batch_id"), rec.get("index")))
    return out


def check(senders) -> None:
    """A sender that failed stops the soak at once, with its error."""
    for task in senders:
        if task.done() and task.exception() is not None:
            raise task.exception()


def mount_tmpfs(path: pathlib.Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def fill(path: pathlib.Path) -> pathlib.Path:
    """A ballast file taking every free byte of path's filesystem."""
    ballast = path / "ballast"
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(ballast, "wb", buffering=0) as f:
        try:
            os.posix_fallocate(f.fileno(), 0, free)
        except OSError:
            pass
        try:  # what fallocate left (rounding, the collector's writes meanwhile): until ENOSPC
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return ballast


def schedule(rng: random.Random, seconds: float, minutes: float):
    """(kill times, disk-full window, NATS outage window), in seconds from the start."""
    disk = (0.35 * seconds, 0.35 * seconds + max(20.0, 0.05 * seconds))
    nats = (0.6 * seconds, 0.6 * seconds + max(20.0, 0.08 * seconds))
    kills = []
    want = max(2, round(minutes / 3))
    while len(kills) < want:
        t = rng.uniform(0.05 * seconds, 0.92 * seconds)
        if disk[0] - 10 < t < disk[1] + 10 or any(abs(t - k) < 15 for k in kills):
            continue
        kills.append(t)
    return sorted(kills), disk, nats


async def soak(args, work: pathlib.Path) -> int:
    rng = random.Random(args.seed)
    seconds = args.minutes * 60
    stats = collections.Counter()
    kills, disk, outage = schedule(rng, seconds, args.minutes)
    data_fs = work / "c" / "data"
    # about 1.6 KB per event on disk (the log, jsonl files, the store), and room
    size = max(256 << 20, int(args.rate * seconds * 2000) + (256 << 20))
    tmpfs = mount_tmpfs(data_fs, size)
    if not tmpfs:
        print("not root or no tmpfs: the disk-full episode is skipped", file=sys.stderr)
    broker = NatsServer(work / "nats").start()
    behave_rng = random.Random(args.seed + 1)

    def behave(n):
        x = behave_rng.random()
        return 500 if x < 0.03 else ("sleep", 1.5) if x < 0.04 else 200

    rx = Receiver(SECRET, behave)
    rx.deliveries = Ids()
    await rx.__aenter__()
    http_port = free_port()
    node = Collector(work / "c", metrics=True, top={"http_listen": f"127.0.0.1:{http_port}"}, sinks=[
        {"type": "jsonl", "max_bytes": 64 << 20, "max_seconds": 60},
        {"type": "dead_letter"},
        {"type": "webhook", "url": rx.url, "secret": SECRET, "max_events": 500,
         "linger_seconds": 0.2, "timeout_seconds": 1.0, "max_backoff_seconds": 2.0},
        {"type": "nats", "url": broker.url, "ack_timeout": 2.0, "replicas": 1}])
    port = free_port()  # fixed, so that clients find the collector again after a restart
    node.config.write_text(node.config.read_text().replace('listen = "127.0.0.1:0"',
                                                           f'listen = "127.0.0.1:{port}"'))
    rss = 0
    failed = 0
    try:
        await asyncio.to_thread(node.start)
        start = time.monotonic()
        until = start + seconds
        streams = [Traffic(k, random.Random(args.seed * 100 + k), stats) for k in range(args.streams)]
        senders = [asyncio.ensure_future(stream_traffic(node.target, t, args.rate / args.streams,
                                                        until, stats)) for t in streams]
        disk_refused = collections.Counter()
        outage_seconds = 0.0
        events = sorted([(t, "kill") for t in kills] + [(disk[0], "fill"), (disk[1], "unfill"),
                                                        (outage[0], "nats_down"), (outage[1], "nats_up")])
        ballast = None
        refused_before = collections.Counter()
        down_at = 0.0
        for at, what in events:
            while time.monotonic() < start + at:
                check(senders)
                rss = max(rss, rss_kb(node.proc.pid))
                await asyncio.sleep(min(1.0, start + at - time.monotonic()))
            rss = max(rss, rss_kb(node.proc.pid))
            print(f"[{time.monotonic() - start:7.1f}s] {what}  acked so far "
                  f"{sum(len(t.acked) for t in streams)}", flush=True)
            if what == "kill":
                node.stop(signal.SIGKILL)
                stats["kills"] += 1
                await asyncio.sleep(rng.uniform(0.2, 3.0))
                await asyncio.to_thread(node.start)
            elif what == "fill" and tmpfs:
                refused_before = refusals(node)
                ballast = await asyncio.to_thread(fill, data_fs)
            elif what == "unfill" and ballast is not None:
                disk_refused = refusals(node) - refused_before
                ballast.unlink()
                ballast = None
            elif what == "nats_down":
                broker.stop(signal.SIGKILL)
                down_at = time.monotonic()
            elif what == "nats_up":
                broker.start()
                outage_seconds = time.monotonic() - down_at
        while time.monotonic() < until:
            check(senders)
            rss = max(rss, rss_kb(node.proc.pid))
            await asyncio.sleep(1.0)
        print(f"[{time.monotonic() - start:7.1f}s] traffic ends; waiting for the replies", flush=True)
        await asyncio.wait_for(asyncio.gather(*senders), timeout=600)

        acked = set().union(*(t.acked for t in streams))
        rejected = set().union(*(t.rejected for t in streams))
        refused = set().union(*(t.refused for t in streams))
        sent_ids = set().union(*(t.sent_ids for t in streams))
        bad_ids = {i for i in sent_ids if i.endswith("-bad")}

        unanswered = sum(len(t.pending) for t in streams)  # a request taken and never settled
        failed |= bool(unanswered)
        drain_start = time.monotonic()
        while time.monotonic() - drain_start < max(300, seconds / 3):
            rss = max(rss, rss_kb(node.proc.pid))
            lag = lags(node)
            if lag and not any(lag.values()) and acked <= set(rx.deliveries):
                break
            await asyncio.sleep(1.0)
        drain_seconds = time.monotonic() - drain_start
        print(f"drained in {drain_seconds:.0f}s: {lags(node)}", flush=True)
        await asyncio.sleep(1.0)

        jsonl = collections.Counter(node.output_ids())
        nats_ids = await nats_counts(broker.url)
        exported = await asyncio.to_thread(export_counts, http_port)
        dead = dead_letters(node.data)
        rss = max(rss, rss_kb(node.proc.pid))
        node.stop()
        store = store_counts(str(node.data / "analytics.duckdb"))

        rows = []
        for name, counts, exact in (("jsonl", jsonl, False), ("webhook", rx.deliveries, False),
                                    ("nats", nats_ids, False), ("store export (HTTP)", exported, True),
                                    ("store file (DuckDB)", store, True)):
            got = set(counts)
            missing = len(acked - got)
            dups = sum(c - 1 for c in counts.values() if c > 1)
            stray = len((got - acked) - (sent_ids - bad_ids))  # never sent at all
            never_acked = len(got & bad_ids)  # invalid events must not be delivered
            bad = missing or stray or never_acked or (exact and dups)
            failed |= bool(bad)
            rows.append((name, len(got & acked), missing, dups, stray + never_acked))
        dead_missing = len({(b, i) for b, i in rejected} - dead) + len({(b, None) for b in refused} - dead)
        failed |= bool(dead_missing)

        def line(k, v):
            print(f"| {k:<40} | {v:>14} |")

        print()
        print(f"| {f'soak (seed {args.seed})':<40} | {'':>14} |")
        print(f"|{'-' * 42}|{'-' * 15}:|")
        line("minutes", f"{args.minutes:g}")
        line("streams / paced rate (events/s)", f"{args.streams} / {args.rate:g}")
        line("batches sent (incl. resends)", stats["batches_sent"])
        line("batches acknowledged (final reply OK)", stats["replies"] - len(refused))
        line("batches refused whole (batch error)", len(refused))
        line("batches never answered (must be 0)", unanswered)
        line("batch ids sent again / events copied", f"{stats['resent_batch_ids']} / {stats['copied_events']}")
        line("protobuf batches", stats["protobuf_batches"])
        line("events acknowledged", len(acked))
        line("events rejected (dead letter)", len(rejected))
        line("dead letters missing", dead_missing)
        line("SIGKILLs (restarts)", stats["kills"])
        line("disk-full refusals (retried)", sum(disk_refused.values()) if tmpfs else "skipped")
        for reason, n in sorted(disk_refused.items()):
            line(f"  of which {reason.upper()}", n)
        line("NATS outage seconds", f"{outage_seconds:.0f}")
        line("drain after traffic (s)", f"{drain_seconds:.0f}")
        line("server RSS max (MB)", f"{rss / 1024:.0f}")
        print()
        print("| sink | delivered | missing | duplicates | not acknowledged |")
        print("|---|---:|---:|---:|---:|")
        for name, delivered, missing, dups, stray in rows:
            print(f"| {name} | {delivered} | {missing} | {dups} | {stray} |")
        print()
        print("FAILED: acknowledged events missing or held twice" if failed else "OK: nothing lost")
        return 1 if failed else 0
    finally:
        node.stop()
        broker.stop()
        await rx.__aexit__()
        if tmpfs:  # the data directory goes with it, --keep or not
            subprocess.run(["umount", "-l", str(data_fs)], capture_output=True)


def _interrupt(*_):
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=1500.0, help="events per second, all streams")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--keep", help="work in this directory and leave it (default: a temporary one); "
                   "the data directory is a tmpfs, unmounted at the end")
    args = p.parse_args()
    if NATS_SERVER is None:
        print("soak: nats-server is not installed", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by its pid: still stop what it started
    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="soak."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(soak(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
