"""The metrics (ANALYTICS.md section 3) on both engines: every query of the scenarios gives its
expected reply, and on generated events the answers keep the rules that hold whatever the data
(a funnel never grows, a filter never adds, votes add up to voters, both engines agree)."""

import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_fixtures import lines_of, load_scenario, same, scenario
from collector.analytics import query as q
from collector.analytics.metrics import METRICS
from reference_rows import Row, row

SCENARIOS = ("show_small", "show_medium")


def ask(store, name: str, params: dict) -> dict:
    fn, extra, needs_from = METRICS[name]
    query = q.parse({k: str(v) for k, v in params.items()}, None, extra=extra, needs_from=needs_from)
    return fn(store, query)


# the filters each metric cannot apply (ANALYTICS.md section 3)
IGNORES = {"viewers": ["sponsorId"], "engagement": ["sponsorId"], "polls": ["sponsorId"]}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_query_of_the_scenario(store, name):
    load_scenario(store, name)
    for case in scenario(name)["queries"]:
        metric = case["path"].rsplit("/", 1)[1]
        got = ask(store, metric, case["params"])
        # the scenarios leave `ignored_filters` out; it names the query's filters the metric ignores
        ignored = [f for f in IGNORES.get(metric, []) if f in case["params"]]
        assert got.pop("ignored_filters", []) == ignored, case
        same(got, case["expect"], f"{name} {case['path']} {case['params']}")


def test_bad_parameters_are_refused(store):
    day = {"projectId": 8, "from": "2026-03-11", "to": "2026-03-12"}
    for name, params, parameter in [
        ("viewers", day, "broadcastId"),
        ("viewers", {**day, "broadcastId": "b", "step": 1}, "step"),  # 86,400 buckets
        ("viewers", {**day, "broadcastId": "b", "idle": 0}, "idle"),
        ("activity", {**day, "step": 0}, "step"),
        ("funnel", {**day, "steps": "product.viewed"}, "steps"),
        ("funnel", {**day, "steps": ",".join(["a"] * 9)}, "steps"),
        ("funnel", {**day, "steps": "a,,b"}, "steps"),
        ("funnel", {**day, "window": "-1"}, "window"),
    ]:
        with pytest.raises(q.BadRequest) as e:
            ask(store, name, params)
        assert e.value.parameter == parameter, (name, params)


# ------------------------------------------------------------------------------ generated events

T0 = 1_773_260_000_000
ACTIONS = ("broadcast.joined", "broadcast.left") * 3 + ("poll.voted", "product.viewed", "cart.item_added",
           "checkout.started", "checkout.completed", "transaction.complete", "sponsor_moment.viewed",
           "sponsor_moment.tapped", "product.tapped", "contest.entered")
USERS = ("ann", "bob", "cat")
SMALL = st.sampled_from


@st.composite
def events(draw):
    """Rows of a few users in two broadcasts over an hour, dense in ties: equal times, repeated
    order ids, votes changing, nulls where attributes may be missing."""
    out = []
    for i in range(draw(st.integers(0, 80))):
        action = draw(SMALL(ACTIONS))
        order = action in ("checkout.completed", "transaction.complete")
        out.append(Row(
            0, f"{draw(SMALL('xyz'))}{i:03d}", action, draw(SMALL(USERS)),
            T0 + draw(st.integers(0, 20)) * 60_000 + draw(SMALL([0, 0, 0, 1, 59_999])), T0, T0,
            draw(SMALL(["b1", "b2", None])), draw(SMALL(["35", "36", None])),
            draw(SMALL(["11", "12", None])), draw(SMALL(["o1", "o2", None])) if order else None,
            draw(SMALL(["p1", "p2", None])) if action == "poll.voted" else None,
            draw(SMALL(["NO", "US", None])),
            draw(SMALL([Decimal("10.5"), Decimal("0.000000001"), Decimal("99999.99"), None])) if order else None,
            draw(SMALL(["NOK", "EUR", None])) if order else None,
            draw(SMALL([None, 1, 3])) if action == "checkout.completed" else None,
            draw(SMALL([0, 1, None])) if action == "poll.voted" else None,
            draw(SMALL(["Ja", "Nei", None])) if action == "poll.voted" else None,
            draw(SMALL(["Q?", None])) if action == "poll.voted" else None,
            "{}"))
    return out


def line(r: Row) -> str:
    """A normalised event whose store row is `r` (but its `event`)."""
    params = {k: v for k, v in (("broadcastId", r.broadcast_id), ("campaignId", r.campaign_id),
                                ("sponsorId", r.sponsor_id), ("orderId", r.order_id),
                                ("pollId", r.poll_id), ("currency", r.currency),
                                ("optionIndex", r.option_index), ("optionSelected", r.option),
                                ("questionText", r.question)) if v is not None}
    if r.amount is not None:
        params["total" if r.action == "checkout.completed" else "value"] = float(r.amount)
    if r.items is not None:
        params["items"] = [{"qty": r.items}]
    text = json.dumps({
        "event_id": r.event_id, "action": r.action, "project_id": r.project_id, "user_id": r.user_id,
        "time": r.time, "device_time": r.device_time, "received_time": r.received_time,
        "device": {"locale": f"nb_{r.country}" if r.country else "nb"}, "params": params})
    assert row(text)._replace(event="{}") == r._replace(event="{}")
    return text


