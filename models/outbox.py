"""The durable outbox: deliveries to the outside (webhooks, Web Push, FCM) waiting, done or
dead (backend/integrations/outbox.py claims and delivers them).

A row is written after the change it tells of has committed, once per target (a webhook
endpoint, a push subscription). Times the workers compare are integer milliseconds since the
epoch (``due_ms``, ``lease_ms``): the same comparison on SQLite and PostgreSQL. A row's
``(kind, target_id, event_id)`` is unique, so the same event is never queued twice for one
target, and a receiver dedupes with ``event_id``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class OutboxKind(StrEnum):
    """Where a row goes."""

    WEBHOOK = "webhook"
    WEBPUSH = "webpush"
    FCM = "fcm"


class OutboxStatus(StrEnum):
    """``pending`` (waiting, or claimed by a node until ``lease_ms``), ``done`` (delivered),
    ``dead`` (given up: too many attempts, refused for good, or its target is gone)."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxItem(Model):
    """One delivery to the outside."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharEnumField(OutboxKind, max_length=16)
    #: The webhook endpoint's or the push subscription's id.
    target_id = fields.IntField()
    event_id = fields.CharField(max_length=64)
    event = fields.CharField(max_length=32)
    payload: fields.Field[dict[str, Any]] = fields.JSONField()
    status = fields.CharEnumField(OutboxStatus, max_length=16, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    #: When the row may next be tried (ms since the epoch).
    due_ms = fields.BigIntField()
    #: A node claimed it until then, and past it another node may take it (its claimer died).
    lease_ms = fields.BigIntField(null=True)
    claimed_by = fields.CharField(max_length=64, null=True)
    last_error = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox"
        unique_together = (("kind", "target_id", "event_id"),)
        indexes = (("status", "due_ms"),)
