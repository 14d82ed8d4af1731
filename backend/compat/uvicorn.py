"""uvicorn 0.54.0 (pyproject.toml's pin): its sans-I/O WebSocket protocol, from inside.

The project relies on ``uvicorn.protocols.websockets.websockets_sansio_impl.
WebSocketsSansIOProtocol`` (``--ws websockets-sansio``) as follows:

- ``backend/realtime/protocol.py`` subclasses it, overriding ``handle_connect``,
  ``send_receive_event_to_app`` (its text path is copied here: ``deliver_text``) and ``send``,
  and the keepalive's timers: ``schedule_ping`` (its delay is copied here:
  ``next_ping_delay``), ``send_keepalive_ping`` (its ping is copied here: ``send_ping``),
  ``handle_pong`` (copied here without its timers: ``next_ping_after``),
  ``keepalive_timeout`` and ``stop_keepalive`` keep the connection's one deadline in a
  shared timer wheel instead of ``ping_timer`` and ``pong_timer``; uvicorn's
  ``start_keepalive``, ``connection_lost`` and ``shutdown`` reach them through these names;
  ``backend/realtime/wire.py`` calls ``stop_keepalive`` for a connection whose application
  has a heartbeat of its own (Engine.IO);
  it gives every attribute an instance of it is assigned a slot (``PROTOCOL_ATTRIBUTES``);
  it gives the instance a lean ``queue`` and ``writable`` (``lean_init``) and swaps the class of
  its websockets parser ``conn`` (``backend/compat/websockets.py``), lets ``request`` and
  ``response`` go, and without access log replaces its ``logger`` (where ``send`` writes its
  per-handshake ``[accepted]`` line) with a quieter one;
- ``backend/realtime/protocol.py`` takes a text frame alone in its read past the parser
  (``backend/compat/websockets.py``'s ``lone_text``) and hands it on as ``handle_text`` does
  (copied here: ``text_received``), after what ``data_received`` and ``handle_events`` do for
  such a frame; a text message the app already waits for does not pause reading
  (``deliver_text``), which relies on upstream's ``receive`` resuming reading only when paused;
- ``backend/realtime/wire.py`` finds the connection behind the ASGI ``send`` uvicorn hands the
  app (``run_asgi`` passes its bound ``self.send``: ``connection_of``) and writes frames to its
  ``transport`` itself, reading ``writable``, ``close_sent``, ``disconnected``,
  ``handshake_complete``, ``conn``, ``loop`` and ``client``;
- ``ProxyHeadersAhead`` runs ``uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware``'s
  ``__call__`` (its scope rewrite: ``X-Forwarded-For`` and ``-Proto`` from trusted hosts)
  to its end against an app that returns at once, then returns the real app's coroutine:
  the rewrite is upstream's, and no frame of the middleware stays under each WebSocket
  connection (``backend/realtime/protocol.py`` puts it in place of the middleware uvicorn
  wrapped the app in, ``is_proxy_headers``); it relies on that ``__call__`` awaiting nothing
  but its app, and on the middleware's ``app`` attribute;
- its ``send`` deletes the accept's ``Date`` header and adds the server's own before the
  response is written (``ClosableMidMessage.accept`` in backend/compat/websockets.py leaves
  a placeholder there); and its ``handle_connect`` is what ``data_received`` calls for the
  request event (``backend/realtime/protocol.py`` calls it for a request it read itself);
- ``made_from_upgrade`` is ``WebSocketsSansIOProtocol.connection_made`` (mirrored) for a
  connection upgraded from ``HttpToolsProtocol`` (the transport's protocol until the upgrade
  is handed on), taking the addresses and scheme that protocol read from the same transport
  at its own ``connection_made`` (its ``server``, ``client``, ``scheme``) rather than asking
  the transport again (two system calls and a socket object);
- ``lean_init`` is ``WebSocketsSansIOProtocol.__init__`` (mirrored), given the receive queue
  and writable flag to use in place of the ``asyncio.Queue`` and ``asyncio.Event`` upstream
  makes (uvicorn only puts, gets and asks whether the queue is empty, and sets, clears and
  waits on the flag);
- ``send_accept`` is the ``websocket.accept`` step of ``WebSocketsSansIOProtocol.send``
  (mirrored), reading ``default_headers`` and ``initial_response``;
- the private module ``uvicorn._types`` for the ASGI event types (``ASGISendEvent``);
- ``backend/shutdown.py`` finds the server behind the SIGTERM handler uvicorn installs (its
  bound ``Server.handle_exit``, put in place by ``Server.capture_signals``: ``server_of``) and
  sets its ``config.timeout_graceful_shutdown``, which ``Server.shutdown`` reads once the
  signal has stopped the main loop, to bound its wait for the connections still open
  (``bound_graceful_shutdown``): it bounds a node's stop however the node was started
  (``confab serve``, the Procfile, a bare ``uvicorn backend.main:app``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import Server, ServerState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    holds,
    importable,
    self_assigned,
    signature,
    unchanged,
    version,
)

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

PIN = Pin("uvicorn", "0.54.0")
PINS = [PIN]

#: uvicorn's sans-I/O WebSocket protocol, the base of ``backend.realtime.protocol``.
SansIOProtocol = WebSocketsSansIOProtocol

__all__ = ["PROTOCOL_ATTRIBUTES", "ASGISendEvent", "ProxyHeadersAhead", "SansIOProtocol",
           "bound_graceful_shutdown", "connection_of", "deliver_text", "forget_request",
           "forget_response", "is_proxy_headers", "lean_init", "made_from_upgrade",
           "next_ping_after", "next_ping_delay", "ping_payload", "send_accept", "send_ping",
           "server_of",
           "text_received", "transport_of"]

_P = WebSocketsSansIOProtocol

#: Every attribute ``WebSocketsSansIOProtocol`` assigns on its instances (0.54.0: in
#: ``__init__``, ``connection_made``, ``handle_connect`` and ``send``), for the slots of
#: ``backend.realtime.protocol``'s subclass: in slots, not in an instance dict, they take
#: 8 bytes each; the dict of their 40 names was 1.6 KB on every open connection.
PROTOCOL_ATTRIBUTES = (
    "app", "app_state", "asgi_version", "client", "close_sent", "close_timeout", "close_timer",
    "config", "conn", "connections", "curr_msg_data_type", "default_headers", "disconnected",
    "frames", "handshake_complete", "handshake_initiated", "initial_response", "last_ping_rtt",
    "logger", "loop", "pending_ping_payload", "ping_interval", "ping_sent_at", "ping_timeout",
    "ping_timer", "pong_timer", "queue", "read_paused", "request", "response", "root_path",
    "scheme", "scope", "server", "tasks", "transport", "writable",
)


def _assigned_names() -> set[str]:
    """The names of the ``self.name = ...`` assignments in upstream's class."""
    return set(self_assigned(_P))


