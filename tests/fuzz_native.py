#!/usr/bin/env python3
"""Fuzz the native decoder (`collector._native`): any bytes, both formats (and the same bytes
as a gRPC request envelope, for `read_request`).

An input's first byte chooses the format (even: "json", odd: "protobuf"), the rest is the batch.
For each input the native decoder must either return a `Decoded` whose `.to_jsonl()` and
`.events` work, or raise `collector.BatchError`; anything else is a finding. For a cheap subset
of inputs (all up to FUZZ_COMPARE_MAX bytes, 1 in 16 of the larger ones) the pure twin must
give the same outcome: the same events (as parsed JSON), the same rejections and project id,
or the same batch error code. Memory errors only show with a sanitizer build: see tests/fuzz.sh.

    python tests/fuzz_native.py [atheris/libFuzzer args] [corpus dirs]   # coverage-guided (atheris)
        (libFuzzer writes new inputs to the first directory; when that is tests/fuzz_corpus,
        $FUZZ_SCRATCH, default /tmp/fuzz_native_corpus, is put before it)
    python tests/fuzz_native.py --seconds 60 [--seed 1]    # no atheris: seeded random mutations
    python tests/fuzz_native.py --make-seeds DIR           # the seed inputs (tests/vectors, both formats)
    python tests/fuzz_native.py --make-dict FILE           # a libFuzzer dictionary (keys, tokens)
    python tests/fuzz_native.py --leak-check [--rounds N] [DIR ...]   # memory stays flat over many decodes
    python tests/fuzz_native.py --replay DIR|FILE ...      # each input once, no atheris

Environment:
    FUZZ_COMPARE=small|all|none   which inputs are checked against the pure twin (default small)
    FUZZ_COMPARE_MAX=4096         "small" means up to this many bytes
    FUZZ_PY_COVERAGE=0|1          also give atheris coverage of collector's Python code (the pure
                                  twin's paths); default: 1 unless the native module is itself
                                  built with sanitizer coverage
"""

import base64
import json
import os
import pathlib
import random
import sys
import time
import zlib

HERE = pathlib.Path(__file__).resolve().parent
if not any(pathlib.Path(p or ".").resolve() == HERE.parent for p in sys.path):
    sys.path.append(str(HERE.parent))  # last: PYTHONPATH (an instrumented build) comes first

VECTORS = HERE / "vectors"
RECEIVED = 1765000000000
JSON, PROTOBUF = 0, 1  # the first byte's low bit

_MODE = sys.argv[1] if len(sys.argv) > 1 else ""
# run as a script: atheris unless the first argument is one of the "--" modes below
_ATHERIS = __name__ == "__main__" and (not _MODE.startswith("--") or _MODE == "--atheris")


def _native_has_coverage() -> bool:
    """Whether the collector._native that will be imported is built with sanitizer coverage
    (found along sys.path without importing collector, which atheris may yet instrument)."""
    for entry in sys.path:
        package = pathlib.Path(entry or ".") / "collector"
        if (package / "__init__.py").is_file():
            return any(b"__sanitizer_cov_8bit_counters_init" in so.read_bytes()
                       for so in package.glob("_native*.so"))
    return False


if _ATHERIS:
    import atheris

    _py_cov = os.environ.get("FUZZ_PY_COVERAGE")
    if _py_cov is None:
        _py_cov = "0" if _native_has_coverage() else "1"
    if _py_cov == "1":
        with atheris.instrument_imports(include=["collector"]):
            import collector
            from collector import _crc_native, _idset_native, _native, _pure
    else:
        import collector
        from collector import _crc_native, _idset_native, _native, _pure
else:
    import collector
    from collector import _pure

    try:
        from collector import _crc_native, _idset_native, _native
    except ImportError:  # tests/test_fuzz.py skips; the CLI modes say so
        _native = _crc_native = _idset_native = None

BatchError = collector.BatchError
TooLarge = sys.modules["collector.errors"].TooLarge  # loaded with collector (instrumented or not)
COMPARE = os.environ.get("FUZZ_COMPARE", "small")
COMPARE_MAX = int(os.environ.get("FUZZ_COMPARE_MAX", "4096"))


class Disagreement(AssertionError):
    """The native decoder and the pure twin disagree on an input."""


# ----------------------------------------------------------------------------- one input


def split(data: bytes) -> tuple[str, bytes]:
    """A fuzz input as (format, batch)."""
    return ("protobuf" if data[0] & 1 else "json"), data[1:]


