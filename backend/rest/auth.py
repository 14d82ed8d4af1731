"""``/api/v1/auth/...`` and mobile device registration (CONTRACT section 1)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from backend.auth import accounts
from backend.auth.sessions import Sessions
from backend.rest.api import Api, Call
from backend.rest.schemas import UserOut
from backend.service.limits import KeyedBuckets
from backend.service.serializers import user_dict
from backend.settings import Limits
from models import Role


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)
    username: str | None = Field(default=None, min_length=1, max_length=150,
                                 pattern=r"^[\w.@+-]+$")


class LoginBody(BaseModel):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1)


class LogoutBody(BaseModel):
    refresh_token: str | None = Field(default=None, min_length=1)
    #: Strict: a string or a number is a 422, never a logout of every session by accident.
    all: bool = Field(default=False, strict=True)


class LogoutOut(BaseModel):
    ok: bool
    #: Sessions revoked: "one", or "all" of the user's.
    revoked: str


class RoleBody(BaseModel):
    role: str


class DeviceBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    device_id: str | None = None
    platform: str = Field(default="", max_length=32)
    app_version: str = Field(default="", max_length=32)


class TokenOut(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class DeviceOut(BaseModel):
    device_id: str
    is_active: bool
    created_at: str | None


def _device(device: Any) -> dict[str, Any]:
    from backend.service.clock import iso

    return {"device_id": device.device_id, "is_active": device.is_active,
            "platform": device.platform, "app_version": device.app_version,
            "created_at": iso(device.created_at)}


class AuthLimits:
    """Per-node rate limits of the routes anyone may call: logging in (by client address and by
    email, so neither many accounts from one address nor one account from many addresses can be
    guessed at speed) and making accounts or devices (by client address)."""

    def __init__(self, limits: Limits) -> None:
        per_minute = limits.login_attempts_per_minute
        self.login_by_email = KeyedBuckets(per_minute / 60, per_minute, "login attempts")
        # An office or a proxy puts many people behind one address.
        per_minute *= 6
        self.login_by_address = KeyedBuckets(per_minute / 60, per_minute, "login attempts")
        per_hour = limits.registrations_per_hour
        self.registrations = KeyedBuckets(per_hour / 3600, per_hour, "registrations")


def _limits(call: Call) -> AuthLimits:
    limits: AuthLimits = call.request.app.state.auth_limits
    return limits


def _sessions(call: Call) -> Sessions:
    sessions: Sessions = call.request.app.state.sessions
    return sessions


def _address(call: Call) -> str:
    client = call.request.client
    return client.host if client is not None else "unknown"


def register(api: Api) -> None:
    @api.route("POST", "/api/v1/auth/register", summary="Create an account (role user)",
               body=RegisterBody, response=TokenOut, status=201, auth="none", tags=("auth",))
    async def register_user(call: Call) -> Any:
        _limits(call).registrations.take(_address(call))
        body: RegisterBody = call.body
        user = await accounts.create_user(
            body.email, body.password, username=body.username,
            first_name=body.first_name, last_name=body.last_name,
        )
        session_id = await _sessions(call).open(user)
        return accounts.token_response(call.settings, user, session_id)

    @api.route("POST", "/api/v1/auth/login", summary="Log in with email and password",
               body=LoginBody, response=TokenOut, auth="none", tags=("auth",))
    async def login(call: Call) -> Any:
        limits = _limits(call)
        limits.login_by_address.take(_address(call))
        limits.login_by_email.take(call.body.email.strip().lower())
        user = await accounts.login(call.body.email, call.body.password)
        session_id = await _sessions(call).open(user)
        return accounts.token_response(call.settings, user, session_id)

    @api.route("POST", "/api/v1/auth/refresh", summary="A new token pair for a refresh token",
               body=RefreshBody, response=TokenOut, auth="none", tags=("auth",))
    async def refresh(call: Call) -> Any:
        return await accounts.refresh(call.settings, _sessions(call), call.body.refresh_token)

    @api.route("POST", "/api/v1/auth/logout",
               summary="Log out: revoke a session (or all of them) and close its sockets",
               body=LogoutBody, response=LogoutOut, tags=("auth",))
    async def logout(call: Call) -> Any:
        body: LogoutBody = call.body
        # The revocation's control closes the session's sockets on every node (the hub
        # hears it through ``Sessions.on_revoked``, wired in backend/app.py).
        session_id = await accounts.logout(call.settings, _sessions(call), call.actor,
                                           body.refresh_token, body.all)
        return {"ok": True, "revoked": "all" if session_id is None else "one"}

    @api.route("GET", "/api/v1/auth/me", summary="The current user", response=UserOut,
               tags=("auth",))
    async def me(call: Call) -> Any:
        assert call.user is not None
        return user_dict(call.user)

    @api.route("PATCH", "/api/v1/auth/users/{user_id}/role", summary="Change a role (admins)",
               body=RoleBody, response=UserOut, tags=("auth",))
    async def change_role(call: Call) -> Any:
        assert call.user is not None
        user, previous = await accounts.set_role(call.user, call.path["user_id"],
                                                 call.body.role)
        if user.is_staff != (previous in (Role.AGENT, Role.ADMIN)):
            # Open sockets were authorized as the user was: they reconnect as they are now.
            await call.request.app.state.realtime.close_user(user.id)
        return user_dict(user)

    @api.route("POST", "/mobile/sessions/", summary="Register a mobile device",
               body=DeviceBody, response=DeviceOut, status=201, auth="none", tags=("mobile",))
    async def create_device(call: Call) -> Any:
        _limits(call).registrations.take(_address(call))
        body: DeviceBody = call.body
        device = await accounts.register_device(body.device_id, body.platform, body.app_version)
        return _device(device)

    @api.route("DELETE", "/mobile/sessions/{device_id}/", summary="Deactivate a mobile device",
               response=DeviceOut, auth="none", tags=("mobile",), str_params=("device_id",))
    async def delete_device(call: Call) -> Any:
        device = await accounts.deactivate_device(call.path["device_id"])
        await call.request.app.state.realtime.close_device(device.device_id)
        return _device(device)
