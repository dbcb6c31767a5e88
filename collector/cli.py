"""`collector`: decode batches, run the service, send batches to it, tail its live stream."""

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import sys
import time

import msgspec

from . import decode
from .build import version_line
from .config import ConfigError, Limits
from .errors import BatchError


class Usage(Exception):
    """A usage or configuration error: one line, exit status 2."""


class Failure(Exception):
    """A run-time failure (an input unreadable, the collector unreachable or refusing): one
    line, exit status 1."""


# --------------------------------------------------------------------------- reading input


class Truncated(EOFError):
    """A protobuf stream that ends inside a message; `data` holds the bytes that did arrive."""

    def __init__(self, message: str, data: bytes = b""):
        super().__init__(message)
        self.data = data


def _read_varint(f) -> int | None:
    """A protobuf varint from a binary stream; None at a clean end of the stream."""
    result = shift = 0
    prefix = b""
    for _ in range(10):
        byte = f.read(1)
        if not byte:
            if not prefix:
                return None
            raise Truncated("truncated length prefix", prefix)
        prefix += byte
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
    raise Truncated("length prefix longer than 10 bytes", prefix)


def batches(f, fmt: str, max_bytes: int = Limits().max_message_bytes):
    """Yield each batch of a binary stream as bytes: JSON Lines (json) or varint-delimited
    messages (protobuf, as writeDelimitedTo writes them). A broken protobuf stream yields one
    Truncated and stops: nothing after it can be framed. A length prefix over `max_bytes` is
    broken too (a file that is not protobuf reads as lengths of exabytes)."""
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
            if size > max_bytes:
                raise Truncated(f"a length prefix of {size} bytes, over limits.max_message_bytes "
                                f"({max_bytes}): not varint-delimited protobuf?")
            data = f.read(size)
            if len(data) < size:
                raise Truncated(f"message of {size} bytes cut short at {len(data)}", data)
        except Truncated as exc:
            yield exc
            return
        yield data


