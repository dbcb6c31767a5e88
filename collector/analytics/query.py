"""The common parameters of every analytics request (ANALYTICS.md section 2), parsed once.

`parse` turns a request's query string into a `Query`, or raises `BadRequest` naming the
parameter and saying why; the HTTP layer turns that into a 400 with a JSON body. Times are ms
since epoch; `to` is exclusive (a date `to` covers its whole day).
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time

import msgspec

FILTERS = ("campaignId", "broadcastId", "sponsorId", "country")
# filter parameter -> store column
COLUMNS = {"campaignId": "campaign_id", "broadcastId": "broadcast_id", "sponsorId": "sponsor_id",
           "country": "country"}
MAX_BUCKETS = 10_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MS = re.compile(r"-?\d+")


class BadRequest(Exception):
    """A 400: `error` is the code, `parameter` the parameter at fault (or None)."""

    def __init__(self, error: str, message: str, parameter: str | None = None):
        super().__init__(message)
        self.error, self.message, self.parameter = error, message, parameter

    def body(self) -> dict:
        body = {"error": self.error, "message": self.message}
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return body


class Query(msgspec.Struct, frozen=True):
    project_id: int
    start: int | None  # `from`, inclusive (ms); None: no lower bound
    end: int  # `to`, exclusive (ms)
    filters: dict[str, str] = {}  # filter parameter (campaignId...) -> value
    extra: dict[str, str] = {}  # the endpoint's own parameters (step, idle, steps, window, ...)


def parse_time(name: str, text: str, *, is_end: bool = False) -> int:
    """A date (UTC; as `to`, the end of that day), an ISO-8601 instant, or ms since epoch."""
    text = text.strip()
    try:
        if _MS.fullmatch(text):
            return int(text)
        if _DATE.fullmatch(text):
            day = _dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=_dt.UTC)
            if is_end:
                day += _dt.timedelta(days=1)
            return int(day.timestamp() * 1000)
        instant = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=_dt.UTC)
        return int(instant.timestamp() * 1000) if instant.microsecond == 0 else (
            int(instant.timestamp()) * 1000 + instant.microsecond // 1000)
    except (ValueError, OverflowError):
        raise BadRequest("bad_time", f"{name}: {text!r} is not a date (2026-03-01), an ISO-8601 "
                         "instant (2026-03-11T21:15:44Z) or ms since epoch", name) from None


def parse(params, projects: frozenset[int] | None, *, extra: tuple[str, ...] = (),
          needs_from: bool = False, now_ms: int | None = None) -> Query:
    """The Query of a request's parameters (a mapping of str to str).

    `projects` are the projects the caller's token covers (None: every project, no token
    configured); `extra` the endpoint's own parameter names.
    """
    known = {"projectId", "from", "to", *FILTERS, *extra}
    for name in params:
        if name not in known:
            raise BadRequest("unknown_parameter", f"unknown parameter {name!r}; this endpoint "
                             f"takes {', '.join(sorted(known))}", name)
    text = params.get("projectId")
    if text is None:
        if projects is None or len(projects) != 1:
            raise BadRequest("missing_parameter", "projectId is required (the token does not "
                             "cover exactly one project)", "projectId")
        project = next(iter(projects))
    else:
        if not text.isdigit() or not 0 < int(text) < 2**32:
            raise BadRequest("bad_parameter", f"projectId: {text!r} is not a project id "
                             "(an integer >= 1)", "projectId")
        project = int(text)
    start = parse_time("from", params["from"]) if "from" in params else None
    if start is None and needs_from:
        raise BadRequest("missing_parameter", "from is required here (buckets start at it)", "from")
    end = (parse_time("to", params["to"], is_end=True) if "to" in params
           else (now_ms if now_ms is not None else _time.time_ns() // 1_000_000))
    if start is not None and start >= end:
        raise BadRequest("bad_range", f"from ({start}) must be before to ({end})", "from")
    filters = {}
    for name in FILTERS:
        if name in params:
            if params[name] == "":
                raise BadRequest("bad_parameter", f"{name} is empty", name)
            filters[name] = params[name]
    return Query(project, start, end, filters,
                 {name: params[name] for name in extra if name in params})


def int_param(query: Query, name: str, default: int, *, low: int = 1, high: int = 2**62) -> int:
    """An integer parameter of the endpoint's own, checked against its range."""
    text = query.extra.get(name)
    if text is None:
        return default
    if not _MS.fullmatch(text.strip()) or not low <= int(text) <= high:
        raise BadRequest("bad_parameter", f"{name}: {text!r} is not an integer from {low} to "
                         f"{high}", name)
    return int(text)


def buckets(query: Query, step_s: int) -> list[int]:
    """The bucket starts from `from` every `step` seconds while before `to` (at most 10,000)."""
    assert query.start is not None
    step = step_s * 1000
    count = -(-(query.end - query.start) // step)
    if count > MAX_BUCKETS:
        raise BadRequest("too_many_buckets", f"step {step_s}s gives {count} buckets from `from` "
                         f"to `to`; at most {MAX_BUCKETS}", "step")
    return [query.start + i * step for i in range(count)]
