"""Push notifications over real server processes (CONTRACT section 11), against a fake Web
Push service that checks VAPID and decrypts the ``aes128gcm`` body, and a fake FCM that
checks the service account's JWT assertion and the bearer token: a notification for an
offline recipient and none for an online one, mutes and blocks, one per conversation per
interval, a pending push that survives a SIGKILL of its node, 410/404 removing the
subscription, and the subscriptions of a logged-out session removed."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.cluster import Cluster
from tests.support.fake_outside import FCM_PROJECT, FakeOutside, Received
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres

FCM_SEND = f"/v1/projects/{FCM_PROJECT}/messages:send"


@pytest.fixture(scope="module")
def outside() -> Iterator[FakeOutside]:
    fake = FakeOutside()
    yield fake
    fake.stop()


def push_env(fake: FakeOutside, **extra: str) -> dict[str, str]:
    return {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "FCM_SERVICE_ACCOUNT_JSON":
            fake.service_account(), "FCM_API_BASE": fake.base_url,
            "OUTBOX_POLL_SECONDS": "0.2", "OUTBOX_BACKOFF_SECONDS": "0.2",
            "VAPID_SUBJECT": "mailto:push@example.com", **extra}


@pytest.fixture(scope="module")
def push_server(work_dir: Path, outside: FakeOutside) -> Iterator[ServerProcess]:
    server = with_admin(start_server(work_dir / "push", **push_env(
        outside, PUSH_MIN_INTERVAL_SECONDS="30")))
    yield server
    server.stop()


@pytest.fixture
async def push_api(push_server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(push_server.base_url, await admin_of(push_server.base_url))
    yield client
    await client.aclose()


async def subscribe(api: Api, user: TestUser, body: dict[str, Any]) -> int:
    response = await api.http.post("/api/v1/push/subscriptions", headers=user.headers,
                                   json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def webpush_device(api: Api, fake: FakeOutside, user: TestUser) -> tuple[str, int]:
    sub = fake.subscription()
    return sub["endpoint"], await subscribe(api, user, {"kind": "webpush", **sub})


async def group(api: Api, owner: TestUser, *members: TestUser) -> int:
    conversation = await api.conversation(owner, kind="group",
                                          participant_ids=[m.id for m in members])
    return int(conversation["id"])


async def send(api: Api, user: TestUser, conversation_id: int, content: str,
               **extra: Any) -> dict[str, Any]:
    response = await api.http.post(f"/api/v1/chat/sessions/{conversation_id}/messages",
                                   headers=user.headers, json={"content": content, **extra})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def decisions(api: Api) -> dict[str, float]:
    text = (await api.http.get("/metrics")).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^confab_push_decisions_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M)}


async def wait_decisions(api: Api, before: dict[str, float], within: float = 30.0,
                         **expected: int) -> None:
    """Wait until each outcome counted ``expected[outcome]`` more decisions than before."""
    deadline = time.monotonic() + within
    while True:
        now = await decisions(api)
        grown = {k: now.get(k, 0) - before.get(k, 0) for k in expected}
        if all(grown[k] >= v for k, v in expected.items()):
            assert all(grown[k] == v for k, v in expected.items()), grown
            return
        assert time.monotonic() < deadline, f"decisions {grown}, expected {expected}"
        await asyncio.sleep(0.1)


def ok_to(fake: FakeOutside, endpoint: str) -> list[Received]:
    return [r for r in fake.to(endpoint) if r.ok]


async def personal_push(api: Api, outside: FakeOutside, before: dict[str, float],
                        endpoint: str, describe: str) -> Received:
    """The one notification a change that names a user queued (one decision since
    ``before``), as it reached that user's device at ``endpoint``."""
    await wait_decisions(api, before, queued=1)
    await outside.wait(lambda _: bool(ok_to(outside, endpoint)), describe=describe)
    [push] = ok_to(outside, endpoint)
    return push


