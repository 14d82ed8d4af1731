"""Group membership (CONTRACT section 10): add members, remove one, leave.

Who may do what is decided in ``access.py`` (``may_add``, ``may_remove``, ``next_owner``).
Each change is logged with its events in one transaction (``member_added`` /
``member_removed``, at consecutive positions) with the conversation's row locked first, as a
send takes it; after the commit the send path's grants are dropped on every node (the
``service_invalidate`` control, before the events), then the events are published and the
inboxes told. The realtime layer takes a removed user's sockets out of the conversation
when it delivers their ``member_removed`` (backend/realtime/hub.py): in position order, on
every node, also when the event reaches a node through a replay of the log.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from backend.service import events
from backend.service.access import (
    GroupRole,
    ensure_group,
    ensure_open,
    may_add,
    may_remove,
    next_owner,
    visible_conversation,
)
from backend.service.actors import Actor
from backend.service.clock import now
from backend.service.errors import ChatError, forbidden, invalid, not_found, valid_id
from backend.service.events import Event
from backend.service.resume import LogOps
from backend.service.serializers import participant_dict
from backend.storage.columns import int_column
from models import Conversation, Message, Participant, User

#: The most user ids one call may add.
MAX_ADD_PER_CALL = 500


def _user_id(actor: Actor) -> int:
    if actor.user is None:
        raise forbidden("Only users take part in groups")
    return actor.user.id


def group_full(cap: int) -> ChatError:
    """Adding would take the group past ``MAX_GROUP_MEMBERS`` active members (409)."""
    return ChatError("group_full", f"A group has at most {cap} members", 409)


class MemberOps(LogOps):
    """Mixin of ChatService: who is in a group."""

    async def add_members(self, actor: Actor, conversation_id: int, user_ids: Any,
                          role: Any = GroupRole.MEMBER) -> list[dict[str, Any]]:
        """Add ``user_ids`` (at most ``MAX_ADD_PER_CALL``) to the group with ``role``
        (``member`` or ``admin``). Users already active in it are left as they are (no
        event); the rows of every user named are returned, as they are now."""
        ids = _user_ids(user_ids)
        if role not in (GroupRole.MEMBER, GroupRole.ADMIN):
            raise invalid("role must be 'member' or 'admin'")
        role = GroupRole(role)
        conversation = await visible_conversation(actor, conversation_id)
        ensure_group(conversation)  # before the actor's kind: a device's are support ones
        me = _user_id(actor)
        ensure_open(conversation)
        found = set(await int_column(User.filter(id__in=ids, is_active=True), "id"))
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(str(i) for i in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise ChatError("not_found", f"Users not found or inactive: {shown}{more}", 404)
        cap = self.limits.max_group_members
        cid = conversation.id

        async def change() -> list[Event]:
            mine = await _active_row(cid, me)
            if mine is None or not may_add(mine.role, role):
                raise forbidden(f"You may not add {role}s to this group")
            rows = {p.user_id: p for p in await Participant.filter(
                conversation_id=cid, user_id__in=ids)}
            new = [i for i in ids if i not in rows or not rows[i].is_active]
            if not new:
                return []
            active = await Participant.filter(conversation_id=cid, is_active=True).count()
            if active + len(new) > cap:
                raise group_full(cap)
            # Nothing of the history is unread to someone added (the row is locked: no
            # message commits meanwhile, see unread.py).
            total = await int_column(Conversation.filter(id=cid), "total_messages")
            newest = await int_column(Message.filter(conversation_id=cid).order_by("-id")
                                      .limit(1), "id")
            fields = {"is_active": True, "role": role, "joined_at": now(),
                      "unread_offset": -(total[0] if total else 0),
                      "last_read_message_id": newest[0] if newest else 0}
            back = [rows[i].id for i in new if i in rows]
            if back:
                await Participant.filter(id__in=back).update(**fields)
            await Participant.bulk_create([Participant(conversation_id=cid, user_id=i, **fields)
                                           for i in new if i not in rows])
            return [events.member_added(cid, i, role, actor) for i in new]

        added = await self._logged_changes(cid, change, committed=partial(
            self._changed, conversation_id=cid))
        if added:
            self._inbox_changed(cid)
        rows = await Participant.filter(conversation_id=cid, user_id__in=ids).order_by("id")
        return [participant_dict(p) for p in rows]

    async def remove_member(self, actor: Actor, conversation_id: int,
                            user_id: int) -> dict[str, Any]:
        """Take ``user_id`` out of the group (the owner removes admins and members, an admin
        members). Naming oneself is leaving."""
        conversation = await visible_conversation(actor, conversation_id)
        ensure_group(conversation)
        me = _user_id(actor)
        if user_id == me:
            return await self.leave_conversation(actor, conversation_id)
        if not valid_id(user_id):
            raise not_found("Member")
        cid = conversation.id

        async def change() -> list[Event]:
            mine = await _active_row(cid, me)
            if mine is None:
                raise forbidden("You are not a participant of this conversation")
            target = await _active_row(cid, user_id)
            if target is None:
                raise not_found("Member")
            if not may_remove(mine.role, target.role):
                raise forbidden(f"A group's {mine.role} may not remove its {target.role}")
            target.is_active = False
            await target.save(update_fields=["is_active"])
            return [events.member_removed(cid, user_id, actor, "removed")]

        await self._logged_changes(cid, change, committed=partial(
            self._changed, conversation_id=cid))
        self._inbox_changed(cid)
        return {"success": True, "message": "Member removed", "conversation_id": cid,
                "user_id": user_id}

    async def leave_conversation(self, actor: Actor, conversation_id: int) -> dict[str, Any]:
        """The actor leaves the group. An owner who leaves hands the group to the
        longest-standing admin, else member (``access.next_owner``; ``member_added`` with
        role ``owner`` says so)."""
        conversation = await visible_conversation(actor, conversation_id)
        ensure_group(conversation)
        me = _user_id(actor)
        cid = conversation.id

        async def change() -> list[Event]:
            mine = await _active_row(cid, me)
            if mine is None:
                raise forbidden("You are not a participant of this conversation")
            mine.is_active = False
            await mine.save(update_fields=["is_active"])
            made = [events.member_removed(cid, me, actor, "left")]
            if mine.role == GroupRole.OWNER:
                # The longest-standing of each role is a candidate; access.py chooses.
                heir = next_owner([p for p in [
                    await Participant.filter(conversation_id=cid, is_active=True, role=r)
                    .order_by("joined_at", "id").first()
                    for r in (GroupRole.ADMIN, GroupRole.MEMBER)] if p is not None])
                if heir is not None:
                    heir.role = GroupRole.OWNER
                    await heir.save(update_fields=["role"])
                    made.append(events.member_added(cid, heir.user_id, GroupRole.OWNER,
                                                    actor))
            return made

        await self._logged_changes(cid, change, committed=partial(
            self._changed, conversation_id=cid))
        self._inbox_changed(cid)
        return {"success": True, "message": "Left the conversation", "conversation_id": cid,
                "user_id": me}


def _user_ids(value: Any) -> list[int]:
    """The ids of an add: a non-empty list of ids, at most ``MAX_ADD_PER_CALL``, in order,
    each once."""
    if not isinstance(value, list) or not value:
        raise invalid("user_ids must be a non-empty list of user ids")
    if len(value) > MAX_ADD_PER_CALL:
        raise invalid(f"At most {MAX_ADD_PER_CALL} user ids per call (got {len(value)})")
    if not all(valid_id(i) for i in value):
        raise invalid("user_ids must hold user ids (positive integers)")
    return list(dict.fromkeys(value))


async def _active_row(conversation_id: int, user_id: int) -> Participant | None:
    return await Participant.get_or_none(conversation_id=conversation_id, user_id=user_id,
                                         is_active=True)
