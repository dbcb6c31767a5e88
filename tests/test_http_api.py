"""The HTTP API of a real `collector serve` (ANALYTICS.md): its metrics against the scenarios'
answers, the raw export in every format against the events stored, streaming with flat memory,
every kind of bad input, the loopback-only rule, TLS, deletions' routes, and the live viewer
count moving as batches arrive over gRPC."""

import asyncio
import csv
import http.client
import io
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

from analytics_fixtures import event_lines, same, scenario
from collector.analytics.rows import id_attribute
from reference_rows import country
from procs import ENV, RUNNING, Collector, free_port, wait_port

TOKEN, TOKEN_8 = "tok-8-12", "tok-8"
TOKENS = {TOKEN: [8, 12], TOKEN_8: [8]}
BIG_EVENTS = 60_000  # about 160 MB of JSON Lines: far more than the export may hold


def start(directory, events: list[str] | None = None, tokens=TOKENS, **kw) -> Collector:
    """`collector serve` with an HTTP port, `events` (JSON Lines) imported into its store."""
    port = free_port()
    top = {"http_listen": f"127.0.0.1:{port}", **({"admin_tokens": tokens} if tokens else {})}
    c = Collector(directory, top=top, **kw)
    if events:
        path = directory / "events.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in events)
        subprocess.run([sys.executable, "-m", "collector", "import", "--config", str(c.config),
                        str(path)], check=True, env=ENV, capture_output=True)
    c.start()
    wait_port(port)
    c.http_port = port
    return c


def shared(c: Collector):
    """A server for the whole module: the per-test cleanup leaves it running."""
    RUNNING.discard(c)
    return c


