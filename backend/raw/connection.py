"""One raw WebSocket connection as a room member: a bounded outbound queue and one writer task.

``write`` only queues: the fan-out manager never waits on a client. The writer task drains the
queue into the socket at the client's pace; a client whose backlog passes the bound (it stopped
reading) is cut off, and only it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from backend.realtime.dialects import RawDialect
from backend.realtime.members import Member
from backend.service.actors import Actor

log = logging.getLogger("confab.raw")

#: Close code for a client cut off because it stopped reading (RFC 6455 "try again later").
SLOW_CLIENT = 1013


class State(Enum):
    """HOLDING: live frames are kept back until the welcome frames are out. OPEN: frames flow.
    CLOSING: a close is queued, nothing more is accepted. DEAD: the writer has stopped."""

    HOLDING = "holding"
    OPEN = "open"
    CLOSING = "closing"
    DEAD = "dead"


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class RawMember(Member):
    """A raw WebSocket in rooms. ``max_frames`` / ``max_bytes`` bound what may wait unsent."""

    __slots__ = (
        "_held",
        "_pending",
        "_queue",
        "_ready",
        "max_bytes",
        "max_frames",
        "overflowed",
        "state",
        "websocket",
        "writer",
    )

    def __init__(self, member_id: str, actor: Actor, dialect: RawDialect, route: str,
                 websocket: WebSocket, *, max_frames: int = 1000,
                 max_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(member_id, actor, dialect, route)
        self.websocket = websocket
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.state = State.OPEN
        self.overflowed = False
        self._queue: deque[str | _Close] = deque()
        self._pending = 0  # bytes (characters) queued and not yet written
        self._held: list[str] = []
        self._ready = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    @property
    def raw_dialect(self) -> RawDialect:
        assert isinstance(self.dialect, RawDialect)
        return self.dialect

    # -- the writer -------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the writer task (once, after the socket is accepted)."""
        assert self.writer is None, "writer already started"
        self.writer = asyncio.ensure_future(self._drain())
        return self.writer

    async def _drain(self) -> None:
        websocket = self.websocket
        try:
            while True:
                while not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                item = self._queue.popleft()
                if isinstance(item, _Close):
                    await websocket.close(item.code, item.reason)
                    return
                self._pending -= len(item)
                await websocket.send_text(item)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away; the receive loop sees the disconnect
        finally:
            self.state = State.DEAD
            self._queue.clear()
            self._pending = 0

    # -- queueing ---------------------------------------------------------------------------

    def hold(self) -> None:
        """Keep live frames back (while the welcome frames are being prepared)."""
        if self.state is State.OPEN:
            self.state = State.HOLDING

    def release(self, drop: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Let held frames through, in order, minus those ``drop`` rejects (given the frame)."""
        if self.state is not State.HOLDING:
            return
        self.state = State.OPEN
        held, self._held = self._held, []
        if drop is not None:
            held = [frame for frame in held if not drop(orjson.loads(frame))]
        self._enqueue(held)

    async def write(self, frames: list[str]) -> None:
        if self.state is State.HOLDING:
            self._held.extend(frames)
            if len(self._held) > self.max_frames:
                self._overflow()
            return
        self._enqueue(frames)

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame for this connection only (replies, welcome frames, errors)."""
        self._enqueue([orjson.dumps(frame).decode()])

    def send_frames(self, frames: list[str]) -> None:
        """Queue encoded frames for this connection only, past any hold."""
        self._enqueue(frames)

    def _enqueue(self, frames: list[str]) -> None:
        if self.state is not State.OPEN and self.state is not State.HOLDING:
            return
        for frame in frames:
            self._queue.append(frame)
            self._pending += len(frame)
        if len(self._queue) > self.max_frames or self._pending > self.max_bytes:
            self._overflow()
            return
        self._ready.set()

    def _overflow(self) -> None:
        """The client stopped reading: drop its backlog and cut it off (it alone)."""
        log.warning("raw client %s fell %d frames behind; closing it", self.id, len(self._queue))
        self.overflowed = True
        self.state = State.DEAD
        self._queue.clear()
        self._held.clear()
        self._pending = 0
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()

    async def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (used by the hub, e.g. device deactivated)."""
        if self.state in (State.CLOSING, State.DEAD):
            return
        if self.state is State.HOLDING:
            self.release()
        self.state = State.CLOSING
        self._queue.append(_Close(code, reason[:120]))
        self._ready.set()

    async def stop(self) -> None:
        """Stop the writer (the connection is over)."""
        writer = self.writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self.state = State.DEAD
