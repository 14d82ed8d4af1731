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
- ``read_request`` parses a handshake request that arrives whole in one read (as uvicorn hands
  it over, rebuilt from what httptools parsed) without the parser's line-by-line generators,
  with ``Request.parse``'s and ``parse_headers``' checks (copied: ``_token_re``,
  ``_value_re``, ``MAX_NUM_HEADERS``, ``MAX_LINE_LENGTH``), and starts the parser's frame
  parser past it (``parse_frames``), as ``restart_frame_parser`` does; a request it cannot
  take whole and plain goes to the parser as before. It reads the parser's generators'
  ``gi_yieldfrom`` to know that nothing of the request was read yet;
- ``ClosableMidMessage.accept`` is ``ServerProtocol.accept`` without formatting the
  response's ``Date``: uvicorn deletes that header and writes its own (a date it formats once
  a second) before the response leaves; a request ``process_request`` refuses goes to
  upstream's ``accept``, which answers it;
- ``lone_text`` reads a text frame alone in its read, the frame ``parse_frames`` would read
  and ``Protocol.recv_frame`` would only list as an event (nearly every message a chat
  client sends), without them: it checks that the parser waits in ``parse_frames`` for a
  frame's first byte with nothing buffered, in state ``OPEN``, mid-message in no fragmented
  message (``current_size``), with no extension, and within ``max_message_size`` and
  ``max_fragment_size``; ``Frame.parse`` and ``Frame.check`` are what it reads as one. Its
  two halves: ``lone_limit`` (the parser at rest, and how large a payload may be), which a
  caller keeps between reads until the parser is fed or closed, and ``lone_payload`` (the
  frame itself); ``lone_pong`` and ``pong_payload`` the same for a keepalive's pong;
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

from websockets import http11
from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions import Extension
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING, OPEN, SERVER, Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:  # the C version, as websockets.frames takes it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    holds,
    present,
    signature,
    unchanged,
    version,
)

PIN = Pin("websockets", "17.4")
PINS = [PIN]

