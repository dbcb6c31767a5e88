"""The native writer's order of an event's keys, written from spec.EVENT_KEYS at build time.

setup.py writes native/parts.pxi with `render` before Cython compiles: `put_parts` calls each
part's writer (writer.pxi) in the spec's order, so the order costs nothing per event, and the
module refuses at import a spec whose order is not the one it was built with. This file is
read by path (the package may not import before the build), so it imports nothing of it.
"""

# Each of the event's own keys: the writer of its value, after the key.
WRITERS = {
    "event_id": "put_event_id", "action": "put_action", "label": "put_label",
    "session_id": "put_session_id", "time": "put_time", "device_time": "put_device_time",
    "uptime_ms": "put_uptime_ms", "url": "put_url", "screen_name": "put_screen_name_of",
    "screen_count": "put_screen_count", "connectivity": "put_connectivity",
    "carrier": "put_carrier", "orientation": "put_orientation", "params": "put_params_of",
}
# The parts written once per batch from the header: two keys each, the second right after the
# first; their writer copies the part (its keys included) and notes where it went.
HEADER_PARTS = {"project_id": ("user_id", "put_who"), "sent_time": ("received_time", "put_sent"),
                "device": ("app", "put_device")}
# `rejoin_header` moves the header's parts of written events in this order.
JOIN_ORDER = ("event_id", "project_id", "time", "sent_time", "device")


def key_text(keys: tuple, name: str) -> str:
    """A key as written: with what comes before it ('{' first, ',' or the close of `app`)."""
    i = keys.index(name)
    before = "{" if i == 0 else ("}," if keys[i - 1] == "app" else ",")
    return f'{before}"{name}":'


def check(keys: tuple) -> None:
    """ValueError unless the writer can write the keys in this order."""
    known = [*WRITERS, *HEADER_PARTS, *(second for second, _ in HEADER_PARTS.values())]
    if sorted(keys) != sorted(known):
        raise ValueError(f"the native writer writes the keys {sorted(known)}, not {sorted(keys)}")
    for first, (second, _) in HEADER_PARTS.items():
        if keys.index(second) != keys.index(first) + 1:
            raise ValueError(f"the native writer writes {second} right after {first}")
    if [keys.index(k) for k in JOIN_ORDER] != sorted(keys.index(k) for k in JOIN_ORDER):
        raise ValueError(f"the native writer needs {', '.join(JOIN_ORDER)} in this order")


def render(keys: tuple) -> str:
    """native/parts.pxi for an event whose keys come in this order."""
    keys = tuple(keys)
    check(keys)
    seconds = {second for second, _ in HEADER_PARTS.values()}
    body = []
    for name in keys:
        if name in HEADER_PARTS:
            body.append(f"    {HEADER_PARTS[name][1]}(w)")
        elif name not in seconds:
            text = key_text(keys, name)
            body += [f"    put(w.b, {text!r}, {len(text)})", f"    {WRITERS[name]}(w)"]
    end = "}}\\n" if keys[-1] == "app" else "}\\n"
    header_keys = {k: key_text(keys, k) for k in ("project_id", "user_id", "sent_time", "received_time")}
    return "\n".join([
        "# Written by setup.py (native/parts.py) from collector/spec.py: do not edit.",
        "",
        f"WRITTEN_ORDER = {keys!r}",
        "# the keys inside the header's parts (put_header_parts), and the opening of `device`",
        f"HEADER_KEYS = {header_keys!r}",
        f"DEVICE_OPENING = {key_text(keys, 'device') + '{'!r}",
        "",
        "",
        "cdef inline int put_parts(EventWrite* w) except -1:",
        '    """An event\'s parts in spec.EVENT_KEYS\' order."""',
        *body,
        f"    put(w.b, \"{end}\", {len(end) - 1})",
        "    return 0",
        "",
    ])
