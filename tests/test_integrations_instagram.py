"""Instagram: Meta's verification challenge, signed events (over the exact bytes), customers,
idempotent redelivery, echoes, edits, and replies through the Graph API send API, against a real
server process and a fake Graph API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.integrations import instagram
from backend.integrations.delivery import DeliveryError, Reply
from backend.service.errors import ChatError
from backend.service.uploads import FileContents
from backend.settings import Integrations
from tests.support.client import Api
from tests.support.fake_platform import ACCESS_TOKEN, GRAPH_PREFIX, FakePlatform
from tests.support.server import ServerProcess
from tests.test_integrations_support import (
    ATTEMPTS,
    IG_VERIFY_TOKEN,
    INSTAGRAM_PATH,
    file_reply,
    history,
    ig_message,
    ig_payload,
    new_id,
    png_bytes,
    post_instagram,
    reply,
    sign,
    start_platform_server,
    wait_delivery,
)
from tests.test_raw_support import raw
from tests.test_socketio_helpers import Client


@pytest.fixture(scope="module")
def server(work_dir: Path, fake: FakePlatform) -> Iterator[ServerProcess]:
    """The server wired to the fake platform; conftest's ``api`` talks to it."""
    node = start_platform_server(work_dir / "instagram", fake)
    yield node
    node.stop()


def _sender() -> str:
    return str(new_id())


async def _customer_conversation(api: Api) -> tuple[str, int]:
    """A new Instagram customer's first message: its sender id and its conversation."""
    sender = _sender()
    [created] = (await post_instagram(api, ig_payload(
        ig_message(sender, f"m-{sender}", "hi")))).json()["results"]
    return sender, int(created["conversation_id"])


# -- checks ------------------------------------------------------------------------------


async def test_verification_challenge(api: Api) -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": IG_VERIFY_TOKEN,
            "hub.challenge": "1158201444"}
    response = await api.http.get(INSTAGRAM_PATH, params=good)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")
    for bad in ({**good, "hub.verify_token": "wrong"}, {**good, "hub.mode": "unsubscribe"},
                {"hub.challenge": "1"}):
        refused = await api.http.get(INSTAGRAM_PATH, params=bad)
        assert refused.status_code == 403, bad
        assert refused.json()["detail"] and refused.json()["code"] == "forbidden"


async def test_signature_is_checked_over_the_raw_bytes(api: Api) -> None:
    sender = _sender()
    payload = ig_payload(ig_message(sender, f"mid.{sender}.1", "signed"))
    raw_body = json.dumps(payload).encode()
    missing = await post_instagram(api, payload, signature=None)
    assert missing.status_code == 401 and "X-Hub-Signature-256" in missing.json()["detail"]
    for wrong in ("sha256=" + "0" * 64, sign(raw_body, "another-secret"), sign(raw_body)[7:],
                  "sha1=" + sign(raw_body)[7:]):
        refused = await post_instagram(api, payload, signature=wrong, raw=raw_body)
        assert refused.status_code == 403, wrong
    # the same JSON serialised differently: the signature covers bytes, not meaning
    spaced = json.dumps(payload, indent=2).encode()
    refused = await post_instagram(api, payload, signature=sign(raw_body), raw=spaced)
    assert refused.status_code == 403
    accepted = await post_instagram(api, payload, raw=spaced)
    assert accepted.status_code == 200, accepted.text
    assert [r["status"] for r in accepted.json()["results"]] == ["created"]


async def test_malformed_signed_bodies_are_400(api: Api) -> None:
    for raw_body in (b"{oops", b'"text"', b'{"object": "instagram"}',
                     b'{"entry": [{"messaging": [{"sender": {}}]}]}',
                     b'{"entry": [{"messaging": [{"sender": {"id": "1"}, "message": {}}]}]}',
                     b'{"entry": [{"messaging": [{"sender": {"id": "' + b"9" * 129 + b'"}}]}]}'):
        response = await post_instagram(api, None, raw=raw_body)
        assert response.status_code == 400, (raw_body, response.text)
        assert response.json()["detail"] and response.json()["code"] == "bad_update"


def test_unconfigured_webhook_is_404() -> None:
    with pytest.raises(ChatError) as unset:
        instagram.check_signature(Integrations(), "sha256=00", b"{}")
    assert unset.value.status == 404 and "INSTAGRAM_APP_SECRET" in unset.value.message
    query = instagram.VerifyQuery.model_validate({"hub.mode": "subscribe",
                                                  "hub.verify_token": "t"})
    with pytest.raises(ChatError) as no_token:
        instagram.verify_subscription(Integrations(), query)
    assert no_token.value.status == 404
    assert instagram.verify_subscription(
        Integrations(instagram_verify_token="t"),
        instagram.VerifyQuery.model_validate({**query.model_dump(by_alias=True),
                                              "hub.challenge": "42"})) == "42"


async def test_a_file_without_an_absolute_link_is_refused_for_good() -> None:
    """Meta fetches a reply's file from its link: a path on the server's own origin (no
    ``PUBLIC_URL``) cannot be fetched, and nothing is sent."""
    file = FileContents("a.png", "image/png", b"x", "/api/v1/chat/uploads/1/file?e=1&s=x")
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:  # never reached
        with pytest.raises(DeliveryError) as refused:
            await instagram.send(client, Integrations(instagram_access_token="t"), "7",
                                 Reply("with text", file))
    assert not refused.value.retryable and "PUBLIC_URL" in refused.value.message


# -- inbound -----------------------------------------------------------------------------


