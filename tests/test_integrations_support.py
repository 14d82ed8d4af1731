"""Helpers of the outside-platform tests (no tests here): a server wired to the fake platform,
webhook senders, payload builders, and a bounded wait for a reply's delivery status."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import itertools
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from tests.support.client import Api, with_admin
from tests.support.fake_platform import FakePlatform
from tests.support.server import ServerProcess, start_server
from tests.support.services import free_port

if TYPE_CHECKING:  # imported names starting with "Test" would be collected as tests
    from tests.support.client import TestUser

TELEGRAM_SECRET = "telegram-webhook-secret-123"
TELEGRAM_PATH = "/api/v1/integrations/telegram/webhook"
INSTAGRAM_PATH = "/api/v1/integrations/instagram/webhook"
IG_VERIFY_TOKEN = "instagram-verify-token"
IG_APP_SECRET = "instagram-app-secret"
ATTEMPTS = 3

# Platform ids unique to this test run (the fake tells sends apart by recipient).
_ids = itertools.count(random.randint(10**9, 2 * 10**9))


def new_id() -> int:
    return next(_ids)


def start_platform_server(data_dir: Path, fake: FakePlatform,
                          database_url: str | None = None) -> ServerProcess:
    """The app with both webhooks configured, API bases at ``fake``, fast retries, an admin,
    and its own address as ``PUBLIC_URL`` (absolute file links, which Instagram fetches)."""
    port = free_port()
    server = start_server(
        data_dir,
        database_url,
        port=port,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
        INSTAGRAM_VERIFY_TOKEN=IG_VERIFY_TOKEN,
        INSTAGRAM_APP_SECRET=IG_APP_SECRET,
        OUTBOUND_ATTEMPTS=str(ATTEMPTS),
        OUTBOUND_BACKOFF_SECONDS="0.05",
        OUTBOUND_BACKOFF_MAX_SECONDS="0.2",
        OUTBOUND_TIMEOUT_SECONDS="3",
        **fake.env(),
    )
    return with_admin(server)


# -- Telegram ----------------------------------------------------------------------------


def tg_message(chat_id: int, message_id: int, text: str | None = "hello", *,
               first_name: str = "Ivan", last_name: str = "Petrov",
               username: str = "ivanp", chat_type: str = "private",
               **extra: Any) -> dict[str, Any]:
    sender = {"id": chat_id, "is_bot": False, "first_name": first_name,
              "last_name": last_name, "username": username, "language_code": "en"}
    message: dict[str, Any] = {"message_id": message_id, "from": sender,
                               "chat": {"id": chat_id, "type": chat_type,
                                        "first_name": first_name},
                               "date": 1_700_000_000, **extra}
    if text is not None:
        message["text"] = text
    return message


def tg_update(message: dict[str, Any], *, edited: bool = False,
              update_id: int | None = None) -> dict[str, Any]:
    key = "edited_message" if edited else "message"
    return {"update_id": update_id or new_id(), key: message}


async def post_telegram(api: Api, body: Any, secret: str | None = TELEGRAM_SECRET,
                        raw: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    content = raw if raw is not None else json.dumps(body).encode()
    return await api.http.post(TELEGRAM_PATH, content=content, headers=headers)


# -- Instagram ---------------------------------------------------------------------------


def ig_payload(*events: dict[str, Any]) -> dict[str, Any]:
    return {"object": "instagram",
            "entry": [{"id": "17841400000000000", "time": 1_700_000_000,
                       "messaging": list(events)}]}


def ig_message(sender_id: str, mid: str, text: str | None = "hi there",
               **message: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"mid": mid, **message}
    if text is not None:
        body["text"] = text
    return {"sender": {"id": sender_id}, "recipient": {"id": "17841400000000000"},
            "timestamp": 1_700_000_000_000, "message": body}


def sign(raw: bytes, secret: str = IG_APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


async def post_instagram(api: Api, body: Any, signature: str | None = "auto",
                         raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        headers["X-Hub-Signature-256"] = sign(content)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await api.http.post(INSTAGRAM_PATH, content=content, headers=headers)


# -- REST views --------------------------------------------------------------------------


async def history(api: Api, user: TestUser, cid: int) -> list[dict[str, Any]]:
    response = await api.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                  params={"limit": 100}, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["messages"] if isinstance(body, dict) else body  # type: ignore[no-any-return]


async def reply(api: Api, agent: TestUser, cid: int, text: str) -> dict[str, Any]:
    response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                   json={"content": text}, headers=agent.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def file_reply(api: Api, agent: TestUser, cid: int, data: bytes, name: str,
                     text: str | None = None) -> dict[str, Any]:
    """A staff reply carrying a file ``name`` (uploaded first), with ``text`` or none."""
    response = await api.http.post("/api/v1/chat/uploads",
                                   files={"file": (name, data, "application/octet-stream")},
                                   headers=agent.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = {"upload_id": response.json()["id"]}
    if text is not None:
        body["content"] = text
    response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages", json=body,
                                   headers=agent.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def png_bytes() -> bytes:
    """A small PNG (its type is told by its bytes)."""
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def wait_delivery(api: Api, user: TestUser, cid: int, message_id: int,
                        status: str, within: float = 10.0) -> dict[str, Any]:
    """Poll the history (the status is not pushed) until the message's ``delivery_status`` is
    ``status``; fail after ``within`` seconds, or at once if it ends in another final state."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = [m for m in await history(api, user, cid) if m["id"] == message_id]
        assert found, f"message {message_id} not in conversation {cid}"
        current = found[0]["delivery_status"]
        if current == status:
            return found[0]
        assert current not in ({"sent", "failed"} - {status}), found[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"delivery_status stayed {current!r}, wanted {status!r}")
        await asyncio.sleep(0.05)
