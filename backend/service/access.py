"""Who may see and write which conversation (CONTRACT section 2), decided here only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from tortoise.expressions import Q

from backend.service.actors import Actor
from backend.service.errors import ChatError, forbidden, invalid, not_found, valid_id
from backend.storage.lookups import blocked_ids, conversation_of
from models import (
    Conversation,
    ConversationKind,
    ConversationStatus,
    Participant,
    Role,
    Upload,
    UploadState,
    User,
    UserFacts,
)


async def load_conversation(conversation_id: int) -> Conversation:
    if not valid_id(conversation_id):
        raise not_found("Conversation")
    conversation = await conversation_of(conversation_id)  # with its device and customer
    if conversation is None:
        raise not_found("Conversation")
    return conversation


async def can_view(
    actor: Actor, conversation: Conversation, members: frozenset[int] | None = None
) -> bool:
    """Whether ``actor`` may see ``conversation``. ``members`` (user ids of the active
    participants) is given when the caller holds them already (the send path's cache,
    backend/service/grants.py); otherwise membership is asked of the database."""
    if actor.user is None:
        if actor.device is not None:
            return conversation.device_id == actor.device.id
        if actor.customer is not None:
            return conversation.customer_id == actor.customer.id
        return True  # the system actor
    user = actor.user
    support = conversation.kind == ConversationKind.SUPPORT
    if support and (
        conversation.initiator_id == user.id
        or conversation.assigned_agent_id == user.id
    ):
        return True
    if members is not None and user.id in members:
        return True
    if support and user.is_staff and await still_staff(user):
        return True
    if members is not None:
        return False
    return await Participant.exists(
        conversation_id=conversation.id, user_id=user.id, is_active=True
    )


async def still_staff(user: UserFacts) -> bool:
    """Whether ``user`` is staff now. A socket's user was loaded when it connected: a role
    taken away since must not keep reaching every support conversation through it."""
    return await User.exists(id=user.id, role__in=(Role.AGENT, Role.ADMIN), is_active=True)


async def ensure_admin(actor: Actor) -> None:
    """Admins only (outgoing webhooks), by the role the database holds now."""
    if actor.user is None or not await User.exists(id=actor.user.id, role=Role.ADMIN,
                                                   is_active=True):
        raise forbidden("Only admins may do this")


async def visible_conversation(actor: Actor, conversation_id: int) -> Conversation:
    """The conversation if ``actor`` may see it; 404 if it does not exist, 403 otherwise."""
    conversation = await load_conversation(conversation_id)
    if not await can_view(actor, conversation):
        raise forbidden("You are not a participant of this conversation")
    return conversation


def ensure_unblocked(actor: Actor, conversation: Conversation, others: Iterable[int],
                     blockers: frozenset[int]) -> None:
    """In a direct conversation, a user cannot write to one who blocked them. ``others``: the
    other participants' user ids; ``blockers``: the users who blocked the actor."""
    if actor.user is not None and conversation.kind == ConversationKind.DIRECT and (
        not blockers.isdisjoint(others)
    ):
        raise forbidden("You cannot write to a user who blocked you")


def ensure_open(conversation: Conversation) -> None:
    if conversation.status == ConversationStatus.CLOSED:
        raise ChatError("conversation_closed", "Conversation is closed", 409)


async def can_close(actor: Actor, conversation: Conversation) -> bool:
    if actor.user is None:
        return await can_view(actor, conversation)  # a device may close its own ticket
    if actor.user.is_staff:
        return True
    if conversation.kind == ConversationKind.GROUP:
        # Its owner now: the creator, or whom an owner who left handed the group to.
        return await group_role(actor, conversation) == GroupRole.OWNER
    if conversation.initiator_id == actor.user.id:
        return True
    return conversation.kind == ConversationKind.DIRECT and await can_view(actor, conversation)


def visible_filter(actor: Actor) -> Q:
    """A filter on Conversation selecting everything ``actor`` may see."""
    if actor.user is None:
        if actor.device is not None:
            return Q(device_id=actor.device.id)
        if actor.customer is not None:
            return Q(customer_id=actor.customer.id)
        return Q()
    user = actor.user
    mine = Q(participants__user_id=user.id, participants__is_active=True)
    if user.role in (Role.AGENT, Role.ADMIN):
        return mine | Q(kind=ConversationKind.SUPPORT)
    return mine | Q(initiator_id=user.id, kind=ConversationKind.SUPPORT)


async def ensure_upload_visible(actor: Actor, upload: Upload) -> None:
    """An upload is its uploader's alone until a message names it; from then on, whoever may
    see that message's conversation may have it (the uploader too, as long as they may). A
    deleted one, and one of someone else not attached yet, does not exist for anyone (404);
    one attached in a conversation the actor may not see is 403."""
    if upload.state == UploadState.ATTACHED and upload.conversation_id is not None:
        await visible_conversation(actor, upload.conversation_id)
        return
    if upload.state in (UploadState.READY, UploadState.RECEIVING) and (
        upload.owner_key == actor.key
    ):
        return
    raise not_found("Upload")


