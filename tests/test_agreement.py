"""The native decoder and the pure twin agree: same events, same rejections, same batch errors."""

import json
import struct
import zlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector
from conftest import _crc_native, _idset_native, _native, outcome
from collector import _crc_pure, _idset_pure, _pure
from benchmarks.corpus import make_batches
from collector.v1 import collector_pb2
from fuzz_native import _pb_int, _pb_len, _pb_varint, request_outcome
from strategies import BATCH, json_text, mutated

pytestmark = pytest.mark.skipif(_native is None, reason="the native decoder is not built")

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def agree(data: bytes, fmt: str = "json"):
    native = outcome(_native, data, fmt)
    pure = outcome(_pure, data, fmt)
    assert native == pure
    if fmt == "json" and native[0] == "batch_error" and native[1] in SYNTAX:
        assert syntax_message(_native, data) == syntax_message(_pure, data)
    return native


SYNTAX = ("malformed_json", "too_deep")


def syntax_message(impl, data: bytes) -> str:
    """What a syntax fault's message says (what went wrong, at which byte): the twins find it
    themselves, never from a parser's error text."""
    with pytest.raises(collector.BatchError) as exc:
        impl.decode(data, "json", 1)
    return str(exc.value)


@SETTINGS
@given(st.data())
def test_random_batches(data):
    agree(data.draw(json_text(data.draw(BATCH))))


@SETTINGS
@given(st.data())
def test_mutated_batches(data):
    text = data.draw(json_text(data.draw(BATCH)))
    agree(data.draw(mutated(text)))


@SETTINGS
@given(st.data())
def test_random_protobuf_batches(data):
    text = data.draw(json_text(data.draw(BATCH)))
    try:
        pb = collector.json_to_protobuf(text)
    except ValueError:  # refused as a whole, or a value protobuf cannot carry
        return
    assert agree(pb, "protobuf") == agree_json_as_protobuf(text)


def agree_json_as_protobuf(text: bytes):
    """The JSON batch's own outcome: protobuf must give the same."""
    return outcome(_pure, text, "json")


_PB_VALUES = st.one_of(
    st.none().map(lambda _: (_pb_int(1, 0), None)),
    st.booleans().map(lambda b: (_pb_int(2, int(b)), b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: (_pb_int(3, (i << 1) ^ (i >> 63)), i)),
    st.floats(allow_nan=False, allow_infinity=False).map(
        lambda d: (b"\x21" + struct.pack("<d", d), d)),
    st.text(max_size=8).map(lambda t: (_pb_len(5, t.encode()), t)),
)


@st.composite
def _pb_member(draw, key: str):
    """A member of a params Object as any writer may lay it out: its key and value in either
    order, each possibly repeated (the last counts). Returns its bytes and (key, value)."""
    keys = draw(st.lists(st.text(max_size=3), max_size=1)) + [key]
    values = draw(st.lists(_PB_VALUES, max_size=3))
    kinds = draw(st.permutations([1] * len(keys) + [2] * len(values)))
    ks, vs = iter(keys), iter(values)
    raw = b"".join(_pb_len(1, next(ks).encode()) if kind == 1 else _pb_len(2, next(vs)[0])
                   for kind in kinds)
    return raw, (key, values[-1][1] if values else None)


@SETTINGS
@given(st.data())
def test_protobuf_params_in_any_member_layout(data):
    """Custom params read from protobuf members in any field order, with repeats: the written
    params are the members in order, each its last key with its last value, and the twins agree."""
    keys = data.draw(st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=5))
    members = [data.draw(_pb_member(k)) for k in keys]
    params = b"".join(_pb_len(1, raw) for raw, _ in members)
    custom = _pb_len(1, b"poll.voted") + _pb_len(3, params)
    event = _pb_len(1, b"e1") + _pb_int(2, 20) + _pb_int(3, 1765000000000) + _pb_len(23, custom)
    batch = (_pb_int(1, 7) + _pb_len(2, b"u1") + _pb_int(3, 1765000000000) + _pb_int(5, 1)
             + _pb_len(4, event))
    result = agree(batch, "protobuf")
    assert result[0] == "ok" and not result[2]
    line = _native.decode(batch, "protobuf", 1765000000000).to_jsonl()
    written = json.loads(line, object_pairs_hook=list)
    assert dict(written)["params"] == [(k, v) for _, (k, v) in members]


