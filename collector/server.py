"""The gRPC service: Collector (ingest), Events (subscribe), health checking and reflection.

`Service` owns the parts (log, pipeline, sinks, metrics) and runs until told to stop; a stop
drains: health goes NOT_SERVING, no new calls are taken, calls in flight finish, sinks deliver
what the log holds, and the log is fsynced.
"""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time

import grpc
import msgspec
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import convert, sinks
from .analytics.sink import attach as attach_store
from .analytics.store import open_store
from .build import version_line
from .config import ConfigError, reason
from .decode import read_request
from .delivery import Delivery
from .event import NormalizedEvent
from .log import EVENTS, Log, unblanked
from .metrics import Metrics
from .metrics import serve as serve_metrics
from .pipeline import Pipeline, Refused, patterns
from .v1 import collector_pb2 as pb
from .v1 import collector_pb2_grpc as pb_grpc
from .v1.event_pb2 import NormalizedEvent as NormalizedEventPb

log = logging.getLogger("collector.server")

_events = msgspec.json.Decoder(NormalizedEvent)
STREAM_WINDOW = 64  # batches of one IngestStream in the log's queue at once (the client's default window)
SERVICES = (
    pb.DESCRIPTOR.services_by_name["Collector"].full_name,
    pb.DESCRIPTOR.services_by_name["Events"].full_name,
)


def _api_key(context) -> str | None:
    return _key_of(context.invocation_metadata())


def _key_of(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


_OURS = "/collector.v1."  # the collector's own services (not health, not reflection)


def _refusal(status, detail: str, retry_after_ms: int = 0):
    """A handler that answers a call at once, without reading its message (whatever the call's
    kind: a handler that reads no request is one of a request stream), with the reply carried as
    trailing metadata `collector-reply-bin` as every refusal's."""
    reply = pb.IngestReply(detail=detail, retry_after_ms=retry_after_ms, status=status.value[0])
    if retry_after_ms:
        detail += f" (retry after {retry_after_ms} ms)"
    trailer = (("collector-reply-bin", reply.SerializeToString()),)

    async def refuse(request_iterator, context):
        context.set_trailing_metadata(trailer)
        await context.abort(status, detail)

    return grpc.stream_stream_rpc_method_handler(refuse)


class _Gate(grpc.aio.ServerInterceptor):
    """Sees each call when its headers arrive, before any of its message is read: a call with
    no valid API key, or one that comes while the collector drains, is answered at once, so it
    holds neither memory nor one of the calls the server takes at once."""

    def __init__(self, service: "Service"):
        self.service = service

    async def intercept_service(self, continuation, details):
        if not details.method.startswith(_OURS):
            return await continuation(details)
        service = self.service
        if service.stopping:
            return _refusal(grpc.StatusCode.UNAVAILABLE, "the collector is draining",
                            service.config.limits.retry_after_ms)
        try:
            service.pipeline.projects_for(_key_of(details.invocation_metadata))
        except Refused as exc:
            return _refusal(exc.status, exc.reply.detail)
        return await continuation(details)


def _client_of(key: str | None, context) -> str:
    """Whose calls a call counts among: its API key, or (with no keys) the peer's address."""
    if key is not None:
        return "key:" + key
    peer = context.peer() or ""
    return "peer:" + peer.rsplit(":", 1)[0]


async def _open_stream(service: "Service", context, streams: "_Streams", what: str):
    """A streaming call may start: (API key, projects it may use, client), or the call is
    aborted. Refusals for load carry `retry_after_ms`."""
    if streams.full():
        await _abort_busy(service, context, f"too many open {what} (limits.{streams.name})")
    key = _api_key(context)
    try:
        allowed = service.pipeline.projects_for(key)
    except Refused as exc:
        await context.abort(exc.status, exc.reply.detail)
    return key, allowed, _client_of(key, context)


async def _abort_busy(service: "Service", context, detail: str):
    retry = service.config.limits.retry_after_ms
    reply = pb.IngestReply(detail=detail, retry_after_ms=retry,
                           status=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    context.set_trailing_metadata((("collector-reply-bin", reply.SerializeToString()),))
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{detail} (retry after {retry} ms)")


async def _take_slot(service: "Service", context, who) -> None:
    """One of the client's `limits.max_calls_per_client` calls, or the call refused as busy."""
    if not service.clients.take(who):
        await _abort_busy(service, context, f"this client has "
                          f"{service.config.limits.max_calls_per_client} calls open "
                          "(limits.max_calls_per_client)")


def _add_collector(servicer, server) -> None:
    """The Collector service, its requests handed over as bytes: `read_request` reads them in
    place (the batch is a view into the request, not a copy; no message object is made). Ingest
    reads its one request itself (a request-streaming handler, the same call on the wire), so
    that it can give up on a request that takes too long to arrive."""
    reply = pb.IngestReply.SerializeToString
    handlers: dict[str, grpc.RpcMethodHandler] = {
        "Ingest": grpc.stream_unary_rpc_method_handler(servicer.Ingest, response_serializer=reply),
        "IngestStream": grpc.stream_stream_rpc_method_handler(servicer.IngestStream,
                                                              response_serializer=reply),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICES[0], handlers),))


