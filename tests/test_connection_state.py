"""What each open connection keeps, and how it is kept alive: the lean queue and event behave
as asyncio's do; uvicorn's WebSocket protocol as trimmed by backend/realtime/protocol.py still
speaks WebSocket, lets the handshake response go, and does not time out a pong unread behind
the app; an Engine.IO socket moves only along its lifecycle; a session opened on WebSocket is served
in one frame with what is refused still refused, keeps only the environ its namespaces read,
pings on a timer and drops a silent client but not one whose pong waits behind its own
handler; the node's Socket.IO packets skip the library's
binary walk unless their JSON encoding refuses bytes, and clients' binary packets still
decode; raw upgrades reach their door without Starlette's routing chain. In process, on real
uvicorn servers and clients where a connection is needed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from socketio import packet as sio_packet
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from backend.compat.uvicorn import lean_init
from backend.compat.websockets import SHARED_ID, parse_frames, read_request
from backend.raw.adapter import Endpoint
from backend.raw.routes import RawRoutes
from backend.raw.ws_chat import WsChatDoor
from backend.realtime import engine
from backend.realtime.codec import Packet
from backend.realtime.protocol import WS_PROTOCOL, WebSocketProtocol, keepalive_wheel
from backend.realtime.queues import LeanEvent, LeanQueue
from backend.realtime.server import Server
from backend.realtime.wire import CONNECTION_KEY, DirectWires

# -- LeanQueue --------------------------------------------------------------------------------


async def test_lean_queue_is_fifo_and_counts_unfinished_items() -> None:
    queue: LeanQueue[int] = LeanQueue()
    assert queue.empty() and queue.qsize() == 0 and not queue.full()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    for i in range(3):
        await queue.put(i)
    assert queue.qsize() == 3 and queue.unfinished_tasks == 3
    assert [queue.get_nowait(), await queue.get(), queue.get_nowait()] == [0, 1, 2]
    assert queue.empty()
    for _ in range(3):
        queue.task_done()
    with pytest.raises(ValueError):
        queue.task_done()
    await asyncio.wait_for(queue.join(), 1)  # nothing unfinished: returns at once


async def test_lean_queue_wakes_waiting_getters_in_order() -> None:
    queue: LeanQueue[str] = LeanQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert await asyncio.wait_for(asyncio.gather(first, second), 1) == ["a", "b"]


async def test_a_cancelled_get_loses_no_item() -> None:
    queue: LeanQueue[str] = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)  # as Engine.IO's poll waits
    waiting = asyncio.ensure_future(queue.get())
    other = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("item")  # wakes ``waiting``...
    waiting.cancel()  # ...which is cancelled before it takes the item
    assert await asyncio.wait_for(other, 1) == "item"
    assert waiting.cancelled()


async def test_a_lone_waiting_get_cancelled_after_its_wake_leaves_the_item() -> None:
    queue: LeanQueue[str] = LeanQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("item")  # wakes the one getter...
    waiting.cancel()  # ...cancelled before it takes the item
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled() and queue.get_nowait() == "item"
    assert queue._getters is None  # nothing left behind
    again = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("next")
    assert await asyncio.wait_for(again, 1) == "next"


async def test_join_waits_for_every_task_done() -> None:
    queue: LeanQueue[int] = LeanQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    joined = asyncio.ensure_future(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0.01)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)


async def test_lean_event_wakes_every_waiter_and_forgets_cancelled_ones() -> None:
    event = LeanEvent()
    assert not event.is_set()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1) == [True, True]
    assert waiters[0].cancelled()
    assert await asyncio.wait_for(event.wait(), 1)  # set: returns at once
    event.clear()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(event.wait(), 0.01)
    assert event._waiters is None  # nothing left behind by the timed-out wait


# -- uvicorn's protocol, trimmed ----------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    pauses = resumes = 0

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)


def upgraded(config: Config) -> tuple[WebSocketProtocol, FakeTransport]:
    """Our protocol on a fake transport, a client's WebSocket upgrade request just received."""
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {})
    transport = FakeTransport()
    protocol.connection_made(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.data_received(
        f"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return protocol, transport


async def test_the_protocol_speaks_websocket_and_drops_the_handshake_response() -> None:
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The scope's copy of the headers stays.
        assert (b"host", b"test") in [(k.lower(), v) for k, v in scope["headers"]]
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        received.append(await receive())
        await send({"type": "websocket.send", "text": "pong"})

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None)
    protocol, transport = upgraded(config)
    assert config.ws_protocol_class is WebSocketProtocol
    assert isinstance(protocol.queue, LeanQueue) and isinstance(protocol.writable, LeanEvent)
    await asyncio.sleep(0.01)
    assert transport.written.startswith(b"HTTP/1.1 101")
    assert protocol.response is None  # sent, and let go
    assert protocol.request is None  # let go, by uvicorn's protocol and websockets' parser:
    assert protocol.conn.parser.gi_code is parse_frames.__code__  # frames only, past it
    # uvicorn's attributes are in slots (no instance dict), and the parser's id is shared.
    assert not vars(protocol)
    assert protocol.conn.id is SHARED_ID
    # A masked client text frame, as a client sends it.
    protocol.pause_writing()  # the transport pushes back: the app's send waits
    protocol.data_received(Frame(Opcode.TEXT, b"ping").serialize(mask=True, extensions=[]))
    await asyncio.sleep(0.01)
    assert received == [{"type": "websocket.receive", "text": "ping"}]
    assert "frame" not in protocol.conn.parser.gi_frame.f_locals  # handed on, not kept
    assert not transport.written.endswith(b"\x81\x04pong")
    protocol.resume_writing()
    await asyncio.sleep(0.01)
    assert transport.written.endswith(b"\x81\x04pong")


def collecting(received: list[str]) -> Any:
    """A WebSocket app that accepts and keeps the text of each message it receives."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            received.append(message["text"])

    return app


async def test_text_frames_reach_the_app_alone_in_a_read_split_or_together() -> None:
    """A text frame alone in its read skips the parser (``lone_text``); split across reads,
    two in one read, or too large, the parser reads them; an invalid one closes as before."""
    received: list[str] = []
    config = Config(app=collecting(received), ws=WS_PROTOCOL, ws_per_message_deflate=False,
                    lifespan="off", ws_ping_interval=None, ws_max_size=300)
    protocol, transport = upgraded(config)
    await asyncio.sleep(0.01)

    def framed(text: str) -> bytes:
        return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])

    async def arrives(*reads: bytes) -> None:
        for data in reads:
            protocol.data_received(data)
            await asyncio.sleep(0.01)

    parser = protocol.conn.parser
    await arrives(framed("h\u00e9"), framed("x" * 200))  # 7- and 16-bit lengths, alone
    assert protocol.conn.parser is parser and not protocol.conn.reader.buffer
    both = framed("one") + framed("two")
    await arrives(both[:4], both[4:])  # split, then two in one read
    assert received == ["h\u00e9", "x" * 200, "one", "two"]
    await arrives(framed("y" * 301))  # over the limit: the parser fails the connection
    assert received == ["h\u00e9", "x" * 200, "one", "two"]
    assert transport.closing and b"\x03\xf1" in transport.written  # 1009


async def test_reading_pauses_only_for_a_message_the_app_is_not_waiting_for() -> None:
    """A message the app waits for is handed over without pausing reading; one arriving
    while the app is busy pauses reading (the app is one message behind at most) until the
    app takes it. Split frames, through the parser, alike."""
    busy, release = asyncio.Event(), asyncio.Event()
    received: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            received.append(message["text"])
            if message["text"] == "slow":
                busy.set()
                await release.wait()

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None)
    protocol, transport = upgraded(config)
    await asyncio.sleep(0.01)

    def framed(text: str) -> bytes:
        return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])

    protocol.data_received(framed("one"))  # the app waits in receive
    assert not protocol.read_paused
    await asyncio.sleep(0.01)
    split = framed("two")
    protocol.data_received(split[:3])
    protocol.data_received(split[3:])
    await asyncio.sleep(0.01)
    assert received == ["one", "two"] and (transport.pauses, transport.resumes) == (0, 0)
    protocol.data_received(framed("slow"))
    await asyncio.wait_for(busy.wait(), 5)
    protocol.data_received(framed("queued"))  # the app is busy: reading stops here
    assert protocol.read_paused and transport.pauses == 1
    release.set()
    await asyncio.sleep(0.01)
    assert received == ["one", "two", "slow", "queued"]
    assert not protocol.read_paused and transport.resumes == 1
    for task in list(protocol.tasks):
        task.cancel()


async def test_whether_a_text_frame_may_skip_the_parser_is_known_from_its_last_read() -> None:
    """The parser's state is not asked at every frame but kept from the last read it was fed
    (``lone_limit``): mid-message, a text frame alone in its read goes to the parser, which
    refuses it (1002); once the message is complete, lone frames skip it again."""
    received: list[str] = []
    config = Config(app=collecting(received), ws=WS_PROTOCOL, ws_per_message_deflate=False,
                    lifespan="off", ws_ping_interval=None, ws_max_size=300)
    protocol, transport = upgraded(config)
    assert protocol.lone_limit == -1  # not accepted yet
    await asyncio.sleep(0.01)
    assert protocol.lone_limit == 300  # open, at rest: the size limit

    async def arrives(*frames: Frame) -> None:
        for frame in frames:
            protocol.data_received(frame.serialize(mask=True, extensions=[]))
            await asyncio.sleep(0.01)

    await arrives(Frame(Opcode.TEXT, b"ab", fin=False))
    assert protocol.lone_limit == -1  # mid-message
    await arrives(Frame(Opcode.CONT, b"cd"), Frame(Opcode.TEXT, b"ef"))
    assert received == ["abcd", "ef"] and protocol.lone_limit == 300
    await arrives(Frame(Opcode.TEXT, b"gh", fin=False), Frame(Opcode.TEXT, b"ij"))
    assert received == ["abcd", "ef"]  # a new message inside the last: refused
    assert transport.closing and b"\x03\xea" in transport.written  # 1002


async def test_a_lone_text_frame_that_is_not_utf8_closes_1007() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await receive()

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None)
    protocol, transport = upgraded(config)
    await asyncio.sleep(0.01)
    protocol.data_received(Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True, extensions=[]))
    await asyncio.sleep(0.01)
    assert transport.closing and b"\x03\xef" in transport.written  # 1007


async def test_a_refused_handshake_gets_its_400_and_nothing_fails() -> None:
    """A request websockets refuses (a version it does not speak): uvicorn answers 400 and
    closes, with no scope and no task; the protocol's own handshake step must not fail on
    it (an exception there is a traceback in the loop's log for every such request)."""
    failures: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    try:
        config = Config(app=lambda *args: None, ws=WS_PROTOCOL, ws_per_message_deflate=False,
                        lifespan="off", ws_ping_interval=None)
        config.load()
        protocol = WebSocketProtocol(config, ServerState(), {})
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(
            b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 12\r\n\r\n")
        await asyncio.sleep(0.01)
        assert transport.written.startswith(b"HTTP/1.1 400"), bytes(transport.written[:40])
        assert transport.closing
        assert not protocol.tasks
        assert protocol.request is None
        assert failures == []
    finally:
        loop.set_exception_handler(None)


HANDSHAKE = (b"GET /ws?token=t HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\n"
             b"connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"sec-websocket-version: 13\r\n")


def test_a_whole_request_is_read_as_websockets_reads_it_and_odd_ones_are_left_to_it() -> None:
    """``read_request`` gives what websockets' parser would, and leaves a request it would
    not take plainly (or a parser that has read something) to that parser, untouched."""
    whole = HANDSHAKE + b"x-odd: \t caf\xe9 \r\n\r\n"
    upstream = ServerProtocol()
    upstream.receive_data(whole)
    expected = upstream.events_received()[0]
    assert isinstance(expected, Request)
    request = read_request(ServerProtocol(), whole)
    assert request is not None
    assert (request.path, request.method, request.protocol,
            list(request.headers.raw_items())) == (
        expected.path, expected.method, expected.protocol, list(expected.headers.raw_items()))
    odd = [
        HANDSHAKE,  # not complete
        HANDSHAKE + b"\r\n" + b"\x81",  # something after it
        HANDSHAKE + b"bare: lf\n\r\n",
        HANDSHAKE + b"bad name: x\r\n\r\n",
        HANDSHAKE + b"bad-value: \x01\r\n\r\n",
        HANDSHAKE + b"".join(b"h%d: x\r\n" % n for n in range(130)) + b"\r\n",
        HANDSHAKE + b"long: " + b"x" * 9000 + b"\r\n\r\n",
        HANDSHAKE + b"transfer-encoding: chunked\r\n\r\n",
        HANDSHAKE + b"content-length: 5\r\n\r\n",
        HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/2.0") + b"\r\n",
        HANDSHAKE.replace(b"/ws", "/wé".encode()) + b"\r\n",
        HANDSHAKE.replace(b"GET /ws", b"GET /w\ns") + b"\r\n",
        HANDSHAKE.replace(b"GET", b"G" * 8200) + b"\r\n",
        HANDSHAKE + b": no name\r\n\r\n",
    ]
    for data in odd:
        parser = ServerProtocol()
        before = parser.parser
        assert read_request(parser, data) is None, data[-40:]
        assert parser.parser is before
    parser = ServerProtocol()
    parser.receive_data(HANDSHAKE[:20])  # the request line begun: the parser reads on
    assert read_request(parser, HANDSHAKE[20:] + b"\r\n") is None


async def test_a_request_in_pieces_or_refused_is_answered_by_websockets() -> None:
    """The handshake read in one step answers as websockets would: accepted with the server's
    own Date; a request in two reads, or with too many headers, goes to websockets' parser."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None)
    config.load()

    def connection() -> tuple[WebSocketProtocol, FakeTransport]:
        state = ServerState()
        state.default_headers = [(b"date", b"Sun, 06 Dec 2026 12:00:00 GMT"),
                                 (b"server", b"uvicorn")]
        protocol = WebSocketProtocol(config, state, {})
        transport = FakeTransport()
        protocol.connection_made(transport)
        return protocol, transport

    protocol, transport = connection()
    protocol.data_received(HANDSHAKE + b"\r\n")
    await asyncio.sleep(0.01)
    response = bytes(transport.written)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"date: Sun, 06 Dec 2026 12:00:00 GMT\r\n" in response
    assert response.count(b"ate: ") == 1  # the placeholder did not go out
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert protocol.conn.parser.gi_code is parse_frames.__code__

    protocol, transport = connection()
    protocol.data_received(HANDSHAKE[:30])
    protocol.data_received(HANDSHAKE[30:] + b"\r\n")
    await asyncio.sleep(0.01)
    assert bytes(transport.written).startswith(b"HTTP/1.1 101")

    protocol, transport = connection()
    protocol.data_received(
        HANDSHAKE + b"".join(b"h%d: x\r\n" % n for n in range(130)) + b"\r\n")
    await asyncio.sleep(0.01)
    assert not bytes(transport.written).startswith(b"HTTP/1.1 101")


async def test_the_accept_is_written_as_uvicorn_writes_it() -> None:
    """The accept's response, byte for byte as uvicorn's own ``send`` writes it: the server's
    default headers, the app's, the subprotocol chosen."""
    accept = {"type": "websocket.accept", "subprotocol": "chat",
              "headers": [(b"X-Request-ID", b"abc"), (b"set-cookie", b"a=b")]}
    written: list[bytes] = []
    for send in (WebSocketProtocol.send, WebSocketsSansIOProtocol.send):
        async def app(scope: dict[str, Any], receive: Any, send_: Any,
                      send: Any = send) -> None:
            await receive()
            await send(send_.__self__, accept)  # the protocol's own send, or uvicorn's

        config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False,
                        lifespan="off", ws_ping_interval=None)
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Sun, 06 Dec 2026 12:00:00 GMT"),
                                 (b"server", b"uvicorn")]
        protocol = WebSocketProtocol(config, state, {})
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE + b"sec-websocket-protocol: chat, other\r\n\r\n")
        await asyncio.sleep(0.01)
        assert protocol.handshake_complete
        written.append(bytes(transport.written))
    ours, upstream = written
    assert ours == upstream
    assert b"\r\ndate: Sun, 06 Dec 2026 12:00:00 GMT\r\nserver: uvicorn\r\n" in ours
    assert b"x-request-id: abc\r\n" in ours and b"Sec-WebSocket-Protocol: chat\r\n" in ours


class UpgradingTransport(FakeTransport):
    """A transport that counts what it is asked and knows its protocol, as uvloop's."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        self.asked.append(name)
        return super().get_extra_info(name, default)

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


async def test_an_upgraded_connection_takes_its_addresses_from_the_http_protocol() -> None:
    seen: list[tuple[Any, Any, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["client"], scope["server"], scope["scheme"]))
        await send({"type": "websocket.close"})

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None, http="httptools")
    config.load()
    transport = UpgradingTransport()
    http = HttpToolsProtocol(config, ServerState(), {})
    transport.set_protocol(http)
    http.connection_made(transport)
    asked = len(transport.asked)
    http.data_received(HANDSHAKE + b"\r\n")
    await asyncio.sleep(0.01)
    assert isinstance(transport.protocol, WebSocketProtocol)
    assert transport.asked[asked:] == []  # nothing asked again
    assert seen == [(("127.0.0.1", 5000), ("127.0.0.1", 8000), "ws")]
    # Served by another protocol than uvicorn's httptools one, the transport is asked.
    other = WebSocketProtocol(config, ServerState(), {})
    transport.set_protocol(None)
    other.connection_made(transport)
    assert other.client == ("127.0.0.1", 5000) and other.scheme == "ws"


async def test_proxy_headers_and_the_direct_wire_are_set_up_without_frames_under_the_connection(
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append({"client": scope["client"], "scheme": scope["scheme"],
                     "connection": scope["extensions"][CONNECTION_KEY], "frames": _callers()})
        await send({"type": "websocket.close"})

    # The node's app is wrapped in DirectWires, and uvicorn wraps it in its proxy headers.
    config = Config(app=DirectWires(app), ws=WS_PROTOCOL, ws_per_message_deflate=False,
                    lifespan="off", ws_ping_interval=None, proxy_headers=True,
                    forwarded_allow_ips="127.0.0.1")
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {})
    protocol.connection_made(FakeTransport())  # from 127.0.0.1, a trusted proxy
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.data_received(
        f"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        # Lower case, as uvicorn's HTTP protocol hands the upgrade on.
        f"x-forwarded-for: 203.0.113.9\r\nx-forwarded-proto: https\r\n\r\n".encode())
    await asyncio.sleep(0.01)
    assert seen == [{"client": ("203.0.113.9", 0), "scheme": "wss", "connection": protocol,
                     "frames": ["run_asgi"]}]


def _callers() -> list[str]:
    """The functions of the frames under the caller's, up to uvicorn's ``run_asgi``."""
    names: list[str] = []
    frame = sys._getframe(2)
    while frame is not None and not names[-1:] == ["run_asgi"]:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names[::-1]


async def test_the_keepalive_waits_for_a_pong_unread_behind_the_apps_backlog() -> None:
    go, accepted, taken = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        accepted.set()
        await go.wait()  # a handler slower than the pong's deadline
        assert (await receive())["text"] == "hi"
        taken.set()
        await asyncio.Event().wait()

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=None, ws_ping_timeout=20)
    protocol, transport = upgraded(config)
    await asyncio.wait_for(accepted.wait(), 5)
    protocol.data_received(Frame(Opcode.TEXT, b"hi").serialize(mask=True, extensions=[]))
    assert protocol.read_paused  # uvicorn reads no further until the app takes "hi"
    try:
        protocol.send_keepalive_ping()
        wheel = keepalive_wheel(protocol)
        assert wheel.scheduled(protocol) and protocol.pong_timer is None  # no timer of its own
        protocol.keepalive_timeout()  # the pong's deadline passes while reading is paused
        assert not transport.closing and wheel.scheduled(protocol)  # a new deadline
        go.set()
        await asyncio.wait_for(taken.wait(), 5)
        assert not protocol.read_paused
        protocol.keepalive_timeout()  # reading again, and still no pong: the client is gone
        assert transport.closing and b"keepalive ping timeout" in transport.written
    finally:
        protocol.stop_keepalive()
        for task in list(protocol.tasks):
            task.cancel()


async def test_only_the_pong_of_the_ping_in_flight_brings_the_next_ping() -> None:
    """A pong whose payload is not the ping's (stale, unsolicited) changes nothing: the pong
    is still awaited, by the same deadline; the answer, in whatever buffer the parser hands
    it, brings the next ping's deadline."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    config = Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False, lifespan="off",
                    ws_ping_interval=1, ws_ping_timeout=20)
    protocol, transport = upgraded(config)
    try:
        await asyncio.sleep(0)
        wheel = keepalive_wheel(protocol)
        protocol.send_keepalive_ping()
        payload = protocol.pending_ping_payload
        assert payload is not None
        deadline = protocol.due
        other = bytes(byte ^ 1 for byte in payload)
        protocol.data_received(Frame(Opcode.PONG, other).serialize(mask=True, extensions=[]))
        for stale in (other, bytearray(other), memoryview(other)):
            protocol.handle_pong(Frame(Opcode.PONG, stale))
        assert protocol.pending_ping_payload == payload and protocol.due == deadline
        protocol.handle_pong(Frame(Opcode.PONG, memoryview(bytearray(payload))))
        assert protocol.pending_ping_payload is None and wheel.scheduled(protocol)
        assert protocol.due < deadline  # the next ping, a second on: before the pong's 20 s
        assert not transport.closing
    finally:
        protocol.connection_lost(None)
        for task in list(protocol.tasks):
            task.cancel()


