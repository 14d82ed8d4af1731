"""One raw WebSocket connection as a room member, writing through its connection's lane.

Writes never wait on the client: the lane (``backend/realtime/wire.py``) writes at once when
the client keeps up, keeps a bounded backlog when it lags, and cuts off a client that stopped
reading (close 1013), it alone. Where uvicorn's connection cannot be reached directly, the
real-time layer's ``AsgiLane`` does the same through ASGI ``send`` (the Socket.IO door's
fallback too).
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import Enum
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from backend.realtime.dialects import RawDialect
from backend.realtime.members import Member
from backend.realtime.wire import Lane, Outgoing, Wire
from backend.realtime.wire import frame as frame_of
from backend.service.actors import Actor

#: How long a close waits for the frames before it to leave.
CLOSE_FLUSH_SECONDS = 5.0


class State(Enum):
    """OPEN: frames flow (live ones may be held, ``Member.hold``). CLOSING: a close is on its
    way, nothing more is accepted. DEAD: the connection is over."""

    OPEN = "open"
    CLOSING = "closing"
    DEAD = "dead"


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
        if self.state is not State.OPEN:
            return
        data = orjson.dumps(frame)
        wire = self.wire
        if wire is not None:
            # Its JSON framed as it is: not decoded to text and encoded back (the welcome's
            # history page is tens of KB).
            wire.write(frame_of(data))
        else:
            self.lane.put(Outgoing([data.decode()]))

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
        self._held = self._floors = None
        self._drops = None
        self.lane.stop()
        closer = self._closer
        if closer is not None and not closer.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer, 1.0)
