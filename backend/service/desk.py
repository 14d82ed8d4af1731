"""The support desk (CONTRACT section 10): assignment, seed 001's statuses, reopening, title and
priority, the queue of unassigned conversations, and the audit trail of every such change.

Each change runs as a logged change (``LogOps._logged_change``): in one transaction, under the
conversation's row lock, it re-reads the conversation, changes it, writes one audit entry per
field changed and logs one ``conversation_updated`` (with its position) for the members on
every door; after commit the stale grants are dropped on every node and the inboxes that show
the conversation (staff's among them) get their own ``conversation_updated``. A change that
changes nothing (assigning the agent already assigned) writes, logs and publishes nothing.

Assignment and the previous agent's membership: the assigned agent takes part in the
conversation (a participant row with role ``agent``, made or made active again). On a transfer
or an unassignment the previous agent's ``agent`` row is made inactive, not deleted: its read
position and ``joined_at`` stay for the record, and being staff the agent still sees the
conversation (as every agent does) without it being among their own. A row of another role
(the agent started the conversation) is left as it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tortoise.expressions import Q

from backend.service import events
from backend.service.access import (
    ensure_can_edit,
    ensure_can_reopen,
    ensure_staff,
    ensure_support,
    load_conversation,
    visible_conversation,
)
from backend.service.actors import Actor
from backend.service.clock import iso, now
from backend.service.conversations import ConversationOps, last_messages
from backend.service.errors import ChatError, conflict, invalid, valid_id
from backend.service.events import Event
from backend.service.serializers import conversation_dict
from models import (
    AuditAction,
    Conversation,
    ConversationAudit,
    ConversationKind,
    ConversationStatus,
    Participant,
    User,
)

#: A support conversation's priority: an integer from ``PRIORITY_MIN`` (the default, normal) to
#: ``PRIORITY_MAX`` (most urgent); the queue serves the highest first.
PRIORITY_MIN = 0
PRIORITY_MAX = 10
#: A title's longest length (the column's), in characters.
TITLE_MAX = 255
#: The queue's page sizes.
QUEUE_DEFAULT_LIMIT = 20
QUEUE_MAX_LIMIT = 100
#: The audit trail's page sizes.
AUDIT_DEFAULT_LIMIT = 100
AUDIT_MAX_LIMIT = 500

#: ``{field: {"from": old, "to": new}}``: what one change changed.
Changes = dict[str, dict[str, Any]]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def status_of(value: Any) -> ConversationStatus:
    """A status a client named: one of seed 001's, else 422."""
    try:
        return ConversationStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in ConversationStatus)
        raise invalid(f"status must be one of: {names}") from None


def checked_priority(value: Any) -> int:
    if not _is_int(value) or not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise invalid(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}")
    checked: int = value
    return checked


def checked_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("title must be a non-empty string")
    if len(value) > TITLE_MAX:
        raise invalid(f"title must be at most {TITLE_MAX} characters")
    if "\x00" in value:
        raise invalid("title must not contain NUL characters")
    return value.strip()


