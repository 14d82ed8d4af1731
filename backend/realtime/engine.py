"""Engine.IO with a direct lane per WebSocket connection.

python-engineio sends every packet through the socket's ``asyncio.Queue`` and a writer task
per socket, and each send goes down the ASGI chain. Here an upgraded (or WebSocket-only)
socket gets a ``Wire`` (``backend/realtime/wire.py``): the writer task's sends go through it,
and the fan-out writes an event's pre-built Engine.IO frame straight to it whenever nothing of
that socket waits in Engine.IO's queue, so packets keep their order. Long-polling sockets, and
sockets in the middle of an upgrade, keep Engine.IO's own path; the protocol is untouched.
Packets sent to one socket (acks, CONNECT answers) take the same direct path.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import engineio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import asgi as eio_asgi

from backend.realtime.queues import LeanQueue
from backend.realtime.wire import Wire

#: How long Engine.IO's close waits for the frames before it to leave.
CLOSE_FLUSH_SECONDS = 2.0


class DirectWebSocket(eio_asgi.WebSocket):
    """Engine.IO's ASGI WebSocket, writing through the connection's ``Wire`` when it has one."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.server: EngineServer = server
        self.wire: Wire | None = None

    async def __call__(self, environ: dict[str, Any]) -> str:
        self.asgi_receive = environ["asgi.receive"]
        self.asgi_send = environ["asgi.send"]
        await self.asgi_send({"type": "websocket.accept"})
        self.wire = Wire.of(environ["asgi.scope"], self.server.max_backlog)
        # The handler is the Engine.IO socket's own ``_websocket_handler``.
        socket = self.handler.__self__
        sid: str = socket.sid
        if self.wire is not None:
            self.server.wires[sid] = (self.wire, socket)
        try:
            if socket.connected:  # an upgrade from long-polling: Engine.IO's own handler
                await self.handler(self)
            else:
                await self._serve(socket)
        finally:
            if self.wire is not None:
                self.server.wires.pop(sid, None)
                self.wire.stop()
        return ""

    async def _serve(self, socket: Any) -> None:
        """Engine.IO's WebSocket loop (``AsyncSocket._websocket_handler``) for a socket that
        starts on WebSocket. The same steps, but the read timeout is one timer re-armed per
        packet: Engine.IO makes a task and an ``asyncio.wait_for`` for every inbound packet."""
        socket.connected = socket.upgraded = True
        writer = asyncio.ensure_future(self._write_queued(socket))
        server = socket.server
        idle = server.ping_interval + server.ping_timeout
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    deadline.reschedule(loop.time() + idle)
                    data = await self.wait()
                    deadline.reschedule(None)  # the handler's own time is not the client's
                    if len(data) > server.max_http_buffer_size:
                        break
                    pkt = eio_packet.Packet(encoded_packet=data)
                    try:
                        await socket.receive(pkt)
                    except eio_exceptions.UnknownPacketError:
                        pass
                    except eio_exceptions.SocketIsClosedError:
                        break
                    except Exception:
                        server.logger.exception("Unknown receive error")
                    # Not held while waiting for the next: an idle socket's last packet.
                    data = pkt = None
        except (Exception, asyncio.CancelledError):
            # The client left or went silent, a frame was not Engine.IO, or the server is
            # stopping: Engine.IO ends the loop on any of them, and so does this one.
            pass
        await socket.queue.put(None)  # unlock the writer so it can exit
        await writer
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)

    async def _write_queued(self, socket: Any) -> None:
        """Engine.IO's writer task: what waits in the socket's queue, in order, until the
        ``None`` that ``_serve`` puts when the connection ends.

        It waits on the queue itself, where Engine.IO's ``poll`` wraps each wait in an
        ``asyncio.wait_for`` (a task and a timer held by every idle socket, about 1.3 KB)
        whose timeout only ends the writer of a client gone silent. Such a client is ended
        by ``_serve``'s read deadline (and Engine.IO's ping check), after which ``_serve``
        puts the ``None``. Packets leave in order, each ``send`` a write to the wire that
        does not wait, as before."""
        queue = socket.queue
        while True:
            try:
                pkt = await queue.get()
            except asyncio.CancelledError:  # as Engine.IO's poll: the writer just ends
                break
            queue.task_done()
            if pkt is None:  # the connection is closing
                break
            try:
                await self.send(pkt.encode())
            except Exception:
                break
            pkt = None  # not held while waiting for the next
        await self.close()

    async def send(self, message: str | bytes) -> None:
        wire = self.wire
        if wire is None:
            await super().send(message)
        elif isinstance(message, bytes):
            wire.write_bytes(message)
        else:
            wire.write_text(message)

    async def close(self) -> None:
        if self.wire is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                    await self.wire.flush()
        await super().close()


