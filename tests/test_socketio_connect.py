"""Connecting to the Socket.IO namespaces: credentials, refusal codes 4001-4004, joining at
connect, presence across tabs, and reconnect-and-catch-up."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.support.client import Api
from tests.test_socketio_helpers import (
    Client,
    chat_client,
    group,
    mobile_client,
    ok,
    start_device_conversation,
)


async def test_chat_refusals(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, stranger = await api.register(), await api.register()
    cid = await group(api, alice)
    url = api.base_url

    def code(data: object) -> int:
        assert isinstance(data, dict) and set(data) == {"code", "message"}, data
        return data["code"]  # type: ignore[no-any-return]

    for namespace in ("/chat", "/conversations"):
        assert code(await Client(url, namespace).refused({})) == 4001
        assert code(await Client(url, namespace).refused({"token": ""})) == 4001
        assert code(await Client(url, namespace).refused({"token": "garbage"})) == 4002
        assert code(await Client(url, namespace).refused({"token": "garbage"},
                                                         transports=["polling"])) == 4002
        assert code(await Client(url, namespace).refused({"token": 42})) == 4002
        # a refresh token is not an access token
        assert code(await Client(url, namespace).refused({"token": alice.refresh_token})) == 4002
        assert code(await Client(url, namespace).refused(
            query=f"token={alice.token[:-3]}abc")) == 4002

    chat = "/chat"
    assert code(await Client(url, chat).refused({"token": alice.token,
                                                 "conversation_id": 987654321})) == 4003
    assert code(await Client(url, chat).refused({"token": alice.token,
                                                 "conversation_id": "nope"})) == 4003
    assert code(await Client(url, chat).refused({"token": stranger.token,
                                                 "conversation_id": cid})) == 4004

    # the query string works for SDKs that cannot set `auth`; so does a bearer header
    by_query = await Client(url, chat).connect(query=f"token={alice.token}&conversation_id={cid}")
    by_header = await Client(url, chat).connect(
        headers={"Authorization": f"Bearer {alice.token}"})
    try:
        assert (await by_query.next("user_joined"))["user_id"] == alice.id
        assert ok(await by_header.call("join", {"conversation_id": cid}))["conversation"]["id"] \
            == cid
    finally:
        await by_query.close()
        await by_header.close()

    # /conversations: a user token; no conversation at connect, so no 4003/4004 there
    inbox = await Client(url, "/conversations").connect({"token": alice.token})
    assert ok(await inbox.call("refresh_conversations"))["conversations"]
    await inbox.close()


async def test_mobile_refusals_and_deactivation(sqlite_api: Api) -> None:
    api = sqlite_api
    device, other = await api.device(), await api.device()
    cid = await start_device_conversation(api, device)
    other_cid = await start_device_conversation(api, other)
    user = await api.register()
    user_cid = await group(api, user)
    url = api.base_url

    async def code(auth: dict[str, object] | None = None, query: str = "") -> int:
        data = await Client(url, "/mobile").refused(auth, query)
        assert isinstance(data, dict) and set(data) == {"code", "message"}, data
        return data["code"]  # type: ignore[no-any-return]

    assert await code({}) == 4001
    assert await code({"token": user.token}) == 4001
    assert await code({"device_id": "no-such-device-123"}) == 4002
    assert await code({"device_id": device, "conversation_id": 987654321}) == 4003
    assert await code({"device_id": device, "conversation_id": other_cid}) == 4004
    assert await code({"device_id": device, "conversation_id": user_cid}) == 4004
    assert await code(query=f"device_id={device}&conversation_id={other_cid}") == 4004

    m = await Client(url, "/mobile").connect(query=f"device_id={device}&conversation_id={cid}")
    try:
        joined = await m.next("mobile_user_joined")
        assert joined["device_id"] == device and joined["user_id"] is None
        assert joined["conversation_id"] == cid and joined["total_users"] == 1
        # a device reaches only its own conversations
        refused_join = await m.call("join", {"conversation_id": other_cid})
        assert refused_join["ok"] is False and refused_join["error"]["code"] == "forbidden"

        # deactivating the device closes its live sockets and refuses new ones (4002)
        response = await api.http.delete(f"/mobile/sessions/{device}/")
        assert response.status_code in (200, 204), response.text
        await m.disconnected.wait()
        assert await code({"device_id": device}) == 4002
    finally:
        await m.close()


async def test_presence_across_tabs(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    watcher = await chat_client(api, bob, cid)
    tab1 = await chat_client(api, alice, cid)
    try:
        assert (await watcher.next("user_joined", lambda e: e["user_id"] == alice.id))[
            "total_users"] == 2
        assert (await watcher.next("user_status", lambda e: e["user_id"] == alice.id))[
            "status"] == "online"
        tab2 = await chat_client(api, alice, cid)
        # the second tab is not a second arrival; the first tab closing is not a departure
        await tab1.close()
        barrier = ok(await tab2.call("chat_message", {"conversation_id": cid,
                                                      "content": "still here"}))
        await watcher.next("chat_message",
                           lambda e: e["message"]["id"] == barrier["message"]["id"])
        assert [e for e in watcher.pending("user_joined") if e["user_id"] == alice.id] == []
        assert watcher.pending("user_left") == []
        assert watcher.pending("user_status") == []

        await tab2.close()
        left = await watcher.next("user_left")
        assert left["user_id"] == alice.id and left["total_users"] == 1
        offline = await watcher.next("user_status")
        assert offline == {"conversation_id": cid, "user_id": alice.id, "status": "offline",
                           "timestamp": offline["timestamp"]}
    finally:
        await watcher.close()
        await tab1.close()


async def test_reconnect_and_catch_up(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    b = await chat_client(api, bob, cid)
    try:
        seen = ok(await a.call("chat_message", {"conversation_id": cid,
                                                "content": "before"}))["message"]
        assert (await b.next("chat_message"))["message"]["id"] == seen["id"]
        await b.close()

        sent = [ok(await a.call("chat_message", {"conversation_id": cid,
                                                 "content": f"missed {i}"}))["message"]["id"]
                for i in range(30)]

        b = await chat_client(api, bob)
        ack = ok(await b.call("join", {"conversation_id": cid, "after_message_id": seen["id"]}))
        assert [m["id"] for m in ack["messages"]] == sent
        assert [m["content"] for m in ack["messages"]] == [f"missed {i}" for i in range(30)]
        assert ack["has_more"] is False

        # without a resume point: the latest page; with one deep in the past, a page of 50
        latest = ok(await b.call("join", {"conversation_id": cid}))
        assert [m["id"] for m in latest["messages"]] == [seen["id"], *sent]
        # (a second socket: each socket has its own send-rate bucket, burst 40)
        a2 = await chat_client(api, alice, cid)
        more = [ok(await a2.call("chat_message", {"conversation_id": cid,
                                                  "content": str(i)}))["message"]["id"]
                for i in range(30)]
        await a2.close()
        page = ok(await b.call("join", {"conversation_id": cid,
                                        "after_message_id": seen["id"]}))
        assert [m["id"] for m in page["messages"]] == (sent + more)[:50]
        assert page["has_more"] is True
        rest = ok(await b.call("join", {"conversation_id": cid,
                                        "after_message_id": page["messages"][-1]["id"]}))
        assert [m["id"] for m in rest["messages"]] == (sent + more)[50:]
        assert rest["has_more"] is False
        # a client that has seen nothing resumes from 0: the first page from the start
        first = ok(await b.call("join", {"conversation_id": cid, "after_message_id": 0}))
        assert [m["id"] for m in first["messages"]] == [seen["id"], *sent, *more][:50]
        assert first["has_more"] is True
        refused = await b.call("join", {"conversation_id": cid, "after_message_id": -1})
        assert refused["ok"] is False and refused["error"]["code"] == "invalid"
    finally:
        await a.close()
        await b.close()


async def test_device_joins_and_chats_with_an_agent(sqlite_api: Api) -> None:
    api = sqlite_api
    device = await api.device()
    cid = await start_device_conversation(api, device)
    agent = await api.register(role="agent")
    m = await mobile_client(api, device, cid)
    g = await chat_client(api, agent, cid)
    try:
        assert (await m.next("user_joined"))["user_id"] == agent.id
        sent = ok(await m.call("chat_message", {"content": "help", "is_urgent": True,
                                                "message_type": "text"}))["message"]
        assert sent["sender_type"] == "mobile" and sent["is_urgent"] is True
        assert (await g.next("chat_message"))["message"]["id"] == sent["id"]
        reply = ok(await g.call("chat_message", {"conversation_id": cid,
                                                 "content": "on it"}))["message"]
        assert (await m.next("chat_message"))["message"]["id"] == reply["id"]
        ok(await m.call("message_status", {"message_id": reply["id"], "status": "read"}))
        update = await g.next("message_status_update")
        assert update["message_id"] == reply["id"] and update["status"] == "read"
        ok(await m.call("read_receipt", {"message_ids": [reply["id"]]}))
        receipt = await g.next("read_receipt")
        assert receipt["device_id"] == device and receipt["message_ids"] == [reply["id"]]
        ok(await m.call("typing_indicator", {"is_typing": True}))
        typing = await g.next("typing_indicator")
        assert typing["device_id"] == device and typing["is_typing"] is True
        await m.close()
        left = await g.next("user_left")  # /chat names it user_left; /mobile, mobile_user_left
        assert left["device_id"] == device and left["user_id"] is None
    finally:
        await m.close()
        await g.close()


async def test_presence_follows_the_connect_ack_on_the_wire(sqlite_api: Api) -> None:
    """The raw socket.io packets: ``40/chat`` (the CONNECT ack) comes before the socket's own
    ``user_joined``. (socket.io-client 4 and python-socketio buffer events that come early, so
    only the wire shows the order; other SDKs drop them.)"""
    api = sqlite_api
    alice = await api.register()
    cid = await group(api, alice)
    url = api.base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    auth = json.dumps({"token": alice.token, "conversation_id": cid})
    async with websockets.connect(url) as ws:
        assert str(await ws.recv()).startswith("0{")  # engine.io OPEN
        await ws.send(f"40/chat,{auth}")
        packets: list[str] = []
        async with asyncio.timeout(5):
            while len(packets) < 3:
                packet = str(await ws.recv())
                if packet != "2":  # engine.io ping
                    packets.append(packet)
    assert packets[0].startswith("40/chat,{\"sid\":"), packets
    assert packets[1].startswith("42/chat,[\"user_joined\","), packets
    assert packets[2].startswith("42/chat,[\"user_status\","), packets


async def test_offline_waits_for_the_last_connection_of_any_kind(sqlite_api: Api) -> None:
    """An inbox socket keeps a user online after their chat socket closes; when it closes too,
    the conversation that saw them online hears they are offline."""
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    watcher = await chat_client(api, bob, cid)
    inbox = await chat_client(api, alice, namespace="/conversations")
    chat = await chat_client(api, alice, cid)
    try:
        await watcher.next("user_status", lambda e: e["user_id"] == alice.id)
        await chat.close()
        left = await watcher.next("user_left", lambda e: e["user_id"] == alice.id)
        assert left["total_users"] == 1
        # A message sent after the departure reaches the watcher after anything the departure
        # produced: when it has arrived, no offline status can still be on its way.
        sent = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                   json={"content": "still here"}, headers=alice.headers)
        assert sent.status_code == 201, sent.text
        await watcher.next("chat_message", lambda e: e["message"]["id"] == sent.json()["id"])
        assert [e for e in watcher.pending("user_status") if e["user_id"] == alice.id] == []

        await inbox.close()
        offline = await watcher.next("user_status", lambda e: e["user_id"] == alice.id)
        assert offline["status"] == "offline" and offline["conversation_id"] == cid
    finally:
        await watcher.close()
        await inbox.close()
        await chat.close()
