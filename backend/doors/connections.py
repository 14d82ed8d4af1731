"""What every real-time door reads at connect and keeps per connection: the credential (from
Socket.IO's ``auth``, the query string, or an ``Authorization: Bearer`` header) and the rate
buckets, made at their first use."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from backend.auth.accounts import CredentialInvalid
from backend.service.limits import EVENT_RATE_FACTOR, TokenBucket
from backend.settings import Limits

#: What a connection may name in its query string (for SDKs that cannot set Socket.IO's
#: ``auth``; the raw routes' only way).
QUERY_CREDENTIALS = ("token", "device_id", "conversation_id")


def connect_credentials(query: Mapping[str, str], authorization: str,
                        auth: Any = None) -> dict[str, Any]:
    """Socket.IO's ``auth`` (when given) over the query string's credentials and the token of a
    bearer ``Authorization`` header (which the query's ``token`` wins over)."""
    merged: dict[str, Any] = {key: query[key] for key in QUERY_CREDENTIALS if query.get(key)}
    token = bearer_token(authorization)
    if token is not None and "token" not in merged:
        merged["token"] = token
    if isinstance(auth, dict):
        merged.update({key: value for key, value in auth.items() if value is not None})
    return merged


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header's value."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def credential(credentials: Mapping[str, Any], name: str) -> str | None:
    """A string credential (``token``, ``device_id``), None when absent or empty; anything
    else is invalid (4002)."""
    value = credentials.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CredentialInvalid(f"{name} must be a string")
    return value


class Rate(Enum):
    """A connection's rate buckets: its chat messages, and every inbound event or frame
    (typing, reads, reactions... are cheap, not free)."""

    MESSAGES = 1
    EVENTS = EVENT_RATE_FACTOR


def rate_bucket(limits: Limits, rate: Rate) -> TokenBucket:
    """A connection's ``rate`` bucket, full. The doors make each at its first use: most
    connections idle, and a bucket made then is the one made at connect, refilled since."""
    return TokenBucket(limits.send_rate_per_second * rate.value, limits.send_burst * rate.value)
