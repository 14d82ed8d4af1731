"""``/conversations``: the inbox list, pushed updates with each viewer's unread count, and
``new_customer_message`` for staff; and REST sends reaching sockets live."""

from __future__ import annotations

from tests.support.client import Api
from tests.test_socketio_helpers import (
    Client,
    chat_client,
    group,
    mobile_client,
    ok,
    refused,
    start_device_conversation,
)


async def test_list_and_pushed_updates(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    first = await group(api, alice, bob)
    second = await group(api, alice, bob)
    inbox = await Client(api.base_url, "/conversations").connect({"token": bob.token})
    a = await chat_client(api, alice, first)
    try:
        ack = ok(await inbox.call("get_conversations", {"limit": 1}))
        assert [c["id"] for c in ack["conversations"]] == [second]
        assert ack["next_cursor"]
        listed = await inbox.next("conversations_list")
        assert listed["conversations"] == ack["conversations"]
        page2 = ok(await inbox.call("get_conversations", {"limit": 1,
                                                          "cursor": ack["next_cursor"]}))
        assert [c["id"] for c in page2["conversations"]] == [first]
        await inbox.next("conversations_list")
        refreshed = ok(await inbox.call("refresh_conversations"))
        assert [c["id"] for c in refreshed["conversations"]][:2] == [second, first]
        assert (await inbox.next("conversations_list"))["conversations"] == \
            refreshed["conversations"]

        # a new message: bob's inbox gets the conversation with his unread count
        for n in (1, 2):
            sent = ok(await a.call("chat_message", {"conversation_id": first,
                                                    "content": f"m{n}"}))
            update = await inbox.next("conversation_updated",
                                      lambda e, n=n: e["conversation"]["unread_count"] == n)
            assert update["conversation_id"] == first
            assert update["conversation"]["last_message"]["content"] == f"m{n}"
            assert "unread_counts" not in update
        # bob reads from another socket: the count drops to 0
        b = await chat_client(api, bob, first)
        ok(await b.call("read_receipt", {"conversation_id": first}))
        await inbox.next("conversation_updated",
                         lambda e: e["conversation_id"] == first
                         and e["conversation"]["unread_count"] == 0)
        await b.close()
        # the last message edited, then deleted: the list shows its text as it is now
        last = sent["message"]["id"]
        ok(await a.call("message_edit", {"message_id": last, "content": "m2, fixed"}))
        await inbox.next("conversation_updated",
                         lambda e: e["conversation"]["last_message"]["content"] == "m2, fixed")
        ok(await a.call("message_delete", {"message_id": last}))
        gone = await inbox.next("conversation_updated",
                                lambda e: e["conversation"]["last_message"]["content"] == "")
        assert gone["conversation"]["last_message"]["id"] == last
        # inbox sockets get inbox events only, not the conversation's own events
        assert inbox.pending("chat_message") == [] and inbox.pending("user_joined") == []

        refused(await inbox.call("get_conversations", {"limit": "many"}), "invalid")
        refused(await inbox.call("get_conversations", {"cursor": "%%%"}), "invalid")
        refused(await inbox.call("get_conversations", [1, 2]), "invalid")
    finally:
        await inbox.close()
        await a.close()


async def test_a_new_conversation_appears_in_the_inboxes_that_show_it(
        sqlite_api: Api) -> None:
    """Created, a group is pushed to its members' inboxes and a support conversation to
    staff's (``conversation_updated``), before any message: an inbox shows it at once. The
    inboxes of those not in it get nothing of it."""
    api = sqlite_api
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    agent = await api.register(role="agent")
    bob_inbox, carol_inbox, agent_inbox = [
        await Client(api.base_url, "/conversations").connect({"token": who.token})
        for who in (bob, carol, agent)]
    try:
        made = await group(api, alice, bob)
        shown = await bob_inbox.next("conversation_updated",
                                     lambda e: e["conversation_id"] == made)
        assert shown["conversation"]["kind"] == "group"
        assert shown["conversation"]["participants_count"] == 2
        support = (await api.conversation(carol, kind="support", title="help"))["id"]
        await agent_inbox.next("conversation_updated",
                               lambda e: e["conversation_id"] == support)
        # carol's own inbox shows hers; her inbox never saw the group she is not in
        await carol_inbox.next("conversation_updated",
                               lambda e: e["conversation_id"] == support)
        assert not [e for e in carol_inbox.pending("conversation_updated")
                    if e["conversation_id"] == made]
        assert not [e for e in bob_inbox.pending("conversation_updated")
                    if e["conversation_id"] == support]
    finally:
        for inbox in (bob_inbox, carol_inbox, agent_inbox):
            await inbox.close()


async def test_staff_get_new_customer_messages(sqlite_api: Api) -> None:
    api = sqlite_api
    agent = await api.register(role="agent")
    user = await api.register()
    staff_inbox = await Client(api.base_url, "/conversations").connect({"token": agent.token})
    user_inbox = await Client(api.base_url, "/conversations").connect({"token": user.token})
    device = await api.device()
    cid = await start_device_conversation(api, device, "Card blocked")
    m = await mobile_client(api, device, cid)
    try:
        sent = ok(await m.call("chat_message", {"conversation_id": cid,
                                                "content": "please help"}))["message"]
        pushed = await staff_inbox.next("new_customer_message",
                                        lambda e: e["conversation_id"] == cid)
        assert pushed["message"]["id"] == sent["id"]
        assert pushed["message"]["sender_type"] == "mobile"
        update = await staff_inbox.next(
            "conversation_updated",
            lambda e: e["conversation_id"] == cid and e["conversation"]["unread_count"] == 1)
        assert update["conversation"]["kind"] == "support"
        assert update["conversation"]["last_message"]["id"] == sent["id"]

        # an ordinary user does not see other people's support conversations
        ok(await user_inbox.call("refresh_conversations"))
        await user_inbox.next("conversations_list")
        assert user_inbox.pending("new_customer_message") == []
        assert user_inbox.pending("conversation_updated") == []
    finally:
        for client in (staff_inbox, user_inbox, m):
            await client.close()


async def test_rest_send_reaches_sockets(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    try:
        response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                       json={"content": "over http"}, headers=bob.headers)
        assert response.status_code == 201, response.text
        got = await a.next("chat_message")
        assert got["message"]["id"] == response.json()["id"]
        assert got["message"]["content"] == "over http" and got["message"]["sender_id"] == bob.id
    finally:
        await a.close()
