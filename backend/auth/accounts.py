"""Accounts and credentials: users, tokens, mobile devices; resolving a credential to an Actor."""

from __future__ import annotations

import re
import secrets
from typing import Any

from tortoise.exceptions import IntegrityError

from backend.auth.passwords import hash_password, verify_password
from backend.auth.sessions import Sessions
from backend.auth.tokens import InvalidToken, decode_claims, issue_pair
from backend.service.actors import Actor
from backend.service.errors import ChatError, conflict, invalid, not_found, unauthorized
from backend.service.grants import Grants
from backend.service.serializers import user_dict
from backend.settings import Settings
from backend.storage.lookups import token_user
from models import MobileSession, Role, User, UserFacts

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class CredentialMissing(ChatError):
    def __init__(self, what: str) -> None:
        super().__init__("credential_missing", f"{what} is required", 401)


class CredentialInvalid(ChatError):
    def __init__(self, message: str) -> None:
        super().__init__("credential_invalid", message, 401)


def token_response(settings: Settings, user: User, session_id: str) -> dict[str, Any]:
    """The body of a login, a registration or a refresh: a token pair of ``session_id``."""
    pair = issue_pair(settings, user.id, session_id)
    return {
        "user": user_dict(user),
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
    }


async def create_user(
    email: str,
    password: str,
    *,
    role: Role = Role.USER,
    username: str | None = None,
    first_name: str = "",
    last_name: str = "",
) -> User:
    """Create an account; 409 when the email or username is taken."""
    email = email.strip().lower()
    username = (username or email.split("@", 1)[0]).strip()
    if await User.exists(email=email):
        raise conflict("A user with this email already exists")
    if await User.exists(username=username):
        if username != email.split("@", 1)[0]:
            raise conflict("A user with this username already exists")
        username = f"{username}-{secrets.token_hex(3)}"
    try:
        return await User.create(
            email=email,
            username=username,
            password_hash=hash_password(password),
            first_name=first_name,
            last_name=last_name,
            role=role,
        )
    except IntegrityError as exc:
        raise conflict("A user with this email or username already exists") from exc


async def login(email: str, password: str) -> User:
    user = await User.get_or_none(email=email.strip().lower())
    if not verify_password(password, user.password_hash if user else None) or user is None:
        raise unauthorized("Invalid email or password")
    if not user.is_active:
        raise unauthorized("Account is inactive")
    return user


async def deactivate_user(sessions: Sessions, email: str) -> User:
    """Deactivate the user of ``email`` and revoke every session of theirs: refused from now on
    (REST at once; sockets on every node at once through ``sessions``' control, or at the
    nodes' next session check when it runs elsewhere: the command line)."""
    user = await User.get_or_none(email=email.strip().lower())
    if user is None:
        raise not_found("User")
    user.is_active = False
    await user.save(update_fields=["is_active"])
    await sessions.revoke(user.id, None)
    return user


async def actor_from_token(settings: Settings, sessions: Sessions, token: str | None,
                           grants: Grants | None = None) -> Actor:
    """The active user an access token of a live session names, with the session; raises
    CredentialMissing / CredentialInvalid otherwise. One statement reads the user and what
    this node does not hold of the rest: the token's session (``Sessions.to_read``), and
    with ``grants`` (a connect that reads the user's history next) the user's blocks, kept
    there."""
    if not token:
        raise CredentialMissing("An access token")
    try:
        claims = decode_claims(settings, token, "access")
    except InvalidToken as exc:
        raise CredentialInvalid(f"Invalid token: {exc}") from exc
    session_id = claims.session_id if sessions.to_read(claims) else None
    blocks = grants is not None and not grants.holds_blocks(claims.user_id)
    heard, generation = sessions.heard, grants.generation if grants is not None else 0
    read = await token_user(claims.user_id, session_id, blocks)
    user = read.facts
    if user is None:
        raise CredentialInvalid("The token's user does not exist or is inactive")
    if grants is not None and read.blocks is not None:
        grants.keep_blocks(user.id, *read.blocks, generation)
    if session_id is not None:
        live = sessions.learned(user.id, session_id, read.session, heard)
    else:
        live = await sessions.is_live(user, claims)  # held, or on the user's row: no read
    if not live:
        raise CredentialInvalid("The token's session was logged out")
    return Actor.of_user(user, claims.session_id)


