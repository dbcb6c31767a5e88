"""A client that abuses a gRPC server the way a hostile one would: it opens HTTP/2 streams
(calls), sends the headers and part of a message, and then holds them open without ever
finishing. Run as its own process by the abuse tests:

    python tests/h2flood.py HOST PORT --streams 100 --message 4194304 --send 3670016
        [--path /collector.v1.Collector/Ingest] [--key K] [--per-connection 1]

It prints one JSON line once it has pushed all it could ({"sent": bytes accepted by the
server's flow control, "closed": streams the server ended or reset, "streams": opened}), then
holds every connection until it is killed or its stdin closes; each line on its stdin has it
print the same again (streams the server ended meanwhile are counted in "closed").

A minimal HTTP/2 client (no HPACK table, no Huffman), enough to play a gRPC client that stalls.
"""

import argparse
import asyncio
import json
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
FRAME = 16384


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _string(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 127
    return bytes([len(raw)]) + raw


def headers(fields) -> bytes:
    """HPACK: each a literal header field without indexing, with a new name."""
    return b"".join(b"\x00" + _string(k) + _string(v) for k, v in fields)


class Connection:
    def __init__(self, host, port, args):
        self.host, self.port, self.args = host, port, args
        self.window = 65535  # the connection's send window
        self.initial = 65535  # a new stream's send window (the server's SETTINGS)
        self.streams: dict[int, int] = {}  # stream id -> its send window
        self.closed: set = set()
        self.sent = 0
        self.changed = asyncio.Event()

    async def run(self, ready: asyncio.Future):
        args = self.args
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(PREFACE + frame(SETTINGS, 0, 0))
        reading = asyncio.ensure_future(self.read())
        ids = [1 + 2 * i for i in range(args.per_connection)]
        fields = [(":method", "POST"), (":scheme", "http"), (":path", args.path),
                  (":authority", f"{self.host}:{self.port}"), ("content-type", "application/grpc"),
                  ("te", "trailers")]
        if args.key:
            fields.append(("authorization", f"Bearer {args.key}"))
        for sid in ids:
            self.streams[sid] = self.initial
            self.writer.write(frame(HEADERS, END_HEADERS, sid, headers(fields)))
        await self.writer.drain()
        body = struct.pack(">BI", 0, args.message) + b"x" * args.send
        await asyncio.gather(*(self.push(sid, body) for sid in ids))
        ready.set_result(None)
        await reading

    async def push(self, sid: int, body: bytes):
        """Send `body` on the stream as far as flow control lets it, then stall."""
        offset = 0
        while offset < len(body) and sid not in self.closed:
            room = min(self.window, self.streams[sid], FRAME, len(body) - offset)
            if room <= 0:
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 2.0)
                except TimeoutError:  # the server grants no more: stall here
                    return
                continue
            self.writer.write(frame(DATA, 0, sid, body[offset:offset + room]))
            self.window -= room
            self.streams[sid] -= room
            offset += room
            self.sent += room
            await self.writer.drain()

    async def read(self):
        r = self.reader
        try:
            while True:
                head = await r.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                sid = struct.unpack(">I", head[5:])[0] & 0x7FFFFFFF
                payload = await r.readexactly(length)
                if kind == SETTINGS and not flags & ACK:
                    for i in range(0, len(payload), 6):
                        ident, value = struct.unpack(">HI", payload[i:i + 6])
                        if ident == 4:  # INITIAL_WINDOW_SIZE
                            for s in self.streams:
                                self.streams[s] += value - self.initial
                            self.initial = value
                    self.writer.write(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    self.writer.write(frame(PING, ACK, 0, payload))
                elif kind == WINDOW_UPDATE:
                    inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                    if sid == 0:
                        self.window += inc
                    elif sid in self.streams:
                        self.streams[sid] += inc
                elif kind == RST_STREAM or (kind == HEADERS and flags & END_STREAM):
                    self.closed.add(sid)
                elif kind == GOAWAY:
                    self.closed.update(self.streams)
                self.changed.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.update(self.streams)
            self.changed.set()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--message", type=int, default=4 << 20, help="the message length announced")
    p.add_argument("--send", type=int, default=3_500_000, help="bytes of it actually sent")
    p.add_argument("--path", default="/collector.v1.Collector/Ingest")
    p.add_argument("--key", default="")
    args = p.parse_args()
    conns, readies = [], []
    loop = asyncio.get_running_loop()
    for _ in range(max(1, args.streams // args.per_connection)):
        conn = Connection(args.host, args.port, args)
        ready = loop.create_future()
        conns.append(conn)
        readies.append(ready)
        asyncio.ensure_future(conn.run(ready))
    await asyncio.gather(*readies)
    print(json.dumps({"sent": sum(c.sent for c in conns), "closed": sum(len(c.closed) for c in conns),
                      "streams": sum(len(c.streams) for c in conns)}), flush=True)
    while await loop.run_in_executor(None, sys.stdin.readline):  # a line: say how it stands
        print(json.dumps({"sent": sum(c.sent for c in conns), "closed": sum(len(c.closed) for c in conns),
                          "streams": sum(len(c.streams) for c in conns)}), flush=True)
    # stdin closed: go


if __name__ == "__main__":
    asyncio.run(main())
