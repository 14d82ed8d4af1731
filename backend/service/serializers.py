"""Canonical JSON forms of users, messages and conversations.

One form per item, carrying the union of the names the seeds' families use (CONTRACT section 8),
so that every door can send the same bytes. Dialects rename or trim; they never re-query.
"""

from __future__ import annotations

from typing import Any

from backend.service.clock import iso
from backend.storage.sends import SentMessage
from models import (
    Conversation,
    Customer,
    Message,
    MobileSession,
    Participant,
    SenderType,
    User,
    UserFacts,
)

#: A stored message: a model read from the database, or one just sent (built from the values
#: inserted, see backend/storage/sends.py). Both have the same attributes.
AnyMessage = Message | SentMessage


def participant_dict(participant: Participant) -> dict[str, Any]:
    """One participant row (``GET .../participants``, and what adding members returns)."""
    return {
        "id": participant.id,
        "user_id": participant.user_id,
        "conversation_id": participant.conversation_id,
        "role": participant.role,
        "joined_at": iso(participant.joined_at),
        "is_active": participant.is_active,
        "last_read_message_id": participant.last_read_message_id,
        "last_read_at": iso(participant.last_read_at),
    }


def user_dict(user: User | UserFacts) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "avatar_url": user.avatar_url,
        "role": str(user.role),
        "name": user.display_name,
    }


def customer_dict(customer: Customer | None) -> dict[str, Any] | None:
    if customer is None:
        return None
    return {
        "id": customer.id,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "username": customer.username,
        "source": customer.platform,
        "profile_picture": customer.profile_picture,
    }


def _sender(message: AnyMessage) -> tuple[dict[str, Any] | None, Any, str, str]:
    """(sender object, sender_id, display name, avatar) for the message's author."""
    user: User | UserFacts | None = message.sender_user
    device: MobileSession | None = message.sender_device
    customer: Customer | None = message.sender_customer
    if message.sender_type == SenderType.USER and user is not None:
        return user_dict(user), user.id, user.display_name, user.avatar_url
    if message.sender_type == SenderType.MOBILE and device is not None:
        info = {"type": "mobile_user", "device_id": device.device_id}
        return info, device.device_id, "Mobile user", ""
    if message.sender_type == SenderType.CUSTOMER and customer is not None:
        info = {"type": "customer", **(customer_dict(customer) or {})}
        return info, customer.id, customer.display_name, customer.profile_picture
    return None, None, "System", ""


def _legacy_type(message: AnyMessage, role: object) -> str:
    """Seed 001's ``type``: who the message is from, from a support inbox's point of view
    (``role``: the sending user's, if a user sent it)."""
    if message.sender_type in (SenderType.CUSTOMER, SenderType.MOBILE):
        return "customer"
    if message.sender_type == SenderType.SYSTEM:
        return "system"
    return "support" if role in ("agent", "admin") else "user"


def reactions_map(keys_by_emoji: dict[str, list[str]]) -> dict[str, list[Any]]:
    """``{emoji: [user_id | device_id, ...]}`` from reactor keys."""
    return {emoji: [reactor_ref(key) for key in keys] for emoji, keys in keys_by_emoji.items()}


def reactor_ref(key: str) -> Any:
    kind, _, ident = key.partition(":")
    if kind in ("user", "customer"):
        return int(ident)
    return ident


def message_dict(
    message: AnyMessage,
    *,
    reactions: dict[str, list[str]] | None = None,
    read_by_count: int = 0,
    customer: Customer | None = None,
) -> dict[str, Any]:
    """The canonical message. Sender relations must be loaded (or None). ``customer``: the
    conversation's customer (a customer's own message names its sender without it)."""
    sender, sender_id, sender_name, sender_avatar = _sender(message)
    created = iso(message.created_at)
    conversation_id = message.conversation_id
    if customer is None and message.sender_type == SenderType.CUSTOMER:
        customer = message.sender_customer
    return {
        "id": message.id,
        "message_id": message.id,
        "conversation_id": conversation_id,
        "chat_session_id": conversation_id,
        "sender_type": str(message.sender_type),
        "sender": sender,
        "sender_info": sender,
        "sender_id": sender_id,
        "user_id": sender_id,
        "sender_name": sender_name,
        "sender_avatar": sender_avatar,
        "content": "" if message.is_deleted else message.content,
        "message_type": message.message_type,
        "type": _legacy_type(message, (sender or {}).get("role")),
        "media_url": message.media_url,
        "file": message.file,
        "parent_message_id": message.parent_message_id,
        "reply_to_id": message.reply_to_id,
        "mentions": message.mentions,
        "metadata": message.metadata,
        "is_urgent": message.is_urgent,
        "status": str(message.status),
        "is_edited": message.is_edited,
        "edited_at": iso(message.edited_at),
        "is_deleted": message.is_deleted,
        "reactions": reactions_map(reactions or {}),
        "read_by_count": read_by_count,
        "client_msg_id": message.client_msg_id,
        # A staff reply sent out to the customer's platform: none, pending, sent or failed.
        "delivery_status": str(message.delivery_status),
        "delivery_error": message.delivery_error,
        "customer": customer_dict(customer),
        "is_ai_response": False,
        "is_answered": False,
        "created_at": created,
        "sent_at": created,
    }


def last_message_dict(message: Message | None) -> dict[str, Any] | None:
    """A conversation's ``last_message``; its ``type`` is the message's own (its sending
    user, ``sender_user``, loaded)."""
    if message is None:
        return None
    user = message.sender_user
    return {
        "id": message.id,
        "content": "" if message.is_deleted else message.content,
        "type": _legacy_type(message, str(user.role) if user is not None else None),
        "sender_type": str(message.sender_type),
        "message_type": message.message_type,
        "created_at": iso(message.created_at),
    }


def conversation_dict(
    conversation: Conversation,
    *,
    last_message: Message | None,
    participants_count: int,
    unread_count: int,
) -> dict[str, Any]:
    """The canonical conversation. ``customer`` and ``device`` relations must be loaded."""
    device: MobileSession | None = conversation.device
    customer: Customer | None = conversation.customer
    return {
        "id": conversation.id,
        "conversation_id": conversation.id,
        "kind": str(conversation.kind),
        "title": conversation.title,
        "subject": conversation.subject,
        "status": str(conversation.status),
        "priority": conversation.priority,
        "initiator_id": conversation.initiator_id,
        "assigned_agent_id": conversation.assigned_agent_id,
        "device_id": device.device_id if device is not None else None,
        "customer": customer_dict(customer),
        "participants_count": participants_count,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
        "started_at": iso(conversation.started_at),
        "closed_at": iso(conversation.closed_at),
        "last_message": last_message_dict(last_message),
        "total_messages": conversation.total_messages,
        "unread_count": unread_count,
    }