def _add_events(servicer, server) -> None:
    """The Events service; Subscribe reads its request itself, within limits.receive_seconds."""
    handlers = {
        "Subscribe": grpc.stream_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=pb.SubscribeRequest.FromString,
            response_serializer=NormalizedEventPb.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICES[1], handlers),))


class _Streams:
    """Counts open streaming calls of one kind against their limit."""

    def __init__(self, limit: int, name: str):
        self.limit = limit
        self.name = name
        self.open = 0

    def __enter__(self):
        self.open += 1
        return self

    def __exit__(self, *exc):
        self.open -= 1

    def full(self) -> bool:
        return self.open >= self.limit


class _Clients:
    """Calls open per client (API key, or peer address without keys), each at most `limit`: one
    client, however abusive, leaves the rest of the server's calls to the others."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: dict[str, int] = {}

    def take(self, who: str) -> bool:
        n = self.open.get(who, 0)
        if n >= self.limit:
            return False
        self.open[who] = n + 1
        return True

    def give(self, who: str) -> None:
        n = self.open[who] - 1
        if n:
            self.open[who] = n
        else:
            del self.open[who]


async def _receive(context, seconds: float):
    """The call's next message, or None if none came within `seconds` (or the call ended)."""
    try:
        message = await asyncio.wait_for(context.read(), seconds)
    except TimeoutError:
        return None
    return None if message is grpc.aio.EOF else message


