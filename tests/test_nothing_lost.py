"""Nothing lost, nothing doubled: concurrent senders on every door (with retried idempotency
keys) commit each message exactly once with strictly increasing ids, and every listener gets
each exactly once; a server killed with SIGKILL keeps every acknowledged message."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from tests.support.client import Api
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import RawClient, raw
from tests.test_socketio_helpers import Client, chat_client, group, ok

PER_SENDER = 8


async def test_concurrent_senders_on_every_door_commit_once(
    server: ServerProcess, api: Api
) -> None:
    users = [await api.register() for _ in range(6)]
    cid = await group(api, *users)
    sio_senders = [await chat_client(api, user, cid) for user in users[:2]]
    listener = await chat_client(api, users[5], cid)
    ws = server.ws_url
    async with (
        raw(f"{ws}/ws/chat/{cid}/?token={users[2].token}") as chat,
        raw(f"{ws}/api/v1/chat/ws/{cid}?token={users[3].token}") as session,
        raw(f"{ws}/ws/chat/{cid}/?token={users[5].token}") as raw_listener,
    ):
        for client, first in ((chat, "recent_messages"), (session, "user_joined"),
                              (raw_listener, "recent_messages")):
            await client.next(first)

        async def by_socketio(client: Client, tag: str) -> None:
            for n in range(PER_SENDER):
                key = f"{tag}-{n}"
                first = ok(await client.call("chat_message", {
                    "conversation_id": cid, "content": key, "client_msg_id": key}))
                again = ok(await client.call("chat_message", {  # a retry of the same send
                    "conversation_id": cid, "content": key, "client_msg_id": key}))
                assert again["message"]["id"] == first["message"]["id"]

        async def by_raw(client: RawClient, tag: str, dialect: str) -> None:
            for n in range(PER_SENDER):
                key = f"{tag}-{n}"
                frame = ({"type": "chat_message", "content": key, "client_msg_id": key}
                         if dialect == "chat" else {"message_type": "text", "content": key})
                await client.send(frame)
                if dialect == "chat":
                    await client.send(frame)  # retried: must not make a second message

        async def by_rest(tag: str) -> None:
            for n in range(PER_SENDER):
                key = f"{tag}-{n}"
                body = {"content": key, "client_msg_id": key}
                for _ in range(2):
                    response = await api.http.post(
                        f"/api/v1/chat/sessions/{cid}/messages", json=body,
                        headers=users[4].headers)
                    assert response.status_code in (200, 201), response.text

        await asyncio.gather(
            by_socketio(sio_senders[0], "sio0"), by_socketio(sio_senders[1], "sio1"),
            by_raw(chat, "chat", "chat"), by_raw(session, "session", "session"),
            by_rest("rest"),
        )
        expected = Counter(f"{tag}-{n}" for tag in ("sio0", "sio1", "chat", "session", "rest")
                           for n in range(PER_SENDER))

        stored = await api.history(users[0], cid)
        assert Counter(m["content"] for m in stored) == expected  # each exactly once
        ids = [m["id"] for m in stored]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # strictly increasing

        # Every listener got every message exactly once.
        for _ in range(len(expected)):
            await raw_listener.next("chat_message")
        await raw_listener.quiet("chat_message")
        assert Counter(f["message"]["content"] for f in raw_listener.seen("chat_message")) == \
            expected
        got = [(await listener.next("chat_message"))["message"]["id"]
               for _ in range(len(expected))]
        assert sorted(got) == ids
        assert listener.pending("chat_message") == []
    for client in (*sio_senders, listener):
        await client.close()


async def test_sigkill_keeps_every_acknowledged_message(work_dir: Path) -> None:
    data_dir = work_dir / "sigkill"
    server = start_server(data_dir)
    api = Api(server.base_url)
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        sender = await chat_client(api, alice, cid)
        acknowledged = [ok(await sender.call("chat_message", {
            "conversation_id": cid, "content": f"m{n}"}))["message"]["id"] for n in range(30)]
        server.stop(signal.SIGKILL)  # no shutdown of any kind
        await sender.close()
    finally:
        await api.aclose()
    restarted = start_server(data_dir)
    api = Api(restarted.base_url)
    try:
        stored = await api.history(alice, cid)
        assert [m["id"] for m in stored] == acknowledged
    finally:
        await api.aclose()
        restarted.stop()