@SETTINGS
@given(st.data())
def test_mutated_protobuf_batches(data):
    text = data.draw(json_text(data.draw(BATCH)))
    try:
        pb = collector.json_to_protobuf(text)
    except ValueError:
        return
    agree(data.draw(mutated(pb)), "protobuf")


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes(data):
    agree(data, "json")
    agree(data, "protobuf")


def test_malformed_before_too_deep():
    """Found by fuzzing: a broken literal just before the level-65 bracket is malformed_json."""
    head = b'{"pid":1,"uid":"u","now":1,"pl":[{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":{"x":'
    data = head + b"[" * 60 + b"t[]" + b"]" * 60 + b"}}]}"
    assert agree(data) == ("batch_error", "malformed_json")
    cut = head + b"[" * 59 + b"n[[]" + b"]" * 60 + b"}}]}"
    assert agree(cut) == ("batch_error", "malformed_json")
    deep = head + b"[" * 60 + b"[]" + b"]" * 60 + b"}}]}"
    assert agree(deep) == ("batch_error", "too_deep")


@pytest.mark.parametrize("data", [
    b'{"pid":1,"uid":"\xff","now":1,"pl":[]}',
    b'{"pid":1,"uid":"\xe2\x82","now":1,"pl":[]}',  # a sequence cut short
    b'{"pid":1,"uid":"\xed\xa0\x80","now":1,"pl":[]}',  # a surrogate's bytes
    b'{"pid":1,"uid":"\xc0\xaf","now":1,"pl":[]}',  # overlong
    b'{"pid":1,"uid":"\\ud800","now":1,"pl":[]}',
    b'{"pid":1,"uid":"\\udc00\\ud800","now":1,"pl":[]}',
    b'{"pid":1,"uid":"\\x","now":1,"pl":[]}',
    b'{"pid":1,"uid":"a\tb","now":1,"pl":[]}',
    b'{"pid":01,"uid":"u","now":1,"pl":[]}',
    b'{"pid":1.,"uid":"u","now":1,"pl":[]}',
    b'{"pid":-,"uid":"u","now":1,"pl":[]}',
    b'{"pid":1e+,"uid":"u","now":1,"pl":[]}',
    b'{"pid":1e99.0,"uid":"u","now":1,"pl":[]}', b'{"pid":1.5.3,"uid":"u","now":1,"pl":[]}',
    b'{"pid":tru,"uid":"u","now":1,"pl":[]}',
    b'{"pid":1,}', b'{"pid" 1}', b'{pid:1}', b'[1 2]', b'[1,]', b'{"a":1} x', b"", b"   ",
    b'{"pid":1', b'{"pid":1,"uid":"u', b"[" * 65 + b"]" * 65, b"\xef\xbb\xbf{}",
])
def test_syntax_faults_say_what_and_where_alike(data):
    assert agree(data)[1] in SYNTAX
    assert " at byte " in syntax_message(_pure, data)


@pytest.mark.parametrize("jsonl", [
    b"",
    b'{"event_id":"a\\"b\\u00e9\\\\","action":"x.y","z":1}\n',  # escapes in the id
    b'{"action":"x.y","event_id":"q"}\n',  # not the order `decode` writes: read as JSON
    b'{"event_id":"a","action":"b"}',  # no final newline
])
def test_event_keys_twins_agree(impl, jsonl):
    assert impl.event_keys(jsonl) == _pure.event_keys(jsonl) == [
        (e["event_id"], e["action"]) for e in map(json.loads, jsonl.splitlines())]
    assert impl.event_ids(jsonl) == _pure.event_ids(jsonl) == [k for k, _ in impl.event_keys(jsonl)]


