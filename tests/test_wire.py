"""The wire in isolation: frames as RFC 6455 builds them, writes in order, a backlog while the
transport pushes back, and a client past the bound cut off alone (close 1013, then dropped).
The ASGI lane (where there is no wire) bounds both doors' writes the same way."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.frames import Frame, Opcode

from backend.realtime import wire as wire_module
from backend.realtime.wire import SLOW_CLIENT, AsgiLane, Outgoing, Wire, frame, lane_for


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted.set()


class FakeProtocol:
    """The parts of uvicorn's ``WebSocketsSansIOProtocol`` a wire uses."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.handshake_complete = True
        self.close_sent = False
        self.disconnected = False
        self.client = ("127.0.0.1", 1)
        self.loop = asyncio.get_running_loop()
        self.conn = FakeConn()


class FakeConn:
    def __init__(self) -> None:
        self.close: tuple[int, str] | None = None

    def send_close(self, code: int, reason: str) -> None:
        self.close = (code, reason)

    def data_to_send(self) -> list[bytes]:
        return [b"<close>"]


def wire_of(protocol: FakeProtocol, max_backlog: int = 1000) -> Wire:
    made = Wire.of({"extensions": {wire_module.CONNECTION_KEY: protocol}}, max_backlog)
    assert made is not None
    return made


def test_frames_are_what_websockets_would_send() -> None:
    for size in (0, 125, 126, 65535, 65536, 70000):
        payload = b"y" * size
        assert frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert frame(b"\x00\x01", 0x82) == Frame(Opcode.BINARY, b"\x00\x01").serialize(
        mask=False, extensions=[])


def test_outgoing_frames_once_with_the_prefix() -> None:
    out = Outgoing(['{"a":1}', "b"], prefix="4")
    assert out.wire == frame(b'4{"a":1}') + frame(b"4b")
    assert out.wire is out.wire


def test_no_wire_without_a_connection() -> None:
    assert Wire.of({"extensions": {}}, 10) is None
    assert Wire.of({}, 10) is None


async def test_writes_go_out_at_once_and_in_order() -> None:
    protocol = FakeProtocol()
    wire = wire_of(protocol)
    wire.write(b"1")
    wire.write_text("2")
    assert protocol.transport.written == [b"1", frame(b"2")]


async def test_a_paused_transport_keeps_order_through_the_backlog() -> None:
    protocol = FakeProtocol()
    wire = wire_of(protocol)
    wire.write(b"a")
    protocol.writable.clear()  # the transport passed its high-water mark
    wire.write(b"b")
    wire.write(b"c")
    assert protocol.transport.written == [b"a"] and not wire.idle
    protocol.writable.set()
    wire.write(b"d")  # behind the backlog, even though the transport is writable again
    async with asyncio.timeout(1):
        await wire.flush()
    assert b"".join(protocol.transport.written) == b"abcd" and wire.idle


async def test_a_client_past_the_bound_is_cut_off_alone(monkeypatch: Any) -> None:
    monkeypatch.setattr(wire_module, "CUT_OFF_GRACE_SECONDS", 0.01)
    slow_protocol, fast_protocol = FakeProtocol(), FakeProtocol()
    slow, fast = wire_of(slow_protocol, 100), wire_of(fast_protocol, 100)
    slow_protocol.writable.clear()
    for _ in range(5):
        slow.write(b"x" * 30)
        fast.write(b"x" * 30)
    assert slow.cut_off and not slow.live and slow.idle
    assert slow_protocol.conn.close == (SLOW_CLIENT, "Client too slow")
    assert slow_protocol.transport.written == [b"<close>"] and slow_protocol.close_sent
    async with asyncio.timeout(1):
        await slow_protocol.transport.aborted.wait()
    slow.write(b"late")  # ignored, never raises
    assert slow_protocol.transport.written == [b"<close>"]
    assert not fast.cut_off and len(fast_protocol.transport.written) == 5


async def test_nothing_is_written_once_the_connection_closed() -> None:
    protocol = FakeProtocol()
    wire = wire_of(protocol)
    protocol.close_sent = True
    wire.write(b"a")
    assert protocol.transport.written == []


class StalledAsgi:
    """An ASGI ``send`` whose text messages never leave (a client not reading); a close is
    handed on."""

    def __init__(self) -> None:
        self.closed: dict[str, Any] | None = None
        self.texts: list[str] = []

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            self.closed = message
            return
        self.texts.append(message["text"])
        await asyncio.Event().wait()


async def test_the_asgi_lane_bounds_engineio_writes_and_cuts_off_alone() -> None:
    stalled, reading = StalledAsgi(), []

    async def read(message: dict[str, Any]) -> None:
        reading.append(message["text"])

    # Where there is no wire, lane_for gives both doors the same lane.
    slow = lane_for({}, stalled.send, 100)
    fast = lane_for({}, read, 100)
    assert isinstance(slow, AsgiLane) and isinstance(fast, AsgiLane)
    fast.put(Outgoing(['["hello"]'], "4"))  # a Socket.IO packet in an Engine.IO message
    for n in range(10):
        slow.write_text(f"42[{n:20}]")
        fast.write_text(f"42[{n:20}]")
        await asyncio.sleep(0)  # the writers' turn: the fast one empties its queue
    assert slow.cut_off and not fast.cut_off
    async with asyncio.timeout(1):
        await fast.flush()
        while stalled.closed is None:  # noqa: ASYNC110 (the close goes out in a task)
            await asyncio.sleep(0)
    assert stalled.closed == {"type": "websocket.close", "code": SLOW_CLIENT,
                              "reason": "Client too slow"}
    assert reading == ['4["hello"]', *(f"42[{n:20}]" for n in range(10))]
    slow.write_text("late")  # ignored, never raises
    assert stalled.texts == ["42[                   0]"]
    slow.stop()
    fast.stop()