class CollectorServicer(pb_grpc.CollectorServicer):
    def __init__(self, service: "Service"):
        self.service = service

    def _before(self, batch_id: str, size: int):
        """A refusal of a read batch before any work on it: too large (never retried), or the
        collector is draining (retried elsewhere or later); None if it may go on."""
        service = self.service
        limits = service.config.limits
        if size > limits.max_message_bytes:
            return service.pipeline.too_large(batch_id, size)
        if service.stopping:
            return service.pipeline.draining(batch_id)
        return None

    async def Ingest(self, request_iterator, context):
        # The call is aborted outside of any `except` block and with no exception held: a
        # refusal's traceback would otherwise hold this frame, and the request's bytes with it,
        # in a reference cycle until the garbage collector's next pass.
        service = self.service
        pipeline = service.pipeline
        limits = service.config.limits
        key = _api_key(context)
        who = _client_of(key, context)
        await _take_slot(service, context, who)
        try:
            raw = await _receive(context, limits.receive_seconds)
            if raw is None:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the request did not arrive "
                                    f"whole within {limits.receive_seconds} s (limits.receive_seconds)")
            request = None
            try:  # the key first: a caller without one learns nothing else
                allowed = pipeline.projects_for(key)
                request = read_request(raw)
            except Refused as exc:
                result = exc.status, exc.reply
            except ValueError as exc:
                result = grpc.StatusCode.INVALID_ARGUMENT, pipeline.not_a_request(str(exc))
            else:
                result = self._before(request[0], len(raw))
                if result is not None:
                    result = result.status, result.reply
                else:
                    result = await pipeline.ingest(request, allowed, key)
                    if isinstance(result, pb.IngestReply):
                        return result
            status, reply = result
            reply.batch_id = request[0] if request is not None else ""
            context.set_trailing_metadata((("collector-reply-bin", reply.SerializeToString()),))
            detail = f"{reply.batch_error}: {reply.detail}" if reply.batch_error else reply.detail
            if reply.retry_after_ms:
                detail += f" (retry after {reply.retry_after_ms} ms)"
            raw = request = result = None  # noqa: F841 - the abort's traceback holds none of the request
            await context.abort(status, detail)
        finally:
            service.clients.give(who)

    async def IngestStream(self, request_iterator, context):
        service = self.service
        key, allowed, who = await _open_stream(service, context, service.streams, "ingest streams")
        await _take_slot(service, context, who)
        with service.streams:
            try:
                async for reply in self._stream(context, key, allowed):
                    yield reply
            finally:
                service.clients.give(who)

    async def _stream(self, context, key, allowed):
        service = self.service
        # Batches of one stream are worked on together (up to `STREAM_WINDOW`), so that
        # they share group commits; each reply names its batch_id and goes out when ready.
        # The CPU work of a batch is done as it is read; what is left is waiting for its
        # group commit, and the log's answer puts the reply in the queue (no task per batch).
        pipeline = service.pipeline
        idle = service.config.limits.stream_idle_seconds
        retry = service.config.limits.retry_after_ms
        replies: asyncio.Queue = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        state = {"open": 0, "read": False, "error": None}  # batches waiting for the log; reading
        # finished; why the stream ends ((status, detail): a request that is not an
        # IngestRequest, a stream idle too long, the collector draining)

        def answer(batch_id: str, result) -> None:
            if isinstance(result, Refused):  # answers this batch; the stream stays open
                result.reply.batch_id = batch_id
                result = result.reply
            window.release()
            replies.put_nowait(result)

        def logged(batch_id: str, result) -> None:
            state["open"] -= 1
            answer(batch_id, result)
            if (state["read"] or service.stopping) and not state["open"]:
                replies.put_nowait(None)  # read all, or draining: every batch taken is answered

        async def read():
            drained = asyncio.ensure_future(service.draining.wait())
            reading = None
            try:
                while True:
                    reading = asyncio.ensure_future(context.read())
                    while True:  # idle: no batch read nor waiting for the log for `idle` seconds
                        draining = drained.done()
                        await asyncio.wait({reading} if draining else {reading, drained},
                                           timeout=0.05 if draining else idle,
                                           return_when=asyncio.FIRST_COMPLETED)
                        if reading.done():
                            break
                        if drained.done():  # ends once every batch taken is answered
                            if not state["open"]:
                                state["error"] = (grpc.StatusCode.UNAVAILABLE, "the collector is "
                                                  f"draining (retry after {retry} ms)")
                                return
                        elif not state["open"]:
                            state["error"] = (grpc.StatusCode.UNAVAILABLE, f"the stream was idle for "
                                              f"{idle} s (limits.stream_idle_seconds); open another")
                            return
                    raw = reading.result()
                    if raw is grpc.aio.EOF:
                        return
                    try:
                        request = read_request(raw)
                    except ValueError as exc:  # the batches before it are answered first
                        state["error"] = (grpc.StatusCode.INVALID_ARGUMENT,
                                          pipeline.not_a_request(str(exc)).detail)
                        return
                    await window.acquire()
                    batch_id = request[0]
                    result = self._before(batch_id, len(raw))
                    if result is None:
                        try:
                            result = pipeline.submit(request, allowed, key,
                                                     lambda r, b=batch_id: logged(b, r))
                        except Exception as exc:  # noqa: BLE001 - a bug must not lose the other replies
                            log.exception("ingest failed")
                            result = pb.IngestReply(batch_id=batch_id, detail=f"internal error: {exc}",
                                                    status=grpc.StatusCode.INTERNAL.value[0])
                    if result is None:  # in the log's queue: `logged` answers it
                        state["open"] += 1
                    else:
                        answer(batch_id, result)
                    raw = request = reading = None  # an idle stream pins no request
            finally:
                drained.cancel()
                if reading is not None:
                    reading.cancel()
                state["read"] = True
                if not state["open"]:
                    replies.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()
        if state["error"] is None and service.stopping and not reader.done():
            state["error"] = (grpc.StatusCode.UNAVAILABLE, f"the collector is draining (retry after {retry} ms)")
        if state["error"] is not None:
            await context.abort(*state["error"])
        failed = reader.done() and not reader.cancelled() and reader.exception()
        if failed:  # a bug, or the transport: said, not ended as if all went well
            log.error("ingest stream: reading failed: %r", failed)
            await context.abort(grpc.StatusCode.INTERNAL, f"reading the stream failed: {failed!r}")