def get(c: Collector, path: str, params=None, token=TOKEN, method="GET", headers=None):
    """(status, headers, body) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=120)
    url = path + ("?" + urllib.parse.urlencode(params) if params else "")
    h = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request(method, url, headers={**h, **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body


def get_json(c, path, params=None, **kw):
    status, headers, body = get(c, path, params, **kw)
    assert headers["Content-Type"].startswith("application/json"), (status, body)
    return status, json.loads(body)


def stderr(c: Collector) -> str:
    return (c.dir / "stderr.log").read_text()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# ------------------------------------------------------------------------------ the show


@pytest.fixture(scope="module")
def show(tmp_path_factory):
    """A collector with the small show imported; (server, the events as stored, in order)."""
    events = scenario("show_small")["events"]
    c = shared(start(tmp_path_factory.mktemp("show"), event_lines(events)))
    first = {}
    for e in events:  # the first copy of each (project, event id) is kept
        first.setdefault((e["project_id"], e["event_id"]), e)
    stored = sorted(first.values(), key=lambda e: (e["time"], e["event_id"]))
    try:
        yield c, stored
    finally:
        c.stop()


def flat(e: dict) -> list:
    """The CSV row of an event, worked out here: leaves in key order, `params` as JSON."""
    out = []
    for k, v in e.items():
        if isinstance(v, dict) and k != "params":
            out += flat(v)
        else:
            out.append(json.dumps(v, ensure_ascii=False, separators=(",", ":")) if k == "params" else v)
    return out


def leaves(e: dict, prefix="") -> list[str]:
    return [n for k, v in e.items() for n in (leaves(v, prefix + k + ".")
                                               if isinstance(v, dict) and k != "params" else [prefix + k])]


def cell(v) -> str:
    return "" if v is None else v if isinstance(v, str) else json.dumps(v)


def test_every_metric_answers_the_scenario(show):
    pytest.importorskip("collector.analytics.metrics")
    c, _ = show
    queries = scenario("show_small")["queries"]
    assert {q["path"].rsplit("/", 1)[1] for q in queries} >= {
        "viewers", "engagement", "polls", "sponsors", "revenue", "funnel", "activity"}
    for q in queries:
        status, body = get_json(c, q["path"], {k: str(v) for k, v in q["params"].items()})
        assert status == 200, (q, body)
        body.pop("ignored_filters", None)  # the scenarios leave it out (tests/test_metrics_scenarios.py checks it)
        same(body, q["expect"], q["path"])


def test_jsonl_export_is_the_stored_events_byte_for_byte_in_order(show):
    c, stored = show
    want = [line for e, line in zip(stored, event_lines(stored)) if e["project_id"] == 8]
    status, headers, body = get(c, "/v1/analytics/events", {"projectId": 8})
    assert status == 200
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Content-Disposition"] == 'attachment; filename="events-8.jsonl"'
    assert body == "".join(line + "\n" for line in want).encode()
    assert len(want) > 1000


def test_json_csv_and_parquet_hold_the_same_events(show, tmp_path):
    import duckdb

    c, stored = show
    want = [e for e in stored if e["project_id"] == 12]
    assert want
    status, headers, body = get(c, "/v1/analytics/events", {"projectId": 12, "format": "json"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == want

    status, headers, body = get(c, "/v1/analytics/events", {"projectId": 12, "format": "csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert b"\r\n" in body  # RFC 4180 line ends
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert rows[0] == leaves(want[0])
    assert rows[0][21] == "device.locale" and rows[0][-1] == "params"
    assert rows[1:] == [[cell(v) for v in flat(e)] for e in want]

    status, headers, body = get(c, "/v1/analytics/events", {"projectId": 12, "format": "parquet"})
    assert status == 200 and headers["Content-Disposition"].endswith('events-12.parquet"')
    path = tmp_path / "events.parquet"
    path.write_bytes(body)
    con = duckdb.connect()
    got = con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
    assert [d[0] for d in con.description] == leaves(want[0])
    assert [list(r) for r in got] == [flat(e) for e in want]


def test_export_filters(show):
    c, stored = show
    mine = [e for e in stored if e["project_id"] == 8]
    user = next(e["user_id"] for e in mine if e["action"] == "poll.voted")

    def ids(params):
        status, _, body = get(c, "/v1/analytics/events", {"projectId": 8, **params})
        assert status == 200, body
        return [json.loads(line)["event_id"] for line in body.splitlines()]

    def want(keep):
        return [e["event_id"] for e in mine if keep(e)]

    assert ids({"action": "poll.*"}) == want(lambda e: e["action"].startswith("poll."))
    assert ids({"action": "poll.voted"}) == want(lambda e: e["action"] == "poll.voted")
    assert ids({"action": "[pc]*.v?ewed"}) == want(
        lambda e: e["action"][0] in "pc" and re.fullmatch(r".*\.v.ewed", e["action"]))
    assert ids({"action": "poll_voted"}) == []  # `_` and `%` are no wildcards
    assert ids({"action": "%"}) == []
    assert ids({"userId": user}) == want(lambda e: e["user_id"] == user)
    assert ids({"userId": user, "action": "poll.*"}) == want(
        lambda e: e["user_id"] == user and e["action"].startswith("poll."))
    assert ids({"campaignId": "35"}) == want(lambda e: id_attribute(e["params"].get("campaignId")) == "35")
    assert ids({"country": "NO"}) == want(lambda e: country(e["device"]["locale"]) == "NO")
    lo, hi = 1773262000000, 1773264000000
    assert ids({"from": lo, "to": hi}) == want(lambda e: lo <= e["time"] < hi)
    assert ids({"from": "2026-03-12", "to": "2026-03-12"}) == want(
        lambda e: 1773273600000 <= e["time"] < 1773360000000)
    assert ids({"userId": "nobody"}) == []
    status, _, body = get(c, "/v1/analytics/events", {"projectId": 8, "userId": "nobody", "format": "json"})
    assert json.loads(body) == []
    status, _, body = get(c, "/v1/analytics/events", {"projectId": 8, "userId": "nobody", "format": "csv"})
    assert body.decode().splitlines() == [",".join(leaves(mine[0]))]


BAD = [  # (path, params, token, status, error, parameter)
    ("/v1/analytics/events", {"projectId": 8, "bogus": 1}, TOKEN, 400, "unknown_parameter", "bogus"),
    ("/v1/analytics/events", {"projectId": 8, "from": "yesterday"}, TOKEN, 400, "bad_time", "from"),
    ("/v1/analytics/events", {"projectId": 8, "to": "2026-13-01"}, TOKEN, 400, "bad_time", "to"),
    ("/v1/analytics/events", {"projectId": 8, "from": "2026-03-02", "to": "2026-03-01"}, TOKEN,
     400, "bad_range", "from"),
    ("/v1/analytics/events", {"projectId": 8, "from": 5, "to": 5}, TOKEN, 400, "bad_range", "from"),
    ("/v1/analytics/events", {"projectId": 8, "format": "xml"}, TOKEN, 400, "bad_parameter", "format"),
    ("/v1/analytics/events", {"projectId": 8, "userId": ""}, TOKEN, 400, "bad_parameter", "userId"),
    ("/v1/analytics/events", {"projectId": "8; DROP TABLE events"}, TOKEN, 400, "bad_parameter", "projectId"),
    ("/v1/analytics/events", {"projectId": 8, "campaignId": ""}, TOKEN, 400, "bad_parameter", "campaignId"),
    ("/v1/analytics/events", {}, TOKEN, 400, "missing_parameter", "projectId"),
    ("/v1/analytics/events", {"projectId": 8}, None, 401, "unauthorized", None),
    ("/v1/analytics/events", {"projectId": 8}, "nope", 401, "unauthorized", None),
    ("/v1/analytics/events", {"projectId": 8}, TOKEN + "x", 401, "unauthorized", None),
    ("/v1/analytics/events", {"projectId": 12}, TOKEN_8, 403, "forbidden", None),
    ("/v1/analytics/events", {"projectId": 9}, TOKEN, 403, "forbidden", None),
    ("/v1/analytics/viewers/live", {"projectId": 8}, TOKEN, 400, "missing_parameter", "broadcastId"),
    ("/v1/analytics/viewers/live", {"projectId": 8, "broadcastId": "b", "step": 1}, TOKEN,
     400, "unknown_parameter", "step"),
    ("/v1/analytics/viewers/live", {"projectId": 8, "broadcastId": "b", "idle": 0}, TOKEN,
     400, "bad_parameter", "idle"),
    ("/v1/analytics/viewers/live", {"projectId": 12, "broadcastId": "b"}, TOKEN_8, 403, "forbidden", None),
    ("/v1/analytics/viewers/live", {"projectId": 8, "broadcastId": "b"}, None, 401, "unauthorized", None),
    ("/v1/deletions/no-such-id", {}, TOKEN, 404, "not_found", None),
    ("/v1/deletions/no-such-id", {"x": 1}, TOKEN, 400, "unknown_parameter", "x"),
    ("/v1/deletions/no-such-id", {}, None, 401, "unauthorized", None),
    ("/v1/analytics/nothing", {"projectId": 8}, TOKEN, 404, "not_found", None),
    ("/v1/nothing", {}, None, 404, "not_found", None),
]
METRIC_BAD = [
    ("/v1/analytics/activity", {"projectId": 8, "from": "2026-03-01", "to": "2026-03-31", "step": 1},
     400, "too_many_buckets", "step"),
    ("/v1/analytics/activity", {"projectId": 8, "from": "2026-03-01", "step": 0}, 400, "bad_parameter", "step"),
    ("/v1/analytics/activity", {"projectId": 8, "to": "2026-03-01"}, 400, "missing_parameter", "from"),
    ("/v1/analytics/viewers", {"projectId": 8, "from": "2026-03-01", "to": "2026-03-02", "step": "1e3",
                               "broadcastId": "b"}, 400, "bad_parameter", "step"),
    ("/v1/analytics/engagement", {"projectId": 8, "nope": "1"}, 400, "unknown_parameter", "nope"),
    ("/v1/analytics/polls", {"projectId": 8, "from": "2026-03-01T25:00:00Z"}, 400, "bad_time", "from"),
    ("/v1/analytics/revenue", {"projectId": 8, "from": 10, "to": 9}, 400, "bad_range", "from"),
    ("/v1/analytics/sponsors", {"projectId": 8, "step": 60}, 400, "unknown_parameter", "step"),
    ("/v1/analytics/funnel", {"projectId": 8, "window": -1}, 400, "bad_parameter", "window"),
]


def test_bad_input_is_a_json_error_never_a_500(show):
    c, _ = show
    cases = [*BAD]
    try:
        import collector.analytics.metrics  # noqa: F401

        cases += [(p, q, TOKEN, s, e, n) for p, q, s, e, n in METRIC_BAD]
        cases += [(p, {"projectId": 8}, None, 401, "unauthorized", None)
                  for p in {p for p, *_ in METRIC_BAD}]
        cases += [(p, {"projectId": 12}, TOKEN_8, 403, "forbidden", None)
                  for p in {p for p, *_ in METRIC_BAD}]
    except ImportError:
        pass
    for path, params, token, status, error, parameter in cases:
        got, body = get_json(c, path, params, token=token)
        assert (got, body["error"]) == (status, error), (path, params, body)
        assert isinstance(body["message"], str) and body["message"]
        assert body.get("parameter") == parameter, (path, params, body)
    # a parameter given twice
    got, body = get_json(c, "/v1/analytics/events?projectId=8&projectId=12")
    assert (got, body["error"], body["parameter"]) == (400, "repeated_parameter", "projectId")
    # a method a route has not: JSON, with what it allows
    got, headers, body = get(c, "/v1/analytics/events", {"projectId": 8}, method="POST")
    assert got == 405 and json.loads(body)["error"] == "method_not_allowed" and "GET" in headers["Allow"]
    # no token needed: health and the page
    assert get_json(c, "/healthz", token=None) == (200, {"status": "ok"})
    status, headers, body = get(c, "/", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    status, _, body = get(c, "/static/../../collector.toml", token=None)
    assert status == 404 and b"data_dir" not in body
    # the token's only project is the default
    status, _, body = get(c, "/v1/analytics/events", {"userId": "nobody"}, token=TOKEN_8)
    assert status == 200 and body == b""
    assert "Traceback" not in stderr(c)


def test_deletion_routes_take_any_user_id(show):
    c, _ = show
    for user in ["..%2F..%2Fetc%2Fpasswd", "%C3%A6%C3%B8%C3%A5%2F%20%25%3F%23", "a%2Fb", "..", "%2E%2E"]:
        status, body = get_json(c, f"/v1/users/{user}/events?projectId=8", method="DELETE")
        assert status == 202 and body["status"] == "pending", body
        assert body["user_id"] == urllib.parse.unquote(user)
        status, rec = get_json(c, f"/v1/deletions/{body['deletion_id']}")
        assert status == 200 and rec["user_id"] == urllib.parse.unquote(user) and rec["project_id"] == 8
        status, rec = get_json(c, f"/v1/deletions/{body['deletion_id']}", token=TOKEN_8)
        assert status == 200
    status, body = get_json(c, "/v1/users/x%FF/events?projectId=8", method="DELETE")
    assert (status, body["error"], body["parameter"]) == (400, "bad_parameter", "userId")
    status, body = get_json(c, "/v1/users/x/events?projectId=12", method="DELETE", token=TOKEN_8)
    assert (status, body["error"]) == (403, "forbidden")
    status, body = get_json(c, "/v1/users/x/events?projectId=8&userId=y", method="DELETE")
    assert (status, body["parameter"]) == (400, "userId")
    status, body = get_json(c, "/v1/users/x/events?projectId=8", method="DELETE", token=None)
    assert status == 401
    status, body = get_json(c, "/v1/users//events?projectId=8", method="DELETE")
    assert status == 404
    status, body = get_json(c, "/v1/users/x/other?projectId=8", method="DELETE")
    assert status == 404
    status, body = get_json(c, "/v1/users/x/events", {"projectId": 12}, method="DELETE")
    assert status == 202
    status, rec = get_json(c, f"/v1/deletions/{body['deletion_id']}", token=TOKEN_8)
    assert (status, rec["error"]) == (403, "forbidden")
    status, body = get_json(c, "/v1/deletions/purge", method="POST")
    assert status == 200 and body["failed"] == [] and len(body["purged"]) == 6


# ------------------------------------------------------------------------------ big exports


def big_events() -> list[str]:
    """Events of about 2.7 kB each (a kilobyte of random params), times out of order."""
    base = scenario("show_small")["events"][0]
    rnd = __import__("random").Random(7)
    out = []
    for i in range(BIG_EVENTS):
        e = dict(base, event_id=f"big-{i:06d}", user_id=f"user-{rnd.randrange(5000)}",
                 time=1773260000000 + rnd.randrange(3_600_000),
                 params={"broadcastId": "b1", "pad": rnd.randbytes(1000).hex()})
        out.append(json.dumps(e, separators=(",", ":")))
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    c = shared(start(tmp_path_factory.mktemp("big"), big_events()))
    try:
        yield c
    finally:
        c.stop()


def stream(c: Collector, params: dict):
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=120)
    conn.request("GET", "/v1/analytics/events?" + urllib.parse.urlencode(params),
                 headers={"Authorization": f"Bearer {TOKEN}"})
    return conn, conn.getresponse()


def wait_for(predicate, timeout=60.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def export_size(c: Collector, fmt: str, rss_peak: list) -> int:
    """Read one export of project 8 to its end, noting the server's RSS as it goes."""
    conn, resp = stream(c, {"projectId": 8, "format": fmt})
    total = 0
    while chunk := resp.read(1 << 20):
        total += len(chunk)
        rss_peak[0] = max(rss_peak[0], rss_kb(c.proc.pid))
    conn.close()
    return total


