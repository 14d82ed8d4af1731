"""The seeds' own client examples against the real server: their JavaScript under node (with
`ws` as the browser's WebSocket, see tests/js/raw_seed_*.js) and seed 000's Python shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.support.client import Api
from tests.support.node import run_node
from tests.support.server import ServerProcess
from tests.test_raw_support import device_conversation, raw, rest_send, support_conversation


def logged(result: dict[str, Any], first: str) -> list[list[Any]]:
    return [entry["args"] for entry in result["logs"] if entry["args"][:1] == [first]]


async def test_seed_000_javascript(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    device_id, cid = await device_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with raw(f"{sqlite_server.ws_url}/ws/chat/{cid}/?token={agent.token}") as staff:
        await staff.next("recent_messages")
        node = asyncio.create_task(asyncio.to_thread(
            run_node, "raw_seed_000.js", sqlite_server.ws_url, str(cid), device_id))
        sent = await staff.next("chat_message", within=15)
        await staff.send({"type": "message_status", "message_id": sent["message_id"],
                          "status": "delivered"})
        assert staff.seen("typing_indicator")[0]["device_id"] == device_id
        await staff.send({"type": "chat_message", "content": "Agent here"})
        receipt = await staff.next("read_receipt", within=15)
        assert receipt["device_id"] == device_id
        result = await node
    assert "error" not in result, json.dumps(result)[-3000:]
    established = logged(result, "Connection established:")[0][1]
    assert established["conversation_id"] == cid and established["device_id"] == device_id
    message, reply = result["displayed"][:2]
    assert message["content"] == "Hello from the seed 000 example"
    assert reply["content"] == "Agent here" and reply["sender_type"] == "user"
    assert message["sender_info"] == {"type": "mobile_user", "device_id": device_id}
    assert result["statuses"] == [[message["message_id"], "delivered"]]
    assert logged(result, "Error:") == [["Error:", "Message content cannot be empty"]]
    assert logged(result, "WebSocket connected")


async def test_seed_000_python_shape(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    device_id, conversation_id = await device_conversation(sqlite_api)
    uri = f"{sqlite_server.ws_url}/ws/mobile/chat/{conversation_id}/?device_id={device_id}"
    printed: list[tuple[str, Any]] = []
    async with asyncio.timeout(10), connect(uri) as websocket:
        async for message in websocket:
            data = json.loads(message)
            if data["type"] == "connection_established":
                printed.append(("Connected", data))
                await websocket.send(json.dumps({
                    "type": "chat_message",
                    "content": "Hello from Python!",
                    "message_type": "text",
                    "is_urgent": False,
                    "metadata": {},
                }))
            elif data["type"] == "chat_message":
                printed.append(("New message", data["message"]))
                break
            elif data["type"] == "error":
                printed.append(("Error", data["message"]))
    assert printed[0][0] == "Connected"
    assert printed[-1][0] == "New message"
    assert printed[-1][1]["content"] == "Hello from Python!"


async def test_seed_001_chat_manager(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    agent = await sqlite_api.register(role="agent")
    owner, cid = await support_conversation(sqlite_api)
    await rest_send(sqlite_api, owner, cid, "customer question")
    result = await asyncio.to_thread(run_node, "raw_seed_001.js", sqlite_server.ws_url,
                                     agent.token, str(cid))
    assert "error" not in result, json.dumps(result)[-3000:]
    assert [m["content"] for m in result["messages"]] == ["Hello from ChatManager"]
    message = result["messages"][0]
    assert message["type"] == "support" and "customer" in message and message["created_at"]
    ids = [c["id"] for c in result["lists"][0]]
    assert cid in ids
    listed = next(c for c in result["lists"][0] if c["id"] == cid)
    assert {"title", "status", "customer", "priority", "created_at", "updated_at",
            "last_message", "unread_count"} <= listed.keys()


async def test_seed_002_console(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    owner, cid = await support_conversation(sqlite_api)
    result = await asyncio.to_thread(run_node, "raw_seed_002.js", sqlite_server.ws_url,
                                     owner.token, str(cid))
    assert "error" not in result, json.dumps(result)[-3000:]
    kinds = [f["type"] for f in result["received"]]
    assert kinds[:2] == ["connection_established", "recent_messages"]
    message = next(f for f in result["received"] if f["type"] == "chat_message")["message"]
    assert message["content"] == "Hello from console!"
    assert message["sender"]["email"] == owner.email and message["is_edited"] is False
    assert "typing_indicator" not in kinds  # typing goes to the others only


async def test_seed_004_example(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    alice, bob = await sqlite_api.register(), await sqlite_api.register()
    asked = await sqlite_api.http.post("/api/chat/connections/", json={"user_id": bob.id},
                                       headers=alice.headers)
    assert asked.status_code == 201, asked.text
    accepted = await sqlite_api.http.post(f"/api/chat/connections/{asked.json()['id']}/accept/",
                                          headers=bob.headers)
    assert accepted.status_code == 200, accepted.text
    cid = accepted.json()["conversation_id"]
    sent = await sqlite_api.http.post("/api/chat/messages/",
                                      json={"conversation_id": cid, "content": "Hi Alice"},
                                      headers=bob.headers)
    assert sent.status_code in (200, 201), sent.text
    url = f"{sqlite_server.ws_url}/ws/chat/{cid}/"
    async with raw(url, additional_headers=bob.headers) as peer:
        await peer.next("recent_messages")
        node = asyncio.create_task(asyncio.to_thread(
            run_node, "raw_seed_004.js", sqlite_server.ws_url, alice.token, str(cid),
            json.dumps([sent.json()["id"]])))
        hello = await peer.next("chat_message", within=15)
        assert hello["content"] == "Hello!" and hello["sender_id"] == alice.id
        await peer.send({"type": "typing_indicator", "is_typing": True})
        read = await peer.next("messages_read")
        assert read["message_ids"] == [sent.json()["id"]] and read["user_id"] == alice.id
        result = await node
    assert "error" not in result, json.dumps(result)[-3000:]
    assert logged(result, "Connected to chat")
    assert ["New message:", "Hello!"] in logged(result, "New message:")
    assert [[f"{bob.first_name} {bob.last_name} is typing..."]] == [
        e["args"] for e in result["logs"] if str(e["args"][0]).endswith("is typing...")]
    assert logged(result, "Messages marked as read")
