"""The official JavaScript client (socket.io-client 4.8, under node): on ``/chat`` it must see
the presence event of its own join (sent after the CONNECT ack), a message from a Python
client, and the ack of its own send; on every namespace, the code of a refused connect; a
logout's disconnect; and binary attachments both ways."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from tests.support.client import Api
from tests.support.node import run_node
from tests.support.services import free_port
from tests.test_conformance import conformance_server
from tests.test_socketio_helpers import chat_client, group, ok, start_device_conversation


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
        assert result["received"] == {"conversation_id": cid, "message": sent,
                                      "position": result["received"]["position"]}
        assert result["transport"] in ("polling", "websocket")
        ack = result["ack"]
        assert ack["ok"] is True and ack["duplicate"] is False
        assert ack["message"]["content"] == "hello from node"
        assert ack["message"]["client_msg_id"] == "js-1"
        got = await b.next("chat_message")
        assert got["message"]["id"] == ack["message"]["id"]
    finally:
        await b.close()


async def test_official_js_client_sees_refusal_codes(sqlite_api: Api) -> None:
    """Every connect refusal reaches socket.io-client as ``err.data = {code, message}`` with
    ``err.message`` its text (CONTRACT section 8), on every namespace, over WebSocket and
    long-polling."""
    api = sqlite_api
    alice, stranger = await api.register(), await api.register()
    cid = await group(api, alice)
    device, other_device = await api.device(), await api.device()
    other_cid = await start_device_conversation(api, other_device)
    refusals: list[tuple[dict[str, object], int]] = []
    for namespace in ("/chat", "/conversations"):
        refusals += [
            ({"namespace": namespace, "auth": {}}, 4001),
            ({"namespace": namespace, "auth": {"token": "garbage"}}, 4002),
            ({"namespace": namespace, "auth": {"token": alice.refresh_token}}, 4002),
        ]
    refusals += [
        ({"namespace": "/chat", "auth": {"token": alice.token, "conversation_id": 987654321}},
         4003),
        ({"namespace": "/chat", "auth": {"token": stranger.token, "conversation_id": cid}},
         4004),
        ({"namespace": "/mobile", "auth": {}}, 4001),
        ({"namespace": "/mobile", "auth": {"device_id": "no-such-device-123"}}, 4002),
        ({"namespace": "/mobile", "auth": {"device_id": device, "conversation_id": 987654321}},
         4003),
        ({"namespace": "/mobile", "query": {"device_id": device, "conversation_id": other_cid}},
         4004),
    ]
    cases = [{**case, "transports": [transport]}
             for transport in ("websocket", "polling") for case, _ in refusals]
    # one accepted connection per run: the refusals are not the node refusing everything
    cases.append({"namespace": "/chat", "auth": {"token": alice.token},
                  "transports": ["polling", "websocket"]})
    results = await asyncio.to_thread(run_node, "socketio_refusals.js", api.base_url,
                                      json.dumps(cases))

    assert results[-1] == {"connected": True}
    expected = [code for _ in ("websocket", "polling") for _, code in refusals]
    for case, code, seen in zip(cases[:-1], expected, results[:-1], strict=True):
        assert isinstance(seen["data"], dict), (case, seen)
        assert seen["data"]["code"] == code, (case, seen)
        assert seen["message"] == seen["data"]["message"] and seen["message"], (case, seen)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_logout_is_an_io_server_disconnect_the_client_does_not_retry(
    sqlite_api: Api, transport: str
) -> None:
    """CONTRACT section 10: a logout disconnects the session's Socket.IO sockets. The
    official client is told on each namespace ("io server disconnect") and stops there; a
    bare close of the connection ("transport close") had it reconnect, only to be refused."""
    alice = await sqlite_api.register()
    result = await asyncio.to_thread(run_node, "socketio_logout.js", sqlite_api.base_url,
                                     alice.token, transport)
    assert sorted(result["disconnects"], key=lambda d: d["namespace"]) == [
        {"namespace": "/chat", "reason": "io server disconnect", "active": False},
        {"namespace": "/conversations", "reason": "io server disconnect", "active": False},
    ]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_official_js_client_binary_attachments(tmp_path: Path, transport: str) -> None:
    """socket.io-client sends Buffers in an event and an ack, nested too, and gets the same
    bytes back as Buffers (Socket.IO's binary packets, both ways)."""
    with conformance_server(free_port(), tmp_path / "server.log") as base_url:
        result = await asyncio.to_thread(run_node, "socketio_binary.js", base_url, transport)

    def buffer(data: bytes) -> dict[str, str]:
        return {"buffer": base64.b64encode(data).decode()}

    nested = {"name": "photo", "parts": [buffer(b"\x00\x01"), {"raw": buffer(b"xyz")}]}
    assert result["echoed"] == [buffer(bytes(range(256))), "text", nested]
    assert result["acked"] == [buffer(b"\xff\xff\xff"), 1, nested]
    assert result["transport"] == transport
