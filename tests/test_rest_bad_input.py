"""Every REST route of the chat families that takes a body refuses bad bodies with a 4xx and
``{"detail"}``, never a 500 (CONTRACT section 3)."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api


async def test_every_body_route_refuses_bad_bodies(api: Api) -> None:
    owner, other = await api.register(), await api.register()
    session = await api.conversation(owner)
    sid = session["id"]
    message = (await api.http.post(f"/api/v1/chat/sessions/{sid}/messages",
                                   json={"content": "hi"}, headers=owner.headers)).json()
    mid = message["id"]
    device = await api.device()
    started = await api.http.post("/mobile/chat/start/", json={"device_id": device})
    cid = started.json()["id"]

    # (method, path, headers, a body with wrong types, a body missing required fields or None)
    user = owner.headers
    routes: list[tuple[str, str, dict[str, str], dict[str, Any], dict[str, Any] | None]] = [
        ("POST", "/api/v1/chat/sessions", user,
         {"title": 5, "kind": ["support"], "participant_ids": "1,2"}, {"kind": "group"}),
        ("POST", f"/api/v1/chat/sessions/{sid}/mark-read", user,
         {"up_to_message_id": True, "message_ids": "all"}, None),
        ("POST", f"/api/v1/chat/sessions/{sid}/messages", user,
         {"content": 42, "is_urgent": "very", "metadata": []}, {"message_type": "text"}),
        ("PATCH", f"/api/v1/chat/messages/{mid}", user, {"content": {"text": "x"}}, {}),
        ("POST", f"/api/v1/chat/messages/{mid}/reactions", user, {"emoji": 1}, {}),
        ("POST", "/api/v1/chat/block", user, {"user_id": "someone"}, {}),
        ("POST", "/api/v1/chat/unblock", user, {"user_id": 1.5}, {}),
        ("POST", f"/api/chat/conversations/{sid}/mark_read/", user,
         {"message_ids": [True]}, None),
        ("POST", "/api/chat/messages/", user,
         {"conversation_id": "first", "content": "x"}, {"content": "no conversation"}),
        ("POST", "/api/chat/connections/", user, {"user_id": [other.id]}, {}),
        ("POST", "/mobile/chat/start/", {}, {"device_id": 12345678, "subject": ["x"]},
         {"subject": "no device"}),
        ("POST", f"/mobile/chat/{cid}/send-message/", {},
         {"device_id": device, "content": None, "mentions": "all"}, {"device_id": device}),
    ]
    for method, path, headers, wrong, missing in routes:
        where = f"{method} {path}"
        malformed = await api.http.request(
            method, path, content=b'{"content": "x",', headers={
                **headers, "Content-Type": "application/json"})
        assert malformed.status_code == 400, (where, malformed.text)
        assert malformed.json()["detail"] == "Invalid JSON format"
        for not_object in (b"[1, 2]", b'"text"', b"42", b"null", b"true"):
            response = await api.http.request(method, path, content=not_object, headers={
                **headers, "Content-Type": "application/json"})
            assert response.status_code == 422, (where, not_object, response.text)
            assert isinstance(response.json()["detail"], str), where
        response = await api.http.request(method, path, json=wrong, headers=headers)
        assert response.status_code == 422, (where, wrong, response.text)
        # Errors are {"detail": "…"} (CONTRACT section 3): one line, also for validation.
        assert isinstance(response.json()["detail"], str) and response.json()["detail"], where
        if missing is not None:
            response = await api.http.request(method, path, json=missing, headers=headers)
            assert 400 <= response.status_code < 500, (where, missing, response.text)
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]

    # Validation names each bad field in the line, and lists them as {loc, msg, type}.
    refused = (await api.http.post("/api/v1/chat/sessions", json={"kind": "group"},
                                   headers=user)).json()
    assert refused["detail"] == "title: Field required", refused
    assert refused["code"] == "invalid" and refused["errors"][0]["loc"] == ["title"], refused
    refused = (await api.http.get(f"/api/v1/chat/sessions/{sid}/messages?limit=abc",
                                  headers=user)).json()
    assert refused["detail"].startswith("limit: ") and refused["errors"][0]["loc"] == ["limit"]

    # a valid body still works after all that: the routes were not refused for other reasons
    ok = await api.http.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "ok"},
                             headers=user)
    assert ok.status_code == 201
    history = await api.http.get(f"/api/v1/chat/sessions/{sid}/messages", headers=user)
    assert [m["content"] for m in history.json()] == ["hi", "ok"]


async def test_oversized_body_and_content(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    url = f"/api/v1/chat/sessions/{sid}/messages"
    huge = await api.http.post(url, json={"content": "x" * 300_000}, headers=owner.headers)
    assert huge.status_code == 413 and huge.json()["detail"]
    long = await api.http.post("/api/chat/messages/", headers=owner.headers,
                               json={"conversation_id": sid, "content": "x" * 4001})
    assert long.status_code == 413 and long.json()["detail"]
