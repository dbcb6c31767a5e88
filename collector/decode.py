"""`decode` and its companions, from the decoder `collector.implementation` picks: the native one
unless it is missing or COLLECTOR_NO_NATIVE=1 is set."""

import time

from . import implementation
from .errors import BatchError, TooLarge
from .event import Decoded
from .implementation import DECODER, NATIVE, WHY_PURE  # noqa: F401 - said here since the start

_impl = implementation.decoder

_FORMATS = ("json", "protobuf")


def decode(data, *, format: str = "json", received_time: int | None = None,
           max_output: int = 0) -> Decoded:
    """Decode one batch (compact JSON or protobuf `Batch`) into normalised events.

    `received_time` (ms since epoch) is when the batch reached us; it defaults to now.
    Raises BatchError when the whole batch is refused, and TooLarge when `max_output` is set
    and the normalised events (JSON Lines) pass that many bytes: every event repeats the
    batch's header, so a small batch can normalise to a great deal.
    """
    if format not in _FORMATS:
        raise ValueError(f"unknown format {format!r}: use 'json' or 'protobuf'")
    if received_time is None:
        received_time = time.time_ns() // 1_000_000
    elif not 0 <= received_time < 2**63:
        raise ValueError("received_time must be a non-negative int64 (ms since epoch)")
    return _impl.decode(data, format, received_time, max_output)


event_keys = _impl.event_keys  # (event_id, action) of each line of `Decoded.to_jsonl()`
event_ids = _impl.event_ids  # the event_id of each line
decoded_ids = _impl.decoded_ids  # the event_id of each event of a Decoded (no second reading)
IdSet = implementation.idset.IdSet  # (project, event id) pairs held for dedup
read_request = _impl.read_request  # (batch_id, format, batch, project_id) of a serialized IngestRequest
line_views = _impl.line_views  # the lines of pieces of JSON Lines as Arrow string views

__all__ = ["TooLarge", "decode", "event_keys", "event_ids", "decoded_ids", "read_request",
           "line_views", "IdSet", "Decoded", "BatchError", "NATIVE"]
