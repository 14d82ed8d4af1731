"""Telegram: the webhook's secret and input checks, customers and their support conversations,
idempotent redelivery, edits, the staff inboxes, and replies sent back through the Bot API with
retries, against a real server process and a fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.integrations import telegram
from backend.integrations.outbound import OutboundSender
from backend.service.errors import ChatError
from backend.settings import ConfigurationError, Integrations, Settings
from models import DeliveryStatus
from tests.support.client import Api
from tests.support.fake_platform import BOT_TOKEN, TELEGRAM_PREFIX, FakePlatform, Upload
from tests.support.server import ServerProcess
from tests.support.services import Postgres
from tests.test_integrations_support import (
    ATTEMPTS,
    file_reply,
    history,
    new_id,
    png_bytes,
    post_telegram,
    reply,
    start_platform_server,
    tg_message,
    tg_update,
    wait_delivery,
)
from tests.test_raw_support import raw
from tests.test_socketio_helpers import Client, chat_client, ok


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, work_dir: Path,
           fake: FakePlatform) -> Iterator[ServerProcess]:
    """The server on each database in turn (customers and conversations are made by intake);
    conftest's ``api`` talks to it."""
    if request.param == "sqlite":
        node = start_platform_server(work_dir / "telegram-sqlite", fake)
        yield node
        node.stop()
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    name, url = asyncio.run(postgres.create_database())
    node = start_platform_server(work_dir / "telegram-postgres", fake, url)
    yield node
    node.stop()
    asyncio.run(postgres.drop_database(name))


async def _customer_conversation(api: Api, chat_id: int, text: str = "hello") -> int:
    response = await post_telegram(api, tg_update(tg_message(chat_id, new_id(), text)))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"
    return response.json()["conversation_id"]  # type: ignore[no-any-return]


# -- checks ------------------------------------------------------------------------------


async def test_secret_is_checked_in_every_way(api: Api) -> None:
    chat_id = new_id()
    update = tg_update(tg_message(chat_id, 1))
    missing = await post_telegram(api, update, secret=None)
    assert missing.status_code == 401 and "X-Telegram-Bot-Api-Secret-Token" in \
        missing.json()["detail"]
    assert missing.json()["code"] == "unauthorized"
    for wrong in ("nope", "telegram-webhook-secret-12", "telegram-webhook-secret-1234"):
        refused = await post_telegram(api, update, secret=wrong)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "forbidden"
    # nothing was stored for the refused requests: the first accepted one creates the message
    accepted = await post_telegram(api, update)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "created"


async def test_malformed_updates_are_400(api: Api) -> None:
    for raw_body in (b"{not json", b"[1, 2]", b"null"):
        response = await post_telegram(api, None, raw=raw_body)
        assert response.status_code == 400, raw_body
        assert response.json()["detail"] and response.json()["code"] == "bad_update"
    for body in ({"message": {}},
                 {"update_id": "x"},
                 {"update_id": 1, "message": {"message_id": "abc", "chat": {"id": 1}}},
                 {"update_id": 1, "message": {"message_id": 5}},
                 {"update_id": 1, "message": {"message_id": 5, "chat": {"id": 1},
                                              "photo": [{"width": 1}]}}):
        response = await post_telegram(api, body)
        assert response.status_code == 400, (body, response.text)
        assert "Malformed Telegram update" in response.json()["detail"]
    # a body past MAX_BODY_BYTES is refused before it is parsed
    huge = await post_telegram(api, None, raw=b'{"update_id": 1, "x": "' + b"a" * 300_000 + b'"}')
    assert huge.status_code == 413


def test_unconfigured_webhook_is_404_and_compares_the_secret() -> None:
    with pytest.raises(ChatError) as unset:
        telegram.check_secret(Integrations(), "anything")
    assert unset.value.status == 404 and "TELEGRAM_WEBHOOK_SECRET" in unset.value.message
    config = Integrations(telegram_webhook_secret="s3cret")
    telegram.check_secret(config, "s3cret")
    with pytest.raises(ChatError) as wrong:
        telegram.check_secret(config, "s3cre")
    assert wrong.value.status == 403
    with pytest.raises(ChatError) as missing:
        telegram.check_secret(config, None)
    assert missing.value.status == 401


