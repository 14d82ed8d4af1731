"""Canonical events: one builder per event type (published to the ``EventSink``, ports.py).

An event is addressed to rooms: ``conversation:<id>`` (everyone with the conversation open),
``user:<id>`` (every socket of one user), ``device:<id>`` and ``staff`` (every agent and admin
watching the inbox). Dialects translate the canonical payload per door; see backend/realtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from backend.service.actors import Actor
from backend.service.clock import iso_now


def conversation_room(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def device_room(device_id: str) -> str:
    return f"device:{device_id}"


STAFF_ROOM = "staff"

#: The events of a conversation's log (CONTRACT §9): each has a position.
LOGGED = frozenset({"chat_message", "message_edit", "message_delete", "message_reaction",
                    "read_receipt", "message_status_update", "conversation_closed",
                    "member_added", "member_removed",
                    # The desk's changes (assignment, status, priority, title): the logged
                    # form, with a position, to the conversation's members; the inbox form
                    # of the same name (``conversation_updated`` above) has none.
                    "conversation_updated"})
#: Membership events (CONTRACT §10): addressed to the conversation's room and to the room of
#: the user they concern, whose inbox (and sockets outside the conversation) learn of it too.
MEMBER_EVENTS = frozenset({"member_added", "member_removed"})


def logged_rooms(conversation_id: int, name: str, payload: dict[str, Any]) -> tuple[str, ...]:
    """The rooms of a logged event rebuilt from the log (a replay): the conversation's room
    first (where its position is followed), and for a membership event the user's own."""
    room = conversation_room(conversation_id)
    user_id = payload.get("user_id")
    if name in MEMBER_EVENTS and isinstance(user_id, int):
        return (room, user_room(user_id))
    return (room,)


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical event. ``skip_actors`` are actor keys whose sockets must not get it
    (the typist for typing, users who blocked the author); ``origin`` is the connection it
    came from, which is not echoed where its door says so (Socket.IO senders). ``position`` is
    the event's place in its conversation's log (CONTRACT §9), also in the payload beside
    ``conversation_id``; None for what is not logged (typing, presence, inbox updates)."""

    name: str
    payload: dict[str, Any]
    rooms: tuple[str, ...]
    skip_actors: frozenset[str] = field(default_factory=frozenset)
    origin: str | None = None
    position: int | None = None

    def at(self, position: int) -> Event:
        """This event at ``position`` of its conversation's log."""
        return replace(self, position=position, payload={**self.payload, "position": position})


def _actor_fields(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "device_id": actor.device_id}


def chat_message(
    message: dict[str, Any], skip_actors: frozenset[str], origin: str | None = None,
    position: int | None = None,
) -> Event:
    """``position``: the message's place in its conversation's log, once stored (built at it
    directly, as ``Event.at`` would, without a second copy: this is every send's event)."""
    cid = message["conversation_id"]
    payload: dict[str, Any] = {"conversation_id": cid, "message": message}
    if position is not None:
        payload["position"] = position
    return Event(
        "chat_message",
        payload,
        (conversation_room(cid),),
        skip_actors,
        origin,
        position,
    )


