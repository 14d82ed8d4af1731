"""RawMember in isolation, on the ASGI lane (the one used where uvicorn's connection cannot be
reached): writes never wait, a client that stops reading is cut off alone, held frames are
released in order, and close comes after what was written."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.raw.connection import RawMember, State
from backend.realtime.dialects import WS_CHAT
from backend.realtime.wire import SLOW_CLIENT, AsgiLane, Outgoing
from backend.service.actors import SYSTEM


class FakeSocket:
    """Records what is sent through its ASGI ``send`` (and ``close``); ``stalled`` makes
    every text sent wait forever (a client not reading), while a close is still handed on."""

    def __init__(self, stalled: bool = False) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.stalled = stalled

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            await self.close(message.get("code", 1000), message.get("reason", ""))
            return
        if self.stalled:
            await asyncio.Event().wait()
        self.sent.append(message["text"])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def member(socket: Any, max_backlog: int = 10_000) -> RawMember:
    return RawMember(f"raw:test:{id(socket)}", SYSTEM, WS_CHAT, "/ws/chat/", socket,
                     AsgiLane(socket.send, max_backlog))


async def until(check: Any, within: float = 2.0) -> None:
    """Poll ``check`` (the fakes have no event for every condition a test waits on)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_stalled_client_is_cut_off_without_stalling_the_others() -> None:
    slow_socket, fast_socket = FakeSocket(stalled=True), FakeSocket()
    slow, fast = member(slow_socket, 30), member(fast_socket, 30)
    for n in range(25):
        # What the fan-out does: write to every member in turn; none of these may block.
        slow.write(Outgoing([f'"{n}"']))
        fast.write(Outgoing([f'"{n}"']))
        await asyncio.sleep(0)
    await until(lambda: len(fast_socket.sent) == 25)
    assert slow.overflowed and not fast.overflowed
    await until(lambda: slow_socket.closed is not None)
    assert slow_socket.closed == (SLOW_CLIENT, "Client too slow")
    slow.write(Outgoing(['"late"']))  # ignored, never raises
    await fast.stop()
    await slow.stop()


async def test_held_frames_are_released_in_order_minus_dropped() -> None:
    socket = FakeSocket()
    m = member(socket)
    m.hold()
    m.write(Outgoing(['{"type":"chat_message","message_id":1}', '{"type":"user_joined"}']))
    m.send({"type": "recent_messages"})  # direct frames pass the hold
    await until(lambda: len(socket.sent) == 1)
    m.release(drop=lambda f: f.get("message_id") == 1)
    await until(lambda: len(socket.sent) == 2)
    assert socket.sent == ['{"type":"recent_messages"}', '{"type":"user_joined"}']
    await m.stop()


async def test_close_comes_after_written_frames() -> None:
    socket = FakeSocket()
    m = member(socket)
    m.write(Outgoing(['"a"', '"b"']))
    await m.close(4002, "Device deactivated")
    m.write(Outgoing(['"after"']))
    assert m.state is State.CLOSING
    await until(lambda: socket.closed is not None)
    assert socket.sent == ['"a"', '"b"'] and socket.closed == (4002, "Device deactivated")
    await m.stop()
    assert m.state is State.DEAD
