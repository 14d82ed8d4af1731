"""From a platform's message to the service: the customer, the support conversation, the message.

Both webhooks hand an ``Inbound`` here; storing, broadcasting (``chat_message`` to the
conversation, ``new_customer_message`` to staff inboxes) and editing are the ChatService's own
``send_message`` and ``edit_message``, called as the customer (``Actor.of_customer``).

Redelivery is harmless: the platform's message id becomes the message's ``client_msg_id``, the
service's idempotency key per conversation and sender, and an earlier message with that key in
any of the customer's conversations is answered instead of a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tortoise.exceptions import IntegrityError

from backend.service.actors import Actor
from backend.service.drafts import parse_draft
from backend.service.errors import ChatError
from models import Conversation, ConversationKind, ConversationStatus, Customer, Message

if TYPE_CHECKING:
    from backend.service.chat import ChatService

log = logging.getLogger("confab.integrations")

# The client_msg_id column is 64 characters; longer platform ids (Instagram mids) are hashed.
_KEY_MAX = 64
# Per-customer serialisation on this node, so that two deliveries of a new customer's first
# messages cannot open two conversations. Striped: a bounded set of locks, no per-customer growth.
_LOCKS = tuple(asyncio.Lock() for _ in range(64))

Outcome = Literal["created", "duplicate", "edited", "ignored"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Who wrote, as the platform tells it. ``None`` means "not told" (kept as stored), while
    an empty string means "told, and empty" (cleared)."""

    platform: str
    external_id: str
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    profile_picture: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from a customer. ``message_id`` is the platform's id for it (unique per
    customer); ``edit`` says this is a new text for an earlier message."""

    profile: Profile
    message_id: str
    content: str
    message_type: Literal["text", "image", "file"] = "text"
    media_url: str = ""
    file: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    edit: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one inbound message (the webhook's answer)."""

    outcome: Outcome
    conversation_id: int | None = None
    message_id: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.outcome, "conversation_id": self.conversation_id,
                                "message_id": self.message_id}
        if self.reason:
            data["reason"] = self.reason
        return data


def idempotency_key(platform: str, message_id: str) -> str:
    """The ``client_msg_id`` of a platform message: ``telegram:123``, or a hash when too long."""
    key = f"{platform}:{message_id}"
    if len(key) <= _KEY_MAX:
        return key
    return f"{platform}#{hashlib.sha256(message_id.encode()).hexdigest()[:48]}"


async def receive(chat: ChatService, inbound: Inbound) -> Result:
    """Store ``inbound`` (or apply its edit) once, as its customer's message. A refusal by the
    service (say, an edit of a deleted message) is logged and reported as ``ignored``: the
    platform would only redeliver it, and a redelivery cannot succeed either."""
    profile = inbound.profile
    async with _LOCKS[hash((profile.platform, profile.external_id)) % len(_LOCKS)]:
        customer = await upsert_customer(profile)
        actor = Actor.of_customer(customer)
        key = idempotency_key(profile.platform, inbound.message_id)
        try:
            earlier = await _earlier(customer, actor, key)
            if earlier is not None:
                return await _apply_edit(chat, actor, earlier, inbound)
            conversation = await support_conversation(customer)
            draft = parse_draft(_draft_fields(chat, inbound, key), chat.limits)
            message, created = await chat.send_message(actor, conversation.id, draft)
        except ChatError as exc:
            log.warning("inbound message ignored: platform=%s customer=%s message=%s error=%s",
                        profile.platform, customer.id, inbound.message_id, exc.message)
            return Result("ignored", reason=exc.message)
    return Result("created" if created else "duplicate", message["conversation_id"],
                  message["id"])


async def upsert_customer(profile: Profile) -> Customer:
    """The customer of ``profile``'s platform and id, created or brought up to date."""
    told = {name: value for name in ("first_name", "last_name", "username", "profile_picture")
            if (value := getattr(profile, name)) is not None}
    customer = await Customer.get_or_none(platform=profile.platform,
                                          external_id=profile.external_id)
    if customer is None:
        try:
            customer = Customer(platform=profile.platform, external_id=profile.external_id,
                                **_fit(told))
            await customer.save(force_create=True)
            return customer
        except IntegrityError:  # created meanwhile by another node
            customer = await Customer.get(platform=profile.platform,
                                          external_id=profile.external_id)
    changed = {k: v for k, v in _fit(told).items() if getattr(customer, k) != v}
    if changed:
        customer.update_from_dict(changed)
        await customer.save(update_fields=list(changed))
    return customer


async def support_conversation(customer: Customer) -> Conversation:
    """The customer's open support conversation (any status but ``closed``: the desk's
    ``support_active`` and ``marketing_active`` are open too); a new one when none is open (a
    closed ticket stays closed and the customer's next message opens the next one)."""
    found = await Conversation.filter(
        customer_id=customer.id, kind=ConversationKind.SUPPORT
    ).exclude(status=ConversationStatus.CLOSED).order_by("-id").first()
    if found is not None:
        return found
    # Seed 001's titles read "telegram - John Doe".
    title = f"{customer.platform} - {customer.display_name}"[:255]
    return await Conversation.create(kind=ConversationKind.SUPPORT, title=title, subject=title,
                                     customer_id=customer.id)


async def _earlier(customer: Customer, actor: Actor, key: str) -> Message | None:
    """The customer's message stored under ``key``, in any of their conversations."""
    mine = await Conversation.filter(customer_id=customer.id).values_list("id", flat=True)
    if not mine:
        return None
    return await Message.filter(conversation_id__in=list(mine), sender_key=actor.key,
                                client_msg_id=key).first()


async def _apply_edit(chat: ChatService, actor: Actor, earlier: Message,
                      inbound: Inbound) -> Result:
    cid = earlier.conversation_id
    content = _fit_content(chat, inbound.content)
    if not inbound.edit or earlier.content == content:
        return Result("duplicate", cid, earlier.id)
    await chat.edit_message(actor, earlier.id, content)
    return Result("edited", cid, earlier.id)


def _draft_fields(chat: ChatService, inbound: Inbound, key: str) -> dict[str, Any]:
    metadata = {"platform": inbound.profile.platform,
                "platform_message_id": inbound.message_id, **inbound.metadata}
    return {
        "content": _fit_content(chat, inbound.content),
        "message_type": inbound.message_type,
        "media_url": inbound.media_url,
        "file": inbound.file,
        "metadata": metadata,
        "client_msg_id": key,
    }


def _fit_content(chat: ChatService, content: str) -> str:
    """Platforms allow longer texts than our limit (Telegram: 4096): keep the start rather than
    refuse a message the platform would redeliver forever."""
    limit = chat.limits.max_content_chars
    return content if len(content) <= limit else content[: limit - 1] + "…"


def _fit(values: dict[str, str]) -> dict[str, str]:
    """Cut profile values to their columns (names 150, picture URL 1024)."""
    return {k: v[: 1024 if k == "profile_picture" else 150] for k, v in values.items()}
