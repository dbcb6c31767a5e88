"""event.py's Structs, written from spec.py's layout.

They are written out rather than built at import so that readers and type checkers see typed
attributes; `python -m collector.layout` writes them again after spec.py changes, and a test
fails while they differ.
"""

import sys
from pathlib import Path

from . import spec

EVENT_PY = Path(__file__).with_name("event.py")
BEGIN = "# ---- written by `python -m collector.layout` from spec.py: do not edit ----\n"
END = "# ---- end of what collector.layout writes ----\n"
STRUCTS = (("Device", spec.DEVICE), ("App", spec.APP), ("NormalizedEvent", spec.EVENT))


def structs() -> str:
    """The Struct classes of the normalised event, as Python source."""
    classes = []
    for name, layout in STRUCTS:
        fields = "".join(f"    {o.name}: {spec.python_type(o)}\n" for o in layout)
        classes.append(f"class {name}(msgspec.Struct, frozen=True, gc=False):\n{fields}")
    return "\n\n".join(classes)


def written(source: str) -> str:
    """The source of event.py with its Structs written anew."""
    head, rest = source.split(BEGIN)
    _, tail = rest.split(END)
    return head + BEGIN + structs() + END + tail


def main() -> int:
    source = EVENT_PY.read_text()
    new = written(source)
    if new != source:
        EVENT_PY.write_text(new)
        print(f"wrote {EVENT_PY.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
