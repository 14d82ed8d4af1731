"""Engine.IO with a direct lane per WebSocket connection.

python-engineio sends every packet through the socket's ``asyncio.Queue`` and a writer task
per socket, and each send goes down the ASGI chain. Here an upgraded (or WebSocket-only)
socket gets a ``Wire`` (``backend/realtime/wire.py``): the writer task's sends go through it,
and the fan-out writes an event's pre-built Engine.IO frame straight to it whenever nothing of
that socket waits in Engine.IO's queue, so packets keep their order. Long-polling sockets, and
sockets in the middle of an upgrade, keep Engine.IO's own path; the protocol is untouched.
Packets sent to one socket (acks, CONNECT answers) take the same direct path.

A socket opened on WebSocket (socket.io-client with ``transports: ["websocket"]``, the mobile
SDKs) holds as little as its state needs, for as long as it is open:

- ``EngineEntry`` hands its upgrade to ``EngineServer.serve_websocket``: Engine.IO's request
  handling and connect, in one frame instead of six;
- its queue is a ``WireQueue``: what Engine.IO puts is written to the wire at once, no writer
  task waits;
- its next ping is a timer (``EngineServer.start_background_task``), not a sleeping task, and
  the same timer, re-armed after each ping, ends a client that leaves one unanswered (instead
  of a read timeout re-armed on every packet), but not while one of the socket's handlers
  runs, behind which its pong may wait unread (``ServedSocket``);
- its environ keeps what the namespaces' connect reads (``keep_needed``).

What this relies on of python-engineio's internals is reached through, and listed in,
backend/compat/engineio.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

import engineio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import asgi as eio_asgi
from engineio.async_socket import AsyncSocket

from backend.compat import engineio as eio_compat
from backend.realtime.queues import LeanQueue
from backend.realtime.wire import Wire

#: How long Engine.IO's close waits for the frames before it to leave.
CLOSE_FLUSH_SECONDS = 2.0
#: The cancel message of a WebSocket loop whose client left a ping unanswered.
PING_TIMEOUT = "ping timeout"
#: What a WebSocket socket's environ keeps once it is served: what the namespaces' connect
#: reads (``namespaces/base.py``), and what Engine.IO reads when the request ends.
ENVIRON_KEPT = frozenset({"QUERY_STRING", "HTTP_AUTHORIZATION", "REMOTE_ADDR", "PATH_INFO",
                          "REQUEST_METHOD", "asgi.scope", "asgi.send", "asgi.receive"})


def keep_needed(environ: dict[str, Any]) -> None:
    """Drop what nothing reads again from a served WebSocket's environ, in place (the request's
    frames and python-socketio's ``environ`` table share it): its headers as ``HTTP_*``
    strings, the WSGI keys. A dict does not shrink when keys are deleted: it is rebuilt."""
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)


class DirectWebSocket(eio_asgi.WebSocket):
    """Engine.IO's ASGI WebSocket, writing through the connection's ``Wire`` when it has one."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.server: EngineServer = server
        self.wire: Wire | None = None
        #: The task running ``_serve``; whether it is waiting for the client's next packet
        #: (not running a handler); whether a ping went unanswered (``ping_overdue``).
        #: (The socket's events are handled one at a time in this loop, so while one runs, the
        #: client's pong may wait unread behind it: see ``ServedSocket``.)
        self.task: asyncio.Task[Any] | None = None
        self.reading = False
        self.overdue = False
        #: The Engine.IO socket served (the one whose ``_websocket_handler`` this was given).
        self.socket: AsyncSocket = eio_compat.socket_of(handler)

    async def __call__(self, environ: dict[str, Any]) -> str:
        self.asgi_receive = environ["asgi.receive"]
        self.asgi_send = environ["asgi.send"]
        await self.asgi_send({"type": "websocket.accept"})
        self.wire = Wire.of(environ["asgi.scope"], self.server.max_backlog)
        socket = self.socket
        sid: str = socket.sid
        if self.wire is not None:
            self.server.wires[sid] = (self.wire, socket)
        try:
            if socket.connected:  # an upgrade from long-polling: Engine.IO's own handler
                await self.handler(self)
            else:
                keep_needed(environ)
                self.task = asyncio.current_task()
                self.server.serving[sid] = self
                await self._serve(socket)
        finally:
            self.server.serving.pop(sid, None)
            timer = getattr(socket, "ping_timer", None)
            if timer is not None:
                timer.cancel()
            if self.wire is not None:
                self.server.wires.pop(sid, None)
                self.wire.stop()
        return ""

    async def _serve(self, socket: Any) -> None:
        """Engine.IO's WebSocket loop (``AsyncSocket._websocket_handler``) for a socket that
        starts on WebSocket. The same steps, without a read timeout on each packet: Engine.IO
        makes a task and an ``asyncio.wait_for`` for every inbound packet, to end the loop of a
        client gone silent; here the ping's timer does it (``ping_overdue``)."""
        socket.connected = socket.upgraded = True
        server = socket.server
        writer = None
        if self.wire is None:  # not our WebSocket protocol: Engine.IO's writer task
            writer = asyncio.ensure_future(self._write_queued(socket))
        else:
            socket.queue = WireQueue(self.wire, socket.queue)
        try:
            while True:
                self.reading = True
                data = await self.wait()
                self.reading = False
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
        except (Exception, asyncio.CancelledError) as exc:
            # The client left or went silent, a frame was not Engine.IO, or the server is
            # stopping: Engine.IO ends the loop on any of them, and so does this one.
            if isinstance(exc, asyncio.CancelledError) and exc.args == (PING_TIMEOUT,):
                # Our own cancel (``ping_overdue``), not the server's: the task goes on.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
        if writer is not None:
            await socket.queue.put(None)  # unlock the writer so it can exit
            await writer
        else:
            await self.close()
        reason = server.reason.PING_TIMEOUT if self.overdue else server.reason.TRANSPORT_CLOSE
        await socket.close(wait=False, abort=True, reason=reason)

    def ping_overdue(self) -> None:
        """The client left a ping unanswered for ``ping_timeout`` while this loop waited for
        it: the loop ends, and the socket closes."""
        self.overdue = True
        if self.task is not None:
            self.task.cancel(PING_TIMEOUT)

    async def _write_queued(self, socket: Any) -> None:
        """Engine.IO's writer task: what waits in the socket's queue, in order, until the
        ``None`` that ``_serve`` puts when the connection ends.

        It waits on the queue itself, where Engine.IO's ``poll`` wraps each wait in an
        ``asyncio.wait_for`` (a task and a timer held by every idle socket, about 1.3 KB)
        whose timeout only ends the writer of a client gone silent. Such a client is ended
        by the ping's timer (``ping_overdue``) or Engine.IO's ping check, after which
        ``_serve`` puts the ``None``. Packets leave in order, each ``send`` a write to the wire that
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

    async def wait(self) -> str | bytes:
        """The client's next frame; an ``OSError`` instead once the Engine.IO socket is
        closed, which ends either read loop (``_serve``, Engine.IO's own after an upgrade)
        and with it the transport.

        A client ends its session with the CLOSE packet (``1``): Engine.IO's ``receive``
        closes the socket (its disconnect handled), but its loop reads on, until its read
        timeout (ping interval plus ping timeout), and ``_serve``, which has none, until the
        client goes, the connection holding a slot of its user's socket cap meanwhile. (A
        socket the server closes while the loop waits is not ended here: the CLOSE packet
        sent to the client ends it.)"""
        if self.socket.closed:
            raise OSError("the Engine.IO session is closed")
        data: str | bytes = await super().wait()
        return data

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


class ServedSocket(AsyncSocket):
    """Engine.IO's socket, for a connection served by ``DirectWebSocket._serve``.

    Its events are handled one at a time in the connection's read loop (python-socketio
    turns Engine.IO's ``async_handlers`` off), so while a handler runs, the client's pong may
    be waiting unread behind it, on a node that has fallen behind. Engine.IO would hold the
    ping deadline against the client (at its next send, or in its service task) and close
    it; here the deadline waits until the loop reads again (``EngineServer._pong_overdue``
    then decides)."""

    async def check_ping_timeout(self) -> bool:
        served = self.server.serving.get(self.sid)
        if served is not None and not served.reading and not self.closed:
            return True
        return await super().check_ping_timeout()  # type: ignore[no-any-return]


class WireQueue:
    """The packet queue of a socket served by ``DirectWebSocket._serve`` on a ``Wire``: a
    packet put is written to the wire at once, which keeps the order of everything sent on the
    connection. No writer task waits on it (about 1 KB per idle socket with its queue).

    It takes what Engine.IO put in the socket's queue before (the OPEN packet) first. Engine.IO
    puts and joins; the ``None`` that ends a writer, and the wait of ``join``, have nothing to
    do here: what was put is already on the wire."""

    __slots__ = ("wire",)

    #: Nothing is ever waiting (``EngineServer.direct_wire`` reads it).
    unfinished_tasks = 0

    def __init__(self, wire: Wire, queued: Any) -> None:
        self.wire = wire
        while not queued.empty():
            self.put_nowait(queued.get_nowait())
            queued.task_done()

    def put_nowait(self, pkt: eio_packet.Packet | None) -> None:
        if pkt is None:
            return
        encoded = pkt.encode()
        if isinstance(encoded, bytes):
            self.wire.write_bytes(encoded)
        else:
            self.wire.write_text(encoded)

    async def put(self, pkt: eio_packet.Packet | None) -> None:
        self.put_nowait(pkt)

    async def join(self) -> None:
        return None

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0


class EngineEntry:
    """ASGI app in front of Socket.IO's: a connection that ``opens_on_websocket`` at the
    Engine.IO path goes straight to ``EngineServer.serve_websocket``, the rest to ``app``
    (and so does everything until python-socketio's manager is initialized, which its
    ``handle_request`` would do). Not a coroutine: it returns the chosen app's, so no frame of
    its own stays under every connection."""

    __slots__ = ("app", "path", "sio")

    def __init__(self, app: Any, sio: Any, path: str) -> None:
        self.app = app
        self.sio = sio
        self.path = f"/{path.strip('/')}/"

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if (scope["type"] == "websocket" and f"{scope['path'].rstrip('/')}/" == self.path
                and self.sio.manager_initialized and EngineServer.opens_on_websocket(scope)):
            return self.sio.eio.serve_websocket(scope, receive, send)
        return self.app(scope, receive, send)


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
        eio_compat.replace_drivers(self, websocket=DirectWebSocket,
                                   translate_request=translate_request)
        #: Engine.IO sid → its WebSocket's wire and the Engine.IO socket.
        self.wires: dict[str, tuple[Wire, Any]] = {}
        #: Engine.IO sid → the WebSocket whose ``_serve`` runs for it.
        self.serving: dict[str, DirectWebSocket] = {}
        #: Bytes that may wait unsent for one client before it is cut off (set by the owner).
        self.max_backlog = 4 * 1024 * 1024

    @staticmethod
    def opens_on_websocket(scope: dict[str, Any]) -> bool:
        """A WebSocket that opens an Engine.IO 4 session (``transport=websocket``, no ``sid``,
        no JSONP index), as socket.io-client with ``transports: ["websocket"]`` and the
        mobile SDKs open theirs: what ``serve_websocket`` takes. Anything else (an upgrade
        from long-polling, a query Engine.IO refuses) goes through ``handle_request``."""
        if scope["type"] != "websocket":
            return False
        try:
            query = parse_qs(scope.get("query_string", b"").decode())
        except UnicodeDecodeError:
            return False
        return (query.get("EIO") == ["4"] and query.get("transport") == ["websocket"]
                and "sid" not in query and "j" not in query)

    async def serve_websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Engine.IO's ``handle_request`` and ``_handle_connect`` for a connection that
        ``opens_on_websocket``: the same checks, packets and events, in the same order, in
        one coroutine frame. Engine.IO's way keeps six frames of the upgrade request (and
        the parsed query) under the connection for its life, about 2 KB per idle socket."""
        environ = await translate_request(scope, receive, send)
        if not environ:  # the client left before its upgrade was read
            return
        refused = self._refused_origin(environ)
        if refused is not None:
            await eio_compat.make_response(self, refused, environ)
            return
        if self.start_service_task:  # as _handle_connect: the ping checks of every socket
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(eio_compat.service_task(self))
        sid = self.generate_id()
        socket = ServedSocket(self, sid)
        self.sockets[sid] = socket
        await socket.send(eio_packet.Packet(eio_packet.OPEN, {
            "sid": sid,
            "upgrades": eio_compat.upgrades(self, sid, "websocket"),
            "pingTimeout": int(self.ping_timeout * 1000),
            "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
            "maxPayload": self.max_http_buffer_size,
        }))
        accepted = await eio_compat.trigger_event(self, "connect", sid, environ, run_async=False)
        if accepted is not None and accepted is not True:
            del self.sockets[sid]
            self.logger.warning("Application rejected connection")
            await eio_compat.make_response(
                self, eio_compat.unauthorized(self, accepted or None), environ)
            return
        socket.schedule_ping()
        await DirectWebSocket(eio_compat.websocket_handler(socket), self)(environ)
        if socket.closed and sid in self.sockets:
            del self.sockets[sid]

    def _refused_origin(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        """``handle_request``'s origin check: the response refusing the request, or None."""
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins == [] or not origin:
            return None
        allowed = eio_compat.cors_allowed_origins(self, environ)
        if allowed is None or origin in allowed:
            return None
        eio_compat.log_error_once(self, origin + " is not an accepted origin.", "bad-origin")
        return eio_compat.bad_request(self, origin + " is not an accepted origin.")

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's packet queue: a ``LeanQueue`` (an idle ``asyncio.Queue`` is about
        2.8 KB per connection). Anything else asking for options gets ``asyncio.Queue``."""
        if args or kwargs:
            return super().create_queue(*args, **kwargs)
        return LeanQueue()

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        """Engine.IO's next ping is a timer, not a task sleeping (about 1.5 KB per idle
        socket): ``schedule_ping`` starts ``_send_ping`` here after each pong."""
        if eio_compat.is_send_ping(target) and not args:
            self._arm(eio_compat.socket_of(target), self.ping_interval, self._ping)
            return None
        return super().start_background_task(target, *args, **kwargs)

    @staticmethod
    def _arm(socket: Any, delay: float, callback: Any) -> None:
        """The socket's one ping timer: the next ping, or the deadline of the last one."""
        timer = getattr(socket, "ping_timer", None)
        if timer is not None:
            timer.cancel()
        socket.ping_timer = asyncio.get_running_loop().call_later(delay, callback, socket)

    def _ping(self, socket: Any) -> None:
        """``AsyncSocket._send_ping`` after its sleep: the ping goes to the socket's queue,
        and its answer is due within ``ping_timeout``."""
        socket.ping_timer = None
        if socket.closing or socket.closed:
            return
        socket.last_ping = time.time()
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.PING))
        self._arm(socket, self.ping_timeout, self._pong_overdue)

    def _pong_overdue(self, socket: Any) -> None:
        """No pong within ``ping_timeout``: a socket served by ``DirectWebSocket._serve`` has
        its loop ended, which closes it; unless the loop is running one of the socket's
        handlers, behind which the pong may be waiting unread: asked again a
        ``ping_timeout`` later. (Engine.IO's service task finds the others, long-polling
        ones, and its own WebSocket loop has a read timeout.)"""
        socket.ping_timer = None
        served = self.serving.get(socket.sid)
        if served is None or socket.last_ping is None:
            return
        if served.reading:
            served.ping_overdue()
        else:
            self._arm(socket, self.ping_timeout, self._pong_overdue)

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
