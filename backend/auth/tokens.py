"""JWT access and refresh tokens: HS256 only, ``exp``/``iat``/``nbf`` checked, types told apart.

Tokens issued together carry the login session they belong to (claim ``sid``), so a logout can
revoke the pair and close the sockets opened with it (backend/auth/sessions.py). Tokens issued
before sessions existed have no ``sid``: they belong to the user's ``LEGACY_SESSION``."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

from backend.settings import Settings

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"
#: The session of a token without a ``sid`` claim (issued before sessions existed).
LEGACY_SESSION = "legacy"
LEEWAY_SECONDS = 10


class InvalidToken(Exception):
    """The token is malformed, expired, of the wrong type or badly signed."""


@dataclass(frozen=True)
class Claims:
    """What a valid token says: whose it is, its login session, when it was issued."""

    user_id: int
    session_id: str
    issued_at: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def issue_token(settings: Settings, user_id: int, token_type: TokenType,
                session_id: str | None = None) -> str:
    now = int(time.time())
    lifetime = (
        settings.access_token_seconds if token_type == "access" else settings.refresh_token_seconds
    )
    claims: dict[str, object] = {
        "sub": str(user_id),
        "type": token_type,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if session_id is not None:
        claims["sid"] = session_id
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def issue_pair(settings: Settings, user_id: int, session_id: str | None = None) -> TokenPair:
    """An access and a refresh token of ``session_id`` (none: a token of no session, as
    issued before sessions existed; kept for tools and tests)."""
    return TokenPair(
        access_token=issue_token(settings, user_id, "access", session_id),
        refresh_token=issue_token(settings, user_id, "refresh", session_id),
        expires_in=settings.access_token_seconds,
    )


def decode_token(settings: Settings, token: str, expected_type: TokenType) -> int:
    """Return the user id in a valid token of ``expected_type``; raise InvalidToken otherwise."""
    return decode_claims(settings, token, expected_type).user_id


def decode_claims(settings: Settings, token: str, expected_type: TokenType) -> Claims:
    """The claims of a valid token of ``expected_type``; raise InvalidToken otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": ["exp", "iat", "sub", "type"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("type") != expected_type:
        raise InvalidToken(f"expected an {expected_type} token")
    try:
        user_id = int(claims["sub"])
        issued_at = int(claims["iat"])
    except (TypeError, ValueError) as exc:
        raise InvalidToken("malformed subject") from exc
    session_id = claims.get("sid", LEGACY_SESSION)
    if not isinstance(session_id, str) or not session_id or (
            "sid" in claims and session_id == LEGACY_SESSION):
        raise InvalidToken("malformed session")
    return Claims(user_id, session_id, issued_at)