def test_export_streams_in_flat_memory(big):
    """The first bytes come while the server has not read the last (it waits for this client,
    which holds far less than the export); the server's memory stays flat through exports many
    times larger than its growth. The first round of exports warms what keeps memory for good
    whatever the size: DuckDB's block cache (bounded by its memory_limit), pyarrow's pool and
    the export threads' heaps; growth is measured over the second."""
    c = big
    conn, resp = stream(c, {"projectId": 8})
    first = resp.read(1 << 16)
    assert first.startswith(b'{"event_id":')
    assert "export of project 8 (jsonl): done" not in stderr(c)  # the store is read as it goes
    size = len(first) + len(resp.read())
    conn.close()
    assert size > 150_000_000
    assert wait_for(lambda: "export of project 8 (jsonl): done" in stderr(c))

    formats = ("jsonl", "csv", "json", "parquet")
    sizes = {fmt: export_size(c, fmt, [0]) for fmt in formats}
    assert min(sizes["jsonl"], sizes["csv"], sizes["json"]) > 120_000_000 and sizes["parquet"] > 40_000_000
    base = rss_kb(c.proc.pid)
    peak = [base]
    assert {fmt: export_size(c, fmt, peak) for fmt in formats} == sizes
    print(f"server RSS {base // 1024} MB before, {peak[0] // 1024} MB at most during four exports "
          f"of {sum(sizes.values()) >> 20} MB")
    assert peak[0] - base < 96 * 1024, (base, peak)


