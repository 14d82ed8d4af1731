"""websockets 17.4 (pyproject.toml's pin; uvicorn's sans-I/O protocol is built on it).

The project relies on ``websockets.server.ServerProtocol``, the parser uvicorn keeps as its
protocol's ``conn``:

- ``ClosableMidMessage`` overrides ``Protocol.recv_frame`` and resets ``current_size``, the
  private state of a fragmented message in progress, so that a close frame between fragments
  is a close (RFC 6455 section 5.4);
- ``swap_parser`` changes the class of the parser uvicorn built (``__class__`` assignment:
  the instance keeps every option uvicorn set), and gives it the one ``id`` every parser of
  the node shares (``SHARED_ID``): websockets makes a random UUID per connection for the
  logs of its own connection classes, which neither its sans-I/O protocol nor uvicorn's
  reads (0.17 KB per connection);
- ``send_close`` and ``data_to_send`` (public) write a close frame from ``backend/realtime/
  wire.py``;
- ``restart_frame_parser`` replaces the parser's generator (``parser``) once the handshake's
  request is parsed: ``ServerProtocol.parse`` reads the request, then delegates to
  ``Protocol.parse`` for frames, keeping the request (its path, with a token in the query)
  in a local of its own frame for the connection's life. It reads that delegation from the
  generators' ``gi_yieldfrom`` and the delegate's wait from ``StreamReader.at_eof``. The new
  generator is ``parse_frames``, ``Protocol.parse`` copied, which lets each frame go once it
  is handed on (upstream's keeps the last frame received, a client's last message, in a
  local while it waits for the next); it reads the parser's private ``reader``,
  ``current_size``, ``max_message_size``, ``max_fragment_size``, ``side``, ``extensions``,
  ``debug`` and ``parser_exc``;
- ``forget_no_extensions`` gives a parser that negotiated no extension (the node offers
  none: no per-message deflate) the one empty ``extensions`` list every such parser shares,
  and drops ``available_extensions``, the offer (uvicorn's empty list), which only the
  handshake reads (0.11 KB per connection); websockets replaces the negotiated list, it never
  changes one in place;
- ``quiet_connection_lines`` points the parser's ``logger`` (the logger it writes its
  ``connection open`` and ``connection closed`` lines to, set from its ``logger`` argument)
  at a logger that keeps only warnings and errors.
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Generator
from typing import Any

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions import Extension
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import SERVER, Protocol
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

__all__ = ["CONNECTION_LINES", "NO_EXTENSIONS", "SHARED_ID", "ClosableMidMessage",
           "forget_no_extensions", "lone_pong", "parse_frames", "quiet_connection_lines",
           "restart_frame_parser", "swap_parser"]


class ClosableMidMessage(ServerProtocol):
    """websockets' server protocol, taking a close frame between the fragments of a message
    as a close: it raised "incomplete fragmented message" (1002) instead."""

    def recv_frame(self, frame: Frame) -> None:
        """A close frame ends the unfinished message (dropped, never complete) before
        websockets reads it, so that the close is echoed as any other close."""
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


#: The ``id`` of every parser ``swap_parser`` swapped (see the module doc).
SHARED_ID = uuid.UUID(int=0)


def swap_parser(connection: Any) -> None:
    """Give uvicorn's websockets parser (``connection.conn``) the class ``ClosableMidMessage``
    (it adds no state: swapping the class builds nothing twice), and the shared ``id``."""
    parser = connection.conn
    parser.__class__ = ClosableMidMessage
    parser.id = SHARED_ID


def _id_unread() -> bool:
    """Nothing in websockets' sans-I/O protocol and uvicorn's protocol built on it reads a
    parser's ``id`` (only ``Protocol.__init__`` assigns it)."""
    import websockets.protocol
    import websockets.server
    from uvicorn.protocols.websockets import websockets_sansio_impl

    uses = [use for module in (websockets.protocol, websockets.server, websockets_sansio_impl)
            for use in re.findall(r"\.id\b.*", inspect.getsource(module))]
    return uses == [".id: uuid.UUID = uuid.uuid4()"]