def _unslotted() -> set[str]:
    return _assigned_names() - set(PROTOCOL_ATTRIBUTES)

class ProxyHeadersAhead:
    """uvicorn's ``ProxyHeadersMiddleware`` (``middleware``) in front of ``app`` (its own app,
    or what runs in its place), its scope rewrite done before ``app``'s coroutine is returned
    rather than in a coroutine of its own awaiting it: the same rewrite, and no frame held
    under each connection for the connection's life."""

    __slots__ = ("app", "rewrite")

    def __init__(self, middleware: ProxyHeadersMiddleware, app: Any) -> None:
        self.app = app
        #: The middleware, around an app that returns at once.
        self.rewrite = copy.copy(middleware)
        self.rewrite.app = _returns

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        step = self.rewrite(scope, receive, send)
        try:
            step.send(None)
        except StopIteration:
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        step.close()
        raise RuntimeError("ProxyHeadersMiddleware waited for something besides its app")


async def _returns(scope: Any, receive: Any, send: Any) -> None:
    return None


def is_proxy_headers(app: Any) -> bool:
    """Is ``app`` uvicorn's ``ProxyHeadersMiddleware`` (``--proxy-headers``)? Its own app is
    its ``app``."""
    return type(app) is ProxyHeadersMiddleware


def _rewrites_at_once() -> bool:
    scope = {"type": "websocket", "client": ("127.0.0.1", 1), "scheme": "ws",
             "headers": [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]}
    ahead = ProxyHeadersAhead(ProxyHeadersMiddleware(_returns, "127.0.0.1"), _returns)
    step = ahead(scope, None, None)
    step.close()  # type: ignore[attr-defined]  # _returns's coroutine, never run
    return scope["client"] == ("203.0.113.9", 0) and scope["scheme"] == "wss"


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    importable(PIN, "uvicorn._types", "ASGISendEvent"),
    # Its instances' attributes have slots in backend/realtime/protocol.py's subclass.
    holds(PIN, "WebSocketsSansIOProtocol's instance attributes",
          lambda: not _unslotted(),
          "assigns attributes that PROTOCOL_ATTRIBUTES does not list (each open connection "
          "would hold an instance dict again): add them"),
    # lean_init: upstream's __init__, mirrored.
    unchanged(PIN, _P, "__init__", "631dcd744eab875f"),
    # Overridden by backend/realtime/protocol.py.
    signature(PIN, _P, "__init__", ("self", "config", "server_state", "app_state", "_loop")),
    signature(PIN, _P, "handle_connect", ("self", "event")),
    signature(PIN, _P, "keepalive_timeout", ("self",)),
    signature(PIN, _P, "send_receive_event_to_app", ("self",)),
    signature(PIN, _P, "send", ("self", "message")),
    signature(PIN, _P, "handle_parser_exception", ("self",)),
    assigned(PIN, _P, "logger"),
    unchanged(PIN, _P, "send_receive_event_to_app", "a2b10de91477dc1d"),
    # ``deliver_text`` leaves reading on for a message the app waits for: ``receive``
    # resumes reading only when it was paused.
    unchanged(PIN, _P, "receive", "1dc0e715390021a1"),
    unchanged(PIN, _P, "keepalive_timeout", "8e1ceb6ec446de9d"),
    unchanged(PIN, _P, "send_keepalive_ping", "02da3945b3e6b110"),
    unchanged(PIN, _P, "handle_connect", "fc648c2161ff8e13"),
    unchanged(PIN, _P, "send", "d4919ed760ce9f7b"),
    # The keepalive: its timers are replaced (backend/realtime/protocol.py), its ping and
    # pong check copied (``send_ping``, ``next_ping_after``), and uvicorn's own callers of these
    # names (``start_keepalive``, ``connection_lost``, ``shutdown``) reach the overrides.
    *(signature(PIN, _P, name, ("self",)) for name in (
        "schedule_ping", "send_keepalive_ping", "stop_keepalive", "start_keepalive")),
    signature(PIN, _P, "handle_pong", ("self", "event")),
    unchanged(PIN, _P, "schedule_ping", "002da2050fd25224"),
    unchanged(PIN, _P, "handle_pong", "b20c68cc7e4f9bca"),
    unchanged(PIN, _P, "stop_keepalive", "bbb91b997b37b77c"),
    unchanged(PIN, _P, "start_keepalive", "6d83bdbc3db82b86"),
    unchanged(PIN, _P, "connection_lost", "dd116afc4d8034e1"),
    unchanged(PIN, _P, "shutdown", "e8ace796ada616b7"),
    # backend/realtime/protocol.py reads a lone pong before ``data_received`` would parse it.
    signature(PIN, _P, "data_received", ("self", "data")),
    unchanged(PIN, _P, "data_received", "c89d394077d8841d"),
    unchanged(PIN, _P, "handle_events", "b2c9351a5d13493f"),
    # made_from_upgrade: both protocols' connection_made, the HTTP one's addresses.
    unchanged(PIN, _P, "connection_made", "f533ec93747c2cbf"),
    unchanged(PIN, HttpToolsProtocol, "connection_made", "6efb565ff3d36b91"),
    *(assigned(PIN, HttpToolsProtocol, name) for name in (
        "transport", "server", "client", "scheme")),
    unchanged(PIN, HttpToolsProtocol, "handle_websocket_upgrade", "179c4f769386ab89"),
    # text_received: what data_received and handle_events do with a lone text frame.
    unchanged(PIN, _P, "handle_text", "6ae523180cf04a01"),
    # ProxyHeadersAhead: the middleware's call awaits its app alone, at its end.
    unchanged(PIN, ProxyHeadersMiddleware, "__call__", "b601df964c02a3bb"),
    assigned(PIN, ProxyHeadersMiddleware, "app"),
    holds(PIN, "ProxyHeadersMiddleware rewrites a scope without waiting", _rewrites_at_once,
          "ProxyHeadersAhead could not run the middleware's rewrite to its end"),
    # The app's ``send`` is the protocol's own bound method (``connection_of``).
    unchanged(PIN, _P, "run_asgi", "662375aa38d9044c"),
    *(assigned(PIN, _P, name) for name in (
        "default_headers", "initial_response", "scope",
        "queue", "writable", "conn", "transport", "frames", "curr_msg_data_type", "request",
        "read_paused", "close_sent", "disconnected", "handshake_complete", "response",
        "ping_timer", "pong_timer", "ping_interval", "ping_timeout", "pending_ping_payload",
        "ping_sent_at", "last_ping_rtt", "loop", "client")),
    # The stop's bound: the SIGTERM handler is the server's bound ``handle_exit``, and its
    # shutdown waits for the connections at most ``config.timeout_graceful_shutdown``.
    signature(PIN, Server, "handle_exit", ("self", "sig", "frame")),
    unchanged(PIN, Server, "capture_signals", "e1bbcd4770d1c887"),
    unchanged(PIN, Server, "shutdown", "9b33c50562992b1e"),
    assigned(PIN, Server, "config"),
    assigned(PIN, Config, "timeout_graceful_shutdown"),
]


