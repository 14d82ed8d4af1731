"""Seed 000's ``/mobile/chat/...`` family: devices authenticated by ``device_id``."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api
from tests.test_rest_sessions import shared

BASE = "/mobile/chat"


async def start(api: Api, device_id: str, subject: str = "Help needed") -> dict[str, Any]:
    response = await api.http.post(f"{BASE}/start/",
                                   json={"device_id": device_id, "subject": subject})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_device_chat_flow(api: Api) -> None:
    device = await api.device()
    started = await start(api, device)
    cid = started["conversation_id"]
    assert cid == started["id"] and started["device_id"] == device
    assert started["kind"] == "support" and started["subject"] == "Help needed"

    sent = await api.http.post(f"{BASE}/{cid}/send-message/", json={
        "device_id": device, "content": "My card is blocked", "is_urgent": True,
        "metadata": {"app": "ios"}})
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["sender_type"] == "mobile" and message["sender_id"] == device
    assert message["is_urgent"] is True and message["metadata"] == {"app": "ios"}

    image = await api.http.post(f"{BASE}/{cid}/send-message/?device_id={device}", json={
        "content": "", "message_type": "image", "media_url": "https://cdn.example/a.png"})
    assert image.status_code == 201, image.text
    assert image.json()["message_type"] == "image"

    listed = await api.http.get(f"{BASE}/list/", params={"device_id": device})
    assert listed.status_code == 200 and [c["id"] for c in listed.json()] == [cid]

    detail = await api.http.get(f"{BASE}/{cid}/detail/", params={"device_id": device})
    assert detail.status_code == 200
    body = detail.json()
    assert body["id"] == cid and body["has_more"] is False
    assert [m["id"] for m in body["messages"]] == [message["id"], image.json()["id"]]


async def test_device_credentials(api: Api) -> None:
    device = await api.device()
    cid = (await start(api, device))["id"]
    for call in (
        api.http.post(f"{BASE}/start/", json={"subject": "x"}),
        api.http.get(f"{BASE}/list/"),
        api.http.get(f"{BASE}/{cid}/detail/"),
        api.http.post(f"{BASE}/{cid}/send-message/", json={"content": "x"}),
    ):
        response = await call
        assert response.status_code == 401 and "detail" in response.json()
    unknown = await api.http.get(f"{BASE}/list/", params={"device_id": "no-such-device-0"})
    assert unknown.status_code == 401 and unknown.json()["detail"]

    gone = await api.device()
    assert (await api.http.delete(f"/mobile/sessions/{gone}/")).status_code == 200
    refused = await api.http.post(f"{BASE}/start/", json={"device_id": gone, "subject": "x"})
    assert refused.status_code == 401
    # Registering the deactivated id again does not bring it (and its conversations) back.
    again = await api.http.post("/mobile/sessions/", json={"device_id": gone})
    assert again.status_code == 409 and again.json()["detail"], again.text
    assert (await api.http.get(f"{BASE}/list/", params={"device_id": gone})).status_code == 401
    # An active one registers again as it is (the app's start), keeping its conversations.
    again = await api.http.post("/mobile/sessions/", json={"device_id": device})
    assert again.status_code == 201 and again.json()["is_active"] is True
    listed = await api.http.get(f"{BASE}/list/", params={"device_id": device})
    assert [c["id"] for c in listed.json()] == [cid]


async def test_device_sees_only_its_own_and_staff_see_it(api: Api) -> None:
    mine, theirs = await api.device(), await api.device()
    cid = (await start(api, mine))["id"]
    other = (await start(api, theirs))["id"]
    assert (await api.http.get(f"{BASE}/{other}/detail/",
                               params={"device_id": mine})).status_code == 403
    refused = await api.http.post(f"{BASE}/{other}/send-message/",
                                  json={"device_id": mine, "content": "hi"})
    assert refused.status_code == 403
    assert (await api.http.get(f"{BASE}/999999999/detail/",
                               params={"device_id": mine})).status_code == 404
    listed = await api.http.get(f"{BASE}/list/", params={"device_id": mine})
    assert [c["id"] for c in listed.json()] == [cid]

    # a plain user does not see a device's ticket; an agent does, answers it and closes it
    user, agent = await shared(api, "stranger"), await shared(api, "agent")
    assert (await api.http.get(f"/api/v1/chat/sessions/{cid}",
                               headers=user.headers)).status_code == 403
    reply = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                json={"content": "How can I help?"}, headers=agent.headers)
    assert reply.status_code == 201
    detail = (await api.http.get(f"{BASE}/{cid}/detail/", params={"device_id": mine})).json()
    assert detail["messages"][-1]["content"] == "How can I help?"
    assert detail["unread_count"] == 1
    closed = await api.http.post(f"/api/v1/chat/sessions/{cid}/close", headers=agent.headers)
    assert closed.status_code == 200
    late = await api.http.post(f"{BASE}/{cid}/send-message/",
                               json={"device_id": mine, "content": "still there?"})
    assert late.status_code == 409 and late.json()["detail"] == "Conversation is closed"


async def test_device_idempotent_send(api: Api) -> None:
    device = await api.device()
    cid = (await start(api, device))["id"]
    body = {"device_id": device, "content": "once", "client_msg_id": "m-1"}
    first = await api.http.post(f"{BASE}/{cid}/send-message/", json=body)
    second = await api.http.post(f"{BASE}/{cid}/send-message/", json=body)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    detail = (await api.http.get(f"{BASE}/{cid}/detail/", params={"device_id": device})).json()
    assert len(detail["messages"]) == 1


async def test_staff_reading_some_of_a_device_s_messages(api: Api) -> None:
    device = await api.device()
    cid = (await start(api, device))["id"]
    m1, m2, m3 = [(await api.http.post(f"{BASE}/{cid}/send-message/", json={
        "device_id": device, "content": f"m{i}"})).json()["id"] for i in range(3)]
    agent = await shared(api, "agent")

    async def seen() -> tuple[int, list[tuple[str, int]]]:
        """Staff's unread count, and each message's status and read_by_count on the device."""
        got = await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=agent.headers)
        detail = await api.http.get(f"{BASE}/{cid}/detail/", params={"device_id": device})
        return (got.json()["unread_count"],
                [(m["status"], m["read_by_count"]) for m in detail.json()["messages"]])

    url = f"/api/chat/conversations/{cid}/mark_read/"
    marked = await api.http.post(url, json={"message_ids": [m1, m3]}, headers=agent.headers)
    assert marked.status_code == 200 and marked.json()["message_ids"] == [m1, m3]
    assert await seen() == (1, [("read", 1), ("sent", 0), ("read", 1)])
    rest = await api.http.post(url, json={}, headers=agent.headers)
    assert rest.json()["message_ids"] == [m2]
    assert await seen() == (0, [("read", 1)] * 3)
