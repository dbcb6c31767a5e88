"""The gateway client on its own, against a stand-in for the stub: what it sends after a broken
stream."""

import asyncio

import grpc

from collector.client import Client
from collector.v1 import collector_pb2 as pb


class _BrokenCall:
    """The first stream: its writer takes one request, then the stream breaks. The writer goes on
    as gRPC's does when the call has ended (cancel() does not stop it): it asks the requests for
    one more and drops it."""

    def __init__(self, requests, restarted: asyncio.Event):
        self.took = asyncio.Event()
        self.dropped = []
        self.writer = asyncio.ensure_future(self._write(requests, restarted))

    async def _write(self, requests, restarted):
        self.dropped.append(await anext(requests))
        self.took.set()
        await restarted.wait()
        self.dropped.append(await anext(requests))  # the call has ended: never sent

    def cancel(self) -> bool:
        return False  # already over

    def __aiter__(self):
        return self._replies()

    async def _replies(self):
        await self.took.wait()
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "connection reset")
        yield  # an async generator


class _Call:
    """A working stream: each request it is sent is answered."""

    def __init__(self, requests):
        self.requests = requests

    def cancel(self) -> bool:
        return False

    def __aiter__(self):
        return self._replies()

    async def _replies(self):
        await asyncio.sleep(0.05)  # the broken stream's writer asks first
        async for request in self.requests:
            yield pb.IngestReply(batch_id=request.batch_id, accepted=1)


class _Stub:
    def __init__(self):
        self.restarted = asyncio.Event()
        self.calls = []

    def IngestStream(self, requests, metadata=()):
        if not self.calls:
            self.calls.append(_BrokenCall(requests, self.restarted))
        else:
            self.calls.append(_Call(requests))
            self.restarted.set()
        return self.calls[-1]


def test_a_broken_streams_writer_takes_nothing_from_the_next_stream():
    async def main():
        client = Client("127.0.0.1:1", max_in_flight=2)
        client.stub = _Stub()
        try:
            requests = [Client.request(b"{}", batch_id=name) for name in ("a", "b")]
            replies = [r.batch_id async for r in client.stream(requests)]
            broken = client.stub.calls[0]
            await broken.writer
            return replies, [r.batch_id for r in broken.dropped]
        finally:
            await client.close()

    replies, dropped = asyncio.run(asyncio.wait_for(main(), 10))
    assert sorted(replies) == ["a", "b"]  # each resent on the new stream and answered there
    assert dropped == ["a", "b"]  # the old writer saw only the old stream's queue
