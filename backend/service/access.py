"""Who may see and write which conversation (CONTRACT section 2), decided here only."""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.expressions import Q

from backend.service.actors import Actor
from backend.service.errors import ChatError, forbidden, not_found, valid_id
from backend.storage.columns import int_column
from models import (
    Block,
    Conversation,
    ConversationKind,
    ConversationStatus,
    Participant,
    Role,
    User,
)


async def load_conversation(conversation_id: int) -> Conversation:
    if not valid_id(conversation_id):
        raise not_found("Conversation")
    conversation = await Conversation.get_or_none(id=conversation_id).select_related(
        "device", "customer"
    )
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


async def still_staff(user: User) -> bool:
    """Whether ``user`` is staff now. A socket's user was loaded when it connected: a role
    taken away since must not keep reaching every support conversation through it."""
    return await User.exists(id=user.id, role__in=(Role.AGENT, Role.ADMIN), is_active=True)


async def ensure_admin(actor: Actor) -> None:
    """Admins only (outgoing webhooks), by the role the database holds now."""
    if actor.user is None or not await User.exists(id=actor.user.id, role=Role.ADMIN,
                                                   is_active=True):
        raise forbidden("Only admins may do this")


async def ensure_staff(actor: Actor) -> None:
    """Agents and admins only (the outbox's deliveries), by the role held now."""
    if actor.user is None or not await still_staff(actor.user):
        raise forbidden("Only staff may do this")


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


async def blockers_of(user_id: int) -> frozenset[int]:
    """Ids of the users who blocked ``user_id``: they get nothing from them, and in a direct
    conversation ``user_id`` cannot write to them."""
    return frozenset(await int_column(Block.filter(blocked_id=user_id), "blocker_id"))


async def blocked_by(user_id: int) -> list[int]:
    """Ids of the users ``user_id`` blocked, whose messages they do not see."""
    return await int_column(Block.filter(blocker_id=user_id), "blocked_id")
