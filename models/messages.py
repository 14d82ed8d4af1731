"""Messages and what happens to them after they are sent: reactions and receipts."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.conversations import Conversation
    from models.people import Customer, MobileSession, User


class SenderType(StrEnum):
    USER = "user"
    MOBILE = "mobile"
    CUSTOMER = "customer"
    SYSTEM = "system"


class MessageStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"


class DeliveryStatus(StrEnum):
    """Where a reply to an outside platform stands. NONE: nothing to send out."""

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Message(Model):
    """One message. Ids only grow within a conversation, so an id is a resume point."""

    id = fields.IntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages")
    conversation_id: int
    sender_type = fields.CharEnumField(SenderType, max_length=16)
    # "user:5", "mobile:<device_id>", "customer:7", "system": one column for the idempotency key.
    sender_key = fields.CharField(max_length=160)
    sender_user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    sender_user_id: int | None
    sender_device: fields.ForeignKeyNullableRelation[MobileSession] = fields.ForeignKeyField(
        "models.MobileSession", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    sender_device_id: int | None
    sender_customer: fields.ForeignKeyNullableRelation[Customer] = fields.ForeignKeyField(
        "models.Customer", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    sender_customer_id: int | None
    content = fields.TextField()
    message_type = fields.CharField(max_length=16, default="text")
    media_url = fields.CharField(max_length=2048, default="")
    file: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    parent_message_id = fields.IntField(null=True)
    reply_to_id = fields.IntField(null=True)
    mentions: fields.Field[list[Any]] = fields.JSONField(default=list)
    metadata: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    is_urgent = fields.BooleanField(default=False)
    status = fields.CharEnumField(MessageStatus, max_length=16, default=MessageStatus.SENT)
    is_edited = fields.BooleanField(default=False)
    edited_at = fields.DatetimeField(null=True)
    is_deleted = fields.BooleanField(default=False)
    deleted_at = fields.DatetimeField(null=True)
    client_msg_id = fields.CharField(max_length=64, null=True)
    # Outside platforms (backend/integrations): how a staff reply's delivery stands, the
    # platform's id for the delivered reply, and the last delivery error, shown to agents.
    # db_default too, so that adding the columns to a table that has rows works.
    delivery_status = fields.CharEnumField(
        DeliveryStatus, max_length=16, default=DeliveryStatus.NONE, db_default="none"
    )
    external_id = fields.CharField(max_length=255, null=True)
    delivery_error = fields.CharField(max_length=255, default="", db_default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "messages"
        indexes = (("conversation_id", "id"),)
        unique_together = (("conversation", "sender_key", "client_msg_id"),)


class Reaction(Model):
    """One emoji from one reactor on one message. Sending it again removes it."""

    id = fields.IntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="reactions")
    message_id: int
    reactor_key = fields.CharField(max_length=160)
    emoji = fields.CharField(max_length=32)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reactions"
        unique_together = (("message", "reactor_key", "emoji"),)


class Receipt(Model):
    """When one reader got and read one message."""

    id = fields.IntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="receipts")
    message_id: int
    reader_key = fields.CharField(max_length=160)
    delivered_at = fields.DatetimeField(null=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "receipts"
        unique_together = (("message", "reader_key"),)
