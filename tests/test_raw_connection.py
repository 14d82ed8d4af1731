"""Members in isolation. RawMember on the ASGI lane (the one used where uvicorn's connection
cannot be reached): writes never wait, a client that stops reading is cut off alone, held frames
are released in order, and close comes after what was written. A Socket.IO socket's hold while
it resumes one conversation keeps its other conversations' events."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson

from backend.raw.connection import RawMember, State
from backend.realtime.dialects import CHAT, WS_CHAT
from backend.realtime.engine import EngineServer
from backend.realtime.fanout import FanoutManager
from backend.realtime.members import SocketIOMember
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
    m.release(1, None, drop=lambda text: orjson.loads(text).get("message_id") == 1)
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


class FakeEngine:
    """What a Socket.IO member writes through: the texts it queues, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def direct_wire(self, sid: str) -> None:
        return None

    def send(self, sid: str, text: str) -> None:
        self.sent.append(text)


def socketio_member(manager: FanoutManager, *conversations: int) -> tuple[SocketIOMember,
                                                                            FakeEngine]:
    eio = FakeEngine()
    socket = SocketIOMember("s1", "e1", "/chat", SYSTEM, CHAT, cast(EngineServer, eio))
    manager.add_member(socket)
    for cid in conversations:
        manager.join(socket, f"conversation:{cid}")
    return socket, eio


def logged(manager: FanoutManager, cid: int, position: int) -> None:
    """A logged event of conversation ``cid`` at ``position``, as the fan-out delivers it."""
    manager.deliver("message_delete", {
        "payload": {"conversation_id": cid, "message_id": position, "position": position},
        "rooms": [f"conversation:{cid}"], "skip": [], "origin": None, "position": position})


def received(eio: FakeEngine) -> list[tuple[int, int]]:
    frames = [orjson.loads(text[text.index("["):])[1] for text in eio.sent]
    return [(frame["conversation_id"], frame["position"]) for frame in frames]


def test_a_resume_drops_only_the_resumed_conversations_events_it_answered() -> None:
    manager = FanoutManager()
    socket, eio = socketio_member(manager, 1, 2)
    socket.hold()  # join conversation 1 with since: its answer goes up to 500
    logged(manager, 2, 41)  # conversation 2 goes on meanwhile (its log is far behind)
    logged(manager, 1, 499)
    logged(manager, 1, 501)
    assert eio.sent == []
    socket.release(1, 500)
    assert received(eio) == [(2, 41), (1, 501)]
    logged(manager, 2, 42)
    assert received(eio)[-1] == (2, 42)


def test_overlapping_resumes_release_together_each_dropping_its_own() -> None:
    manager = FanoutManager()
    socket, eio = socketio_member(manager, 1, 2)
    socket.hold()
    socket.hold()
    logged(manager, 2, 41)
    logged(manager, 1, 10)
    logged(manager, 1, 11)
    socket.release(1, 10)
    assert eio.sent == []  # the other answer is not out yet
    socket.release(2, None)  # a partial answer: nothing of conversation 2 is dropped
    assert received(eio) == [(2, 41), (1, 11)]
