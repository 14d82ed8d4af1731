"""One Web Push notification (RFC 8030), encrypted for the browser (RFC 8291, ``aes128gcm``)
and authorised with VAPID (RFC 8292), sent through the network guard (the endpoint is the
browser's choice)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher

from backend.integrations.delivery import DeliveryError, http_failure
from backend.integrations.netguard import RefusedAddress, UnresolvedHost, guarded_post
from backend.settings import Delivery
from models import OutboxItem, PushSubscription

#: A VAPID token's lifetime (RFC 8292 allows up to 24 hours).
VAPID_SECONDS = 12 * 3600


def vapid_of(private_key: str) -> Vapid02:
    """The VAPID key from base64url of the raw 32-byte key, or from PEM."""
    if private_key.lstrip().startswith("-----"):
        return Vapid02.from_pem(private_key.encode())
    return Vapid02.from_string(private_key)


class WebPushSender:
    """The outbox's handler of ``webpush`` rows."""

    def __init__(self, config: Delivery, client: Callable[[], httpx.AsyncClient]) -> None:
        assert config.vapid_private_key is not None
        self.config = config
        self.client = client
        self.vapid = vapid_of(config.vapid_private_key)
        raw = self.vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        #: What browsers pass as ``applicationServerKey`` when they subscribe.
        self.public_key = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    async def deliver(self, item: OutboxItem) -> None:
        sub = await PushSubscription.get_or_none(id=item.target_id)
        if sub is None:
            raise DeliveryError("subscription removed", retryable=False)
        info = {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}
        body = WebPusher(info).encode(orjson.dumps(item.payload), "aes128gcm")["body"]
        parts = urlsplit(sub.endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "sub": self.config.vapid_subject,
                  "exp": int(time.time()) + VAPID_SECONDS}
        headers = {
            **self.vapid.sign(claims),
            "TTL": str(self.config.push_ttl_seconds),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Topic": str(item.payload.get("topic") or "")[:32],
            "Urgency": "high" if item.payload.get("mention") else "normal",
        }
        if not headers["Topic"]:
            del headers["Topic"]
        try:
            response = await guarded_post(self.client(), sub.endpoint, content=body,
                                          headers=headers)
        except UnresolvedHost as exc:
            raise DeliveryError(str(exc)[:255], retryable=True) from None
        except RefusedAddress as exc:
            raise DeliveryError(f"refused: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:255], retryable=True) from None
        if 200 <= response.status_code < 300:  # 201 Created (RFC 8030), or any success
            return
        if response.status_code in (404, 410):
            # The browser unsubscribed or the subscription expired: it is gone for good.
            await PushSubscription.filter(id=sub.id).delete()
            raise DeliveryError(f"HTTP {response.status_code}: subscription gone (removed)",
                                retryable=False)
        raise http_failure(response.status_code, response.text[:120])