def join(fmt: str, batch: bytes) -> bytes:
    return bytes([PROTOBUF if fmt == "protobuf" else JSON]) + batch


def native_outcome(batch: bytes, fmt: str):
    """The native decoder's outcome, as plain values; only BatchError may come out of it."""
    try:
        d = _native.decode(batch, fmt, RECEIVED)
    except BatchError as exc:
        return ("batch_error", exc.code)
    id_set = _idset_native.IdSet()  # first: it reads the ids where they were written, as dedup does
    held = id_set.hold_new(d.project_id, d)
    jsonl = d.to_jsonl()
    events = d.events  # the lazily built objects: the output must be valid JSON of the schema
    lines = jsonl.splitlines()
    if len(events) != len(lines) or (jsonl and not jsonl.endswith(b"\n")):
        raise Disagreement(f"{len(events)} events from {len(lines)} lines of JSON Lines")
    if _native.decoded_ids(d) != [ev.event_id for ev in events]:  # noted as they were written
        raise Disagreement(f"decoded_ids {_native.decoded_ids(d)!r}")
    ids = [ev.event_id for ev in events]
    if len(set(ids)) < len(ids):  # an id twice: none is held
        if held is not None or len(id_set):
            raise Disagreement("IdSet held a batch with an id twice")
    elif len(held) != len(ids) or not all(id_set.contains(d.project_id, i) for i in ids):
        raise Disagreement("IdSet did not hold the batch's ids as strings")
    if jsonl and zlib.crc32(batch) % 8 == 0:  # the output limit, on some inputs: stops, or the same
        try:
            _native.decode(batch, fmt, RECEIVED, len(jsonl) // 2 or 1)
            raise Disagreement("no TooLarge under half the output")
        except TooLarge:
            pass
        if _native.decode(batch, fmt, RECEIVED, len(jsonl)).to_jsonl() != jsonl:
            raise Disagreement("a limit the output fits changed it")
    return ("ok", [json.loads(line) for line in lines], [(i, r) for i, r in d.rejected], d.project_id)


def pure_outcome(batch: bytes, fmt: str):
    try:
        d = _pure.decode(batch, fmt, RECEIVED)
    except BatchError as exc:
        return ("batch_error", exc.code)
    lines = d.to_jsonl().splitlines()
    return ("ok", [json.loads(line) for line in lines], [(i, r) for i, r in d.rejected], d.project_id)


def should_compare(batch: bytes) -> bool:
    if COMPARE == "all":
        return True
    if COMPARE == "none":
        return False
    return len(batch) <= COMPARE_MAX or zlib.crc32(batch) % 16 == 0


def check(batch: bytes, fmt: str, compare: bool | None = None):
    """One batch: the native decoder survives it (and, if `compare`, says what the pure one
    says). Returns the native outcome."""
    native = native_outcome(batch, fmt)
    if compare is None:
        compare = should_compare(batch)
    if compare:
        pure = pure_outcome(batch, fmt)
        if native != pure:
            raise Disagreement(
                f"{fmt} batch {batch!r}\n  native: {_short(native)}\n  pure:   {_short(pure)}"
            )
    return native


def _short(outcome) -> str:
    text = repr(outcome)
    return text if len(text) < 2000 else text[:2000] + "..."


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    fmt, batch = split(data)
    check(batch, fmt)
    # the log's checksum (folded where the CPU allows) reads only its input, and is zlib's
    if _crc_native.crc32(data, len(data)) != zlib.crc32(data, len(data)):
        raise Disagreement(f"crc32 of {data!r}")
    # the request envelope is read in place: a request or ValueError, as the pure twin reads it
    if request_outcome(_native, data) != request_outcome(_pure, data):
        raise Disagreement(f"read_request of {data!r}")


def request_outcome(impl, data: bytes):
    try:
        batch_id, fmt, batch, project = impl.read_request(data)
    except ValueError:
        return None
    return batch_id, fmt, None if batch is None else bytes(batch), project


# ----------------------------------------------------------------------------------- seeds


def _vector_batches():
    for path in sorted(VECTORS.glob("*.json")):
        v = json.loads(path.read_text())
        data = base64.b64decode(v["batch_base64"]) if "batch_base64" in v else v["batch"].encode()
        yield path.stem, data


def _synthetic():
    """Small JSON batches for paths the vectors miss: the limits (MAX_EVENTS (+1) events, 64/65
    deep params), repeated keys, long urls and numbers, and header keys after `pl` (its events
    are then read again with the final header)."""
    head = b'{"pid":1,"uid":"u","now":5,"pl":['
    ev = b'{"euid":"e","ea":0,"t":1}'
    yield "events_1000", head + b",".join([ev] * 1000) + b"]}"
    yield "events_1001", head + b",".join([b"{}"] * 1001) + b"]}"
    deep = b'{"a":' * 61 + b"1" + b"}" * 61
    yield "params_depth_64", head + b'{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":' + deep + b"}]}"
    yield "params_depth_65", head + b'{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":{"x":' + deep + b"}}]}"
    yield "params_array_depth_65", (head + b'{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":{"x":'
                                    + b"[" * 61 + b"]" * 61 + b"}}]}")
    yield "dup_params", head + (b'{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":{"a":1,"b":[1e999],"a":2}},'
                                b'{"euid":"f","ea":20,"t":1,"ac":"a.b","pr":{"a":1,"b":{"c":[1,2]},"a":{"x":null}}}]}')
    many = b",".join(b'"k%d":%d' % (i, i) for i in range(20))
    yield "many_params", head + (b'{"euid":"e","ea":20,"t":1,"ac":"a.b","pr":{' + many + b"}},"
                                 b'{"euid":"f","ea":20,"t":1,"ac":"a.b","pr":{' + many + b',"k3":"x"}}]}')
    url = b"https://x.example/p?a=1&title=" + b"%E2%82%AC+%ff%41" * 40 + b"#frag"
    yield "long_url", (head + b'{"euid":"e","ea":4,"t":1,"url":"' + url
                       + b'"},{"euid":"f","ea":4,"t":2,"url":"' + url + b'"}]}')
    # the output buffer fills up just as a repeated url's screen name is copied (its cache)
    url = b"/?title=" + b"%01" * 50
    yield "repeated_url", head + b",".join([b'{"euid":"e","ea":4,"t":1,"url":"' + url + b'"}'] * 10) + b"]}"
    yield "long_number", head + b'{"euid":"e","ea":16,"t":1,"tr":{"vl":' + b"1" * 80 + b".5e-3,\"cu\":978}}]}"
    evs = (b'{"euid":"a","ea":6,"t":1,"tvp":"p","tvid":"i","ur":false,"url":"/s?title=A+b","vo":{"sv":"1","sb":2}},'
           b'{"euid":"b","ea":6,"t":2,"tvp":"p","tvid":"i","ur":true,"url":"/s?title=A+b","vo":{"sv":"1","sb":2}},'
           b'{"euid":"c","ea":20,"t":3,"ac":"x.y","pr":{ "a" : 1 , "b":[ 1 ,99999999999999999999]}},5')
    rest = b'"dt":4,"dma":"m","to":{"an":"n","st":"s"},"r":{"d":2.5}'
    yield "pl_first", b'{"pl":[' + evs + b'],"pid":1,"uid":"u","now":5,' + rest + b"}"
    yield "header_after_pl", head + evs + b'],"uid":"v",' + rest + b"}"
    yield "header_after_pl_bad", head + evs + b'],"pid":0}'
    yield "two_pl", head + evs + b'],' + rest + b',"pl":[' + evs + b',' + ev + b"]}"


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _pb_len(field: int, data: bytes) -> bytes:
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def _pb_int(field: int, n: int) -> bytes:
    return _pb_varint(field << 3) + _pb_varint(n & 0xFFFFFFFFFFFFFFFF)


def _pb_value(v) -> bytes:
    """A `Value` as the collector's protobuf has it (see proto/)."""
    if v is None:
        return _pb_int(1, 0)
    if isinstance(v, bool):
        return _pb_int(2, int(v))
    if isinstance(v, int):
        return _pb_int(3, (v << 1) ^ (v >> 63))  # sint64
    if isinstance(v, float):
        import struct

        return _pb_varint(4 << 3 | 1) + struct.pack("<d", v)
    if isinstance(v, str):
        return _pb_len(5, v.encode())
    if isinstance(v, list):
        return _pb_len(6, b"".join(_pb_len(1, _pb_value(x)) for x in v))
    return _pb_len(7, _pb_object(v))


def _pb_object(members) -> bytes:
    """An `Object` from (key, value) pairs (keys may repeat) or a dict."""
    items = members.items() if isinstance(members, dict) else members
    return b"".join(_pb_len(1, _pb_len(1, k.encode()) + _pb_len(2, _pb_value(v))) for k, v in items)


def _pb_custom_batch(*objects: bytes) -> bytes:
    """A protobuf batch of custom events (ea 20) whose `pr` are the given Objects."""
    events = b""
    for i, obj in enumerate(objects):
        custom = _pb_len(1, b"a.b") + _pb_len(3, obj)
        events += _pb_len(4, _pb_len(1, b"e%d" % i) + _pb_int(2, 20) + _pb_int(3, 1) + _pb_len(23, custom))
    return _pb_int(1, 1) + _pb_len(2, b"u") + _pb_int(3, 5) + events


def _synthetic_protobuf():
    """Protobuf batches json_to_protobuf cannot make: repeated keys in params, too deep params,
    unknown fields inside an Object, an empty Object, MAX_EVENTS + 1 events."""
    head = b'{"pid":1,"uid":"u","now":5,"pl":['
    one = collector.json_to_protobuf(head + b"{}]}")
    two = collector.json_to_protobuf(head + b"{},{}]}")
    yield "events_1001", two + two[len(one):] * 999
    deep64, arr65 = 1, []
    for i in range(61):  # `pr` is at level 4
        deep64 = {"a": deep64}
        arr65 = [arr65] if i < 60 else arr65
    deep65 = {"x": deep64}
    yield "params_depth_64", _pb_custom_batch(_pb_object(deep64))
    yield "params_depth_65", _pb_custom_batch(_pb_object(deep65))
    yield "params_array_depth_65", _pb_custom_batch(_pb_object({"x": [arr65]}))
    dup = _pb_object([("a", 1), ("b", [1.5, "s", None, True]), ("a", {"c": False}), ("d", -7)])
    yield "dup_params", _pb_custom_batch(dup, _pb_object([("a", 1), ("a", float("inf"))]))
    many = [(f"k{i}", i) for i in range(20)]
    yield "many_params", _pb_custom_batch(_pb_object(many), _pb_object(many + [("k3", "x")]))
    odd = _pb_int(2, 5) + _pb_object({"a": 1}) + _pb_len(3, b"zz") + _pb_len(1, _pb_int(7, 1))
    yield "params_unknown_fields", _pb_custom_batch(odd, b"")


def _reordered(vectors):
    """The vectors' batches that are JSON objects with `pl`, their keys in other orders: `pl`
    first, and the header around it (the decoder joins those events with the header at the end)."""
    for name, data in vectors:
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        if not isinstance(doc, dict) or "pl" not in doc:
            continue
        head = [k for k in doc if k != "pl"]
        half = len(head) // 2
        for order, keys in (("pl_first", ["pl", *head]), ("around_pl", [*head[:half], "pl", *head[half:]])):
            text = json.dumps({k: doc[k] for k in keys}, ensure_ascii=False, separators=(",", ":"))
            yield f"{name}_{order}", text.encode("utf-8", "surrogatepass")


_SEEDS = None


def seeds() -> list[tuple[str, str, bytes]]:
    """(name, format, batch): the vectors' batches (up to 20 kB) and the synthetic ones, as JSON
    and, where they have one, as their protobuf form (`collector.json_to_protobuf`)."""
    global _SEEDS
    if _SEEDS is None:
        out = []
        vectors = [(n, d) for n, d in _vector_batches() if len(d) <= 20000]
        for name, data in [*vectors, *_synthetic()]:
            out.append((name, "json", data))
            try:
                out.append((name, "protobuf", collector.json_to_protobuf(data)))
            except ValueError:  # refused as a whole, or a value protobuf cannot carry
                pass
        out += [(name, "json", data) for name, data in _reordered(vectors)]
        made = {name for name, fmt, _ in out if fmt == "protobuf"}
        out += [(name, "protobuf", data) for name, data in _synthetic_protobuf() if name not in made]
        _SEEDS = out
    return _SEEDS


def make_seeds(directory: str) -> int:
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, fmt, batch in seeds():
        data = join(fmt, batch)
        (d / f"{name}.{'pb' if fmt == 'protobuf' else 'json'}").write_bytes(data)
    return len(seeds())


def make_dict(path: str) -> None:
    """A libFuzzer dictionary: every key the spec knows, JSON tokens, tricky escapes."""
    from collector import spec

    keys = set()

    def walk(fields):
        for f in fields:
            keys.add(f.key)
            walk(f.fields)

    walk(spec.HEADER)
    walk(spec.COMMON)
    for _, fields, _ in spec.ACTIONS.values():
        walk(fields)
    tokens = [f'"{k}":' for k in sorted(keys)]
    tokens += ["null", "true", "false", "-0", "1e999", "-1e999", "9223372036854775807",
               "9223372036854775808", "-9223372036854775809", "0.75", "1.5e-3", '"a.b"',
               "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\\\", '\\"', "\\u00e9",
               "%E2%82%AC", "%ff", "?title=", "&title=", "#", "+", "\xc3\xa9", "\xed\xa0\x80",
               "\xf0\x9f\x98\x80", "\xff"]
    lines = []
    for t in tokens:
        esc = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else f"\\x{ord(c):02x}"
                      for c in t)
        lines.append(f'"{esc}"')
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------- seeded mutations (no atheris needed)

