"""uvicorn's sans-I/O WebSocket protocol, holding less for each open connection.

Every node runs with ``--ws backend.realtime.protocol:WebSocketProtocol`` (``confab serve``,
the Procfile, the benchmark): uvicorn's ``websockets-sansio`` implementation, unchanged on
the wire, minus what an idle connection kept without using it:

- its receive queue is a ``LeanQueue`` (backend/realtime/queues.py), not an ``asyncio.Queue``
  (about 2.8 KB idle), and its ``writable`` flag a ``LeanEvent``, not an ``asyncio.Event``
  (0.8 KB); uvicorn only puts, gets and asks whether the queue is empty, and sets, clears
  and waits on the flag (so does ``Wire``);
- the handshake's HTTP response object, with its headers, is let go once it has been sent;
  uvicorn does not read it again;
- the handshake request's headers are emptied once uvicorn has copied them into the ASGI
  scope: websockets' parser keeps the request in a local of its generator for as long as the
  connection lives (2 to 3 KB of headers), and reads it no more after the handshake.

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
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.http11 import Request

from backend.compat.uvicorn import SansIOProtocol, deliver_text, forget_response, use_flow_control
from backend.compat.websockets import swap_parser
from backend.realtime.queues import LeanEvent, LeanQueue

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


class WebSocketProtocol(SansIOProtocol):
    """``WebSocketsSansIOProtocol`` with a lean receive queue and writable flag, letting the
    handshake's request headers and response go once used (see the module doc)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        use_flow_control(self, LeanQueue(), LeanEvent())
        # The same object uvicorn configured, reading close frames as RFC 6455 says.
        swap_parser(self)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The handshake is answered (or refused) and the scope has its own copy of the
        # headers: nothing reads these again, though websockets' parser keeps the request.
        event.headers.clear()

    def keepalive_timeout(self) -> None:
        """The pong is late. While reading is paused (the app has not taken the last message),
        it may be waiting unread behind the app's own backlog: the deadline moves on by
        another ``ping_timeout``, and the verdict waits until reading resumes."""
        if (self.read_paused and self.ping_timeout is not None
                and not (self.close_sent or self.transport.is_closing())):
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        super().keepalive_timeout()

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, but a text message that is not UTF-8 is logged as one warning line
        (uvicorn logged its traceback) before the connection is closed with 1007."""
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        invalid = deliver_text(self)
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
        await super().send(message)
        # The accept (or refusal) is out: the response built for it is not read again.
        if self.response is not None:
            forget_response(self)


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
