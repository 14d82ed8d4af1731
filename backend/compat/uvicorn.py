"""uvicorn 0.54.0 (pyproject.toml's pin): its sans-I/O WebSocket protocol, from inside.

The project relies on ``uvicorn.protocols.websockets.websockets_sansio_impl.
WebSocketsSansIOProtocol`` (``--ws websockets-sansio``) as follows:

- ``backend/realtime/protocol.py`` subclasses it, overriding ``handle_connect``,
  ``keepalive_timeout`` (mirroring the re-arm of ``send_keepalive_ping``),
  ``send_receive_event_to_app`` (its text path is copied here: ``deliver_text``) and ``send``;
  it swaps the instance's ``queue`` and ``writable`` (``use_flow_control``) and the class of
  its websockets parser ``conn`` (``backend/compat/websockets.py``), and lets ``response`` go;
- ``backend/realtime/wire.py`` finds the connection behind the ASGI ``send`` uvicorn hands the
  app (``run_asgi`` passes its bound ``self.send``: ``connection_of``) and writes frames to its
  ``transport`` itself, reading ``writable``, ``close_sent``, ``disconnected``,
  ``handshake_complete``, ``conn``, ``loop`` and ``client``;
- the private module ``uvicorn._types`` for the ASGI event types (``ASGISendEvent``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    importable,
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

__all__ = ["ASGISendEvent", "SansIOProtocol", "connection_of", "deliver_text",
           "forget_response", "transport_of", "use_flow_control"]

_P = WebSocketsSansIOProtocol

ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    importable(PIN, "uvicorn._types", "ASGISendEvent"),
    # Overridden by backend/realtime/protocol.py.
    signature(PIN, _P, "__init__", ("self", "config", "server_state", "app_state", "_loop")),
    signature(PIN, _P, "handle_connect", ("self", "event")),
    signature(PIN, _P, "keepalive_timeout", ("self",)),
    signature(PIN, _P, "send_receive_event_to_app", ("self",)),
    signature(PIN, _P, "send", ("self", "message")),
    signature(PIN, _P, "handle_parser_exception", ("self",)),
    unchanged(PIN, _P, "send_receive_event_to_app", "a2b10de91477dc1d"),
    unchanged(PIN, _P, "keepalive_timeout", "8e1ceb6ec446de9d"),
    unchanged(PIN, _P, "send_keepalive_ping", "02da3945b3e6b110"),
    unchanged(PIN, _P, "handle_connect", "fc648c2161ff8e13"),
    unchanged(PIN, _P, "send", "d4919ed760ce9f7b"),
    # The app's ``send`` is the protocol's own bound method (``connection_of``).
    unchanged(PIN, _P, "run_asgi", "662375aa38d9044c"),
    *(assigned(PIN, _P, name) for name in (
        "queue", "writable", "conn", "transport", "frames", "curr_msg_data_type",
        "read_paused", "close_sent", "disconnected", "handshake_complete", "response",
        "pong_timer", "ping_timeout", "loop", "client")),
]


def connection_of(send: Any) -> WebSocketsSansIOProtocol | None:
    """The connection behind the ASGI ``send`` uvicorn handed the app (its bound
    ``WebSocketsSansIOProtocol.send``), or None under another server or protocol."""
    connection = getattr(send, "__self__", None)
    return connection if isinstance(connection, WebSocketsSansIOProtocol) else None


def transport_of(connection: WebSocketsSansIOProtocol) -> asyncio.Transport:
    """The connection's transport, to which frames built by the project are written (read
    once per connection)."""
    return connection.transport


def use_flow_control(protocol: WebSocketsSansIOProtocol, queue: Any, writable: Any) -> None:
    """Replace the receive queue (``asyncio.Queue``) and writable flag (``asyncio.Event``)
    that ``WebSocketsSansIOProtocol.__init__`` made; uvicorn puts, gets and asks whether the
    queue is empty, and sets, clears and waits on the flag. ``writable`` starts set."""
    protocol.queue = queue
    protocol.writable = writable
    writable.set()


def forget_response(protocol: WebSocketsSansIOProtocol) -> None:
    """Let the handshake's response go once sent (uvicorn does not read it again)."""
    if protocol.handshake_complete and protocol.response is not None:
        protocol.response = None  # type: ignore[assignment]  # let go once sent


def deliver_text(protocol: WebSocketsSansIOProtocol) -> UnicodeDecodeError | None:
    """The text path of ``WebSocketsSansIOProtocol.send_receive_event_to_app`` (copied from
    0.54.0): the message's frames, decoded, go to the app's receive queue and reading pauses
    until the app takes it. A message that is not UTF-8 is dropped and its error returned, for
    the caller to close the connection (upstream logs a traceback and closes with 1007)."""
    frames = protocol.frames
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    protocol.frames = []
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return exc
    protocol.queue.put_nowait({"type": "websocket.receive", "text": text})
    if not protocol.read_paused:
        protocol.read_paused = True
        protocol.transport.pause_reading()
    return None