async def test_the_keepalive_pings_from_one_wheel_and_fails_a_client_that_stops_answering(
) -> None:
    """Many connections, one loop timer: each connection's next ping and pong deadline are
    entries of the loop's keepalive wheel. A pong brings the next ping; a ping left
    unanswered fails the connection (1011) as uvicorn's keepalive does."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    connections = [upgraded(Config(app=app, ws=WS_PROTOCOL, ws_per_message_deflate=False,
                                   lifespan="off", ws_ping_interval=0.1, ws_ping_timeout=0.2))
                   for _ in range(20)]
    answering, silent = connections[0], connections[1]
    loop = asyncio.get_running_loop()
    timers = len(loop._scheduled)  # type: ignore[attr-defined]  # asyncio's own loop here

    async def pinged(transport: FakeTransport, after: int) -> bytes:
        """The payload of the first ping written past byte ``after``."""
        async with asyncio.timeout(5):
            while (start := transport.written.find(b"\x89\x04", after)) < 0:  # noqa: ASYNC110 (until it is written)
                await asyncio.sleep(0.01)
        return bytes(transport.written[start + 2:start + 6])

    try:
        await asyncio.sleep(0)
        for protocol, _ in connections:
            assert protocol.ping_timer is None and keepalive_wheel(protocol).scheduled(protocol)
        assert len(keepalive_wheel(answering[0])) == 20
        # One loop timer (the wheel's) for the 20 connections' deadlines.
        assert len(loop._scheduled) <= timers + 1  # type: ignore[attr-defined]
        protocol, transport = answering
        seen, payloads = 0, set()
        parsed: list[bytes] = []
        parse = protocol.conn.receive_data
        protocol.conn.receive_data = lambda data: (parsed.append(data), parse(data))  # type: ignore[method-assign]
        for n in range(3):  # each pong answered: another ping follows, the connection stays
            payload = await pinged(transport, seen)
            payloads.add(payload)  # each ping its own payload: a stale pong answers none
            seen = len(transport.written)
            pong = Frame(Opcode.PONG, payload).serialize(mask=True, extensions=[])
            if n < 2:  # alone in its read: taken without websockets' parser
                protocol.data_received(pong)
                assert parsed == []
            else:  # split across reads: parsed as any frame
                protocol.data_received(pong[:3])
                protocol.data_received(pong[3:])
                assert parsed == [pong[:3], pong[3:]]
            assert protocol.pending_ping_payload is None and not transport.closing
        assert len(payloads) == 3
        protocol, transport = silent
        await pinged(transport, 0)
        async with asyncio.timeout(5):
            while not transport.closing:  # noqa: ASYNC110 (until the pong's deadline)
                await asyncio.sleep(0.01)
        assert b"keepalive ping timeout" in transport.written
        assert not keepalive_wheel(protocol).scheduled(protocol)
    finally:
        for protocol, _ in connections:
            protocol.connection_lost(None)
            for task in list(protocol.tasks):
                task.cancel()
    assert len(keepalive_wheel(answering[0])) == 0  # gone connections leave nothing behind


async def test_the_keepalive_is_the_apps_heartbeat_over_uvicorns_flags() -> None:
    """An app behind ``DirectWires(heartbeat=...)`` (the node's ``PING_INTERVAL_SECONDS``
    and ``PING_TIMEOUT_SECONDS``) sets its connections' keepalive whatever uvicorn's
    ``--ws-ping-interval`` and ``--ws-ping-timeout`` say, behind uvicorn's proxy-headers
    middleware too; any other app keeps uvicorn's."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    cases = [(DirectWires(app, heartbeat=(25.0, 15.0)), False, (25.0, 15.0)),
             (DirectWires(app, heartbeat=(25.0, 15.0)), True, (25.0, 15.0)),
             (DirectWires(app), False, (20.0, 20.0)),
             (app, True, (20.0, 20.0))]
    for served, proxied, expected in cases:
        config = Config(app=served, ws=WS_PROTOCOL, ws_per_message_deflate=False,
                        lifespan="off", proxy_headers=proxied, ws_ping_interval=20.0,
                        ws_ping_timeout=20.0)
        protocol, _ = upgraded(config)
        try:
            assert (protocol.ping_interval, protocol.ping_timeout) == expected, (served, proxied)
            await asyncio.sleep(0)
            # The first ping is due one interval after the handshake.
            wheel = keepalive_wheel(protocol)
            assert protocol.due * wheel.resolution - wheel.time() == pytest.approx(
                expected[0], abs=1.5)
        finally:
            protocol.connection_lost(None)
            for task in list(protocol.tasks):
                task.cancel()