#: The negotiated extensions of every parser that has none (``forget_no_extensions``).
NO_EXTENSIONS: list[Extension] = []


def forget_no_extensions(parser: ServerProtocol) -> None:
    """Once the handshake is answered: a parser that negotiated no extension holds the shared
    empty list, and none of the offer (read by the handshake alone)."""
    if not parser.extensions:
        parser.extensions = NO_EXTENSIONS
    if not parser.available_extensions:
        parser.available_extensions = None


def _extensions_replaced_whole() -> bool:
    """websockets' sans-I/O protocol and uvicorn's assign a parser's ``extensions`` and
    ``available_extensions``, never change them in place, and read the offer only in the
    handshake (``process_extensions``)."""
    import websockets.protocol
    import websockets.server
    from uvicorn.protocols.websockets import websockets_sansio_impl

    sources = [inspect.getsource(module) for module in (
        websockets.protocol, websockets.server, websockets_sansio_impl)]
    in_place = re.compile(r"\.(available_)?extensions\s*(\+=|\[[^\]]*\]\s*=|\.(append|extend"
                          r"|insert|remove|pop|clear|sort|reverse)\b)")
    if any(in_place.search(source) for source in sources):
        return False
    offer_reads = [line.strip() for source in sources for line in source.splitlines()
                   if "self.available_extensions" in line]
    return offer_reads == ["self.available_extensions = extensions",
                           "if header_values and self.available_extensions:",
                           "for ext_factory in self.available_extensions:"]


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
    fresh = parse_frames(parser)
    next(fresh)  # to its wait for the first frame, as the delegate was
    parser.parser = fresh
    outer.close()  # GeneratorExit: caught by neither generator
    return True


def parse_frames(self: Protocol) -> Generator[None, None, None]:
    """``Protocol.parse`` (copied from 17.4): frames from the parser's reader, each handed to
    ``recv_frame``, errors turned into a failed connection. One change: the frame is not
    kept while the next is awaited."""
    try:
        while True:
            if (yield from self.reader.at_eof()):
                if self.debug:
                    self.logger.debug("< EOF")
                raise EOFError("unexpected end of stream")
            max_size = None
            if self.max_message_size is not None:
                if self.current_size is None:
                    max_size = self.max_message_size
                else:
                    max_size = self.max_message_size - self.current_size
            if self.max_fragment_size is not None:
                if max_size is None:
                    max_size = self.max_fragment_size
                else:
                    max_size = min(max_size, self.max_fragment_size)
            frame = yield from Frame.parse(
                self.reader.read_exact,
                mask=self.side is SERVER,
                max_size=max_size,
                extensions=self.extensions,
            )
            if self.debug:
                self.logger.debug("< %s", frame)
            self.recv_frame(frame)
            del frame  # the change: not held while the next frame is awaited
    except ProtocolError as exc:
        self.fail(CloseCode.PROTOCOL_ERROR, str(exc))
        self.parser_exc = exc
    except EOFError as exc:
        self.fail(CloseCode.ABNORMAL_CLOSURE, str(exc))
        self.parser_exc = exc
    except UnicodeDecodeError as exc:
        self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
        self.parser_exc = exc
    except PayloadTooBig as exc:
        exc.set_current_size(self.current_size)
        self.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
        self.parser_exc = exc
    except Exception as exc:
        self.logger.error("parser failed", exc_info=True)
        # Don't include exception details, which may be security-sensitive.
        self.fail(CloseCode.INTERNAL_ERROR)
        self.parser_exc = exc
    yield
    raise AssertionError("parse() shouldn't step after error")


