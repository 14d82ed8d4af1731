"""Unread counts, derived rather than kept per message.

A participant's unread count is ``conversations.total_messages + participants.unread_offset``:

- a send adds one to the conversation's counter, so everyone's count goes up by one, and
  takes one off the sender's own offset, so theirs does not: one row besides the
  conversation's, whatever the number of participants (it was an UPDATE of every other
  participant's row, 499 rows a message in a conversation of 500);
- marking read sets the offset to ``messages from others after the read position, not
  deleted`` minus the counter, read while the conversation's row is locked (no send commits in
  between), so the count is exact again after every read.

The device's count of a device conversation and staff's count of a support conversation live
on the conversation's row and are updated by the send (one row either way).
"""

from __future__ import annotations

from backend.service.actors import Actor
from models import Conversation, Participant


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
    rows = await Participant.filter(
        conversation_id__in=[c.id for c in conversations], user_id=viewer.user.id
    ).values_list("conversation_id", "unread_offset", "conversation__total_messages")
    mine = {cid: unread(total, offset) for cid, offset, total in rows}
    return {c.id: mine.get(c.id, c.staff_unread_count if viewer.is_staff else 0)
            for c in conversations}