__all__ = ["CONNECTION_LINES", "LONE_MAX", "NO_EXTENSIONS", "SHARED_ID", "ClosableMidMessage",
           "forget_no_extensions", "lone_limit", "lone_payload", "lone_pong", "lone_text",
           "new_parser", "parse_frames", "pong_payload", "quiet_connection_lines", "read_request",
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

    def accept(self, request: Request) -> Response:
        """``ServerProtocol.accept`` (mirrored from 17.4) for a request it accepts, without the
        ``Date`` it would format (``email.utils.formatdate``, a sixtieth of a connect's CPU):
        uvicorn's ``send`` deletes that header and adds its own before the response is
        written, so it holds a placeholder until then. A request ``process_request`` refuses
        is answered by upstream's ``accept`` (which checks it again, the same way)."""
        self.accept_called = True
        try:
            accept_header, extensions_header, protocol_header = self.process_request(request)
        except Exception:
            return super().accept(request)
        headers = Headers()
        headers.set_insecure("Date", "")
        headers.set_insecure("Upgrade", "websocket")
        headers.set_insecure("Connection", "Upgrade")
        headers["Sec-WebSocket-Accept"] = accept_header
        if extensions_header is not None:
            headers["Sec-WebSocket-Extensions"] = extensions_header
        if protocol_header is not None:
            headers["Sec-WebSocket-Protocol"] = protocol_header
        return Response(101, "Switching Protocols", headers)


#: The ``id`` of every parser ``swap_parser`` swapped (see the module doc).
SHARED_ID = uuid.UUID(int=0)


def swap_parser(connection: Any) -> None:
    """Give uvicorn's websockets parser (``connection.conn``) the class ``ClosableMidMessage``
    (it adds no state: swapping the class builds nothing twice), and the shared ``id``."""
    parser = connection.conn
    parser.__class__ = ClosableMidMessage
    parser.id = SHARED_ID


def new_parser(*, extensions: Any, max_size: int | None,
               logger: logging.Logger) -> ClosableMidMessage:
    """``ServerProtocol(extensions=..., max_size=..., logger=...)`` as uvicorn's protocol
    makes it, ``ServerProtocol.__init__`` and ``Protocol.__init__`` mirrored from 17.4 (no
    origins, subprotocols or ``select_subprotocol``, state ``CONNECTING``), built as
    ``swap_parser`` leaves it (a ``ClosableMidMessage`` with the shared ``id``) rather than
    with a ``uuid4`` of its own (``os.urandom`` and ``UUID``'s checks at every connect)."""
    parser = ClosableMidMessage.__new__(ClosableMidMessage)
    parser.id = SHARED_ID
    parser.logger = logger
    parser.debug = logger.isEnabledFor(logging.DEBUG)
    parser.side = SERVER
    parser.state = CONNECTING
    parser.max_message_size, parser.max_fragment_size = max_size, None
    parser.current_size = None
    parser.expect_continuation_frame = False
    parser.origin = None
    parser.extensions = []
    parser.subprotocol = None
    parser.close_rcvd = None
    parser.close_sent = None
    parser.close_rcvd_then_sent = None
    parser.handshake_exc = None
    parser.eof_sent = False
    parser.reader = StreamReader()
    parser.events = []
    parser.writes = []
    parser.parser = parser.parse()
    next(parser.parser)  # start coroutine
    parser.parser_exc = None
    parser.origins = None
    parser.available_extensions = extensions
    parser.available_subprotocols = None
    parser.accept_called = False
    return parser


def _same_parser() -> bool:
    """``new_parser`` leaves what ``ServerProtocol`` and ``swap_parser`` leave: the same
    attributes with the same values (the generator aside, in the same state)."""
    logger = logging.getLogger("websockets.server")
    made = ServerProtocol(extensions=[], max_size=2**20, logger=logger)
    swap_parser(type("Connection", (), {"conn": made})())
    mirrored = new_parser(extensions=[], max_size=2**20, logger=logger)

    def state(parser: ServerProtocol) -> dict[str, Any]:
        attributes = dict(vars(parser))
        generator = attributes.pop("parser")
        reader = attributes.pop("reader")
        return {**attributes, "parser": generator.gi_code,
                "reader": (type(reader), vars(reader))}

    return type(made) is type(mirrored) and state(made) == state(mirrored)


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


def read_request(parser: ServerProtocol, data: bytes) -> Request | None:
    """The handshake request that is the whole of ``data``, parsed as ``Request.parse``
    (copied from 17.4, with ``parse_headers``' checks) would parse it, the parser moved on
    to reading frames (``parse_frames``) as it would be once the request is read: for the
    caller to handle the request as the event it would have been. None, with the parser
    untouched, when the parser has read anything already or ``data`` is not one complete
    request that upstream would take (a line too long, too many headers, a name or value
    it refuses, a bare LF, a body): the caller hands ``data`` to the parser, whose answer
    is upstream's own."""
    if (parser.state is not CONNECTING or parser.reader.buffer or parser.events
            or not _waits_for_request_line(parser)):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(data):
        return None
    first = data.find(b"\r\n")
    parts = data[:first].split(b" ", 2)
    if (len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")
            or first + 2 > http11.MAX_LINE_LENGTH or b"\n" in data[:first]):
        return None
    try:
        method, path = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    # Every header line checked at once: a name of token characters, a colon, a value of
    # the characters upstream allows (surrounding blanks included, which it strips first).
    block = data[first + 2:end + 2]
    if not _HEADER_LINES.fullmatch(block):
        return None
    lines = block.split(b"\r\n")
    lines.pop()  # after the last line's CRLF
    if len(lines) > http11.MAX_NUM_HEADERS:
        return None
    limit = http11.MAX_LINE_LENGTH - 2  # read_line's limit counts the CRLF
    headers = Headers()
    for line in lines:
        if len(line) > limit:
            return None
        name, _, value = line.partition(b":")
        headers.set_insecure(name.decode("ascii"), value.strip(b" \t").decode("iso-8859-1"))
    if "Transfer-Encoding" in headers or not set(headers.get_all("Content-Length")) <= {"0"}:
        return None
    fresh = parse_frames(parser)
    next(fresh)  # to its wait for the first frame
    outer, parser.parser = parser.parser, fresh
    outer.close()  # GeneratorExit: caught by none of the request's generators
    return Request(path, headers, method, parts[2].decode("ascii"))


def _waits_for_request_line(parser: ServerProtocol) -> bool:
    """Is the parser's generator at its start: ``ServerProtocol.parse`` in ``Request.parse``
    in the request line's ``parse_line``, nothing read?"""
    outer = parser.parser
    request = getattr(outer, "gi_yieldfrom", None)
    line = getattr(request, "gi_yieldfrom", None)
    return (getattr(getattr(outer, "gi_frame", None), "f_code", None) is _SERVER_PARSE
            and getattr(request, "gi_code", None) is _REQUEST_PARSE
            and getattr(line, "gi_code", None) is _PARSE_LINE)


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
    # The parser's generator (always one: websockets' parse or discard, or parse_frames)
    # waits in ``StreamReader.at_eof``; read as attributes, not through getattr's calls.
    waiting: Any = parser.parser.gi_yieldfrom  # type: ignore[attr-defined]
    if parser.reader.buffer or waiting is None or waiting.gi_code is not _AT_EOF:
        return None
    return pong_payload(data)


def pong_payload(data: bytes) -> bytes | None:
    """The payload of ``data`` when it is exactly one masked, final pong frame of 4 bytes;
    else None. Read without the parser when it waits for a frame's first byte with nothing
    buffered (``lone_pong``, or ``lone_limit`` at least 0)."""
    if len(data) != 10 or data[0] != 0x8A or data[1] != 0x84:
        return None
    return apply_mask(data[6:10], data[2:6])


def lone_text(parser: ServerProtocol, data: bytes) -> bytes | None:
    """The unmasked payload of ``data`` when it is exactly one masked, final text frame of
    at most 65,535 bytes, no RSV bit set, arriving while the parser waits in
    ``parse_frames`` for a frame's first byte with nothing buffered, its connection open, no
    fragmented message under way and no extension negotiated, within the size limits: the
    frame ``Frame.parse`` would read and ``Protocol.recv_frame`` would only list as an event
    (a complete text message changes none of the parser's state), read without them. None
    otherwise (anything else, or a frame the parser must refuse): the caller hands ``data``
    to the parser. ``lone_limit`` and ``lone_payload``, its two halves."""
    limit = lone_limit(parser)
    return None if limit < 0 else lone_payload(data, limit)


#: The largest payload ``lone_payload`` reads (a frame with a 16-bit length at most).
LONE_MAX = 65535


def lone_limit(parser: ServerProtocol) -> int:
    """How large a lone text frame's payload may be for ``lone_payload`` to read it as the
    parser would, the parser being as it is now: at rest (waiting in ``parse_frames`` for a
    frame's first byte with nothing buffered, its connection open, no fragmented message under
    way, no extension, no debug log), the smaller of its ``max_message_size`` and
    ``max_fragment_size`` (and ``LONE_MAX``); -1 when it is not at rest.

    Only what the parser is fed (``receive_data``, ``receive_eof``) and its closing
    (``send_close``, ``fail``) change it: a caller may keep it between reads as long as it
    asks again after each of those (a lone text frame read by ``lone_payload`` changes none
    of it)."""
    generator: Any = parser.parser  # always a generator (see lone_pong)
    waiting = generator.gi_yieldfrom
    if (parser.reader.buffer or parser.current_size is not None or parser.state is not OPEN
            or parser.extensions or parser.debug or generator.gi_code is not _PARSE_FRAMES
            or waiting is None or waiting.gi_code is not _AT_EOF):
        return -1
    limit = parser.max_message_size
    fragment = parser.max_fragment_size
    if fragment is not None and (limit is None or fragment < limit):
        limit = fragment
    return LONE_MAX if limit is None or limit > LONE_MAX else limit


def lone_payload(data: bytes, limit: int) -> bytes | None:
    """The unmasked payload of ``data`` when it is exactly one masked, final text frame, no
    RSV bit set, of at most ``limit`` bytes (``lone_limit``, at least 0: the parser at
    rest): what ``Frame.parse`` would read from it. None otherwise (another frame, several,
    part of one, unmasked, too large: the parser reads it, and refuses what it must)."""
    size = len(data)
    if size < 6 or data[0] != 0x81:
        return None
    length = data[1] ^ 0x80  # masked: the high bit set, taken off
    if length < 126:
        start = 6
    elif length == 126 and size >= 8:
        length = (data[2] << 8) | data[3]
        start = 8
    else:  # unmasked (refused by the parser), or a 64-bit length
        return None
    if start + length != size or length > limit:
        return None  # not one whole frame, or one the parser fails (1009)
    return apply_mask(data[start:], data[start - 4:start])


_PARSE_FRAMES = parse_frames.__code__
_SERVER_PARSE = ServerProtocol.parse.__code__
_REQUEST_PARSE = vars(Request)["parse"].__func__.__code__
_PARSE_LINE = http11.parse_line.__code__
#: Header lines as ``parse_headers`` takes them: its name and value patterns, one line each.
_HEADER_LINES = re.compile(b"(?:%s:%s\r\n)*" % (http11._token_re.pattern,
                                                  http11._value_re.pattern))
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


def _restarted_parser(max_size: int | None = 2**20) -> ServerProtocol | None:
    """A parser that has read a request and accepted it, its frame parser restarted (None
    when it could not be)."""
    parser = ServerProtocol(max_size=max_size)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
    request = parser.events_received()[0]
    if not isinstance(request, Request):
        return None
    parser.send_response(parser.accept(request))
    return parser if restart_frame_parser(parser) else None


def _restartable() -> bool:
    """A parser that has read a request restarts, and then parses frames."""
    parser = _restarted_parser()
    if parser is None:
        return False
    parser.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True, extensions=[]))
    frames = parser.events_received()
    return len(frames) == 1 and isinstance(frames[0], Frame) and frames[0].data == b"hi"


