"""Engine.IO v4, the node's own: WebSocket and HTTP long-polling, the upgrade between them,
heartbeats, and the events python-socketio registers.

Written from the protocol (https://socket.io/docs/v4/engine-io-protocol/), not from
python-engineio, which stays installed only because python-socketio imports it.

The seam. python-socketio's ``AsyncServer`` builds its engine with ``_engineio_server_class()``
(``backend/realtime/server.py`` returns ``EngineServer``), passing it the keyword options it
does not use itself, and then uses exactly this of it (``ENGINE_SURFACE``, checked against
python-socketio's source at start-up by backend/compat/socketio.py):

- ``on(event, handler)`` for ``connect`` (``sid, environ``; ``False`` refuses), ``message``
  (``sid, data``: a str or bytes) and ``disconnect`` (``sid, reason``);
- ``send(sid, data)``, ``send_packet(sid, packet)`` (a ``MESSAGE`` packet of its manager),
  ``disconnect(sid)``, ``transport(sid)``, ``generate_id()``;
- ``handle_request(scope, receive, send)`` (ASGI), ``shutdown()``;
- ``start_background_task``, ``sleep``, ``create_event``, ``get_session``/``save_session``/
  ``session``, ``attach`` (other frameworks' integration: refused, this engine is ASGI only);
- the attributes ``async_mode``, ``reason`` (python-engineio's disconnect reasons, the same
  strings), ``sockets`` and ``logger``.

The node's own uses go further (``backend/realtime/members.py``): ``direct_wire`` hands the
fan-out the ``Wire`` (backend/realtime/wire.py) of a socket on WebSocket, to which it writes
one pre-encoded frame per recipient, and ``send`` is called without awaiting (it never
waits).

A socket (``EngineSocket``) has one ``State`` (illegal moves raise) and one ``Transport``:

- on WebSocket, everything sent is written at once to the connection's lane (a ``Wire``, or
  under a server where there is none an ``AsgiLane``: ordered, with a bounded backlog and a
  cut-off, backend/realtime/wire.py); inbound packets are handled one at a time in the
  connection's read loop (python-socketio turns asynchronous handlers off: a socket's events
  run in order);
- on long-polling, packets wait in the socket's ``outbox`` until a GET takes them all; a POST
  carries the client's packets;
- an upgrade (``2probe``/``3probe``, then ``5``) moves a polling socket onto a WebSocket: what
  waited in its outbox leaves first, on the WebSocket, then everything after.

Heartbeats: one deadline per socket, the next ping or the deadline of the last one, kept in
the engine's one ``TimerWheel`` (backend/realtime/timer_wheel.py: one loop timer for every
socket, buckets a tenth of the shorter of ``ping_interval`` and ``ping_timeout`` wide, at most
a second), not a loop timer per socket. A client that leaves a ping unanswered for
``ping_timeout`` is closed, but not while one of its own handlers runs (``busy``): its pong
may be waiting unread behind it, on a node that has fallen behind.

On WebSocket, the server's own WebSocket keepalive (uvicorn's pings, backend/realtime/
protocol.py) is stopped for the connection: the engine's heartbeat already pings the client
and closes it when it stops answering, and one ping per interval is half the idle work.

A socket opened on WebSocket (socket.io-client with ``transports: ["websocket"]``, the mobile
SDKs) is served by ``serve_websocket`` in one coroutine frame under the connection, and its
environ keeps only what the namespaces' connect reads (``keep_needed``). ``EngineEntry`` sends
every request at the Engine.IO path straight to ``handle_request``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import inspect
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Generator, Iterator
from types import CoroutineType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.realtime.queries import Query, parsed_query
from backend.realtime.queues import LeanEvent
from backend.realtime.timer_wheel import TimerWheel, resolution_for
from backend.realtime.wire import Lane, Wire, frame, lane_for

#: How long a closing WebSocket waits for the frames before its CLOSE to leave.
CLOSE_FLUSH_SECONDS = 2.0
#: The cancel messages of a WebSocket read loop: its client left a ping unanswered; its socket
#: was closed by the server while the loop waited for the client.
PING_TIMEOUT = "ping timeout"
ENDED = "socket closed"
#: What a WebSocket socket's environ keeps once it is served: what the namespaces' connect
#: reads (``namespaces/base.py``).
ENVIRON_KEPT = frozenset({"QUERY_STRING", "HTTP_AUTHORIZATION", "REMOTE_ADDR", "PATH_INFO",
                          "REQUEST_METHOD", "asgi.scope"})
#: Engine.IO v4 packet types (the first character of a text packet).
OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
#: Separator of the packets of a long-polling payload.
SEPARATOR = "\x1e"
#: The PING packet as a WebSocket frame, written as it is to every socket on a ``Wire``.
PING_FRAME = frame(PING.encode())

#: The engine's options python-socketio may pass on (the rest of its ``**kwargs``).
OPTIONS = frozenset({"async_mode", "ping_interval", "ping_timeout", "max_http_buffer_size",
                     "allow_upgrades", "cors_allowed_origins", "cors_credentials", "logger",
                     "json", "async_handlers", "transports", "monitor_clients"})

log = logging.getLogger("confab.engine")

Handler = Callable[..., Any]
Outbound = str | bytes  # an encoded text packet, or a binary message


class Reason:
    """Why a socket closed, as python-engineio names them (python-socketio passes them on to
    the namespaces' disconnect handlers)."""

    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


class State(enum.Enum):
    """A socket's lifecycle."""

    OPENING = "opening"  #: made, its connect handler not yet through
    OPEN = "open"
    UPGRADING = "upgrading"  #: a polling socket probed on a WebSocket, not yet moved
    CLOSING = "closing"  #: its disconnect handled; its transport finishing
    CLOSED = "closed"


_MOVES: dict[State, frozenset[State]] = {
    State.OPENING: frozenset({State.OPEN, State.CLOSING}),
    State.OPEN: frozenset({State.UPGRADING, State.CLOSING}),
    State.UPGRADING: frozenset({State.OPEN, State.CLOSING}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


# The fan-out's path reads these once per delivery: a module global is cheaper than an
# enum's attribute.
_OPEN, _UPGRADING, _CLOSING = State.OPEN, State.UPGRADING, State.CLOSING


class IllegalTransition(RuntimeError):
    """A socket was asked to move to a state it cannot reach from its own."""


class Transport(enum.Enum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class _Sent:
    """What ``EngineServer.send`` returns: awaiting it finds the message already sent."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator that ends at once


_SENT = _Sent()


class EngineSocket:
    """One Engine.IO session (see the module doc)."""

    __slots__ = ("asgi_send", "busy", "direct", "due", "engine", "lane", "outbox", "ping_sent",
                 "poll", "posting", "session", "sid", "state", "task", "transport")

    def __init__(self, sid: str, transport: Transport, engine: EngineServer) -> None:
        self.sid = sid
        #: The engine that serves it: its heartbeats, for a pong taken as it arrives
        #: (``take_text``), which the connection's protocol calls on the socket itself.
        self.engine = engine
        self.state = State.OPENING
        self.transport = transport
        #: On WebSocket: the lane everything is written to, the ASGI ``send`` that closes the
        #: connection, the task of its read loop.
        self.lane: Lane | None = None
        #: The lane when it is a ``Wire`` and the socket is open on it (``direct_wire``).
        self.direct: Wire | None = None
        self.asgi_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.task: asyncio.Task[Any] | None = None
        #: On long-polling: the packets waiting for a GET, and the pending GET's wake-up
        #: (its result: whether to answer with a NOOP only); whether a POST is being handled.
        self.outbox: list[Outbound] | None = [] if transport is Transport.POLLING else None
        self.poll: asyncio.Future[bool] | None = None
        self.posting = False
        #: Its deadline's bucket in the engine's wheel (0: none): the next ping, the last
        #: ping's deadline, or (closing on long-polling) the wait for a last GET; when that
        #: ping was sent (loop time, 0.0 once answered); whether its handlers are running.
        self.due = 0
        self.ping_sent = 0.0
        self.busy = False
        self.session: dict[str, Any] | None = None

    def is_in(self, state: State) -> bool:
        """Whether the socket is in ``state`` now (a method, so that a check made before an
        ``await`` is not taken to still hold after it)."""
        return self.state is state

    def move(self, state: State) -> None:
        """Move to ``state``; ``IllegalTransition`` if it cannot be reached from here."""
        if state not in _MOVES[self.state]:
            raise IllegalTransition(f"Engine.IO socket {self.sid}: {self.state.name} -> "
                                    f"{state.name}")
        self.state = state
        self._redirect()

    def serve_on(self, lane: Lane, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """The socket's WebSocket: its lane, the ASGI ``send`` that closes it, and the task
        that reads it (this one)."""
        self.lane = lane
        self.asgi_send = send
        self.task = asyncio.current_task()
        self._redirect()

    def _redirect(self) -> None:
        lane = self.lane
        self.direct = lane if self.state is _OPEN and type(lane) is Wire else None

    @property
    def live(self) -> bool:
        """Open (or upgrading): packets sent now reach the client."""
        return self.state is _OPEN or self.state is _UPGRADING

    def put(self, packet: Outbound) -> None:
        """Send one encoded packet on the socket's transport, in order."""
        lane = self.lane
        if self.state is _OPEN and lane is not None:
            if isinstance(packet, str):
                lane.write_text(packet)
            else:
                lane.write_bytes(packet)
            return
        outbox = self.outbox
        if outbox is None:
            return  # a WebSocket not yet accepted, or gone
        outbox.append(packet)
        if self.state is _OPEN or self.state is _CLOSING:
            self.wake(False)

    def wake(self, noop: bool) -> None:
        """Answer the pending GET (with what waits, or with a NOOP only)."""
        poll = self.poll
        if poll is not None and not poll.done():
            poll.set_result(noop)

    def take_text(self, payload: bytes) -> bool:
        """A WebSocket text frame read alone while nothing waited before it (``Wire.
        take_texts``): a pong is handled here, without waking the socket's read loop (on an
        idle node that wake-up was most of a heartbeat's CPU); anything else is left to it.
        The protocol holds the socket itself (one reference), not a callable made for it."""
        if payload != b"3" or self.state is not _OPEN:
            return False
        if self.ping_sent:  # an answer (an unasked pong is ignored)
            self.ping_sent = 0.0
            engine = self.engine
            engine.heartbeats.schedule(self, engine.ping_due)
        return True


#: The headers and subprotocols of every served WebSocket's scope (``keep_needed``).
_NOTHING: tuple[()] = ()


def keep_needed(environ: dict[str, Any]) -> None:
    """Drop what nothing reads again from a served WebSocket's environ, in place (python-
    socketio keeps it for the connection's life): its other headers, and the scope's lists of
    them and of the subprotocols asked for (the scope stays, held by the server too; its
    headers were copied into the environ, and about 1 KB of them per connection was never
    read again; Engine.IO asks for no subprotocol). A dict does not shrink when keys are
    deleted: it is rebuilt."""
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)
    scope = kept.get("asgi.scope")
    if scope is not None:
        # One empty tuple for every connection, not an empty list each.
        scope["headers"] = scope["subprotocols"] = _NOTHING


def environ_key(raw_name: bytes) -> str:
    """The environ's key of a header's name (``HTTP_X_NAME``; the two WSGI keeps bare)."""
    name = raw_name.decode("latin-1").upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


#: Header names seen and their environ keys: clients send the same few names at every
#: connect. At most ``ENVIRON_KEYS_KEPT`` (names made up by clients are not kept past it).
_ENVIRON_KEYS: dict[bytes, str] = {}
ENVIRON_KEYS_KEPT = 256


def make_environ(scope: Scope) -> dict[str, Any]:
    """The WSGI-style environ python-socketio hands the connect handlers: the request's
    headers as ``HTTP_*`` (repeated ones joined with commas), its query, path and client."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": scope.get("path", ""),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "asgi.scope": scope,
    }
    for raw_name, raw_value in scope.get("headers", ()):
        key = _ENVIRON_KEYS.get(raw_name)
        if key is None:
            key = environ_key(raw_name)
            if len(_ENVIRON_KEYS) < ENVIRON_KEYS_KEPT:
                _ENVIRON_KEYS[raw_name] = key
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class _Refused(Exception):
    """An HTTP request answered with an error status (and its session closed if ``close``)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# Engine.IO's error codes (the reference server's): the body of a refused HTTP request.
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, FORBIDDEN, \
    UNSUPPORTED_PROTOCOL_VERSION = range(6)


class EngineServer:
    """The Engine.IO server python-socketio runs on (see the module doc for the seam)."""

    reason = Reason
    async_mode = "asgi"

    def __init__(self, *, async_mode: str | None = None, ping_interval: float = 25,
                 ping_timeout: float = 20, max_http_buffer_size: int = 1_000_000,
                 allow_upgrades: bool = True, cors_allowed_origins: Any = None,
                 cors_credentials: bool = True, logger: Any = False, json: Any = None,
                 async_handlers: bool = False, transports: Any = None,
                 monitor_clients: bool = True) -> None:
        if async_mode not in (None, "asgi"):
            raise ValueError(f"this Engine.IO server is ASGI only, not {async_mode!r}")
        if async_handlers:
            raise ValueError("this Engine.IO server handles a socket's messages in order")
        interval, grace = (ping_interval if isinstance(ping_interval, tuple)
                           else (ping_interval, 0))
        self.ping_interval = float(interval)
        #: Advertised: the interval plus its grace, in whole milliseconds.
        self.ping_interval_ms = round((interval + grace) * 1000)
        self.ping_timeout = float(ping_timeout)
        self.max_http_buffer_size = max_http_buffer_size
        self.allow_upgrades = allow_upgrades
        #: The OPEN packet's JSON after its sid, by the settings it shows (``_open_packet``).
        self._open_tails: dict[tuple[bool, int, float, int], str] = {}
        self.transports = set(transports or ("polling", "websocket"))
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self.logger = logger if isinstance(logger, logging.Logger) else log
        #: Set by the Socket.IO server: a WebSocket whose backlog passes it is cut off.
        self.max_backlog = 4 * 1024 * 1024
        self.handlers: dict[str, Handler] = {}
        self.sockets: dict[str, EngineSocket] = {}
        #: Every socket's heartbeat deadline (``_due``).
        self.heartbeats: TimerWheel[EngineSocket] = TimerWheel(
            self._due, resolution_for(self.ping_interval, self.ping_timeout))
        #: When the next ping is asked for: a bucket early, so that it leaves by
        #: ``ping_interval`` at the latest (the wheel hands a deadline over up to a bucket
        #: late), as a client that counts its own deadline from the interval expects.
        self.ping_due = max(0.0, self.ping_interval - self.heartbeats.resolution)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: The WebSockets of closed sockets still sending their last frames and close.
        self._endings: set[asyncio.Task[None]] = set()
        #: False once the node stops (``stop_opening``): no new session opens.
        self.opening = True

    # -- python-socketio's surface ----------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None) -> Any:
        """Register ``handler`` for ``connect``, ``message`` or ``disconnect`` (or return a
        decorator that does)."""
        if event not in ("connect", "message", "disconnect"):
            raise ValueError(f"no Engine.IO event {event!r}")

        def register(function: Handler) -> Handler:
            self.handlers[event] = function
            return function

        return register if handler is None else register(handler)

    def send(self, sid: str, data: str | bytes) -> Awaitable[None]:
        """Send a message (text, or bytes as a binary message) to one socket, now: it never
        waits, so the node's own callers need not await what it returns (python-socketio
        does, and finds it done)."""
        socket = self.sockets.get(sid)
        if socket is not None and socket.live:
            socket.put(MESSAGE + data if isinstance(data, str) else bytes(data))
        return _SENT

    async def send_packet(self, sid: str, pkt: Any) -> None:
        """Send a packet python-socketio built (its ``packet_type`` and ``data``)."""
        data = pkt.data
        if isinstance(data, bytes | bytearray):
            self.send(sid, bytes(data))
            return
        socket = self.sockets.get(sid)
        if socket is None or not socket.live:
            return
        if isinstance(data, dict | list):
            data = json.dumps(data, separators=(",", ":"))
        socket.put(f"{pkt.packet_type}{'' if data is None else data}")

    def direct_wire(self, sid: str) -> Wire | None:
        """The socket's ``Wire``, when it is open on WebSocket: frames written to it keep their
        order with everything else sent to the socket."""
        socket = self.sockets.get(sid)
        return None if socket is None else socket.direct

    async def disconnect(self, sid: str | None = None, *, tell: bool = True) -> None:
        """Close one socket (or every one): a long-polling client is sent CLOSE (``tell``;
        without it, its pending GET a NOOP and its next GET finds the session gone, which
        clients take for a transport error and reconnect after), a WebSocket gets its close
        frame alone (``_close``). Returns once the disconnect is handled; a WebSocket's last
        frames and close follow in the background (``until_closed``)."""
        sockets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
        for socket in sockets:
            if socket is not None:
                await self._close(socket, Reason.SERVER_DISCONNECT, tell=tell)

    def transport(self, sid: str) -> str:
        """``polling`` or ``websocket``: the socket's transport now."""
        socket = self.sockets.get(sid)
        if socket is None:
            raise KeyError(f"no Engine.IO session {sid}")
        return socket.transport.value

    def generate_id(self) -> str:
        """A new session (or Socket.IO) id: 20 URL-safe characters."""
        return secrets.token_urlsafe(15)

    async def get_session(self, sid: str) -> dict[str, Any]:
        """The user session of a socket (a dict kept with it)."""
        socket = self.sockets.get(sid)
        if socket is None:
            raise KeyError(f"no Engine.IO session {sid}")
        if socket.session is None:
            socket.session = {}
        return socket.session

    async def save_session(self, sid: str, session: dict[str, Any]) -> None:
        socket = self.sockets.get(sid)
        if socket is None:
            raise KeyError(f"no Engine.IO session {sid}")
        socket.session = session

    @contextlib.asynccontextmanager
    async def session(self, sid: str) -> Any:
        """The user session, saved back when the block ends."""
        session = await self.get_session(sid)
        yield session
        await self.save_session(sid, session)

    def start_background_task(self, target: Handler, *args: Any, **kwargs: Any) -> Any:
        """Run ``target(*args, **kwargs)`` as a task (kept referenced until it ends)."""
        task = asyncio.ensure_future(target(*args, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    def create_event(self) -> LeanEvent:
        return LeanEvent()

    def attach(self, app: Any, engineio_path: str = "engine.io") -> None:
        raise NotImplementedError("this Engine.IO server is ASGI only: mount EngineEntry")

    def stop_opening(self) -> None:
        """Refuse every new session from now on (the node is stopping): its handshake gets
        HTTP 503 on long-polling, and its WebSocket is refused before the upgrade. A client
        library takes either for a failed attempt and tries again with its backoff, where a
        refusal of its namespace's CONNECT (``connect_error`` with a code) would end
        socket.io-client's reconnecting for good."""
        self.opening = False

    async def shutdown(self) -> None:
        """Stop the heartbeats (the sockets themselves end with their connections)."""
        self.heartbeats.close()

    # -- requests -----------------------------------------------------------------------------

    def handle_request(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The ASGI request at the Engine.IO path: the coroutine that serves it (a plain
        function, so that no frame of its own stays under a WebSocket connection)."""
        query = parsed_query(scope.get("query_string", b"").decode("latin-1"))
        if scope["type"] == "websocket":
            if "sid" in query:
                return self._serve_upgrade(scope, receive, send, query)
            return self.serve_websocket(scope, receive, send)
        return self._serve_http(scope, receive, send, query)

    @staticmethod
    def _one(query: Query, name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    def _check_query(self, query: Query, transport: str) -> None:
        if self._one(query, "EIO") != "4":
            raise _Refused(400, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
        if self._one(query, "transport") != transport or transport not in self.transports:
            raise _Refused(400, UNKNOWN_TRANSPORT, "Transport unknown")

    def _refuse_origin(self, environ: dict[str, Any]) -> None:
        """Refuse a request from an origin not allowed (``cors_allowed_origins``: ``"*"``,
        an origin or a list of them, ``origin, environ -> bool``, or None for the
        request's own host; ``[]`` turns the check off)."""
        origin = environ.get("HTTP_ORIGIN")
        if origin and not self._origin_allowed(origin, environ):
            self.logger.info("%s is not an accepted origin", origin)
            raise _Refused(400, BAD_REQUEST, f"{origin} is not an accepted origin.")

    def _refuse_when_stopping(self) -> None:
        if not self.opening:
            raise _Refused(503, BAD_REQUEST, "Server shutting down")

    def _origin_allowed(self, origin: str, environ: dict[str, Any]) -> bool:
        allowed = self.cors_allowed_origins
        if allowed == [] or allowed == "*":
            return True
        if callable(allowed):
            return bool(allowed(origin, environ))
        if allowed is None:
            host = environ.get("HTTP_HOST")
            return host is not None and origin == f"{environ['wsgi.url_scheme']}://{host}"
        return origin in ([allowed] if isinstance(allowed, str) else allowed)

    async def _connect(self, socket: EngineSocket, environ: dict[str, Any]) -> bool:
        """Register the socket and run the connect handler: whether it accepted."""
        self.sockets[socket.sid] = socket
        try:
            accepted = await self._trigger("connect", socket.sid, environ)
        except Exception:
            self.logger.exception("Engine.IO connect handler failed")
            accepted = False
        if accepted is None or accepted is True:
            socket.move(State.OPEN)
            return True
        self.sockets.pop(socket.sid, None)
        socket.move(State.CLOSING)
        socket.move(State.CLOSED)
        return False

    def _open_packet(self, socket: EngineSocket) -> str:
        upgrades = (["websocket"] if socket.transport is Transport.POLLING and self.allow_upgrades
                    and "websocket" in self.transports else [])
        # All but the sid is the server's settings: written once while they stay as they
        # are (a sid is URL-safe base64, nothing in it for JSON to escape).
        settings = (bool(upgrades), self.ping_interval_ms, self.ping_timeout,
                    self.max_http_buffer_size)
        tail = self._open_tails.get(settings)
        if tail is None:
            tail = self._open_tails[settings] = json.dumps({
                "upgrades": upgrades, "pingInterval": self.ping_interval_ms,
                "pingTimeout": round(self.ping_timeout * 1000),
                "maxPayload": self.max_http_buffer_size}, separators=(",", ":"))[1:]
        return f'{OPEN}{{"sid":"{socket.sid}",{tail}'

    async def _trigger(self, event: str, *args: Any) -> Any:
        handler = self.handlers.get(event)
        if handler is None:
            return None
        result = handler(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _deliver(self, socket: EngineSocket, data: str | bytes) -> None:
        """One message of the client to the message handler (its errors logged): called
        here, not through ``_trigger``'s frame (every packet of every client passes)."""
        handler = self.handlers.get("message")
        if handler is None:
            return
        try:
            result = handler(socket.sid, data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.logger.exception("Engine.IO message handler failed")

    # -- WebSocket ------------------------------------------------------------------------------

    def serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """A session that opens on WebSocket, served until it closes: ``_serve``'s coroutine,
        one frame under the connection for its life (its opening steps, ``_open_websocket``,
        end before its read loop starts)."""
        return self._serve(None, receive, scope, send)

    async def _open_websocket(self, scope: Scope, receive: Receive, send: Send,
                              ) -> EngineSocket | None:
        """A session opening on WebSocket: checked, connected, accepted, sent its OPEN packet
        and its first ping's deadline; None when refused or gone."""
        environ = make_environ(scope)
        try:
            self._check_query(parsed_query(environ["QUERY_STRING"]), "websocket")
            self._refuse_origin(environ)
            self._refuse_when_stopping()
        except _Refused as refused:
            self.logger.info("WebSocket refused: %s", refused.message)
            await send({"type": "websocket.close"})
            return None
        if (await receive())["type"] != "websocket.connect":
            return None
        socket = EngineSocket(self.generate_id(), Transport.WEBSOCKET, self)
        if not await self._connect(socket, environ):
            self.logger.warning("Application rejected connection")
            await send({"type": "websocket.close"})
            return None
        keep_needed(environ)
        try:
            await send({"type": "websocket.accept"})
        except Exception:  # the client left before its upgrade was answered
            await self._close(socket, Reason.TRANSPORT_CLOSE)
            return None
        lane = lane_for(scope, send, self.max_backlog)
        if type(lane) is Wire:
            lane.without_keepalive()  # the socket's heartbeat is this engine's
            lane.take_texts(socket)
        socket.serve_on(lane, send)
        socket.put(self._open_packet(socket))
        self.heartbeats.schedule(socket, self.ping_due)
        return socket

    async def _serve(self, socket: EngineSocket | None, receive: Any, scope: Scope | None = None,
                     send: Send | None = None) -> None:
        """The read loop of a socket on WebSocket (with None, of the socket that
        ``_open_websocket`` opens on ``scope`` and ``send`` first): each packet handled before
        the next is read; ends when the client leaves or sends CLOSE, a frame exceeds the
        payload cap, the socket is closed, or a ping goes unanswered (``_pong_overdue``
        cancels it)."""
        if socket is None:
            assert scope is not None and send is not None
            socket = await self._open_websocket(scope, receive, send)
            if socket is None:
                return
            scope = send = None  # not held while the socket is served
        reason = Reason.TRANSPORT_CLOSE
        cap = self.max_http_buffer_size
        try:
            while socket.state is State.OPEN:
                socket.busy = False
                message = await receive()
                socket.busy = True
                if socket.state is not State.OPEN or message["type"] != "websocket.receive":
                    break
                text = message.get("text")
                if text is None:
                    data = message.get("bytes") or b""
                    if len(data) > cap:
                        reason = Reason.TRANSPORT_ERROR
                        break
                    await self._deliver(socket, data)
                elif not text:
                    continue
                elif len(text) > cap or (len(text) * 4 > cap and len(text.encode()) > cap):
                    reason = Reason.TRANSPORT_ERROR
                    break
                elif text[0] == MESSAGE:
                    # ``_deliver``, inline: a frame more would be resumed at each of the
                    # handler's waits, for nearly every packet of every client.
                    handler = self.handlers.get("message")
                    if handler is not None:
                        try:
                            result = handler(socket.sid, text[1:])
                            if type(result) is CoroutineType or inspect.isawaitable(result):
                                await result
                        except Exception:
                            self.logger.exception("Engine.IO message handler failed")
                        result = None
                elif text[0] == PONG:
                    self._pong(socket)
                elif text[0] == CLOSE:  # the client leaves: its transport ends at once
                    reason = Reason.CLIENT_DISCONNECT
                    break
                message = text = data = None  # not held while waiting for the next
        except asyncio.CancelledError as exc:
            if exc.args not in ((PING_TIMEOUT,), (ENDED,)):  # the server is stopping
                socket.busy = False
                await self._close(socket, Reason.TRANSPORT_CLOSE)
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # our own cancel
            reason = (Reason.PING_TIMEOUT if exc.args == (PING_TIMEOUT,)
                      else Reason.SERVER_DISCONNECT)
        except Exception:  # the connection failed under the read
            reason = Reason.TRANSPORT_ERROR
        socket.busy = False
        await self._close(socket, reason)

    async def _serve_upgrade(self, scope: Scope, receive: Receive, send: Send,
                             query: Query) -> None:
        """A WebSocket for a polling session: the probe, then the move (protocol section
        "Upgrade"). A session already on WebSocket, or upgrading, gets its WebSocket accepted
        and closed; one that does not exist, refused."""
        socket = self.sockets.get(self._one(query, "sid") or "")
        environ = make_environ(scope)
        try:
            self._check_query(query, "websocket")
            self._refuse_origin(environ)
            if socket is None or not self.allow_upgrades:
                raise _Refused(400, UNKNOWN_SID, "Session ID unknown")
        except _Refused as refused:
            self.logger.info("WebSocket refused: %s", refused.message)
            await send({"type": "websocket.close"})
            return
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if socket.transport is not Transport.POLLING or socket.state is not State.OPEN:
            await send({"type": "websocket.close", "code": 1008})
            return
        lane = lane_for(scope, send, self.max_backlog)
        moved = False
        try:
            moved = await self._probe(socket, lane, receive)
        finally:
            if not moved:
                lane.stop()
        if not moved:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close"})
            return
        # Moved: what waited for a GET leaves first, on the WebSocket.
        if type(lane) is Wire:
            lane.without_keepalive()  # the socket's heartbeat is this engine's
            lane.take_texts(socket)
        socket.transport = Transport.WEBSOCKET
        socket.serve_on(lane, send)
        waiting, socket.outbox = socket.outbox or [], None
        socket.move(State.OPEN)
        for packet in waiting:
            socket.put(packet)
        socket.wake(False)  # a GET still pending is refused (see _poll)
        await self._serve(socket, receive)

    async def _probe(self, socket: EngineSocket, lane: Lane, receive: Any) -> bool:
        """``2probe`` answered with ``3probe`` (and the pending GET with a NOOP, so that the
        client can pause polling), then ``5``: whether the socket moved. Pongs may come on
        either transport meanwhile.

        One WebSocket at a time probes a session: a ``2probe`` while another WebSocket's probe
        is under way (the session UPGRADING) ends this one, which leaves the session as it
        found it; only the probe that moved the session to UPGRADING moves it back (to
        long-polling) when it fails."""
        probed = moved = False
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive" or not socket.live:
                    return False
                text = message.get("text")
                if text == PONG:
                    self._pong(socket)
                elif text == PING + "probe" and not probed and socket.is_in(State.OPEN):
                    probed = True
                    socket.move(State.UPGRADING)
                    lane.write_text(PONG + "probe")
                    socket.wake(True)
                elif text == UPGRADE and probed:
                    moved = True
                    return True
                else:
                    return False
        finally:
            if probed and not moved and socket.is_in(State.UPGRADING):
                socket.move(State.OPEN)  # back on long-polling
                socket.wake(False)

    # -- long-polling -------------------------------------------------------------------------

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send,
                          query: Query) -> None:
        environ = make_environ(scope)
        method = environ["REQUEST_METHOD"]
        try:
            self._refuse_origin(environ)
            if method == "OPTIONS":
                await self._respond(send, environ, 200, b"", "text/plain")
                return
            self._check_query(query, "polling")
            sid = self._one(query, "sid")
            if sid is None:
                if method != "GET":
                    raise _Refused(400, BAD_HANDSHAKE_METHOD, "Bad handshake method")
                self._refuse_when_stopping()
                await self._handshake(environ, send)
                return
            socket = self.sockets.get(sid)
            if socket is None or socket.transport is not Transport.POLLING:
                raise _Refused(400, UNKNOWN_SID, "Session ID unknown")
            if method == "GET":
                body = await self._poll(socket)
                await self._respond(send, environ, 200, body, "text/plain; charset=UTF-8")
                if socket.state is State.CLOSING:
                    self._finish(socket)
            elif method == "POST":
                await self._post(socket, receive)
                await self._respond(send, environ, 200, b"ok", "text/html")
            else:
                raise _Refused(400, BAD_REQUEST, "Bad request")
        except _Refused as refused:
            body = json.dumps({"code": refused.code, "message": refused.message}).encode()
            await self._respond(send, environ, refused.status, body, "application/json")

    async def _handshake(self, environ: dict[str, Any], send: Any) -> None:
        socket = EngineSocket(self.generate_id(), Transport.POLLING, self)
        if not await self._connect(socket, environ):
            self.logger.warning("Application rejected connection")
            raise _Refused(403, FORBIDDEN, "Forbidden")
        self.heartbeats.schedule(socket, self.ping_due)
        await self._respond(send, environ, 200, self._open_packet(socket).encode(),
                            "text/plain; charset=UTF-8")

    async def _poll(self, socket: EngineSocket) -> bytes:
        """A GET: what waits for the client, once something does, or a NOOP (the session
        upgrading or closing). A second GET while one is pending is an error, and closes the
        session; a GET after the last ping's deadline finds the session closed."""
        if socket.poll is not None:
            await self._close(socket, Reason.TRANSPORT_ERROR)
            raise _Refused(400, BAD_REQUEST, "Overlapping GET requests")
        if self._overdue(socket):
            await self._close(socket, Reason.PING_TIMEOUT)
            raise _Refused(400, UNKNOWN_SID, "Session ID unknown")
        if socket.state is State.UPGRADING:
            # The client may have had this GET under way when it got ``3probe``: it sends
            # ``5`` once the GET is answered.
            return NOOP.encode()
        noop = False
        while (not socket.outbox and socket.state is State.OPEN
               and socket.transport is Transport.POLLING):
            socket.poll = asyncio.get_running_loop().create_future()
            try:
                noop = await socket.poll
            finally:
                socket.poll = None
            if noop:
                break
        if socket.transport is not Transport.POLLING:
            raise _Refused(400, UNKNOWN_SID, "Session ID unknown")  # moved meanwhile
        if noop or not socket.outbox:
            return NOOP.encode()
        packets, socket.outbox = socket.outbox, []
        return SEPARATOR.join(packet if isinstance(packet, str)
                              else "b" + base64.b64encode(packet).decode()
                              for packet in packets).encode()

    async def _post(self, socket: EngineSocket, receive: Any) -> None:
        """A POST: the client's packets, handled in order (a malformed one closes the
        session; so does a second POST while one is handled)."""
        if socket.posting:
            await self._close(socket, Reason.TRANSPORT_ERROR)
            raise _Refused(400, BAD_REQUEST, "Overlapping POST requests")
        cap = self.max_http_buffer_size
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await self._close(socket, Reason.TRANSPORT_ERROR)
                raise _Refused(413, BAD_REQUEST, "Payload too large")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            packets = [self._decode(part) for part in b"".join(chunks).decode().split(SEPARATOR)]
        except ValueError:
            await self._close(socket, Reason.TRANSPORT_ERROR)
            raise _Refused(400, BAD_REQUEST, "Bad request") from None
        socket.posting = socket.busy = True
        try:
            for kind, data in packets:
                if socket.state is not State.OPEN and socket.state is not State.UPGRADING:
                    break
                if kind == MESSAGE:
                    await self._deliver(socket, data)
                elif kind == PONG:
                    self._pong(socket)
                elif kind == CLOSE:
                    await self._close(socket, Reason.CLIENT_DISCONNECT)
        finally:
            socket.posting = socket.busy = False

    @staticmethod
    def _decode(part: str) -> tuple[str, str | bytes]:
        """One packet of a polling payload: its type and data (``b`` + base64: a binary
        message). ``ValueError`` if it is none."""
        if not part:
            raise ValueError("empty packet")
        if part[0] == "b":
            return MESSAGE, base64.b64decode(part[1:], validate=True)
        if part[0] not in "0123456":
            raise ValueError("unknown packet type")
        return part[0], part[1:]

    async def _respond(self, send: Any, environ: dict[str, Any], status: int, body: bytes,
                       content_type: str) -> None:
        headers = [(b"content-type", content_type.encode()),
                   (b"content-length", str(len(body)).encode()),
                   *((name.encode(), value.encode()) for name, value in self._cors(environ))]
        with contextlib.suppress(Exception):  # the client left
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _cors(self, environ: dict[str, Any]) -> Iterator[tuple[str, str]]:
        if self.cors_allowed_origins == []:
            return
        origin = environ.get("HTTP_ORIGIN")
        if origin and self._origin_allowed(origin, environ):
            yield "Access-Control-Allow-Origin", origin
            if self.cors_credentials:
                yield "Access-Control-Allow-Credentials", "true"
        if environ["REQUEST_METHOD"] == "OPTIONS":
            yield "Access-Control-Allow-Methods", "OPTIONS, GET, POST"
            requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
            if requested:
                yield "Access-Control-Allow-Headers", requested

    # -- heartbeats ---------------------------------------------------------------------------

    def _due(self, socket: EngineSocket) -> float | None:
        """The socket's deadline came (the wheel's callback): what it was for follows from
        its state. Its ping is sent here, inline: every socket passes once per interval; the
        ping's deadline is returned, for the wheel to set."""
        state = socket.state
        if state is _CLOSING:
            self._finish(socket)  # a last GET that never came
        elif socket.ping_sent:
            self._pong_overdue(socket)
        elif state is _OPEN or state is _UPGRADING:
            socket.ping_sent = self.heartbeats.time()
            direct = socket.direct
            if direct is not None:
                direct.write(PING_FRAME)  # one frame, built once for every socket
            else:
                socket.put(PING)
            return self.ping_timeout
        return None

    def _pong(self, socket: EngineSocket) -> None:
        if socket.ping_sent:  # an answer (an unasked pong is ignored)
            socket.ping_sent = 0.0
            self.heartbeats.schedule(socket, self.ping_due)

    def _overdue(self, socket: EngineSocket) -> bool:
        """The last ping's deadline has passed, with no handler of the socket running."""
        return bool(socket.ping_sent) and not socket.busy and (
            self.heartbeats.time() - socket.ping_sent >= self.ping_timeout)

    def _pong_overdue(self, socket: EngineSocket) -> None:
        """No pong within ``ping_timeout``: the socket closes, unless one of its handlers is
        running, behind which the pong may wait unread: asked again a ``ping_timeout``
        later."""
        if not socket.live or not socket.ping_sent:
            return
        task = socket.task
        if socket.busy:
            self.heartbeats.schedule(socket, self.ping_timeout)
        elif socket.transport is Transport.WEBSOCKET and task is not None and not task.done():
            task.cancel(PING_TIMEOUT)  # ends its read loop, which closes it
        else:  # on long-polling, or a WebSocket whose read loop is gone without closing it
            self.start_background_task(self._close, socket, Reason.PING_TIMEOUT)

    # -- closing ------------------------------------------------------------------------------

    async def _close(self, socket: EngineSocket, reason: str, tell: bool = False) -> None:
        """Close the socket once: its disconnect handled, then its transport ended (a
        WebSocket after what was written before, in the background unless this is its own
        read loop; a pending GET answered, with CLOSE when ``tell``, else a NOOP)."""
        if not socket.live and socket.state is not State.OPENING:
            return
        if socket.state is State.OPENING:
            socket.move(State.CLOSING)
            self._finish(socket)
            return
        socket.move(State.CLOSING)
        self.heartbeats.cancel(socket)
        if type(socket.lane) is Wire:
            socket.lane.take_texts(None)  # the protocol no longer holds the socket
        if tell and socket.transport is Transport.POLLING:
            # On WebSocket the close frame alone ends the session, as Node's socket.io server
            # ends it: python-socketio's client takes a CLOSE packet for the end of the session
            # and stops reconnecting, which a node stopping behind a load balancer needs.
            socket.put(CLOSE)
        try:
            await self._trigger("disconnect", socket.sid, reason)
        except Exception:
            self.logger.exception("Engine.IO disconnect handler failed")
        if socket.transport is Transport.POLLING:
            if socket.poll is not None or not (tell or reason == Reason.CLIENT_DISCONNECT):
                socket.wake(not tell)
                self._finish(socket)
            else:
                # CLOSE waits for the client's next GET; after the client's own CLOSE, a GET
                # it had under way that arrives after it (its two requests on two connections)
                # is answered with a NOOP, as had it come first. One heartbeat at most.
                self.heartbeats.schedule(socket, self.ping_interval + self.ping_timeout)
            return
        self._finish(socket)
        if socket.task is asyncio.current_task():
            await self._end_websocket(socket)  # its own read loop: the connection ends after
            return
        # Closed from elsewhere (a logout, the shutdown): the caller does not wait for a
        # client that may not be reading.
        ending = asyncio.ensure_future(self._end_websocket(socket))
        self._endings.add(ending)
        ending.add_done_callback(self._endings.discard)

    async def _end_websocket(self, socket: EngineSocket) -> None:
        """A closed socket's WebSocket: what was written before it leaves, then the close
        (each given ``CLOSE_FLUSH_SECONDS`` at most); then its read loop, when it waits for
        the client, is ended."""
        lane, send = socket.lane, socket.asgi_send
        if lane is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                    await lane.flush()
            lane.stop()
        if send is not None:
            with contextlib.suppress(Exception):  # TimeoutError: a client not reading
                async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                    await send({"type": "websocket.close"})
        task = socket.task
        if task is not None and task is not asyncio.current_task() and not socket.busy:
            task.cancel(ENDED)  # its read loop, waiting for a client that may never answer

    async def until_closed(self) -> None:
        """Wait until the WebSockets of the sockets closed so far have ended (their frames
        out, their close sent)."""
        while self._endings:
            await asyncio.wait(set(self._endings))

    def _finish(self, socket: EngineSocket) -> None:
        """The socket is gone: forgotten, its deadline dropped."""
        if socket.state is State.CLOSED:
            return
        socket.move(State.CLOSED)
        self.heartbeats.cancel(socket)
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]
        socket.session = None


class EngineEntry:
    """ASGI app in front of the node's: a request at the Engine.IO path goes straight to the
    engine's ``handle_request``, the rest to ``app``. Not a coroutine: it returns the chosen
    app's, so no frame of its own stays under every connection."""

    __slots__ = ("app", "path", "sio")

    def __init__(self, app: ASGIApp, sio: Any, path: str) -> None:
        self.app = app
        #: The Socket.IO server, whose engine (``sio.eio``) exists once it is built.
        self.sio = sio
        self.path = f"/{path.strip('/')}/"

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] in ("http", "websocket") and (
                f"{scope['path'].rstrip('/')}/" == self.path):
            engine: EngineServer = self.sio.eio
            return engine.handle_request(scope, receive, send)
        return self.app(scope, receive, send)
