"""Conversations, who takes part in them, and the relations between users around them."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.people import Customer, MobileSession, User


class ConversationKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    SUPPORT = "support"


class ConversationStatus(StrEnum):
    """Seed 001's statuses; every one but ``closed`` is open (may be written to). The longest,
    ``marketing_active``, is 16 characters: the column's ``max_length``."""

    ACTIVE = "active"
    SUPPORT_ACTIVE = "support_active"
    MARKETING_ACTIVE = "marketing_active"
    CLOSED = "closed"


class ConnectionStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"


class Connection(Model):
    """A request from one user to another (seed 004). Accepting it opens a direct conversation."""

    id = fields.IntField(primary_key=True)
    requester: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="connections_sent")
    requester_id: int
    addressee: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="connections_received")
    addressee_id: int
    status = fields.CharEnumField(
        ConnectionStatus, max_length=16, default=ConnectionStatus.PENDING
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    accepted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "connections"
        unique_together = (("requester", "addressee"),)


class Conversation(Model):
    """One conversation. What the seeds call a chat session or a session is this too."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharEnumField(ConversationKind, max_length=16, default=ConversationKind.SUPPORT)
    title = fields.CharField(max_length=255, default="")
    subject = fields.CharField(max_length=255, default="")
    status = fields.CharEnumField(
        ConversationStatus, max_length=16, default=ConversationStatus.ACTIVE
    )
    priority = fields.IntField(default=0)
    initiator: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="initiated", null=True, on_delete=fields.SET_NULL
    )
    initiator_id: int | None
    assigned_agent: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="assigned", null=True, on_delete=fields.SET_NULL
    )
    assigned_agent_id: int | None
    device: fields.ForeignKeyNullableRelation[MobileSession] = fields.ForeignKeyField(
        "models.MobileSession", related_name="conversations", null=True,
        on_delete=fields.SET_NULL,
    )
    device_id: int | None
    customer: fields.ForeignKeyNullableRelation[Customer] = fields.ForeignKeyField(
        "models.Customer", related_name="conversations", null=True, on_delete=fields.SET_NULL
    )
    customer_id: int | None
    connection: fields.OneToOneNullableRelation[Connection] = fields.OneToOneField(
        "models.Connection", related_name="conversation", null=True, on_delete=fields.SET_NULL
    )
    connection_id: int | None
    # Denormalised so that lists need no aggregate per row. ``total_messages`` is also the
    # counter every participant's unread count is derived from (``Participant.unread_offset``).
    total_messages = fields.IntField(default=0)
    device_last_read_message_id = fields.IntField(default=0)
    device_unread_count = fields.IntField(default=0)
    # Messages from the customer side not yet read by any agent: the support inbox's badge.
    staff_unread_count = fields.IntField(default=0)
    # The event log (models/events.py): the last position given, and the highest one trimmed
    # by retention (a resume from below it must reload). No index: every change moves them.
    event_position = fields.BigIntField(default=0, db_default=0)
    event_floor = fields.BigIntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    started_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        # No index holds ``updated_at`` or the counters: every send changes them, and the row
        # is then updated in place (migration 0004 says why).
        table = "conversations"


class Participant(Model):
    """The membership of a user in a conversation, with their read position.

    The unread count is derived, not kept: ``conversation.total_messages + unread_offset``.
    A send touches one participant row at most (the sender's own, whose messages are not
    unread to them: its offset goes down by one), whatever the number of participants;
    marking read sets the offset so that the sum is the messages from others after the read
    position not read one by one (their ``Receipt`` rows; see backend/service/unread.py)."""

    id = fields.IntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="participants")
    conversation_id: int
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="participations")
    user_id: int
    role = fields.CharField(max_length=16, default="user")
    joined_at = fields.DatetimeField(auto_now_add=True)
    is_active = fields.BooleanField(default=True)
    last_read_message_id = fields.IntField(default=0)
    last_read_at = fields.DatetimeField(null=True)
    unread_offset = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "participants"
        unique_together = (("conversation", "user"),)
        indexes = (("user_id", "is_active"),)


class Block(Model):
    """The blocker receives nothing from the blocked user, who cannot write to them directly."""

    id = fields.IntField(primary_key=True)
    blocker: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="blocks_made")
    blocker_id: int
    blocked: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="blocks_received")
    blocked_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "blocks"
        unique_together = (("blocker", "blocked"),)
