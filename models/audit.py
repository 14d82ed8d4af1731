"""The support desk's audit trail: who changed a conversation's assignment, status, priority
or title, from what to what, and when (backend/service/desk.py writes it)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.conversations import Conversation
    from models.people import User


class AuditAction(StrEnum):
    """What one audit entry records."""

    ASSIGNED = "assigned"        # from no agent to one
    TRANSFERRED = "transferred"  # from one agent to another
    UNASSIGNED = "unassigned"    # from an agent to none
    STATUS = "status"
    REOPENED = "reopened"
    PRIORITY = "priority"
    TITLE = "title"


class ConversationAudit(Model):
    """One change, written in the transaction that makes it. ``from_value`` and ``to_value``
    are the field's values as text (an agent's id, a status, a priority, a title); None for
    "no agent". ``actor`` is None once the acting user is gone."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="audit_entries", db_index=True)
    conversation_id: int
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="audit_entries", null=True, on_delete=fields.SET_NULL)
    actor_id: int | None
    action = fields.CharEnumField(AuditAction, max_length=16)
    from_value = fields.CharField(max_length=255, null=True)
    to_value = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "conversation_audit"
