"""The write-ahead log: appends, reads, group commit, recovery of a torn tail, retention."""

import asyncio
import time

import pytest

from collector.log import DEAD, EVENTS, HEADER_SIZE, Cursor, Log, LogFull


def run(coro):
    return asyncio.run(coro)


def test_append_read_reopen(tmp_path):
    async def main():
        log = Log(str(tmp_path))
        positions = await asyncio.gather(*(log.append(EVENTS, i, b"x" * i) for i in range(50)))
        assert positions == sorted(positions) and positions[0] == 0
        recs = log.read(0)
        assert [r.payload for r in recs] == [b"x" * i for i in range(50)]
        assert [r.position for r in recs] == positions
        assert log.read(recs[10].position)[0].time == 10
        await log.close()

    run(main())
    log = Log(str(tmp_path))
    assert len(log.read(0)) == 50 and log.truncated == 0


def test_torn_tail_is_cut_and_complete_records_kept(tmp_path):
    async def main():
        log = Log(str(tmp_path))
        for i in range(5):
            await log.append(EVENTS, i, b"event-%d" % i)
        await log.close()

    run(main())
    (seg,) = [p for p in tmp_path.iterdir() if p.suffix == ".seg"]
    size = seg.stat().st_size
    with open(seg, "ab") as f:  # half a record, as a crash mid-write leaves it
        f.write(b"\x10\x00\x00\x00\x99\x99")
    log = Log(str(tmp_path))
    assert log.truncated == 6 and seg.stat().st_size == size
    assert [r.payload for r in log.read(0)] == [b"event-%d" % i for i in range(5)]
    # a flipped byte in the last record: that record is dropped, the others stay
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    log = Log(str(tmp_path))
    assert [r.payload for r in log.read(0)] == [b"event-%d" % i for i in range(4)]


def test_rotation_release_and_cap(tmp_path):
    async def main():
        log = Log(str(tmp_path), segment_bytes=1000, max_bytes=5000)
        positions = []
        with pytest.raises(LogFull):
            for i in range(100):
                positions.append(await log.append(DEAD, i, b"y" * 100))
        assert log.full() and len(positions) >= 40
        segments = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".seg")
        assert len(segments) > 3
        recs = log.read(0, max_bytes=1 << 30)
        assert [r.time for r in recs] == list(range(len(positions)))
        freed = log.release(positions[30])
        assert freed > 0 and not log.full()
        assert log.read(0)[0].position <= positions[30] and log.start > 0
        assert log.position_at_time(35) == positions[35]
        await log.append(EVENTS, 999, b"after")
        assert log.read(positions[-1])[-1].payload == b"after"
        await log.close()

    run(main())


def test_wait_beyond(tmp_path):
    async def main():
        log = Log(str(tmp_path))
        assert not await log.wait_beyond(0, timeout=0.05)
        waiter = asyncio.ensure_future(log.wait_beyond(0, timeout=5))
        await asyncio.sleep(0.01)
        await log.append(EVENTS, 1, b"a")
        assert await waiter
        await log.close()

    run(main())


def test_a_large_record_reads_whole(tmp_path):
    async def main():
        log = Log(str(tmp_path))
        await log.append(EVENTS, 1, b"z" * (3 << 20))
        await log.append(EVENTS, 2, b"small")
        recs = log.read(0, max_bytes=1000)
        assert len(recs) == 1 and len(recs[0].payload) == 3 << 20
        assert log.read(recs[0].end)[0].payload == b"small"
        assert recs[0].end == HEADER_SIZE + (3 << 20)
        await log.close()

    run(main())


def test_cursor_survives(tmp_path):
    c = Cursor(str(tmp_path), "jsonl")
    assert c.position == 0
    c.save(123456)
    assert Cursor(str(tmp_path), "jsonl").position == 123456
    c.note(99)  # a save that ran late (a stop saves again): the cursor never moves back
    assert Cursor(str(tmp_path), "jsonl").position == 123456
    c.close()
    c.save(200000)  # after the close: nothing
    assert Cursor(str(tmp_path), "jsonl").position == 123456
    with open(c.path, "w") as f:  # written by an older version: no padding
        f.write("1234")
    old = Cursor(str(tmp_path), "jsonl")
    assert old.position == 1234
    old.note(99999)  # longer than before: replaces it whole
    assert Cursor(str(tmp_path), "jsonl").position == 99999
    old.close()
    with open(c.path, "wb") as f:  # unreadable: start from the oldest record
        f.write(b"\0\0\0")
    assert Cursor(str(tmp_path), "jsonl").position == 0


