"""Push notifications to users with no live socket: their devices' subscriptions, and the
conversations they muted."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.conversations import Conversation
    from models.people import User


class PushKind(StrEnum):
    """A browser's Web Push subscription, or a mobile app's FCM registration token."""

    WEBPUSH = "webpush"
    FCM = "fcm"


class PushSubscription(Model):
    """One device of a user. ``key`` is a digest of the endpoint (Web Push) or the token
    (FCM): the same device subscribing again finds its row."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="push_subscriptions", on_delete=fields.CASCADE,
        db_index=True)
    user_id: int
    kind = fields.CharEnumField(PushKind, max_length=16)
    key = fields.CharField(max_length=64, unique=True)
    endpoint = fields.CharField(max_length=2048, default="")
    p256dh = fields.CharField(max_length=255, default="")
    auth = fields.CharField(max_length=255, default="")
    token = fields.CharField(max_length=4096, default="")
    #: The login session it was made in: a logout of that session removes it.
    session_id = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "push_subscriptions"


class ConversationMute(Model):
    """A user wants no push notification from one conversation."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="mutes", on_delete=fields.CASCADE)
    user_id: int
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="mutes", on_delete=fields.CASCADE)
    conversation_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_mutes"
        unique_together = (("user", "conversation"),)