_SAMPLE_REQUEST = (b"GET /ws/chat/1/?token=a%20b HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n"
                   b"connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"sec-websocket-version: 13\r\nx-odd: \t caf\xe9 \r\n\r\n")


def _reads_as_upstream() -> bool:
    """``read_request`` reads a request as the parser does, and the parser then parses
    frames."""
    upstream = ServerProtocol()
    upstream.receive_data(_SAMPLE_REQUEST)
    expected = upstream.events_received()[0]
    parser = ServerProtocol()
    request = read_request(parser, _SAMPLE_REQUEST)
    if not isinstance(expected, Request) or request is None or (
            (request.path, request.method, request.protocol, list(request.headers.raw_items()))
            != (expected.path, expected.method, expected.protocol,
                list(expected.headers.raw_items()))):
        return False
    parser.send_response(parser.accept(request))
    parser.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True, extensions=[]))
    frames = parser.events_received()
    return len(frames) == 1 and isinstance(frames[0], Frame) and frames[0].data == b"hi"


def _reads_lone_texts() -> bool:
    """``lone_text`` reads what the parser reads from a text frame alone, and leaves the
    frames the parser must see (fragments, other opcodes, unmasked, too large) to it; a
    complete text frame leaves ``lone_limit`` as it was; a fragment, a close and a failure
    take the parser out of rest."""
    parser = _restarted_parser(max_size=100)
    if parser is None or lone_limit(parser) != 100:
        return False
    text = "h\u00e9llo".encode()
    for payload in (text, b"x" * 100):
        data = Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])
        if lone_text(parser, data) != payload:
            return False
        parser.receive_data(data)
        if [f.data for f in parser.events_received()] != [payload]:  # type: ignore[union-attr]
            return False
        if lone_limit(parser) != 100:
            return False
    refused = [Frame(Opcode.TEXT, b"x" * 101).serialize(mask=True, extensions=[]),
               Frame(Opcode.TEXT, text, fin=False).serialize(mask=True, extensions=[]),
               Frame(Opcode.BINARY, text).serialize(mask=True, extensions=[]),
               Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[])]
    if not all(lone_text(parser, data) is None for data in refused):
        return False
    parser.receive_data(Frame(Opcode.TEXT, text, fin=False).serialize(mask=True,
                                                                     extensions=[]))
    if lone_limit(parser) != -1:  # mid-message
        return False
    closing, failed = _restarted_parser(), _restarted_parser()
    if closing is None or failed is None:
        return False
    closing.send_close(1000)
    failed.fail(1011)
    return lone_limit(closing) == lone_limit(failed) == -1


