"""Authorization on every action, door by door (issue 6), against the real server.

Three rules, each tried on every transport that could break it:

(a) a connection bound to conversation A (a raw route's path, a Socket.IO socket that joined
    only A) cannot act on a message of conversation B by naming its id: edit, delete, react,
    status, read, reply/parent references. Even a user who belongs to B and wrote the message
    is refused through A's connection (``not_found``); a user who cannot see B at all gets
    ``forbidden``. Read receipts name messages of their own conversation: other ids are
    skipped, not read.
(b) what only staff may do (see every support conversation and its inbox pushes, delete
    another's message, change roles, be assigned) is refused to a plain user; an agent whose
    role is taken away has its open sockets closed (1012) and comes back as a plain user.
(c) a mobile device reaches only its own conversations, on every door it can use, and no
    door meant for users takes its ``device_id``.

Each refusal carries the contract's code in its door's shape (Socket.IO ack ``{ok: false,
error: {code, message}}`` or ``error`` event, raw ``error`` frame with ``code`` (seed 003's
route: also ``metadata.code``), REST ``{detail, code}`` with its status, connect refusals and
close codes 4001-4004 / 1008); after each one the same connection still works (a legitimate
send goes through); at the end the other conversation's messages are byte-for-byte as they
were and its members got no event (a send there is the first thing they see: one socket's
events arrive in order).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio

from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess
from tests.test_raw_support import RawClient, close_code, device_conversation, raw, rest_send
from tests.test_socketio_helpers import (
    Client,
    chat_client,
    group,
    mobile_client,
    ok,
    refused,
)

#: Events that would tell a conversation's members that one of its messages was acted on.
ACTIONS = ("message_edit", "message_delete", "message_reaction", "message_status_update",
           "read_receipt", "messages_read", "typing_indicator")
#: Every message action of the /chat and /mobile namespaces, with the fields it needs.
SIO_MESSAGE_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("message_edit", {"content": "hijacked"}),
    ("message_delete", {}),
    ("message_reaction", {"emoji": "👎"}),
    ("message_status", {"status": "read"}),
]
#: The same on /ws/chat/ (seeds 001, 002, 004) and /ws/mobile/chat/ (seed 000, status only).
RAW_MESSAGE_ACTIONS: list[dict[str, Any]] = [
    {"type": "message_edit", "content": "hijacked"},
    {"type": "message_delete"},
    {"type": "message_reaction", "emoji": "👎"},
    {"type": "message_status", "status": "read"},
]
_n = itertools.count(1)


# -- doors: refuse, then prove the connection still works ---------------------------------


@dataclass
class SioDoor:
    """A Socket.IO connection and the legitimate event that proves it still works."""

    client: Client
    conversation_id: int | None  # where it may send; None on /conversations

    async def refuse(self, event: str, data: Any, code: str) -> None:
        refused(await self.client.call(event, data), code)
        await self.works()

    async def refuse_without_ack(self, event: str, data: Any, code: str) -> None:
        """No ack asked: the refusal comes as an ``error`` event naming the event."""
        await self.client.emit(event, data)
        error = await self.client.next("error")
        assert error["code"] == code and error["event"] == event and error["message"], error
        await self.works()

    async def works(self) -> None:
        assert self.client.connected
        if self.conversation_id is None:
            ok(await self.client.call("get_conversations", {}))
            return
        content = f"still here {next(_n)}"
        ack = ok(await self.client.call("chat_message", {"conversation_id": self.conversation_id,
                                                          "content": content}))
        assert ack["message"]["content"] == content
        assert ack["message"]["conversation_id"] == self.conversation_id


@dataclass
class RawDoor:
    """A raw WebSocket and its dialect's legitimate frame."""

    ws: RawClient
    dialect: str  # "chat" (/ws/chat/, /ws/mobile/chat/), "session" (seed 003), "inbox"
    conversation_id: int | None = None

    async def refuse(self, frame: dict[str, Any], code: str) -> None:
        await self.ws.send(frame)
        error = await self.ws.next("error")
        assert error["type"] == "error" and error["code"] == code, error
        assert error["message"] and error["error"] == error["message"], error
        if self.dialect == "session":  # seed 003 reads metadata; the top-level code is ours
            assert error["message_type"] == "error" and error["metadata"]["code"] == code, error
        await self.works()

    async def works(self) -> dict[str, Any]:
        assert self.ws.ws.close_code is None
        if self.dialect == "inbox":
            await self.ws.send({"type": "get_conversations"})
            return await self.ws.next("conversations_list")
        content = f"still here {next(_n)}"
        if self.dialect == "session":
            await self.ws.send({"message_type": "text", "content": content})
            return await self.ws.next(lambda f: f.get("message_type") == "message"
                                      and f["content"] == content)
        await self.ws.send({"type": "chat_message", "content": content})
        echo = await self.ws.next(lambda f: f.get("type") == "chat_message"
                                  and f["message"]["content"] == content)
        assert echo["conversation_id"] == self.conversation_id
        return echo


