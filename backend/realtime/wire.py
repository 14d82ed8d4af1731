"""Writing straight to the wire: one event framed once, the same bytes written to every socket.

A fan-out writes one event to hundreds of sockets. Through ASGI each write would be a chain of
coroutine calls and a fresh WebSocket frame per recipient; here the frame is built once per
dialect (``Outgoing.wire``) and each recipient costs one ``transport.write``.

``DirectWires`` (the outermost ASGI middleware) finds uvicorn's WebSocket connection behind a
websocket scope and leaves it in the scope's extensions; a door that finds it there makes a
``Wire``: the connection's one ordered outbound lane. A ``Wire`` never waits on its client:
when the transport pushes back (the client reads slower than we write), frames wait in a
bounded backlog, and a client whose backlog passes the bound is cut off, alone.

Server frames are unmasked and never compressed (RSV1 clear), which RFC 7692 allows even on a
connection that negotiated permessage-deflate. Under another server (or uvicorn's other
WebSocket implementations) no connection is found and the doors fall back to an ``AsgiLane``
(``lane_for`` picks): the same ordered lane, bound and cut-off through ASGI ``send``.
What it relies on of uvicorn's protocol is listed in backend/compat/uvicorn.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeAlias, cast

from backend.compat.uvicorn import SansIOProtocol, connection_of, transport_of

log = logging.getLogger("confab.wire")

#: Key of ``scope["extensions"]`` under which ``DirectWires`` leaves the connection.
CONNECTION_KEY = "confab.connection"

#: Close code for a client cut off because it stopped reading (RFC 6455 "try again later").
SLOW_CLIENT = 1013
#: How long a cut-off client gets to read its close frame before the connection is dropped.
CUT_OFF_GRACE_SECONDS = 1.0

_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode


def frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, uncompressed, unfragmented server frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((opcode, size)) + payload
    if size < 65536:
        return bytes((opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((opcode, 127)) + size.to_bytes(8, "big") + payload


class Outgoing:
    """One event's frames in one dialect: the texts, and the same frames as wire bytes, made
    on first use and then shared by every recipient. ``prefix`` is prepended to each text on
    the wire (Engine.IO's ``"4"``: a Socket.IO packet travels in an Engine.IO message).
    ``mark`` is ``(conversation id, position)`` for a logged event (CONTRACT §9), else None:
    what a member releasing a hold checks, without parsing the frames."""

    __slots__ = ("_wire", "mark", "prefix", "texts")

    def __init__(self, texts: list[str], prefix: str = "",
                 mark: tuple[int, int] | None = None) -> None:
        self.texts = texts
        self.prefix = prefix
        self.mark = mark
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            prefix = self.prefix
            self._wire = b"".join(frame((prefix + text).encode()) for text in self.texts)
        return self._wire


class DirectWires:
    """ASGI middleware: leave uvicorn's WebSocket connection in the scope for ``Wire``.

    ``heartbeat``, (ping interval, pong timeout) in seconds, is the WebSocket keepalive the
    app asks of the server's protocol (``backend/realtime/protocol.py``), None for its own."""

    def __init__(self, app: Any, heartbeat: tuple[float, float] | None = None) -> None:
        self.app = app
        self.heartbeat = heartbeat

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            # uvicorn hands the app its connection's own bound ``send``.
            connection = connection_of(send)
            if connection is not None:
                scope.setdefault("extensions", {})[CONNECTION_KEY] = connection
        await self.app(scope, receive, send)


class TextTaker(Protocol):
    """What ``Wire.take_texts`` hands a connection: ``take_text(payload)`` says whether it
    took a text frame's payload (True: not queued for the application)."""

    def take_text(self, payload: bytes) -> bool: ...


class _TakesTexts(Protocol):
    text_hook: TextTaker | None


class Wire:
    """The ordered outbound lane of one accepted WebSocket connection (see the module doc).

    Everything the server sends on the connection after ``accept`` must go through ``write``
    (or wait until ``flush`` returns), so that frames leave in the order they were written.
    """

    __slots__ = ("_backlog", "_drainer", "_pending", "connection", "cut_off", "max_backlog",
                 "transport")

    def __init__(self, connection: SansIOProtocol, max_backlog: int) -> None:
        self.connection = connection
        self.transport = transport_of(connection)
        self.max_backlog = max_backlog
        self.cut_off = False
        # A list, not a deque: it is only appended to and emptied whole (a deque is about
        # 600 bytes). None while empty: nearly every connection's is, nearly always.
        self._backlog: list[bytes] | None = None
        self._pending = 0
        self._drainer: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, scope: MutableMapping[str, Any], max_backlog: int) -> Wire | None:
        """The wire of an accepted connection, when the server lets us write to it."""
        connection = (scope.get("extensions") or {}).get(CONNECTION_KEY)
        if connection is None or not connection.handshake_complete:
            return None
        return cls(connection, max_backlog)

    @property
    def live(self) -> bool:
        """Frames written now can still reach the client."""
        connection = self.connection
        return not (connection.close_sent or connection.disconnected or self.cut_off)

    @property
    def idle(self) -> bool:
        """Nothing waits in the backlog."""
        return not self._backlog

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole frames) now, or after the backlog when the client lags."""
        # The fan-out's innermost call: the checks of ``live`` are inlined.
        connection = self.connection
        if self._backlog or not connection.writable.is_set():
            self._hold(data)
        elif not (connection.close_sent or connection.disconnected or self.cut_off):
            self.transport.write(data)

    def put(self, out: Outgoing) -> None:
        """Write an event's frames (the ``Lane`` interface of raw members)."""
        self.write(out.wire)

    def without_keepalive(self) -> None:
        """The application runs a heartbeat of its own on this connection (Engine.IO's pings
        and their timeout): the server's WebSocket keepalive stops pinging it."""
        self.connection.stop_keepalive()

    def take_texts(self, hook: TextTaker | None) -> None:
        """Hand ``hook.take_text`` each text frame that arrives alone in its read while
        nothing waits in the application's receive queue; what it takes (True) is not queued:
        Engine.IO's pongs, handled without waking the socket's read loop, in the order they
        came. The connection holds ``hook`` itself (an Engine.IO socket: no callable made
        per connection). None: no more."""
        # The project's protocol reads it (backend/realtime/protocol.py); uvicorn's own, under
        # a server started with another ``--ws``, holds it unread and queues every frame.
        cast(_TakesTexts, self.connection).text_hook = hook

    def write_text(self, text: str) -> None:
        self.write(frame(text.encode()))

    def write_bytes(self, data: bytes) -> None:
        self.write(frame(data, _BINARY))

    def _hold(self, data: bytes) -> None:
        if not self.live:
            return
        if self._backlog is None:
            self._backlog = [data]
        else:
            self._backlog.append(data)
        self._pending += len(data)
        if self._pending > self.max_backlog:
            self._cut_off()
        elif self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        connection = self.connection
        try:
            while self._backlog and self.live:
                await connection.writable.wait()
                if not self.live:
                    break
                # Everything waiting leaves in one write (order kept, one syscall).
                data = b"".join(self._backlog or ())
                self._backlog = None
                self._pending = 0
                self.transport.write(data)
        finally:
            self._drainer = None

    async def flush(self) -> None:
        """Wait until the backlog has left (callers bound the wait)."""
        while self._drainer is not None:
            await asyncio.wait({self._drainer})  # neither raises nor cancels it

    def stop(self) -> None:
        """The connection is over: drop what waits."""
        self._backlog = None
        self._pending = 0
        if self._drainer is not None:
            self._drainer.cancel()

    def _cut_off(self) -> None:
        """The client stopped reading: drop its backlog, tell it why, and drop it."""
        log.warning("client %s fell %d bytes behind; cutting it off",
                    self.connection.client, self._pending)
        self.cut_off = True
        self._backlog = None
        self._pending = 0
        if self._drainer is not None:
            self._drainer.cancel()
        connection = self.connection
        if not connection.close_sent and not connection.disconnected:
            with contextlib.suppress(Exception):
                connection.conn.send_close(SLOW_CLIENT, "Client too slow")
                self.transport.write(b"".join(connection.conn.data_to_send()))
            connection.close_sent = True
            # A reader that wakes up in time sees the close frame; otherwise it is dropped.
            # Either way uvicorn reports the disconnect to the connection's handler.
            connection.loop.call_later(CUT_OFF_GRACE_SECONDS, self.transport.abort)


