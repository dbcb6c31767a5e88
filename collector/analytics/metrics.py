"""The dashboard's metrics (ANALYTICS.md section 3), each a function of (store, query) giving its
reply. The work is SQL on the store, reducing the events to a few rows (a row per broadcast,
per poll option, per bucket...); Python only shapes those rows into the reply.

The same SQL text runs on DuckDB and ClickHouse but for the few spellings in `SQL` below, and
the funnel, which ClickHouse answers with `windowFunnel` and DuckDB with the same greedy rule in
window functions. Distinct counts are exact (`uniqExact`, never an estimate) and money is
summed as decimals per currency.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec

from .query import BadRequest, Query, buckets, int_param
from .store import Store

JOINED, LEFT = "broadcast.joined", "broadcast.left"
ENGAGED = ("poll.voted", "contest.entered", "sponsor_moment.tapped", "product.tapped")
ORDERS = ("checkout.completed", "transaction.complete")
FUNNEL = ("product.viewed", "cart.item_added", "checkout.started", "checkout.completed")

# what differs between the engines' SQL, by dialect
SQL = {
    "duckdb": {
        "distinct": "count(DISTINCT {})",
        "div": "(({}) // ({}))",
        "last": "last_value({} IGNORE NULLS)",  # the latest non-null value in the frame
        "explode": "unnest({})",  # a row per element of an array
    },
    "clickhouse": {
        "distinct": "uniqExact({})",
        "div": "intDiv({}, {})",
        "last": "last_value({}) IGNORE NULLS",
        "explode": "arrayJoin({})",
    },
}


def _sql(store: Store) -> dict[str, Callable[..., str]]:
    return {k: v.format for k, v in SQL[store.dialect].items()}


def _ratio(a, b) -> float | None:
    return a / b if b else None


def _with_ignored(reply: dict, query: Query, ignored: tuple[str, ...]) -> dict:
    """The reply, naming the filters of the query that the metric could not apply."""
    names = [name for name in ignored if name in query.filters]
    if names:
        reply["ignored_filters"] = names
    return reply


# ------------------------------------------------------------------------------ viewers


def viewers(store: Store, query: Query) -> dict:
    """Who watches broadcast B at the last millisecond of each bucket.

    Each user's events for B, in time order (at equal times a join before any other event
    before a leave), cut the time line into pieces: from an event to the next one, for at most
    `idle` after it, the user watches when their latest join/leave so far is a join. So each
    piece is an interval [a, e) of watching, a user's intervals never overlap, and the count at
    an instant is the number of intervals holding it: each interval adds 1 from the bucket
    whose end is the first at or after a, up to the bucket whose end is the first at or after e.
    SQL gives those +1/-1 per bucket (one window pass over B's events, linear in them, that
    also counts the unique viewers), Python the running sum.
    """
    if "broadcastId" not in query.filters:
        raise BadRequest("missing_parameter", "viewers needs broadcastId", "broadcastId")
    step_s = int_param(query, "step", 60)
    idle_ms = int_param(query, "idle", 600) * 1000
    starts = buckets(query, step_s)
    step, start, end, n = step_s * 1000, query.start, query.end, len(starts)
    f = _sql(store)
    # every event up to `to` counts for who is watching, those before `from` too
    history = store.where(msgspec.structs.replace(query, start=None), ignore=("sponsorId",))
    order = (f"PARTITION BY user_id ORDER BY time, CASE action WHEN {store.quote(JOINED)} THEN 0 "
             f"WHEN {store.quote(LEFT)} THEN 2 ELSE 1 END")
    pieces = f"""
        SELECT user_id, action, time AS a,
               least(lead(time, 1, {end}) OVER ({order}), time + {idle_ms + 1}) AS e,
               {f['last'](f"CASE action WHEN {store.quote(JOINED)} THEN 1 WHEN {store.quote(LEFT)} THEN 0 END")}
                   OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS joined
        FROM events WHERE {history}"""
    spans = f"""
        SELECT user_id, action, a, joined = 1 AND e > {start} AS counts,
               {f['div'](f'greatest(a, {start}) - {start}', step)} AS i,
               CASE WHEN e >= {end} THEN {n} ELSE {f['div'](f'greatest(e, {start}) - {start}', step)} END AS j
        FROM ({pieces}) AS p"""
    # per row: +(i + 1) where its interval starts counting, -(j + 1) where it stops, and 0 for
    # a join in the range (its distinct users are the unique viewers)
    marks = (f"[CASE WHEN counts AND i < j THEN i + 1 END, "
             f"CASE WHEN counts AND i < j AND j < {n} THEN -(j + 1) END, "
             f"CASE WHEN action = {store.quote(JOINED)} AND a >= {start} THEN 0 END]")
    moves = store.query(f"""
        SELECT x, count(*), {f['distinct']('user_id')} FROM (
            SELECT user_id, {f['explode'](marks)} AS x FROM ({spans}) AS s
        ) AS m WHERE x IS NOT NULL GROUP BY x""")
    change, unique = [0] * n, 0
    for x, count, users in moves:
        if x == 0:
            unique = users
        else:
            change[x - 1 if x > 0 else -x - 1] += count if x > 0 else -count
    series, watching = [], 0
    for i, t in enumerate(starts):
        watching += change[i]
        series.append({"t": t, "viewers": watching})
    peak = max((s["viewers"] for s in series), default=0)
    return _with_ignored({
        "series": series, "peak": peak,
        "peak_at": next((s["t"] for s in series if s["viewers"] == peak), None),
        "unique_viewers": unique,
    }, query, ("sponsorId",))


# ------------------------------------------------------------------------------ engagement


def engagement(store: Store, query: Query) -> dict:
    f = _sql(store)
    engaged = ", ".join(map(store.quote, ENGAGED))
    rows = store.query(f"""
        SELECT broadcast_id, {f['distinct']('user_id')},
               {f['distinct'](f'CASE WHEN action IN ({engaged}) THEN user_id END')}
        FROM events WHERE {store.where(query, ignore=('sponsorId',))} AND broadcast_id IS NOT NULL
        GROUP BY broadcast_id""")
    return _with_ignored({"broadcasts": [
        {"broadcast_id": b, "audience": audience, "engaged": n, "rate": n / audience}
        for b, audience, n in sorted(rows)]}, query, ("sponsorId",))


# ------------------------------------------------------------------------------ polls


def polls(store: Store, query: Query) -> dict:
    """Each user's latest vote per poll counts (latest time, then greater event id); an option
    is named by the latest vote counted for it, a poll by its latest vote with a question. One
    pass over the votes: a row per option counted."""
    f = _sql(store)
    poll = "PARTITION BY broadcast_id, poll_id"
    latest = "ORDER BY time DESC, event_id DESC"
    counted = f"""
        SELECT * FROM (
            SELECT broadcast_id, poll_id, time, event_id, option_index, option,
                   {f['last']('question')} OVER ({poll} ORDER BY time, event_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS question,
                   row_number() OVER ({poll}, user_id {latest}) AS r
            FROM events WHERE {store.where(query, ignore=('sponsorId',))}
                AND action = 'poll.voted' AND poll_id IS NOT NULL
        ) AS v WHERE r = 1"""
    rows = store.query(f"""
        SELECT broadcast_id, poll_id, question, option_index, option, n FROM (
            SELECT broadcast_id, poll_id, question, option_index, option,
                   count(*) OVER ({poll}, option_index) AS n,
                   row_number() OVER ({poll}, option_index {latest}) AS k
            FROM ({counted}) AS c
        ) AS o WHERE k = 1""")
    found: dict[tuple, dict] = {}
    for b, p, question, index, option, n in rows:
        entry = found.setdefault((b, p), {"broadcast_id": b, "poll_id": p, "question": question,
                                          "voters": 0, "options": []})
        entry["voters"] += n
        entry["options"].append({"index": index, "option": option, "votes": n})
    for entry in found.values():
        entry["options"].sort(key=lambda o: (o["index"] is None, o["index"] or 0))
    return _with_ignored({"polls": [found[k] for k in sorted(
        found, key=lambda k: (k[0] is not None, k[0] or "", k[1]))]}, query, ("sponsorId",))


# ------------------------------------------------------------------------------ orders


def _orders(store: Store, condition: str, by: str) -> str:
    """The orders among the events of `condition`, one row each (`by`, order_id, amount,
    currency, items, action), grouped apart per `by` columns: an event with an amount and a
    currency is an order; those sharing a non-null order id are one, their latest event."""
    key = f"{by}, order_id" if by else "order_id"
    return f"""
        SELECT * FROM (
            SELECT {by + ',' if by else ''} order_id, amount, currency, items,
                   row_number() OVER (PARTITION BY {key} ORDER BY time DESC, event_id DESC) AS r
            FROM events WHERE {condition} AND amount IS NOT NULL AND currency IS NOT NULL
        ) AS o WHERE r = 1 OR order_id IS NULL"""


def _money(value) -> float:
    return float(Decimal(value))


# ------------------------------------------------------------------------------ sponsors


def sponsors(store: Store, query: Query) -> dict:
    f = _sql(store)
    where = store.where(query)
    moments = store.query(f"""
        SELECT broadcast_id, sponsor_id,
               count(CASE WHEN action = 'sponsor_moment.viewed' THEN 1 END),
               {f['distinct']("CASE WHEN action = 'sponsor_moment.viewed' THEN user_id END")},
               count(CASE WHEN action = 'sponsor_moment.tapped' THEN 1 END)
        FROM events WHERE {where} AND sponsor_id IS NOT NULL
        GROUP BY broadcast_id, sponsor_id""")
    orders = store.query(f"""
        SELECT broadcast_id, sponsor_id, currency, count(*), sum(amount)
        FROM ({_orders(store, f"{where} AND sponsor_id IS NOT NULL AND action = 'checkout.completed'",
                       'broadcast_id, sponsor_id')}) AS o
        GROUP BY broadcast_id, sponsor_id, currency""")
    bought: dict[tuple, list] = {}
    for b, s, currency, n, gross in orders:
        entry = bought.setdefault((b, s), [0, {}])
        entry[0] += n
        entry[1][currency] = _money(gross)
    out = []
    for b, s, impressions, reach, taps in sorted(moments, key=lambda r: (r[0] is not None, r[0] or "", r[1])):
        n, revenue = bought.get((b, s), (0, {}))
        out.append({"broadcast_id": b, "sponsor_id": s, "impressions": impressions, "reach": reach,
                    "taps": taps, "ctr": _ratio(taps, impressions), "orders": n,
                    "revenue": dict(sorted(revenue.items()))})
    return {"sponsors": out}


# ------------------------------------------------------------------------------ revenue


def revenue(store: Store, query: Query) -> dict:
    actions = ", ".join(map(store.quote, ORDERS))
    rows = store.query(f"""
        SELECT currency, sum(amount), count(*), sum(items), count(items)
        FROM ({_orders(store, f"{store.where(query)} AND action IN ({actions})", '')}) AS o
        GROUP BY currency""")
    out = []
    for currency, gross, n, items, with_items in sorted(rows):
        out.append({"currency": currency, "gross": _money(gross), "orders": n,
                    "aov": float(Decimal(gross) / n), "items_per_order":
                    int(items) / with_items if with_items else None})
    return {"currencies": out}


# ------------------------------------------------------------------------------ funnel


def _steps(query: Query) -> list[str]:
    text = query.extra.get("steps")
    if text is None:
        return list(FUNNEL)
    steps = [s.strip() for s in text.split(",")]
    if not 2 <= len(steps) <= 8 or not all(steps):
        raise BadRequest("bad_parameter", f"steps: {text!r} is not a comma-separated list of 2 to "
                         "8 actions", "steps")
    return steps


def funnel(store: Store, query: Query) -> dict:
    """A user reaches step k with events of steps 1..k in time order (equal times allowed, one
    event may stand for two equal steps) within `window` of the first: ClickHouse's
    `windowFunnel`, which keeps per step the latest start of a chain reaching it so far (the
    best start for the steps after); DuckDB the same with as-of joins."""
    steps = _steps(query)
    window = int_param(query, "window", 86400, low=0) * 1000
    base = max(query.start if query.start is not None else store.cutoff(query.project_id),
               store.cutoff(query.project_id))
    where = store.where(query)
    if store.dialect == "clickhouse":
        conditions = ", ".join(f"action = {store.quote(s)}" for s in steps)
        actions = ", ".join(map(store.quote, sorted(set(steps))))
        reached = dict(store.query(
            f"SELECT level, count(*) FROM (SELECT windowFunnel({window})(toUInt64(time - {base}), "
            f"{conditions}) AS level FROM events WHERE {where} AND action IN ({actions}) "
            f"GROUP BY user_id) AS l GROUP BY level"))
        users = [sum(n for level, n in reached.items() if level >= k) for k in range(1, len(steps) + 1)]
    else:
        users = [n for _, n in sorted(store.query(_funnel_duckdb(store, steps, window, where)))]
    return {"steps": [{"action": a, "users": n, "conversion": _ratio(n, users[0])}
                      for a, n in zip(steps, users)]}


def _funnel_duckdb(store: Store, steps: list[str], window: int, where: str) -> str:
    """windowFunnel's rule with as-of joins. The chains reaching step k, kept as (user, time of
    their step-k event, latest start), grow by each step-(k+1) event joined to the user's latest
    chain at or before it: starts only grow with time, so the latest is the best start."""
    def events(action: str) -> str:
        return f"SELECT user_id, time FROM events WHERE {where} AND action = {store.quote(action)}"

    levels = [f"l1 AS MATERIALIZED (SELECT user_id, time, time AS f FROM ({events(steps[0])}) AS e)"]
    for k, action in enumerate(steps[1:], 2):
        levels.append(f"""l{k} AS MATERIALIZED (
            SELECT c.user_id, c.time, p.f FROM ({events(action)}) AS c
            ASOF JOIN l{k - 1} AS p ON c.user_id = p.user_id AND c.time >= p.time
            WHERE c.time - p.f <= {window})""")
    counts = " UNION ALL ".join(f"SELECT {k} AS level, count(DISTINCT user_id) AS n FROM l{k}"
                                for k in range(1, len(steps) + 1))
    return f"WITH {', '.join(levels)} {counts}"


# ------------------------------------------------------------------------------ activity


def activity(store: Store, query: Query) -> dict:
    step_s = int_param(query, "step", 3600)
    starts = buckets(query, step_s)
    f = _sql(store)
    counts = {i: (n, users) for i, n, users in store.query(f"""
        SELECT {f['div'](f'time - {query.start}', step_s * 1000)} AS i, count(*), {f['distinct']('user_id')}
        FROM events WHERE {store.where(query)} GROUP BY i""")}
    return {"series": [{"t": t, "events": counts.get(i, (0, 0))[0], "users": counts.get(i, (0, 0))[1]}
                       for i, t in enumerate(starts)]}


# name -> (function, its own parameters, whether it needs `from`)
METRICS: dict[str, tuple[Callable[[Store, Query], dict], tuple[str, ...], bool]] = {
    "viewers": (viewers, ("step", "idle"), True),
    "engagement": (engagement, (), False),
    "polls": (polls, (), False),
    "sponsors": (sponsors, (), False),
    "revenue": (revenue, (), False),
    "funnel": (funnel, ("steps", "window"), False),
    "activity": (activity, ("step",), True),
}