class DeskOps(ConversationOps):
    """Mixin of ChatService: the support desk."""

    # -- changes ----------------------------------------------------------------------------

    async def assign_conversation(self, actor: Actor, conversation_id: int,
                                  agent_id: int | None) -> dict[str, Any]:
        """Assign the support conversation to ``agent_id`` (an active agent or admin: take it,
        or transfer it), or to nobody (None). Staff only."""
        await ensure_staff(actor, "assign conversations")
        conversation = await load_conversation(conversation_id)
        ensure_support(conversation)
        if agent_id is not None:
            if not valid_id(agent_id):
                raise invalid("agent_id must be a user id or null")
            agent = await User.get_or_none(id=agent_id)
            if agent is None or not agent.is_active or not agent.is_staff:
                raise invalid("agent_id must name an active agent or admin")

        async def change(row: Conversation) -> tuple[Changes, list[ConversationAudit]]:
            if row.status == ConversationStatus.CLOSED:
                raise ChatError("conversation_closed",
                                "Conversation is closed; reopen it first", 409)
            before = row.assigned_agent_id
            if before == agent_id:
                return {}, []
            row.assigned_agent_id = agent_id
            await row.save(update_fields=["assigned_agent_id", "updated_at"])
            if before is not None:
                await Participant.filter(conversation_id=row.id, user_id=before,
                                         role="agent").update(is_active=False)
            if agent_id is not None:
                await _seat_agent(row, agent_id)
            action = (AuditAction.ASSIGNED if before is None else
                      AuditAction.UNASSIGNED if agent_id is None else AuditAction.TRANSFERRED)
            return ({"assigned_agent_id": {"from": before, "to": agent_id}},
                    [_entry(row, actor, action, before, agent_id)])

        return await self._desk_change(actor, conversation, change)

    async def set_conversation_status(self, actor: Actor, conversation_id: int,
                                      status: Any) -> dict[str, Any]:
        """Give the support conversation one of seed 001's statuses. Closing is the close of
        ``close_conversation`` (``closed_at`` set, no more writes); leaving ``closed`` is a
        reopening into that status. Staff only."""
        await ensure_staff(actor, "set a desk status")
        wanted = status_of(status)
        conversation = await load_conversation(conversation_id)
        ensure_support(conversation)

        async def change(row: Conversation) -> tuple[Changes, list[ConversationAudit]]:
            before = ConversationStatus(row.status)
            if before == wanted:
                return {}, []
            _move_status(row, wanted)
            await row.save(update_fields=["status", "closed_at", "updated_at"])
            return ({"status": {"from": before.value, "to": wanted.value}},
                    [_entry(row, actor, AuditAction.STATUS, before.value, wanted.value)])

        return await self._desk_change(actor, conversation, change)

    async def reopen_conversation(self, actor: Actor, conversation_id: int) -> dict[str, Any]:
        """A closed conversation becomes ``active`` (staff for a support conversation, the
        owner for a group); 409 when it is not closed."""
        conversation = await visible_conversation(actor, conversation_id)
        await ensure_can_reopen(actor, conversation)
        if conversation.status != ConversationStatus.CLOSED:
            raise conflict("Conversation is not closed")

        async def change(row: Conversation) -> tuple[Changes, list[ConversationAudit]]:
            if row.status != ConversationStatus.CLOSED:
                raise conflict("Conversation is not closed")
            _move_status(row, ConversationStatus.ACTIVE)
            await row.save(update_fields=["status", "closed_at", "updated_at"])
            closed, active = ConversationStatus.CLOSED.value, ConversationStatus.ACTIVE.value
            return ({"status": {"from": closed, "to": active}},
                    [_entry(row, actor, AuditAction.REOPENED, closed, active)])

        return await self._desk_change(actor, conversation, change)

    async def update_conversation(self, actor: Actor, conversation_id: int, *,
                                  title: Any = None, priority: Any = None) -> dict[str, Any]:
        """Change the title and/or the priority (``PRIORITY_MIN``..``PRIORITY_MAX``): staff
        for a support conversation, a group's owner or admin for its title."""
        if title is None and priority is None:
            raise invalid("Give title or priority")
        new_title = None if title is None else checked_title(title)
        new_priority = None if priority is None else checked_priority(priority)
        conversation = await visible_conversation(actor, conversation_id)
        await ensure_can_edit(actor, conversation, priority=new_priority is not None)

        async def change(row: Conversation) -> tuple[Changes, list[ConversationAudit]]:
            changes: Changes = {}
            entries = []
            if new_title is not None and new_title != row.title:
                changes["title"] = {"from": row.title, "to": new_title}
                entries.append(_entry(row, actor, AuditAction.TITLE, row.title, new_title))
                row.title = new_title
            if new_priority is not None and new_priority != row.priority:
                changes["priority"] = {"from": row.priority, "to": new_priority}
                entries.append(_entry(row, actor, AuditAction.PRIORITY, row.priority,
                                      new_priority))
                row.priority = new_priority
            if changes:
                await row.save(update_fields=["title", "priority", "updated_at"])
            return changes, entries

        return await self._desk_change(actor, conversation, change)

    async def _desk_change(
        self, actor: Actor, conversation: Conversation,
        change: Callable[[Conversation], Awaitable[tuple[Changes, list[ConversationAudit]]]],
    ) -> dict[str, Any]:
        """Run ``change`` on the conversation's row as it is under its lock, with its audit
        entries and its logged ``conversation_updated``; then drop stale grants, publish, and
        tell the inboxes. The conversation as ``actor`` sees it after."""
        cid = conversation.id

        async def logged() -> Event | None:
            row = await load_conversation(cid)
            changes, entries = await change(row)
            if not changes:
                return None
            await ConversationAudit.bulk_create(entries)
            return events.conversation_changed(await self._shown(row), changes, actor)

        event = await self._logged_change(cid, logged, committed=partial(
            self._changed, conversation_id=cid))
        if event is not None:
            self._inbox_changed(cid)
        return await self.conversation_view(await load_conversation(cid), actor)

    async def _shown(self, conversation: Conversation) -> dict[str, Any]:
        """The conversation as its members' event shows it (no viewer's unread count)."""
        last = (await last_messages([conversation.id])).get(conversation.id)
        members = await Participant.filter(conversation_id=conversation.id,
                                           is_active=True).count()
        return conversation_dict(conversation, last_message=last, participants_count=members,
                                 unread_count=0)

    # -- reading ----------------------------------------------------------------------------

    async def desk_queue(self, actor: Actor, *, limit: int = QUEUE_DEFAULT_LIMIT,
                         cursor: str | None = None,
                         ) -> tuple[list[dict[str, Any]], str | None]:
        """Open support conversations with no agent: highest priority first, then oldest
        first; a page and the cursor of the next one. Staff only."""
        await ensure_staff(actor, "read the queue")
        limit = max(1, min(limit, QUEUE_MAX_LIMIT))
        # No index of its own yet: the query reads the conversations table (staff open it
        # now and then, not per message). One on (kind, status, assigned_agent_id, priority,
        # created_at) would hold no column a send changes (migration 0004), should it grow.
        query = Conversation.filter(kind=ConversationKind.SUPPORT, assigned_agent_id=None).exclude(
            status=ConversationStatus.CLOSED)
        if cursor:
            priority, stamp, last_id = _decode_queue_cursor(cursor)
            query = query.filter(
                Q(priority__lt=priority)
                | Q(priority=priority, created_at__gt=stamp)
                | Q(priority=priority, created_at=stamp, id__gt=last_id))
        rows = await (query.order_by("-priority", "created_at", "id").limit(limit + 1)
                      .select_related("device", "customer"))
        page = rows[:limit]
        next_cursor = _encode_queue_cursor(page[-1]) if len(rows) > limit and page else None
        return await self.conversation_views(page, actor), next_cursor

    async def audit_trail(self, actor: Actor, conversation_id: int, *,
                          limit: int = AUDIT_DEFAULT_LIMIT, after_id: int = 0,
                          ) -> list[dict[str, Any]]:
        """The conversation's audit entries after ``after_id``, oldest first. Staff only."""
        await ensure_staff(actor, "read the audit trail")
        conversation = await load_conversation(conversation_id)
        limit = max(1, min(limit, AUDIT_MAX_LIMIT))
        rows = await ConversationAudit.filter(
            conversation_id=conversation.id, id__gt=after_id).order_by("id").limit(limit)
        return [{"id": r.id, "conversation_id": r.conversation_id, "actor_id": r.actor_id,
                 "action": str(r.action), "from": r.from_value, "to": r.to_value,
                 "at": iso(r.created_at)} for r in rows]


