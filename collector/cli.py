"""`collector`: decode batches, run the service, send batches to it, tail its live stream."""

import argparse
import asyncio
import base64
import json
import os
import sys
import time

import msgspec

from . import decode
from .errors import BatchError


# --------------------------------------------------------------------------- reading input


def _read_varint(f) -> int | None:
    """A protobuf varint from a binary stream; None at a clean end of the stream."""
    result = shift = 0
    for i in range(10):
        byte = f.read(1)
        if not byte:
            if i == 0:
                return None
            raise EOFError("truncated length prefix")
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
    raise EOFError("length prefix longer than 10 bytes")


def batches(f, fmt: str):
    """Yield each batch of a stream: JSON Lines (json) or varint-delimited messages (protobuf).
    A broken protobuf stream yields an EOFError and stops."""
    if fmt == "json":
        for line in f:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line
        return
    while True:
        try:
            size = _read_varint(f)
            if size is None:
                return
            data = f.read(size)
            if len(data) < size:
                raise EOFError(f"message of {size} bytes cut short at {len(data)}")
        except EOFError as exc:
            yield exc
            return
        yield data


def _open_inputs(files):
    for name in files or ["-"]:
        if name == "-":
            yield name, sys.stdin.buffer
        else:
            with open(name, "rb") as f:
                yield name, f