# -- Engine.IO ------------------------------------------------------------------------------


def test_an_engineio_socket_moves_only_along_its_lifecycle() -> None:
    socket = engine.EngineSocket("sid", engine.Transport.WEBSOCKET,
                                 engine.EngineServer(async_mode="asgi"))
    assert socket.state is engine.State.OPENING
    with pytest.raises(engine.IllegalTransition):
        socket.move(engine.State.UPGRADING)  # not open yet
    for state in (engine.State.OPEN, engine.State.UPGRADING, engine.State.OPEN,
                  engine.State.CLOSING, engine.State.CLOSED):
        socket.move(state)
    for state in engine.State:
        with pytest.raises(engine.IllegalTransition):
            socket.move(state)  # closed for good


@contextlib.asynccontextmanager
async def engine_node(server: engine.EngineServer | None = None,
                      app: Any = None) -> AsyncIterator[str]:
    """``server`` (or ``app``) behind a real uvicorn (our WebSocket protocol, ``DirectWires``
    outermost as in the app) on an ephemeral port: its Engine.IO URL."""
    if app is None:
        assert server is not None
        app = server.handle_request
    config = Config(app=DirectWires(app), host="127.0.0.1", port=0, ws=WS_PROTOCOL,
                    ws_per_message_deflate=False, lifespan="off", log_level="warning")
    node = uvicorn.Server(config)
    listener = socket.create_server(("127.0.0.1", 0))  # listening: clients wait in its backlog
    running = asyncio.ensure_future(node.serve(sockets=[listener]))
    try:
        port = listener.getsockname()[1]
        path = "socket.io" if server is None else "engine.io"
        yield f"ws://127.0.0.1:{port}/{path}/?EIO=4&transport=websocket"
    finally:
        node.should_exit = True
        await running


