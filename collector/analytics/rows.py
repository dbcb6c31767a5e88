"""One store row per normalised event: the event exactly as written, plus the typed columns that
the filters and metrics read (ANALYTICS.md section 1), derived once when the event is loaded so
that no query parses JSON.

The engines derive them themselves, in SQL, from the lines as they load them (`duck.STAGE`,
`clickhouse.LOAD`): Python never builds a row. What Python does is `check`: which lines are
events the store can hold, for `collector import` (which names a wrong line) and for the store
sink once its store refused an insert (to find the line to set aside).
"""

from typing import Annotated, Any

import msgspec

# the columns of the `events` table, in order
COLUMNS = (
    "project_id", "event_id", "action", "user_id", "time", "received_time",
    "device_time",  # the device's clock (`t`): the same in every copy of an event
    "broadcast_id", "campaign_id", "sponsor_id", "order_id", "poll_id", "country",
    "amount",  # an order's amount (checkout.completed total, transaction value), DECIMAL(38, 9)
    "currency",  # an order's currency
    "items",  # checkout.completed with an `items` array: the sum of their qty
    "option_index",  # poll.voted: optionIndex when an int
    "option",  # poll.voted: optionSelected when a string
    "question",  # poll.voted: questionText when a string
    "event",  # the normalised event, exactly as the collector wrote it
)
COMMERCE = ("checkout.completed", "transaction.complete")
# the params the columns are made of
PARAMS = ("broadcastId", "campaignId", "sponsorId", "orderId", "transaction_id", "pollId", "total",
          "value", "currency", "optionIndex", "optionSelected", "questionText", "items")
# the region of a locale: after the first `_`/`-`, up to the next `_ - . @` or the end
REGION = r"[_-]([^_\-.@]*)"

_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Stored(msgspec.Struct):
    """What the store needs of an event to hold it (its key, its times); the rest is optional."""

    project_id: Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
    event_id: str
    action: str
    user_id: str
    time: _I64
    received_time: _I64
    device_time: _I64


STORED = _Stored.__struct_fields__  # what a line without one of them is not stored for
_check = msgspec.json.Decoder(_Stored)


def check(lines: list[bytes]) -> tuple[bytes, list[tuple[int, bytes, str]]]:
    """The lines the store is to load, as JSON Lines, and the others: (index in `lines`, line,
    why). Loaded: each event's first copy among the lines (by its key and device time, which
    every copy carries unchanged). Blank lines are neither."""
    good, bad, seen = [], [], set()
    for i, line in enumerate(lines):
        if line.strip():
            try:
                e = _check.decode(line)
            except msgspec.DecodeError as exc:
                bad.append((i, line, str(exc)))
                continue
            key = (e.project_id, e.event_id, e.device_time)
            if key not in seen:
                seen.add(key)
                good.append(line.rstrip(b"\r\n"))
    return b"".join(line + b"\n" for line in good), bad


def id_attribute(v: Any) -> str | None:
    """A param as an id: a non-empty string as it is, an int as its decimal text, else null."""
    if type(v) is str:
        return v or None
    if type(v) is int:
        return str(v)
    return None