async def test_an_offline_recipient_gets_a_webpush_and_an_online_one_none(
        push_api: Api, push_server: ServerProcess, outside: FakeOutside) -> None:
    sender, offline, online = [await push_api.register() for _ in range(3)]
    off_endpoint, _ = await webpush_device(push_api, outside, offline)
    on_endpoint, _ = await webpush_device(push_api, outside, online)
    cid = await group(push_api, sender, offline, online)
    url = f"{push_server.ws_url}/ws/chat/{cid}/?token={online.token}"
    async with websockets.connect(url) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert first["type"] == "connection_established", first
        before = await decisions(push_api)
        message = await send(push_api, sender, cid, "are you there?")
        await wait_decisions(push_api, before, queued=1, online=1)
        await outside.wait(lambda _: bool(ok_to(outside, off_endpoint)),
                           describe="the offline recipient's push")
    push = ok_to(outside, off_endpoint)[0]
    assert push.content["body"] == "are you there?"
    assert push.content["conversation_id"] == cid
    assert push.content["message_id"] == message["id"]
    assert push.content["title"] == f"{sender.first_name} {sender.last_name}"
    assert push.headers["topic"] == f"conversation-{cid}"
    assert push.headers["ttl"] == "86400"
    assert outside.to(on_endpoint) == []


async def test_fcm_gets_the_notification_through_an_oauth_token(
        push_api: Api, outside: FakeOutside) -> None:
    sender, phone = await push_api.register(), await push_api.register()
    token = f"fcm-token-{phone.id}"
    await subscribe(push_api, phone, {"kind": "fcm", "token": token})
    cid = await group(push_api, sender, phone)
    await send(push_api, sender, cid, "ping the phone")

    def delivered(received: list[Received]) -> bool:
        return any(r.ok and r.path == FCM_SEND and r.content["token"] == token
                   for r in received)

    received = await outside.wait(delivered, describe="the FCM send")
    message = next(r.content for r in received
                   if r.ok and r.path == FCM_SEND and r.content["token"] == token)
    assert message["notification"]["body"] == "ping the phone"
    assert message["android"]["collapse_key"] == f"conversation-{cid}"
    assert message["apns"]["headers"]["apns-collapse-id"] == f"conversation-{cid}"
    assert message["data"]["conversation_id"] == str(cid)
    # Strings only, each value as the Web Push JSON reads it: an app tests "false", not
    # Python's "False".
    assert message["data"]["mention"] == "false", message["data"]
    assert message["data"]["body"] == "ping the phone"
    assert all(isinstance(value, str) for value in message["data"].values()), message["data"]
    grants = [r for r in received if r.path == "/oauth2/token"]
    assert grants and all(r.ok for r in grants), grants
    assert grants[0].content["iss"].startswith("push@")


async def test_mutes_blocks_and_the_collapse_interval_hold_notifications_back(
        push_api: Api, outside: FakeOutside) -> None:
    sender, muted, blocker, control = [await push_api.register() for _ in range(4)]
    endpoints = {u.id: (await webpush_device(push_api, outside, u))[0]
                 for u in (muted, blocker, control)}
    cid = await group(push_api, sender, muted, blocker, control)
    response = await push_api.http.post(f"/api/v1/chat/sessions/{cid}/mute",
                                        headers=muted.headers)
    assert response.status_code == 200 and response.json()["muted"] is True
    response = await push_api.http.post("/api/v1/chat/block", headers=blocker.headers,
                                        json={"user_id": sender.id})
    assert response.status_code == 200, response.text
    before = await decisions(push_api)
    await send(push_api, sender, cid, "first")
    await wait_decisions(push_api, before, queued=1, muted=1)
    await outside.wait(lambda _: bool(ok_to(outside, endpoints[control.id])),
                       describe="the control user's push")
    # A second message within PUSH_MIN_INTERVAL_SECONDS collapses; a mention goes through.
    before = await decisions(push_api)
    await send(push_api, sender, cid, "second")
    await wait_decisions(push_api, before, collapsed=1, muted=1)
    await send(push_api, sender, cid, "third, for you", mentions=[control.id])
    await outside.wait(lambda _: len(ok_to(outside, endpoints[control.id])) == 2,
                       describe="the mention's push")
    assert [r.content["body"] for r in ok_to(outside, endpoints[control.id])] == [
        "first", "third, for you"]
    assert ok_to(outside, endpoints[control.id])[1].content["mention"] is True
    assert outside.to(endpoints[muted.id]) == [] and outside.to(endpoints[blocker.id]) == []
    # Unmuted, the next notification comes (past the interval of the mute's own count).
    response = await push_api.http.delete(f"/api/v1/chat/sessions/{cid}/mute",
                                          headers=muted.headers)
    assert response.status_code == 200 and response.json()["muted"] is False
    await send(push_api, sender, cid, "fourth")
    await outside.wait(lambda _: bool(ok_to(outside, endpoints[muted.id])),
                       describe="the unmuted user's push")
    # Not a participant: no mute.
    stranger = await push_api.register()
    response = await push_api.http.post(f"/api/v1/chat/sessions/{cid}/mute",
                                        headers=stranger.headers)
    assert response.status_code == 403