def test_a_client_that_goes_away_stops_the_export(big):
    c = big
    conn, resp = stream(c, {"projectId": 8, "format": "csv"})
    assert resp.read(100_000)
    conn.sock.close()
    conn.close()
    assert wait_for(lambda: "export of project 8 (csv): the client went away" in stderr(c)), stderr(c)
    line = re.search(r"export of project 8 \(csv\): the client went away after (\d+) bytes", stderr(c))
    assert int(line.group(1)) < 150_000_000


# ------------------------------------------------------------------------------ serving rules


def test_no_token_means_loopback_only(tmp_path):
    port = free_port()
    c = Collector(tmp_path / "open")
    proc = subprocess.run([sys.executable, "-m", "collector", "serve", "--config", str(c.config),
                           "--http-listen", f"0.0.0.0:{port}"], env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "http_listen" in proc.stderr and "admin_tokens" in proc.stderr

    c = start(tmp_path / "loopback", tokens=None)  # on loopback it answers without a token
    try:
        status, _, body = get(c, "/v1/analytics/events", {"projectId": 3}, token=None)
        assert status == 200 and body == b""
        assert "loopback only" in stderr(c)
    finally:
        assert c.stop() == 0


def test_tls_with_the_grpc_certificate(tmp_path):
    from test_server import self_signed

    cert, key = self_signed(tmp_path)
    c = start(tmp_path / "tls", tls={"cert": cert, "key": key})
    try:
        context = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("localhost", c.http_port, context=context, timeout=30)
        conn.request("GET", "/v1/analytics/events?projectId=8", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/healthz")
            plain.getresponse().read()
    finally:
        assert c.stop() == 0


# ------------------------------------------------------------------------------ live viewers


def batch(user: str, actions: list[str], broadcast: str = "live-1", project: int = 8) -> bytes:
    now = int(time.time() * 1000)
    pl = [{"euid": f"{user}-{a}-{now}-{i}", "ea": 20, "t": now, "ac": a, "pr": {"broadcastId": broadcast}}
          for i, a in enumerate(actions)]
    return json.dumps({"pid": project, "uid": user, "now": now, "pl": pl}).encode()


def send(c: Collector, *batches: bytes) -> None:
    from collector.client import Client

    async def go():
        async with Client(c.target) as client:
            for b in batches:
                assert (await client.send(b)).accepted == len(json.loads(b)["pl"])

    asyncio.run(go())


class Live:
    """The SSE stream of a broadcast's live count."""

    def __init__(self, c: Collector, broadcast: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=30)
        self.conn.request("GET", f"/v1/analytics/viewers/live?projectId=8&broadcastId={broadcast}",
                          headers={"Authorization": f"Bearer {TOKEN}"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200 and self.resp.headers["Content-Type"] == "text/event-stream"

    def next(self) -> dict:
        while True:
            line = self.resp.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                return json.loads(line[6:])

    def until(self, viewers: int, limit: int = 60) -> dict:
        for _ in range(limit):
            m = self.next()
            if m["viewers"] == viewers:
                return m
        raise AssertionError(f"the live count never reached {viewers} (last {m})")

    def close(self):
        self.conn.close()


def test_live_viewers_move_with_batches_and_agree_with_the_metric(tmp_path):
    # one viewer joined an hour before: still watching, as they keep being active, though the
    # log the count follows holds only what came after the collector started
    old = scenario("show_small")["events"][0]
    now = int(time.time() * 1000)
    early = [dict(old, event_id=f"early-{i}", user_id="early", action=a, time=t, received_time=t,
                  params={"broadcastId": "live-1"})
             for i, (a, t) in enumerate([("broadcast.joined", now - 3_600_000),
                                         ("poll.viewed", now - 60_000)])]
    c = start(tmp_path / "live", event_lines(early))
    try:
        live = Live(c, "live-1")
        assert live.next()["viewers"] == 1
        send(c, batch("ann", ["broadcast.joined"]), batch("bob", ["broadcast.joined", "poll.viewed"]),
             batch("cat", ["broadcast.joined"]), batch("dan", ["broadcast.joined"], broadcast="other"))
        live.until(4)
        send(c, batch("ann", ["broadcast.left"]), batch("bob", ["poll.voted", "broadcast.left"]))
        live.until(2)
        send(c, batch("ann", ["broadcast.joined"]))
        live.until(3)
        other = Live(c, "other")  # a second board, started from the store and the log
        assert other.next()["viewers"] == 1
        other.close()

        pytest.importorskip("collector.analytics.metrics")
        assert wait_for(lambda: len(get(c, "/v1/analytics/events", {"projectId": 8})[2].splitlines()) == 11)
        m = live.next()
        status, body = get_json(c, "/v1/analytics/viewers", {
            "projectId": 8, "broadcastId": "live-1", "from": m["t"], "to": m["t"] + 1, "step": 1})
        assert status == 200 and body["series"] == [{"t": m["t"], "viewers": m["viewers"]}], (m, body)
        # a deleted user stops counting at once, though the log still holds their join
        status, _ = get_json(c, "/v1/users/ann/events?projectId=8", method="DELETE")
        assert status == 202
        live.until(2)
        live.close()
    finally:
        assert c.stop() == 0
