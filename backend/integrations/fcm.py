"""One FCM notification through the HTTP v1 API, authorised by an OAuth2 access token that
the service account's key obtains (the JWT-bearer grant, RFC 7523) from the token URI its
JSON names. The API base is configurable (``FCM_API_BASE``) for tests and proxies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import orjson

from backend.integrations.delivery import DeliveryError, http_failure
from backend.settings import ConfigurationError, Delivery
from models import OutboxItem, PushSubscription

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: A token is renewed this long before it expires.
TOKEN_MARGIN_SECONDS = 60.0


class ServiceAccount:
    """The fields of a service account's JSON that FCM needs."""

    def __init__(self, text: str) -> None:
        try:
            data = orjson.loads(text)
            self.project_id = str(data["project_id"])
            self.client_email = str(data["client_email"])
            self.private_key = str(data["private_key"])
            self.token_uri = str(data["token_uri"])
            self.key_id = str(data.get("private_key_id") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                "the FCM service account must be JSON with project_id, client_email, "
                f"private_key and token_uri ({type(exc).__name__})") from None


class FcmSender:
    """The outbox's handler of ``fcm`` rows; keeps one access token for the node."""

    def __init__(self, config: Delivery, client: Callable[[], httpx.AsyncClient]) -> None:
        assert config.fcm_service_account is not None
        self.config = config
        self.client = client
        self.account = ServiceAccount(config.fcm_service_account)
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def access_token(self) -> str:
        """A valid access token, exchanged for a fresh assertion when needed."""
        async with self._lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            now = int(time.time())
            claims = {"iss": self.account.client_email, "scope": SCOPE,
                      "aud": self.account.token_uri, "iat": now, "exp": now + 3600}
            assertion = jwt.encode(claims, self.account.private_key, algorithm="RS256",
                                   headers={"kid": self.account.key_id} if self.account.key_id
                                   else None)
            try:
                response = await self.client().post(
                    self.account.token_uri, data={"grant_type": GRANT, "assertion": assertion})
            except httpx.HTTPError as exc:
                raise DeliveryError(f"token: {type(exc).__name__}: {exc}"[:255],
                                    retryable=True) from None
            if response.status_code != 200:
                raise http_failure(response.status_code,
                                   f"token exchange refused: {response.text[:100]}")
            data = response.json()
            lifetime = float(data.get("expires_in") or 3600)
            self._token = (str(data["access_token"]),
                           time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS))
            return self._token[0]

    async def deliver(self, item: OutboxItem) -> None:
        sub = await PushSubscription.get_or_none(id=item.target_id)
        if sub is None:
            raise DeliveryError("subscription removed", retryable=False)
        token = await self.access_token()
        url = (f"{self.config.fcm_api_base}/v1/projects/{self.account.project_id}"
               "/messages:send")
        try:
            response = await self.client().post(
                url, content=orjson.dumps({"message": message_of(sub.token, item.payload)}),
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:255], retryable=True) from None
        if response.status_code == 200:
            return
        if response.status_code == 401:
            self._token = None  # revoked or expired early: the next attempt gets another
            raise DeliveryError("HTTP 401: access token refused", retryable=True)
        if response.status_code in (404, 410):
            # UNREGISTERED: the app was uninstalled or the token rotated.
            await PushSubscription.filter(id=sub.id).delete()
            raise DeliveryError(f"HTTP {response.status_code}: token gone (removed)",
                                retryable=False)
        raise http_failure(response.status_code, response.text[:120])


def message_of(token: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The v1 ``message``: a notification, the payload as string data, collapsed per
    conversation on Android and iOS."""
    collapse = str(payload.get("topic") or "")
    urgent = bool(payload.get("mention"))
    return {
        "token": token,
        "notification": {"title": str(payload.get("title", "")),
                         "body": str(payload.get("body", ""))},
        "data": {key: _data_value(value) for key, value in payload.items()},
        "android": {"collapse_key": collapse, "priority": "high" if urgent else "normal"},
        "apns": {"headers": {"apns-collapse-id": collapse,
                             "apns-priority": "10" if urgent else "5"}},
    }


def _data_value(value: Any) -> str:
    """A payload value as FCM's string-only ``data`` carries it: a string as it is, nothing
    as "", anything else as its JSON (``true``, ``12``), as the app reads the Web Push JSON."""
    if isinstance(value, str):
        return value
    return "" if value is None else orjson.dumps(value).decode()
