"""Request and response models of the support desk's REST routes (backend/rest/desk.py).

Shapes only; the ranges are the service's (backend/service/desk.py), repeated here for the
OpenAPI document, and every rule about who may do what stays in the service.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt, StrictStr

from backend.rest.schemas import AfterId, Id, _Body, _Out
from backend.service.desk import (
    AUDIT_DEFAULT_LIMIT,
    AUDIT_MAX_LIMIT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_DEFAULT_LIMIT,
    QUEUE_MAX_LIMIT,
    TITLE_MAX,
)

StatusName = Literal["active", "support_active", "marketing_active", "closed"]


class AssignBody(_Body):
    """``agent_id``: an active agent's or admin's id, or null to unassign (required)."""

    agent_id: Id | None


class StatusBody(_Body):
    status: StatusName


class PatchSessionBody(_Body):
    title: StrictStr | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    priority: StrictInt | None = Field(default=None, ge=PRIORITY_MIN, le=PRIORITY_MAX)


class QueueQuery(_Body):
    limit: int = Field(default=QUEUE_DEFAULT_LIMIT, ge=1, le=QUEUE_MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=200)


class AuditQuery(_Body):
    limit: int = Field(default=AUDIT_DEFAULT_LIMIT, ge=1, le=AUDIT_MAX_LIMIT)
    after_id: AfterId = 0


class AuditEntryOut(_Out):
    id: int
    conversation_id: int
    actor_id: int | None
    action: Literal["assigned", "transferred", "unassigned", "status", "reopened", "priority",
                    "title"]
    from_: str | None = Field(alias="from")
    to: str | None
    at: str | None
