"""Outgoing webhooks (CONTRACT section 11): endpoints that admins register, each with the
event types it wants and the secret its deliveries are signed with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.people import User


class WebhookEndpoint(Model):
    """One registered receiver."""

    id = fields.IntField(primary_key=True)
    url = fields.CharField(max_length=2048)
    #: Event names, as the Socket.IO events (``chat_message``, ``message_edit``, ...).
    events: fields.Field[list[str]] = fields.JSONField()
    secret = fields.CharField(max_length=128)
    is_active = fields.BooleanField(default=True)
    #: The id of the last event-log row the catch-up has looked at for this endpoint
    #: (backend/integrations/webhooks.py): events logged after it and missed live are queued.
    log_cursor = fields.BigIntField(default=0)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="webhook_endpoints", null=True, on_delete=fields.SET_NULL)
    created_by_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_endpoints"