def test_recent_records_are_read_from_memory_as_from_the_file(tmp_path):
    async def main():
        log = Log(str(tmp_path), cache_bytes=2000)
        f1 = log.append_many([(EVENTS, 1, b"a" * 300), (DEAD, 2, b"b" * 10)])
        more = (log.append(EVENTS, 10 + i, b"c" * (100 + i)) for i in range(20))
        positions = await asyncio.gather(f1, *more)
        assert positions[0] == [0, HEADER_SIZE + 300]  # one future for both records, in order
        assert log._recent and log._recent_size <= 2000  # bounded: only the newest are kept
        assert log._recent_positions[0] > 0
        cached = log._recent_positions[0]
        from_memory = log.read(cached, max_bytes=1 << 20)
        log._recent_positions, recent = [], log._recent  # force the file path
        from_file = log.read(cached, max_bytes=1 << 20)
        log._recent_positions = [r.position for r in recent]
        assert from_memory == from_file and len(from_memory) == len(recent)
        # the max_bytes rule is the same: records while under it, at least one
        assert log.read(cached, max_bytes=1) == from_file[:1]
        two = log.read(cached, max_bytes=HEADER_SIZE + 150)
        assert [r.time for r in two] == [r.time for r in from_file[:2]]
        assert log.read(log.end) == []
        assert [r.payload for r in log.read(0)][:2] == [b"a" * 300, b"b" * 10]  # older: from the file
        await log.close()

    run(main())


def test_a_failed_write_fails_its_appends_and_leaves_no_trace(tmp_path):
    async def main():
        log = Log(str(tmp_path))
        await log.append(EVENTS, 1, b"kept")

        def broken(buffers):
            raise OSError(28, "No space left on device")

        write, log._write_and_sync = log._write_and_sync, broken
        with pytest.raises(OSError):
            await log.append(EVENTS, 2, b"lost")
        log._write_and_sync = write
        await log.append(EVENTS, 3, b"after")
        assert [r.payload for r in log.read(0)] == [b"kept", b"after"]
        await log.close()

    run(main())
    assert [r.payload for r in Log(str(tmp_path)).read(0)] == [b"kept", b"after"]


def test_appends_soon_after_a_commit_share_the_next_one(tmp_path):
    """Group commits start at most every `commit_interval`: appends that arrive one after the
    other within it go into one commit; with no interval, each finds the writer free and gets
    its own."""

    async def commits(interval: float) -> int:
        log = Log(str(tmp_path / str(interval)), commit_interval=interval)
        seen = []
        log.on_commit = seen.append
        await log.append(EVENTS, 0, b"first")  # after a quiet spell: committed at once
        waiting = []
        for i in range(5):  # one every 50 ms
            waiting.append(asyncio.ensure_future(log.append(EVENTS, i, b"next")))
            await asyncio.sleep(0.05)
        await asyncio.gather(*waiting)
        await log.close()
        return len(seen)

    async def main():
        assert await commits(1.0) == 2  # the first, then the five together
        assert await commits(0.0) > 2  # each its own, unless an fsync took longer than 50 ms

    run(main())


class _SlowSink:
    """A sink whose writes take a while in a worker thread, as a file sink's do."""

    name = "slow"
    kinds = frozenset({EVENTS})
    linger_seconds = 0.0
    batch_bytes = 4 << 20
    counts_itself = False

    def __init__(self):
        self.written, self.writing, self.stopped = [], asyncio.Event(), False

    async def start(self):
        pass

    async def write(self, records):
        self.writing.set()
        await asyncio.to_thread(time.sleep, 0.3)
        self.written += [r.payload for r in records]

    async def stop(self):
        self.stopped = True


def test_delivery_stop_lets_the_write_in_progress_finish(tmp_path):
    """A stop that comes in the middle of a sink's write waits for it (a worker thread goes on
    even when its task is cancelled) and then moves the cursor past it."""
    from collector.delivery import Delivery
    from collector.metrics import Metrics

    async def main():
        log = Log(str(tmp_path / "log"))
        end = (await log.append(EVENTS, 1, b"one\n")) + HEADER_SIZE + 4
        sink = _SlowSink()
        d = Delivery(log, sink, str(tmp_path / "cursors"), Metrics())
        d.start()
        await asyncio.wait_for(sink.writing.wait(), 5)
        await d.stop()
        assert sink.written == [b"one\n"] and sink.stopped
        assert Cursor(str(tmp_path / "cursors"), "slow").position == end
        await log.close()

    run(main())


def test_an_idle_delivery_makes_its_cursor_durable(tmp_path):
    """A cursor moved by a delivery is fsynced within about a second even if nothing more
    comes (not only at the next delivery or the stop)."""
    from collector.delivery import Delivery
    from collector.metrics import Metrics

    async def main():
        log = Log(str(tmp_path / "log"))
        sink = _SlowSink()
        d = Delivery(log, sink, str(tmp_path / "cursors"), Metrics())
        saves = []
        save = d.cursor.save
        d.cursor.save = lambda position: (saves.append(position), save(position))
        d._saved = time.monotonic()  # as if a save had just happened: the next one is due in 1 s
        d.start()
        end = (await log.append(EVENTS, 1, b"one\n")) + HEADER_SIZE + 4
        for _ in range(40):  # up to 4 s
            if saves:
                break
            await asyncio.sleep(0.1)
        assert saves == [end] and sink.written == [b"one\n"]
        await d.stop()
        await log.close()

    run(main())