async def test_engineio_pings_on_a_timer_and_drops_a_client_that_stops_answering() -> None:
    server = engine.EngineServer(async_mode="asgi", ping_interval=0.2, ping_timeout=0.3)
    gone: list[tuple[str, Any]] = []
    server.on("disconnect", lambda sid, reason: gone.append((sid, reason)))
    async with engine_node(server) as url, websockets.connect(url) as client:
        opened = json.loads((await asyncio.wait_for(client.recv(), 5))[1:])
        assert opened["pingInterval"] == 200 and opened["pingTimeout"] == 300
        eio_socket = server.sockets[opened["sid"]]
        tasks = len(asyncio.all_tasks())
        # Two ping rounds answered: the connection stays, and no task waits for a ping.
        for _ in range(2):
            assert await asyncio.wait_for(client.recv(), 5) == "2"
            assert len(asyncio.all_tasks()) == tasks
            await client.send("3")
        # The next ping's deadline, in the engine's one wheel: no loop timer of its own.
        assert server.heartbeats.scheduled(eio_socket) and len(server.heartbeats) == 1
        # The heartbeat is the engine's alone: the server's WebSocket keepalive is stopped.
        connection = eio_socket.lane.connection
        assert not keepalive_wheel(connection).scheduled(connection)
        # The next ping goes unanswered: within ping_timeout the server ends the connection.
        assert await asyncio.wait_for(client.recv(), 5) == "2"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
    assert gone == [(opened["sid"], server.reason.PING_TIMEOUT)]
    assert eio_socket.state is engine.State.CLOSED and not server.sockets