async def test_updates_we_do_not_take_are_answered_200(api: Api) -> None:
    chat_id = new_id()
    for update in ({"update_id": new_id(), "callback_query": {"id": "1"}},
                   tg_update(tg_message(-chat_id, new_id(), chat_type="group")),
                   {"update_id": new_id(), "message": {"message_id": 1,
                                                       "chat": {"id": -5, "type": "channel"}}}):
        response = await post_telegram(api, update)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ignored" and response.json()["reason"]
        assert response.json()["conversation_id"] is None


def test_settings_from_the_environment(tmp_path: Path) -> None:
    defaults = Settings.from_env({"DATA_DIR": str(tmp_path)}).integrations
    assert defaults == Integrations()
    assert defaults.telegram_api_base == "https://api.telegram.org"
    assert defaults.instagram_api_base == "https://graph.facebook.com/v19.0"
    assert defaults.telegram_webhook_secret is None and defaults.outbound_attempts == 5
    config = Settings.from_env({"DATA_DIR": str(tmp_path), "TELEGRAM_WEBHOOK_SECRET": "s",
                                "TELEGRAM_API_BASE": "http://127.0.0.1:9/tg/",
                                "OUTBOUND_ATTEMPTS": "2",
                                "OUTBOUND_BACKOFF_SECONDS": "0.5"}).integrations
    assert config.telegram_webhook_secret == "s"
    assert config.telegram_api_base == "http://127.0.0.1:9/tg"
    assert (config.outbound_attempts, config.outbound_backoff_seconds) == (2, 0.5)
    for bad in ({"OUTBOUND_ATTEMPTS": "0"}, {"OUTBOUND_ATTEMPTS": "many"}):
        with pytest.raises(ConfigurationError, match="OUTBOUND_ATTEMPTS"):
            Settings.from_env({"DATA_DIR": str(tmp_path), **bad})


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    sender = OutboundSender(Integrations(outbound_backoff_seconds=1.0,
                                         outbound_backoff_max_seconds=5.0))
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        for _ in range(20):
            assert full / 2 <= sender._delay(attempt, None) <= full
    assert sender._delay(1, 3.0) == 3.0
    assert sender._delay(1, 60.0) == 5.0


class _Store:
    """The uploads' ``contents`` as a reply's delivery reads it: gone, or failing."""

    def __init__(self, failure: Exception | None) -> None:
        self.failure = failure

    async def contents(self, upload_id: int) -> None:
        if self.failure is not None:
            raise self.failure


@pytest.mark.parametrize(("failure", "error"), [
    (None, "the file is gone"),
    (OSError("disk away"), "the file could not be read: OSError"),
])
async def test_a_reply_whose_file_cannot_be_had_fails_without_a_send(
        database: None, caplog: pytest.LogCaptureFixture, failure: Exception | None,
        error: str) -> None:
    sent: list[Any] = []

    async def platform(client: Any, config: Any, recipient: str, reply: Any) -> str:
        sent.append(reply)
        return "1"

    sender = OutboundSender(Integrations(), platforms={"telegram": platform})
    sender.uploads = _Store(failure)  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="confab.integrations"):
        status = await sender.deliver(5, 1, "telegram", "42", "", upload_id=7)
    assert status == DeliveryStatus.FAILED and sent == []
    assert ("outbound delivery gave up: platform=telegram conversation=1 message=5 "
            f"attempt=0/{Integrations().outbound_attempts} error={error}") in caplog.text


# -- inbound -----------------------------------------------------------------------------


