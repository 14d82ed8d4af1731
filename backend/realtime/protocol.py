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

``DirectWires`` (backend/realtime/wire.py) finds this protocol behind a WebSocket scope as it
finds uvicorn's own: it is one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from backend.realtime.queues import LeanEvent, LeanQueue

#: The value of uvicorn's ``--ws`` (``ws=``) that selects this protocol.
WS_PROTOCOL = "backend.realtime.protocol:WebSocketProtocol"
#: uvicorn's options on every node (``confab serve``), besides where it listens and its
#: access log; the protocol conformance test serves its app with the same.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop", "http": "httptools", "ws": WS_PROTOCOL, "ws_per_message_deflate": False,
    "proxy_headers": True, "log_config": None,
}


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with a lean receive queue and writable flag, letting the
    handshake's request headers and response go once used (see the module doc)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = LeanQueue()  # type: ignore[assignment]
        self.writable = LeanEvent()  # type: ignore[assignment]
        self.writable.set()

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

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        # The accept (or refusal) is out: the response built for it is not read again.
        if self.handshake_complete and self.response is not None:
            self.response = None
