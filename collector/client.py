"""A client for gateways: keeps one stream open, resends what was refused for load after the
time the collector asked for, and resends everything unanswered after a broken stream. Each
batch carries a `batch_id`, so a resend is idempotent: the collector answers it as before."""

import asyncio
import itertools
import uuid

import grpc

from .v1 import collector_pb2 as pb
from .v1 import collector_pb2_grpc as pb_grpc

RETRYABLE = {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], grpc.StatusCode.UNAVAILABLE.value[0]}


def channel(target: str, *, tls_root: bytes | None = None, options=()) -> grpc.aio.Channel:
    """A channel to one address or a list (`ipv4:127.0.0.1:5001,127.0.0.1:5002`)."""
    opts = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20),
            *options]
    if tls_root is not None:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(tls_root), options=opts)
    return grpc.aio.insecure_channel(target, options=opts)


class Client:
    def __init__(self, target: str, *, api_key: str | None = None, tls_root: bytes | None = None,
                 max_in_flight: int = 64, max_attempts: int = 50, options=()):
        self.channel = channel(target, tls_root=tls_root, options=options)
        self.stub = pb_grpc.CollectorStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self._ids = itertools.count()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    @staticmethod
    def request(batch: bytes, *, format: str = "json", batch_id: str = "", project_id: int = 0):
        batch_id = batch_id or uuid.uuid4().hex
        if format == "json":
            return pb.IngestRequest(batch_id=batch_id, json=batch, project_id=project_id)
        return pb.IngestRequest(batch_id=batch_id, protobuf=batch, project_id=project_id)

    async def send(self, batch: bytes, **kw) -> pb.IngestReply:
        """One batch over the unary call, retried while the collector asks to slow down."""
        request = self.request(batch, **kw)
        for attempt in range(self.max_attempts):
            try:
                return await self.stub.Ingest(request, metadata=self.metadata)
            except grpc.aio.AioRpcError as exc:
                reply = _reply_of(exc)
                if exc.code() not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE) \
                        or attempt + 1 == self.max_attempts:
                    raise
                await asyncio.sleep(_wait(reply, attempt))
        raise AssertionError("unreachable")

    async def stream(self, requests):
        """Send requests (IngestRequest, from an iterable or async iterable) over IngestStream;
        yield the final reply to each, in the order they are settled."""
        pending: dict[str, pb.IngestRequest] = {}
        attempts: dict[str, int] = {}
        source = _Ahead(requests)
        exhausted = False
        while pending or not exhausted:
            retrying = False
            outbox: asyncio.Queue = asyncio.Queue()
            for request in pending.values():  # after a broken stream: resend what is unanswered
                outbox.put_nowait(request)
            slots = asyncio.Semaphore(max(0, self.max_in_flight - len(pending)))
            done = asyncio.Event()

            # Each stream's functions take its own queue, slots and event as arguments: a closure
            # would read the next stream's, and a writer of the broken stream that asks for one
            # more request would take it from the new stream's queue, where it is then lost.
            async def feed(slots: asyncio.Semaphore, outbox: asyncio.Queue, done: asyncio.Event):
                nonlocal exhausted
                while not exhausted:
                    await slots.acquire()
                    try:
                        request = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    pending[request.batch_id] = request
                    outbox.put_nowait(request)
                if not pending:
                    done.set()

            async def requests_out(outbox: asyncio.Queue, done: asyncio.Event):
                while True:
                    getter = asyncio.ensure_future(outbox.get())
                    waiter = asyncio.ensure_future(done.wait())
                    finished, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    if getter in finished:
                        waiter.cancel()
                        yield getter.result()
                    else:
                        getter.cancel()
                        return

            feeder = asyncio.ensure_future(feed(slots, outbox, done))
            call = self.stub.IngestStream(requests_out(outbox, done), metadata=self.metadata)
            feeder.add_done_callback(
                lambda f, call=call: f.cancelled() or f.exception() is None or call.cancel())
            try:
                async for reply in call:
                    request = pending.get(reply.batch_id)
                    if request is None:
                        continue
                    n = attempts.get(reply.batch_id, 0)
                    if reply.status in RETRYABLE and n + 1 < self.max_attempts:
                        attempts[reply.batch_id] = n + 1
                        asyncio.get_running_loop().call_later(
                            _wait(reply, n), outbox.put_nowait, request)
                        continue
                    del pending[reply.batch_id]
                    attempts.pop(reply.batch_id, None)
                    slots.release()
                    if exhausted and not pending:
                        done.set()
                    yield reply
                if pending or not exhausted:
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None,
                                               "stream ended with batches unanswered")
            except (asyncio.CancelledError, grpc.aio.AioRpcError) as exc:
                _raise_failure(feeder)  # the requests' source failed: that, not a resend
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL):
                    raise
                attempt = max(attempts.values(), default=0)
                if attempt + 1 >= self.max_attempts:
                    raise
                for batch_id in pending:
                    attempts[batch_id] = attempts.get(batch_id, 0) + 1
                retrying = True
                await asyncio.sleep(_wait(_reply_of(exc), attempt))  # "too many open streams" says when
            finally:
                feeder.cancel()
                call.cancel()
                if not retrying:
                    source.close()


class _Ahead:
    """The requests' source, its next item fetched in a task of its own: a broken stream cancels
    the feeder, and a feeder cancelled while the source awaits (a paced or queue-fed generator)
    must not cancel the source, which would end it as if it had nothing more to send."""

    def __init__(self, items):
        self.items = _aiter(items)
        self.next = None

    async def __anext__(self):
        if self.next is None:
            self.next = asyncio.ensure_future(self.items.__anext__())
        # cancelled here (even just as the item came), the next feeder takes the same item; the
        # end of the source or its failure stays, and is raised again if asked again
        item = await asyncio.shield(self.next)
        self.next = None
        return item

    def close(self) -> None:
        if self.next is not None:
            self.next.cancel()
            self.next = None


def _raise_failure(feeder: asyncio.Future) -> None:
    if feeder.done() and not feeder.cancelled():
        exc = feeder.exception()
        if exc is not None:
            raise exc


def _reply_of(exc: grpc.aio.AioRpcError) -> pb.IngestReply | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "collector-reply-bin" and isinstance(value, bytes):
            return pb.IngestReply.FromString(value)
    return None


def _wait(reply, attempt: int) -> float:
    """Seconds to wait before a resend: what the collector asked for, else backoff."""
    if reply is not None and reply.retry_after_ms:
        return reply.retry_after_ms / 1000
    return min(0.05 * 2 ** attempt, 2.0)


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