def typing_indicator(
    conversation_id: int, actor: Actor, is_typing: bool, skip_actors: frozenset[str]
) -> Event:
    username = actor.user.username if actor.user is not None else None
    return Event(
        "typing_indicator",
        {
            "conversation_id": conversation_id,
            **_actor_fields(actor),
            "user_name": actor.name,
            "username": username or actor.name,
            "is_typing": is_typing,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
        skip_actors | {actor.key},
    )


def read_receipt(conversation_id: int, actor: Actor, message_ids: list[int]) -> Event:
    return Event(
        "read_receipt",
        {
            "conversation_id": conversation_id,
            **_actor_fields(actor),
            "message_ids": message_ids,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
    )


def message_status_update(conversation_id: int, message_id: int, status: str) -> Event:
    return Event(
        "message_status_update",
        {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "status": status,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
    )


def message_reaction(
    conversation_id: int, message_id: int, emoji: str, actor: Actor, action: str,
    skip_actors: frozenset[str] = frozenset(),
) -> Event:
    return Event(
        "message_reaction",
        {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "emoji": emoji,
            **_actor_fields(actor),
            "action": action,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
        skip_actors,
    )


def message_edit(
    conversation_id: int, message_id: int, content: str, edited_at: str | None,
    skip_actors: frozenset[str] = frozenset(),
) -> Event:
    return Event(
        "message_edit",
        {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "content": content,
            "edited_at": edited_at,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
        skip_actors,
    )


def message_delete(conversation_id: int, message_id: int) -> Event:
    return Event(
        "message_delete",
        {"conversation_id": conversation_id, "message_id": message_id, "timestamp": iso_now()},
        (conversation_room(conversation_id),),
    )


def conversation_updated(
    conversation: dict[str, Any], unread_counts: dict[str, int], rooms: tuple[str, ...]
) -> Event:
    """``unread_counts`` maps a viewer key ("user:5", "device:x", "staff") to that viewer's
    unread count; the /conversations dialect puts the viewer's own into ``conversation``."""
    return Event(
        "conversation_updated",
        {
            "conversation_id": conversation["id"],
            "conversation": conversation,
            "unread_counts": unread_counts,
        },
        rooms,
    )


def new_customer_message(message: dict[str, Any]) -> Event:
    return Event(
        "new_customer_message",
        {"conversation_id": message["conversation_id"], "message": message},
        (STAFF_ROOM,),
    )


def presence(
    name: str, conversation_id: int, actor: Actor, total_users: int
) -> Event:
    """``user_joined`` / ``user_left`` with the number of distinct actors now in the room."""
    return Event(
        name,
        {
            "conversation_id": conversation_id,
            **_actor_fields(actor),
            "user_name": actor.name,
            "total_users": total_users,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
    )


def presence_diff(
    conversation_id: int, join_count: int, leave_count: int, total_users: int
) -> Event:
    """A large room's joins and leaves over one window, as counts (docs/realtime.md)."""
    return Event(
        "presence_diff",
        {
            "conversation_id": conversation_id,
            "join_count": join_count,
            "leave_count": leave_count,
            "total_users": total_users,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
    )


def user_status(conversation_id: int, user_id: int, status: str) -> Event:
    return Event(
        "user_status",
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "status": status,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id),),
    )


def conversation_closed(conversation_id: int) -> Event:
    return Event(
        "conversation_closed",
        {"conversation_id": conversation_id, "timestamp": iso_now()},
        (conversation_room(conversation_id),),
    )


def member_added(conversation_id: int, user_id: int, role: str, by: Actor) -> Event:
    """``user_id`` is a member of the group with ``role`` now: added by ``by``, or (role
    ``owner``) handed the ownership of an owner who left."""
    return Event(
        "member_added",
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "role": role,
            "by_user_id": by.user_id,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id), user_room(user_id)),
    )


def member_removed(conversation_id: int, user_id: int, by: Actor, reason: str) -> Event:
    """``user_id`` is no longer a member: ``reason`` is ``removed`` (by ``by``) or ``left``.
    Delivered to the conversation's room, the user's own included, before their sockets are
    taken out of it."""
    return Event(
        "member_removed",
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "by_user_id": by.user_id,
            "reason": reason,
            "timestamp": iso_now(),
        },
        (conversation_room(conversation_id), user_room(user_id)),
    )


def conversation_changed(
    conversation: dict[str, Any], changes: dict[str, dict[str, Any]], actor: Actor
) -> Event:
    """``conversation_updated`` as the conversation's members get it on every door, logged
    (CONTRACT §10): the conversation after a desk change (``unread_count`` left out: it is
    each viewer's own, which the inbox doors carry) and ``changes``, ``{field: {from, to}}``
    for each of ``assigned_agent_id``, ``status``, ``priority``, ``title`` that changed."""
    shown = {k: v for k, v in conversation.items() if k != "unread_count"}
    return Event(
        "conversation_updated",
        {
            "conversation_id": conversation["id"],
            "conversation": shown,
            "changes": changes,
            **_actor_fields(actor),
            "timestamp": iso_now(),
        },
        (conversation_room(conversation["id"]),),
    )