def test_event_keys_of_decoded_batches(impl):
    for batch in make_batches(20, 50, seed=3):
        decoded = impl.decode(batch, "json", 1765000000000)
        jsonl = decoded.to_jsonl()
        assert impl.event_keys(jsonl) == [(e["event_id"], e["action"])
                                          for e in map(json.loads, jsonl.splitlines())]
        assert impl.event_ids(jsonl) == [k for k, _ in impl.event_keys(jsonl)]
        assert impl.decoded_ids(decoded) == impl.event_ids(jsonl)


@SETTINGS
@given(st.data())
def test_decoded_ids_are_the_lines_ids(data):
    """The ids the native decoder notes as it writes (escapes and all), in both formats, are
    the event_id of each line it wrote, and the pure twin's."""
    text = data.draw(mutated(data.draw(json_text(data.draw(BATCH)))))
    for fmt, batch in (("json", text), ("protobuf", _as_protobuf(text))):
        if batch is None:
            continue
        try:
            decoded = _native.decode(batch, fmt, 1)
        except collector.BatchError:
            continue
        expected = [json.loads(line)["event_id"] for line in decoded.to_jsonl().splitlines()]
        assert _native.decoded_ids(decoded) == expected
        assert _pure.decoded_ids(_pure.decode(batch, fmt, 1)) == expected


@SETTINGS
@given(st.data())
def test_id_sets_take_a_decoded_batch_as_its_ids(data):
    """The native IdSet fingerprints a batch's ids where the decoder wrote them (escapes and
    all): they are the same ids as the strings, to it as to the pure twin."""
    text = data.draw(mutated(data.draw(json_text(data.draw(BATCH)))))
    try:
        decoded = _native.decode(text, "json", 1)
    except collector.BatchError:
        return
    _id_sets_agree(decoded, _pure.decode(text, "json", 1))


def _id_sets_agree(native_decoded, pure_decoded):
    ids = [json.loads(line)["event_id"] for line in native_decoded.to_jsonl().splitlines()]
    project = native_decoded.project_id
    for impl, decoded in ((_idset_native, native_decoded), (_idset_pure, pure_decoded)):
        ids_set = impl.IdSet()
        held = ids_set.hold_new(project, decoded)
        if len(set(ids)) < len(ids):  # an id twice in the batch: none is held
            assert held is None and len(ids_set) == 0
            continue
        assert len(held) == len(ids_set) == len(ids)
        assert all(ids_set.contains(project, i) for i in ids)
        assert not any(ids_set.contains(project + 1, i) for i in ids)
        assert ids_set.hold_new(project, ids[-1:]) is None if ids else True
        ids_set.drop(project, held[:1])
        assert not any(ids_set.contains(project, i) for i in ids[:1])
        ids_set.drop(project, held[1:])
        assert len(ids_set) == 0 and not any(ids_set.contains(project, i) for i in ids)


@pytest.mark.parametrize("event_id", [r'a\"b\\c', r"\u00e9t\u00e9 \u2600", r"\ud83d\ude00", "café/x",
                                      r"\u0000", r"\t\n", r"\/"])
def test_id_sets_take_escaped_ids(event_id):
    """Ids the decoder writes with escapes are made strings first, then fingerprinted as those."""
    batch = make_batches(1, 3, seed=4)[0].replace(b'"euid":"', f'"euid":"{event_id}'.encode(), 1)
    decoded = _native.decode(batch, "json", 1)
    assert len(decoded) == 3 and not decoded.rejected
    _id_sets_agree(decoded, _pure.decode(batch, "json", 1))


