"""One raw WebSocket connection as a room member, writing through its connection's lane.

Writes never wait on the client: the lane (``backend/realtime/wire.py``) writes at once when
the client keeps up, keeps a bounded backlog when it lags, and cuts off a client that stopped
reading (close 1013), it alone. Where uvicorn's connection cannot be reached directly, an
``AsgiLane`` does the same through ASGI ``send`` with a queue and one writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from enum import Enum
from typing import Any, Protocol

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from backend.realtime.dialects import RawDialect
from backend.realtime.members import Member
from backend.realtime.wire import SLOW_CLIENT, Outgoing, Wire
from backend.service.actors import Actor

#: How long a close waits for the frames before it to leave.
CLOSE_FLUSH_SECONDS = 5.0


class State(Enum):
    """OPEN: frames flow (live ones may be held, ``Member.hold``). CLOSING: a close is on its
    way, nothing more is accepted. DEAD: the connection is over."""

    OPEN = "open"
    CLOSING = "closing"
    DEAD = "dead"


class Lane(Protocol):
    """A connection's ordered outbound lane."""

    cut_off: bool

    def put(self, out: Outgoing) -> None: ...

    async def flush(self) -> None:
        """Wait until everything put has been handed to the transport."""

    def stop(self) -> None: ...


class AsgiLane:
    """The fallback lane: texts queue for one writer task sending through ASGI."""

    def __init__(self, websocket: WebSocket, max_backlog: int) -> None:
        self.websocket = websocket
        self.max_backlog = max_backlog
        self.cut_off = False
        self._queue: deque[str] = deque()
        self._pending = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.writer = asyncio.ensure_future(self._write())

    def put(self, out: Outgoing) -> None:
        if self.cut_off or self.writer.done():
            return
        for text in out.texts:
            self._queue.append(text)
            self._pending += len(text)
        if self._pending > self.max_backlog:
            self._cut_off()
            return
        self._idle.clear()
        self._ready.set()

    async def _write(self) -> None:
        websocket = self.websocket
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                while not self._queue:
                    self._idle.set()
                    self._ready.clear()
                    await self._ready.wait()
                text = self._queue.popleft()
                self._pending -= len(text)
                await websocket.send_text(text)
        self._idle.set()

    async def flush(self) -> None:
        await self._idle.wait()

    def _cut_off(self) -> None:
        self.cut_off = True
        self._queue.clear()
        self._pending = 0
        self.writer.cancel()
        self._idle.set()
        self.writer = asyncio.ensure_future(self._close_slow())

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(SLOW_CLIENT, "Client too slow"), 0.5)

    def stop(self) -> None:
        if not self.writer.done():
            self.writer.cancel()


def lane_for(websocket: WebSocket, max_backlog: int) -> Lane:
    """The direct lane (a ``Wire``) when the server lets us reach the connection, else the
    ASGI one."""
    wire = Wire.of(websocket.scope, max_backlog)
    return wire if wire is not None else AsgiLane(websocket, max_backlog)


class RawMember(Member):
    """A raw WebSocket in rooms."""

    __slots__ = ("_closer", "lane", "state", "websocket", "wire")

    def __init__(self, member_id: str, actor: Actor, dialect: RawDialect, route: str,
                 websocket: WebSocket, lane: Lane) -> None:
        super().__init__(member_id, actor, dialect, route)
        self.websocket = websocket
        self.lane = lane
        #: The direct wire, when the lane is one (the fan-out's fast path skips the lane).
        self.wire = lane if isinstance(lane, Wire) else None
        self.state = State.OPEN
        self._closer: asyncio.Task[None] | None = None

    @property
    def raw_dialect(self) -> RawDialect:
        assert isinstance(self.dialect, RawDialect)
        return self.dialect

    @property
    def overflowed(self) -> bool:
        """Was this client cut off for not reading?"""
        return self.lane.cut_off

    # -- writing ----------------------------------------------------------------------------

    def write(self, out: Outgoing) -> None:
        if self._held is not None:
            self._held.append(out)
        elif self.state is State.OPEN:
            wire = self.wire
            if wire is not None:
                wire.write(out.wire)
            else:
                self.lane.put(out)

    def send(self, frame: dict[str, Any]) -> None:
        """One frame for this connection only (replies, welcome frames, errors), past any
        hold."""
        self.send_frames([orjson.dumps(frame).decode()])

    def send_frames(self, frames: list[str]) -> None:
        """Encoded frames for this connection only, past any hold."""
        if self.state is State.OPEN:
            self.lane.put(Outgoing(frames))

    # -- closing ----------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Close after the frames already written (the hub's closes: device deactivated,
        shutting down). Returns at once; the close follows the backlog."""
        if self.state is State.CLOSING or self.state is State.DEAD:
            return
        if self._held is not None:
            self._let_through()
        self.state = State.CLOSING
        self._closer = asyncio.ensure_future(self._close_after_backlog(code, reason[:120]))

    async def _close_after_backlog(self, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                await self.lane.flush()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.close(code, reason)

    async def stop(self) -> None:
        """The connection is over: stop writing."""
        self.state = State.DEAD
        self._held = None
        self.lane.stop()
        closer = self._closer
        if closer is not None and not closer.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer, 1.0)
