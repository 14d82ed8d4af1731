"""RawMember in isolation: writes only queue, a client that stops reading is cut off alone,
held frames are released in order, and close comes after what was queued."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.raw.connection import RawMember, State
from backend.realtime.dialects import WS_CHAT
from backend.service.actors import SYSTEM


class FakeSocket:
    """Records what is sent; ``stalled`` makes every send wait forever (a client not reading)."""

    def __init__(self, stalled: bool = False) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.stalled = stalled
        self.got = asyncio.Event()

    async def send_text(self, text: str) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        self.sent.append(text)
        self.got.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.got.set()


def member(socket: Any, **limits: int) -> RawMember:
    return RawMember(f"raw:test:{id(socket)}", SYSTEM, WS_CHAT, "/ws/chat/", socket, **limits)


async def until(check: Any, within: float = 2.0) -> None:
    """Poll ``check`` (the fakes have no event for every condition a test waits on)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_stalled_client_is_cut_off_without_stalling_the_others() -> None:
    slow_socket, fast_socket = FakeSocket(stalled=True), FakeSocket()
    slow, fast = member(slow_socket, max_frames=10), member(fast_socket, max_frames=10)
    slow.start()
    fast.start()
    for n in range(25):
        # What the fan-out does: write to every member in turn; none of these may block.
        async with asyncio.timeout(0.5):
            await slow.write([f'"{n}"'])
            await fast.write([f'"{n}"'])
        await asyncio.sleep(0)
    await until(lambda: len(fast_socket.sent) == 25)
    assert slow.overflowed and slow.state is State.DEAD
    await until(lambda: slow.writer is not None and slow.writer.done())
    await slow.write(['"late"'])  # ignored, never raises
    assert fast.state is State.OPEN and not fast.overflowed
    await fast.stop()
    await slow.stop()


async def test_byte_bound() -> None:
    socket = FakeSocket(stalled=True)
    m = member(socket, max_bytes=100)
    m.start()
    await m.write(["x" * 60])
    assert not m.overflowed
    await m.write(["x" * 60])
    assert m.overflowed
    await m.stop()


async def test_held_frames_are_released_in_order_minus_dropped() -> None:
    socket = FakeSocket()
    m = member(socket)
    m.start()
    m.hold()
    await m.write(['{"type":"chat_message","message_id":1}', '{"type":"user_joined"}'])
    m.send({"type": "recent_messages"})  # direct frames pass the hold
    await until(lambda: len(socket.sent) == 1)
    m.release(drop=lambda f: f.get("message_id") == 1)
    await until(lambda: len(socket.sent) == 2)
    assert socket.sent == ['{"type":"recent_messages"}', '{"type":"user_joined"}']
    await m.stop()


async def test_close_comes_after_queued_frames_and_ends_the_writer() -> None:
    socket = FakeSocket()
    m = member(socket)
    m.start()
    await m.write(['"a"', '"b"'])
    await m.close(4002, "Device deactivated")
    await m.write(['"after"'])
    assert m.writer is not None
    await asyncio.wait_for(m.writer, 1)
    assert socket.sent == ['"a"', '"b"'] and socket.closed == (4002, "Device deactivated")
