"""SIGTERM: every client is told (raw WebSockets get 1001 after every frame already queued for
them, Socket.IO clients are disconnected), then the process exits; after a restart on the same
database, every acknowledged message is there."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import socketio

from tests.support.client import Api
from tests.support.server import start_server
from tests.test_raw_support import raw, rest_send
from tests.test_socketio_helpers import group

SENT_BEFORE_SIGTERM = 20


async def test_sigterm_says_goodbye_and_keeps_what_was_acknowledged(work_dir: Path) -> None:
    data_dir = work_dir / "shutdown"
    server = start_server(data_dir)
    api = Api(server.base_url)
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        sio = socketio.AsyncClient(reconnection=False)
        disconnected = asyncio.Event()
        sio.on("disconnect", lambda *args: disconnected.set(), namespace="/chat")
        await sio.connect(server.base_url, auth={"token": bob.token, "conversation_id": cid},
                          namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
        async with raw(f"{server.ws_url}/ws/chat/{cid}/?token={bob.token}") as listener:
            await listener.next("recent_messages")
            acknowledged = [await rest_send(api, alice, cid, f"m{n}")
                            for n in range(SENT_BEFORE_SIGTERM)]
            server.process.send_signal(signal.SIGTERM)

            code = await listener.closed(within=10)
            assert code == 1001
            delivered = [f["message"]["id"] for f in listener.seen("chat_message")]
            assert delivered == [m["id"] for m in acknowledged]  # all of them, then the close
        async with asyncio.timeout(10):
            await disconnected.wait()
        assert server.process.wait(timeout=15) is not None
    finally:
        await api.aclose()
        server.stop(signal.SIGKILL)

    restarted = start_server(data_dir)
    api = Api(restarted.base_url)
    try:
        stored = await api.history(alice, cid)
        assert [m["id"] for m in stored] == [m["id"] for m in acknowledged]
    finally:
        await api.aclose()
        restarted.stop()