class Progress:
    """A status line on stderr, only when it is a terminal and the work takes a while: a pipe
    or a log file must get nothing but the records written to it."""

    def __init__(self, what: str):
        self.what = what
        self.on = sys.stderr.isatty()
        self.started = self.shown = time.monotonic()
        self.text = ""

    def update(self, text: str, force: bool = False) -> None:
        self.text = text
        now = time.monotonic()
        if self.on and (force or now - self.shown >= 0.25) and now - self.started >= 1.0:
            self.shown = now
            sys.stderr.write(f"\r{self.what}: {text}\x1b[K")
            sys.stderr.flush()

    def clear(self) -> None:
        """Wipe the status line so that other output to the terminal starts on a clean line."""
        if self.on and self.shown > self.started:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def done(self) -> None:
        """Leave the final numbers on screen, if a status line was ever shown."""
        if self.on and self.shown > self.started:
            self.update(self.text, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------- decode


def _received_at(value: str) -> int:
    """argparse type: decode() takes a non-negative int64 of ms; anything else is a usage error."""
    try:
        ms = int(value)
    except ValueError:
        ms = -1
    if not 0 <= ms < 2**63:
        raise argparse.ArgumentTypeError(f"not a time in ms since epoch: {value!r}")
    return ms


class DeadLetters:
    """Writes one JSON record per rejected event or refused batch, so that nothing is dropped
    silently (SPEC section 2) and each rejection can be traced to its batch and event."""

    def __init__(self, f, fmt: str, progress: Progress, to_terminal: bool):
        self.f, self.fmt, self.progress, self.to_terminal = f, fmt, progress, to_terminal
        self.count = 0

    def write(self, record: dict) -> None:
        if self.to_terminal:
            self.progress.clear()
        self.f.write(msgspec.json.encode(record) + b"\n")
        self.count += 1

    def _raw(self, record: dict, data: bytes) -> dict:
        if self.fmt == "json":
            record["raw"] = data.decode("utf-8", "replace")
        else:
            record["raw"] = base64.b64encode(data).decode()
            record["raw_encoding"] = "base64"
        return record

    def batch_error(self, n: int, code: str, message: str, data: bytes) -> None:
        self.write(self._raw({"batch": n, "index": None, "reason": code, "message": message}, data))

    def events(self, n: int, rejected: list, data: bytes) -> None:
        """The rejected events of a decoded batch; for JSON, `raw` is the event itself (the
        batch is parsed once, and only when something was rejected)."""
        events: list = []  # none readable: then the whole batch is each one's evidence
        if self.fmt == "json":
            try:
                events = json.loads(data)["pl"]
            except Exception:  # noqa: BLE001 - then the whole batch is the evidence
                pass
        for index, reason in rejected:
            record = {"batch": n, "index": index, "reason": reason}
            try:
                record["raw"] = json.dumps(events[index], ensure_ascii=False, separators=(",", ":"))
            except Exception:  # noqa: BLE001 - protobuf, or the event cannot be recovered
                self._raw(record, data)
            self.write(record)


class InputError(Exception):
    """An input that cannot be opened or read (not an output error, which must not pass for one)."""


def _label(name: str) -> str:
    return "<stdin>" if name == "-" else name


def _input(name: str, fmt: str):
    """The batches of one input ('-' is stdin); I/O errors of this input become InputError."""
    label = _label(name)
    try:
        f = contextlib.nullcontext(sys.stdin.buffer) if name == "-" else open(name, "rb")
        with f as stream:
            yield from batches(stream, fmt)
    except OSError as exc:
        raise InputError(f"{label}: {exc.strerror or exc}") from exc


def cmd_decode(args) -> int:
    """Decode every batch of every input; events to stdout, rejections to the dead-letter path.
    Rejections are data, not failures: the status is 1 only when an input cannot be read."""
    out = sys.stdout.buffer
    try:
        dead_file = open(args.dead_letter, "ab") if args.dead_letter else sys.stderr.buffer
    except OSError as exc:
        print(f"collector decode: {exc}", file=sys.stderr)
        return 1
    progress = Progress("decode")
    dead = DeadLetters(dead_file, args.format, progress, to_terminal=not args.dead_letter)
    status = n = events = 0
    try:
        for name in args.files or ["-"]:
            try:
                for data in _input(name, args.format):
                    if isinstance(data, Truncated):
                        dead.batch_error(n, "malformed_json", f"{_label(name)}: {data}", data.data)
                        n += 1
                        break
                    try:
                        d = decode(data, format=args.format, received_time=args.received_at)
                    except BatchError as exc:
                        dead.batch_error(n, exc.code, exc.message, data)
                    else:
                        out.write(d.to_jsonl())
                        events += len(d)
                        if d.rejected:
                            dead.events(n, d.rejected, data)
                    n += 1
                    rate = events / max(time.monotonic() - progress.started, 1e-9)
                    progress.update(f"{n} batches, {events} events ({rate:,.0f}/s), "
                                    f"{dead.count} rejected")
            except InputError as exc:  # like cat: say so, go on with the other inputs, exit 1
                progress.clear()
                print(f"collector decode: {exc}", file=sys.stderr)
                status = 1
    finally:
        progress.done()
        out.flush()
        if args.dead_letter:
            dead_file.close()
        else:
            dead_file.flush()
    return status


# ----------------------------------------------------------------------------------- serve


def cmd_serve(args) -> int:
    from . import config, logs
    from .analytics.api import check as check_api
    from .server import serve

    cfg = config.load(args.config, listen=args.listen, data_dir=args.data_dir,
                      metrics_listen=args.metrics_listen, log_format=args.log_format,
                      http_listen=args.http_listen)
    try:
        check_api(cfg)
    except ValueError as exc:
        raise Usage(str(exc)) from None
    logs.setup(cfg.log_format, cfg.log_level)
    return asyncio.run(serve(cfg))


# ---------------------------------------------------------------------------------- import


IMPORT_CHUNK_LINES = 50_000


def _import_chunks(name: str):
    """(first line number, last line number, the chunk's bytes, its lines) of a file of JSON
    Lines, IMPORT_CHUNK_LINES lines at a time."""
    with open(name, "rb") as f:
        lines, first = [], 1
        for number, line in enumerate(f, 1):
            lines.append(line)
            if len(lines) == IMPORT_CHUNK_LINES:
                yield first, number, lines
                lines, first = [], number + 1
        if lines:
            yield first, first + len(lines) - 1, lines


def cmd_import(args) -> int:
    """Load JSON Lines of normalised events into the configured store, keeping the times they
    carry. Each chunk is one insert whose token is its bytes' digest and line range, so a
    second run (or one after an interruption) adds nothing."""
    from . import config
    from .analytics.rows import check
    from .analytics.store import open_store

    def fail(message: str) -> int:
        progress.clear()
        print(f"collector import: {message}", file=sys.stderr)
        return 2

    progress = Progress("import")
    for name in args.files:
        if not os.access(name, os.R_OK) or os.path.isdir(name):
            return fail(f"{name}: cannot read it" + (" (a directory)" if os.path.isdir(name) else ""))
    try:
        cfg = config.load(args.config, data_dir=args.data_dir)
        store = open_store(cfg)
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    if store is None:
        return fail("the analytics store is off ([analytics] store = \"\")")
    totals = {"files": 0, "events": 0, "loaded": 0}
    try:
        for name in args.files:
            try:
                for first, last, lines in _import_chunks(name):
                    good, bad = check(lines)
                    if bad:
                        i, _, why = bad[0]
                        return fail(f"{name}:{first + i}: not a normalised event ({why}); "
                                    f"{totals['events']} events before it are loaded")
                    digest = hashlib.blake2b(b"".join(lines), digest_size=16).hexdigest()
                    totals["loaded"] += store.insert([good], f"import:{digest}:{first}-{last}")
                    totals["events"] += sum(1 for line in lines if line.strip())
                    progress.update(f"{name}: line {last}, {totals['events']:,} events")
            except OSError as exc:
                return fail(f"{name}: {exc.strerror or exc}")
            totals["files"] += 1
    finally:
        store.close()
        progress.done()
    print(json.dumps(totals))
    return 0


# ---------------------------------------------------------------------------------- config


def cmd_config(args) -> int:
    """`check`: the configuration loads (exit 0) or one line says what is wrong (exit 2);
    `show`: the effective configuration, as TOML, each value with where it came from."""
    from . import config

    cfg, origins = config.resolve(args.config)
    if args.action == "show":
        sys.stdout.write(config.show(cfg, origins))
    else:
        print(f"{args.config or 'the defaults'}: ok ({len(cfg.sinks)} sinks)")
    return 0


# ------------------------------------------------------------------------ send and tail


def _tls_root(args) -> bytes | None:
    if not args.tls_root:
        return None
    try:
        with open(args.tls_root, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Usage(f"--tls-root {args.tls_root}: {exc.strerror or exc}") from None


async def _connect(channel, args) -> None:
    """Wait for the channel to be ready, for --connect-timeout at most: gRPC alone would go on
    trying (a closed port, a bad address, a TLS mismatch) without a word."""
    try:
        await asyncio.wait_for(channel.channel_ready(), args.connect_timeout)
    except TimeoutError:
        raise Failure(f"{args.address}: no connection within {args.connect_timeout:g} s "
                      "(is a collector listening there? with TLS, is --tls-root right?)") from None


def _run(main) -> None:
    """Run the command's coroutine; a call the collector ended is one line."""
    import grpc

    try:
        asyncio.run(main)
    except grpc.aio.AioRpcError as exc:
        raise Failure(f"{exc.code().name}: {exc.details()}") from None


# ------------------------------------------------------------------------------------ send


def cmd_send(args) -> int:
    """Replay batches; a batch the SPEC rejects is counted, one the collector refuses for any
    other reason than load (a key, a limit) ends the run: every batch after it would be too."""
    import grpc

    from .client import RETRYABLE, Client

    tls_root = _tls_root(args)
    for name in args.files:  # every input opens, or nothing is sent
        if name == "-":
            continue
        try:
            open(name, "rb").close()
        except OSError as exc:
            raise Failure(f"{name}: {exc.strerror or exc}") from None
    totals = {"batches": 0, "rejected_batches": 0, "refused_batches": 0,
              "accepted": 0, "duplicate": 0, "filtered": 0, "rejected": 0}
    progress = Progress("send")

    def requests(stream_index: int, streams: int):
        i = 0
        started = time.monotonic()
        for name in args.files or ["-"]:
            for data in _input(name, args.format):
                if isinstance(data, Truncated):
                    raise InputError(f"{_label(name)}: {data}")
                if i % streams == stream_index:
                    if args.rate:  # batches per second, over all streams
                        delay = started + (i + 1) / args.rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    # named by its bytes too: another run's batch `name:i` (stdin, a file
                    # written again) is another batch, never answered with this one's reply
                    digest = hashlib.blake2b(data, digest_size=12).hexdigest()
                    yield Client.request(data, format=args.format, batch_id=f"{name}:{i}:{digest}")
                i += 1

    async def one_stream(client, index: int):
        async for reply in client.stream(requests(index, args.streams)):
            if reply.status and not reply.batch_error and reply.status not in RETRYABLE:
                code = next(c.name for c in grpc.StatusCode if c.value[0] == reply.status)
                raise Failure(f"{code}: {reply.detail}")
            totals["batches"] += 1
            if reply.batch_error or reply.status:
                totals["rejected_batches" if reply.batch_error else "refused_batches"] += 1
            for key in ("accepted", "duplicate", "filtered", "rejected"):
                totals[key] += getattr(reply, key)
            progress.update(", ".join(f"{k} {v}" for k, v in totals.items()))

    async def main():
        async with Client(args.address, api_key=args.api_key, tls_root=tls_root) as client:
            await _connect(client.channel, args)
            await asyncio.gather(*(one_stream(client, i) for i in range(args.streams)))

    try:
        _run(main())
    except InputError as exc:
        raise Failure(str(exc)) from None
    finally:
        progress.done()
    print(json.dumps(totals))
    return 0


# ------------------------------------------------------------------------------------ tail


def cmd_tail(args) -> int:
    if args.nats:
        return _tail_nats(args)
    if not args.address:
        raise Usage("give the collector's ADDRESS, or --nats URL")
    from .client import channel
    from .convert import protobuf_to_event
    from .v1 import collector_pb2 as pb
    from .v1 import collector_pb2_grpc as pb_grpc

    request = pb.SubscribeRequest(project_ids=args.project, actions=args.action, user_id=args.user or "")
    kind, number = _start(args.start or "now", ("now",))
    if kind == "position":
        request.from_position = number
    elif kind == "time":
        request.from_time = number
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    tls_root = _tls_root(args)

    async def main():
        async with channel(args.address, tls_root=tls_root) as ch:
            await _connect(ch, args)
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
        _run(main())
    except KeyboardInterrupt:
        pass
    return 0


def _start(value: str, words: tuple) -> tuple[str, int]:
    """--from: one of `words` (number 0), position:N or time:MS."""
    kind, _, number = value.partition(":")
    if value in words:
        return value, 0
    if kind in ("position", "time") and number.isdigit():
        return kind, int(number)
    raise Usage(f"--from {value}: not {', '.join(words)}, position:N or time:MS")


def _tail_nats(args) -> int:
    """Read events back from JetStream as a durable consumer: a second run with the same
    --durable name goes on after the last event the first one printed (and acknowledged)."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js import api

    from .convert import protobuf_to_event
    from .pipeline import patterns
    from .v1 import event_pb2

    deliver = {"all": api.DeliverPolicy.ALL, "now": api.DeliverPolicy.NEW}
    config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT)
    kind, number = _start(args.start or "all", tuple(deliver))
    if kind in deliver:
        config.deliver_policy = deliver[kind]
    elif kind == "position":
        config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, number
    else:
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = datetime.datetime.fromtimestamp(number // 1000, datetime.UTC).replace(
            microsecond=number % 1000 * 1000)
    project = args.project[0] if len(args.project) == 1 else "*"
    subject = f"{args.subject_prefix}.{project}.>"
    wanted = patterns(args.action)
    projects = set(args.project)

    def event_of(data: bytes) -> dict:
        if data[:1] == b"{":
            return json.loads(data)
        msg = event_pb2.NormalizedEvent()
        msg.ParseFromString(data)
        return protobuf_to_event(msg)

    async def main():
        errors = []

        async def error(exc):  # the last one says why, instead of nats-py's tracebacks
            errors[:] = [exc]

        try:  # nats-py would try again for ever
            nc = await asyncio.wait_for(nats.connect(args.nats.split(","), max_reconnect_attempts=-1,
                                                     connect_timeout=args.connect_timeout,
                                                     error_cb=error), args.connect_timeout)
        except TimeoutError:
            why = "".join(f" ({type(e).__name__}: {e})" for e in errors)
            raise Failure(f"{args.nats}: no connection within {args.connect_timeout:g} s{why}") from None
        try:
            # JetStream's API answers within its default 5 s but for on a busy host
            sub = await nc.jetstream(timeout=15.0).pull_subscribe(
                subject, durable=args.durable, stream=args.stream, config=config)
            count, idle_since = 0, time.monotonic()
            while True:
                try:
                    msgs = await sub.fetch(min(100, args.limit - count) if args.limit else 100,
                                           timeout=1.0)
                except NatsTimeout:
                    if args.idle and time.monotonic() - idle_since >= args.idle:
                        return
                    continue
                idle_since = time.monotonic()
                for msg in msgs:
                    ev = event_of(msg.data)
                    show = bool((not projects or ev["project_id"] in projects)
                            and (wanted is None or wanted(ev["action"]))
                            and (not args.user or ev["user_id"] == args.user))
                    if show:
                        if args.positions:
                            ev = {"position": msg.metadata.sequence.stream, **ev}
                        sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                    await msg.ack_sync(timeout=5.0)  # the default second is short on a busy host
                    count += show
                    if args.limit and count >= args.limit:
                        return
        finally:
            await nc.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - a clear message, not a traceback
        raise Failure(f"NATS: {type(exc).__name__}: {exc}") from None
    return 0


# ------------------------------------------------------------------------------------ demo


def cmd_demo(args) -> int:
    from . import demo

    return demo.main(args, Progress("demo"))


# ------------------------------------------------------------------------------------ main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collector", description=__doc__)
    p.add_argument("--version", action="version", version=version_line())
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("decode", help="decode batches to normalised JSON Lines")
    d.add_argument("--format", choices=("json", "protobuf"), default="json")
    d.add_argument("--received-at", type=_received_at, metavar="MS",
                   help="received time of every batch, for reproducible output "
                        "(default: when each batch is read)")
    d.add_argument("--dead-letter", metavar="PATH",
                   help="file to append rejection records to (default: stderr)")
    d.add_argument("files", nargs="*", metavar="FILE",
                   help="JSON Lines of batches, or varint-delimited protobuf (default, or '-': stdin)")
    d.set_defaults(func=cmd_decode)

    s = sub.add_parser("serve", help="run the collector")
    s.add_argument("--config", metavar="FILE", help="TOML configuration")
    s.add_argument("--listen", help="address to serve gRPC on (host:port)")
    s.add_argument("--data-dir", help="where the log, cursors and outputs live")
    s.add_argument("--metrics-listen", help="address of the Prometheus endpoint ('' for none)")
    s.add_argument("--http-listen", help="address of the HTTP API and dashboard "
                   "(default 127.0.0.1:8080; '' for none)")
    s.add_argument("--log-format", choices=("auto", "json", "text"),
                   help="logs on stderr: JSON lines, text, or auto (text on a terminal)")
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("import", help="load JSON Lines of normalised events into the analytics store")
    i.add_argument("--config", metavar="FILE", help="TOML configuration (its [analytics] store)")
    i.add_argument("--data-dir", help="the data directory (its analytics.duckdb by default)")
    i.add_argument("files", nargs="+", metavar="FILE",
                   help="JSON Lines of normalised events (what the jsonl sink writes)")
    i.set_defaults(func=cmd_import)

    c = sub.add_parser("send", help="replay batches to a collector over IngestStream")
    c.add_argument("address", help="host:port of the collector")
    c.add_argument("files", nargs="*", metavar="FILE", help="JSON Lines of batches (default: stdin)")
    c.add_argument("--format", choices=("json", "protobuf"), default="json")
    c.add_argument("--rate", type=float, default=0, help="batches per second (default: as fast as it goes)")
    c.add_argument("--streams", type=int, default=1, help="concurrent streams")
    c.add_argument("--api-key")
    c.add_argument("--tls-root", metavar="PEM", help="CA certificate: connect with TLS")
    _connect_timeout(c)
    c.set_defaults(func=cmd_send)

    t = sub.add_parser("tail", help="print a collector's live stream of events (or a JetStream's)")
    t.add_argument("address", nargs="?", help="host:port of the collector")
    t.add_argument("--project", type=int, action="append", default=[], help="project id (repeatable)")
    t.add_argument("--action", action="append", default=[], help="action or pattern such as 'poll.*'")
    t.add_argument("--user", help="only this user's events")
    t.add_argument("--from", dest="start", default=None,
                   help="now (default), position:N or time:MS; with --nats: all (default), now, "
                        "position:SEQ or time:MS, used when the durable consumer is created")
    t.add_argument("--limit", type=int, default=0, help="stop after this many events")
    t.add_argument("--nats", metavar="URL", help="read the JetStream stream the nats sink fills, "
                   "as a durable consumer, instead of a collector")
    t.add_argument("--stream", default="EVENTS", help="with --nats: the JetStream stream")
    t.add_argument("--subject-prefix", default="events", help="with --nats: the sink's subject prefix")
    t.add_argument("--durable", default="collector-tail", help="with --nats: the consumer's name")
    t.add_argument("--idle", type=float, default=0,
                   help="with --nats: stop after this many seconds without an event")
    t.add_argument("--positions", action="store_true", help="print each event's log position")
    t.add_argument("--api-key")
    t.add_argument("--tls-root", metavar="PEM")
    _connect_timeout(t)
    t.set_defaults(func=cmd_tail)

    m = sub.add_parser("demo", help="stream a generated live show into a collector, in real time")
    m.add_argument("address", nargs="?", default="127.0.0.1:50051",
                   help="host:port of the collector (default 127.0.0.1:50051)")
    m.add_argument("--seed", type=int, default=1, help="the same seed gives the same show")
    m.add_argument("--users", type=int, default=300, help="viewers (default 300)")
    m.add_argument("--speed", type=float, default=1.0, help="play the show this many times faster")
    m.add_argument("--minutes", type=float, default=30.0, help="the show's length (default 30)")
    m.add_argument("--project", type=int, default=1, help="project id (default 1)")
    m.add_argument("--api-key")
    m.set_defaults(func=cmd_demo)

    g = sub.add_parser("config", help="check the configuration, or show the effective one")
    g.add_argument("action", choices=("check", "show"),
                   help="check: load it (exit 0, or 2 and what is wrong); show: every setting as "
                        "TOML, with where it came from (default, file, env COLLECTOR_..., flag)")
    g.add_argument("--config", metavar="FILE", help="TOML configuration")
    g.set_defaults(func=cmd_config)
    return p


def _connect_timeout(p) -> None:
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="give up when no connection is made within this long (default 5)")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Usage, ConfigError) as exc:
        print(f"collector {args.command}: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"collector {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
