"""The per-conversation event log: every change others see, in position order (CONTRACT §9).

A conversation's row holds its counter (``Conversation.event_position``, the last position
given) and its floor (``event_floor``: positions at or below it were trimmed by retention).
Each change appends one row in the transaction that makes the change, taking the next
position under the conversation's row lock, so positions commit in order within a
conversation. ``EventLogEpoch`` names the log as a whole: it changes only when the log can no
longer be served from before (an operator truncating it), and a client resuming across it
must reload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.conversations import Conversation


class ConversationEvent(Model):
    """One logged event. ``payload`` is the event's live payload, except for ``chat_message``
    whose payload is rebuilt from ``message_id``'s row when replayed (the send writes only
    the id: the message row holds the rest). ``skip`` holds the actor keys that must not get
    it (those who blocked its author), as the live event did."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="events")
    conversation_id: int
    position = fields.BigIntField()
    name = fields.CharField(max_length=32)
    message_id = fields.IntField(null=True)
    payload: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    skip: fields.Field[list[str] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "conversation_events"
        unique_together = (("conversation", "position"),)


class EventLogEpoch(Model):
    """One row: the log's epoch (see the module's docstring)."""

    id = fields.IntField(primary_key=True)
    epoch = fields.CharField(max_length=64)

    class Meta:
        table = "event_log_epoch"
