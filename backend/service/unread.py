"""Unread counts, derived rather than kept per message.

A participant's unread count is ``conversations.total_messages + participants.unread_offset``:

- a send adds one to the conversation's counter, so everyone's count goes up by one, and
  takes one off the sender's own offset, so theirs does not: one row besides the
  conversation's, whatever the number of participants (it was an UPDATE of every other
  participant's row, 499 rows a message in a conversation of 500);
- marking read sets the offset to ``messages from others after the read position, not
  deleted, not read one by one`` minus the counter, read while the conversation's row is
  locked (no send commits in between), so the count is exact again after every read.

The read position (``last_read_message_id``) means "everything from others up to here is
read". Marking ``message_ids`` reads exactly those messages (a ``Receipt`` with ``read_at``
each) and moves the position only over a prefix that is then read in full: marking m1 and m3
of m1..m3 leaves the position at m1 and m2 unread (``read_position``).

The device's count of a device conversation and staff's count of a support conversation live
on the conversation's row and are updated by the send (one row either way).
"""

from __future__ import annotations

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Min
from tortoise.queryset import QuerySet

from backend.service.actors import Actor
from backend.storage.columns import int_column
from backend.storage.lookups import unread_figures
from models import Conversation, Message, Participant, Receipt, Role


def unread(total_messages: int, offset: int) -> int:
    """The count from the conversation's counter and the participant's offset."""
    return max(0, total_messages + offset)


async def members_unread(conversation_id: int, user_ids: list[int] | None = None,
                         *, active_only: bool = True) -> dict[int, int]:
    """Unread counts of the conversation's participants (``user_ids`` only, when given), in
    one query that reads each offset with the counter of the same moment."""
    query = Participant.filter(conversation_id=conversation_id)
    if active_only:
        query = query.filter(is_active=True)
    if user_ids is not None:
        if not user_ids:
            return {}
        query = query.filter(user_id__in=user_ids)
    rows = await query.values_list("user_id", "unread_offset", "conversation__total_messages")
    return {user_id: unread(total, offset) for user_id, offset, total in rows}


async def viewer_unreads(viewer: Actor, conversations: list[Conversation]) -> dict[int, int]:
    """What ``viewer`` sees as unread in each of ``conversations`` (loaded just before), by
    conversation id: one query for a user, none for a device."""
    if viewer.device is not None:
        return {c.id: c.device_unread_count for c in conversations}
    if viewer.user is None or not conversations:
        return dict.fromkeys((c.id for c in conversations), 0)
    if len(conversations) == 1:  # every Socket.IO join's view: a plain statement
        cid = conversations[0].id
        figures = await unread_figures(cid, viewer.user.id)
        rows = [] if figures is None else [(cid, *figures)]
    else:
        rows = await Participant.filter(
            conversation_id__in=[c.id for c in conversations], user_id=viewer.user.id
        ).values_list("conversation_id", "unread_offset", "conversation__total_messages")
    mine = {cid: unread(total, offset) for cid, offset, total in rows}
    return {c.id: mine.get(c.id, c.staff_unread_count if viewer.is_staff else 0)
            for c in conversations}


def read_ahead(conversation_id: int, reader_key: str, floor: int) -> QuerySet[Message]:
    """The messages after ``floor`` that ``reader_key`` has read one by one (a receipt with
    ``read_at``): each probes the receipts' ``(message_id, reader_key)`` key."""
    return Message.filter(conversation_id=conversation_id, id__gt=floor,
                          receipts__reader_key=reader_key, receipts__read_at__isnull=False)


async def read_position(conversation_id: int, reader_key: str, floor: int) -> tuple[int, int]:
    """The read position and unread count of ``reader_key``, who has read everything from
    others up to ``floor`` and, after it, the messages they read one by one.

    The position goes past ``floor`` over the messages read one by one that precede the first
    unread one; the count is the messages from others after it, not deleted, not read one by
    one. Two queries; run it while the conversation's row is locked (the count is set against
    the counter, see the module's docstring)."""
    ahead = read_ahead(conversation_id, reader_key, floor)
    unread_after = Message.filter(
        conversation_id=conversation_id, id__gt=floor, is_deleted=False
    ).exclude(sender_key=reader_key).exclude(id__in=Subquery(ahead.values("id")))
    rows = await unread_after.annotate(n=Count("id"), first=Min("id")).values("n", "first")
    count, first = (rows[0]["n"] or 0, rows[0]["first"]) if rows else (0, None)
    reach = ahead if first is None else ahead.filter(id__lt=first)
    top = await int_column(reach.order_by("-id").limit(1), "id")
    return max([floor, *top]), count


async def staff_unread(conversation_id: int) -> int:
    """Staff's count of a support conversation, counted: the messages from the customer side
    after staff's last answer, not deleted, that no one has read (a receipt with ``read_at``;
    the customer side does not read its own). For reads that name messages or stop at one; a
    read of everything sets it to 0, and sends move it by one (backend/storage/sends.py)."""
    staff = (Role.AGENT, Role.ADMIN)
    answered = await int_column(Message.filter(
        conversation_id=conversation_id, sender_user__role__in=staff
    ).order_by("-id").limit(1), "id")
    floor = answered[0] if answered else 0
    read = Receipt.filter(message__conversation_id=conversation_id, message_id__gt=floor,
                          read_at__isnull=False).values("message_id")
    return await Message.filter(
        Q(sender_user_id=None) | ~Q(sender_user__role__in=staff),
        conversation_id=conversation_id, id__gt=floor, is_deleted=False,
    ).exclude(id__in=Subquery(read)).count()