async def blocked_by(user_id: int) -> list[int]:
    """Ids of the users ``user_id`` blocked, whose messages they do not see."""
    return await blocked_ids(user_id)


# -- group membership (CONTRACT section 10) -------------------------------------------------


class GroupRole(StrEnum):
    """A participant's role in a group conversation (``Participant.role``)."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


#: The roles a participant may be added with (``owner`` is only handed on, see ``next_owner``).
ADDABLE_ROLES = frozenset({GroupRole.ADMIN, GroupRole.MEMBER})


def ensure_group(conversation: Conversation) -> None:
    """Members are added, removed and leave in group conversations only: a direct
    conversation's two people and a support conversation's parties are fixed when it is made
    (409 ``not_a_group``)."""
    if conversation.kind != ConversationKind.GROUP:
        raise ChatError("not_a_group",
                        "Members are added and removed in group conversations only", 409)


def may_add(actor_role: str, role: str) -> bool:
    """Whether a participant with ``actor_role`` may add members with ``role``: the owner
    adds admins and members, an admin adds members, a member adds nobody."""
    if actor_role == GroupRole.OWNER:
        return role in ADDABLE_ROLES
    return actor_role == GroupRole.ADMIN and role == GroupRole.MEMBER


def may_remove(actor_role: str, target_role: str) -> bool:
    """Whether a participant with ``actor_role`` may remove one with ``target_role``: the
    owner removes admins and members, an admin removes members; nobody removes the owner
    (an owner leaves instead, handing the group on). Anyone may leave. A role other than
    these (an agent assigned at creation) counts as a member's."""
    if actor_role == GroupRole.OWNER:
        return target_role != GroupRole.OWNER
    return actor_role == GroupRole.ADMIN and target_role not in (GroupRole.OWNER,
                                                                 GroupRole.ADMIN)


def next_owner(candidates: Sequence[Participant]) -> Participant | None:
    """Who becomes the owner when the owner leaves, of the active participants left (or of
    the longest-standing of each role): the longest-standing admin, else the longest-standing
    member (earliest ``joined_at``, then the lowest row id); None when no admin or member is
    left (the group then has no owner)."""
    eligible = [p for p in candidates if p.role in (GroupRole.ADMIN, GroupRole.MEMBER)]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (p.role != GroupRole.ADMIN, p.joined_at, p.id))


# -- the support desk (backend/service/desk.py) ----------------------------------------------


async def ensure_staff(actor: Actor, action: str = "use the support desk") -> None:
    """Agents and admins only, as they are now (``still_staff``): 403 otherwise, saying
    that only they may do ``action``."""
    if actor.user is None or not actor.user.is_staff or not await still_staff(actor.user):
        raise forbidden(f"Only agents and admins may {action}")


def ensure_support(conversation: Conversation) -> None:
    """Assignment and seed 001's statuses belong to support conversations: 409 otherwise."""
    if conversation.kind != ConversationKind.SUPPORT:
        raise ChatError("not_support",
                        "Only support conversations are assigned or given a desk status", 409)


async def group_role(actor: Actor, conversation: Conversation) -> str | None:
    """The actor's role in a group (``owner``, ``admin``, ``member``), None when not in it."""
    if actor.user is None or conversation.kind != ConversationKind.GROUP:
        return None
    row = await Participant.get_or_none(conversation_id=conversation.id, user_id=actor.user.id,
                                        is_active=True)
    return None if row is None else row.role


async def ensure_can_reopen(actor: Actor, conversation: Conversation) -> None:
    """Staff reopen support conversations and the groups they see (CONTRACT §10: "staff, or a
    group's owner"); a group's owner reopens the group."""
    if conversation.kind == ConversationKind.GROUP:
        if actor.is_staff or await group_role(actor, conversation) == "owner":
            return
        raise forbidden("Only the group's owner or staff may reopen it")
    if conversation.kind == ConversationKind.SUPPORT:
        await ensure_staff(actor, "reopen a support conversation")
        return
    raise forbidden("A direct conversation is not reopened")


async def ensure_can_edit(actor: Actor, conversation: Conversation, *, priority: bool) -> None:
    """Who edits a conversation's title and priority: staff for a support conversation; a
    group's owner or admin for its title (a group has no priority: 422)."""
    if conversation.kind == ConversationKind.SUPPORT:
        await ensure_staff(actor, "edit a support conversation")
        return
    if conversation.kind == ConversationKind.GROUP:
        if await group_role(actor, conversation) not in ("owner", "admin"):
            raise forbidden("Only the group's owner or admins may edit it")
        if priority:
            raise invalid("priority applies to support conversations only")
        return
    raise forbidden("A direct conversation has no title to edit")
