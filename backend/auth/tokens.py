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

from backend.compat.jwt import lean_decoder, quick_claims
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


#: Access tokens verified lately, at most this many (see ``Verified``).
VERIFIED_MAX = 4096
#: The clock the kept tokens' times are checked against (the one PyJWT reads).
clock = time.time


@dataclass(frozen=True, slots=True)
class Verified:
    """An access token that passed every check of ``jwt.decode`` and ours, kept by its exact
    text with the secret, issuer and audience it was checked against, so that its next uses
    (a client's reconnects, its REST calls, its other tabs) skip the signature and the
    parsing, which no use can change: the same text, checked with the same key, has the same
    signature and claims. What depends on the moment is checked at every use, as ``jwt.decode``
    checks it: ``exp``, ``nbf`` and ``iat`` with the same leeway. A kept token is refused once
    expired, with the error a decode gives. Revocation is the caller's check, as for any
    token (backend/auth/sessions.py). Only tokens that passed are kept, so a flood of bad ones
    neither fills the memory nor skips a check; a bad token never matches a kept text."""

    claims: Claims
    #: Valid from (``max(nbf, iat) - leeway``) until before (``exp + leeway``).
    not_before: float
    expires: float


_verified: dict[tuple[str, str, str | None, str | None], Verified] = {}


def decode_claims(settings: Settings, token: str, expected_type: TokenType) -> Claims:
    """The claims of a valid token of ``expected_type``; raise InvalidToken otherwise."""
    if expected_type != "access":
        return _decode(settings, token, expected_type)[0]
    key = (token, settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)
    kept = _verified.get(key)
    if kept is not None:
        now = clock()
        if now >= kept.expires:
            del _verified[key]
            raise InvalidToken("Signature has expired")
        if now < kept.not_before:
            raise InvalidToken("The token is not yet valid")
        return kept.claims
    claims, times = _decode(settings, token, expected_type)
    while len(_verified) >= VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[key] = Verified(claims, *times)
    return claims


#: The decoder of every token, its options (the claims required) merged once.
_DECODER = lean_decoder({"require": ["exp", "iat", "sub", "type"]})


def _decode(settings: Settings, token: str,
            expected_type: TokenType) -> tuple[Claims, tuple[float, float]]:
    """``decode_claims`` by PyJWT, and when the token is valid (``Verified``'s times)."""
    # The plainest valid token decoded alone; anything else (a refusal included) by PyJWT.
    claims = quick_claims(_DECODER, token, settings.jwt_secret, settings.jwt_issuer,
                          settings.jwt_audience, LEEWAY_SECONDS) if ALGORITHM == "HS256" else None
    if claims is None:
        try:
            claims = _DECODER.decode(
                token,
                settings.jwt_secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
    if claims.get("type") != expected_type:
        article = "an" if expected_type[:1] in "aeiou" else "a"
        raise InvalidToken(f"expected {article} {expected_type} token")
    try:
        user_id = int(claims["sub"])
        issued_at = int(claims["iat"])
    except (TypeError, ValueError) as exc:
        raise InvalidToken("malformed subject") from exc
    session_id = claims.get("sid", LEGACY_SESSION)
    if not isinstance(session_id, str) or not session_id or (
            "sid" in claims and session_id == LEGACY_SESSION):
        raise InvalidToken("malformed session")
    # jwt.decode required exp and iat and made sure they (and nbf) are integers.
    starts = max(issued_at, int(claims.get("nbf", issued_at)))
    times = (starts - LEEWAY_SECONDS, int(claims["exp"]) + LEEWAY_SECONDS)
    return Claims(user_id, session_id, issued_at), times
