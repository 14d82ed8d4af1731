"""websockets 17.4 (pyproject.toml's pin; uvicorn's sans-I/O protocol is built on it).

The project relies on ``websockets.server.ServerProtocol``, the parser uvicorn keeps as its
protocol's ``conn``:

- ``ClosableMidMessage`` overrides ``Protocol.recv_frame`` and resets ``current_size``, the
  private state of a fragmented message in progress, so that a close frame between fragments
  is a close (RFC 6455 section 5.4);
- ``swap_parser`` changes the class of the parser uvicorn built (``__class__`` assignment:
  the instance keeps every option uvicorn set);
- ``send_close`` and ``data_to_send`` (public) write a close frame from ``backend/realtime/
  wire.py``.
"""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol
from websockets.server import ServerProtocol

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    holds,
    signature,
    unchanged,
    version,
)

PIN = Pin("websockets", "17.4")
PINS = [PIN]

__all__ = ["ClosableMidMessage", "swap_parser"]


class ClosableMidMessage(ServerProtocol):
    """websockets' server protocol, taking a close frame between the fragments of a message
    as a close: it raised "incomplete fragmented message" (1002) instead."""

    def recv_frame(self, frame: Frame) -> None:
        """A close frame ends the unfinished message (dropped, never complete) before
        websockets reads it, so that the close is echoed as any other close."""
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


def swap_parser(connection: Any) -> None:
    """Give uvicorn's websockets parser (``connection.conn``) the class ``ClosableMidMessage``
    (it adds no state: swapping the class builds nothing twice)."""
    connection.conn.__class__ = ClosableMidMessage


def _swappable() -> bool:
    parser = ServerProtocol()
    parser.__class__ = ClosableMidMessage
    return True


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    signature(PIN, Protocol, "recv_frame", ("self", "frame")),
    unchanged(PIN, Protocol, "recv_frame", "4f83d3b90ea62428"),
    assigned(PIN, ServerProtocol, "current_size"),
    signature(PIN, Protocol, "send_close", ("self", "code", "reason")),
    signature(PIN, Protocol, "data_to_send", ("self",)),
    holds(PIN, "ServerProtocol().__class__ = ClosableMidMessage", _swappable,
          "the parser's class cannot be swapped"),
]
