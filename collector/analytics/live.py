"""Who is watching a broadcast now, for the dashboard's live count: the viewers metric's rule
(ANALYTICS.md section 3) at one instant, kept current by following the log as events are
logged, not by asking the store again and again.

A board per (project, broadcast) being watched holds, per user, their latest join or leave and
the time and received time of their latest event carrying the broadcast. Each is a maximum, so
an event applied twice, or out of order, changes nothing: a board starts from the store (all it
has loaded, which is everything before the store sink's cursor) and from the log after that
cursor, both at once, then follows the log; it is dropped when its last watcher leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ..log import EVENTS, Log, unblanked
from .query import Query
from .rows import id_attribute
from .store import Store

log = logging.getLogger("collector.analytics.live")

JOINED, LEFT = "broadcast.joined", "broadcast.left"
_MARK = b'"broadcastId"'  # a line without it carries no broadcast


class _Event(msgspec.Struct):
    """What a board reads of a normalised event."""

    project_id: int
    user_id: str
    action: str
    time: int
    received_time: int
    params: dict[str, Any]


_events = msgspec.json.Decoder(_Event)


class Board:
    """One broadcast's users: user -> [latest join/leave as time * 2 (+1 for a leave, which
    comes after a join at equal times), or -1; latest event time; latest received time]."""

    def __init__(self):
        self.users: dict[str, list[int]] = {}
        self.watchers = 0
        self.ready: asyncio.Future | None = None  # its start from the store and the log
        self.changed = asyncio.Event()  # set when a user's join or leave moves

    def add(self, user: str, turn: int, last: int, received: int) -> None:
        s = self.users.get(user)
        if s is None:
            self.users[user] = [turn, last, received]
            self.changed.set()
        else:
            if turn > s[0]:
                self.changed.set()
            s[0], s[1], s[2] = max(s[0], turn), max(s[1], last), max(s[2], received)

    def watching(self, at: int, idle_ms: int, hidden: dict, project: int) -> int:
        """Users watching at `at` (ms): their latest join/leave is a join and their latest event
        is at most `idle_ms` old. A user whose events are all deleted (`hidden`) is not."""
        since = at - idle_ms
        return sum(1 for user, (turn, last, received) in self.users.items()
                   if turn >= 0 and not turn & 1 and last >= since
                   and received > hidden.get((project, user), -1))


def _turn(action: str, t: int) -> int:
    return t * 2 if action == JOINED else t * 2 + 1 if action == LEFT else -1


class Live:
    """The boards being watched, fed by one task following the log.

    `loaded()` is the store sink's position: every event logged before it is in the store."""

    def __init__(self, log_: Log, store: Store, loaded: Callable[[], int]):
        self.log = log_
        self.store = store
        self.loaded = loaded
        self.boards: dict[tuple[int, str], Board] = {}
        self.position = log_.end  # the next record the task reads
        self._task: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def watch(self, project: int, broadcast: str):
        """The broadcast's board, ready, for as long as the block runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        key = (project, broadcast)
        board = self.boards.get(key)
        if board is None:
            board = self.boards[key] = Board()
            board.ready = asyncio.ensure_future(self._start(key, board, self.position))
        board.watchers += 1
        assert board.ready is not None  # set with the board
        try:
            await asyncio.shield(board.ready)
            yield board
        finally:
            board.watchers -= 1
            if not board.watchers and self.boards.get(key) is board:
                del self.boards[key]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _start(self, key: tuple[int, str], board: Board, here: int) -> None:
        """The board's past: the store up to its sink's cursor, then the log from that cursor
        to `here`, where the task started feeding the board."""
        project, broadcast = key
        upto = self.loaded()
        now = _now_ms()
        where = self.store.where(Query(project, None, now + 1, {"broadcastId": broadcast}))
        rows = await asyncio.to_thread(self.store.query, (
            f"SELECT user_id, max(CASE WHEN action = '{JOINED}' THEN time * 2 WHEN action = "
            f"'{LEFT}' THEN time * 2 + 1 END), max(time), max(received_time) FROM events "
            f"WHERE {where} GROUP BY user_id"))
        for user, turn, last, received in rows:
            board.add(user, -1 if turn is None else int(turn), int(last), int(received))
        position = max(upto, self.log.start)
        while position < here:
            records = [r for r in self.log.read(position, 1 << 20) if r.position < here]
            if not records:
                break
            _apply(records, {key: board})
            position = records[-1].end
            await asyncio.sleep(0)

    async def _follow(self) -> None:
        while True:
            if not self.boards:  # nobody watches: nothing to read
                self.position = self.log.end
                await self.log.wait_beyond(self.position, timeout=1.0)
                continue
            self.position = max(self.position, self.log.start)
            records = self.log.read(self.position, 1 << 20)
            if not records:
                await self.log.wait_beyond(self.position, timeout=1.0)
                continue
            try:
                _apply(records, self.boards)
            except Exception:  # noqa: BLE001 - a line it cannot read must not stop the count
                log.exception("live viewers: records from position %d", records[0].position)
            self.position = records[-1].end
            await asyncio.sleep(0)


def _apply(records, boards: dict[tuple[int, str], Board]) -> None:
    for rec in records:
        if rec.kind != EVENTS or _MARK not in rec.payload:
            continue
        for line in unblanked(rec.payload).splitlines():
            if _MARK not in line:
                continue
            ev = _events.decode(line)
            broadcast = id_attribute(ev.params.get("broadcastId"))
            board = boards.get((ev.project_id, broadcast)) if broadcast is not None else None
            if board is not None:
                board.add(ev.user_id, _turn(ev.action, ev.time), ev.time, ev.received_time)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
