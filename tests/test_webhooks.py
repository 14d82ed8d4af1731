"""Outgoing webhooks over real server processes (CONTRACT section 11): registration by
admins, signed deliveries verified by a fake receiver, a retry after a 500 and one delivery
per event id, dead letters listed for staff, and the refusal of private addresses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Api, admin_of, with_admin
from tests.support.fake_outside import FakeOutside
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres

SECRET = "receiver-secret-" + "s" * 16


@pytest.fixture(scope="module")
def outside() -> Iterator[FakeOutside]:
    fake = FakeOutside()
    yield fake
    fake.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hook_server(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[ServerProcess]:
    """A server that may call 127.0.0.1 (the fake), retrying fast."""
    name = url = None
    if request.param == "postgres":
        postgres: Postgres = request.getfixturevalue("postgres")
        name, url = asyncio.run(postgres.create_database())
    server = with_admin(start_server(
        work_dir / f"webhooks-{request.param}", url, WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        OUTBOX_BACKOFF_SECONDS="0.2", OUTBOX_ATTEMPTS="3", OUTBOX_POLL_SECONDS="0.2"))
    yield server
    server.stop()
    if name is not None:
        asyncio.run(postgres.drop_database(name))


@pytest.fixture
async def hook_api(hook_server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(hook_server.base_url, await admin_of(hook_server.base_url))
    yield client
    await client.aclose()


async def register(api: Api, url: str, events: list[str]) -> dict[str, Any]:
    assert api.admin is not None
    response = await api.http.post("/api/v1/webhooks/endpoints", headers=api.admin.headers,
                                   json={"url": url, "events": events, "secret": SECRET})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def deliveries(api: Api, **params: Any) -> dict[str, Any]:
    assert api.admin is not None
    response = await api.http.get("/api/v1/deliveries", headers=api.admin.headers,
                                  params={"kind": "webhook", **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def settled(api: Api, event_id: str, within: float = 30.0) -> dict[str, Any]:
    """The delivery row of ``event_id`` once it is done or dead."""
    deadline = time.monotonic() + within
    while True:
        rows = [d for d in (await deliveries(api, limit=200))["deliveries"]
                if d["event_id"] == event_id]
        if rows and all(d["status"] != "pending" for d in rows):
            return rows[0]
        assert time.monotonic() < deadline, f"delivery of {event_id} never settled: {rows}"
        await asyncio.sleep(0.1)


async def test_a_webhook_is_signed_retried_after_a_500_and_delivered_once(
        hook_api: Api, outside: FakeOutside) -> None:
    url = outside.webhook(SECRET)
    endpoint = await register(hook_api, url, ["chat_message", "message_edit"])
    assert endpoint["secret"] == SECRET and endpoint["events"] == ["chat_message",
                                                                   "message_edit"]
    outside.script(url, 500)  # the receiver fails the first attempt
    owner = await hook_api.register()
    conversation = await hook_api.conversation(owner, kind="group")
    sent = await hook_api.http.post(
        f"/api/v1/chat/sessions/{conversation['id']}/messages", headers=owner.headers,
        json={"content": "hello hooks"})
    assert sent.status_code == 201, sent.text
    message = sent.json()

    received = await outside.wait(lambda rs: any(r.ok for r in rs if r.path in url),
                                  describe="a verified webhook delivery")
    mine = [r for r in received if url.endswith(r.path)]
    assert [r.status for r in mine] == [500, 200], [(r.status, r.error) for r in mine]
    body = mine[1].content
    assert body["event"] == "chat_message"
    assert body["conversation_id"] == conversation["id"]
    assert body["data"]["message"]["id"] == message["id"]
    assert body["data"]["message"]["content"] == "hello hooks"
    assert body["id"] == f"evt_{conversation['id']}_{body['position']}"
    # The retry is the same event: the same id and body, signed again.
    assert mine[0].body == mine[1].body
    assert mine[1].headers["x-confab-event-id"] == body["id"]

    row = await settled(hook_api, body["id"])
    assert row["status"] == "done" and row["attempts"] == 2, row

    # An edit is another event with its own id; a reaction is not subscribed to.
    edited = await hook_api.http.patch(f"/api/v1/chat/messages/{message['id']}",
                                       headers=owner.headers, json={"content": "edited"})
    assert edited.status_code == 200, edited.text
    reacted = await hook_api.http.post(f"/api/v1/chat/messages/{message['id']}/reactions",
                                       headers=owner.headers, json={"emoji": "👍"})
    assert reacted.status_code == 200, reacted.text
    received = await outside.wait(
        lambda rs: any(r.ok and r.content["event"] == "message_edit"
                       for r in rs if url.endswith(r.path)), describe="the edit's webhook")
    edit = next(r.content for r in received
                if url.endswith(r.path) and r.ok and r.content["event"] == "message_edit")
    assert edit["data"]["content"] == "edited" and edit["id"] != body["id"]
    await settled(hook_api, edit["id"])
    # Exactly once per event id, and nothing the endpoint did not ask for.
    ok = [r.content for r in outside.to(url) if r.ok]
    assert sorted(r["id"] for r in ok) == sorted({body["id"], edit["id"]})
    assert {r["event"] for r in ok} == {"chat_message", "message_edit"}
    pending = (await deliveries(hook_api, status="pending", limit=200))["deliveries"]
    assert not [d for d in pending if d["target_id"] == endpoint["id"]], pending


async def test_a_failing_or_redirecting_receiver_ends_dead_and_listed_for_staff(
        hook_api: Api, outside: FakeOutside) -> None:
    url = outside.webhook(SECRET)
    await register(hook_api, url, ["chat_message"])
    outside.script(url, 503, 503, 503, 503)  # more than OUTBOX_ATTEMPTS
    redirect = outside.webhook(SECRET)
    await register(hook_api, redirect, ["chat_message"])
    outside.script(redirect, 302)
    owner = await hook_api.register()
    conversation = await hook_api.conversation(owner, kind="group")
    sent = await hook_api.http.post(
        f"/api/v1/chat/sessions/{conversation['id']}/messages", headers=owner.headers,
        json={"content": "nobody home"})
    assert sent.status_code == 201, sent.text
    await outside.wait(lambda rs: len([r for r in rs if url.endswith(r.path)]) >= 3,
                       describe="three attempts")
    dead = await _dead_for(hook_api, conversation["id"])
    assert len(dead) == 2, dead
    for row in dead:
        assert row["attempts"] in (1, 3) and row["finished_at"], row
    errors = sorted(row["last_error"] for row in dead)
    assert errors[0].startswith("HTTP 302") and "redirect" in errors[0], errors
    assert errors[1].startswith("HTTP 503"), errors
    assert len(outside.to(url)) == 3  # OUTBOX_ATTEMPTS, then no more
    assert len(outside.to(redirect)) == 1  # a redirect is not tried again nor followed
    # Users do not see the outbox.
    response = await hook_api.http.get("/api/v1/deliveries", headers=owner.headers)
    assert response.status_code == 403


async def _dead_for(api: Api, conversation_id: int, within: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + within
    prefix = f"evt_{conversation_id}_"
    while True:
        rows = [d for d in (await deliveries(api, status="dead", limit=200))["deliveries"]
                if d["event_id"].startswith(prefix)]
        if len(rows) >= 2:
            return rows
        assert time.monotonic() < deadline, f"no dead letters for {conversation_id}: {rows}"
        await asyncio.sleep(0.1)


async def test_only_admins_register_and_events_must_be_known(
        hook_api: Api, outside: FakeOutside) -> None:
    assert hook_api.admin is not None
    user = await hook_api.register()
    agent = await hook_api.register(role="agent")
    url = outside.webhook(SECRET)
    for who in (user, agent):
        response = await hook_api.http.post("/api/v1/webhooks/endpoints", headers=who.headers,
                                            json={"url": url, "events": ["chat_message"]})
        assert response.status_code == 403, response.text
    response = await hook_api.http.post("/api/v1/webhooks/endpoints",
                                        headers=hook_api.admin.headers,
                                        json={"url": url, "events": ["no_such_event"]})
    assert response.status_code == 422 and "no_such_event" in response.text
    response = await hook_api.http.post("/api/v1/webhooks/endpoints",
                                        headers=hook_api.admin.headers,
                                        json={"url": "ftp://example.com/x",
                                              "events": ["chat_message"]})
    assert response.status_code == 422, response.text
    response = await hook_api.http.post("/api/v1/webhooks/endpoints",
                                        headers=hook_api.admin.headers,
                                        json={"url": url, "events": ["chat_message"],
                                              "secret": "short"})
    assert response.status_code == 422 and "secret" in response.text, response.text
    # Without a secret one is made; it is shown once.
    response = await hook_api.http.post("/api/v1/webhooks/endpoints",
                                        headers=hook_api.admin.headers,
                                        json={"url": url, "events": ["chat_message"]})
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 32
    listed = await hook_api.http.get("/api/v1/webhooks/endpoints",
                                     headers=hook_api.admin.headers)
    assert listed.status_code == 200
    assert made["id"] in [e["id"] for e in listed.json()]
    assert all("secret" not in e for e in listed.json())
    gone = await hook_api.http.delete(f"/api/v1/webhooks/endpoints/{made['id']}",
                                      headers=hook_api.admin.headers)
    assert gone.status_code == 200
    listed = await hook_api.http.get("/api/v1/webhooks/endpoints",
                                     headers=hook_api.admin.headers)
    assert made["id"] not in [e["id"] for e in listed.json()]
    again = await hook_api.http.delete(f"/api/v1/webhooks/endpoints/{made['id']}",
                                       headers=hook_api.admin.headers)
    assert again.status_code == 404


async def test_team_operations_are_webhook_events_too(
        hook_api: Api, outside: FakeOutside) -> None:
    """``member_added``, ``member_removed`` and ``conversation_updated`` are events of the
    conversations' logs like a message: a receiver subscribed to them gets each, with the
    Socket.IO payload."""
    url = outside.webhook(SECRET)
    await register(hook_api, url, ["member_added", "member_removed", "conversation_updated"])
    owner, member = await hook_api.register(), await hook_api.register()
    conversation = await hook_api.conversation(owner, kind="group", title="before")
    cid = conversation["id"]
    path = f"/api/v1/chat/sessions/{cid}"
    added = await hook_api.http.post(f"{path}/participants", headers=owner.headers,
                                     json={"user_ids": [member.id]})
    assert added.status_code == 200, added.text
    renamed = await hook_api.http.patch(path, headers=owner.headers, json={"title": "after"})
    assert renamed.status_code == 200, renamed.text
    removed = await hook_api.http.delete(f"{path}/participants/{member.id}",
                                         headers=owner.headers)
    assert removed.status_code == 200, removed.text

    def mine(received: list[Any]) -> list[dict[str, Any]]:
        return [r.content for r in received if r.ok and url.endswith(r.path)
                and r.content["conversation_id"] == cid]

    received = await outside.wait(lambda rs: len(mine(rs)) >= 3,
                                  describe="three team-operation webhooks")
    bodies = sorted(mine(received), key=lambda b: b["position"])
    assert [b["event"] for b in bodies] == ["member_added", "conversation_updated",
                                            "member_removed"], bodies
    assert bodies[0]["data"]["user_id"] == member.id
    assert bodies[1]["data"]["conversation"]["title"] == "after"
    assert bodies[2]["data"]["user_id"] == member.id


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://10.1.2.3/hook",
    "http://192.168.0.10/hook", "http://169.254.169.254/latest/meta-data",
    "http://[::1]:9/hook", "http://[fe80::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook", "http://224.0.0.1/hook", "http://[fc00::1]/hook",
    "http://100.64.0.1/hook",
])
async def test_private_addresses_are_refused_without_the_setting(
        sqlite_api: Api, target: str) -> None:
    assert sqlite_api.admin is not None
    response = await sqlite_api.http.post(
        "/api/v1/webhooks/endpoints", headers=sqlite_api.admin.headers,
        json={"url": target, "events": ["chat_message"]})
    assert response.status_code == 422, response.text
    assert "refused" in response.json()["detail"]


async def test_the_catch_up_delivers_what_the_live_path_missed_once(
        work_dir: Path, postgres: Postgres, outside: FakeOutside) -> None:
    """Two nodes on one database. B never reloads the endpoints (its live path does not know
    the one registered on A after it started), as a node that died before queuing would
    miss it: the catch-up over the event log queues B's event; A's, queued live, is not
    queued again."""
    name, url = await postgres.create_database()
    common = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "OUTBOX_POLL_SECONDS": "0.2",
              "WEBHOOK_CATCH_UP_SECONDS": "0.5", "WEBHOOK_CATCH_UP_DELAY_SECONDS": "1"}
    a = with_admin(start_server(work_dir / "catch-up-a", url, **common))
    b = start_server(work_dir / "catch-up-b", url, WEBHOOK_REFRESH_SECONDS="3600", **common)
    try:
        api_a = Api(a.base_url, await admin_of(a.base_url))
        api_b = Api(b.base_url, api_a.admin)
        hook = outside.webhook(SECRET)
        await register(api_a, hook, ["chat_message"])
        owner = await api_a.register()
        conversation = await api_a.conversation(owner, kind="group")
        cid = conversation["id"]
        sent = []
        for api, text in ((api_a, "live on A"), (api_b, "missed live on B")):
            response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                           headers=owner.headers, json={"content": text})
            assert response.status_code == 201, response.text
            sent.append(response.json()["id"])
        received = await outside.wait(
            lambda rs: {r.content["data"]["message"]["id"] for r in rs
                        if hook.endswith(r.path) and r.ok} >= set(sent),
            describe="both messages' webhooks")
        ok = [r.content for r in received if hook.endswith(r.path) and r.ok]
        assert sorted(r["data"]["message"]["id"] for r in ok) == sorted(sent), ok
        assert ok[-1]["data"]["message"]["content"] == "missed live on B"
        assert len({r["id"] for r in ok}) == 2
        rows = [d for d in (await deliveries(api_a, limit=200))["deliveries"]
                if d["event_id"].startswith(f"evt_{cid}_")]
        assert len(rows) == 2, rows
        await api_a.aclose()
        await api_b.aclose()
    finally:
        a.stop()
        b.stop()
        await postgres.drop_database(name)


async def test_a_host_without_an_address_is_kept_and_retried(hook_api: Api) -> None:
    """A name that resolves to nothing now (``.invalid`` never does) is no verdict on its
    address: registered (201), and each delivery to it fails as a network error does, to be
    tried again, until the attempts run out."""
    endpoint = await register(hook_api, "http://hooks.invalid/confab", ["chat_message"])
    try:
        owner = await hook_api.register()
        cid = (await hook_api.conversation(owner, kind="group"))["id"]
        sent = await hook_api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                        headers=owner.headers, json={"content": "hello"})
        assert sent.status_code == 201, sent.text
        deadline = time.monotonic() + 30
        while True:
            rows = [d for d in (await deliveries(hook_api, limit=200))["deliveries"]
                    if d["target_id"] == endpoint["id"]]
            if rows and rows[0]["status"] == "dead":
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.1)
        assert rows[0]["attempts"] == 3, rows  # OUTBOX_ATTEMPTS: retried, not dead at once
        assert "cannot resolve hooks.invalid" in rows[0]["last_error"], rows
        assert not rows[0]["last_error"].startswith("refused"), rows
    finally:
        assert hook_api.admin is not None
        await hook_api.http.delete(f"/api/v1/webhooks/endpoints/{endpoint['id']}",
                                   headers=hook_api.admin.headers)
