"""`json_to_protobuf`: a compact JSON batch as the equivalent protobuf `Batch`."""

from typing import TYPE_CHECKING

from . import _pure, spec, values, wire
from .v1 import batch_pb2 as pb

if TYPE_CHECKING:
    from .v1 import event_pb2

_BY_KEY = {
    d.name: {f.json_name: f for f in d.fields} for d in pb.DESCRIPTOR.message_types_by_name.values()
}


def _in_payload(f) -> bool:
    return f.containing_oneof is not None and f.containing_oneof.name == "payload"


class Unrepresentable(ValueError):
    """A value whose JSON type has no place in the protobuf message (e.g. `"t": "5"`)."""


def json_to_protobuf(data: bytes) -> bytes:
    """The protobuf `Batch` that decodes to the same events as this JSON batch.

    Raises BatchError when the JSON batch is refused as a whole, and Unrepresentable (a
    ValueError) when an event holds a value protobuf cannot carry, such as a string where an
    int belongs; faults protobuf can carry (a missing field, an unknown action) are kept.
    """
    doc = _pure.parse_json(bytes(data))
    _pure.normalize(doc, 0)
    batch = pb.Batch()
    _fill(batch, doc, "batch")
    return batch.SerializeToString()


def _fill(msg, doc: dict, where: str) -> None:
    fields = _BY_KEY[msg.DESCRIPTOR.name]
    for key, value in doc.items():
        f = fields.get(key)
        if f is None or value is None or _in_payload(f):
            continue
        if f.is_repeated:  # pl
            for index, event in enumerate(value):
                if type(event) is not dict:
                    raise Unrepresentable(f"event {index} is not an object")
                _event(getattr(msg, f.name).add(), event, f"event {index}")
        elif f.message_type is not None:
            if type(value) is not dict:
                raise Unrepresentable(f"{where}: {key} is not an object")
            _fill(getattr(msg, f.name), value, where)
        else:
            setattr(msg, f.name, _scalar(f, value, f"{where}: {key}"))


def _event(msg, event: dict, where: str) -> None:
    _fill(msg, event, where)
    ea = event.get("ea")
    if type(ea) is not int or ea not in spec.ACTIONS:
        return
    name = spec.ACTIONS[ea][2]
    if name is None:
        return
    number = msg.DESCRIPTOR.fields_by_name[name].number
    as_key = wire.PAYLOADS[number][1]
    if as_key is not None:  # the payload message is the value of one key (`tr`)
        value = event.get(as_key)
        if value is None:
            return
        if type(value) is not dict:
            raise Unrepresentable(f"{where}: {as_key} is not an object")
        _fill(getattr(msg, name), value, where)
        return
    payload = getattr(msg, name)
    payload.SetInParent()
    for key, f in _BY_KEY[payload.DESCRIPTOR.name].items():
        value = event.get(key)
        if value is None:
            continue
        if f.message_type is not None:  # pr
            if type(value) is not dict:
                raise Unrepresentable(f"{where}: {key} is not an object")
            _object(getattr(payload, f.name), value, where)
        else:
            setattr(payload, f.name, _scalar(f, value, f"{where}: {key}"))


def _scalar(f, value, where: str):
    t = f.type
    if t == f.TYPE_STRING and type(value) is str:
        return value
    if t == f.TYPE_BOOL and type(value) is bool:
        return value
    if t == f.TYPE_INT64 and values.is_int(value):
        return value
    if t == f.TYPE_DOUBLE and type(value) in (int, float):
        number = values.number(value)
        if number is not None:
            return number
    raise Unrepresentable(f"{where}: {value!r} does not fit {f.name}")


def _object(msg, obj: dict, where: str) -> None:
    for key, value in obj.items():
        member = msg.members.add()
        member.key = key
        _value(member.value, value, where)


def _value(msg, value, where: str) -> None:
    kind = type(value)
    if value is None:
        msg.null_value = True
    elif kind is bool:
        msg.bool_value = value
    elif kind is int and values.is_int(value):
        msg.int_value = value
    elif kind is int or kind is float:
        number = values.number(value)
        if number is None:
            raise Unrepresentable(f"{where}: {value!r} is not a finite double")
        msg.double_value = number
    elif kind is str:
        msg.string_value = value
    elif kind is list:
        items = msg.array_value.items
        msg.array_value.SetInParent()
        for item in value:
            _value(items.add(), item, where)
    else:
        msg.object_value.SetInParent()
        _object(msg.object_value, value, where)


def event_to_protobuf(event) -> "event_pb2.NormalizedEvent":
    """A NormalizedEvent (the msgspec Struct) as the `collector.v1.NormalizedEvent` message."""
    from .v1 import event_pb2

    msg = event_pb2.NormalizedEvent()
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if value is None:
            continue
        if name in ("device", "app"):
            sub = getattr(msg, name)
            sub.SetInParent()
            for field in value.__struct_fields__:
                v = getattr(value, field)
                if v is not None:
                    setattr(sub, field, v)
        elif name == "params":
            msg.params.SetInParent()
            _object(msg.params, value, "params")
        else:
            setattr(msg, name, value)
    return msg


def protobuf_to_event(msg) -> dict:
    """A `collector.v1.NormalizedEvent` message as the SPEC's JSON object (a dict)."""
    out = {}
    for name in spec.EVENT_KEYS[: spec.EVENT_KEYS.index("device")]:  # the layout of spec.py
        f = msg.DESCRIPTOR.fields_by_name[name]
        out[name] = getattr(msg, name) if not f.has_presence or msg.HasField(name) else None
    for name, layout in (("device", spec.DEVICE), ("app", spec.APP)):
        sub = getattr(msg, name)
        out[name] = {o.name: getattr(sub, o.name) if sub.HasField(o.name) else None for o in layout}
    out["params"] = values.read_object(msg.params.SerializeToString(), 0, msg.params.ByteSize(), 4)
    return out
