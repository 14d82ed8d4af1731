"""uvicorn's sans-I/O WebSocket protocol, holding less for each open connection.

Every node runs with ``--ws backend.realtime.protocol:WebSocketProtocol`` (``confab serve``,
the Procfile, the benchmark): uvicorn's ``websockets-sansio`` implementation, unchanged on
the wire, minus what an idle connection kept without using it:

- uvicorn's attributes live in slots (``PROTOCOL_ATTRIBUTES``, backend/compat/uvicorn.py),
  not in an instance dict that outgrew Python's shared-key form (1.6 KB, now 0.3 KB);

- uvicorn's ``ProxyHeadersMiddleware`` (``--proxy-headers``, on for every node) is run as
  ``ProxyHeadersAhead`` (backend/compat/uvicorn.py): the same rewrite of the scope, done
  before the app's coroutine starts, without a coroutine of its own awaiting the app's for
  the connection's life (0.3 KB); ``DirectWires`` (backend/realtime/wire.py), which would
  only leave the connection in the scope and await the app, is left out, the protocol
  leaving itself there (``connection_app``);
- a text message the app is already waiting for goes to it without reading being paused
  and resumed around it (two system calls per message under uvloop); one that arrives while
  the app is busy pauses reading as before, so the app is never more than one message
  behind;
- its receive queue is a ``LeanQueue`` (backend/realtime/queues.py), not an ``asyncio.Queue``
  (about 2.8 KB idle), and its ``writable`` flag a ``LeanEvent``, not an ``asyncio.Event``
  (0.8 KB); uvicorn only puts, gets and asks whether the queue is empty, and sets, clears
  and waits on the flag (so does ``Wire``);
- the handshake's request, which uvicorn hands over whole in one read (rebuilt from what
  httptools parsed), is read in one step (``read_request``, backend/compat/websockets.py)
  rather than line by line through websockets' generators, with the same checks; the
  parser's accept leaves out the ``Date`` that uvicorn replaces with its own anyway;
- the handshake's HTTP response object, with its headers, is let go once it has been sent;
  uvicorn does not read it again;
- the handshake's request is let go once uvicorn has copied it into the ASGI scope: uvicorn
  kept it as ``request``, and websockets' parser in a local of its generator for as long as
  the connection lives (2 to 3 KB of headers, and the path with its query): the request's
  headers are emptied, and the parser's generator restarted past it
  (``restart_frame_parser``); nothing reads the request after the handshake. The restarted
  generator lets each frame go once handed on (upstream's kept the last one received).
- what every connection has alike is shared once the handshake is answered: the scope's
  ``asgi`` dict and the denial-response extension's empty options, and websockets' lists of
  extensions offered and negotiated (none; ``forget_no_extensions``); the scope's empty
  copy of the lifespan state is dropped.

The keepalive (a ping every ``ws_ping_interval``, the connection failed with 1011 when its
pong has not come ``ws_ping_timeout`` later; both as the app asks, ``connection_app``: the
node's ``PING_INTERVAL_SECONDS`` and ``PING_TIMEOUT_SECONDS``, Engine.IO's heartbeat) keeps
each connection's one deadline, the next ping or the pong awaited, in one ``TimerWheel`` per
event loop (backend/realtime/timer_wheel.py: one loop timer for every connection, buckets at
most a second wide), not in a loop timer per connection (uvicorn's ``ping_timer`` and
``pong_timer``, re-made at every ping). The connections pinged in one turn of the loop share
one random payload and one ping frame, built once. A connection whose application has a
heartbeat of its own (Engine.IO) has its keepalive stopped (``Wire.without_keepalive``).

One behaviour differs: the keepalive does not close a connection whose reading uvicorn has
paused (``keepalive_timeout``). uvicorn reads one message ahead of the app and then stops
reading until the app takes it; on a node over capacity, a handler can take longer than the
pong's 20 s, and the client's pong waits unread behind it: uvicorn closed such connections
(1011), and their clients lost what was sent to them until they reconnected.

Two behaviours on the wire differ from websockets' sans-I/O protocol, which uvicorn's builds on,
to follow RFC 6455:

- a close frame that arrives between the fragments of a message (section 5.4 lets control
  frames in there) is answered with the usual close echo (1000 for a normal close), the
  unfinished message dropped; websockets failed the connection with 1002 instead
  (Autobahn|Testsuite case 7.1.5);
- a text message that is not valid UTF-8 closes the connection with 1007, as before, but is
  logged as one warning line (``websocket_invalid_utf8``), not with a traceback: a client
  could otherwise write a traceback into the log with every message.

``DirectWires`` (backend/realtime/wire.py) finds this protocol behind a WebSocket scope as it
finds uvicorn's own: it is one. What it relies on of uvicorn's and websockets' internals is
reached through backend/compat/uvicorn.py and backend/compat/websockets.py.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, cast

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame
from websockets.http11 import Request

from backend.compat.uvicorn import (
    PROTOCOL_ATTRIBUTES,
    ProxyHeadersAhead,
    SansIOProtocol,
    deliver_text,
    forget_request,
    forget_response,
    is_proxy_headers,
    lean_init,
    made_from_upgrade,
    next_ping_after,
    next_ping_delay,
    ping_payload,
    send_accept,
    send_ping,
    text_received,
)
from backend.compat.websockets import (
    CONNECTION_LINES,
    forget_no_extensions,
    lone_limit,
    lone_payload,
    lone_pong,
    new_parser,
    pong_payload,
    quiet_connection_lines,
    read_request,
    restart_frame_parser,
    swap_parser,
)
from backend.realtime.queues import LeanEvent, LeanQueue
from backend.realtime.timer_wheel import TimerWheel, resolution_for
from backend.realtime.wire import CONNECTION_KEY, DirectWires, TextTaker, frame

if TYPE_CHECKING:
    from backend.compat.uvicorn import ASGISendEvent

#: The value of uvicorn's ``--ws`` (``ws=``) that selects this protocol.
WS_PROTOCOL = "backend.realtime.protocol:WebSocketProtocol"
#: uvicorn's options on every node (``confab serve``), besides where it listens and its
#: access log; the protocol conformance test serves its app with the same.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop", "http": "httptools", "ws": WS_PROTOCOL, "ws_per_message_deflate": False,
    "proxy_headers": True, "log_config": None,
}

log = logging.getLogger("confab.protocol")

#: The ASGI extension that lets an app answer a handshake with an HTTP response.
DENIAL_RESPONSE = "websocket.http.response"
#: Its options (none), one dict for every connection's scope.
_NO_OPTIONS: dict[str, Any] = {}
#: The scopes' ``asgi`` dicts, one per distinct content (one in practice).
_SHARED_SCOPE_VALUES: dict[tuple[tuple[str, Any], ...], Any] = {}


class WebSocketProtocol(SansIOProtocol):
    """``WebSocketsSansIOProtocol`` with a lean receive queue and writable flag, letting the
    handshake's request headers and response go once used, its keepalive on a shared timer
    wheel (see the module doc)."""

    # uvicorn's attributes in slots rather than an instance dict (1.6 KB per connection).
    __slots__ = (*PROTOCOL_ATTRIBUTES, "due", "lone_limit", "text_hook")

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        #: The connection's keepalive deadline in its loop's wheel (``TimerWheel``; 0: none).
        self.due = 0
        #: Takes a lone text frame's payload before the application's receive queue, while
        #: nothing waits in it (``take_text``; True: taken): ``Wire.take_texts``.
        self.text_hook: TextTaker | None = None
        #: ``lone_limit`` of the parser as it was last left (-1: not at rest, every read goes
        #: to it), asked again after each read it is fed and once the handshake is accepted;
        #: a close sets ``close_sent``, which turns the lone reads off too.
        self.lone_limit = -1
        # uvicorn's __init__, its receive queue and writable flag lean from the start.
        lean_init(self, config, server_state, app_state, _loop, LeanQueue(), LeanEvent(),
                  new_parser)
        self.app, heartbeat = connection_app(config, self.app)
        if heartbeat is not None:  # the app's own, over uvicorn's --ws-ping-*
            self.ping_interval, self.ping_timeout = heartbeat
        # The same object uvicorn configured, reading close frames as RFC 6455 says.
        swap_parser(self)
        if not config.access_log and not self.logger.isEnabledFor(logging.DEBUG):
            # websockets' "connection open" and "connection closed", and uvicorn's
            # '"WebSocket /path" [accepted]', are access lines, one per connection: with the
            # access log off each still cost a record (and the first two a formatted write).
            # Both now log to a logger of warnings and errors, which drops them at its level.
            quiet_connection_lines(self.conn)
            self.logger = CONNECTION_LINES

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """uvicorn's, with the addresses the upgraded HTTP connection already read."""
        # uvloop's transports are not asyncio.Transport's subclasses, but have its methods.
        if not made_from_upgrade(self, cast(asyncio.Transport, transport)):
            super().connection_made(transport)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        accepted = self.response.status_code == 101
        if accepted:
            # What ``DirectWires`` would have left in the scope (``connection_app`` skips
            # it); the app's task has not started yet. A refused handshake (uvicorn wrote the
            # 400 and closed) has no scope and no task.
            scope = self.scope
            extensions: dict[str, Any] = scope["extensions"]
            extensions[CONNECTION_KEY] = self
            # Values every connection's scope has alike, shared (read-only, as the ASGI
            # spec has them): the ``asgi`` versions, and the denial-response extension's
            # empty options (0.28 KB per connection).
            asgi = scope["asgi"]
            scope["asgi"] = _SHARED_SCOPE_VALUES.setdefault(tuple(asgi.items()), asgi)
            if extensions.get(DENIAL_RESPONSE) == {}:
                extensions[DENIAL_RESPONSE] = _NO_OPTIONS
            if not scope.get("state"):
                # The lifespan's state, copied for each connection: empty (the app's
                # lifespan keeps none there). Starlette makes one when first asked for.
                scope.pop("state", None)
        # The handshake is answered (or refused) and the scope has its own copy of the
        # request: nothing reads it again. Its headers are emptied in case anything still
        # holds it (a parser that could not be restarted).
        event.headers.clear()
        forget_request(self)
        if accepted:
            restart_frame_parser(self.conn)
            forget_no_extensions(self.conn)

    # -- the keepalive, on the loop's wheel ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """uvicorn's, but the handshake's request is read in one step (``read_request``), and
        a keepalive pong alone in its read (nearly every read of an idle
        connection) is taken as the pong it is without websockets' frame parser, half the
        CPU of a ping's round trip on an idle node; and a text frame alone in its read
        (nearly every message a client sends) goes to the app without it either."""
        if not self.handshake_initiated:
            # The handshake request, whole in this first read (uvicorn rebuilds it from what
            # httptools parsed): read without websockets' line-by-line parser, and handled
            # as uvicorn's ``handle_events`` handles the request event.
            request = read_request(self.conn, data)
            if request is not None:
                self.handle_connect(request)
                return
        elif data[0] == 0x81:  # uvloop and asyncio never hand over empty data
            # The parser's state is not asked at every frame (a dozen attributes of an
            # object whose look-ups the interpreter cannot specialise, over half of an
            # idle Socket.IO connection's pong): it is kept in ``lone_limit``.
            limit = self.lone_limit
            text = lone_payload(data, limit) if limit >= 0 and not self.close_sent else None
            if text is not None:
                hook = self.text_hook
                if hook is None or not self.queue.empty() or not hook.take_text(text):
                    text_received(self, text)
                return
        elif len(data) == 10:
            payload = (pong_payload(data) if self.lone_limit >= 0 and not self.close_sent
                       else lone_pong(self.conn, data))
            if payload is not None:
                delay = next_ping_after(self, payload)
                if delay is not None:
                    # ``keepalive_wheel``'s answer for the last loop asked, without its call.
                    loop, wheel = _last
                    if loop is not self.loop or wheel is None:
                        wheel = keepalive_wheel(self)
                    wheel.schedule(self, delay)
                return
        super().data_received(data)
        self.lone_limit = lone_limit(self.conn)

    def schedule_ping(self) -> None:
        """The next ping, ``ping_interval`` after the last one was sent (uvicorn's)."""
        keepalive_wheel(self).schedule(self, next_ping_delay(self))

    def send_keepalive_ping(self) -> None:
        """Ping, and await the pong for ``ping_timeout`` (or, with none, ping again)."""
        now = self.loop.time()
        ping = _ping if _ping[0] == now else _new_ping(now)
        delay = send_ping(self, ping[1], ping[2], now)
        if delay is not None:
            keepalive_wheel(self).schedule(self, delay)

    def handle_pong(self, event: Frame) -> None:
        """The ping's answer: the next ping is due (with no ``ping_timeout`` it already is)."""
        delay = next_ping_after(self, event.data)
        if delay is not None:
            keepalive_wheel(self).schedule(self, delay)

    def keepalive_due(self) -> float | None:
        """The wheel's call: the pong's deadline when a ping is in flight, else the next ping,
        sent here (every connection passes once per interval: uvicorn's steps in one call,
        ``send_ping``); returns the delay of the deadline that follows, for the wheel to set."""
        if self.pending_ping_payload is not None:
            self.keepalive_timeout()
            return None
        now = self.loop.time()
        ping = _ping if _ping[0] == now else _new_ping(now)
        return send_ping(self, ping[1], ping[2], now)

    def keepalive_timeout(self) -> None:
        """The pong is late. While reading is paused (the app has not taken the last message),
        it may be waiting unread behind the app's own backlog: the deadline moves on by
        another ``ping_timeout``, and the verdict waits until reading resumes."""
        if (self.read_paused and self.ping_timeout is not None
                and not (self.close_sent or self.transport.is_closing())):
            keepalive_wheel(self).schedule(self, self.ping_timeout)
            return
        super().keepalive_timeout()

    def stop_keepalive(self) -> None:
        wheel = _WHEELS.get(self.loop)
        if wheel is not None:
            wheel.cancel(self)
        super().stop_keepalive()

    def shutdown(self) -> None:
        """uvicorn's (the server stopping): its close (1012) does not set ``close_sent``, so
        the lone reads are turned off here."""
        self.lone_limit = -1
        super().shutdown()

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, but a text message that is not UTF-8 is logged as one warning line
        (uvicorn logged its traceback) before the connection is closed with 1007, and reading
        is not paused for a message the app is already waiting for (uvicorn paused it, and
        the app's ``receive`` resumed it at once: two system calls per message)."""
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        # The app already waiting for a message takes this one before the socket is read
        # again: reading is not paused for it (``deliver_text``).
        invalid = deliver_text(self, not cast("LeanQueue[Any]", self.queue).awaited())
        if invalid is None:
            return
        error = f"{invalid.reason} at position {invalid.start}"
        log.warning("invalid UTF-8 in a text message from %s (%s); closing 1007",
                    _address(self.client), error,
                    extra={"event": "websocket_invalid_utf8", "client": _address(self.client),
                           "error": error})
        self.conn.send_close(1007, error)
        self.handle_parser_exception()  # sends the close, tells the app, drops the TCP

    async def send(self, message: ASGISendEvent) -> None:
        if not send_accept(self, message):
            await super().send(message)
        if message["type"] == "websocket.accept":
            self.lone_limit = lone_limit(self.conn)  # the parser is open now
        # The accept (or refusal) is out: the response built for it is not read again.
        if self.response is not None:
            forget_response(self)


#: The app a connection runs, and the heartbeat that app asks for (None: uvicorn's own).
ConnectionApp = tuple[Any, tuple[float, float] | None]
#: Per uvicorn configuration, its connections' ``ConnectionApp`` (``connection_app``).
_APPS: weakref.WeakKeyDictionary[Config, ConnectionApp] = weakref.WeakKeyDictionary()


def connection_app(config: Config, loaded: Any) -> ConnectionApp:
    """The app a connection runs: uvicorn's ``loaded`` app, its middleware that only sets
    something up and then awaits the app for the connection's life done ahead of it
    instead, so that none of their frames stays under every open connection:
    uvicorn's ``ProxyHeadersMiddleware`` becomes ``ProxyHeadersAhead`` (its rewrite, run
    before the app's coroutine), and ``DirectWires`` is left out (the protocol leaves
    itself in the scope, ``handle_connect``). With it, the keepalive (ping interval, pong
    timeout) the app asks for: ``DirectWires``' ``heartbeat`` (the node's
    ``PING_INTERVAL_SECONDS`` and ``PING_TIMEOUT_SECONDS``, Engine.IO's too), which stands
    over uvicorn's ``--ws-ping-interval`` and ``--ws-ping-timeout``. One per configuration,
    shared."""
    found = _APPS.get(config)
    if found is None:
        found = _APPS[config] = _ahead(loaded)
    return found


def _ahead(app: Any) -> ConnectionApp:
    if isinstance(app, DirectWires):
        return app.app, app.heartbeat
    if is_proxy_headers(app):
        inner, heartbeat = _ahead(app.app)
        return ProxyHeadersAhead(app, inner), heartbeat
    return app, None


#: The keepalive wheel of each event loop (a node has one loop; tests may run several).
_WHEELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel[WebSocketProtocol]] = (
    weakref.WeakKeyDictionary())


#: The loop last asked for and its wheel: a node has one loop, and a weak dictionary's
#: look-up (a weak reference made each time), twice per keepalive round trip, was about a
#: tenth of its instructions.
_last: tuple[asyncio.AbstractEventLoop | None, TimerWheel[WebSocketProtocol] | None] = (
    None, None)


def keepalive_wheel(protocol: WebSocketProtocol) -> TimerWheel[WebSocketProtocol]:
    """The wheel of the protocol's loop, made by its first connection (its buckets sized
    for that connection's keepalive: every connection of a server has the same)."""
    global _last
    loop = protocol.loop
    last, wheel = _last
    if last is loop and wheel is not None:
        return wheel
    wheel = _WHEELS.get(loop)
    if wheel is None:
        wheel = _WHEELS[loop] = TimerWheel(
            WebSocketProtocol.keepalive_due,
            resolution_for(protocol.ping_interval, protocol.ping_timeout), loop=loop)
    _last = (loop, wheel)
    return wheel


#: The keepalive ping of the current turn: (loop time, payload, frame). One random payload
#: per turn of the loop (a wheel's tick pings its whole bucket in one turn), framed once for
#: every connection pinged in it (``keepalive_due``). A connection's successive pings are
#: turns apart, so each differs from its last, which is what tells a stale pong from the
#: answer.
_ping: tuple[float, bytes, bytes] = (-1.0, b"", b"")


def _new_ping(now: float) -> tuple[float, bytes, bytes]:
    """The ping of the turn at loop time ``now`` (``_ping``), made."""
    global _ping
    payload = ping_payload()
    _ping = (now, payload, frame(payload, _PING))
    return _ping


_PING = 0x89  # FIN + ping


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
