"""Relations between users: connection requests (seed 004) and blocks."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from backend.service.actors import Actor
from backend.service.base import ServiceBase
from backend.service.clock import iso, now
from backend.service.errors import conflict, forbidden, invalid, not_found
from backend.service.serializers import user_dict
from models import (
    Block,
    Connection,
    ConnectionStatus,
    Conversation,
    ConversationKind,
    Participant,
    User,
    UserFacts,
)


def _require_user(actor: Actor) -> UserFacts:
    if actor.user is None:
        raise forbidden("Only users have connections and blocks")
    return actor.user


async def _other_user(me: UserFacts, user_id: int) -> User:
    if user_id == me.id:
        raise invalid("user_id must name another user")
    other = await User.get_or_none(id=user_id, is_active=True)
    if other is None:
        raise not_found("User")
    return other


class SocialOps(ServiceBase):
    """Mixin of ChatService: connections and blocks."""

    async def request_connection(self, actor: Actor, user_id: int) -> dict[str, Any]:
        me = _require_user(actor)
        other = await _other_user(me, user_id)
        existing = await Connection.get_or_none(
            Q(requester_id=me.id, addressee_id=other.id)
            | Q(requester_id=other.id, addressee_id=me.id)
        )
        if existing is not None:
            raise conflict("A connection between these users already exists")
        try:
            connection = await Connection.create(requester_id=me.id, addressee_id=other.id)
        except IntegrityError as exc:
            raise conflict("A connection between these users already exists") from exc
        return await self._connection_view(connection)

    async def accept_connection(self, actor: Actor, connection_id: int) -> dict[str, Any]:
        """The addressee accepts; the direct conversation of the two users appears."""
        me = _require_user(actor)
        connection = await Connection.get_or_none(id=connection_id)
        if connection is None or me.id not in (
            connection.requester_id,
            connection.addressee_id,
        ):
            raise not_found("Connection")
        if connection.addressee_id != me.id:
            raise forbidden("Only the addressee may accept a connection")
        if connection.status == ConnectionStatus.ACCEPTED:
            return await self._connection_view(connection)
        async with in_transaction():
            connection.status = ConnectionStatus.ACCEPTED
            connection.accepted_at = now()
            await connection.save(update_fields=["status", "accepted_at"])
            conversation = await Conversation.create(
                kind=ConversationKind.DIRECT,
                initiator_id=connection.requester_id,
                connection_id=connection.id,
            )
            await Participant.bulk_create([
                Participant(conversation_id=conversation.id, user_id=uid, role="user")
                for uid in (connection.requester_id, connection.addressee_id)
            ])
        self._inbox_changed(conversation.id)
        return await self._connection_view(connection)

    async def list_connections(self, actor: Actor) -> list[dict[str, Any]]:
        me = _require_user(actor)
        rows = await Connection.filter(
            Q(requester_id=me.id) | Q(addressee_id=me.id)
        ).order_by("-id")
        return [await self._connection_view(c) for c in rows]

    async def _connection_view(self, connection: Connection) -> dict[str, Any]:
        await connection.fetch_related("requester", "addressee")
        conversation = await Conversation.get_or_none(connection_id=connection.id)
        return {
            "id": connection.id,
            "requester": user_dict(connection.requester),
            "addressee": user_dict(connection.addressee),
            "requester_id": connection.requester_id,
            "addressee_id": connection.addressee_id,
            "status": str(connection.status),
            "created_at": iso(connection.created_at),
            "accepted_at": iso(connection.accepted_at),
            "conversation_id": conversation.id if conversation else None,
        }

    async def block(self, actor: Actor, user_id: int) -> dict[str, Any]:
        me = _require_user(actor)
        other = await _other_user(me, user_id)
        await Block.get_or_create(blocker_id=me.id, blocked_id=other.id)
        # They can no longer write to me, and my history pages leave them out.
        await self._changed(blocked_user_id=other.id, blocker_user_id=me.id)
        return {"success": True, "message": "User blocked", "user_id": other.id}

    async def unblock(self, actor: Actor, user_id: int) -> dict[str, Any]:
        me = _require_user(actor)
        other = await _other_user(me, user_id)
        await Block.filter(blocker_id=me.id, blocked_id=other.id).delete()
        await self._changed(blocked_user_id=other.id, blocker_user_id=me.id)
        return {"success": True, "message": "User unblocked", "user_id": other.id}