async def rest_refused(api: Api, method: str, path: str, status: int, code: str, *,
                       user: TestUser | None = None, **kwargs: Any) -> None:
    headers = user.headers if user is not None else {}
    response = await api.http.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, (method, path, response.text)
    body = response.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"], body


# -- the other side: nothing changed, nobody told -------------------------------------------


async def snapshot(api: Api, viewer: TestUser, *message_ids: int) -> dict[int, Any]:
    """The messages as their conversation's members see them (seed 004's one-message route)."""
    seen = {}
    for message_id in message_ids:
        response = await api.http.get(f"/api/chat/messages/{message_id}/",
                                      headers=viewer.headers)
        assert response.status_code == 200, response.text
        seen[message_id] = response.json()
    return seen


async def untouched(api: Api, viewer: TestUser, before: dict[int, Any], listener: Client,
                    conversation_id: int, sender: TestUser) -> None:
    """``before`` is unchanged, and ``listener`` (in ``conversation_id``) got no event of an
    action: a send there after everything else is the first chat_message it sees."""
    assert await snapshot(api, viewer, *before) == before
    barrier = await rest_send(api, sender, conversation_id, "barrier")
    first = await listener.next("chat_message")
    assert first["message"]["id"] == barrier["id"], first
    for name in ACTIONS:
        assert listener.pending(name) == [], name


# -- the scene ------------------------------------------------------------------------------


@dataclass
class Scene:
    """alice and bob in group A; carol and alice in group B. ``mine_in_b`` is alice's own
    message in B, ``theirs_in_b`` carol's, ``in_a`` alice's message in A."""

    alice: TestUser
    bob: TestUser
    carol: TestUser
    a: int
    b: int
    in_a: int
    mine_in_b: int
    theirs_in_b: int


async def scene(api: Api) -> Scene:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    a = await group(api, alice, bob)
    b = await group(api, carol, alice)
    in_a = (await rest_send(api, alice, a, "in A"))["id"]
    mine_in_b = (await rest_send(api, alice, b, "alice in B"))["id"]
    theirs_in_b = (await rest_send(api, carol, b, "carol in B"))["id"]
    return Scene(alice, bob, carol, a, b, in_a, mine_in_b, theirs_in_b)


async def each(attempts: list[Any], run: Callable[..., Awaitable[None]]) -> None:
    for attempt in attempts:
        await run(*attempt)


# -- (a) a message of another conversation, by its id ---------------------------------------