TOKENS = [b"[", b"{", b"}", b"]", b'"', b"\\", b"\\u", b"\\ud800", b"\\udc00", b"\xff", b"\xc3",
          b"\xed\xa0\x80", b"1e999", b"-", b",", b":", b"\x00", b"\x80", b"9" * 25, b"null",
          b"true", b'"pl":', b'"pr":{"a":1,"a":2}', b'"ea":20', b'"ac":"a.b"', b'"ea":16',
          b'"tr":{"vl":1,"cu":978}', b'"url":"?title=%E2%82%AC+x"', b"\x0a", b"\x12\x00",
          b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x09",
          b"\x11", b"\x22\x00", b"\x2a\x00", b"\x3a\x04\x0a\x02\x0a\x00"]


def mutate(r: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(r.choice((1, 1, 1, 2, 2, 3, 6))):
        op = r.randrange(7)
        pos = r.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = r.randrange(256)
        elif op == 1:
            buf[pos:pos] = r.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + r.randint(1, 16)]
        elif op == 3:
            del buf[pos:]
        elif op == 4:
            end = min(len(buf), pos + r.randint(1, 64))
            buf[pos:pos] = buf[pos:end]
        elif op == 5 and buf:  # flip a bit
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << r.randrange(8)
        elif buf:  # a varint-ish length or count nudged
            i = min(pos, len(buf) - 1)
            buf[i] = (buf[i] + r.choice((-1, 1, 2, 64, 127, 128))) & 0xFF
    return bytes(buf)


