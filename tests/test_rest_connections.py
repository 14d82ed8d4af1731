"""Seed 004's ``/api/chat/...`` family: connections, direct conversations, page-number history."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, TestUser
from tests.test_rest_sessions import shared

BASE = "/api/chat"


async def direct_conversation(api: Api, a: TestUser, b: TestUser) -> int:
    """``a`` asks ``b`` for a connection, ``b`` accepts: the id of their direct conversation."""
    asked = await api.http.post(f"{BASE}/connections/", json={"user_id": b.id},
                                headers=a.headers)
    assert asked.status_code == 201, asked.text
    accepted = await api.http.post(f"{BASE}/connections/{asked.json()['id']}/accept/",
                                   headers=b.headers)
    assert accepted.status_code == 200, accepted.text
    conversation_id = accepted.json()["conversation_id"]
    assert isinstance(conversation_id, int)
    return conversation_id  # type: ignore[no-any-return]


async def post_message(api: Api, user: TestUser, conversation_id: int, content: str,
                       **extra: Any) -> dict[str, Any]:
    response = await api.http.post(f"{BASE}/messages/", headers=user.headers,
                                   json={"conversation_id": conversation_id,
                                         "content": content, **extra})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_connection_lifecycle_creates_direct_conversation(api: Api) -> None:
    a, b, stranger = await api.register(), await api.register(), await shared(api, "stranger")
    asked = await api.http.post(f"{BASE}/connections/", json={"user_id": b.id},
                                headers=a.headers)
    assert asked.status_code == 201
    connection = asked.json()
    assert connection["status"] == "pending" and connection["conversation_id"] is None
    assert connection["requester_id"] == a.id and connection["addressee_id"] == b.id

    # a duplicate in either direction is a conflict
    for user, other in ((a, b), (b, a)):
        again = await api.http.post(f"{BASE}/connections/", json={"user_id": other.id},
                                    headers=user.headers)
        assert again.status_code == 409 and "detail" in again.json()

    # nobody but the addressee accepts; a stranger does not even see it
    url = f"{BASE}/connections/{connection['id']}/accept/"
    assert (await api.http.post(url, headers=a.headers)).status_code == 403
    assert (await api.http.post(url, headers=stranger.headers)).status_code == 404
    assert (await api.http.post(f"{BASE}/connections/999999999/accept/",
                                headers=b.headers)).status_code == 404

    accepted = await api.http.post(url, headers=b.headers)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    conversation_id = accepted.json()["conversation_id"]
    # accepting twice is harmless and names the same conversation
    again = await api.http.post(url, headers=b.headers)
    assert again.status_code == 200 and again.json()["conversation_id"] == conversation_id

    for user in (a, b):
        listed = await api.http.get(f"{BASE}/connections/", headers=user.headers)
        assert [c["id"] for c in listed.json()] == [connection["id"]]
        conversations = await api.http.get(f"{BASE}/conversations/", headers=user.headers)
        assert conversations.status_code == 200
        assert [c["id"] for c in conversations.json()] == [conversation_id]
        assert conversations.json()[0]["kind"] == "direct"
    assert (await api.http.get(f"{BASE}/connections/", headers=stranger.headers)).json() == []
    assert (await api.http.get(f"{BASE}/conversations/{conversation_id}/",
                               headers=stranger.headers)).status_code == 403


async def test_connection_refusals(api: Api) -> None:
    a = await api.register()
    to_self = await api.http.post(f"{BASE}/connections/", json={"user_id": a.id},
                                  headers=a.headers)
    assert to_self.status_code == 422
    unknown = await api.http.post(f"{BASE}/connections/", json={"user_id": 2_000_000_000},
                                  headers=a.headers)
    assert unknown.status_code == 404
    # past the id column's range: refused as invalid, never a database error
    huge = await api.http.post(f"{BASE}/connections/", json={"user_id": 10**12},
                               headers=a.headers)
    assert huge.status_code == 422
    assert (await api.http.get(f"{BASE}/connections/")).status_code == 401


async def test_messages_and_page_number_pagination(api: Api) -> None:
    a, b, stranger = await api.register(), await api.register(), await shared(api, "stranger")
    conversation_id = await direct_conversation(api, a, b)
    sent = [await post_message(api, a if i % 2 else b, conversation_id, f"m{i}")
            for i in range(5)]
    assert sent[0]["conversation_id"] == conversation_id and sent[0]["sender_id"] == b.id

    url = f"{BASE}/conversations/{conversation_id}/messages/"
    first = await api.http.get(url, params={"page_size": 2}, headers=a.headers)
    page = first.json()
    assert page["count"] == 5 and page["previous"] is None
    assert [m["content"] for m in page["results"]] == ["m0", "m1"]
    assert page["next"].startswith(api.base_url) and "page=2" in page["next"]

    second = (await api.http.get(page["next"], headers=a.headers)).json()
    assert [m["content"] for m in second["results"]] == ["m2", "m3"]
    assert "page=" not in second["previous"] and "page_size=2" in second["previous"]
    third = (await api.http.get(second["next"], headers=a.headers)).json()
    assert [m["content"] for m in third["results"]] == ["m4"]
    assert third["next"] is None and "page=2" in third["previous"]

    past_end = await api.http.get(url, params={"page": 9, "page_size": 2}, headers=a.headers)
    assert past_end.status_code == 404 and past_end.json()["detail"] == "Invalid page."
    assert (await api.http.get(url, params={"page": 0}, headers=a.headers)).status_code == 422
    assert (await api.http.get(url, headers=stranger.headers)).status_code == 403

    one = await api.http.get(f"{BASE}/messages/{sent[1]['id']}/", headers=b.headers)
    assert one.status_code == 200 and one.json()["content"] == "m1"
    assert (await api.http.get(f"{BASE}/messages/{sent[1]['id']}/",
                               headers=stranger.headers)).status_code == 403
    assert (await api.http.get(f"{BASE}/messages/999999999/",
                               headers=a.headers)).status_code == 404

    stranger_send = await api.http.post(f"{BASE}/messages/", headers=stranger.headers,
                                        json={"conversation_id": conversation_id,
                                              "content": "hi"})
    assert stranger_send.status_code == 403


async def test_mark_read_and_unread_counts(api: Api) -> None:
    a, b = await api.register(), await api.register()
    conversation_id = await direct_conversation(api, a, b)
    sent = [await post_message(api, a, conversation_id, f"m{i}") for i in range(3)]
    detail = await api.http.get(f"{BASE}/conversations/{conversation_id}/", headers=b.headers)
    assert detail.json()["unread_count"] == 3
    assert detail.json()["last_message"]["id"] == sent[-1]["id"]

    marked = await api.http.post(f"{BASE}/conversations/{conversation_id}/mark_read/",
                                 headers=b.headers)
    assert marked.status_code == 200
    assert marked.json()["success"] is True
    assert marked.json()["message_ids"] == [m["id"] for m in sent]
    detail = await api.http.get(f"{BASE}/conversations/{conversation_id}/", headers=b.headers)
    assert detail.json()["unread_count"] == 0
    message = await api.http.get(f"{BASE}/messages/{sent[0]['id']}/", headers=a.headers)
    assert message.json()["status"] == "read" and message.json()["read_by_count"] == 1
