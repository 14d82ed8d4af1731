"""A client that ends its Engine.IO session with the CLOSE packet (``1``) has its transport
closed by the server at once, and the socket's slot of its user's cap is free again, whether
the session opened on WebSocket or was upgraded to it from long-polling.

Spoken as raw Engine.IO v4 over a WebSocket (the ``websockets`` library), against a server
whose cap is two sockets per user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess, start_server

#: How soon the server must close after the client's CLOSE (python-engineio's own loop
#: would wait for its read timeout: ping interval plus ping timeout, 45 s by default).
PROMPTLY = 2.0


@pytest.fixture(scope="module")
def capped_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "close", MAX_SOCKETS_PER_USER="2")
    yield server
    server.stop()


@pytest.fixture
async def user(capped_server: ServerProcess) -> AsyncIterator[TestUser]:
    api = Api(capped_server.base_url)
    yield await api.register()
    await api.aclose()


async def namespace_answer(ws: ClientConnection) -> str:
    """The server's CONNECT (``40``) or CONNECT_ERROR (``44``) for ``/chat``."""
    async with asyncio.timeout(5):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and frame[:8] in ("40/chat,", "44/chat,"):
                return frame[:2]


async def open_chat(server: ServerProcess, token: str) -> tuple[ClientConnection, str]:
    """An Engine.IO session opened on WebSocket, asking to join ``/chat``: the connection,
    and the namespace's answer (``40`` or ``44``)."""
    ws = await websockets.connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket")
    async with asyncio.timeout(5):
        assert (await ws.recv()).startswith("0")  # OPEN
    await ws.send("40/chat," + json.dumps({"token": token}))
    return ws, await namespace_answer(ws)


async def polling_chat(http: httpx.AsyncClient, base: str, token: str) -> str:
    """An Engine.IO session opened on long-polling at ``base`` and let into ``/chat``: its
    sid."""
    sid: str = json.loads((await http.get(base)).text[1:])["sid"]
    posted = await http.post(f"{base}&sid={sid}",
                             content="40/chat," + json.dumps({"token": token}))
    assert posted.status_code == 200
    assert "40/chat," in (await http.get(f"{base}&sid={sid}")).text
    return sid


async def closed_by_server(ws: ClientConnection) -> None:
    """Wait (bounded by ``PROMPTLY``) for the server to close the connection."""
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(PROMPTLY):
            while True:
                await ws.recv()


async def test_a_client_close_ends_a_websocket_session_at_once(
    capped_server: ServerProcess, user: TestUser
) -> None:
    first, answer = await open_chat(capped_server, user.token)
    assert answer == "40"
    second, answer = await open_chat(capped_server, user.token)
    assert answer == "40"
    over, answer = await open_chat(capped_server, user.token)
    assert answer == "44"  # the cap is full
    await over.close()

    await first.send("1")
    await closed_by_server(first)
    # The closed session no longer counts against the cap.
    third, answer = await open_chat(capped_server, user.token)
    assert answer == "40"
    for ws in (second, third):
        await ws.close()


async def test_a_client_close_ends_an_upgraded_session_at_once(
    capped_server: ServerProcess, user: TestUser
) -> None:
    base = f"{capped_server.base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient(timeout=10) as http:
        sid = await polling_chat(http, base, user.token)
    ws = await websockets.connect(
        f"{capped_server.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send("2probe")
    async with asyncio.timeout(5):
        assert await ws.recv() == "3probe"
    await ws.send("5")
    other, answer = await open_chat(capped_server, user.token)
    assert answer == "40"
    over, answer = await open_chat(capped_server, user.token)
    assert answer == "44"
    await over.close()

    await ws.send("1")
    await closed_by_server(ws)
    again, answer = await open_chat(capped_server, user.token)
    assert answer == "40"
    for conn in (other, again):
        await conn.close()


async def test_a_long_polling_get_that_arrives_after_the_client_s_close_gets_a_noop(
    capped_server: ServerProcess, user: TestUser
) -> None:
    """A client's GET and its CLOSE (a POST) travel on two connections: when the CLOSE comes
    first, the GET is answered as it would have been before it (NOOP, 200), and only a GET
    after that finds the session gone (400); the slot is free again."""
    base = f"{capped_server.base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient(timeout=10) as http:
        sid = await polling_chat(http, base, user.token)
        taken = [await open_chat(capped_server, user.token) for _ in range(2)]
        assert [answer for _, answer in taken] == ["40", "44"]  # the cap is full
        closed = await http.post(f"{base}&sid={sid}", content="1")
        assert closed.status_code == 200
        late = await http.get(f"{base}&sid={sid}")
        assert (late.status_code, late.text) == (200, "6")
        after = await http.get(f"{base}&sid={sid}")
        assert after.status_code == 400 and after.json()["message"] == "Session ID unknown"
    third = await chat_slot_free(capped_server, user.token)
    for ws in (*(ws for ws, _ in taken), third):
        await ws.close()


async def chat_slot_free(server: ServerProcess, token: str, within: float = 10.0,
                         ) -> ClientConnection:
    """Open ``/chat`` sessions until one is let in under the cap (bounded): a session the
    server has closed frees its slot once its disconnect has been handled."""
    async with asyncio.timeout(within):
        while True:
            ws, answer = await open_chat(server, token)
            if answer == "40":
                return ws
            await ws.close()
            await asyncio.sleep(0.1)


async def test_two_upgrades_of_one_session_leave_it_closable(
    capped_server: ServerProcess, user: TestUser
) -> None:
    base = f"{capped_server.base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient(timeout=10) as http:
        sid = await polling_chat(http, base, user.token)
    upgrade = f"{capped_server.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}"
    first = await websockets.connect(upgrade)
    second = await websockets.connect(upgrade)  # both accepted before either probes
    await first.send("2probe")
    async with asyncio.timeout(5):
        assert await first.recv() == "3probe"
    await second.send("2probe")  # the session is already being upgraded: refused
    await closed_by_server(second)
    await first.send("5")
    await first.send('42/chat,1["leave",{"conversation_id":1}]')
    async with asyncio.timeout(5):  # the session now lives on the first WebSocket
        while not str(await first.recv()).startswith("43/chat,1"):
            pass

    other = await chat_slot_free(capped_server, user.token)
    await first.close()  # the client drops it: the session ends and frees its slot
    again = await chat_slot_free(capped_server, user.token)
    for ws in (other, again):
        await ws.close()