HOUR = {"from": T0, "to": T0 + 1_260_000}
QUERIES = [
    ("viewers", {**HOUR, "broadcastId": "b1", "step": 120, "idle": 120}),
    ("viewers", {**HOUR, "broadcastId": "b2", "step": 60, "idle": 60, "from": T0 + 300_000}),
    ("viewers", {**HOUR, "broadcastId": "b1", "step": 7, "idle": 600, "to": T0 + 1_200_001}),
    ("engagement", HOUR), ("polls", HOUR), ("sponsors", HOUR), ("revenue", HOUR),
    ("funnel", HOUR), ("funnel", {**HOUR, "steps": "product.viewed,cart.item_added,product.viewed",
                                  "window": 120}),
    ("funnel", {**HOUR, "steps": "cart.item_added,checkout.started", "window": 60}),
    ("activity", {**HOUR, "step": 600}),
]
FILTERS = [{"broadcastId": "b1"}, {"campaignId": "35"}, {"sponsorId": "11"}, {"country": "NO"}]


def monotone(name: str, reply: dict) -> dict:
    """The counts of a reply that a filter can only lower, by what they count. (Not the viewers
    series: a filter may hide a user's leave. Not votes per option nor orders per currency: a
    filter may hide a user's or an order's latest event, so that an earlier one counts.)"""
    if name == "viewers":
        return {"unique": reply["unique_viewers"]}
    if name == "activity":
        return {(s["t"], k): s[k] for s in reply["series"] for k in ("events", "users")}
    if name == "engagement":
        return {(b["broadcast_id"], k): b[k] for b in reply["broadcasts"] for k in ("audience", "engaged")}
    if name == "polls":
        return {(p["broadcast_id"], p["poll_id"]): p["voters"] for p in reply["polls"]}
    if name == "sponsors":
        return {(s["broadcast_id"], s["sponsor_id"], k): s[k] for s in reply["sponsors"]
                for k in ("impressions", "reach", "taps", "orders")}
    if name == "revenue":
        return {"orders": sum(c["orders"] for c in reply["currencies"])}
    return {(i, s["action"]): s["users"] for i, s in enumerate(reply["steps"])}


def watching(rows, params) -> list[int]:
    """The viewers series by the contract's words, user by user at each bucket's end."""
    step, idle, end = params["step"] * 1000, params.get("idle", 600) * 1000, params["to"]
    mine = [r for r in rows if r.broadcast_id == params["broadcastId"]]
    out = []
    for t in range(params["from"], end, step):
        at = min(t + step - 1, end - 1)
        n = 0
        for user in {r.user_id for r in mine}:
            theirs = [r for r in mine if r.user_id == user and r.time <= at]
            turns = [(r.time, r.action == "broadcast.left") for r in theirs
                     if r.action in ("broadcast.joined", "broadcast.left")]
            n += bool(turns) and not max(turns)[1] and any(r.time >= at - idle for r in theirs)
        out.append(n)
    return out


def reaching(rows, params) -> list[int]:
    """The funnel by the contract's words: for each first event, the earliest next step after
    it, and so on, is the best chain starting there."""
    steps = params.get("steps", "product.viewed,cart.item_added,checkout.started,checkout.completed").split(",")
    window = params.get("window", 86400) * 1000
    levels = {}
    for user in {r.user_id for r in rows}:
        times = [sorted(r.time for r in rows if r.user_id == user and r.action == a
                        and params["from"] <= r.time < params["to"]) for a in steps]
        best = 0
        for first in times[0]:
            at, k = first, 1
            while k < len(steps) and (later := [t for t in times[k] if at <= t <= first + window]):
                at, k = later[0], k + 1
            best = max(best, k)
        levels[user] = best
    return [sum(level >= k for level in levels.values()) for k in range(1, len(steps) + 1)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, chdb_dir):
    """A DuckDB store and a chdb one; each example loads its events under a project of its own."""
    from analytics_fixtures import _clickhouse
    from procs import KEEP_DAYS
    from collector.analytics.duck import DuckStore

    duck = DuckStore(str(tmp_path_factory.mktemp("pair") / "a.duckdb"), KEEP_DAYS)
    database = f"t_{uuid.uuid4().hex[:12]}"
    ch, admin = _clickhouse(f"chdb://{chdb_dir}", database)
    yield duck, ch, iter(range(1, 2**31))
    duck.close()
    ch.close()
    admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    admin.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=events())
def test_engines_agree_and_the_rules_hold(pair, rows):
    duck, ch, projects = pair
    project = next(projects)
    rows = [r._replace(project_id=project) for r in rows]
    lines = lines_of([line(r) for r in rows])
    for s in (duck, ch):
        s.insert(lines, f"example-{project}")
    for name, params in QUERIES:
        params = {**params, "projectId": project}
        got = ask(duck, name, params)
        same(ask(ch, name, params), got, f"{name} {params}")
        if name == "viewers":
            assert [s["viewers"] for s in got["series"]] == watching(rows, params)
        if name == "funnel":
            users = [s["users"] for s in got["steps"]]
            assert users == reaching(rows, params)
            assert users == sorted(users, reverse=True), got
        if name == "polls":
            for poll in got["polls"]:
                assert poll["voters"] == sum(o["votes"] for o in poll["options"]) > 0
        whole = monotone(name, got)
        for f in FILTERS:
            if set(f) <= set(params):
                continue
            narrow = monotone(name, ask(duck, name, {**params, **f}))
            assert all(n <= whole[k] for k, n in narrow.items()), (name, f, narrow, whole)