async def test_a_failing_engineio_message_handler_is_logged_and_the_socket_read_on(
        caplog: pytest.LogCaptureFixture) -> None:
    server = engine.EngineServer(async_mode="asgi", ping_interval=5, ping_timeout=5)
    seen: list[Any] = []
    next_read = asyncio.Event()

    async def message(sid: str, data: Any) -> None:
        if data == "fail":
            raise RuntimeError("handler bug")
        seen.append(data)
        next_read.set()

    server.on("message", message)
    async with engine_node(server) as url, websockets.connect(url) as client:
        await asyncio.wait_for(client.recv(), 5)  # OPEN
        with caplog.at_level(logging.ERROR):
            await client.send("4fail")
            await client.send("4next")
            await asyncio.wait_for(next_read.wait(), 5)
    assert seen == ["next"]
    assert "Engine.IO message handler failed" in caplog.text


async def test_a_pong_unread_behind_a_running_handler_is_not_held_against_the_client() -> None:
    # python-socketio handles a socket's events in its read loop, one at a time.
    sio, app = socketio_app(ping_interval=0.2, ping_timeout=0.3, async_handlers=False)
    server = sio.eio
    release, handled, gone = asyncio.Event(), [], []

    async def slow(sid: str, *data: Any) -> None:
        await release.wait()
        handled.append(data)

    sio.on("work", slow)
    disconnected = server.handlers["disconnect"]  # python-socketio's own

    async def disconnect(sid: str, reason: str) -> None:
        gone.append(reason)
        await disconnected(sid, reason)

    server.on("disconnect", disconnect)
    overdue_checks = asyncio.Event()
    check = server._pong_overdue

    def checked(socket: Any) -> None:
        check(socket)
        overdue_checks.set()

    server._pong_overdue = checked  # type: ignore[method-assign]
    async with engine_node(app=app) as url, websockets.connect(url) as client:
        await asyncio.wait_for(client.recv(), 5)  # OPEN
        await client.send("40")
        assert (await asyncio.wait_for(client.recv(), 5)).startswith("40")
        await client.send('42["work"]')  # its handler runs past the next ping's deadline
        await client.send('42["later"]')  # waits in the receive queue behind it
        assert await asyncio.wait_for(client.recv(), 5) == "2"
        await client.send("3")  # unread behind the handler and the queued event
        await asyncio.wait_for(overdue_checks.wait(), 5)  # the deadline passed meanwhile
        eio_socket, = server.sockets.values()
        assert eio_socket.state is engine.State.OPEN and eio_socket.busy
        assert eio_socket.ping_sent  # still unanswered, and not held against the client
        release.set()
        # The handler ends, the pong is read: the pings go on, the connection stays.
        assert await asyncio.wait_for(client.recv(), 5) == "2"
        await client.send("3")
        assert handled == [()] and not gone
    assert gone == [server.reason.TRANSPORT_CLOSE]


