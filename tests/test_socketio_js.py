"""The official JavaScript client (socket.io-client 4.8, under node) against ``/chat``: it
must see the presence event of its own join (sent after the CONNECT ack), a message from a
Python client, and the ack of its own send."""

from __future__ import annotations

import asyncio

from tests.support.client import Api
from tests.support.node import run_node
from tests.test_socketio_helpers import chat_client, group, ok


async def test_official_js_client(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    b = await chat_client(api, bob, cid)
    try:
        node = asyncio.create_task(asyncio.to_thread(
            run_node, "socketio_client.js", api.base_url, alice.token, str(cid)))
        await b.next("user_joined", lambda e: e["user_id"] == alice.id, within=20)
        sent = ok(await b.call("chat_message", {"conversation_id": cid,
                                                "content": "hello from python"}))["message"]
        result = await asyncio.wait_for(node, 30)

        joined = result["joined"]
        assert joined["conversation_id"] == cid and joined["user_id"] == alice.id
        assert joined["total_users"] == 2
        assert result["received"] == {"conversation_id": cid, "message": sent}
        assert result["transport"] in ("polling", "websocket")
        ack = result["ack"]
        assert ack["ok"] is True and ack["duplicate"] is False
        assert ack["message"]["content"] == "hello from node"
        assert ack["message"]["client_msg_id"] == "js-1"
        got = await b.next("chat_message")
        assert got["message"]["id"] == ack["message"]["id"]
    finally:
        await b.close()