def lone_pong(parser: ServerProtocol, data: bytes) -> bytes | None:
    """The payload of ``data`` when it is exactly one masked, final pong frame of 4 bytes (a
    keepalive ping's answer) arriving while the parser waits for a frame's first byte with
    nothing buffered: the frame ``Protocol.parse`` would read and ``Protocol.recv_frame``
    would only list as an event (it does nothing else with a pong), read without them. None
    otherwise: the caller hands ``data`` to the parser."""
    if (len(data) != 10 or data[0] != 0x8A or data[1] != 0x84 or parser.reader.buffer
            or getattr(getattr(parser.parser, "gi_yieldfrom", None), "gi_code", None)
            is not _AT_EOF):
        return None
    mask = int.from_bytes(data[2:6], "big")
    return (int.from_bytes(data[6:10], "big") ^ mask).to_bytes(4, "big")


_SERVER_PARSE = ServerProtocol.parse.__code__
_FRAME_PARSE = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


#: Where a parser quieted by ``quiet_connection_lines`` logs: its warnings and errors only.
#: (Not under ``uvicorn``: uvicorn's logging set-up resets its loggers' children.)
CONNECTION_LINES = logging.getLogger("confab.connections")
CONNECTION_LINES.setLevel(logging.WARNING)


def quiet_connection_lines(parser: ServerProtocol) -> None:
    """The parser's per-connection ``INFO`` lines (``connection open``, ``connection
    closed``, the handshake's response) are left out at the level check, before any record is
    made; its warnings and errors are still written."""
    parser.logger = CONNECTION_LINES


def _quiet() -> bool:
    """A quieted parser's handshake logs nothing at ``INFO``."""
    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Seen(logging.DEBUG)
    CONNECTION_LINES.addHandler(handler)
    CONNECTION_LINES.propagate = False  # the check's own lines are written nowhere else
    try:
        parser = ServerProtocol()
        quiet_connection_lines(parser)
        parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n"
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n")
        request = parser.events_received()[0]
        if not isinstance(request, Request):
            return False
        parser.send_response(parser.accept(request))
        CONNECTION_LINES.setLevel(logging.INFO)  # the line would be written there
        parser.send_close(1000, "")
        parser.receive_data(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True,
                                                                         extensions=[]))
        parser.receive_eof()
    finally:
        CONNECTION_LINES.setLevel(logging.WARNING)
        CONNECTION_LINES.propagate = True
        CONNECTION_LINES.removeHandler(handler)
    return seen == ["connection closed"]


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
    holds(PIN, "a ServerProtocol's id is read by no one", _id_unread,
          "a parser's id is read: each needs its own again (drop SHARED_ID)"),
    # restart_frame_parser: the request parsed by one generator, frames by its delegate.
    # (``max_message_size`` is assigned with ``max_fragment_size`` in one tuple; the copy's
    # reading of both is the fingerprinted Protocol.parse's, and the check below parses.)
    *(assigned(PIN, Protocol, name) for name in (
        "parser", "reader", "current_size", "max_fragment_size", "side", "extensions",
        "debug", "parser_exc")),
    unchanged(PIN, ServerProtocol, "parse", "8c4d10340de4d32f"),
    unchanged(PIN, Protocol, "parse", "45aaf900644b63c4"),
    unchanged(PIN, StreamReader, "at_eof", "106a9f1e43abf91f"),
    # lone_pong: what recv_frame does with a pong (nothing but list it) is read from it.
    unchanged(PIN, Protocol, "recv_frame", "4f83d3b90ea62428"),
    holds(PIN, "a ServerProtocol's parser restarts after the request", _restartable,
          "the frame parser cannot be restarted after the handshake"),
    # forget_no_extensions
    assigned(PIN, ServerProtocol, "available_extensions"),
    holds(PIN, "a parser's extensions are replaced whole, its offer read by the handshake",
          _extensions_replaced_whole,
          "a parser's extensions are changed in place or read later: each needs its own"),
    holds(PIN, "a ServerProtocol logs its connection lines to its logger attribute", _quiet,
          "the parser's connection lines cannot be quieted"),
]