async def test_a_pong_with_nothing_queued_before_it_is_answered_at_once() -> None:
    """A pong read alone while nothing waits before it is taken by the engine as it arrives
    (``Wire.take_texts``), even while one of the socket's handlers runs: its read loop is
    not woken for it."""
    sio, app = socketio_app(ping_interval=0.2, ping_timeout=0.3, async_handlers=False)
    server = sio.eio
    release = asyncio.Event()

    async def slow(sid: str, *data: Any) -> None:
        await release.wait()

    sio.on("work", slow)
    async with engine_node(app=app) as url, websockets.connect(url) as client:
        await asyncio.wait_for(client.recv(), 5)  # OPEN
        await client.send("40")
        assert (await asyncio.wait_for(client.recv(), 5)).startswith("40")
        await client.send('42["work"]')  # the read loop waits in its handler from here on
        assert await asyncio.wait_for(client.recv(), 5) == "2"
        eio_socket, = server.sockets.values()
        assert eio_socket.busy and eio_socket.ping_sent
        await client.send("3")
        async with asyncio.timeout(5):
            while True:  # answered with the handler still running
                if not eio_socket.ping_sent:
                    break
                await asyncio.sleep(0.01)
        assert eio_socket.busy
        release.set()
        assert await asyncio.wait_for(client.recv(), 5) == "2"  # the pings go on


async def test_a_served_engineio_socket_keeps_only_the_environ_its_namespaces_read() -> None:
    server = engine.EngineServer(async_mode="asgi")
    environs: list[dict[str, Any]] = []
    server.on("connect", lambda sid, environ: environs.append(environ))
    async with engine_node(server) as url, websockets.connect(
            url + "&token=t", additional_headers={"Authorization": "Bearer b",
                                                  "User-Agent": "x" * 500}) as client:
        await asyncio.wait_for(client.recv(), 5)
        environ, = environs
        assert environ["QUERY_STRING"].endswith("&token=t")
        assert environ["HTTP_AUTHORIZATION"] == "Bearer b"
        assert "HTTP_USER_AGENT" not in environ and set(environ) <= engine.ENVIRON_KEPT
        scope = environ["asgi.scope"]
        # Copied above, not held twice; no subprotocol asked for: shared empty tuples.
        assert scope["headers"] == () and scope["subprotocols"] == ()