def test_id_sets_agree_under_many_operations():
    """Holding, dropping (whole and in slices) and asking, at a scale where the native table
    grows and its runs of probing wrap and close behind removals: the twins answer alike."""
    import random

    rnd = random.Random(7)
    native, pure = _idset_native.IdSet(), _idset_pure.IdSet()
    held = []
    for step in range(6000):
        project = rnd.randrange(3)
        ids = [f"e{rnd.randrange(3000)}" for _ in range(rnd.randrange(0, 6))]
        if rnd.random() < 0.8:
            a, b = native.hold_new(project, ids), pure.hold_new(project, ids)
            assert (a is None) == (b is None)
        else:
            fresh = [i for i in dict.fromkeys(ids) if not pure.contains(project, i)]
            a, b = native.hold(project, fresh), pure.hold(project, fresh)
        if a is not None:
            held.append((project, a, b))
        if held and rnd.random() < 0.5:
            project, a, b = held.pop(rnd.randrange(len(held)))
            cut = rnd.randrange(len(b) + 1)
            native.drop(project, a[:cut]), pure.drop(project, b[:cut])
            if cut < len(b):
                held.append((project, a[cut:], b[cut:]))
        assert len(native) == len(pure)
        if step % 500 == 0:
            assert all(native.contains(p, f"e{i}") == pure.contains(p, f"e{i}")
                       for p in range(3) for i in range(3000))
    for project, a, b in held:
        native.drop(project, a), pure.drop(project, b)
    assert len(native) == len(pure) == 0 and not pure._seen  # no empty set stays behind
    assert not any(native.contains(p, f"e{i}") for p in range(3) for i in range(3000))


@SETTINGS
@given(st.lists(st.binary(max_size=40) | st.lists(st.binary(max_size=16).filter(lambda b: b"\n" not in b),
                                                 max_size=5).map(b"\n".join), max_size=6))
def test_line_views_twins_agree(pieces):
    """The twins see the same lines, and Arrow reads them off the views: each piece's lines."""
    import pyarrow as pa

    count, views = _native.line_views(pieces)
    assert (count, views) == _pure.line_views(pieces)
    lines = pa.Array.from_buffers(pa.binary_view(), count,
                                  [None, pa.py_buffer(views)] + [pa.py_buffer(p) for p in pieces])
    expected = [line for p in pieces if p
                for line in (p[:-1] if p.endswith(b"\n") else p).split(b"\n")]
    assert lines.to_pylist() == expected


def _as_protobuf(text: bytes):
    try:
        return collector.json_to_protobuf(text)
    except ValueError:
        return None


_LINE_START = st.sampled_from([b'{"event_id":"', b'","action":"', b"\\", b'"', b"\n", b"x", b"\xc3\xa9"])


