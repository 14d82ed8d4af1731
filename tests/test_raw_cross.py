"""One conversation, every door: a Socket.IO /chat client, a /ws/chat/ client, a
/ws/mobile/chat/ client, an /api/v1/chat/ws/ client and a REST sender. Everyone sees every
message exactly once (Socket.IO senders see their own in the ack)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import socketio

from tests.support.client import Api
from tests.support.server import ServerProcess
from tests.test_raw_support import device_conversation, raw, rest_send


async def test_every_door_sees_every_message_once(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    device_id, cid = await device_conversation(sqlite_api)
    sio_agent, ws_agent, session_agent, rest_agent = [
        await sqlite_api.register(role="agent") for _ in range(4)
    ]
    sio = socketio.AsyncClient(reconnection=False)
    sio_seen: list[str] = []
    got = asyncio.Event()

    @sio.on("chat_message", namespace="/chat")
    async def on_message(data: dict[str, Any]) -> None:
        sio_seen.append(data["message"]["content"])
        got.set()

    await sio.connect(sqlite_server.base_url, auth={"token": sio_agent.token},
                      namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
    try:
        joined = await sio.call("join", {"conversation_id": cid}, namespace="/chat", timeout=5)
        assert joined["ok"] is True, joined
        ws = sqlite_server.ws_url
        async with (
            raw(f"{ws}/ws/chat/{cid}/?token={ws_agent.token}") as chat,
            raw(f"{ws}/ws/mobile/chat/{cid}/?device_id={device_id}") as mobile,
            raw(f"{ws}/api/v1/chat/ws/{cid}?token={session_agent.token}") as session,
        ):
            await chat.next("recent_messages")
            await mobile.next("connection_established")
            await session.next("user_joined")

            ack = await sio.call("chat_message", {"conversation_id": cid, "content": "from sio"},
                                 namespace="/chat", timeout=5)
            assert ack["ok"] is True, ack
            sio_seen.append(ack["message"]["content"])
            await chat.send({"type": "chat_message", "content": "from ws-chat"})
            await mobile.send({"type": "chat_message", "content": "from mobile"})
            await session.send({"message_type": "text", "content": "from session"})
            await rest_send(sqlite_api, rest_agent, cid, "from rest")
            everything = {"from sio", "from ws-chat", "from mobile", "from session", "from rest"}

            def contents(client: Any, kind: str) -> list[str]:
                if kind == "message":
                    return [f["content"] for f in client.seen("message")]
                return [f["message"]["content"] for f in client.seen(kind)]

            for client, kind in ((chat, "chat_message"), (mobile, "chat_message"),
                                 (session, "message")):
                for _ in range(len(everything)):
                    await client.next(kind)
                await client.quiet(kind)
                assert Counter(contents(client, kind)) == Counter(everything), kind
            async with asyncio.timeout(5):
                while set(sio_seen) != everything:
                    got.clear()
                    await got.wait()
            await asyncio.sleep(0.2)
            assert Counter(sio_seen) == Counter(everything)
    finally:
        await sio.disconnect()
