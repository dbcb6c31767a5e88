"""Hypothesis strategies for batches: mostly right, often a little wrong, in varied JSON text."""

import json

from hypothesis import strategies as st

from collector import spec

INT64 = st.integers(min_value=spec.INT64_MIN, max_value=spec.INT64_MAX)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
) | st.sampled_from(["", "a", "é", "💳", 'q"uote', "back\\slash", "tab\there", "\u2028", "\x00"])

# Values of the wrong type, or at the edges, for any field.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 0.75, 10.0, 10.5, 1e308, -0.0]),
    TEXT,
    st.just([]),
    st.just({}),
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)

URLS = st.one_of(
    st.none(),
    TEXT,
    st.builds(
        lambda pre, parts, frag: pre + "?" + "&".join(parts) + frag,
        st.sampled_from(["app://x/y", "app://x/y#", "a", ""]),
        st.lists(
            st.one_of(
                st.builds(lambda v: "title=" + v, st.text("abcé+%2AFz0#&=ü", max_size=10)),
                st.sampled_from(["title", "a=1", "title=%C3%A9", "title=%E2%82", "title=%ff%fe+x",
                                 "title=%F0%9F%92%B3", "title=%ED%A0%80", "title=%", "title=%zz"]),
            ),
            max_size=3,
        ),
        st.sampled_from(["", "#frag", "#?title=x"]),
    ),
)


def maybe(strategy, odd_weight=0.15):
    """Usually `strategy`, sometimes absent (None), sometimes an odd value."""
    return st.one_of(strategy, strategy, strategy, st.none(), ODD)


def _obj(**fields):
    return st.fixed_dictionaries({}, optional=fields)


EVENT = st.builds(
    lambda common, extra, unknown: {**common, **extra, **unknown},
    _obj(
        euid=maybe(st.text(min_size=1, max_size=8) | st.sampled_from(["", "x" * 129, "é" * 64])),
        ea=maybe(st.sampled_from(sorted(spec.ACTIONS) + [3, 21, -1])),
        t=maybe(st.integers(min_value=0, max_value=2**41)),
        upt=maybe(INT64),
        url=URLS,
        scn=maybe(INT64),
        c=maybe(st.integers(-2, 6)),
        ci=maybe(TEXT),
        o=maybe(st.integers(-1, 3)),
        vo=maybe(_obj(sv=maybe(TEXT), sb=maybe(INT64), av=maybe(TEXT), af=maybe(TEXT), ab=maybe(INT64))),
        sn=maybe(INT64),
    ),
    _obj(
        st=maybe(TEXT),
        sl=maybe(INT64),
        tvp=maybe(TEXT),
        tvid=maybe(TEXT),
        ur=maybe(st.booleans()),
        fd=maybe(st.integers(0, 6)),
        tvd=maybe(INT64),
        tvv=maybe(INT64),
        tr=maybe(_obj(vl=maybe(st.floats(allow_nan=False, allow_infinity=False) | INT64),
                      cu=maybe(st.integers(-1, 1000)), id=maybe(TEXT))),
        k=maybe(TEXT),
        v=maybe(TEXT | INT64),
        ac=maybe(st.sampled_from(["poll.voted", "a.b", "x", ".a", "a.", "a b.c", "é.x", "a" * 31 + ".b"])
                 | st.text("ab.-_", min_size=1, max_size=34)),
        lb=maybe(TEXT),
        pr=maybe(st.dictionaries(TEXT, JSON_VALUES, max_size=4)),
    ),
    st.dictionaries(st.sampled_from(["zz", "x_new", "PL", "e a"]), JSON_VALUES, max_size=2),
)

BATCH = st.builds(
    lambda head, pl, unknown: {**head, "pl": pl, **unknown},
    _obj(
        pid=maybe(st.integers(min_value=1, max_value=2**40)),
        uid=maybe(st.text(min_size=1, max_size=8)),
        now=maybe(st.integers(min_value=0, max_value=2**41)),
        dt=maybe(st.integers(3, 6)),
        dma=maybe(TEXT),
        dmo=maybe(TEXT),
        os=maybe(TEXT),
        l=maybe(TEXT),
        tz=maybe(TEXT),
        to=maybe(_obj(an=maybe(TEXT), st=maybe(TEXT), sf=maybe(TEXT))),
        r=maybe(_obj(d=maybe(st.floats(0.5, 11) | st.integers(0, 11)))),
    ),
    st.lists(st.one_of(EVENT, EVENT, EVENT, ODD), max_size=6),
    st.dictionaries(st.sampled_from(["zz", "x_new"]), JSON_VALUES, max_size=1),
)


@st.composite
def json_text(draw, value):
    """`value` as JSON text with varied spacing, key orders, escaped characters and repeated keys."""
    ws = st.sampled_from(["", "", "", " ", "\n", "\t", " \r\n "])

    def enc(v, out):
        if isinstance(v, dict):
            out.append("{" + draw(ws))
            items = list(v.items())
            if len(items) > 1 and draw(st.integers(0, 2)) == 0:  # writers use every key order:
                items = draw(st.permutations(items))  # the header after `pl`, around it...
            if items and draw(st.integers(0, 9)) == 0:  # a key that repeats: the last one wins
                k, _ = items[draw(st.integers(0, len(items) - 1))]
                items.insert(0, (k, draw(ODD)))
            for i, (k, item) in enumerate(items):
                if i:
                    out.append(draw(ws) + "," + draw(ws))
                out.append(key(k) + draw(ws) + ":" + draw(ws))
                enc(item, out)
            out.append(draw(ws) + "}")
        elif isinstance(v, list):
            out.append("[" + draw(ws))
            for i, item in enumerate(v):
                if i:
                    out.append(draw(ws) + "," + draw(ws))
                enc(item, out)
            out.append(draw(ws) + "]")
        elif isinstance(v, str):
            out.append(string(v))
        else:
            out.append(json.dumps(v))

    def string(s):
        if draw(st.integers(0, 3)) == 0:
            return json.dumps(s, ensure_ascii=True)
        return json.dumps(s, ensure_ascii=False)

    def key(k):
        if k and draw(st.integers(0, 7)) == 0:  # a key written with escapes
            return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in k) + '"'
        return string(k)

    out = [draw(ws)]
    enc(value, out)
    out.append(draw(ws))
    return "".join(out).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw, data: bytes):
    """A few byte-level edits of `data`: what a fuzzer would try."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(buf))) if buf else 0
        if op == 0 and buf:  # flip a byte
            pos = min(pos, len(buf) - 1)
            buf[pos] = draw(st.integers(0, 255))
        elif op == 1:  # insert bytes
            buf[pos:pos] = draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\\u", b"\xff", b"\xc3",
                                                 b"1e999", b"-", b",", b"]]", b"\x00", b"\x80", b"9" * 25]))
        elif op == 2:  # delete a run
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif op == 3:  # truncate
            del buf[pos:]
        else:  # duplicate a slice
            end = min(len(buf), pos + draw(st.integers(1, 30)))
            buf[pos:pos] = buf[pos:end]
    return bytes(buf)