class _NoBody:
    """The request body of a WebSocket upgrade, which has none."""

    __slots__ = ()

    async def read(self, length: int | None = None) -> bytes:
        return b""


_NO_BODY = _NoBody()


async def translate_request(scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any]:
    """Engine.IO's ASGI ``translate_request``, minus its body reader on WebSocket upgrades.

    The reader (``wsgi.input``) is an instance of a class the driver defines anew on every
    request, about 3 KB with the class, and python-socketio keeps the environ for the
    connection's life. An upgrade has no body: a shared empty reader takes its place."""
    environ: dict[str, Any] = await eio_asgi.translate_request(scope, receive, send)
    if scope["type"] == "websocket" and "wsgi.input" in environ:
        environ["wsgi.input"] = _NO_BODY
    return environ


class EngineServer(engineio.AsyncServer):
    """python-engineio's server with a ``Wire`` per WebSocket connection (see module doc),
    a ``LeanQueue`` per socket, and no per-request body reader kept on WebSocket sockets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._async = {**self._async, "websocket": DirectWebSocket,
                       "translate_request": translate_request}
        #: Engine.IO sid → its WebSocket's wire and the Engine.IO socket.
        self.wires: dict[str, tuple[Wire, Any]] = {}
        #: Bytes that may wait unsent for one client before it is cut off (set by the owner).
        self.max_backlog = 4 * 1024 * 1024

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's packet queue: a ``LeanQueue`` (an idle ``asyncio.Queue`` is about
        2.8 KB per connection). Anything else asking for options gets ``asyncio.Queue``."""
        if args or kwargs:
            return super().create_queue(*args, **kwargs)
        return LeanQueue()

    def direct_wire(self, sid: str) -> Wire | None:
        """The socket's wire, when writing to it now keeps the socket's packet order: the
        socket is on WebSocket for good, and nothing waits in (or was just taken from)
        Engine.IO's queue: ``unfinished_tasks`` drops only once the writer task holds the
        packets it took, and it then writes them all before it next waits."""
        entry = self.wires.get(sid)
        if entry is None:
            return None
        wire, socket = entry
        if (socket.upgrading or not socket.upgraded or socket.closing
                or socket.queue.unfinished_tasks):
            return None
        return wire

    async def send_packet(self, sid: str, pkt: eio_packet.Packet) -> None:
        """Every packet python-socketio sends to one socket (acks, CONNECT answers, events to
        one socket) takes the direct path too when it keeps the socket's order."""
        wire = self.direct_wire(sid)
        if wire is None:
            await super().send_packet(sid, pkt)
            return
        encoded = pkt.encode()
        if isinstance(encoded, bytes):
            wire.write_bytes(encoded)
        else:
            wire.write_text(encoded)

    def queue_message(self, sid: str, text: str) -> None:
        """Engine.IO's ``send`` without awaiting: the socket's queue is unbounded, so putting
        never waits (the service task still times out sockets that stop answering pings)."""
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and not socket.closing:
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=text))