class Progress:
    """A status line on stderr, only when it is a terminal and the work takes a while."""

    def __init__(self, what: str):
        self.what = what
        self.on = sys.stderr.isatty()
        self.started = self.shown = time.monotonic()

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.on and (force or now - self.shown >= 0.25) and now - self.started >= 1.0:
            self.shown = now
            sys.stderr.write(f"\r{self.what}: {text}\x1b[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.shown > self.started:
            sys.stderr.write("\n")


# ---------------------------------------------------------------------------------- decode


def _raw(data: bytes, fmt: str):
    if fmt == "json":
        return data.decode("utf-8", "replace"), None
    return base64.b64encode(data).decode(), "base64"


def _raw_event(data: bytes, index: int):
    try:
        return json.dumps(json.loads(data)["pl"][index], ensure_ascii=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001 - then the whole batch is the evidence
        return data.decode("utf-8", "replace")


def cmd_decode(args) -> int:
    out = sys.stdout.buffer
    dead = open(args.dead_letter, "ab") if args.dead_letter else sys.stderr.buffer
    n = events = rejected = 0
    progress = Progress("decode")

    def dead_letter(record: dict) -> None:
        dead.write(msgspec.json.encode(record) + b"\n")

    try:
        try:
            for name, f in _open_inputs(args.files):
                for data in batches(f, args.format):
                    if isinstance(data, EOFError):
                        dead_letter({"batch": n, "index": None, "reason": "malformed_json",
                                     "message": f"{name}: {data}", "raw": None})
                        n += 1
                        break
                    received = args.received_at if args.received_at is not None else None
                    try:
                        d = decode(data, format=args.format, received_time=received)
                    except BatchError as exc:
                        raw, enc = _raw(data, args.format)
                        rec = {"batch": n, "index": None, "reason": exc.code, "message": exc.message, "raw": raw}
                        if enc:
                            rec["raw_encoding"] = enc
                        dead_letter(rec)
                        rejected += 1
                    else:
                        out.write(d.to_jsonl())
                        events += len(d)
                        for index, reason in d.rejected:
                            if args.format == "json":
                                dead_letter({"batch": n, "index": index, "reason": reason,
                                             "raw": _raw_event(data, index)})
                            else:
                                raw, enc = _raw(data, args.format)
                                dead_letter({"batch": n, "index": index, "reason": reason, "raw": raw,
                                             "raw_encoding": enc})
                        rejected += len(d.rejected)
                    n += 1
                    rate = events / max(time.monotonic() - progress.started, 1e-9)
                    progress.update(f"{n} batches, {events} events ({rate:,.0f}/s), {rejected} rejected")
        except OSError as exc:
            print(f"collector decode: {exc}", file=sys.stderr)
            return 1
    finally:
        progress.done()
        out.flush()
        if args.dead_letter:
            dead.close()
        else:
            dead.flush()
    return 0


# ----------------------------------------------------------------------------------- serve


def cmd_serve(args) -> int:
    import logging

    from . import config
    from .server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config.load(args.config, listen=args.listen, data_dir=args.data_dir,
                          metrics_listen=args.metrics_listen)
    except (OSError, ValueError) as exc:
        print(f"collector serve: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(cfg))


# ------------------------------------------------------------------------------------ send


def cmd_send(args) -> int:
    from .client import Client

    tls_root = open(args.tls_root, "rb").read() if args.tls_root else None
    totals = {"batches": 0, "accepted": 0, "duplicate": 0, "filtered": 0, "rejected": 0, "refused": 0}
    progress = Progress("send")

    def requests(stream_index: int, streams: int):
        i = 0
        started = time.monotonic()
        for name, f in _open_inputs(args.files):
            for data in batches(f, args.format):
                if isinstance(data, EOFError):
                    print(f"collector send: {name}: {data}", file=sys.stderr)
                    return
                if i % streams == stream_index:
                    if args.rate:  # batches per second, over all streams
                        delay = started + (i + 1) / args.rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    yield Client.request(data, format=args.format, batch_id=f"{name}:{i}")
                i += 1

    async def one_stream(client, index: int):
        async for reply in client.stream(requests(index, args.streams)):
            totals["batches"] += 1
            if reply.batch_error or reply.status:
                totals["refused" if not reply.batch_error else "rejected"] += 1
            for key in ("accepted", "duplicate", "filtered", "rejected"):
                totals[key] += getattr(reply, key)
            progress.update(", ".join(f"{k} {v}" for k, v in totals.items()))

    async def main():
        async with Client(args.address, api_key=args.api_key, tls_root=tls_root) as client:
            await asyncio.gather(*(one_stream(client, i) for i in range(args.streams)))

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"collector send: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.done()
    print(json.dumps(totals))
    return 0


# ------------------------------------------------------------------------------------ tail


def cmd_tail(args) -> int:
    import grpc

    from .client import channel
    from .convert import protobuf_to_event
    from .v1 import collector_pb2 as pb
    from .v1 import collector_pb2_grpc as pb_grpc

    request = pb.SubscribeRequest(project_ids=args.project, actions=args.action, user_id=args.user or "")
    start = args.start
    if start.startswith("position:"):
        request.from_position = int(start.split(":", 1)[1])
    elif start.startswith("time:"):
        request.from_time = int(start.split(":", 1)[1])
    elif start != "now":
        print("collector tail: --from is now, position:N or time:MS", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    tls_root = open(args.tls_root, "rb").read() if args.tls_root else None

    async def main():
        async with channel(args.address, tls_root=tls_root) as ch:
            count = 0
            async for msg in pb_grpc.EventsStub(ch).Subscribe(request, metadata=metadata):
                ev = protobuf_to_event(msg)
                if args.positions:
                    ev = {"position": msg.position, **ev}
                sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
                sys.stdout.flush()
                count += 1
                if args.limit and count >= args.limit:
                    return

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except grpc.aio.AioRpcError as exc:
        print(f"collector tail: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------ main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collector", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("decode", help="decode batches to normalised JSON Lines")
    d.add_argument("--format", choices=("json", "protobuf"), default="json")
    d.add_argument("--received-at", type=int, metavar="MS", help="received time (default: now)")
    d.add_argument("--dead-letter", metavar="PATH", help="where rejections go (default: stderr)")
    d.add_argument("files", nargs="*", metavar="FILE", help="input files (default: stdin)")
    d.set_defaults(func=cmd_decode)

    s = sub.add_parser("serve", help="run the collector")
    s.add_argument("--config", metavar="FILE", help="TOML configuration")
    s.add_argument("--listen", help="address to serve gRPC on (host:port)")
    s.add_argument("--data-dir", help="where the log, cursors and outputs live")
    s.add_argument("--metrics-listen", help="address of the Prometheus endpoint ('' for none)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("send", help="replay batches to a collector over IngestStream")
    c.add_argument("address", help="host:port of the collector")
    c.add_argument("files", nargs="*", metavar="FILE", help="JSON Lines of batches (default: stdin)")
    c.add_argument("--format", choices=("json", "protobuf"), default="json")
    c.add_argument("--rate", type=float, default=0, help="batches per second (default: as fast as it goes)")
    c.add_argument("--streams", type=int, default=1, help="concurrent streams")
    c.add_argument("--api-key")
    c.add_argument("--tls-root", metavar="PEM", help="CA certificate: connect with TLS")
    c.set_defaults(func=cmd_send)

    t = sub.add_parser("tail", help="print a collector's live stream of events")
    t.add_argument("address", help="host:port of the collector")
    t.add_argument("--project", type=int, action="append", default=[], help="project id (repeatable)")
    t.add_argument("--action", action="append", default=[], help="action or pattern such as 'poll.*'")
    t.add_argument("--user", help="only this user's events")
    t.add_argument("--from", dest="start", default="now", help="now, position:N or time:MS")
    t.add_argument("--limit", type=int, default=0, help="stop after this many events")
    t.add_argument("--positions", action="store_true", help="print each event's log position")
    t.add_argument("--api-key")
    t.add_argument("--tls-root", metavar="PEM")
    t.set_defaults(func=cmd_tail)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