async def refresh(settings: Settings, sessions: Sessions, refresh_token: str) -> dict[str, Any]:
    """A new token pair of a refresh token's session (401 when it was logged out)."""
    try:
        claims = decode_claims(settings, refresh_token, "refresh")
    except InvalidToken as exc:
        raise unauthorized(f"Invalid refresh token: {exc}") from exc
    user = await User.get_or_none(id=claims.user_id)
    if user is None or not user.is_active:
        raise unauthorized("The token's user does not exist or is inactive")
    session_id = await sessions.refresh(user, claims)
    if session_id is None:
        raise unauthorized("The refresh token's session was logged out")
    return token_response(settings, user, session_id)


async def logout(settings: Settings, sessions: Sessions, actor: Actor,
                 refresh_token: str | None, everywhere: bool) -> str | None:
    """Revoke the session of ``refresh_token`` (or else of the access token ``actor`` came
    with), or with ``everywhere`` every session of the user. Returns the session revoked, None
    for all of them."""
    user = actor.user
    assert user is not None
    session_id = None if everywhere else actor.session_id
    if refresh_token is not None:
        try:
            claims = decode_claims(settings, refresh_token, "refresh")
        except InvalidToken as exc:
            raise unauthorized(f"Invalid refresh token: {exc}") from exc
        if claims.user_id != user.id:
            raise ChatError("forbidden", "The refresh token is another user's", 403)
        if not everywhere:
            session_id = claims.session_id
    await sessions.revoke(user.id, session_id)
    return session_id


async def set_role(admin: UserFacts, user_id: int, role: str) -> tuple[User, Role]:
    """Give ``user_id`` a new role; returns the user and the role they had."""
    if admin.role != Role.ADMIN:
        raise ChatError("forbidden", "Only admins may change roles", 403)
    try:
        new_role = Role(role)
    except ValueError as exc:
        raise invalid("role must be one of user, agent, admin") from exc
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise not_found("User")
    previous = Role(user.role)
    user.role = new_role
    await user.save(update_fields=["role"])
    return user, previous


async def register_device(
    device_id: str | None, platform: str = "", app_version: str = ""
) -> MobileSession:
    """Register a device (again: the same one, while it is active); without an id the server
    issues an unguessable one. A deactivated id stays so (409): whoever learns it later must
    not get the device's conversations back by registering it."""
    if device_id is None:
        device_id = secrets.token_urlsafe(24)  # 192 random bits
    elif not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise invalid("device_id must be 8-128 characters of A-Z, a-z, 0-9, '_' or '-'")
    device, created = await MobileSession.get_or_create(
        device_id=device_id, defaults={"platform": platform, "app_version": app_version}
    )
    if not created:
        if not device.is_active:
            raise conflict("This device_id was deactivated: register without one for a new "
                           "device")
        device.platform = platform or device.platform
        device.app_version = app_version or device.app_version
        await device.save(update_fields=["platform", "app_version"])
    return device


async def device_actor(device_id: str | None) -> Actor:
    """The active device named by ``device_id``; CredentialMissing / CredentialInvalid."""
    if not device_id:
        raise CredentialMissing("device_id")
    if not DEVICE_ID_PATTERN.fullmatch(device_id):  # names no device: no need to ask
        raise CredentialInvalid("Invalid or inactive device_id")
    device = await MobileSession.get_or_none(device_id=device_id)
    if device is None or not device.is_active:
        raise CredentialInvalid("Invalid or inactive device_id")
    return Actor.of_device(device)


async def deactivate_device(device_id: str) -> MobileSession:
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise not_found("Device")
    device = await MobileSession.get_or_none(device_id=device_id)
    if device is None:
        raise not_found("Device")
    device.is_active = False
    await device.save(update_fields=["is_active"])
    return device
