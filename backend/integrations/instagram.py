"""Instagram messaging through Meta's webhooks and Graph API send API.

Meta first verifies the callback with a GET (``hub.mode=subscribe``, ``hub.verify_token``,
``hub.challenge``), then POSTs events signed with ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body under the app secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from backend.integrations.delivery import DeliveryError, Reply, http_failure, post_json
from backend.integrations.intake import Inbound, Profile
from backend.service.drafts import describe
from backend.service.errors import ChatError, forbidden, not_found, unauthorized
from backend.settings import Integrations

PLATFORM = "instagram"
SIGNATURE_HEADER = "X-Hub-Signature-256"


def _as_str(value: Any) -> Any:
    """Meta sends ids as strings; accept numbers as well rather than refuse the event."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# Sender ids become Customer.external_id (128 characters); message ids only metadata and a hash.
Ident = Annotated[str, BeforeValidator(_as_str), Field(min_length=1, max_length=128)]
MessageId = Annotated[str, BeforeValidator(_as_str), Field(min_length=1, max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InstagramParty(_Model):
    id: Ident


class InstagramAttachmentPayload(_Model):
    url: str = ""


class InstagramAttachment(_Model):
    type: str = "file"
    payload: InstagramAttachmentPayload | None = None


class InstagramMessage(_Model):
    mid: MessageId
    text: str | None = None
    attachments: list[InstagramAttachment] | None = None
    is_echo: bool = False
    is_deleted: bool = False


class InstagramMessageEdit(_Model):
    mid: MessageId
    text: str = ""


class InstagramMessaging(_Model):
    sender: InstagramParty
    recipient: InstagramParty | None = None
    timestamp: int = 0
    message: InstagramMessage | None = None
    message_edit: InstagramMessageEdit | None = None


class InstagramEntry(_Model):
    id: Ident | None = None
    time: int = 0
    messaging: list[InstagramMessaging] = Field(default_factory=list)


class InstagramWebhook(_Model):
    """A webhook POST: ``entry[].messaging[]`` events (other fields are ignored)."""

    object: str = "instagram"
    entry: list[InstagramEntry]


class VerifyQuery(BaseModel):
    """Meta's subscription check: ``?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    hub_mode: str = Field(default="", alias="hub.mode")
    hub_verify_token: str = Field(default="", alias="hub.verify_token")
    hub_challenge: str = Field(default="", alias="hub.challenge", max_length=1024)


def verify_subscription(config: Integrations, query: VerifyQuery) -> str:
    """The challenge to echo when the verify token matches (constant-time compare), else 403."""
    token = config.instagram_verify_token
    if token is None:
        raise not_found("Instagram webhook (INSTAGRAM_VERIFY_TOKEN is not set)")
    if query.hub_mode != "subscribe" or not hmac.compare_digest(
        query.hub_verify_token.encode(), token.encode()
    ):
        raise forbidden("Verification failed: hub.mode must be 'subscribe' and "
                        "hub.verify_token must match")
    return query.hub_challenge


def check_signature(config: Integrations, header: str | None, raw_body: bytes) -> None:
    """Refuse the request unless ``header`` is ``sha256=`` and the HMAC-SHA256 of the exact
    bytes received under the app secret (constant-time compare)."""
    secret = config.instagram_app_secret
    if secret is None:
        raise not_found("Instagram webhook (INSTAGRAM_APP_SECRET is not set)")
    if not header:
        raise unauthorized(f"Missing {SIGNATURE_HEADER} header")
    expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.strip().lower().encode("latin-1", "replace"),
                               expected.encode()):
        raise forbidden(f"Wrong {SIGNATURE_HEADER} signature")


def parse_events(body: Any) -> list[Inbound | str]:
    """Each messaging event of ``body``: a customer message or edit, or why it is skipped.
    A body that is not a webhook payload raises ChatError 400."""
    try:
        webhook = InstagramWebhook.model_validate(body)
    except ValidationError as exc:
        raise ChatError("bad_update", f"Malformed Instagram webhook: {describe(exc)}",
                        400) from exc
    return [_event(event) for entry in webhook.entry for event in entry.messaging]


def _event(event: InstagramMessaging) -> Inbound | str:
    profile = Profile(PLATFORM, event.sender.id)
    if event.message_edit is not None:
        edit = event.message_edit
        return Inbound(profile, edit.mid, edit.text or "[edited message]", edit=True)
    message = event.message
    if message is None:
        return "event is not a message (read, reaction or postback)"
    if message.is_echo:
        # Our own replies come back as echoes: storing them would duplicate the staff message.
        return "echo of a message sent by the account"
    if message.is_deleted:
        return "message deleted by its sender"
    attachments = [a for a in message.attachments or [] if a.payload is not None]
    text = message.text or ""
    if not attachments:
        return Inbound(profile, message.mid, text or "[unsupported message type]")
    first = attachments[0]
    urls = [a.payload.url for a in attachments if a.payload is not None]
    url = first.payload.url if first.payload is not None else ""
    return Inbound(
        profile,
        message.mid,
        text or f"[{first.type}]",
        message_type="image" if first.type == "image" else "file",
        media_url=url if len(url) <= 2048 else "",
        metadata={"attachments": [{"type": a.type, "url": u}
                                  for a, u in zip(attachments, urls, strict=True)]},
    )


async def send(client: httpx.AsyncClient, config: Integrations, recipient_id: str,
               reply: Reply) -> str:
    """A staff reply to ``recipient_id``; returns Meta's id of its (last) message. The send API
    takes a file as a link it fetches: the file's signed link, which must be absolute
    (``PUBLIC_URL``), sent after the text as a message of its own. Raises DeliveryError."""
    if reply.file is None:
        return await send_text(client, config, recipient_id, reply.text)
    url = reply.file.url
    if not url.startswith(("https://", "http://")):
        raise DeliveryError("a file needs PUBLIC_URL: Instagram fetches it from its link",
                            retryable=False)
    if reply.text:
        await send_text(client, config, recipient_id, reply.text)
    kind = reply.file.content_type.split("/", 1)[0]
    return await _send_message(client, config, recipient_id, {"attachment": {
        "type": kind if kind in ("image", "video", "audio") else "file",
        "payload": {"url": url}}})


async def send_text(
    client: httpx.AsyncClient, config: Integrations, recipient_id: str, text: str
) -> str:
    """The send API (``POST /me/messages``) to ``recipient_id``; returns Meta's message id.
    Raises DeliveryError."""
    return await _send_message(client, config, recipient_id, {"text": text})


async def _send_message(client: httpx.AsyncClient, config: Integrations, recipient_id: str,
                        message: dict[str, Any]) -> str:
    token = config.instagram_access_token
    if not token:
        raise DeliveryError("INSTAGRAM_ACCESS_TOKEN is not set", retryable=False)
    status, data = await post_json(
        client, f"{config.instagram_api_base}/me/messages",
        {"recipient": {"id": recipient_id}, "message": message},
        params={"access_token": token}, secrets=(token,),
    )
    data = data if isinstance(data, dict) else {}
    if status == 200 and "error" not in data:
        return str(data.get("message_id", ""))
    error = data.get("error")
    description = str(error.get("message")) if isinstance(error, dict) else "no description"
    raise http_failure(status, description)