async def test_customer_message_reaches_staff_inboxes(
    api: Api, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    user = await api.register()
    inbox = await Client(api.base_url, "/conversations").connect({"token": agent.token})
    user_inbox = await Client(api.base_url, "/conversations").connect({"token": user.token})
    url = f"{server.ws_url}/ws/conversations/?token={agent.token}"
    try:
        async with raw(url) as raw_inbox:
            await raw_inbox.next("connection_established")
            chat_id = new_id()
            response = await post_telegram(
                api, tg_update(tg_message(chat_id, 7, "My card is blocked")))
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["ok"] is True and result["status"] == "created"
            cid, mid = result["conversation_id"], result["message_id"]

            pushed = await inbox.next("new_customer_message",
                                      lambda e: e["conversation_id"] == cid)
            framed = await raw_inbox.next(lambda f: f.get("type") == "new_customer_message"
                                          and f["conversation_id"] == cid)
            for event in (pushed, framed):
                message = event["message"]
                assert message["id"] == mid and message["content"] == "My card is blocked"
                assert message["sender_type"] == "customer" and message["type"] == "customer"
                assert message["customer"]["first_name"] == "Ivan"
                assert message["customer"]["last_name"] == "Petrov"
                assert message["customer"]["source"] == "telegram"
                assert message["sender_name"] == "Ivan Petrov"
                assert message["metadata"]["platform_message_id"] == "7"
            await inbox.next("conversation_updated",
                             lambda e: e["conversation_id"] == cid
                             and e["conversation"]["unread_count"] == 1)
    finally:
        await inbox.close()
    # an ordinary user's inbox does not get it
    ok(await user_inbox.call("refresh_conversations"))
    await user_inbox.next("conversations_list")
    assert [e for e in user_inbox.pending("new_customer_message")
            if e["conversation_id"] == cid] == []
    await user_inbox.close()

    view = (await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=agent.headers)).json()
    assert view["kind"] == "support" and view["status"] == "active"
    assert view["title"] == "telegram - Ivan Petrov"
    assert view["customer"] == {"id": view["customer"]["id"], "first_name": "Ivan",
                                "last_name": "Petrov", "username": "ivanp",
                                "source": "telegram", "profile_picture": ""}


async def test_redelivery_is_idempotent_and_names_update(api: Api) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    first = tg_update(tg_message(chat_id, 10, "first"))
    one = (await post_telegram(api, first)).json()
    again = (await post_telegram(api, first)).json()
    assert one["status"] == "created" and again["status"] == "duplicate"
    assert again["message_id"] == one["message_id"]
    assert again["conversation_id"] == one["conversation_id"]
    # a new update_id for the same message (Telegram re-sent it) is still one message
    same = (await post_telegram(api, tg_update(tg_message(chat_id, 10, "first")))).json()
    assert same["status"] == "duplicate" and same["message_id"] == one["message_id"]
    # the next message joins the same conversation; a changed profile updates the customer
    nxt = (await post_telegram(api, tg_update(
        tg_message(chat_id, 11, "second", last_name="Sidorov", username="")))).json()
    assert nxt["status"] == "created" and nxt["conversation_id"] == one["conversation_id"]
    cid = one["conversation_id"]
    messages = await history(api, agent, cid)
    assert [m["content"] for m in messages] == ["first", "second"]
    assert all(m["client_msg_id"] == f"telegram:{m['metadata']['platform_message_id']}"
               for m in messages)
    view = (await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=agent.headers)).json()
    assert view["customer"]["last_name"] == "Sidorov" and view["customer"]["username"] == ""
    assert view["total_messages"] == 2


async def test_edited_message_edits_the_stored_one(api: Api) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    created = (await post_telegram(api, tg_update(tg_message(chat_id, 3, "helo")))).json()
    cid = created["conversation_id"]
    watcher = await chat_client(api, agent, cid)
    try:
        edited = tg_update(tg_message(chat_id, 3, "hello", edit_date=1_700_000_100),
                           edited=True)
        result = (await post_telegram(api, edited)).json()
        assert result["status"] == "edited" and result["message_id"] == created["message_id"]
        event = await watcher.next("message_edit",
                                   lambda e: e["message_id"] == created["message_id"])
        assert event["content"] == "hello" and event["edited_at"]
        # the same edit delivered again changes nothing
        assert (await post_telegram(api, edited)).json()["status"] == "duplicate"
    finally:
        await watcher.close()
    [message] = await history(api, agent, cid)
    assert message["content"] == "hello" and message["is_edited"] is True


