"""Telegram Bot API: the webhook's secret, the ``Update`` it posts, and replies (``sendMessage``,
``sendDocument`` for a file).

Telegram sends the secret given to ``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token`` and
redelivers an update until it gets a 2xx, so updates we do not handle are answered 200 and left.
"""

from __future__ import annotations

import hmac
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.integrations.delivery import (
    DeliveryError,
    Reply,
    http_failure,
    post_json,
    post_multipart,
)
from backend.integrations.intake import Inbound, Profile
from backend.service.drafts import describe
from backend.service.errors import ChatError, forbidden, not_found, unauthorized
from backend.settings import Integrations

PLATFORM = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TelegramUser(_Model):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str = ""
    username: str = ""


class TelegramChat(_Model):
    id: int
    type: str = "private"


class TelegramPhotoSize(_Model):
    file_id: str
    file_unique_id: str = ""
    width: int = 0
    height: int = 0
    file_size: int | None = None


class TelegramDocument(_Model):
    file_id: str
    file_unique_id: str = ""
    file_name: str = ""
    mime_type: str = ""
    file_size: int | None = None


class TelegramMessage(_Model):
    message_id: int
    sender: TelegramUser | None = Field(default=None, alias="from")
    chat: TelegramChat
    date: int = 0
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    photo: list[TelegramPhotoSize] | None = None
    document: TelegramDocument | None = None


class TelegramUpdate(_Model):
    """The part of a Bot API ``Update`` we read; other fields are ignored."""

    update_id: int
    message: TelegramMessage | None = None
    edited_message: TelegramMessage | None = None


def check_secret(config: Integrations, header: str | None) -> None:
    """Refuse the request unless ``header`` is the configured secret (constant-time compare).
    Unconfigured: 404, this server has no Telegram webhook."""
    secret = config.telegram_webhook_secret
    if secret is None:
        raise not_found("Telegram webhook (TELEGRAM_WEBHOOK_SECRET is not set)")
    if not header:
        raise unauthorized(f"Missing {SECRET_HEADER} header")
    if not hmac.compare_digest(header.encode("latin-1", "replace"), secret.encode()):
        raise forbidden(f"Wrong {SECRET_HEADER} header")


def parse_update(body: Any) -> Inbound | str:
    """The customer message in ``body``, or the reason it is not one we take (a string).
    A body that is not an Update at all raises ChatError 400."""
    try:
        update = TelegramUpdate.model_validate(body)
    except ValidationError as exc:
        raise ChatError("bad_update", f"Malformed Telegram update: {describe(exc)}", 400) from exc
    message = update.message or update.edited_message
    if message is None:
        return "update carries no message or edited_message"
    if message.sender is None or message.sender.is_bot:
        return "message has no human sender"
    if message.chat.type != "private":
        # A reply would go to the whole group: support conversations are one-to-one.
        return f"chat type {message.chat.type!r} is not a private chat"
    user = message.sender
    profile = Profile(PLATFORM, str(user.id), first_name=user.first_name,
                      last_name=user.last_name, username=user.username)
    fields = _content(message)
    return Inbound(profile, str(message.message_id), edit=update.message is None, **fields)


def _content(message: TelegramMessage) -> dict[str, Any]:
    """Text, or a photo (its largest size) or document as an image / file message. Telegram file
    ids are not URLs (fetching one needs the bot token), so they go in ``metadata``."""
    caption = message.caption or ""
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return {"content": caption or "[photo]", "message_type": "image",
                "metadata": {"file_id": largest.file_id,
                             "file_unique_id": largest.file_unique_id,
                             "width": largest.width, "height": largest.height}}
    if message.document is not None:
        doc = message.document
        return {"content": caption or f"[file] {doc.file_name}".strip(),
                "message_type": "file",
                "file": {"url": "", "name": doc.file_name[:255], "size": doc.file_size or 0,
                         "type": doc.mime_type[:255]},
                "metadata": {"file_id": doc.file_id, "file_unique_id": doc.file_unique_id}}
    if message.text:
        return {"content": message.text}
    return {"content": "[unsupported message type]", "metadata": {"unsupported": True}}


#: The longest caption Telegram takes with a file.
CAPTION_LIMIT = 1024


async def send(client: httpx.AsyncClient, config: Integrations, chat_id: str,
               reply: Reply) -> str:
    """A staff reply to ``chat_id``; returns Telegram's id of its (last) message. A file is
    uploaded with ``sendDocument``, the text its caption (a text too long for one goes first,
    as a message of its own). Raises DeliveryError."""
    if reply.file is None:
        return await send_text(client, config, chat_id, reply.text)
    caption = reply.text
    if len(caption) > CAPTION_LIMIT:
        await send_text(client, config, chat_id, caption)
        caption = ""
    fields = {"chat_id": chat_id, **({"caption": caption} if caption else {})}
    file = reply.file
    token = _token(config)
    status, data = await post_multipart(
        client, f"{config.telegram_api_base}/bot{token}/sendDocument", fields,
        {"document": (file.name, file.data, file.content_type)}, secrets=(token,))
    return _message_id(status, data)


async def send_text(
    client: httpx.AsyncClient, config: Integrations, chat_id: str, text: str
) -> str:
    """``sendMessage`` to ``chat_id``; returns Telegram's message id. Raises DeliveryError."""
    token = _token(config)
    url = f"{config.telegram_api_base}/bot{token}/sendMessage"
    status, data = await post_json(client, url, {"chat_id": chat_id, "text": text},
                                   secrets=(token,))
    return _message_id(status, data)


def _token(config: Integrations) -> str:
    if not config.telegram_bot_token:
        raise DeliveryError("TELEGRAM_BOT_TOKEN is not set", retryable=False)
    return config.telegram_bot_token


def _message_id(status: int, data: Any) -> str:
    """The Bot API's answer: the sent message's id, or the DeliveryError it means."""
    data = data if isinstance(data, dict) else {}
    if status == 200 and data.get("ok") is True:
        result = data.get("result")
        return str(result.get("message_id", "")) if isinstance(result, dict) else ""
    parameters = data.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    description = str(data.get("description") or "no description")
    raise http_failure(status, description,
                       float(retry_after) if isinstance(retry_after, int | float) else None)