async def test_engineio_open_packets_name_each_socket_and_the_settings_of_the_moment() -> None:
    server = engine.EngineServer(async_mode="asgi", ping_interval=(1, 0.5), ping_timeout=2,
                                 max_http_buffer_size=4096)
    opened: list[str] = []
    async with engine_node(server) as url:
        for buffer in (4096, 4096, 8192):
            server.max_http_buffer_size = buffer
            async with websockets.connect(url) as client:
                text = await asyncio.wait_for(client.recv(), 5)
                assert isinstance(text, str) and text[0] == "0"
                opened.append(text)
    first, second, third = (json.loads(text[1:]) for text in opened)
    assert first == {"sid": first["sid"], "upgrades": [], "pingInterval": 1500,
                     "pingTimeout": 2000, "maxPayload": 4096}
    assert second["sid"] != first["sid"] and second == {**first, "sid": second["sid"]}
    assert third["maxPayload"] == 8192  # the setting now, not the one first written


def awaited_chain(task: asyncio.Task[Any]) -> list[str]:
    """The names of the coroutines ``task`` is awaiting through, outermost first."""
    names, coroutine = [], task.get_coro()
    while coroutine is not None and hasattr(coroutine, "cr_code"):
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


def socketio_app(**options: Any) -> tuple[Server, Any]:
    sio = Server(async_mode="asgi", frame_limit=65536, max_backlog=1 << 20, **options)
    sio.manager_initialized = True
    sio.manager.initialize()

    async def elsewhere(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not the Engine.IO path")

    return sio, engine.EngineEntry(elsewhere, sio, "socket.io")


async def test_a_websocket_first_session_is_served_in_one_frame() -> None:
    sio, app = socketio_app(cors_allowed_origins=["http://good.example"])
    refuse = {"now": False}
    admit = sio.eio.handlers["connect"]  # python-socketio's own

    async def connect(sid: str, environ: dict[str, Any]) -> Any:
        return False if refuse["now"] else await admit(sid, environ)

    sio.eio.on("connect", connect)
    async with engine_node(app=app) as url:
        async with websockets.connect(url, origin="http://good.example") as client:
            assert json.loads((await asyncio.wait_for(client.recv(), 5))[1:])["upgrades"] == []
            served, = sio.eio.sockets.values()
            assert served.task is not None
            chain = awaited_chain(served.task)
            # The engine's one frame (its opening steps leave none), right under uvicorn's
            # task (no middleware frame: the protocol's ``connection_app``) and above its
            # receive.
            first = chain.index("EngineServer._serve")
            assert chain[first - 1:first + 2] == [
                "WebSocketsSansIOProtocol.run_asgi", "EngineServer._serve",
                "WebSocketsSansIOProtocol.receive"]
            await client.send("3")  # a pong nobody asked for: ignored, the socket stays
            await client.send("40/")  # Socket.IO CONNECT to "/": answered
            assert (await asyncio.wait_for(client.recv(), 5)).startswith("40")
        # Refused: an origin not allowed, a protocol version it does not speak, a rejected
        # connection.
        for query, origin in ((url, "http://evil.example"),
                              (url.replace("EIO=4", "EIO=3"), "http://good.example")):
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(query, origin=origin):
                    pass
        refuse["now"] = True
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url, origin="http://good.example"):
                pass
    assert not sio.eio.sockets


# -- raw routes -------------------------------------------------------------------------------


async def test_raw_upgrades_go_straight_to_their_door_and_the_rest_to_the_fallback() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recording(Endpoint):
        __slots__ = ()

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(("door", scope))

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        seen.append(("fallback", scope))

    async def http(request: Any) -> Any:
        raise AssertionError("not called")

    app = Starlette(routes=[Route("/ws/chat/{conversation_id}/", http),
                            WebSocketRoute("/ws/chat/{conversation_id}/",
                                           Recording(WsChatDoor()))])
    routes = RawRoutes(app, fallback)
    for kind, path in (("websocket", "/ws/chat/12/"), ("websocket", "/socket.io/"),
                       ("http", "/ws/chat/12/")):
        await routes({"type": kind, "path": path, "root_path": "", "headers": []}, None, None)
    (door, scope), *rest = seen
    assert door == "door" and scope["path_params"] == {"conversation_id": "12"}
    assert scope["app"] is app and scope["router"] is app.router
    assert [(where, scope["path"]) for where, scope in rest] == [
        ("fallback", "/socket.io/"), ("fallback", "/ws/chat/12/")]


# -- Socket.IO packets --------------------------------------------------------------------------


