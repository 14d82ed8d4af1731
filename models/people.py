"""Who can take part in a conversation: users, anonymous mobile devices, outside customers."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    USER = "user"
    AGENT = "agent"
    ADMIN = "admin"


class User(Model):
    """A person with an account. Agents and admins are staff."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    username = fields.CharField(max_length=150, unique=True)
    password_hash = fields.CharField(max_length=255)
    first_name = fields.CharField(max_length=150, default="")
    last_name = fields.CharField(max_length=150, default="")
    avatar_url = fields.CharField(max_length=1024, default="")
    role = fields.CharEnumField(Role, max_length=16, default=Role.USER)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    #: Tokens without a session (issued before sessions existed) issued up to this moment are
    #: refused: set by a logout of all sessions, or of such a token.
    legacy_tokens_revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "users"

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.AGENT, Role.ADMIN)

    @property
    def display_name(self) -> str:
        """'first last', or the username when both are empty."""
        return display_name(self.first_name, self.last_name, self.username)


def display_name(first_name: str, last_name: str, username: str) -> str:
    """A user's name as shown: 'first last', or the username when both are empty."""
    return f"{first_name} {last_name}".strip() or username


class AuthSession(Model):
    """A login: the access and refresh tokens issued together, and those refreshed from them,
    carry its id (claim ``sid``). A logout revokes it: its tokens are refused from then on."""

    id = fields.CharField(max_length=32, primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="auth_sessions", on_delete=fields.CASCADE,
        db_index=True)
    user_id: int
    created_at = fields.DatetimeField(auto_now_add=True)
    refreshed_at = fields.DatetimeField(null=True)
    #: Indexed (migration 0011): each node asks which sessions were revoked lately.
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "auth_sessions"


class MobileSession(Model):
    """An anonymous mobile device (seed 000), known by its unguessable device id."""

    id = fields.IntField(primary_key=True)
    device_id = fields.CharField(max_length=128, unique=True)
    platform = fields.CharField(max_length=32, default="")
    app_version = fields.CharField(max_length=32, default="")
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "mobile_sessions"


class Customer(Model):
    """Someone who writes from an outside platform (Telegram, Instagram), never logging in."""

    id = fields.IntField(primary_key=True)
    platform = fields.CharField(max_length=32)
    external_id = fields.CharField(max_length=128)
    first_name = fields.CharField(max_length=150, default="")
    last_name = fields.CharField(max_length=150, default="")
    username = fields.CharField(max_length=150, default="")
    profile_picture = fields.CharField(max_length=1024, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "customers"
        unique_together = (("platform", "external_id"),)

    @property
    def display_name(self) -> str:
        full = f"{self.first_name} {self.last_name}".strip()
        return full or self.username or f"{self.platform} {self.external_id}"