class EventsServicer(pb_grpc.EventsServicer):
    def __init__(self, service: "Service"):
        self.service = service

    async def Subscribe(self, request_iterator, context):
        service = self.service
        limits = service.config.limits
        _, allowed, who = await _open_stream(service, context, service.subscribers, "subscribers")
        await _take_slot(service, context, who)
        try:
            with service.subscribers:
                request = await _receive(context, limits.receive_seconds)
                if request is None:
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the request did not arrive "
                                        f"whole within {limits.receive_seconds} s (limits.receive_seconds)")
                await self._subscribe(request, context, allowed)
        finally:
            service.clients.give(who)

    async def _subscribe(self, request, context, allowed):
        service = self.service
        projects = set(request.project_ids)
        if allowed is not None:
            if projects - allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"this API key may not see projects {sorted(projects - allowed)}")
            projects = projects or set(allowed)
            if not projects:  # a key with no project sees none, not all
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this API key may see no project")
        actions = patterns(list(request.actions))
        user = request.user_id or None
        the_log = service.log
        start = request.WhichOneof("start")
        if start == "from_position":
            position = request.from_position
            if position < the_log.start:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                    f"the log no longer holds position {position} (oldest: {the_log.start})")
            if position > the_log.end:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                    f"position {position} is past the log's end ({the_log.end})")
            held = await the_log.record_start(position)
            if held != position:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"position {position} is not where a record starts (the record "
                                    f"holding it starts at {held}): use a position an event carried")
        elif start == "from_time":
            position = await the_log.find_time(request.from_time)  # off the event loop
        else:
            position = the_log.end
        limit = service.subscriber_lag_bytes
        # (project, user) -> received time up to which their events are deleted (not yet purged
        # from the log); filled in place as deletions come
        hidden = service.deletions.hidden if service.deletions is not None else {}
        service.metrics.subscribers.inc()
        try:
            while not service.stopping:
                if the_log.end - position > limit or position < the_log.start:
                    service.metrics.subscribers_dropped.inc()
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "subscriber too slow: it fell too far behind and was dropped")
                records = the_log.read(position, 1 << 20)
                if not records:
                    await the_log.wait_beyond(position, timeout=0.5)
                    continue
                await asyncio.sleep(0)  # a replay that matches nothing for long holds no one up
                for rec in records:
                    if rec.kind != EVENTS:
                        continue
                    for line in unblanked(rec.payload).splitlines():
                        ev = _events.decode(line)
                        if projects and ev.project_id not in projects:
                            continue
                        if hidden and ev.received_time <= hidden.get((ev.project_id, ev.user_id), -1):
                            continue
                        if actions is not None and not actions(ev.action):
                            continue
                        if user is not None and ev.user_id != user:
                            continue
                        msg = convert.event_to_protobuf(ev)
                        msg.position = rec.position
                        try:
                            await asyncio.wait_for(context.write(msg), service.subscriber_write_seconds)
                        except TimeoutError:
                            service.metrics.subscribers_dropped.inc()
                            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                "subscriber too slow: it stopped reading and was dropped")
                position = records[-1].end
        finally:
            service.metrics.subscribers.dec()


