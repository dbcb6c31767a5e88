"""The protobuf side of the contract, read from the generated descriptors of `proto/`.

Each message field maps to the compact JSON key it mirrors (its `json_name`), so a protobuf
batch reads into the same document shape as a JSON one. Both decoders use these tables.
"""

from .spec import ACTIONS
from .v1 import batch_pb2, collector_pb2

# Wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5

# What a field holds.
K_INT, K_SINT, K_DOUBLE, K_BOOL, K_STRING, K_MESSAGE = range(6)

_KINDS = {
    3: (K_INT, VARINT),  # int64
    18: (K_SINT, VARINT),  # sint64
    1: (K_DOUBLE, I64),  # double
    8: (K_BOOL, VARINT),  # bool
    9: (K_STRING, LEN),  # string
    11: (K_MESSAGE, LEN),  # message
}


def _table(descriptor):
    """{field number: (json key, kind, wire type, message name or None, repeated)}."""
    table = {}
    for f in descriptor.fields:
        kind, wire = _KINDS[f.type]
        sub = f.message_type.name if f.message_type is not None else None
        table[f.number] = (f.json_name, kind, wire, sub, f.is_repeated)
    return table


MESSAGES = {d.name: _table(d) for d in batch_pb2.DESCRIPTOR.message_types_by_name.values()}

# Event payload field number -> the action codes it belongs to, and whether the payload message
# is itself the value of one JSON key (`tr`) rather than a group of event keys.
PAYLOADS = {}
for _f in batch_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"].fields:
    _codes = tuple(ea for ea, (_, _, name) in ACTIONS.items() if name == _f.name)
    _keys = {field.key for ea in _codes for field in ACTIONS[ea][1]}
    PAYLOADS[_f.number] = (_codes, _f.json_name if _f.json_name in _keys else None)
del _f, _codes, _keys

# Value's oneof, by field number.
VALUE_NULL, VALUE_BOOL, VALUE_INT, VALUE_DOUBLE, VALUE_STRING, VALUE_ARRAY, VALUE_OBJECT = (
    batch_pb2.Value.DESCRIPTOR.fields_by_name[name].number
    for name in (
        "null_value",
        "bool_value",
        "int_value",
        "double_value",
        "string_value",
        "array_value",
        "object_value",
    )
)

# IngestRequest's fields, by number: both `read_request` twins read the envelope with these.
REQUEST_BATCH_ID, REQUEST_JSON, REQUEST_PROTOBUF, REQUEST_PROJECT_ID = (
    collector_pb2.IngestRequest.DESCRIPTOR.fields_by_name[name].number
    for name in ("batch_id", "json", "protobuf", "project_id")
)
REQUEST_FORMATS = {REQUEST_JSON: "json", REQUEST_PROTOBUF: "protobuf"}  # the batch's oneof
