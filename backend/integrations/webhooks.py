"""Outgoing webhooks (CONTRACT section 11): endpoints admins register, the events they get,
and one signed delivery.

Each delivery is a POST of JSON ``{id, event, created_at, conversation_id, position, data}``
where ``id`` is the event's id (the same on every retry: receivers dedupe with it) and
``data`` the event's Socket.IO payload, signed ``X-Confab-Signature: t=UNIX_SECONDS,
v1=hex(HMAC-SHA256(secret, "t." + body))``. Endpoints may subscribe to the events of the
conversations' logs (``events.LOGGED``).

Two paths queue a delivery, both idempotent (a row is unique per endpoint and event id):

- live: the node that publishes an event queues it at once for the endpoints it knows (each
  node keeps the active endpoints in memory, reloaded every ``WEBHOOK_REFRESH_SECONDS`` and at
  once on its own changes);
- catch-up: every ``WEBHOOK_CATCH_UP_SECONDS`` a node reads the event log past each endpoint's
  cursor (``log_cursor``, a row id) up to events ``WEBHOOK_CATCH_UP_DELAY_SECONDS`` old, and
  queues what is not queued yet: an event whose node died before queuing it, or published by
  a node that did not know the endpoint yet. Row ids are given at insert and, on PostgreSQL,
  may commit out of order; the delay keeps the reader behind every transaction still open
  (far longer than any statement may run), so no row is passed over before it commits.

Together: every logged event an endpoint wants is delivered at least once, whatever node dies
when, as long as the log still holds it (its retention: ``EVENT_LOG_MAX_*``). An endpoint gets
the events logged after it was registered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from backend.integrations.delivery import DeliveryError, http_failure
from backend.integrations.netguard import (
    RefusedAddress,
    UnresolvedHost,
    check_target,
    guarded_post,
)
from backend.integrations.outbox import NewDelivery
from backend.service import access, events
from backend.service.actors import Actor
from backend.service.clock import iso_now
from backend.service.errors import invalid, not_found
from backend.service.events import Event
from backend.settings import Delivery
from backend.storage import eventlog
from models import OutboxItem, OutboxKind, WebhookEndpoint

if TYPE_CHECKING:
    from backend.service.chat import ChatService

log = logging.getLogger("confab.webhooks")

#: The events an endpoint may ask for: those of the conversations' logs, each with a
#: position (so an event id that is the same wherever and whenever it is computed).
WEBHOOK_EVENTS = tuple(sorted(events.LOGGED))
#: Log rows read per page of the catch-up.
CATCH_UP_PAGE = 500
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
        self.chat: ChatService | None = None

    def attach(self, chat: ChatService) -> None:
        """The service that rebuilds logged events for the catch-up."""
        self.chat = chat

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
            url=url, events=sorted(set(wanted)), secret=secret, created_by_id=actor.user_id,
            log_cursor=await eventlog.last_id())
        await self.reload()
        return {**_view(endpoint), "secret": secret}

    async def endpoints(self, actor: Actor) -> list[dict[str, Any]]:
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
            await asyncio.sleep(self.config.webhook_refresh_seconds)

    async def catch_up_forever(self) -> None:
        """Now and then, queue what the live path missed (see the module's docstring)."""
        while True:
            await asyncio.sleep(self.config.webhook_catch_up_seconds)
            try:
                queued = await self.catch_up()
            except Exception as exc:  # the database away: the cursors wait
                log.warning("webhook catch-up failed (%s: %s)", type(exc).__name__,
                            str(exc)[:200])
            else:
                if queued:
                    log.warning("webhook catch-up: %d delivery(ies) missed live, queued now",
                                queued)

    async def catch_up(self) -> int:
        """Queue the logged events past each endpoint's cursor, old enough to be settled,
        that are not queued yet; move the cursors. Returns the deliveries queued."""
        assert self.chat is not None, "attach() first"
        endpoints = list(await WebhookEndpoint.filter(is_active=True))
        if not endpoints:
            return 0
        settled_before = datetime.now(UTC) - timedelta(
            seconds=self.config.webhook_catch_up_delay_seconds)
        after = min(e.log_cursor for e in endpoints)
        queued = 0
        while True:
            rows = await eventlog.read_all(after, CATCH_UP_PAGE)
            settled = []
            for row in rows:
                if row.event.created_at >= settled_before:
                    break
                settled.append(row)
            if not settled:
                return queued
            queued += await self._queue_missed(endpoints, settled)
            after = settled[-1].id
            for endpoint in endpoints:
                if endpoint.log_cursor < after:
                    await WebhookEndpoint.filter(id=endpoint.id, log_cursor__lt=after).update(
                        log_cursor=after)
                    endpoint.log_cursor = after
            if len(settled) < len(rows) or len(rows) < CATCH_UP_PAGE:
                return queued

    async def _queue_missed(self, endpoints: list[WebhookEndpoint],
                            rows: list[eventlog.GlobalRow]) -> int:
        assert self.chat is not None
        due: dict[tuple[int, int], list[int]] = {}  # (conversation, position) -> endpoints
        for row in rows:
            for endpoint in endpoints:
                if row.id > endpoint.log_cursor and row.event.name in (endpoint.events or ()):
                    due.setdefault((row.conversation_id, row.event.position), []).append(
                        endpoint.id)
        if not due:
            return 0
        queued = set(await OutboxItem.filter(
            kind=OutboxKind.WEBHOOK,
            event_id__in=[f"evt_{cid}_{pos}" for cid, pos in due]).values_list(
                "target_id", "event_id"))
        missing: dict[int, list[eventlog.GlobalRow]] = {}
        for row in rows:
            key = (row.conversation_id, row.event.position)
            ident = f"evt_{key[0]}_{key[1]}"
            if any((target, ident) not in queued for target in due.get(key, ())):
                missing.setdefault(row.conversation_id, []).append(row)
        deliveries: list[NewDelivery] = []
        for cid, of_conversation in missing.items():
            stamps = {r.event.position: r.event.created_at for r in of_conversation}
            for event in await self.chat.rebuild_logged(cid, [r.event for r in
                                                              of_conversation]):
                ident = event_id(event)
                stamp = stamps[event.position or 0].astimezone(UTC).isoformat()
                body = _body(event, ident, stamp.replace("+00:00", "Z"))
                deliveries.extend(
                    NewDelivery(OutboxKind.WEBHOOK, target, ident, event.name, body)
                    for target in due[(cid, event.position or 0)]
                    if (target, ident) not in queued)
        await self.enqueue(deliveries)
        return len(deliveries)

    # -- the events -------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """An event was published (after its commit): queue it for the endpoints that want
        it, in the background. Costs a dict look-up when none does."""
        targets = self.wanted.get(event.name)
        if not targets:
            return
        ident = event_id(event)
        body = _body(event, ident, iso_now())
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
                self.client(), endpoint.url, content=body, headers=headers)
        except UnresolvedHost as exc:
            raise DeliveryError(str(exc)[:255], retryable=True) from None
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


def _body(event: Event, ident: str, created_at: str) -> dict[str, Any]:
    """What an endpoint receives of ``event``."""
    return {"id": ident, "event": event.name, "created_at": created_at,
            "conversation_id": event.payload.get("conversation_id"),
            "position": event.position, "data": event.payload}


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return float(raw) if raw.isdigit() else None


def _view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events,
            "created_at": endpoint.created_at.isoformat() if endpoint.created_at else None}