def corpus_inputs(directory) -> list[bytes]:
    d = pathlib.Path(directory)
    return [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()] if d.is_dir() else []


def run(seconds: float = 0, count: int = 0, seed: int = 1, corpus=(HERE / "fuzz_corpus",),
        compare: bool | None = True, stats: dict | None = None) -> int:
    """The seeds, the corpus files, then seeded random mutations of them: `count` inputs in all,
    or for `seconds`. Returns how many inputs were run; `stats` (if given) counts the outcomes:
    "ok", "batch_error", "rejected" (ok with rejected events)."""
    r = random.Random(seed)
    stats = {} if stats is None else stats
    pool = [(fmt, batch) for _, fmt, batch in seeds()]
    for d in corpus:
        pool += [split(data) for data in corpus_inputs(d) if data]

    def one(batch, fmt):
        outcome = check(batch, fmt, compare)
        if request_outcome(_native, batch) != request_outcome(_pure, batch):
            raise Disagreement(f"read_request of {batch!r}")
        stats[outcome[0]] = stats.get(outcome[0], 0) + 1
        if outcome[0] == "ok" and outcome[2]:
            stats["rejected"] = stats.get("rejected", 0) + 1

    for fmt, batch in pool:
        one(batch, fmt)
    done = len(pool)
    deadline = time.monotonic() + seconds
    while (count and done < count) or (seconds and time.monotonic() < deadline):
        fmt, batch = r.choice(pool)
        if r.random() < 0.05:
            fmt = "json" if fmt == "protobuf" else "protobuf"
        one(mutate(r, batch), fmt)
        done += 1
    return done