async def test_photos_and_documents(api: Api) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    photo = tg_message(chat_id, 20, None, caption="my receipt", photo=[
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960},
        {"file_id": "medium", "file_unique_id": "m", "width": 320, "height": 240},
    ])
    doc = tg_message(chat_id, 21, None, document={
        "file_id": "doc-1", "file_unique_id": "d", "file_name": "statement.pdf",
        "mime_type": "application/pdf", "file_size": 12345})
    bare_photo = tg_message(chat_id, 22, None, photo=[{"file_id": "p", "width": 1, "height": 1}])
    for message in (photo, doc, bare_photo):
        response = await post_telegram(api, tg_update(message))
        assert response.status_code == 200 and response.json()["status"] == "created", \
            response.text
    cid = response.json()["conversation_id"]
    image, document, bare = await history(api, agent, cid)
    assert image["message_type"] == "image" and image["content"] == "my receipt"
    assert image["metadata"]["file_id"] == "large"
    assert document["message_type"] == "file" and document["content"] == "[file] statement.pdf"
    assert document["file"] == {"url": "", "name": "statement.pdf", "size": 12345,
                                "type": "application/pdf"}
    assert document["metadata"]["file_id"] == "doc-1"
    assert bare["content"] == "[photo]"


async def test_texts_longer_than_the_limit_are_cut_not_refused(api: Api) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    long_text = "x" * 4096  # Telegram's own maximum, past our 4000
    response = await post_telegram(api, tg_update(tg_message(chat_id, 1, long_text)))
    assert response.status_code == 200 and response.json()["status"] == "created"
    [message] = await history(api, agent, response.json()["conversation_id"])
    assert len(message["content"]) == 4000 and message["content"].endswith("x…")


# -- outbound ----------------------------------------------------------------------------


async def test_agent_replies_reach_telegram_over_every_door(
    api: Api, fake: FakePlatform, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    assert fake.calls_to(chat_id) == []  # the customer's own message is not sent back

    sent = await reply(api, agent, cid, "Hello Ivan, let me check.")
    assert sent["delivery_status"] == "pending"  # the ack does not wait for Telegram
    # Seed 001's message names the conversation's customer, on a staff reply too.
    assert sent["customer"]["first_name"] == "Ivan" and sent["customer"]["source"] == "telegram"
    [call] = await fake.wait_calls(chat_id, 1)
    assert call.path == f"{TELEGRAM_PREFIX}/bot{BOT_TOKEN}/sendMessage"
    assert call.body == {"chat_id": str(chat_id), "text": "Hello Ivan, let me check."}
    done = await wait_delivery(api, agent, cid, sent["id"], "sent")
    assert done["delivery_error"] == ""

    # Socket.IO and the raw /ws/chat/ route take the same path out
    socket = await chat_client(api, agent, cid)
    try:
        acked = ok(await socket.call("chat_message", {"conversation_id": cid,
                                                      "content": "over socket.io"}))
        assert acked["message"]["delivery_status"] == "pending"
        assert acked["message"]["customer"] == sent["customer"]
    finally:
        await socket.close()
    async with raw(f"{server.ws_url}/ws/chat/{cid}/?token={agent.token}") as ws:
        page = await ws.next("recent_messages")
        assert [m["customer"] for m in page["messages"]] == [sent["customer"]] * 3
        await ws.send({"type": "chat_message", "content": "over raw websocket"})
        echoed = await ws.next(lambda f: f.get("type") == "chat_message"
                               and f["message"]["content"] == "over raw websocket")
        assert echoed["message"]["customer"] == sent["customer"]
    calls = await fake.wait_calls(chat_id, 3)
    assert [c.text for c in calls] == ["Hello Ivan, let me check.", "over socket.io",
                                       "over raw websocket"]
    await wait_delivery(api, agent, cid, echoed["message"]["id"], "sent")
    # a replayed client_msg_id is not sent twice
    for _ in range(2):
        response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                       json={"content": "once", "client_msg_id": "k-1"},
                                       headers=agent.headers)
        assert response.status_code == 201
    await fake.wait_calls(chat_id, 4)
    await wait_delivery(api, agent, cid, response.json()["id"], "sent")
    assert [c.text for c in fake.calls_to(chat_id)].count("once") == 1