async def test_message_reaches_staff_and_redelivery_is_one_message(
    api: Api, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    sender = _sender()
    mid = ("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAwOjM0MDI4MjM2Njg0MTcxMDMw"
           + sender)
    assert len(mid) > 64  # longer than client_msg_id: the key is a hash of it
    payload = ig_payload(ig_message(sender, mid, "Where is my order?"))
    inbox = await Client(api.base_url, "/conversations").connect({"token": agent.token})
    url = f"{server.ws_url}/ws/conversations/?token={agent.token}"
    try:
        async with raw(url) as raw_inbox:
            await raw_inbox.next("connection_established")
            first = await post_instagram(api, payload)
            assert first.status_code == 200, first.text
            [result] = first.json()["results"]
            assert result["status"] == "created"
            cid = result["conversation_id"]
            pushed = await inbox.next("new_customer_message",
                                      lambda e: e["conversation_id"] == cid)
            framed = await raw_inbox.next(lambda f: f.get("type") == "new_customer_message"
                                          and f["conversation_id"] == cid)
            for event in (pushed, framed):
                assert event["message"]["content"] == "Where is my order?"
                assert event["message"]["customer"]["source"] == "instagram"
                assert event["message"]["sender_type"] == "customer"
    finally:
        await inbox.close()
    again = (await post_instagram(api, payload)).json()["results"]
    assert again == [{**result, "status": "duplicate"}]
    [message] = await history(api, agent, cid)
    assert message["metadata"]["platform_message_id"] == mid
    assert message["client_msg_id"].startswith("instagram#")
    view = (await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=agent.headers)).json()
    assert view["customer"]["source"] == "instagram" and view["kind"] == "support"
    assert view["title"] == f"instagram - instagram {sender}"


async def test_batch_with_echo_attachment_edit_and_read(api: Api) -> None:
    agent = await api.register(role="agent")
    sender = _sender()
    photo = ig_message(sender, f"m-{sender}-2", None, attachments=[
        {"type": "image", "payload": {"url": "https://cdn.example/photo.jpg"}}])
    echo = ig_message(sender, f"m-{sender}-3", "our own reply", is_echo=True)
    read = {"sender": {"id": sender}, "recipient": {"id": "1"}, "read": {"mid": "x"}}
    first = (await post_instagram(api, ig_payload(
        ig_message(sender, f"m-{sender}-1", "helo"), photo, echo, read))).json()["results"]
    assert [r["status"] for r in first] == ["created", "created", "ignored", "ignored"]
    assert "echo" in first[2]["reason"]
    cid = first[0]["conversation_id"]
    assert first[1]["conversation_id"] == cid

    edit = {"sender": {"id": sender}, "recipient": {"id": "1"},
            "message_edit": {"mid": f"m-{sender}-1", "text": "hello", "num_edit": 1}}
    [edited] = (await post_instagram(api, ig_payload(edit))).json()["results"]
    assert edited == {**first[0], "status": "edited"}

    text, image = await history(api, agent, cid)
    assert text["content"] == "hello" and text["is_edited"] is True
    assert image["message_type"] == "image" and image["content"] == "[image]"
    assert image["media_url"] == "https://cdn.example/photo.jpg"


# -- outbound ----------------------------------------------------------------------------


async def test_agent_reply_goes_through_the_send_api(api: Api, fake: FakePlatform) -> None:
    agent = await api.register(role="agent")
    sender, cid = await _customer_conversation(api)
    sent = await reply(api, agent, cid, "Hi! Your order ships today.")
    assert sent["delivery_status"] == "pending"
    [call] = await fake.wait_calls(sender, 1)
    assert call.path == f"{GRAPH_PREFIX}/me/messages"
    assert call.query == {"access_token": [ACCESS_TOKEN]}
    assert call.body == {"recipient": {"id": sender},
                         "message": {"text": "Hi! Your order ships today."}}
    await wait_delivery(api, agent, cid, sent["id"], "sent")


async def test_a_reply_with_a_file_sends_its_link_for_the_send_api_to_fetch(
    api: Api, fake: FakePlatform, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    sender, cid = await _customer_conversation(api)
    image = png_bytes()
    sent = await file_reply(api, agent, cid, image, "photo.png", "Here it is")
    text, attachment = await fake.wait_calls(sender, 2)
    assert text.body == {"recipient": {"id": sender}, "message": {"text": "Here it is"}}
    payload = attachment.body["message"]["attachment"]
    assert payload["type"] == "image"
    # The link is absolute (the server's PUBLIC_URL) and serves the file to whoever has it,
    # as Meta fetches it: no token.
    link = payload["payload"]["url"]
    assert link.startswith(server.base_url + "/")
    async with httpx.AsyncClient(follow_redirects=True) as outside:
        fetched = await outside.get(link)
    assert fetched.status_code == 200 and fetched.content == image
    await wait_delivery(api, agent, cid, sent["id"], "sent")


async def test_failing_send_api_retries_then_fails(
    api: Api, fake: FakePlatform, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    sender, cid = await _customer_conversation(api)
    fake.fail(sender, times=None, status=503)
    sent = await reply(api, agent, cid, "hello?")
    failed = await wait_delivery(api, agent, cid, sent["id"], "failed")
    assert failed["delivery_error"] == "HTTP 503: fake failure 503"
    assert [c.status for c in fake.calls_to(sender)] == [503] * ATTEMPTS
    log = server.log()
    assert (f"outbound delivery gave up: platform=instagram conversation={cid} "
            f"message={sent['id']} attempt={ATTEMPTS}/{ATTEMPTS}") in log
    assert ACCESS_TOKEN not in log