def test_the_nodes_packets_are_built_without_a_binary_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the node sends is JSON: its packets skip python-socketio's walk of their data for
    bytes (11 µs a message dict) unless the JSON encoding refuses bytes, and are then sent
    with binary attachments; packets from clients still decode binary attachments."""
    sio = Server(async_mode="asgi", frame_limit=65536, max_backlog=1 << 20)
    assert sio.packet_class is Packet
    walks: list[Any] = []
    walk = Packet.data_is_binary.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Packet, "data_is_binary",
                        classmethod(lambda cls, data: walks.append(data) or walk(cls, data)))
    ack = sio.packet_class(sio_packet.ACK, namespace="/chat", data=[{"ok": True}], id=7)
    assert ack.encode() == '3/chat,7[{"ok":true}]'  # Engine.IO adds its "4"
    assert not walks
    # The walk would have made this a BINARY_EVENT when built: it is not run then, but when
    # encoding it to JSON fails.
    unwalked = sio.packet_class(sio_packet.EVENT, namespace="/chat", data=["f", b"\x01"])
    assert unwalked.packet_type == sio_packet.EVENT and not walks
    assert sio_packet.Packet(sio_packet.EVENT, data=["f", b"\x01"]).packet_type == \
        sio_packet.BINARY_EVENT
    assert unwalked.encode() == ['51-/chat,["f",{"_placeholder":true,"num":0}]', b"\x01"]
    assert walks
    binary_ack = sio.packet_class(sio_packet.ACK, data=[{"raw": bytearray(b"ab")}], id=2)
    assert binary_ack.encode() == ['61-2[{"raw":{"_placeholder":true,"num":0}}]',
                                   bytearray(b"ab")]
    # Anything else orjson refuses still fails, as before.
    with pytest.raises(TypeError):
        sio.packet_class(sio_packet.EVENT, data=["f", object()]).encode()
    inbound = sio.packet_class(encoded_packet='51-/chat,3["file",{"_placeholder":true,"num":0}]')
    assert inbound.packet_type == sio_packet.BINARY_EVENT and inbound.attachment_count == 1
    assert inbound.add_attachment(b"\x00\x01")
    assert inbound.data == ["file", b"\x00\x01"] and inbound.id == 3


async def test_engineio_long_polling_refuses_what_the_protocol_refuses() -> None:
    """A POST is answered ``ok``; a malformed payload, or a second GET while one is pending,
    is answered 400 and ends the session (the next request finds it gone)."""
    server = engine.EngineServer(async_mode="asgi", ping_interval=5, ping_timeout=5)
    gone: list[str] = []
    server.on("disconnect", lambda sid, reason: gone.append(reason))
    async with engine_node(server) as url, httpx.AsyncClient() as http:
        base = url.replace("ws://", "http://").replace("websocket", "polling")

        async def session() -> str:
            opened = await http.get(base)
            assert opened.status_code == 200 and opened.text.startswith("0")
            return f"{base}&sid={json.loads(opened.text[1:])['sid']}"

        first = await session()
        posted = await http.post(first, content="4hello")
        assert (posted.status_code, posted.text) == (200, "ok")
        assert (await http.post(first, content="9nonsense")).status_code == 400
        assert (await http.get(first)).status_code == 400  # the session is gone
        second = await session()
        pending = asyncio.ensure_future(http.get(second))
        eio_socket, = server.sockets.values()
        async with asyncio.timeout(5):
            while eio_socket.poll is None:  # noqa: ASYNC110 (until the first GET waits)
                await asyncio.sleep(0.01)
        assert (await http.get(second)).status_code == 400
        assert (await asyncio.wait_for(pending, 5)).text == "6"  # answered as it closes
        assert (await http.get(second)).status_code == 400
    assert gone == [server.reason.TRANSPORT_ERROR] * 2 and not server.sockets


async def test_a_get_pending_as_its_session_leaves_long_polling_is_refused() -> None:
    """A GET still waiting when its session moves to WebSocket is answered (400), not left
    waiting for packets that now go to the WebSocket (the move's own steps, in process)."""
    server = engine.EngineServer(async_mode="asgi")
    eio_socket = engine.EngineSocket("sid", engine.Transport.POLLING, server)
    eio_socket.move(engine.State.OPEN)
    pending = asyncio.ensure_future(server._poll(eio_socket))
    async with asyncio.timeout(5):
        while eio_socket.poll is None:  # noqa: ASYNC110 (until the GET waits)
            await asyncio.sleep(0)
    eio_socket.transport, eio_socket.outbox = engine.Transport.WEBSOCKET, None
    eio_socket.wake(False)
    with pytest.raises(engine._Refused) as refused:
        await asyncio.wait_for(pending, 5)
    assert refused.value.status == 400


def test_the_environ_keys_of_header_names_are_kept_for_a_few_names_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Header names' environ keys are kept (clients send the same few), up to a bound: names
    past it are still turned into keys, and not kept."""
    monkeypatch.setattr(engine, "_ENVIRON_KEYS", {})
    monkeypatch.setattr(engine, "ENVIRON_KEYS_KEPT", 3)
    headers = [(b"host", b"h"), (b"content-length", b"0"), (b"x-a", b"1"),
               (b"x-made-up", b"2"), (b"x-a", b"3")]
    environ = engine.make_environ({"headers": headers})
    assert {k: v for k, v in environ.items() if k.isupper() and "_" in k and k != "PATH_INFO"
            and k not in ("QUERY_STRING", "REMOTE_ADDR", "REQUEST_METHOD")} == {
        "HTTP_HOST": "h", "CONTENT_LENGTH": "0", "HTTP_X_A": "1,3", "HTTP_X_MADE_UP": "2"}
    assert engine._ENVIRON_KEYS == {b"host": "HTTP_HOST", b"content-length": "CONTENT_LENGTH",
                                    b"x-a": "HTTP_X_A"}
    assert engine.make_environ({"headers": headers}) == environ


async def test_the_lean_init_sets_up_what_uvicorn_s_init_sets_up() -> None:
    """``lean_init`` gives a protocol what uvicorn's ``__init__`` gives it, but the lean
    receive queue and writable flag."""
    config = Config(app=lambda *args: None, ws=WS_PROTOCOL, ws_per_message_deflate=True,
                    lifespan="off", ws_max_size=1234, ws_ping_interval=7.0)
    config.load()
    state = ServerState()
    upstream = WebSocketsSansIOProtocol(config, state, {"a": 1})

    class Bare:
        pass

    lean: Any = Bare()
    queue, writable = LeanQueue(), LeanEvent()
    lean_init(lean, config, state, {"a": 1}, upstream.loop, queue, writable)
    ours, theirs = vars(lean), vars(upstream)
    assert set(ours) == set(theirs)
    different = {"queue", "writable", "conn"}
    assert {k: v for k, v in ours.items() if k not in different} == {
        k: v for k, v in theirs.items() if k not in different}
    assert lean.queue is queue and lean.writable is writable and writable.is_set()
    for parser in (lean.conn, upstream.conn):
        assert type(parser) is ServerProtocol and parser.max_message_size == 1234
        assert parser.logger is upstream.logger
    assert [type(f) for f in lean.conn.available_extensions] == [
        type(f) for f in upstream.conn.available_extensions]
