"""Outgoing webhooks (CONTRACT section 11): endpoints admins register, the events they get,
and one signed delivery.

Each delivery is a POST of JSON ``{id, event, created_at, conversation_id, position, data}``
where ``id`` is the event's id (the same on every retry: receivers dedupe with it) and
``data`` the event's Socket.IO payload, signed ``X-Confab-Signature: t=UNIX_SECONDS,
v1=hex(HMAC-SHA256(secret, "t." + body))``. Endpoints may subscribe to the events of the
conversations' logs (``events.LOGGED``). Each node keeps the active endpoints in memory,
reloaded every ``REFRESH_SECONDS`` and at once on its own changes: an endpoint registered on
another node gets events from this one within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from backend.integrations.delivery import DeliveryError, http_failure
from backend.integrations.netguard import RefusedAddress, check_target, guarded_post
from backend.integrations.outbox import NewDelivery
from backend.service import access, events
from backend.service.actors import Actor
from backend.service.clock import iso_now
from backend.service.errors import invalid, not_found
from backend.service.events import Event
from backend.settings import Delivery
from models import OutboxItem, OutboxKind, WebhookEndpoint

log = logging.getLogger("confab.webhooks")

#: The events an endpoint may ask for: those of the conversations' logs, each with a
#: position (so an event id that is the same wherever and whenever it is computed).
WEBHOOK_EVENTS = tuple(sorted(events.LOGGED))
REFRESH_SECONDS = 5.0
SIGNATURE_HEADER = "X-Confab-Signature"

Enqueue = Callable[[list[NewDelivery]], Awaitable[None]]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Confab-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event_id(event: Event) -> str:
    """The id receivers dedupe with: the conversation and the event's position."""
    cid = event.payload.get("conversation_id")
    if event.position is not None and cid is not None:
        return f"evt_{cid}_{event.position}"
    return f"evt_{secrets.token_hex(12)}"


class Webhooks:
    """The node's view of the endpoints, and their deliveries."""

    def __init__(self, config: Delivery, enqueue: Enqueue,
                 client: Callable[[], httpx.AsyncClient]) -> None:
        self.config = config
        self.enqueue = enqueue
        self.client = client
        #: Event name -> ids of the active endpoints that want it.
        self.wanted: dict[str, tuple[int, ...]] = {}
        self.loaded_at = 0.0
        self.tasks: set[asyncio.Future[None]] = set()

    # -- the endpoints ----------------------------------------------------------------------

    async def create(self, actor: Actor, url: str, wanted: list[str],
                     secret: str | None) -> dict[str, Any]:
        """Register an endpoint (admins). Its URL must be one the node may call."""
        await access.ensure_admin(actor)
        unknown = sorted(set(wanted) - set(WEBHOOK_EVENTS))
        if not wanted or unknown:
            raise invalid(f"events must be some of {', '.join(WEBHOOK_EVENTS)}"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        try:
            await check_target(url, allow_private=self.config.allow_private_networks)
        except RefusedAddress as exc:
            raise invalid(f"url refused: {exc}") from None
        secret = secret or f"whsec_{secrets.token_urlsafe(32)}"
        endpoint = await WebhookEndpoint.create(
            url=url, events=sorted(set(wanted)), secret=secret, created_by_id=actor.user_id)
        await self.reload()
        return {**_view(endpoint), "secret": secret}

    async def list(self, actor: Actor) -> list[dict[str, Any]]:
        """Every active endpoint (admins); secrets are not shown again."""
        await access.ensure_admin(actor)
        return [_view(e) for e in await WebhookEndpoint.filter(is_active=True).order_by("id")]

    async def delete(self, actor: Actor, endpoint_id: int) -> dict[str, Any]:
        """Remove an endpoint (admins): it gets nothing more, queued deliveries die."""
        await access.ensure_admin(actor)
        if not await WebhookEndpoint.filter(id=endpoint_id, is_active=True).update(
                is_active=False):
            raise not_found("Webhook endpoint")
        await self.reload()
        return {"id": endpoint_id, "deleted": True}

    async def reload(self) -> None:
        """Read the active endpoints again."""
        wanted: dict[str, list[int]] = {}
        for endpoint in await WebhookEndpoint.filter(is_active=True).only("id", "events"):
            for name in endpoint.events or ():
                wanted.setdefault(name, []).append(endpoint.id)
        self.wanted = {name: tuple(ids) for name, ids in wanted.items()}
        self.loaded_at = time.monotonic()

    async def refresh_forever(self) -> None:
        """Reload now and then (endpoints changed on other nodes)."""
        while True:
            try:
                await self.reload()
            except Exception as exc:  # the database away: keep what is known
                log.warning("webhook endpoints not reloaded (%s: %s)", type(exc).__name__,
                            str(exc)[:200])
            await asyncio.sleep(REFRESH_SECONDS)

    # -- the events -------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """An event was published (after its commit): queue it for the endpoints that want
        it, in the background. Costs a dict look-up when none does."""
        targets = self.wanted.get(event.name)
        if not targets:
            return
        ident = event_id(event)
        body = {"id": ident, "event": event.name, "created_at": iso_now(),
                "conversation_id": event.payload.get("conversation_id"),
                "position": event.position, "data": event.payload}
        rows = [NewDelivery(OutboxKind.WEBHOOK, target, ident, event.name, body)
                for target in targets]
        task = asyncio.ensure_future(self.enqueue(rows))
        self.tasks.add(task)
        task.add_done_callback(self._queued)

    def _queued(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook deliveries not queued (lost)", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the rows being queued (shutdown)."""
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def deliver(self, item: OutboxItem) -> None:
        """The outbox's handler: one signed POST."""
        endpoint = await WebhookEndpoint.get_or_none(id=item.target_id, is_active=True)
        if endpoint is None:
            raise DeliveryError("endpoint removed", retryable=False)
        body = orjson.dumps(item.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Confab-Webhooks/1",
            "X-Confab-Event": item.event,
            "X-Confab-Event-Id": item.event_id,
            SIGNATURE_HEADER: signature(endpoint.secret, int(time.time()), body),
        }
        try:
            response = await guarded_post(
                self.client(), endpoint.url, content=body, headers=headers,
                allow_private=self.config.allow_private_networks)
        except RefusedAddress as exc:
            raise DeliveryError(f"refused: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:255], retryable=True) from None
        if 200 <= response.status_code < 300:
            return
        if 300 <= response.status_code < 400:
            raise DeliveryError(f"HTTP {response.status_code}: redirects are not followed",
                                retryable=False)
        raise http_failure(response.status_code, response.text[:120],
                           _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return float(raw) if raw.isdigit() else None


def _view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events,
            "created_at": endpoint.created_at.isoformat() if endpoint.created_at else None}