AsgiSend: TypeAlias = Callable[[dict[str, Any]], Awaitable[None]]


class AsgiLane:
    """The ordered outbound lane of a WebSocket with no ``Wire`` (another ASGI server): what is
    written queues for one writer task, started while anything waits, that hands it to ASGI
    ``send``. Like a ``Wire`` it never waits on its client: a client whose queue passes
    ``max_backlog`` bytes is cut off (close 1013), alone; one whose ``send`` failed is gone,
    and what is written to it afterwards is dropped."""

    __slots__ = ("_closer", "_pending", "_queue", "_writer", "cut_off", "ended",
                 "max_backlog", "send")

    def __init__(self, send: AsgiSend, max_backlog: int) -> None:
        self.send = send
        self.max_backlog = max_backlog
        self.cut_off = False
        #: The connection failed under a send, or the lane was stopped.
        self.ended = False
        self._queue: deque[tuple[dict[str, Any], int]] = deque()
        self._pending = 0
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def put(self, out: Outgoing) -> None:
        """Write an event's frames (each text with the ``Outgoing``'s prefix)."""
        prefix = out.prefix
        for text in out.texts:
            self._add({"type": "websocket.send", "text": prefix + text}, len(text))

    def write_text(self, text: str) -> None:
        self._add({"type": "websocket.send", "text": text}, len(text))

    def write_bytes(self, data: bytes) -> None:
        self._add({"type": "websocket.send", "bytes": bytes(data)}, len(data))

    def _add(self, message: dict[str, Any], size: int) -> None:
        if self.cut_off or self.ended:
            return
        self._queue.append((message, size))
        self._pending += size
        if self._pending > self.max_backlog:
            self._cut_off()
        elif self._writer is None:
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                message, size = self._queue.popleft()
                self._pending -= size
                await self.send(message)
        except Exception:  # the client left: nothing more reaches it
            self.ended = True
            self._queue.clear()
            self._pending = 0
        finally:
            self._writer = None

    async def flush(self) -> None:
        """Wait until what was written has been handed to ``send`` (callers bound the wait)."""
        while self._writer is not None:
            await asyncio.wait({self._writer})  # neither raises nor cancels it

    def stop(self) -> None:
        """The connection is over: drop what waits."""
        self.ended = True
        self._queue.clear()
        self._pending = 0
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()

    def _cut_off(self) -> None:
        """The client stopped reading: drop its queue, and close it (bounded) with why."""
        log.warning("a client fell %d bytes behind; cutting it off", self._pending)
        self.cut_off = True
        self._queue.clear()
        self._pending = 0
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.ensure_future(self._close_slow())

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CUT_OFF_GRACE_SECONDS):
                await self.send({"type": "websocket.close", "code": SLOW_CLIENT,
                                 "reason": "Client too slow"})


#: A WebSocket's ordered outbound lane, whichever the server allows.
Lane: TypeAlias = Wire | AsgiLane


def lane_for(scope: MutableMapping[str, Any], send: AsgiSend, max_backlog: int) -> Lane:
    """The lane of an accepted WebSocket: its ``Wire`` when the server lets us reach the
    connection, else an ``AsgiLane`` over ``send``."""
    wire = Wire.of(scope, max_backlog)
    return wire if wire is not None else AsgiLane(send, max_backlog)