async def wait_subscriptions(api: Api, user: TestUser, count: int,
                             within: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        response = await api.http.get("/api/v1/push/subscriptions", headers=user.headers)
        assert response.status_code == 200, response.text
        if len(response.json()) == count:
            return response.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, response.json()
        await asyncio.sleep(0.1)


async def test_a_gone_subscription_is_removed(push_api: Api, outside: FakeOutside) -> None:
    sender, user = await push_api.register(), await push_api.register()
    endpoint, _ = await webpush_device(push_api, outside, user)
    token = f"fcm-gone-{user.id}"
    await subscribe(push_api, user, {"kind": "fcm", "token": token})
    assert len(await wait_subscriptions(push_api, user, 2)) == 2
    outside.gone_tokens.update({endpoint.removeprefix(outside.base_url), token})
    cid = await group(push_api, sender, user)
    await send(push_api, sender, cid, "anyone?")
    await wait_subscriptions(push_api, user, 0)
    assert [r.status for r in outside.to(endpoint)] == [410]
    dead = (await push_api.http.get("/api/v1/deliveries", headers=push_api.admin.headers,  # type: ignore[union-attr]
                                    params={"status": "dead"})).json()["deliveries"]
    gone = [d for d in dead if d["event_id"].startswith(f"push_{cid}_")]
    assert sorted(d["kind"] for d in gone) == ["fcm", "webpush"], gone
    assert all("gone" in d["last_error"] for d in gone), gone


async def test_any_success_of_a_push_service_is_a_delivery(
        push_api: Api, outside: FakeOutside) -> None:
    """RFC 8030's push service answers 201 Created; one that answers another success (204
    No Content) has taken the message too: delivered, not a dead letter."""
    sender, user = await push_api.register(), await push_api.register()
    endpoint, _ = await webpush_device(push_api, outside, user)
    outside.script(endpoint, 204)
    cid = await group(push_api, sender, user)
    await send(push_api, sender, cid, "taken quietly")
    await outside.wait(lambda _: len(outside.to(endpoint)) >= 1, describe="the push")
    assert push_api.admin is not None
    deadline = time.monotonic() + 30
    while True:
        rows = [d for d in (await push_api.http.get(
            "/api/v1/deliveries", headers=push_api.admin.headers,
            params={"kind": "webpush"})).json()["deliveries"]
            if d["event_id"].startswith(f"push_{cid}_")]
        if rows and rows[0]["status"] != "pending":
            break
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.1)
    assert [(d["status"], d["attempts"]) for d in rows] == [("done", 1)], rows
    assert [r.status for r in outside.to(endpoint)] == [204]


async def test_subscriptions_are_the_callers_own_and_checked(
        push_api: Api, outside: FakeOutside) -> None:
    user, other = await push_api.register(), await push_api.register()
    _, sub_id = await webpush_device(push_api, outside, user)
    response = await push_api.http.delete(f"/api/v1/push/subscriptions/{sub_id}",
                                          headers=other.headers)
    assert response.status_code == 404
    bad = [{"kind": "webpush", "endpoint": outside.base_url + "/push/x"},
           {"kind": "webpush", "endpoint": outside.base_url + "/push/x",
            "keys": {"p256dh": "not-a-key", "auth": "AAAA"}},
           {"kind": "fcm"}, {"kind": "apns", "token": "t"},
           {"kind": "webpush", "endpoint": "ftp://example.com/x",
            "keys": {"p256dh": "x", "auth": "y"}}]
    for body in bad:
        response = await push_api.http.post("/api/v1/push/subscriptions",
                                            headers=user.headers, json=body)
        assert response.status_code == 422, (body, response.text)
    config = await push_api.http.get("/api/v1/push/config", headers=user.headers)
    assert config.status_code == 200
    assert config.json()["webpush"] and config.json()["fcm"]
    assert len(config.json()["vapid_public_key"]) == 87  # 65 bytes, base64url
    response = await push_api.http.delete(f"/api/v1/push/subscriptions/{sub_id}",
                                          headers=user.headers)
    assert response.status_code == 200
    assert await wait_subscriptions(push_api, user, 0) == []


