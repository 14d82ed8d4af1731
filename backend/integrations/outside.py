"""Deliveries to the outside, put together: the outbox's worker, the HTTP client, outgoing
webhooks and push notifications, and the ``EventSink`` through which they see the events.

``OutsideEvents`` sits in front of the real-time sink (as ``TypistCounter`` does): an event
goes on to the fan-out first, then each observer looks at it and, only when there is
something to deliver, queues rows in the background. The send path itself writes nothing
more. What that costs: an event published in the instant before the node dies may miss its
webhook or push (its rows were not yet written); once written, a row is delivered at least
once, whatever node dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from backend.integrations.fcm import FcmSender
from backend.integrations.netguard import guarded_client
from backend.integrations.outbox import Outbox
from backend.integrations.push import Online, Push
from backend.integrations.webhooks import Webhooks
from backend.integrations.webpush import WebPushSender
from backend.observability.metrics import Metrics
from backend.service.chat import ChatService
from backend.service.events import Event
from backend.service.ports import EventSink
from backend.settings import Delivery
from models import OutboxKind

Observer = Callable[[Event], None]


class OutsideEvents:
    """An ``EventSink`` in front of another: every event goes on unchanged, then the
    observers see it (events published on this node only are not theirs)."""

    __slots__ = ("observers", "sink")

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.observers: list[Observer] = []

    async def publish(self, event: Event, *, here_only: bool = False) -> None:
        await self.sink.publish(event, here_only=here_only)
        if not here_only:
            for observe in self.observers:
                observe(event)


class Outside:
    """The node's outbox, HTTP clients, webhooks and push senders."""

    def __init__(self, config: Delivery, metrics: Metrics, sink: EventSink) -> None:
        self.config = config
        self.events = OutsideEvents(sink)
        self.outbox = Outbox(config, metrics)
        self.webhooks = Webhooks(config, self.outbox.enqueue, self.guarded_client)
        self.outbox.handle(OutboxKind.WEBHOOK, self.webhooks.deliver)
        self.events.observers.append(self.webhooks.observe)
        self.webpush = (WebPushSender(config, self.guarded_client)
                        if config.vapid_private_key else None)
        self.fcm = (FcmSender(config, self.plain_client)
                    if config.fcm_service_account else None)
        if self.webpush is not None:
            self.outbox.handle(OutboxKind.WEBPUSH, self.webpush.deliver)
        if self.fcm is not None:
            self.outbox.handle(OutboxKind.FCM, self.fcm.deliver)
        self.push = Push(config, metrics, self.outbox.enqueue, webpush=self.webpush is not None,
                         fcm=self.fcm is not None)
        self.events.observers.append(self.push.observe)
        self._guarded: httpx.AsyncClient | None = None
        self._plain: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, chat: ChatService, online: Online) -> None:
        """The chat service (conversations, the event log) and the cluster's presence."""
        self.webhooks.attach(chat)
        self.push.attach(chat, online)

    def guarded_client(self) -> httpx.AsyncClient:
        """The client for URLs users and admins choose (webhooks, Web Push endpoints):
        private addresses refused at every connect (netguard.py). Made on first use, in the
        running loop."""
        if self._guarded is None:
            self._guarded = guarded_client(
                allow_private=self.config.allow_private_networks,
                timeout=self.config.timeout_seconds)
        return self._guarded

    def plain_client(self) -> httpx.AsyncClient:
        """The client for URLs the operator configures (FCM's API and token URI)."""
        if self._plain is None:
            self._plain = httpx.AsyncClient(timeout=self.config.timeout_seconds,
                                            follow_redirects=False)
        return self._plain

    def start(self) -> None:
        """Start the worker and the endpoints' refresh (after the database is open)."""
        self.outbox.start()
        self._tasks.append(asyncio.ensure_future(self.webhooks.refresh_forever()))
        self._tasks.append(asyncio.ensure_future(self.webhooks.catch_up_forever()))
        self._tasks.append(asyncio.ensure_future(self.push.refresh_forever()))

    async def stop(self) -> None:
        """Queue what is being queued, stop the worker, close the client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.webhooks.drain()
        await self.push.drain()
        await self.outbox.stop()
        for client in (self._guarded, self._plain):
            if client is not None:
                await client.aclose()
        self._guarded = self._plain = None
