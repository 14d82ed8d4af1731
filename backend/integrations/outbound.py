"""Staff replies to platform customers, sent out in the background with bounded retries.

The ChatService calls ``OutboundSender.message_sent`` for every new message (its ``SentHook``).
When the author is staff and the conversation's customer is on a known platform, the message is
marked ``pending`` (so the sender's ack and the broadcast already say so) and a task sends it,
with its file if it names an upload (docs/integrations.md, "Replies sent out"):
on a retryable failure it waits ``backoff * 2**(attempt-1)`` seconds (capped, with jitter, or the
platform's ``retry_after``) and tries again, up to ``attempts`` times. The message ends ``sent``
(with the platform's id in ``external_id``) or ``failed`` (with ``delivery_error``), and every
failed attempt is logged with the conversation, message, platform, attempt and error.

Delivery is not durable: a message still pending when the process stops stays ``pending``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from backend.integrations import instagram, telegram
from backend.integrations.delivery import DeliveryError, Reply
from backend.settings import Integrations
from models import Conversation, Customer, DeliveryStatus, Message

if TYPE_CHECKING:
    from backend.service.actors import Actor
    from backend.service.chat import ChatService
    from backend.service.uploads import Uploads
    from backend.storage.sends import SentMessage

log = logging.getLogger("confab.integrations")

SendReply = Callable[[httpx.AsyncClient, Integrations, str, Reply], Awaitable[str]]

PLATFORMS: dict[str, SendReply] = {
    telegram.PLATFORM: telegram.send,
    instagram.PLATFORM: instagram.send,
}

# How long shutdown waits for deliveries in flight before cancelling them.
SHUTDOWN_GRACE_SECONDS = 5.0


class OutboundSender:
    """Owns the HTTP client and the delivery tasks of one process."""

    def __init__(self, config: Integrations, platforms: dict[str, SendReply] | None = None) -> None:
        self.config = config
        self.platforms = PLATFORMS if platforms is None else platforms
        #: Where a reply's file is read from (the chat service's uploads), once attached.
        self.uploads: Uploads | None = None
        self.tasks: set[asyncio.Future[DeliveryStatus]] = set()
        self._client: httpx.AsyncClient | None = None

    def attach(self, chat: ChatService) -> OutboundSender:
        """Register with ``chat`` so that staff replies in platform conversations go out."""
        chat.on_message_sent(self.message_sent)
        self.uploads = chat.uploads
        return self

    def message_sent(self, conversation: Conversation, message: SentMessage,
                     actor: Actor) -> None:
        """The service's SentHook: schedule delivery of a staff reply to a platform customer."""
        customer: Customer | None = conversation.customer
        if not actor.is_staff or not isinstance(customer, Customer):
            return
        if customer.platform not in self.platforms:
            return
        upload_id = message.file.get("upload_id") if message.file else None
        if isinstance(upload_id, int):
            # The file goes itself; the text the message got from the file's name stays home.
            name = message.file.get("name") if message.file else None
            text = "" if message.content == name else message.content
        else:
            upload_id = None
            text = "\n".join(part for part in (message.content, message.media_url) if part)
        message.delivery_status = DeliveryStatus.PENDING
        task = asyncio.ensure_future(
            self.deliver(message.id, conversation.id, customer.platform, customer.external_id,
                         text, upload_id)
        )
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def deliver(
        self, message_id: int, conversation_id: int, platform: str, recipient: str, text: str,
        upload_id: int | None = None,
    ) -> DeliveryStatus:
        """Send ``text`` (and the upload's file) to ``recipient`` with retries; record and
        return the final status."""
        # Each log line names these, in its text and as record attributes for structured logs.
        facts = {"platform": platform, "conversation_id": conversation_id,
                 "message_id": message_id}
        await _record(message_id, delivery_status=DeliveryStatus.PENDING)
        file = None
        if upload_id is not None:
            try:
                file = (await self.uploads.contents(upload_id) if self.uploads is not None
                        else None)
            except Exception as exc:  # the store failed (a disk, an object store away)
                log.exception("outbound delivery could not read its file: %s", _line(facts))
                return await self._give_up(facts, 0, f"the file could not be read: "
                                                     f"{type(exc).__name__}")
            if file is None:
                return await self._give_up(facts, 0, "the file is gone")
        elif not text.strip():
            return await self._give_up(facts, 0, "nothing to send (empty message)")
        reply = Reply(text, file)
        attempts = self.config.outbound_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                external_id = await self.platforms[platform](
                    self.client, self.config, recipient, reply
                )
            except DeliveryError as exc:
                if not exc.retryable or attempt >= attempts:
                    return await self._give_up(facts, attempt, exc.message)
                delay = self._delay(attempt, exc.retry_after)
                log.warning("outbound delivery failed: %s attempt=%d/%d error=%s "
                            "retry_in=%.2fs", _line(facts), attempt, attempts, exc.message,
                            delay, extra={**facts, "attempt": attempt, "error": exc.message})
                await asyncio.sleep(delay)
                continue
            await _record(message_id, delivery_status=DeliveryStatus.SENT,
                          external_id=external_id[:255] or None, delivery_error="")
            log.info("outbound delivery sent: %s attempt=%d", _line(facts), attempt,
                     extra={**facts, "attempt": attempt})
            return DeliveryStatus.SENT

    async def _give_up(self, facts: dict[str, Any], attempt: int, error: str) -> DeliveryStatus:
        await _record(facts["message_id"], delivery_status=DeliveryStatus.FAILED,
                      delivery_error=error[:255])
        log.error("outbound delivery gave up: %s attempt=%d/%d error=%s", _line(facts), attempt,
                  self.config.outbound_attempts, error,
                  extra={**facts, "attempt": attempt, "error": error})
        return DeliveryStatus.FAILED

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = self.config.outbound_backoff_max_seconds
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), cap))
        base = min(cap, self.config.outbound_backoff_seconds * 2 ** (attempt - 1))
        # Jitter (half to full delay) keeps many failed sends from retrying in lockstep.
        return float(base * random.uniform(0.5, 1.0))

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared HTTP client, made on first use inside the running loop."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.config.outbound_timeout_seconds, follow_redirects=False
            )
        return self._client

    def _done(self, task: asyncio.Future[DeliveryStatus]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbound delivery crashed", exc_info=task.exception())

    async def close(self) -> None:
        """Let deliveries in flight finish for a short grace, cancel the rest, close HTTP."""
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown: %d outbound deliveries left pending", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _record(message_id: int, **fields: Any) -> None:
    await Message.filter(id=message_id).update(**fields)


def _line(facts: dict[str, Any]) -> str:
    return (f"platform={facts['platform']} conversation={facts['conversation_id']} "
            f"message={facts['message_id']}")