async def test_a_device_is_kept_before_the_server_can_reach_it(
        sqlite_api: Api, outside: FakeOutside) -> None:
    """On a server without FCM, an FCM token is kept (201), as is a Web Push endpoint whose
    host has no address now: the app registers what it has; the server sends once it can."""
    user = await sqlite_api.register()
    config = (await sqlite_api.http.get("/api/v1/push/config", headers=user.headers)).json()
    assert config["fcm"] is False, config
    fcm = await subscribe(sqlite_api, user, {"kind": "fcm", "token": f"fcm-{user.id}"})
    browser = {**outside.subscription(), "endpoint": "https://push.invalid/send/abc"}
    webpush = await subscribe(sqlite_api, user, {"kind": "webpush", **browser})
    kept = await sqlite_api.http.get("/api/v1/push/subscriptions", headers=user.headers)
    assert sorted((d["id"], d["kind"]) for d in kept.json()) == sorted(
        [(fcm, "fcm"), (webpush, "webpush")]), kept.text


async def test_a_user_keeps_twenty_devices_the_newest(sqlite_api: Api) -> None:
    """Each device is a delivery per message: past 20, a new one replaces the oldest."""
    user = await sqlite_api.register()
    ids = [await subscribe(sqlite_api, user, {"kind": "fcm", "token": f"t{n}-{user.id}"})
           for n in range(21)]
    again = await subscribe(sqlite_api, user, {"kind": "fcm", "token": f"t20-{user.id}"})
    assert again == ids[-1]  # the same token keeps its id, and its place
    kept = await sqlite_api.http.get("/api/v1/push/subscriptions", headers=user.headers)
    assert sorted(d["id"] for d in kept.json()) == sorted(ids[1:]), kept.text


async def test_logout_removes_the_sessions_subscriptions(
        push_api: Api, outside: FakeOutside) -> None:
    user = await push_api.register()
    await webpush_device(push_api, outside, user)
    response = await push_api.http.post("/api/v1/auth/logout", headers=user.headers,
                                        json={"refresh_token": user.refresh_token})
    assert response.status_code == 200, response.text
    login = await push_api.http.post("/api/v1/auth/login",
                                     json={"email": user.email, "password": user.password})
    assert login.status_code == 200
    user.token = login.json()["access_token"]
    assert await wait_subscriptions(push_api, user, 0) == []


async def test_a_pending_push_survives_a_killed_node_and_is_delivered_once(
        work_dir: Path, outside: FakeOutside) -> None:
    data_dir = work_dir / "push-restart"
    # Killed before it handles the 503, the node leaves its claim to run out (the lease);
    # killed after, the row waits for its retry (the backoff): either way the restarted
    # node delivers it, once.
    env = push_env(outside, OUTBOX_BACKOFF_SECONDS="2", OUTBOX_LEASE_SECONDS="4")
    server = with_admin(start_server(data_dir, **env))
    try:
        api = Api(server.base_url, await admin_of(server.base_url))
        sender, user = await api.register(), await api.register()
        endpoint, _ = await webpush_device(api, outside, user)
        outside.script(endpoint, 503)  # the push service is down for the first attempt
        cid = await group(api, sender, user)
        await send(api, sender, cid, "after the crash")
        await outside.wait(lambda _: len(outside.to(endpoint)) >= 1,
                           describe="the first, failed attempt")
        await api.aclose()
        server.stop(signal.SIGKILL)  # before the retry (1-2 s later)
        assert ok_to(outside, endpoint) == []
        server = start_server(data_dir, **env)
        api = Api(server.base_url, await admin_of(server.base_url))
        await outside.wait(lambda _: bool(ok_to(outside, endpoint)),
                           describe="the push after the restart")
        deadline = time.monotonic() + 30
        while True:
            rows = [d for d in (await api.http.get(
                "/api/v1/deliveries", headers=api.admin.headers,  # type: ignore[union-attr]
                params={"kind": "webpush"})).json()["deliveries"]
                if d["event_id"].startswith(f"push_{cid}_")]
            if rows and rows[0]["status"] == "done":
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.1)
        assert len(rows) == 1 and rows[0]["attempts"] == 2, rows
        assert [r.status for r in outside.to(endpoint)] == [503, 201]
        assert ok_to(outside, endpoint)[0].content["body"] == "after the crash"
        await api.aclose()
    finally:
        server.stop()


