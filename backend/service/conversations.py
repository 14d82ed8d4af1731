"""Conversation operations: create, list, view, close, participants, read positions."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Max
from tortoise.transactions import in_transaction

from backend.service import events
from backend.service.access import (
    can_close,
    load_conversation,
    visible_conversation,
    visible_filter,
)
from backend.service.actors import Actor
from backend.service.clock import iso, now
from backend.service.errors import forbidden, invalid, not_found, valid_id
from backend.service.events import Event
from backend.service.resume import LogOps
from backend.service.serializers import conversation_dict, participant_dict
from backend.service.unread import (
    members_unread,
    read_ahead,
    read_position,
    staff_unread,
    viewer_unreads,
)
from backend.storage.columns import int_column
from models import (
    AuditAction,
    Conversation,
    ConversationAudit,
    ConversationKind,
    ConversationStatus,
    Message,
    MobileSession,
    Participant,
    Receipt,
    Role,
    User,
)


class ConversationOps(LogOps):
    """Mixin of ChatService: everything about conversations as a whole."""

    async def create_conversation(
        self,
        actor: Actor,
        *,
        title: str = "",
        kind: str = "support",
        participant_ids: list[int] | None = None,
        assigned_agent_id: int | None = None,
        subject: str = "",
    ) -> dict[str, Any]:
        """Create a support or group conversation; the creator takes part in it."""
        if actor.user is None:
            raise forbidden("Only users create conversations here")
        if kind == ConversationKind.DIRECT:
            raise invalid("Direct conversations are created by accepting a connection")
        if kind not in (ConversationKind.SUPPORT, ConversationKind.GROUP):
            raise invalid("kind must be 'support' or 'group'")
        member_ids = {i for i in (participant_ids or []) if i != actor.user.id}
        if member_ids:
            found = await User.filter(id__in=member_ids, is_active=True).count()
            if found != len(member_ids):
                raise not_found("Participant user")
        agent = None
        if assigned_agent_id is not None:
            agent = await User.get_or_none(id=assigned_agent_id, is_active=True)
            if agent is None or not agent.is_staff:
                raise invalid("assigned_agent_id must name an agent or admin")
        async with in_transaction():
            conversation = await Conversation.create(
                kind=kind,
                title=title,
                subject=subject or title,
                initiator_id=actor.user.id,
                assigned_agent_id=agent.id if agent else None,
            )
            rows = [Participant(conversation_id=conversation.id, user_id=actor.user.id,
                                role="owner" if kind == ConversationKind.GROUP else "user")]
            rows += [Participant(conversation_id=conversation.id, user_id=i, role="member")
                     for i in sorted(member_ids)]
            if agent is not None and agent.id != actor.user.id:
                rows.append(Participant(conversation_id=conversation.id, user_id=agent.id,
                                        role="agent"))
            await Participant.bulk_create(rows)
        # The inboxes that now show it (its members', and staff's for a support conversation)
        # get it at once, not at its first message.
        self._inbox_changed(conversation.id)
        conversation = await load_conversation(conversation.id)
        return await self.conversation_view(conversation, actor)

    async def start_device_conversation(
        self, device: MobileSession, subject: str
    ) -> dict[str, Any]:
        """Seed 000's ``/mobile/chat/start/``: a support conversation owned by a device."""
        conversation = await Conversation.create(
            kind=ConversationKind.SUPPORT, title=subject, subject=subject, device_id=device.id
        )
        conversation = await load_conversation(conversation.id)
        view = await self.conversation_view(conversation, Actor.of_device(device))
        self._inbox_changed(conversation.id)
        return view

    async def get_conversation(self, actor: Actor, conversation_id: int) -> dict[str, Any]:
        """The canonical conversation as ``actor`` sees it: 404 if it does not exist, 403 if
        they may not see it. Every Socket.IO ``join`` answers with it, and a reconnect storm
        joins a room's thousands of clients at once: the access check and the participants'
        count come from the cached facts (grants.py), not a count over the room's rows; the
        row and its last message are read once for the readers asking together
        (shared_reads.py) and rendered once for them; only the viewer's unread count is read
        per viewer."""
        facts = await self.grants.viewable(actor, conversation_id)
        conversation, shown = await self.view_reads.read(
            conversation_id, partial(_view_rows, conversation_id))
        unreads = await viewer_unreads(actor, [conversation])
        view = shown.copy()  # the shared one's keys in its order; its nested dicts shared
        view["participants_count"] = len(facts.members)
        view["unread_count"] = unreads[conversation_id]
        return view

    async def list_conversations(
        self,
        actor: Actor,
        *,
        limit: int = 20,
        offset: int = 0,
        cursor: str | None = None,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The actor's conversations, newest activity first, and the cursor of the next page."""
        query = Conversation.filter(visible_filter(actor)).distinct()
        if status:
            query = query.filter(status=status)
        if cursor:
            stamp, last_id = _decode_cursor(cursor)
            query = query.filter(Q(updated_at__lt=stamp) | Q(updated_at=stamp, id__lt=last_id))
            offset = 0
        rows = await (
            query.order_by("-updated_at", "-id")
            .offset(offset)
            .limit(limit + 1)
            .select_related("device", "customer")
        )
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(rows) > limit and page else None
        return await self.conversation_views(page, actor), next_cursor

    async def close_conversation(self, actor: Actor, conversation_id: int) -> dict[str, Any]:
        conversation = await visible_conversation(actor, conversation_id)
        if not await can_close(actor, conversation):
            raise forbidden("You may not close this conversation")
        if conversation.status != ConversationStatus.CLOSED:
            async def change() -> Event:
                before = str(conversation.status)
                conversation.status = ConversationStatus.CLOSED
                conversation.closed_at = now()
                await conversation.save(update_fields=["status", "closed_at", "updated_at"])
                # The desk's audit trail (desk.py) records every status change, this one too.
                await ConversationAudit.create(
                    conversation_id=conversation.id, actor_id=actor.user_id,
                    action=AuditAction.STATUS, from_value=before,
                    to_value=str(ConversationStatus.CLOSED), created_at=conversation.closed_at)
                return events.conversation_closed(conversation.id)

            # No more writes to it: grants dropped after the commit, before the event.
            await self._logged_change(conversation.id, change, committed=partial(
                self._changed, conversation_id=conversation.id))
            self._inbox_changed(conversation.id)
        return await self.conversation_view(conversation, actor)

    async def participants(self, actor: Actor, conversation_id: int) -> list[dict[str, Any]]:
        conversation = await visible_conversation(actor, conversation_id)
        rows = await Participant.filter(conversation_id=conversation.id).order_by("id")
        return [participant_dict(p) for p in rows]

    async def mark_read(
        self,
        actor: Actor,
        conversation_id: int,
        *,
        up_to_message_id: int | None = None,
        message_ids: list[int] | None = None,
    ) -> dict[str, Any]:
        """Mark messages from others as read: exactly ``message_ids``, or everything up to
        ``up_to_message_id``, or (neither) everything. The receipts name the messages marked:
        the given ones from others, or those of the range not read before. Ids none of which
        is a message of the conversation are ``not_found``."""
        conversation = await visible_conversation(actor, conversation_id)
        others = Message.filter(conversation_id=conversation.id).exclude(sender_key=actor.key)
        if message_ids is not None:
            named: list[tuple[int, str]] = await Message.filter(
                conversation_id=conversation.id, id__in=message_ids).values_list(
                "id", "sender_key")
            if message_ids and not named:
                raise not_found("Message")  # none is a message of this conversation
            # The reader's own messages are not theirs to read: named, but not marked.
            ids = [message_id for message_id, sender in named if sender != actor.key]
        else:
            pointer = await self._read_pointer(actor, conversation)
            ceiling = Q(id__lte=up_to_message_id) if up_to_message_id is not None else Q()
            already = read_ahead(conversation.id, actor.key, pointer).values("id")
            ids = await int_column(
                others.filter(ceiling, id__gt=pointer)
                .exclude(id__in=Subquery(already))
                .order_by("-id")
                .limit(1000), "id")
        if ids and actor.is_staff and conversation.kind == ConversationKind.SUPPORT:
            # Staff read a support conversation for its customer: a colleague's reply is the
            # customer's to read (its status, receipts and read count tell them), and staff's
            # own unread count holds only the customer's side.
            colleagues = await staff_written(ids)
            ids = [message_id for message_id in ids if message_id not in colleagues]
        ids = sorted(ids)
        read_at = now()

        async def apply() -> Event | None:
            async with in_transaction():
                # The conversation's row first, as a send takes it: no message commits
                # between the count below and the counter it is set against, and every
                # transaction takes the rows of a conversation in the same order.
                locked = await Conversation.filter(id=conversation.id).select_for_update().only(
                    "id", "total_messages", "device_last_read_message_id").first()
                if locked is not None:
                    # An id past the conversation's newest message (another conversation's,
                    # or one not sent yet) reads up to the newest, not the messages to come.
                    newest = await int_column(Message.filter(
                        conversation_id=conversation.id).order_by("-id").limit(1), "id")
                    top = newest[0] if newest else 0
                    if message_ids is not None:
                        floor = 0  # exactly those: the position moves over what is read
                    elif up_to_message_id is not None:
                        floor = min(up_to_message_id, top)
                    else:
                        floor = top
                    await self._record_reads(actor, ids, read_at)
                    await self._advance_pointer(actor, locked, conversation, floor, read_at,
                                                everything=message_ids is None
                                                and up_to_message_id is None)
            return events.read_receipt(conversation.id, actor, ids) if ids else None

        if ids:  # a receipt: logged with the reads, published at its position
            await self._logged_change(conversation.id, apply)
        elif up_to_message_id is not None:
            await apply()
        self._inbox_changed(conversation.id)
        return {
            "success": True,
            "message": "Messages marked as read",
            "conversation_id": conversation.id,
            "message_ids": ids,
            "marked_count": len(ids),
            "read_at": iso(read_at),
            "timestamp": iso(read_at),
        }

    # -- views and inbox updates ------------------------------------------------------------

    async def conversation_view(self, conversation: Conversation, viewer: Actor) -> dict[str, Any]:
        """The canonical conversation as ``viewer`` sees it (their own unread count)."""
        return (await self.conversation_views([conversation], viewer))[0]

    async def conversation_views(
        self, conversations: list[Conversation], viewer: Actor
    ) -> list[dict[str, Any]]:
        """``conversation_view`` of each, in at most four queries whatever their number (a page of a
        list): last messages (two), participant counts, the viewer's unread counts."""
        if not conversations:
            return []
        ids = [c.id for c in conversations]
        lasts = await last_messages(ids)
        counts = dict(await Participant.filter(conversation_id__in=ids, is_active=True)
                      .group_by("conversation_id").annotate(n=Count("id"))
                      .values_list("conversation_id", "n"))
        unreads = await viewer_unreads(viewer, conversations)
        return [conversation_dict(c, last_message=lasts.get(c.id),
                                  participants_count=counts.get(c.id, 0),
                                  unread_count=unreads[c.id])
                for c in conversations]

    async def _publish_conversation_updated(self, conversation_id: int) -> None:
        """Tell the inboxes on this node that show the conversation that it changed, each
        with its own unread count (run by ``inbox_updates``, coalesced: see inbox.py). Only
        the rooms with members here are addressed, and counted for; nobody here, no query.
        Every node does the same for its own (``_inbox_changed``)."""
        facts = await self.grants.conversation(conversation_id)
        rooms = facts.inbox_rooms
        occupancy = self.occupancy
        if occupancy is not None:
            rooms = tuple(room for room in rooms if occupancy.occupied(room))
            if not rooms:
                return
            addressed = [int(room.removeprefix("user:")) for room in rooms
                         if room.startswith("user:")]
            counted = await members_unread(conversation_id, [
                user_id for user_id in addressed if user_id in facts.members])
        else:
            counted = await members_unread(conversation_id)
        fresh = await load_conversation(conversation_id)
        counts = {f"user:{user_id}": unread for user_id, unread in counted.items()}
        if fresh.kind == ConversationKind.SUPPORT:
            counts["staff"] = fresh.staff_unread_count
            if fresh.device is not None:
                device_id = fresh.device.device_id
                counts[f"device:{device_id}"] = fresh.device_unread_count
        last = (await last_messages([conversation_id])).get(conversation_id)
        view = conversation_dict(fresh, last_message=last,
                                 participants_count=len(facts.members), unread_count=0)
        await self.sink.publish(events.conversation_updated(view, counts, rooms),
                                here_only=occupancy is not None)

    # -- read positions ---------------------------------------------------------------------

    async def _read_pointer(self, actor: Actor, conversation: Conversation) -> int:
        if actor.device is not None:
            return conversation.device_last_read_message_id
        if actor.user is None:
            return 0
        row = await Participant.get_or_none(conversation_id=conversation.id, user_id=actor.user.id)
        return row.last_read_message_id if row is not None else 0

    async def _record_reads(self, actor: Actor, ids: list[int], read_at: datetime) -> None:
        if not ids:
            return
        existing = set(
            await int_column(Receipt.filter(message_id__in=ids, reader_key=actor.key),
                             "message_id")
        )
        await Receipt.filter(message_id__in=list(existing), reader_key=actor.key,
                             read_at__isnull=True).update(read_at=read_at)
        await Receipt.bulk_create(
            [Receipt(message_id=i, reader_key=actor.key, delivered_at=read_at, read_at=read_at)
             for i in ids if i not in existing]
        )
        await Message.filter(id__in=ids).exclude(status="read").update(status="read")

    async def _advance_pointer(
        self, actor: Actor, locked: Conversation, conversation: Conversation, floor: int,
        read_at: datetime, *, everything: bool,
    ) -> None:
        """Move the actor's read position to ``floor`` or past it (over what they have read
        one by one) and make their unread count exact, against ``locked`` (the conversation's
        counter, read under its row lock). ``everything``: a read of the whole conversation,
        which clears staff's count of a support conversation rather than counting it."""
        if actor.device is not None:
            pointer, left = await read_position(
                conversation.id, actor.key, max(locked.device_last_read_message_id, floor))
            await Conversation.filter(id=conversation.id).update(
                device_last_read_message_id=pointer, device_unread_count=left)
            return
        if actor.user is None:
            return
        if actor.is_staff and conversation.kind == ConversationKind.SUPPORT:
            await Conversation.filter(id=conversation.id).update(
                staff_unread_count=0 if everything else await staff_unread(conversation.id))
        row = await Participant.get_or_none(conversation_id=conversation.id, user_id=actor.user.id)
        if row is None:
            return
        row.last_read_message_id, left = await read_position(
            conversation.id, actor.key, max(row.last_read_message_id, floor))
        row.last_read_at = read_at
        row.unread_offset = left - locked.total_messages  # unread = counter + offset
        await row.save(update_fields=["last_read_message_id", "last_read_at", "unread_offset"])


async def _view_rows(conversation_id: int) -> tuple[Conversation, dict[str, Any]]:
    """What every viewer's view of one conversation shows alike: its row (with its device
    and customer), and the canonical conversation with its newest message (the viewer's
    figures left at 0, for each viewer to fill in)."""
    conversation = await load_conversation(conversation_id)
    last = (await last_messages([conversation_id])).get(conversation_id)
    return conversation, conversation_dict(conversation, last_message=last,
                                           participants_count=0, unread_count=0)


async def staff_written(message_ids: list[int]) -> set[int]:
    """Which of ``message_ids`` an agent or an admin wrote."""
    written: list[tuple[int, int]] = await Message.filter(
        id__in=message_ids, sender_user_id__not_isnull=True).values_list("id", "sender_user_id")
    staff = set(await int_column(User.filter(
        id__in={user_id for _, user_id in written}, role__in=(Role.AGENT, Role.ADMIN)), "id"))
    return {message_id for message_id, user_id in written if user_id in staff}


async def last_messages(conversation_ids: list[int]) -> dict[int, Message]:
    """Each conversation's newest message with its sending user, by conversation id (none
    for one without): the top of each conversation's ``(conversation_id, id)`` index: in
    one query for one conversation (each inbox update's), in two for a page of them."""
    if len(conversation_ids) == 1:
        row = await Message.filter(conversation_id=conversation_ids[0]).order_by(
            "-id").select_related("sender_user").first()
        return {} if row is None else {conversation_ids[0]: row}
    newest = await Message.filter(conversation_id__in=conversation_ids).group_by(
        "conversation_id").annotate(top=Max("id")).values_list("top", flat=True)
    if not newest:
        return {}
    rows = await Message.filter(id__in=newest).select_related("sender_user")
    return {row.conversation_id: row for row in rows}


def _encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.updated_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, _, ident = base64.urlsafe_b64decode(padded).decode().partition("|")
        moment, last_id = datetime.fromisoformat(stamp), int(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid("Malformed cursor") from exc
    if not valid_id(last_id):  # a 32-bit id column: a larger one must not reach the query
        raise invalid("Malformed cursor")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), last_id