# ------------------------------------------------------------------------------ leak check


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def leak_check(dirs, rounds: int = 200, seed: int = 3) -> bool:
    """Decode the same inputs (corpus files, seeds and fixed mutations of them) `rounds` times:
    the process's resident memory and Python's allocated blocks must stay flat after a warm-up."""
    import gc

    r = random.Random(seed)
    pool = [(fmt, batch) for _, fmt, batch in seeds()]
    for d in dirs:
        pool += [split(data) for data in corpus_inputs(d) if data]
    pool += [(fmt, mutate(r, batch)) for fmt, batch in pool for _ in range(3)]

    def one_round():
        for fmt, batch in pool:
            try:
                d = _native.decode(batch, fmt, RECEIVED)
            except BatchError:
                continue
            d.to_jsonl()
            _ = d.events

    for _ in range(5):  # warm-up: caches, arenas, the allocator's high-water mark
        one_round()
    gc.collect()
    rss0, blocks0 = _rss_kib(), sys.getallocatedblocks()
    t0 = time.monotonic()
    marks = []
    for i in range(rounds):
        one_round()
        if (i + 1) % max(1, rounds // 10) == 0:
            gc.collect()
            marks.append((i + 1, _rss_kib() - rss0, sys.getallocatedblocks() - blocks0))
    decodes = rounds * len(pool)
    rss_growth = marks[-1][1]
    block_growth = marks[-1][2]
    print(f"leak check: {len(pool)} inputs x {rounds} rounds = {decodes} decodes in "
          f"{time.monotonic() - t0:.0f} s; RSS growth {rss_growth} KiB, Python blocks growth "
          f"{block_growth}")
    for n, rss, blocks in marks:
        print(f"  after {n:5d} rounds: RSS {rss:+6d} KiB, blocks {blocks:+d}")
    # one lost Python object per 100 decodes, or 4 lost bytes per decode (beyond 2 MiB of
    # allocator noise), count as a leak
    ok = block_growth < max(1000, decodes // 100) and rss_growth < max(2048, decodes * 4 // 1024)
    print("leak check:", "flat" if ok else "GROWING: a leak")
    return ok


# ------------------------------------------------------------------------------------ main


def main(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--make-seeds", metavar="DIR")
    p.add_argument("--make-dict", metavar="FILE")
    p.add_argument("--leak-check", action="store_true")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--replay", action="store_true")
    p.add_argument("dirs", nargs="*")
    args = p.parse_args(argv)
    if args.make_seeds:
        print(f"{make_seeds(args.make_seeds)} seeds written to {args.make_seeds}")
        return 0
    if args.make_dict:
        make_dict(args.make_dict)
        return 0
    if _native is None:
        print("collector._native is not built", file=sys.stderr)
        return 2
    print(f"native decoder: {_native.__file__}", file=sys.stderr)
    if args.leak_check:
        return 0 if leak_check(args.dirs or [HERE / "fuzz_corpus"], args.rounds, args.seed) else 1
    if args.replay:  # every input of the directories (or files) once, as the fuzz target does
        n = 0
        for d in args.dirs:
            for data in corpus_inputs(d) if pathlib.Path(d).is_dir() else [pathlib.Path(d).read_bytes()]:
                TestOneInput(data)
                n += 1
        print(f"{n} inputs replayed: no crash, no disagreement")
        return 0
    started = time.monotonic()
    seconds = args.seconds if args.seconds is not None else (0 if args.count else 60)
    n = run(seconds=seconds, count=args.count, seed=args.seed,
            corpus=[HERE / "fuzz_corpus", *args.dirs], compare=None)
    print(f"{n} inputs in {time.monotonic() - started:.0f} s: no crash, no disagreement")
    return 0


if __name__ == "__main__":
    if _ATHERIS:
        argv = [a for a in sys.argv if a != "--atheris"]
        dirs = [i for i, a in enumerate(argv[1:], 1) if not a.startswith("-")]
        if dirs and pathlib.Path(argv[dirs[0]]).resolve() == HERE / "fuzz_corpus":
            # libFuzzer adds new inputs to its first directory: keep the curated seeds clean
            scratch = os.environ.get("FUZZ_SCRATCH", "/tmp/fuzz_native_corpus")
            os.makedirs(scratch, exist_ok=True)
            argv.insert(dirs[0], scratch)
            print(f"new inputs go to {scratch} (FUZZ_SCRATCH), not tests/fuzz_corpus", file=sys.stderr)
        print(f"native decoder: {_native.__file__} (coverage: {_native_has_coverage()}); "
              f"python coverage: {_py_cov == '1'}; compare: {COMPARE}", file=sys.stderr)
        atheris.Setup(argv, TestOneInput)
        atheris.Fuzz()
    else:
        sys.exit(main(sys.argv[1:]))
