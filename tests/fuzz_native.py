"""Fuzz the native decoder: any bytes, both formats; only BatchError may come out, and the
pure twin must agree.

    python tests/fuzz_native.py --seconds 600            # seeded random mutations
    python tests/fuzz_native.py --atheris [libFuzzer args]   # coverage-guided, with atheris

Seeds are the conformance vectors (as JSON and as protobuf). A failure prints the input (hex).
"""

import argparse
import base64
import json
import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import collector  # noqa: E402
from collector import _native, _pure  # noqa: E402

VECTORS = pathlib.Path(__file__).parent / "vectors"
TOKENS = [b"[", b"{", b"}", b"]", b'"', b"\\", b"\\u", b"\\ud800", b"\xff", b"\xc3", b"\xed\xa0\x80",
          b"1e999", b"-", b",", b":", b"\x00", b"\x80", b"9" * 25, b"null", b"true", b'"pl":',
          b'"pr":{"a":1,"a":2}', b'"ea":20', b'"ac":"a.b"', b"\x0a", b"\x12\x00", b"\xff\xff\xff\xff\x0f"]


def seeds() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        v = json.loads(path.read_text())
        data = base64.b64decode(v["batch_base64"]) if "batch_base64" in v else v["batch"].encode()
        if len(data) > 20000:
            continue
        out.append(("json", data))
        try:
            out.append(("protobuf", collector.json_to_protobuf(data)))
        except ValueError:
            pass
    return out


def outcome(impl, data: bytes, fmt: str):
    try:
        d = impl.decode(data, fmt, 1)
    except collector.BatchError as exc:
        return ("error", exc.code)
    return ("ok", [json.loads(x) for x in d.to_jsonl().splitlines()], d.rejected)


def check(data: bytes, fmt: str) -> None:
    """One input: the native decoder survives it and says what the pure one says."""
    native = outcome(_native, data, fmt)
    if native[0] == "ok":
        _native.decode(data, fmt, 1).events  # the lazily built objects too
    assert native == outcome(_pure, data, fmt), (fmt, data.hex())


def mutate(r: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(r.randint(1, 6)):
        op = r.randrange(5)
        pos = r.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = r.randrange(256)
        elif op == 1:
            buf[pos:pos] = r.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + r.randint(1, 16)]
        elif op == 3:
            del buf[pos:]
        else:
            end = min(len(buf), pos + r.randint(1, 64))
            buf[pos:pos] = buf[pos:end]
    return bytes(buf)


def run(seconds: float = 0, count: int = 0, seed: int = 1) -> int:
    r = random.Random(seed)
    pool = seeds()
    for fmt, data in pool:
        check(data, fmt)
    done = len(pool)
    deadline = time.monotonic() + seconds
    while (count and done < count) or (seconds and time.monotonic() < deadline):
        fmt, data = r.choice(pool)
        check(mutate(r, data), fmt)
        done += 1
    return done


def atheris_main(argv) -> None:
    import atheris

    def one(data: bytes) -> None:
        if data:
            check(data[1:], "json" if data[0] & 1 else "protobuf")

    atheris.Setup(argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--atheris", action="store_true")
    args, rest = p.parse_known_args()
    if args.atheris:
        atheris_main([sys.argv[0], *rest])
    else:
        started = time.monotonic()
        n = run(seconds=args.seconds, seed=args.seed)
        print(f"{n} inputs in {time.monotonic() - started:.0f} s: no crash, no disagreement")