def server_of(handler: Any) -> Server | None:
    """The uvicorn server whose signal handler ``handler`` is (``Server.capture_signals``
    installs its bound ``handle_exit``), or None (another server, or none)."""
    server = getattr(handler, "__self__", None)
    return server if isinstance(server, Server) else None


def bound_graceful_shutdown(server: Server, seconds: float) -> None:
    """Once told to exit, ``server`` waits at most ``seconds`` for the connections still
    open and the requests under way (``Server.shutdown``), then cancels what is left and
    runs the app's shutdown: uvicorn's ``--timeout-graceful-shutdown``, which is unset (no
    bound) unless given."""
    # uvicorn annotates an int; it hands the value to ``asyncio.wait_for``, which takes any.
    server.config.timeout_graceful_shutdown = seconds  # type: ignore[assignment]


def made_from_upgrade(protocol: WebSocketsSansIOProtocol, transport: asyncio.Transport) -> bool:
    """``WebSocketsSansIOProtocol.connection_made`` (mirrored from 0.54.0) when ``transport``
    comes from an ``HttpToolsProtocol`` upgrade: its addresses and scheme are the HTTP
    protocol's, read at its ``connection_made`` from the same transport. False, nothing
    done, for any other transport (the caller runs upstream's)."""
    try:
        http = transport.get_protocol()
    except NotImplementedError:  # a transport that does not say
        return False
    if type(http) is not HttpToolsProtocol or http.transport is not transport:
        return False
    protocol.connections.add(protocol)
    protocol.transport = transport
    protocol.server = http.server
    protocol.client = http.client
    protocol.scheme = "wss" if http.scheme == "https" else "ws"
    if protocol.logger.level <= TRACE_LOG_LEVEL:
        prefix = "%s:%d - " % protocol.client if protocol.client else ""  # noqa: UP031
        protocol.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", prefix)
    return True