async def test_message_of_another_conversation_is_out_of_reach(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    api, s = sqlite_api, await scene(sqlite_api)
    before = await snapshot(api, s.carol, s.mine_in_b, s.theirs_in_b)
    b_member = await chat_client(api, s.carol, s.b)
    alice_sio = await chat_client(api, s.alice, s.a)
    bob_sio = await chat_client(api, s.bob, s.a)
    alice_inbox = await Client(api.base_url, "/conversations").connect({"token": s.alice.token})
    ws = sqlite_server.ws_url
    try:
        await b_member.next("user_joined")
        await alice_sio.next("user_joined", lambda e: e["user_id"] == s.alice.id)
        await bob_sio.next("user_joined", lambda e: e["user_id"] == s.bob.id)

        # Socket.IO /chat: alice joined A only; she is in B and wrote ``mine_in_b``.
        door = SioDoor(alice_sio, s.a)
        for event, fields in SIO_MESSAGE_ACTIONS:
            for target in (s.mine_in_b, s.theirs_in_b):
                await door.refuse(event, {"conversation_id": s.a, "message_id": target,
                                          **fields}, "not_found")
                await door.refuse(event, {"message_id": target, **fields}, "not_found")
                await door.refuse(event, {"conversation_id": s.b, "message_id": target,
                                          **fields}, "not_joined")
        await door.refuse_without_ack("message_edit", {"message_id": s.mine_in_b,
                                                       "content": "x"}, "not_found")
        await each([
            ("chat_message", {"conversation_id": s.a, "content": "x",
                              "reply_to_id": s.theirs_in_b}, "invalid"),
            ("chat_message", {"conversation_id": s.a, "content": "x",
                              "parent_message_id": s.theirs_in_b}, "invalid"),
            ("chat_message", {"conversation_id": s.b, "content": "x"}, "not_joined"),
            ("read_receipt", {"conversation_id": s.b, "message_ids": [s.theirs_in_b]},
             "not_joined"),
            ("typing_indicator", {"conversation_id": s.b, "is_typing": True}, "not_joined"),
        ], door.refuse)
        # Read receipts naming only messages of another conversation: none here.
        await door.refuse("read_receipt", {"conversation_id": s.a,
                                           "message_ids": [s.theirs_in_b]}, "not_found")

        # bob cannot see B at all: forbidden, however the event is scoped.
        door = SioDoor(bob_sio, s.a)
        for event, fields in SIO_MESSAGE_ACTIONS:
            await door.refuse(event, {"conversation_id": s.a, "message_id": s.theirs_in_b,
                                      **fields}, "forbidden")
            await door.refuse(event, {"message_id": s.theirs_in_b, **fields}, "forbidden")

        # /conversations offers no message action at all.
        inbox = SioDoor(alice_inbox, None)
        for event, fields in SIO_MESSAGE_ACTIONS:
            await inbox.refuse(event, {"message_id": s.mine_in_b, **fields}, "unknown_event")

        # /ws/chat/A: the path is the scope; a conversation_id in the frame changes nothing.
        async with raw(f"{ws}/ws/chat/{s.a}/?token={s.alice.token}") as alice_ws, \
                raw(f"{ws}/ws/chat/{s.a}/?token={s.bob.token}") as bob_ws:
            await alice_ws.next("recent_messages")
            await bob_ws.next("recent_messages")
            door = RawDoor(alice_ws, "chat", s.a)
            for frame in RAW_MESSAGE_ACTIONS:
                for target in (s.mine_in_b, s.theirs_in_b):
                    await door.refuse({**frame, "message_id": target}, "not_found")
                    await door.refuse({**frame, "message_id": target, "conversation_id": s.b},
                                      "not_found")
            await each([
                ({"type": "chat_message", "content": "x", "reply_to_id": s.theirs_in_b},
                 "invalid"),
                ({"type": "chat_message", "content": "x", "parent_message_id": s.theirs_in_b},
                 "invalid"),
            ], door.refuse)
            # A read names this conversation's messages: none of these is one.
            for frame in ({"type": "read_receipt", "message_id": s.theirs_in_b},
                          {"type": "read_receipt", "message_ids": [s.theirs_in_b]},
                          {"type": "message_read", "message_ids": [s.theirs_in_b]},
                          {"type": "mark_read", "message_ids": [s.theirs_in_b]}):
                await door.refuse(frame, "not_found")
            await alice_ws.send({"type": "chat_message", "content": "meant for B",
                                 "conversation_id": s.b})
            landed = await alice_ws.next(lambda f: f.get("type") == "chat_message"
                                         and f["content"] == "meant for B")
            assert landed["conversation_id"] == s.a and landed["message"]["conversation_id"] == s.a
            door = RawDoor(bob_ws, "chat", s.a)
            for frame in RAW_MESSAGE_ACTIONS:
                await door.refuse({**frame, "message_id": s.theirs_in_b}, "forbidden")
            for client in (alice_ws, bob_ws):
                assert not client.seen(lambda f: f.get("type") in ACTIONS
                                       and f.get("conversation_id") == s.b)

        # /api/v1/chat/ws/A (seed 003): only sends name other messages, as references.
        async with raw(f"{ws}/api/v1/chat/ws/{s.a}?token={s.alice.token}") as session:
            door = RawDoor(session, "session", s.a)
            await door.works()  # joined (alice is already there: no user_joined)
            await each([
                ({"message_type": "text", "content": "x", "reply_to_id": s.theirs_in_b},
                 "invalid"),
                ({"message_type": "text", "content": "x", "parent_message_id": s.mine_in_b},
                 "invalid"),
                ({"message_type": "file", "content": "x", "file_url": "https://f.example/a",
                  "reply_to_id": s.theirs_in_b}, "invalid"),
                ({"message_type": "message_edit", "message_id": s.mine_in_b, "content": "x"},
                 "unknown_type"),
            ], door.refuse)

        # /ws/conversations/: no message action either.
        async with raw(f"{ws}/ws/conversations/?token={s.alice.token}") as alice_list:
            await alice_list.next("connection_established")
            door = RawDoor(alice_list, "inbox")
            for frame in RAW_MESSAGE_ACTIONS:
                await door.refuse({**frame, "message_id": s.mine_in_b}, "unknown_type")

        # REST: message routes are not bound to a conversation; bob cannot see B's.
        bob = s.bob
        await rest_refused(api, "PATCH", f"/api/v1/chat/messages/{s.theirs_in_b}", 403,
                           "forbidden", user=bob, json={"content": "hijacked"})
        await rest_refused(api, "DELETE", f"/api/v1/chat/messages/{s.theirs_in_b}", 403,
                           "forbidden", user=bob)
        await rest_refused(api, "POST", f"/api/v1/chat/messages/{s.theirs_in_b}/reactions",
                           403, "forbidden", user=bob, json={"emoji": "👎"})
        await rest_refused(api, "GET", f"/api/chat/messages/{s.theirs_in_b}/", 403,
                           "forbidden", user=bob)
        await rest_refused(api, "POST", f"/api/v1/chat/sessions/{s.a}/messages", 422,
                           "invalid", user=bob, json={"content": "x",
                                                      "reply_to_id": s.theirs_in_b})
        await rest_refused(api, "POST", "/api/chat/messages/", 422, "invalid", user=bob,
                           json={"conversation_id": s.a, "content": "x",
                                 "parent_message_id": s.theirs_in_b})
        await rest_refused(api, "POST", f"/api/v1/chat/sessions/{s.b}/mark-read", 403,
                           "forbidden", user=bob, json={"message_ids": [s.theirs_in_b]})
        for path in (f"/api/v1/chat/sessions/{s.a}/mark-read",
                     f"/api/chat/conversations/{s.a}/mark_read/"):
            await rest_refused(api, "POST", path, 404, "not_found", user=bob,
                               json={"message_ids": [s.theirs_in_b]})

        await untouched(api, s.carol, before, b_member, s.b, s.carol)
    finally:
        for client in (b_member, alice_sio, bob_sio, alice_inbox):
            await client.close()


# -- (b) what only staff may do -------------------------------------------------------------


async def test_staff_only_actions_are_refused_to_users(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    api, s = sqlite_api, await scene(sqlite_api)
    dan, agent = await api.register(), await api.register(role="agent")
    support = int((await api.conversation(dan, title="Dan's ticket"))["id"])
    in_support = (await rest_send(api, dan, support, "help"))["id"]
    device_id, device_cid = await device_conversation(api)
    before = await snapshot(api, dan, in_support)
    before_a = await snapshot(api, s.alice, s.in_a)
    dan_sio = await chat_client(api, dan, support)
    bob_sio = await chat_client(api, s.bob, s.a)
    inboxes = {who: await Client(api.base_url, "/conversations").connect({"token": u.token})
               for who, u in (("bob", s.bob), ("agent", agent))}
    ws = sqlite_server.ws_url
    try:
        await dan_sio.next("user_joined")
        await bob_sio.next("user_joined", lambda e: e["user_id"] == s.bob.id)

        # Seeing any support conversation is staff's: bob may not, on any door.
        door = SioDoor(bob_sio, s.a)
        await door.refuse("join", {"conversation_id": support}, "forbidden")
        refusal = await Client(api.base_url, "/chat").refused(
            {"token": s.bob.token, "conversation_id": support})
        assert refusal["code"] == 4004 and refusal["message"], refusal
        assert await close_code(f"{ws}/ws/chat/{support}/?token={s.bob.token}") == 4004
        assert await close_code(f"{ws}/api/v1/chat/ws/{support}?token={s.bob.token}") == 1008
        for method, path, body in (
            ("GET", f"/api/v1/chat/sessions/{support}", None),
            ("GET", f"/api/v1/chat/sessions/{support}/messages", None),
            ("GET", f"/api/v1/chat/sessions/{support}/participants", None),
            ("POST", f"/api/v1/chat/sessions/{support}/messages", {"content": "x"}),
            ("POST", f"/api/v1/chat/sessions/{support}/close", None),
            ("GET", f"/api/chat/conversations/{support}/messages/", None),
            ("GET", f"/api/chat/messages/{in_support}/", None),
            ("DELETE", f"/api/v1/chat/messages/{in_support}", None),
        ):
            await rest_refused(api, method, path, 403, "forbidden", user=s.bob, json=body)
        staff_view = await api.http.get(f"/api/v1/chat/sessions/{support}",
                                        headers=agent.headers)
        assert staff_view.status_code == 200, staff_view.text  # the rule is the role

        # Deleting another's message is the sender's or an admin's: bob is in A, alice wrote.
        await door.refuse("message_delete", {"conversation_id": s.a, "message_id": s.in_a},
                          "forbidden")
        await door.refuse("message_edit", {"conversation_id": s.a, "message_id": s.in_a,
                                           "content": "x"}, "forbidden")
        async with raw(f"{ws}/ws/chat/{s.a}/?token={s.bob.token}") as bob_ws:
            await bob_ws.next("recent_messages")
            raw_door = RawDoor(bob_ws, "chat", s.a)
            await raw_door.refuse({"type": "message_delete", "message_id": s.in_a}, "forbidden")
            await raw_door.refuse({"type": "message_edit", "message_id": s.in_a,
                                   "content": "x"}, "forbidden")
        await rest_refused(api, "DELETE", f"/api/v1/chat/messages/{s.in_a}", 403, "forbidden",
                           user=s.bob)
        # ...and a group member who did not create it may not close it.
        await rest_refused(api, "POST", f"/api/v1/chat/sessions/{s.a}/close", 403,
                           "forbidden", user=s.bob)

        # Roles: admins only (an agent is staff, not admin); assignees: staff only.
        for who in (s.bob, agent):
            await rest_refused(api, "PATCH", f"/api/v1/auth/users/{who.id}/role", 403,
                               "forbidden", user=who, json={"role": "admin"})
        await rest_refused(api, "POST", "/api/v1/chat/sessions", 422, "invalid", user=s.bob,
                           json={"title": "x", "assigned_agent_id": s.carol.id})
        me = await api.http.get("/api/v1/auth/me", headers=s.bob.headers)
        assert me.json()["role"] == "user"

        # Inbox pushes of customers' messages are staff's, on both inbox doors.
        async with raw(f"{ws}/ws/conversations/?token={s.bob.token}") as bob_list, \
                raw(f"{ws}/ws/conversations/?token={agent.token}") as agent_list:
            for client in (bob_list, agent_list):
                await client.next("connection_established")
            bob_door = RawDoor(bob_list, "inbox")
            listing = await bob_door.works()
            assert {support, device_cid}.isdisjoint(c["id"] for c in listing["conversations"])
            bob_sio_list = ok(await inboxes["bob"].call("get_conversations", {"limit": 100}))
            assert {support, device_cid}.isdisjoint(
                c["id"] for c in bob_sio_list["conversations"])
            agent_sio_list = ok(await inboxes["agent"].call("get_conversations",
                                                            {"limit": 100}))
            assert {support, device_cid} <= {c["id"] for c in agent_sio_list["conversations"]}

            sent = await api.http.post(f"/mobile/chat/{device_cid}/send-message/",
                                       json={"device_id": device_id, "content": "hello?"})
            assert sent.status_code == 201, sent.text
            await inboxes["agent"].next("new_customer_message",
                                        lambda e: e["conversation_id"] == device_cid)
            await agent_list.next(lambda f: f.get("type") == "new_customer_message"
                                  and f["conversation_id"] == device_cid)
            # Barrier: an update of A, published after the device's message, reaches bob. The
            # one showing that message: an earlier update of A (its creation's, the scene's
            # sends') may still reach an inbox opened after them, and is no barrier.
            barrier = await rest_send(api, s.alice, s.a, "after the device")

            def shows_barrier(conversation: dict[str, Any]) -> bool:
                return bool((conversation["last_message"] or {}).get("id") == barrier["id"])

            await inboxes["bob"].next("conversation_updated",
                                      lambda e: e["conversation_id"] == s.a
                                      and shows_barrier(e["conversation"]))
            await bob_list.next(lambda f: f.get("type") == "conversation_updated"
                                and f["conversation_id"] == s.a
                                and shows_barrier(f["conversation"]))
            assert inboxes["bob"].pending("new_customer_message") == []
            assert bob_list.seen("new_customer_message") == []
            assert not [e for e in inboxes["bob"].pending("conversation_updated")
                        if e["conversation_id"] in (support, device_cid)]
            assert not bob_list.seen(lambda f: f.get("type") == "conversation_updated"
                                     and f["conversation_id"] in (support, device_cid))
            await bob_door.works()

        # A role taken away: the agent's open sockets are closed on every node (1012: come
        # back), and what comes back has a plain user's reach.
        former = await api.register(role="agent")
        former_sio = await chat_client(api, former)
        ok(await former_sio.call("join", {"conversation_id": support}))
        async with raw(f"{ws}/ws/chat/{support}/?token={former.token}") as former_ws:
            await former_ws.next("recent_messages")
            assert api.admin is not None
            demoted = await api.http.patch(f"/api/v1/auth/users/{former.id}/role",
                                           json={"role": "user"}, headers=api.admin.headers)
            assert demoted.status_code == 200, demoted.text
            assert await former_ws.closed() == 1012
            async with asyncio.timeout(5):
                await former_sio.disconnected.wait()
        former_sio = await chat_client(api, former)
        try:
            refused(await former_sio.call("join", {"conversation_id": support}), "forbidden")
            refused(await former_sio.call("chat_message", {"conversation_id": support,
                                                          "content": "x"}), "not_joined")
        finally:
            await former_sio.close()
        assert await close_code(f"{ws}/ws/chat/{support}/?token={former.token}") == 4004

        assert await snapshot(api, s.alice, s.in_a) == before_a
        await untouched(api, dan, before, dan_sio, support, dan)
        # The staff rule, not a broken route: an admin may delete the customer's message.
        deleted = await api.http.delete(f"/api/v1/chat/messages/{in_support}",
                                        headers=api.admin.headers)
        assert deleted.status_code == 200 and deleted.json()["is_deleted"] is True
    finally:
        for client in (dan_sio, bob_sio, *inboxes.values()):
            await client.close()


# -- (c) a device reaches only its own conversations ----------------------------------------


async def test_a_socketio_client_comes_back_by_itself_with_its_new_reach(
    sqlite_api: Api,
) -> None:
    """A role given or taken away closes the user's sockets to bring them back with their new
    reach (1012, "reconnect"): on Socket.IO without Engine.IO's CLOSE, which python-socketio's
    client on long-polling took for an end on purpose (``server disconnect``) and did not come
    back from; on both transports it comes back by itself."""
    api = sqlite_api
    for transport in ("websocket", "polling"):
        await comes_back(api, transport)


async def comes_back(api: Api, transport: str) -> None:
    """An agent's python-socketio client on ``transport`` alone, demoted, is back."""
    agent = await api.register(role="agent")
    client = socketio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5)
    reasons: asyncio.Queue[Any] = asyncio.Queue()
    connects: asyncio.Queue[None] = asyncio.Queue()

    async def gone(reason: Any = None) -> None:
        reasons.put_nowait(reason)

    async def back() -> None:
        connects.put_nowait(None)

    client.on("disconnect", gone, namespace="/conversations")
    client.on("connect", back, namespace="/conversations")
    try:
        await client.connect(api.base_url, auth={"token": agent.token},
                             namespaces=["/conversations"], transports=[transport],
                             wait_timeout=5)
        async with asyncio.timeout(5):
            await connects.get()
        assert api.admin is not None
        demoted = await api.http.patch(f"/api/v1/auth/users/{agent.id}/role",
                                       json={"role": "user"}, headers=api.admin.headers)
        assert demoted.status_code == 200, demoted.text
        async with asyncio.timeout(5):
            assert await reasons.get() != "server disconnect", transport
        async with asyncio.timeout(10):
            await connects.get()  # back by itself
        assert "/conversations" in client.namespaces
    finally:
        await client.disconnect()


async def test_devices_reach_only_their_own_conversations(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    api = sqlite_api
    agent = await api.register(role="agent")
    alice, bob = await api.register(), await api.register()
    users_group = await group(api, alice, bob)
    mine, mine_cid = await device_conversation(api)
    theirs, theirs_cid = await device_conversation(api)
    response = await api.http.post(f"/mobile/chat/{theirs_cid}/send-message/",
                                   json={"device_id": theirs, "content": "their question"})
    assert response.status_code == 201, response.text
    their_message = response.json()["id"]
    answer = (await rest_send(api, agent, theirs_cid, "the answer"))["id"]
    before = await snapshot(api, agent, their_message, answer)
    owner = await mobile_client(api, theirs, theirs_cid)
    device = await mobile_client(api, mine, mine_cid)
    ws = sqlite_server.ws_url
    try:
        await owner.next("mobile_user_joined")
        await device.next("mobile_user_joined")

        # Connecting to another's conversation, or to a users' one: 4004 on both doors.
        for cid in (theirs_cid, users_group):
            refusal = await Client(api.base_url, "/mobile").refused(
                {"device_id": mine, "conversation_id": cid})
            assert refusal["code"] == 4004 and refusal["message"], refusal
            assert await close_code(f"{ws}/ws/mobile/chat/{cid}/?device_id={mine}") == 4004

        # /mobile, joined to its own: the other device's conversation and messages.
        door = SioDoor(device, mine_cid)
        await door.refuse("join", {"conversation_id": theirs_cid}, "forbidden")
        await door.refuse("join", {"conversation_id": users_group}, "forbidden")
        await each([
            ("chat_message", {"conversation_id": theirs_cid, "content": "x"}, "not_joined"),
            ("typing_indicator", {"conversation_id": theirs_cid, "is_typing": True},
             "not_joined"),
            ("read_receipt", {"conversation_id": theirs_cid, "message_ids": [answer]},
             "not_joined"),
            ("chat_message", {"conversation_id": mine_cid, "content": "x",
                              "reply_to_id": answer}, "invalid"),
        ], door.refuse)
        for event, fields in SIO_MESSAGE_ACTIONS:
            for target in (their_message, answer):
                await door.refuse(event, {"message_id": target, **fields}, "forbidden")
                await door.refuse(event, {"conversation_id": mine_cid, "message_id": target,
                                          **fields}, "forbidden")
        await door.refuse_without_ack("message_status", {"message_id": answer,
                                                         "status": "read"}, "forbidden")
        await door.refuse("read_receipt", {"conversation_id": mine_cid,
                                           "message_ids": [answer]}, "not_found")

        # /ws/mobile/chat/ of its own conversation.
        async with raw(f"{ws}/ws/mobile/chat/{mine_cid}/?device_id={mine}") as mobile:
            await mobile.next("connection_established")
            raw_door = RawDoor(mobile, "chat", mine_cid)
            await each([
                ({"type": "message_status", "message_id": answer, "status": "read"},
                 "forbidden"),
                ({"type": "message_status", "message_id": their_message,
                  "status": "delivered"}, "forbidden"),
                ({"type": "chat_message", "content": "x", "reply_to_id": answer}, "invalid"),
                ({"type": "message_edit", "message_id": answer, "content": "x"},
                 "unknown_type"),  # seed 000 offers no edit
                ({"type": "read_receipt", "message_ids": [answer]}, "not_found"),
            ], raw_door.refuse)
            await raw_door.works()
            await mobile.send({"type": "chat_message", "content": "meant for theirs",
                               "conversation_id": theirs_cid})
            landed = await mobile.next(lambda f: f.get("type") == "chat_message"
                                       and f["message"]["content"] == "meant for theirs")
            assert landed["conversation_id"] == mine_cid
            assert not mobile.seen(lambda f: f.get("conversation_id") == theirs_cid)

        # Doors for users do not take a device_id.
        refusal = await Client(api.base_url, "/chat").refused(
            {"device_id": mine, "conversation_id": mine_cid})
        assert refusal["code"] == 4001, refusal
        refusal = await Client(api.base_url, "/conversations").refused({"device_id": mine})
        assert refusal["code"] == 4001, refusal
        assert await close_code(f"{ws}/ws/chat/{mine_cid}/?device_id={mine}") == 4001
        assert await close_code(f"{ws}/ws/conversations/?device_id={mine}") == 4001
        assert await close_code(f"{ws}/api/v1/chat/ws/{mine_cid}?device_id={mine}") == 1008
        await rest_refused(api, "GET", f"/api/v1/chat/sessions/{mine_cid}?device_id={mine}",
                           401, "credential_missing")

        # REST of seed 000.
        await rest_refused(api, "GET", f"/mobile/chat/{theirs_cid}/detail/", 403, "forbidden",
                           params={"device_id": mine})
        await rest_refused(api, "POST", f"/mobile/chat/{theirs_cid}/send-message/", 403,
                           "forbidden", json={"device_id": mine, "content": "x"})
        await rest_refused(api, "POST", f"/mobile/chat/{users_group}/send-message/", 403,
                           "forbidden", json={"device_id": mine, "content": "x"})
        await rest_refused(api, "POST", f"/mobile/chat/{mine_cid}/send-message/", 422,
                           "invalid", json={"device_id": mine, "content": "x",
                                            "reply_to_id": answer})
        listing = await api.http.get("/mobile/chat/list/", params={"device_id": mine})
        assert [c["id"] for c in listing.json()] == [mine_cid]

        await untouched(api, agent, before, owner, theirs_cid, agent)
    finally:
        for client in (owner, device):
            await client.close()
