"""JWT access and refresh tokens: HS256 only, ``exp``/``iat``/``nbf`` checked, types told apart."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

from backend.settings import Settings

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"
LEEWAY_SECONDS = 10


class InvalidToken(Exception):
    """The token is malformed, expired, of the wrong type or badly signed."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def issue_token(settings: Settings, user_id: int, token_type: TokenType) -> str:
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
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def issue_pair(settings: Settings, user_id: int) -> TokenPair:
    return TokenPair(
        access_token=issue_token(settings, user_id, "access"),
        refresh_token=issue_token(settings, user_id, "refresh"),
        expires_in=settings.access_token_seconds,
    )


def decode_token(settings: Settings, token: str, expected_type: TokenType) -> int:
    """Return the user id in a valid token of ``expected_type``; raise InvalidToken otherwise."""
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
        return int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise InvalidToken("malformed subject") from exc