def send_accept(protocol: WebSocketsSansIOProtocol, message: Any) -> bool:
    """The ``websocket.accept`` step of ``WebSocketsSansIOProtocol.send`` (mirrored from
    0.54.0) for a connection that takes it at once (writable, still there, not answered yet,
    no response of the app's started): whether it was done; False, nothing done, for anything
    else (the caller runs upstream's ``send``). Three differences, none on the wire: the
    ``[accepted]`` line's arguments are made only when its logger writes INFO; the server's
    default headers (``date``, ``server``) are decoded once per list (the server makes a new
    one every second) and set unchecked, as the server made them (the app's own are checked
    as upstream checks them); the response's ``Date`` placeholder
    (``ClosableMidMessage.accept``, backend/compat/websockets.py) is deleted as upstream
    deletes the ``Date`` websockets formatted."""
    if (message["type"] != "websocket.accept" or protocol.handshake_complete
            or protocol.initial_response is not None or protocol.disconnected
            or not protocol.writable.is_set()):
        return False
    if protocol.logger.isEnabledFor(logging.INFO):
        protocol.logger.info('%s - "WebSocket %s" [accepted]', get_client_addr(protocol.scope),
                             get_path_with_query_string(protocol.scope))
    headers = protocol.response.headers
    del headers["Date"]
    for name, value in _decoded(protocol.default_headers):
        headers.set_insecure(name, value)
    for raw_name, raw_value in message.get("headers", []):
        headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    accepted_subprotocol = message.get("subprotocol")
    if accepted_subprotocol:
        headers["Sec-WebSocket-Protocol"] = accepted_subprotocol
    if not protocol.transport.is_closing():
        protocol.handshake_complete = True
        protocol.conn.send_response(protocol.response)
        output = protocol.conn.data_to_send()
        protocol.transport.write(b"".join(output))
        protocol.start_keepalive()
    return True


