"""The store's row of a normalised event by the contract's words (ANALYTICS.md section 1), in
Python: what each engine's SQL must make of the event (test_store holds them to it), and the
tests' model of a row.
"""

import re
from decimal import Decimal
from typing import Any, NamedTuple, TypeGuard

import msgspec

from collector.analytics.rows import COLUMNS, COMMERCE, REGION, id_attribute

_decode = msgspec.json.Decoder()
# the region of a locale: after the first `_`/`-`, up to the next `_ - . @` or the end
_REGION = re.compile(REGION)
_NANO = Decimal("1e-9")
_AMOUNT_LIMIT = Decimal("1e29")  # DECIMAL(38, 9): 29 digits before the point


class Row(NamedTuple):
    """The columns of the `events` table, in order."""

    project_id: int
    event_id: str
    action: str
    user_id: str
    time: int
    received_time: int
    device_time: int  # the device's clock (`t`): the same in every copy of an event
    broadcast_id: str | None
    campaign_id: str | None
    sponsor_id: str | None
    order_id: str | None
    poll_id: str | None
    country: str | None
    amount: Decimal | None  # an order's amount (checkout.completed total, transaction value)
    currency: str | None  # an order's currency
    items: int | None  # checkout.completed with an `items` array: the sum of their qty
    option_index: int | None  # poll.voted: optionIndex when an int
    option: str | None  # poll.voted: optionSelected when a string
    question: str | None  # poll.voted: questionText when a string
    event: str  # the normalised event, exactly as the collector wrote it


def _is_int(v: Any) -> TypeGuard[int]:
    return type(v) is int


def country(locale: Any) -> str | None:
    """`en_US`, `nb-no`, `de_DE@euro` -> US, NO, DE; `fr`, `zh_Hant_TW` -> None."""
    if type(locale) is not str:
        return None
    m = _REGION.search(locale)
    if m is None:
        return None
    region = m.group(1)
    if len(region) == 2 and region.isascii() and region.isalpha():
        return region.upper()
    return None


def _amount(v: Any) -> Decimal | None:
    """A JSON number as the decimal it was written as (floats by their shortest repr), to 9
    places as the store's DECIMAL(38, 9) keeps it; None beyond its range, which no currency
    reaches (a row the store cannot hold would stop its loading)."""
    if type(v) is int or type(v) is float:
        d = Decimal(repr(v)) if type(v) is float else Decimal(v)
        if d.is_finite() and abs(d) < _AMOUNT_LIMIT:
            return d.quantize(_NANO) if int(d.as_tuple().exponent) < -9 else d  # finite: an int
    return None


def _items(v: Any) -> int | None:
    if type(v) is not list:
        return None
    total = 0
    for item in v:
        qty = item.get("qty") if type(item) is dict else None
        total += qty if _is_int(qty) and qty >= 1 else 1
    return total


def row(line: bytes | str) -> Row:
    """The row of one normalised event (one line of the collector's JSON Lines)."""
    ev = _decode.decode(line)
    p = ev["params"] if type(ev["params"]) is dict else {}
    action = ev["action"]
    order_id = id_attribute(p.get("orderId"))
    if order_id is None and action == "transaction.complete":
        order_id = id_attribute(p.get("transaction_id"))
    amount = currency = items = None
    if action in COMMERCE:
        amount = _amount(p.get("total" if action == "checkout.completed" else "value"))
        currency = p.get("currency") if type(p.get("currency")) is str else None
        if action == "checkout.completed":
            items = _items(p.get("items"))
    option_index = option = question = None
    if action == "poll.voted":
        option_index = p.get("optionIndex") if _is_int(p.get("optionIndex")) else None
        option = p.get("optionSelected") if type(p.get("optionSelected")) is str else None
        question = p.get("questionText") if type(p.get("questionText")) is str else None
    text = line.decode() if isinstance(line, bytes) else line
    return Row(
        ev["project_id"], ev["event_id"], action, ev["user_id"], ev["time"], ev["received_time"],
        ev["device_time"],
        id_attribute(p.get("broadcastId")), id_attribute(p.get("campaignId")),
        id_attribute(p.get("sponsorId")), order_id, id_attribute(p.get("pollId")),
        country(ev["device"]["locale"] if type(ev.get("device")) is dict else None),
        amount, currency, items, option_index, option, question, text.rstrip("\n"),
    )


assert Row._fields == COLUMNS
