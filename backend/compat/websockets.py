"""websockets 17.4 (pyproject.toml's pin; uvicorn's sans-I/O protocol is built on it).

The project relies on ``websockets.server.ServerProtocol``, the parser uvicorn keeps as its
protocol's ``conn``:

- ``ClosableMidMessage`` overrides ``Protocol.recv_frame`` and resets ``current_size``, the
  private state of a fragmented message in progress, so that a close frame between fragments
  is a close (RFC 6455 section 5.4);
- ``swap_parser`` changes the class of the parser uvicorn built (``__class__`` assignment:
  the instance keeps every option uvicorn set);
- ``send_close`` and ``data_to_send`` (public) write a close frame from ``backend/realtime/
  wire.py``;
- ``restart_frame_parser`` replaces the parser's generator (``parser``) once the handshake's
  request is parsed: ``ServerProtocol.parse`` reads the request, then delegates to
  ``Protocol.parse`` for frames, keeping the request (its path, with a token in the query)
  in a local of its own frame for the connection's life. It reads that delegation from the
  generators' ``gi_yieldfrom`` and the delegate's wait from ``StreamReader.at_eof``.
"""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

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

__all__ = ["ClosableMidMessage", "restart_frame_parser", "swap_parser"]


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


def restart_frame_parser(parser: ServerProtocol) -> bool:
    """Replace the parser's generator with a fresh ``Protocol.parse`` (the frame parser that
    ``ServerProtocol.parse`` delegates to once the request is read), letting the request go:
    done only while the delegate waits for a frame's first byte with nothing buffered, the
    state it is in once the request is parsed unless the client sent frames before its
    handshake was answered (which RFC 6455 forbids). Whether it was replaced."""
    outer = parser.parser
    inner = getattr(outer, "gi_yieldfrom", None)
    waiting = getattr(inner, "gi_yieldfrom", None)
    if (getattr(getattr(outer, "gi_frame", None), "f_code", None) is not _SERVER_PARSE
            or getattr(inner, "gi_code", None) is not _FRAME_PARSE
            or getattr(waiting, "gi_code", None) is not _AT_EOF or parser.reader.buffer):
        return False
    fresh = Protocol.parse(parser)
    next(fresh)  # to its wait for the first frame, as the delegate was
    parser.parser = fresh
    outer.close()  # GeneratorExit: caught by neither generator
    return True


_SERVER_PARSE = ServerProtocol.parse.__code__
_FRAME_PARSE = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


def _restartable() -> bool:
    """A parser that has read a request restarts, and then parses frames."""
    parser = ServerProtocol()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
    request = parser.events_received()[0]
    if not isinstance(request, Request):
        return False
    parser.send_response(parser.accept(request))
    if not restart_frame_parser(parser):
        return False
    parser.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True, extensions=[]))
    frames = parser.events_received()
    return len(frames) == 1 and isinstance(frames[0], Frame) and frames[0].data == b"hi"


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
    # restart_frame_parser: the request parsed by one generator, frames by its delegate.
    assigned(PIN, Protocol, "parser"),
    assigned(PIN, Protocol, "reader"),
    unchanged(PIN, ServerProtocol, "parse", "8c4d10340de4d32f"),
    unchanged(PIN, Protocol, "parse", "45aaf900644b63c4"),
    unchanged(PIN, StreamReader, "at_eof", "106a9f1e43abf91f"),
    holds(PIN, "a ServerProtocol's parser restarts after the request", _restartable,
          "the frame parser cannot be restarted after the handshake"),
]