#: The server's default headers of the moment, decoded: (the list, its pairs).
_defaults: tuple[Any, list[tuple[str, str]]] = (None, [])


def _decoded(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    global _defaults
    if _defaults[0] is not raw:
        _defaults = (raw, [(name.decode("latin-1").lower(), value.decode("latin-1"))
                           for name, value in raw])
    return _defaults[1]


def connection_of(send: Any) -> WebSocketsSansIOProtocol | None:
    """The connection behind the ASGI ``send`` uvicorn handed the app (its bound
    ``WebSocketsSansIOProtocol.send``), or None under another server or protocol."""
    connection = getattr(send, "__self__", None)
    return connection if isinstance(connection, WebSocketsSansIOProtocol) else None


def transport_of(connection: WebSocketsSansIOProtocol) -> asyncio.Transport:
    """The connection's transport, to which frames built by the project are written (read
    once per connection)."""
    return connection.transport


def lean_init(protocol: WebSocketsSansIOProtocol, config: Config, server_state: ServerState,
              app_state: dict[str, Any], loop: asyncio.AbstractEventLoop | None, queue: Any,
              writable: Any, parser: Callable[..., ServerProtocol] = ServerProtocol) -> None:
    """``WebSocketsSansIOProtocol.__init__`` (mirrored from 0.54.0) with ``queue`` and
    ``writable`` (set here) as its receive queue and writable flag, rather than the
    ``asyncio.Queue`` and ``asyncio.Event`` it makes (2.8 and 0.8 KB idle, and their making
    at every connect); its logger looked up once; its websockets parser made by ``parser``
    (called as uvicorn calls ``ServerProtocol``)."""
    if not config.loaded:
        config.load()  # pragma: no cover
    protocol.config = config
    protocol.app = config.loaded_app
    protocol.loop = loop or asyncio.get_event_loop()
    protocol.logger = _ERRORS
    protocol.root_path = config.root_path
    protocol.asgi_version = config.asgi_version
    protocol.app_state = app_state
    # Shared server state
    protocol.connections = server_state.connections
    protocol.tasks = server_state.tasks
    protocol.default_headers = server_state.default_headers
    # Connection state
    protocol.transport = None  # type: ignore[assignment]
    protocol.server = None
    protocol.client = None
    protocol.scheme = None  # type: ignore[assignment]
    # WebSocket state
    protocol.queue = queue
    protocol.handshake_initiated = False
    protocol.handshake_complete = False
    protocol.close_sent = False
    protocol.disconnected = False
    protocol.close_timer = None
    protocol.close_timeout = 10.0
    protocol.initial_response = None
    extensions = []
    if config.ws_per_message_deflate:
        extensions = [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]
    protocol.conn = parser(extensions=extensions, max_size=config.ws_max_size, logger=_ERRORS)
    protocol.read_paused = False
    protocol.writable = writable
    writable.set()
    # Keepalive state
    protocol.ping_interval = config.ws_ping_interval
    protocol.ping_timeout = config.ws_ping_timeout
    protocol.ping_timer = None
    protocol.pong_timer = None
    protocol.pending_ping_payload = None
    protocol.ping_sent_at = 0.0
    protocol.last_ping_rtt = 0.0
    # Incoming message state
    protocol.frames = []
    protocol.curr_msg_data_type = "bytes"


#: uvicorn's error logger, the protocol's and its parser's (a logger is never replaced).
_ERRORS = logging.getLogger("uvicorn.error")


def forget_response(protocol: WebSocketsSansIOProtocol) -> None:
    """Let the handshake's response go once sent (uvicorn does not read it again)."""
    if protocol.handshake_complete and protocol.response is not None:
        protocol.response = None  # type: ignore[assignment]  # let go once sent


def forget_request(protocol: WebSocketsSansIOProtocol) -> None:
    """Let the handshake's request go once ``handle_connect`` has copied it into the scope
    (uvicorn does not read it again)."""
    protocol.request = None  # type: ignore[assignment]  # let go once read


def deliver_text(protocol: WebSocketsSansIOProtocol,
                 pause: bool = True) -> UnicodeDecodeError | None:
    """The text path of ``WebSocketsSansIOProtocol.send_receive_event_to_app`` (copied from
    0.54.0): the message's frames, decoded, go to the app's receive queue and reading pauses
    until the app takes it. A message that is not UTF-8 is dropped and its error returned, for
    the caller to close the connection (upstream logs a traceback and closes with 1007).

    ``pause`` False: the caller knows the app is already waiting in ``receive`` and takes the
    message before the transport is read again; reading goes on, and upstream's
    ``receive``, finding it not paused, does not resume it (a pause and a resume are two
    system calls under uvloop). A message arriving before the app took this one pauses
    reading as upstream does: the app is still one message behind at most."""
    frames = protocol.frames
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    protocol.frames = []
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return exc
    protocol.queue.put_nowait({"type": "websocket.receive", "text": text})
    if pause and not protocol.read_paused:
        protocol.read_paused = True
        protocol.transport.pause_reading()
    return None


def text_received(protocol: WebSocketsSansIOProtocol, payload: bytes) -> None:
    """``WebSocketsSansIOProtocol.handle_text`` (copied from 0.54.0) for a final frame's
    ``payload``: the message's one frame goes to ``send_receive_event_to_app``."""
    protocol.curr_msg_data_type = "text"
    protocol.frames = [payload]
    protocol.send_receive_event_to_app()


def ping_payload() -> bytes:
    """A keepalive ping's payload as ``send_keepalive_ping`` makes it: 4 random bytes."""
    return struct.pack("!I", random.getrandbits(32))


def send_ping(protocol: WebSocketsSansIOProtocol, payload: bytes, frame: bytes,
              now: float) -> float | None:
    """The ping of ``WebSocketsSansIOProtocol.send_keepalive_ping`` (copied from 0.54.0) at
    ``now`` (the loop's time), without arming a timer: the delay of the deadline that follows
    (the pong's, ``ping_timeout``; with none, the next ping's, as ``schedule_ping`` reckons
    it), or None when not sent (a connection closing). ``payload`` (``ping_payload``) is what
    ``next_ping_after`` expects back, ``frame`` the ping frame that carries it, already built
    (a server's frame is unmasked: every connection pinged in one turn is written the same
    bytes, as websockets' ``send_ping`` would frame them)."""
    protocol.ping_timer = None
    if protocol.close_sent or protocol.transport.is_closing():
        return None
    protocol.pending_ping_payload = payload
    protocol.ping_sent_at = now
    protocol.transport.write(frame)
    timeout = protocol.ping_timeout
    return timeout if timeout is not None else next_ping_delay(protocol)


def next_ping_after(protocol: WebSocketsSansIOProtocol,
                    data: bytes | bytearray | memoryview) -> float | None:
    """``WebSocketsSansIOProtocol.handle_pong`` (copied from 0.54.0) without its timers: when
    a pong carrying ``data`` answers the ping in flight (then recorded: its round trip, no
    ping pending) and a pong was awaited (``ping_timeout`` set), the delay of the next ping
    (``schedule_ping``'s); else None (with no ``ping_timeout`` the next ping is already
    scheduled). Unsolicited and stale pongs are ignored."""
    pending = protocol.pending_ping_payload
    # Without upstream's ``bytes(data)`` copy: any of the three compares by content.
    if pending is None or data != pending:
        return None
    rtt = protocol.last_ping_rtt = protocol.loop.time() - protocol.ping_sent_at
    protocol.pending_ping_payload = None
    if protocol.ping_timeout is None:
        return None
    # ``next_ping_delay``, inline (a call per pong).
    assert protocol.ping_interval is not None
    delay = protocol.ping_interval - rtt
    return delay if delay > 0.0 else 0.0


def next_ping_delay(protocol: WebSocketsSansIOProtocol) -> float:
    """``schedule_ping``'s delay (copied from 0.54.0): ``ping_interval`` after the last ping
    was sent."""
    assert protocol.ping_interval is not None
    delay = protocol.ping_interval - protocol.last_ping_rtt  # not ``max``: its keyword parsing
    return delay if delay > 0.0 else 0.0