# -- helpers ------------------------------------------------------------------------------


def _entry(row: Conversation, actor: Actor, action: AuditAction, before: Any,
           after: Any) -> ConversationAudit:
    return ConversationAudit(conversation_id=row.id, actor_id=actor.user_id, action=action,
                             from_value=_text(before), to_value=_text(after), created_at=now())


def _move_status(row: Conversation, status: ConversationStatus) -> None:
    """Set ``status``: closing stamps ``closed_at``, reopening clears it."""
    if status == ConversationStatus.CLOSED:
        row.closed_at = now()
    elif row.status == ConversationStatus.CLOSED:
        row.closed_at = None
    row.status = status


async def _seat_agent(row: Conversation, agent_id: int) -> None:
    """Make ``agent_id`` a participant (role ``agent``), or active again. A new seat starts
    with staff's unread count of the conversation (unread = counter + offset)."""
    seat = await Participant.get_or_none(conversation_id=row.id, user_id=agent_id)
    if seat is None:
        await Participant.create(conversation_id=row.id, user_id=agent_id, role="agent",
                                 unread_offset=row.staff_unread_count - row.total_messages)
    elif not seat.is_active:
        seat.is_active = True
        await seat.save(update_fields=["is_active"])


def _encode_queue_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.priority}|{conversation.created_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_queue_cursor(cursor: str) -> tuple[int, datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        priority, stamp, ident = base64.urlsafe_b64decode(padded).decode().split("|")
        moment, last_id, level = datetime.fromisoformat(stamp), int(ident), int(priority)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid("Malformed cursor") from exc
    if not valid_id(last_id) or not PRIORITY_MIN <= level <= PRIORITY_MAX:
        raise invalid("Malformed cursor")
    return level, (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), last_id