async def test_a_reply_with_a_file_uploads_the_file_to_telegram(
    api: Api, fake: FakePlatform, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    image = png_bytes()
    sent = await file_reply(api, agent, cid, image, "receipt.png", "Your receipt")
    [call] = await fake.wait_calls(chat_id, 1)
    assert call.path == f"{TELEGRAM_PREFIX}/bot{BOT_TOKEN}/sendDocument"
    assert call.body["chat_id"] == str(chat_id) and call.text == "Your receipt"
    assert call.document == Upload("receipt.png", "image/png", image)
    await wait_delivery(api, agent, cid, sent["id"], "sent")
    # No text: the message shows the file's name, which is not sent as a caption.
    alone = await file_reply(api, agent, cid, image, "again.png")
    calls = await fake.wait_calls(chat_id, 2)
    assert "caption" not in calls[1].body and calls[1].document == Upload(
        "again.png", "image/png", image)
    await wait_delivery(api, agent, cid, alone["id"], "sent")
    # A text too long for a caption goes first, on its own.
    long = "word " * 250
    both = await file_reply(api, agent, cid, image, "third.png", long)
    calls = await fake.wait_calls(chat_id, 4)
    assert [c.path.rsplit("/", 1)[1] for c in calls[2:]] == ["sendMessage", "sendDocument"]
    assert calls[2].text == long and "caption" not in calls[3].body
    done = await wait_delivery(api, agent, cid, both["id"], "sent")
    assert done["delivery_error"] == ""


async def test_reply_retried_until_sent(api: Api, fake: FakePlatform,
                                        server: ServerProcess) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    fake.fail(chat_id, times=2, status=502)
    sent = await reply(api, agent, cid, "third time lucky")
    calls = await fake.wait_calls(chat_id, 3)
    assert [c.status for c in calls] == [502, 502, 200]
    assert all(c.text == "third time lucky" for c in calls)
    await wait_delivery(api, agent, cid, sent["id"], "sent")
    log = server.log()
    for attempt in (1, 2):
        assert (f"outbound delivery failed: platform=telegram conversation={cid} "
                f"message={sent['id']} attempt={attempt}/{ATTEMPTS}") in log


async def test_reply_that_keeps_failing_ends_failed(
    api: Api, fake: FakePlatform, server: ServerProcess
) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    fake.fail(chat_id, times=None, status=500)
    sent = await reply(api, agent, cid, "are you there?")
    failed = await wait_delivery(api, agent, cid, sent["id"], "failed")
    assert failed["delivery_error"] == "HTTP 500: fake failure 500"
    assert len(fake.calls_to(chat_id)) == ATTEMPTS  # bounded: no attempt after the last
    assert (f"outbound delivery gave up: platform=telegram conversation={cid} "
            f"message={sent['id']} attempt={ATTEMPTS}/{ATTEMPTS} error=HTTP 500") in \
        server.log()
    assert BOT_TOKEN not in server.log()


async def test_permanent_refusal_is_not_retried(api: Api, fake: FakePlatform) -> None:
    agent = await api.register(role="agent")
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    fake.fail(chat_id, times=None, status=403)  # e.g. "bot was blocked by the user"
    sent = await reply(api, agent, cid, "hello?")
    failed = await wait_delivery(api, agent, cid, sent["id"], "failed")
    assert failed["delivery_error"].startswith("HTTP 403")
    assert len(fake.calls_to(chat_id)) == 1


async def test_staff_replies_without_a_platform_customer_stay_home(
    api: Api, fake: FakePlatform
) -> None:
    owner = await api.register()
    agent = await api.register(role="agent")
    conversation = await api.conversation(owner)
    before = len(fake.requests)
    sent = await reply(api, agent, conversation["id"], "a support reply to a user")
    assert sent["delivery_status"] == "none"
    [message] = await history(api, owner, conversation["id"])
    assert message["delivery_status"] == "none"
    assert len(fake.requests) == before


async def test_desk_statuses_keep_the_conversation_open(api: Api) -> None:
    """A conversation an agent put in ``support_active`` or ``marketing_active`` is still the
    customer's open one; only ``closed`` makes the next message open another."""
    chat_id = new_id()
    cid = await _customer_conversation(api, chat_id)
    agent = await api.register(role="agent")
    for status in ("support_active", "marketing_active", "closed"):
        changed = await api.http.post(f"/api/v1/chat/sessions/{cid}/status",
                                      json={"status": status}, headers=agent.headers)
        assert changed.status_code == 200, changed.text
        response = await post_telegram(api, tg_update(tg_message(chat_id, new_id(), status)))
        assert response.status_code == 200, response.text
        if status == "closed":
            assert response.json()["conversation_id"] != cid
        else:
            assert response.json()["conversation_id"] == cid