def _reads_lone_pongs() -> bool:
    """``lone_pong`` reads a keepalive's pong as the parser reads it (an event it does
    nothing else with), and leaves it to the parser when anything is buffered."""
    parser = _restarted_parser()
    if parser is None:
        return False
    data = Frame(Opcode.PONG, b"\x01\x02\x03\x04").serialize(mask=True, extensions=[])
    if lone_pong(parser, data) != b"\x01\x02\x03\x04" or pong_payload(data[:9]) is not None:
        return False
    parser.receive_data(data)
    events = parser.events_received()
    if len(events) != 1 or getattr(events[0], "data", None) != b"\x01\x02\x03\x04":
        return False
    parser.receive_data(data[:3])
    return lone_pong(parser, data) is None


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
    # new_parser: the two constructors it mirrors, and what it leaves.
    unchanged(PIN, Protocol, "__init__", "76c731b216eb0941"),
    unchanged(PIN, ServerProtocol, "__init__", "8792b72850840da2"),
    holds(PIN, "new_parser leaves what ServerProtocol() and swap_parser leave", _same_parser,
          "a parser built as ServerProtocol.__init__ did is not the same"),
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
    # lone_text: a text frame as Frame.parse reads and checks it, listed by recv_frame.
    unchanged(PIN, Frame, "parse", "2964f6b18f3ae45d"),
    unchanged(PIN, Frame, "check", "31a8800e3cfeb00f"),
    unchanged(PIN, Protocol, "receive_data", "df57bef09335e176"),
    assigned(PIN, Protocol, "state"),
    holds(PIN, "a lone text frame reads as the parser reads it", _reads_lone_texts,
          "lone_text does not read a text frame as the parser does"),
    holds(PIN, "a lone pong reads as the parser reads it", _reads_lone_pongs,
          "lone_pong does not read a pong as the parser does"),
    holds(PIN, "a ServerProtocol's parser restarts after the request", _restartable,
          "the frame parser cannot be restarted after the handshake"),
    # read_request: Request.parse and parse_headers' checks, copied; the parser's generators
    # at their start; and ClosableMidMessage.accept, mirrored.
    unchanged(PIN, Request, "parse", "fd00e2611149536e"),
    unchanged(PIN, http11, "parse_headers", "90bddf8d62394fe6"),
    unchanged(PIN, http11, "parse_line", "a0524c5f11a26e80"),
    *(present(PIN, http11, name) for name in (
        "_token_re", "_value_re", "MAX_NUM_HEADERS", "MAX_LINE_LENGTH")),
    assigned(PIN, Protocol, "events"),
    holds(PIN, "read_request reads a request as ServerProtocol does", _reads_as_upstream,
          "the handshake request is no longer read as websockets reads it"),
    unchanged(PIN, ServerProtocol, "accept", "f2f96c48162dbfda"),
    assigned(PIN, ServerProtocol, "accept_called"),
    # forget_no_extensions
    assigned(PIN, ServerProtocol, "available_extensions"),
    holds(PIN, "a parser's extensions are replaced whole, its offer read by the handshake",
          _extensions_replaced_whole,
          "a parser's extensions are changed in place or read later: each needs its own"),
    holds(PIN, "a ServerProtocol logs its connection lines to its logger attribute", _quiet,
          "the parser's connection lines cannot be quieted"),
]
