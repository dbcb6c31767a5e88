"""Event collector: decode mobile SDK batches into normalised events (SPEC v1)."""

from .convert import json_to_protobuf
from .decode import NATIVE, decode
from .errors import BatchError
from .event import App, Decoded, Device, NormalizedEvent

__all__ = [
    "decode",
    "Decoded",
    "BatchError",
    "NormalizedEvent",
    "Device",
    "App",
    "json_to_protobuf",
    "NATIVE",
]