class Service:
    """The running collector."""

    def __init__(self, config):
        self.config = config
        # what a mistake in the configuration or on the machine can fail comes first, and says
        # so in one line (ConfigError): nothing is listening and nothing is on disk yet
        self.credentials = _credentials(config.tls)
        for key in LISTENERS:
            if getattr(config, key):
                with listening(key, getattr(config, key)):
                    _probe(getattr(config, key))
        self.metrics = Metrics()
        data = config.data_dir
        with _setting("data_dir", data):
            self.log = Log(os.path.join(data, "log"), segment_bytes=config.log.segment_bytes,
                           max_bytes=config.log.max_bytes, fsync=config.log.fsync,
                           cache_bytes=config.log.cache_bytes,
                           commit_interval=config.log.commit_interval_seconds)
        self.pipeline = Pipeline(config, self.log, self.metrics)
        self.metrics.log_bytes.set_function(lambda: self.log.size)
        self.metrics.log_max_bytes.set(config.log.max_bytes)
        self.log.on_quarantine = self.metrics.log_quarantined.inc
        self.store = open_store(config)  # the analytics store: its sink and the HTTP API share it
        self.sinks = attach_store([sinks.load(s, data) for s in config.sinks], self.store, data)
        self.deliveries = [Delivery(self.log, s, os.path.join(data, "cursors"), self.metrics)
                           for s in self.sinks]
        self.streams = _Streams(config.limits.max_streams, "max_streams")  # ingest streams
        self.subscribers = _Streams(config.limits.max_subscribers, "max_subscribers")
        self.clients = _Clients(config.limits.max_calls_per_client)
        self.deletions = None  # users' deletions and retention passes, with a store
        if self.store is not None:
            from .analytics.deletions import Deletions

            self.deletions = Deletions(data, self.store, self.log, self.deliveries, self.metrics,
                                       purge_interval_hours=config.analytics.purge_interval_hours)
        self.subscriber_lag_bytes = 64 << 20
        self.subscriber_write_seconds = 5.0
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.stopping = False
        self.draining = asyncio.Event()  # set with `stopping`: open streams take no new batch
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._metrics_server = None
        self._http = None  # the HTTP API (collector/analytics/api.py)
        self._retention: asyncio.Task | None = None
        self._measuring: asyncio.Task | None = None
        self._disk_paths: list[str] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        cfg = self.config
        options = [
            # a request over max_message_bytes (up to twice that, or 8 MiB: what the client
            # sends at most) is read and refused by itself, so that a stream goes on after it
            ("grpc.max_receive_message_length", max(2 * cfg.limits.max_message_bytes, 8 << 20) + 1024),
            ("grpc.max_send_message_length", cfg.limits.max_message_bytes + 1024),
            ("grpc.so_reuseport", 0),
        ]
        self.server = grpc.aio.server(options=options, maximum_concurrent_rpcs=cfg.limits.max_concurrent_rpcs,
                                      interceptors=[_Gate(self)])
        _add_collector(CollectorServicer(self), self.server)
        _add_events(EventsServicer(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            SERVICES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        with listening("listen", cfg.listen):
            try:
                if self.credentials is not None:
                    self.port = self.server.add_secure_port(cfg.listen, self.credentials)
                else:
                    self.port = self.server.add_insecure_port(cfg.listen)
            except RuntimeError:  # taken since the probe: gRPC does not say why
                raise OSError("cannot bind") from None
        if cfg.metrics_listen:
            with listening("metrics_listen", cfg.metrics_listen):
                self._metrics_server = serve_metrics(self.metrics, cfg.metrics_listen)
        for d in self.deliveries:
            d.start()
        if self.deletions is not None:
            self.deletions.start()
        self._retention = asyncio.get_running_loop().create_task(self._retain())
        self._disk_paths = _disk_paths(cfg.data_dir, self.sinks)
        self.pipeline.disk_used = await asyncio.to_thread(_disk_bytes, self._disk_paths)
        self._measuring = asyncio.get_running_loop().create_task(self._measure_disk())
        await self.server.start()
        for name in ("",) + SERVICES:
            await _set(self.health, name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.http_listen:
            from .analytics.api import start as start_api

            with listening("http_listen", cfg.http_listen):
                self._http = await start_api(self)
        log.info("collector listening on %s (port %d), %s", cfg.listen, self.port, version_line())

    async def _retain(self) -> None:
        """Drop log segments every sink has delivered."""
        while True:
            await asyncio.sleep(0.5)
            if self.deliveries:
                self.log.release(min(d.position for d in self.deliveries))

    async def _measure_disk(self) -> None:
        """Count what the log and every sink's files take on disk, twice a second, for
        limits.max_disk_bytes (the log's own cap does not see what sinks wrote out)."""
        while True:
            await asyncio.sleep(0.5)
            end = self.log.end
            used = await asyncio.to_thread(_disk_bytes, self._disk_paths)
            self.pipeline.disk_used, self.pipeline.disk_log_end = used, end

    async def stop(self) -> None:
        """Drain and stop: nothing a client was told is logged is lost."""
        if self.stopping:
            await self._stopped.wait()
            return
        self.stopping = True
        self.draining.set()
        for name in ("",) + SERVICES:
            await _set(self.health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._http is not None:
            await self._http.stop()
        # From now on new calls and new batches on open streams are answered UNAVAILABLE with
        # retry_after_ms; the batches taken finish, each open stream ends (UNAVAILABLE) once
        # they are answered, and the server stays up meanwhile: health answers NOT_SERVING.
        deadline = time.monotonic() + self.config.drain_seconds
        while (self.streams.open or self.pipeline.budget.used) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.deletions is not None:  # one that is not done resumes at the next start
            await self.deletions.stop()
        for d in self.deliveries:
            await d.drain(max(0.0, deadline - time.monotonic()))
        if self.server is not None:  # what is left: subscribers (they end within 0.5 s), refusals
            await self.server.stop(grace=1.0)
        await asyncio.gather(*(d.stop() for d in self.deliveries))  # each lets its sink finish
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self._retention is not None:
            self._retention.cancel()
        if self._measuring is not None:
            self._measuring.cancel()
        await self.log.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stopped.set()
        log.info("collector stopped")


def _disk_paths(data_dir: str, sinks_) -> list[str]:
    """The directories whose files count against limits.max_disk_bytes: the data directory (the
    log, cursors, the default outputs, the store) and any sink's own directory outside it."""
    data = os.path.abspath(data_dir)
    paths = [data]
    for sink in sinks_:
        d = getattr(sink, "directory", "")
        if d and os.path.commonpath([data, os.path.abspath(d)]) != data:
            paths.append(os.path.abspath(d))
    return paths


def _disk_bytes(paths: list[str]) -> int:
    total = 0
    stack = list(paths)
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # gone meanwhile
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


LISTENERS = ("listen", "metrics_listen", "http_listen")  # the settings this process listens on


@contextlib.contextmanager
def _setting(key: str, value: str):
    """An OSError in the block becomes a ConfigError naming the setting and the reason
    (`data_dir /srv/x: permission denied`)."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"{key} {value}: {reason(exc)}") from None


def listening(key: str, address: str):
    """Around binding a listener (gRPC, metrics, HTTP), so that a port in use says so in one
    line: `http_listen 127.0.0.1:8080: address already in use`."""
    return _setting(key, address)


def _probe(address: str) -> None:
    """Bind the address and let it go, to learn whether it is free and why not (gRPC says
    neither, and logs lines of its own), before anything is started."""
    host, _, port = address.rpartition(":")
    family, kind, proto, _, where = socket.getaddrinfo(
        host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server do
        s.bind(where)


def _credentials(tls):
    """The server's TLS credentials, or None for plaintext."""
    if not tls.cert:
        return None
    files = {}
    for key in ("cert", "key"):
        with _setting(f"tls.{key}", getattr(tls, key)), open(getattr(tls, key), "rb") as f:
            files[key] = f.read()
    return grpc.ssl_server_credentials([(files["key"], files["cert"])])


async def _set(servicer, name: str, status) -> None:
    result = servicer.set(name, status)
    if asyncio.iscoroutine(result):
        await result


async def serve(config) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    os.umask(config.umask)  # files the collector makes hold user ids: 0600 and 0700 by default
    service = Service(config)
    await service.start()
    # What is alive now (modules, the service) lives as long as the process: keep it out of
    # the collector's full passes, which otherwise walk all of it again and again under load.
    gc.collect()
    gc.freeze()
    # Batches make no reference cycles (a refusal is returned, not raised, and an aborted call
    # holds no exception), so a young-generation pass finds next to nothing, yet walks every
    # object of the batches in flight: at the default 700 allocations it ran every few
    # batches. Memory under a flood stays where it was (tests/test_process.py measures it).
    gc.set_threshold(10_000, 10, 10)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"collector: serving on {config.listen} (port {service.port}), data in {config.data_dir}",
          flush=True)
    await stop.wait()
    await service.stop()
    return 0