async def test_a_socket_on_another_node_counts_as_online(
        work_dir: Path, postgres: Postgres, redis_url: str, outside: FakeOutside) -> None:
    """Two nodes over Redis with one VAPID key: the recipient connected to B gets no push
    for a message sent on A; the one connected nowhere does."""
    name, url = await postgres.create_database()
    key = ec.generate_private_key(ec.SECP256R1())
    vapid = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    nodes = Cluster(work_dir / "push-cluster", url, redis_url)
    try:
        a = with_admin(nodes.start_node(**push_env(outside, VAPID_PRIVATE_KEY=vapid)))
        b = nodes.start_node(**push_env(outside, VAPID_PRIVATE_KEY=vapid))
        api_a, api_b = Api(a.base_url), Api(b.base_url)
        sender, offline, online = [await api_a.register() for _ in range(3)]
        config = (await api_b.http.get("/api/v1/push/config", headers=online.headers)).json()
        assert config == (await api_a.http.get("/api/v1/push/config",
                                               headers=online.headers)).json()
        off_endpoint, _ = await webpush_device(api_b, outside, offline)
        on_endpoint, _ = await webpush_device(api_b, outside, online)
        cid = await group(api_a, sender, offline, online)
        async with websockets.connect(
                f"{b.ws_url}/ws/chat/{cid}/?token={online.token}") as socket:
            first = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert first["type"] == "connection_established", first
            before = await decisions(api_a)
            # Subscriptions made on B are known on A within its reload (5 s).
            deadline = time.monotonic() + 30
            while True:
                await send(api_a, sender, cid, "across nodes")
                grown = {k: v - before.get(k, 0) for k, v in (await decisions(api_a)).items()}
                if grown.get("online", 0) >= 1:
                    break
                assert time.monotonic() < deadline, grown
                await asyncio.sleep(0.5)
            await outside.wait(lambda _: bool(ok_to(outside, off_endpoint)),
                               describe="the offline recipient's push")
        assert ok_to(outside, off_endpoint)[0].content["body"] == "across nodes"
        assert outside.to(on_endpoint) == []
        await api_a.aclose()
        await api_b.aclose()
    finally:
        nodes.stop()
        await postgres.drop_database(name)


async def test_an_agent_assigned_while_offline_is_notified(
        push_api: Api, outside: FakeOutside) -> None:
    """A support conversation assigned to an agent by someone else notifies that agent (no
    live socket); taking it oneself notifies nobody."""
    customer = await push_api.register()
    lead, agent = await push_api.register(role="agent"), await push_api.register(role="agent")
    endpoint, _ = await webpush_device(push_api, outside, agent)
    lead_endpoint, _ = await webpush_device(push_api, outside, lead)
    conversation = await push_api.conversation(customer, title="Refund for order 7")
    cid = int(conversation["id"])
    taken = await push_api.http.post(f"/api/v1/chat/sessions/{cid}/assign",
                                     headers=lead.headers, json={"agent_id": lead.id})
    assert taken.status_code == 200, taken.text
    before = await decisions(push_api)
    moved = await push_api.http.post(f"/api/v1/chat/sessions/{cid}/assign",
                                     headers=lead.headers, json={"agent_id": agent.id})
    assert moved.status_code == 200, moved.text
    push = await personal_push(push_api, outside, before, endpoint, "the assigned agent's push")
    assert push.content["title"] == "Assigned to you"
    assert push.content["body"] == "Refund for order 7"
    assert push.content["conversation_id"] == cid and push.content["assignment"] is True
    assert push.headers["topic"] == f"conversation-{cid}"
    assert outside.to(lead_endpoint) == []  # who took it themselves was told nothing


async def test_a_user_added_to_a_group_while_offline_is_notified(
        push_api: Api, outside: FakeOutside) -> None:
    """Added to a group by someone else, a user with no live socket is told; neither the
    owner who added them nor the member the group was created with is."""
    owner, member, added = [await push_api.register() for _ in range(3)]
    owner_endpoint, _ = await webpush_device(push_api, outside, owner)
    member_endpoint, _ = await webpush_device(push_api, outside, member)
    endpoint, _ = await webpush_device(push_api, outside, added)
    conversation = await push_api.conversation(owner, kind="group", title="Trip to Lisbon",
                                               participant_ids=[member.id])
    cid = int(conversation["id"])
    before = await decisions(push_api)
    grown = await push_api.http.post(f"/api/v1/chat/sessions/{cid}/participants",
                                     headers=owner.headers, json={"user_ids": [added.id]})
    assert grown.status_code == 200, grown.text
    push = await personal_push(push_api, outside, before, endpoint, "the added user's push")
    assert push.content["title"] == "Added to a group"
    assert push.content["body"] == "Trip to Lisbon"
    assert push.content["conversation_id"] == cid and push.content["added"] is True
    assert push.headers["topic"] == f"conversation-{cid}"
    assert outside.to(owner_endpoint) == [] and outside.to(member_endpoint) == []

