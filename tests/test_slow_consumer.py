"""A client that stops reading is cut off once its backlog passes ``MAX_BACKLOG_BYTES``, alone:
on a raw route and on Socket.IO, while a reader on each transport gets every message in order
and the connections keep working. Closing sockets that stopped reading (a logout) waits for
none of them: their last frames and close follow in the background."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backend.realtime.engine import CLOSE_FLUSH_SECONDS
from tests.support.client import Api
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import raw
from tests.test_socketio_helpers import chat_client, group

MESSAGES = 600
CONTENT = "x" * 3900  # near the content limit: the backlog fills fast
#: The logout test: its server's backlog bound, and how many of the messages above fill more
#: than the kernel's buffers take in (on loopback, several MB) under that bound.
BIG_BACKLOG = 64 * 1024 * 1024
FILL = 1500
STALLED = 3


@pytest.fixture(scope="module")
def small_backlog_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "slow-consumer", MAX_BACKLOG_BYTES="65536",
                          SEND_RATE_PER_SECOND="100000", SEND_BURST="100000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def roomy_backlog_server(work_dir: Path) -> Iterator[ServerProcess]:
    """Stalled clients fall far behind here without being cut off."""
    server = start_server(work_dir / "slow-logout", MAX_BACKLOG_BYTES=str(BIG_BACKLOG),
                          SEND_RATE_PER_SECOND="100000", SEND_BURST="100000")
    yield server
    server.stop()


@asynccontextmanager
async def stalled(url: str) -> AsyncIterator[ClientConnection]:
    """A WebSocket client that reads nothing it is not asked to: a tiny receive buffer, and a
    one-message queue past which the client stops reading its socket."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    async with connect(url, sock=sock, max_queue=1, open_timeout=5, close_timeout=1) as ws:
        yield ws


async def until_closed(ws: ClientConnection, within: float = 20.0) -> None:
    """Read what is left until the server's end of the connection is gone."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                await ws.recv()


async def test_a_stalled_reader_is_cut_off_alone(small_backlog_server: ServerProcess) -> None:
    server = small_backlog_server
    api = Api(server.base_url)
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    conversation = await group(api, alice, bob, carol, dave)
    ws_base = f"{server.ws_url}/ws/chat/{conversation}/?token="
    sio_reader = await chat_client(api, dave, conversation)
    sender = await chat_client(api, alice, conversation)  # it reads its acks as they come
    try:
        async with raw(ws_base + bob.token) as reader, \
                stalled(ws_base + carol.token) as raw_stalled, \
                stalled(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket") as sio_stalled:
            # Engine.IO by hand: OPEN, then CONNECT to /chat; after its answer, read nothing.
            assert (await sio_stalled.recv()).startswith("0")
            await sio_stalled.send("40/chat," + json.dumps(
                {"token": carol.token, "conversation_id": conversation}))
            assert (await sio_stalled.recv()).startswith("40/chat,")
            await raw_stalled.recv()  # connection_established; nothing more is read

            await reader.next("recent_messages")
            for n in range(MESSAGES):
                await sender.emit("chat_message", {"conversation_id": conversation,
                                                   "content": f"{n} {CONTENT}"})
            for n in range(MESSAGES):
                frame = await reader.next(lambda f: f.get("type") == "chat_message", within=20)
                assert frame["content"].split(" ")[0] == str(n)
            for n in range(MESSAGES):
                message = await sio_reader.next("chat_message", within=20)
                assert message["message"]["content"].split(" ")[0] == str(n)

            # Both stalled clients were dropped; the raw one was told why if it read in time.
            await until_closed(raw_stalled)
            await until_closed(sio_stalled)
            assert raw_stalled.close_code in (1013, 1006)

            # The others carry on.
            await sender.emit("chat_message", {"conversation_id": conversation,
                                               "content": "after"})
            assert (await reader.next("chat_message"))["content"] == "after"
            assert (await sio_reader.next("chat_message"))["message"]["content"] == "after"
        assert "cutting it off" in server.log()
    finally:
        await sender.close()
        await sio_reader.close()
        await api.aclose()


async def test_a_logout_waits_for_none_of_its_sockets_that_stopped_reading(
    roomy_backlog_server: ServerProcess,
) -> None:
    server = roomy_backlog_server
    api = Api(server.base_url)
    alice, carol, dave = [await api.register() for _ in range(3)]
    conversation = await group(api, alice, carol, dave)
    reader = await chat_client(api, dave, conversation)
    sender = await chat_client(api, alice, conversation)
    try:
        async with AsyncExitStack() as stack:
            # Carol's Socket.IO sockets, by hand: after their CONNECT is answered, they read
            # nothing more.
            carols = []
            for _ in range(STALLED):
                ws = await stack.enter_async_context(
                    stalled(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket"))
                assert (await ws.recv()).startswith("0")
                await ws.send("40/chat," + json.dumps(
                    {"token": carol.token, "conversation_id": conversation}))
                assert (await ws.recv()).startswith("40/chat,")
                carols.append(ws)
            for n in range(FILL):
                await sender.emit("chat_message", {"conversation_id": conversation,
                                                   "content": f"{n} {CONTENT}"})
            for n in range(FILL):  # written to every member, Carol's sockets too
                message = await reader.next("chat_message", within=30)
                assert message["message"]["content"].split(" ")[0] == str(n)

            started = time.monotonic()
            out = await api.http.post("/api/v1/auth/logout", json={}, headers=carol.headers)
            elapsed = time.monotonic() - started
            assert out.status_code == 200, out.text
            # Each socket's frames may take CLOSE_FLUSH_SECONDS to leave, but not the logout's.
            assert elapsed < CLOSE_FLUSH_SECONDS, elapsed
            for ws in carols:  # what was written, then the close
                await until_closed(ws, within=30)
    finally:
        await sender.close()
        await reader.close()
        await api.aclose()