@given(st.lists(st.one_of(_LINE_START, st.binary(max_size=8)), max_size=40).map(b"".join))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_event_keys_is_safe_on_any_bytes(data):
    """Only decoder output is given to it, but no bytes may crash it: a list, or a clear error."""
    for impl in filter(None, (_native, _pure)):
        try:
            keys = impl.event_keys(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            with pytest.raises((msgspec.DecodeError, UnicodeDecodeError)):
                impl.event_ids(data)
            continue
        assert all(type(a) is str and type(b) is str for a, b in keys)
        assert impl.event_ids(data) == [k for k, _ in keys]


_RECORD = st.tuples(st.integers(0, 255), st.integers(-2**63, 2**63 - 1), st.binary(max_size=3000))


def _zlib_header(kind, ms, payload):
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<Bq", kind, ms)))
    return struct.pack("<IIBq", len(payload), crc, kind, ms)


@given(st.lists(_RECORD, max_size=20))
def test_log_record_headers_twins_agree(records):
    """The log's headers made by the native module (checksums without the GIL) are the pure
    ones, whose checksums are zlib's crc32."""
    expected = [_zlib_header(*r) for r in records]
    assert _crc_native.record_headers(records) == _crc_pure.record_headers(records) == expected


@given(st.binary(max_size=700), st.integers(0, 2**32 - 1), st.integers(0, 15))
def test_native_crc32_is_zlibs(data, start, offset):
    """The folded crc32 (whole 64- and 16-byte blocks, then the tail) is zlib's, at any length
    and alignment, from any running value."""
    data = bytes(offset) + data
    view = memoryview(data)[offset:]
    assert _crc_native.crc32(view, start) == zlib.crc32(view, start)
    assert _crc_native.crc32(data) == zlib.crc32(data)


def test_log_record_headers_refuse_what_does_not_fit():
    for bad in ([(256, 0, b"")], [(1, 2**63, b"")], [(1, 0, "text")], [(1, 0)]):
        for impl in (_crc_native, _crc_pure):
            with pytest.raises((ValueError, TypeError)):
                impl.record_headers(bad)


def _upb_request(data: bytes):
    """What the protobuf runtime reads from the bytes (None: it refuses them)."""
    from google.protobuf.message import DecodeError

    try:
        m = collector_pb2.IngestRequest.FromString(data)
    except DecodeError:
        return None
    which = m.WhichOneof("batch")
    return m.batch_id, which, getattr(m, which) if which else None, m.project_id


_REQUEST = st.builds(
    lambda batch_id, batch, project: collector_pb2.IngestRequest(
        batch_id=batch_id, project_id=project, **batch).SerializeToString(),
    st.text(max_size=20),
    st.one_of(st.just({}), st.builds(lambda b: {"json": b}, st.binary(max_size=50)),
              st.builds(lambda b: {"protobuf": b}, st.binary(max_size=50))),
    st.integers(-2**63, 2**63 - 1),
)
# fields of other numbers and wire types, and known numbers with a wire type not their own
_UNKNOWN = st.sampled_from([b"\x28\x07", b"\x31" + bytes(8), b"\x3d" + bytes(4), b"\x42\x02ab",
                            b"\x0d" + bytes(4), b"\x10\x05", b"\x22\x01x", b"\x18\x01"])


@given(st.lists(st.one_of(_REQUEST, _UNKNOWN), min_size=1, max_size=4).map(b"".join))
def test_read_request_twins_agree_with_protobuf(data):
    """Requests as the protobuf runtime writes them, concatenated (a later field overrides an
    earlier one, the oneof's last member wins) and mixed with unknown fields: both twins read
    what the runtime reads, the batch as a view into the request."""
    expected = _upb_request(data)
    assert expected is not None
    for impl in filter(None, (_native, _pure)):
        assert request_outcome(impl, data) == expected
        batch = impl.read_request(data)[2]
        assert batch is None or batch.obj is data  # in place, not copied


@given(st.data())
def test_read_request_on_any_bytes(data):
    """Any bytes: the twins agree with each other (a request or ValueError, never a crash), and
    what both they and the protobuf runtime read, they read alike. (The runtime alone accepts
    groups, and the twins alone accept a ten-byte varint tag whose bits past 64 are dropped.)"""
    raw = data.draw(st.one_of(st.binary(max_size=60), mutated(data.draw(_REQUEST))))
    results = [request_outcome(impl, raw) for impl in filter(None, (_native, _pure))]
    assert results[0] == results[-1]
    upb = _upb_request(raw)
    if upb is not None and results[0] is not None:
        assert results[0] == upb


def test_read_request_refuses_bad_utf8_in_any_batch_id():
    raw = b"\x0a\x02\xc3\x28" + b"\x0a\x01a"  # the first batch_id is not UTF-8, the second is
    for impl in filter(None, (_native, _pure)):
        with pytest.raises(ValueError, match="UTF-8"):
            impl.read_request(raw)


def test_decode_reads_any_contiguous_buffer(impl):
    batch = make_batches(1, 5, seed=4)[0]
    expected = impl.decode(batch, "json", 1).to_jsonl()
    padded = b"xx" + batch + b"yy"
    for data in (bytearray(batch), memoryview(padded)[2:-2], memoryview(batch)):
        assert impl.decode(data, "json", 1).to_jsonl() == expected


def test_output_limit_twins_agree(impl):
    """Past `max_output` bytes of normalised events both twins raise TooLarge; at or under it
    the events are the same as without a limit."""
    from collector.errors import TooLarge

    batch = make_batches(1, 50, seed=9)[0]
    whole = impl.decode(batch, "json", 1).to_jsonl()
    for fmt, data in (("json", batch), ("protobuf", collector.json_to_protobuf(batch))):
        assert impl.decode(data, fmt, 1, len(whole)).to_jsonl() == whole
        with pytest.raises(TooLarge) as exc:
            impl.decode(data, fmt, 1, len(whole) - 1)
        assert exc.value.limit == len(whole) - 1
        with pytest.raises(TooLarge):
            _pure.decode(data, fmt, 1, len(whole) // 3)


def test_output_limit_counts_the_events_kept(impl):
    """A repeated `pl` (the last one counts) and a header key after `pl` (the events joined
    anew with the final header): only the events kept count against the limit."""
    from collector.errors import TooLarge

    big = ",".join(f'{{"euid":"b{i}","ea":1,"t":1}}' for i in range(40))
    doc = '{"pid":1,"uid":"u","now":5,"pl":[' + big + '],"pl":[{"euid":"s","ea":1,"t":1}],"dt":1}'
    data = doc.encode()
    small = impl.decode(data, "json", 1).to_jsonl()
    assert small.count(b"\n") == 1
    assert impl.decode(data, "json", 1, len(small)).to_jsonl() == small
    with pytest.raises(TooLarge):
        impl.decode(data, "json", 1, len(small) - 1)


@pytest.mark.parametrize("order", ["header first", "pl first", "split", "shorter after pl", "alphabetical"])
def test_output_limit_and_events_in_any_key_order(impl, order):
    """Events written before the header is final are joined with its parts at the end: the
    same lines and the same limit in every key order, as when the header comes first."""
    from collector.errors import TooLarge

    events = ",".join(f'{{"euid":"e{i}","ea":4,"t":{i},"st":"s","url":"a?title=x{i % 3}"}}'
                      for i in range(30))
    head = '"pid":7,"uid":"u","now":50,"dt":4,"dma":"Apple","l":"fr_FR","r":{"d":2}'
    docs = {
        "header first": "{" + head + ',"pl":[' + events + "]}",
        "pl first": '{"pl":[' + events + "]," + head + "}",
        "split": '{"pid":7,"uid":"u","pl":[' + events
                 + '],"now":50,"dt":4,"dma":"Apple","l":"fr_FR","r":{"d":2}}',
        "shorter after pl": "{" + head + ',"dma":"' + "M" * 300 + '","pl":[' + events
                            + '],"dma":"Apple"}',
        "alphabetical": '{"dma":"Apple","dt":4,"l":"fr_FR","now":50,"pid":7,"pl":[' + events
                        + '],"r":{"d":2},"uid":"u"}',
    }
    data = docs[order].encode()
    whole = impl.decode(docs["header first"].encode(), "json", 1000).to_jsonl()
    decoded = impl.decode(data, "json", 1000)
    assert decoded.to_jsonl() == whole
    assert impl.decoded_ids(decoded) == [f"e{i}" for i in range(30)]
    assert impl.decode(data, "json", 1000, len(whole)).to_jsonl() == whole
    for limit in (len(whole) - 1, len(whole) // 2, 10):
        with pytest.raises(TooLarge):
            impl.decode(data, "json", 1000, limit)


def test_too_deep_under_a_key_that_repeats(impl):
    """The document nests too deep even where the value is then replaced by a repeated key's
    (found by fuzzing: the pure twin read only the parsed document)."""
    deep = b"[" * 64 + b"]" * 64
    for key in (b"l", b"zz"):
        data = b'{"%s":%s,"pid":1,"uid":"u","now":5,"%s":"x","pl":[]}' % (key, deep, key)
        with pytest.raises(collector.BatchError) as exc:
            impl.decode(data, "json", 1)
        assert exc.value.code == "too_deep"
    ok = b'{"l":%s,"pid":1,"uid":"u","now":5,"l":"x","pl":[]}' % (b"[" * 63 + b"]" * 63)
    assert len(impl.decode(ok, "json", 1)) == 0


def _fields(data: bytes) -> list[bytes]:
    """A Batch's or an Event's fields, each its bytes as they are (VARINT or LEN: all these have)."""
    from collector import values

    fields, pos = [], 0
    while pos < len(data):
        key, start = values.varint(data, pos, len(data))
        value, end = values.varint(data, start, len(data))
        end = end + value if key & 7 == 2 else end
        fields.append(data[pos:end])
        pos = end
    return fields


def test_protobuf_fields_in_any_order(impl):
    """A protobuf Batch's fields may come in any order (the header's after the events, or
    around them): the events are read into slots and written once the message is read."""
    from collector.v1 import batch_pb2

    events_key = batch_pb2.Batch.DESCRIPTOR.fields_by_name["events"].number << 3 | 2
    batch = make_batches(1, 10, seed=5)[0]
    data = collector.json_to_protobuf(batch)
    events, head = [], []
    for field in _fields(data):
        (events if field[0] == events_key else head).append(field)
    expected = impl.decode(data, "protobuf", 7).to_jsonl()
    assert expected == impl.decode(batch, "json", 7).to_jsonl()
    for order in (events + head, head[:3] + events + head[3:], head[::-1] + events):
        assert impl.decode(b"".join(order), "protobuf", 7).to_jsonl() == expected


@st.composite
def _foreign_field(draw, message: str) -> bytes:
    """A field a reader of `message` reads over: a number the message does not have (its key
    one byte, two, or more), or one it has under another wire type."""
    from collector import wire

    table = wire.MESSAGES[message]
    number = draw(st.one_of(st.integers(1, 40), st.integers(1, 2**29 - 1)))
    own = table[number][2] if number in table else None
    wtype = draw(st.sampled_from([w for w in (0, 1, 2, 5) if w != own]))
    key = _pb_varint(number << 3 | wtype)
    if wtype == 0:
        return key + _pb_varint(draw(st.integers(0, 2**64 - 1)))
    if wtype == 2:
        return _pb_len(number, draw(st.binary(max_size=6)))
    return key + draw(st.binary(min_size=8 if wtype == 1 else 4, max_size=8 if wtype == 1 else 4))


_PB_CORPUS = [collector.json_to_protobuf(b) for b in make_batches(4, 4, seed=9)]


@SETTINGS
@given(st.data())
def test_protobuf_foreign_fields_are_read_over(data):
    """Fields of numbers a message does not have, or of a wire type not their own, anywhere
    in a Batch or its Events, change nothing: both twins write the same events as without."""
    from collector import values
    from collector.v1 import batch_pb2

    events_key = batch_pb2.Batch.DESCRIPTOR.fields_by_name["events"].number << 3 | 2

    def sprinkle(fields: list[bytes], message: str) -> bytes:
        out = list(fields)
        for _ in range(data.draw(st.integers(0, 3))):
            out.insert(data.draw(st.integers(0, len(out))), data.draw(_foreign_field(message)))
        return b"".join(out)

    def event(field: bytes) -> bytes:
        size, start = values.varint(field, 1, len(field))
        return _pb_len(4, sprinkle(_fields(field[start:]), "Event"))

    original = data.draw(st.sampled_from(_PB_CORPUS))
    fields = [event(f) if f[0] == events_key else f for f in _fields(original)]
    changed = sprinkle(fields, "Batch")
    for impl in (_pure, _native) if _native else (_pure,):
        assert impl.decode(changed, "protobuf", 7).to_jsonl() == impl.decode(original, "protobuf", 7).to_jsonl()
