"""The outbox's worker: claims due deliveries (models/outbox.py), runs them, retries with
exponential backoff and jitter, and marks them done or dead.

Every node runs one. A claim is one statement that sets a lease on the rows it takes: on
PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several nodes claim at once without taking the
same row; on SQLite (one node) the statement is atomic by itself. A node that dies holding
rows leaves them to whichever node claims after the lease has run out, so a delivery is made
at least once; a receiver dedupes with the event id. A delivery's failure is a
``DeliveryError``: retryable ones wait ``backoff * 2**(attempt-1)`` seconds (capped, times a
random factor between 0.5 and 1, or the receiver's ``Retry-After``), and after ``attempts``
attempts, or a refusal for good, the row is dead (kept, listed for staff).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection

from backend.integrations.delivery import DeliveryError
from backend.observability.metrics import Metrics
from backend.settings import Delivery
from models import OutboxItem, OutboxKind, OutboxStatus

log = logging.getLogger("confab.outbox")

#: Runs one delivery; raises DeliveryError when it did not go through.
Deliver = Callable[[OutboxItem], Awaitable[None]]

#: How often a node deletes delivered rows past their keeping time.
CLEAN_EVERY_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A row to queue."""

    kind: OutboxKind
    target_id: int
    event_id: str
    event: str
    payload: dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """The node's worker over the shared outbox table."""

    def __init__(self, config: Delivery, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.node_id = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.handlers: dict[OutboxKind, Deliver] = {}
        self.running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def handle(self, kind: OutboxKind, deliver: Deliver) -> None:
        """Deliver rows of ``kind`` with ``deliver``."""
        self.handlers[kind] = deliver

    async def enqueue(self, deliveries: list[NewDelivery]) -> None:
        """Queue ``deliveries`` (one already queued for the same target and event is
        skipped) and wake this node's worker."""
        if not deliveries:
            return
        due = now_ms()
        await OutboxItem.bulk_create([
            OutboxItem(kind=d.kind, target_id=d.target_id, event_id=d.event_id[:64],
                       event=d.event[:32], payload=d.payload, due_ms=due)
            for d in deliveries], ignore_conflicts=True)
        for d in deliveries:
            self.metrics.outbox_enqueued(d.kind.value)
        self._wake.set()

    # -- the worker -------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming (after the database is open)."""
        if self._loop_task is None:
            self._loop_task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop claiming; deliveries in flight get a short grace, then are cancelled and
        their rows given back."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self.running:
            _, pending = await asyncio.wait(list(self.running), timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                # Given back at once rather than at the lease's end: the next claimer (a
                # node, or this one restarted) retries them now. Sent, maybe: at least once.
                try:
                    await OutboxItem.filter(claimed_by=self.node_id,
                                            status=OutboxStatus.PENDING).update(lease_ms=None)
                except Exception as exc:
                    log.warning("outbox leases not released (%s: %s)", type(exc).__name__,
                                str(exc)[:200])

    async def _run(self) -> None:
        cleaned = 0.0
        while True:
            free = self.config.concurrency - len(self.running)
            claimed: list[OutboxItem] = []
            if free > 0:
                try:
                    claimed = await self.claim(free)
                except Exception as exc:  # the database away: try again at the next poll
                    log.warning("outbox claim failed (%s: %s)", type(exc).__name__,
                                str(exc)[:200])
            for item in claimed:
                task = asyncio.ensure_future(self._attempt(item))
                self.running.add(task)
                task.add_done_callback(self._finished)
            if time.monotonic() - cleaned > CLEAN_EVERY_SECONDS:
                cleaned = time.monotonic()
                await self._clean()
            if claimed and len(claimed) == free:
                continue  # more may be due
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox delivery crashed", exc_info=task.exception())

    async def claim(self, limit: int) -> list[OutboxItem]:
        """Take up to ``limit`` due rows for this node, until the lease runs out."""
        client: BaseDBAsyncClient = get_connection("default")
        now = now_ms()
        lease = now + int(self.config.lease_seconds * 1000)
        pg = client.capabilities.dialect == "postgres"
        # A read first: an idle poll (most of them) takes no write lock (SQLite's is the
        # whole database's, which the send path would then find taken).
        _, found = await client.execute_query(
            f'SELECT 1 FROM "outbox" WHERE {_due(pg, 1)} LIMIT 1', [now, now])
        if not found:
            return []
        marks = ("$1", "$2") if pg else ("?", "?")
        lock = " FOR UPDATE SKIP LOCKED" if pg else ""
        rows = await client.execute_query_dict(
            f'UPDATE "outbox" SET "lease_ms" = {marks[0]}, "claimed_by" = {marks[1]}, '
            f'"attempts" = "attempts" + 1 WHERE "id" IN (SELECT "id" FROM "outbox" '
            f'WHERE {_due(pg, 3)} ORDER BY "due_ms" LIMIT {int(limit)}{lock}) '
            f'RETURNING "id"', [lease, self.node_id, now, now])
        if not rows:
            return []
        return list(await OutboxItem.filter(id__in=[int(row["id"]) for row in rows]))

    async def _attempt(self, item: OutboxItem) -> None:
        handler = self.handlers.get(item.kind)
        kind = item.kind.value
        try:
            if handler is None:
                raise DeliveryError(f"{kind} deliveries are not configured", retryable=True)
            # Well inside the lease: a delivery never outlives the claim that runs it.
            await asyncio.wait_for(handler(item), self.config.lease_seconds * 0.8)
        except DeliveryError as exc:
            await self._failed(item, exc)
        except TimeoutError:
            await self._failed(item, DeliveryError("timed out", retryable=True))
        except Exception as exc:
            log.exception("outbox delivery %d failed unexpectedly", item.id)
            await self._failed(item, DeliveryError(f"{type(exc).__name__}: {exc}"[:255],
                                                   retryable=True))
        else:
            await self._mine(item).update(
                status=OutboxStatus.DONE, lease_ms=None, last_error="",
                finished_at=datetime.now(UTC))
            self.metrics.outbox_outcome(kind, "delivered")
            log.info("outbox delivered: %s %s to %d attempt=%d", kind, item.event_id,
                     item.target_id, item.attempts)

    async def _failed(self, item: OutboxItem, error: DeliveryError) -> None:
        facts = f"{item.kind.value} {item.event_id} to {item.target_id} attempt={item.attempts}"
        if error.retryable and item.attempts < self.config.attempts:
            delay = self.delay(item.attempts, error.retry_after)
            await self._mine(item).update(
                lease_ms=None, last_error=error.message[:255],
                due_ms=now_ms() + int(delay * 1000))
            self.metrics.outbox_outcome(item.kind.value, "retry")
            log.warning("outbox delivery failed: %s error=%s retry_in=%.2fs", facts,
                        error.message, delay)
            return
        await self._mine(item).update(
            status=OutboxStatus.DEAD, lease_ms=None, last_error=error.message[:255],
            finished_at=datetime.now(UTC))
        self.metrics.outbox_outcome(item.kind.value, "dead")
        log.error("outbox delivery dead: %s error=%s", facts, error.message)

    def _mine(self, item: OutboxItem) -> Any:
        # Only while this node still holds the row: past the lease another node owns it.
        return OutboxItem.filter(id=item.id, claimed_by=self.node_id,
                                 status=OutboxStatus.PENDING)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt after ``attempt`` failed."""
        cap = self.config.backoff_max_seconds
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), cap))
        base = min(cap, self.config.backoff_seconds * 2 ** (attempt - 1))
        # Jitter: failures of many rows (a receiver down) do not come back in lockstep.
        return float(base * random.uniform(0.5, 1.0))

    async def _clean(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.keep_done_seconds)
        try:
            await OutboxItem.filter(status=OutboxStatus.DONE, finished_at__lt=cutoff).delete()
        except Exception as exc:
            log.warning("outbox clean-up failed (%s: %s)", type(exc).__name__, str(exc)[:200])


def _due(pg: bool, first: int) -> str:
    """The condition of a claimable row, its two parameters (now, now) numbered from
    ``first`` on PostgreSQL."""
    now, again = (f"${first}", f"${first + 1}") if pg else ("?", "?")
    return (f"\"status\" = 'pending' AND \"due_ms\" <= {now} AND "
            f'("lease_ms" IS NULL OR "lease_ms" <= {again})')


async def listing(*, kind: OutboxKind | None, status: OutboxStatus | None, limit: int,
                  before_id: int | None) -> dict[str, Any]:
    """Deliveries newest first, for staff, with the count of each status."""
    query = OutboxItem.all()
    if kind is not None:
        query = query.filter(kind=kind)
    counted = query
    if status is not None:
        query = query.filter(status=status)
    if before_id is not None:
        query = query.filter(id__lt=before_id)
    rows = await query.order_by("-id").limit(limit)
    counts = {s.value: await counted.filter(status=s).count() for s in OutboxStatus}
    return {"deliveries": [_row(row) for row in rows], "counts": counts}


def _row(row: OutboxItem) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind.value, "target_id": row.target_id,
        "event_id": row.event_id, "event": row.event, "status": row.status.value,
        "attempts": row.attempts, "last_error": row.last_error,
        "next_attempt_at": (datetime.fromtimestamp(row.due_ms / 1000, UTC).isoformat()
                            if row.status == OutboxStatus.PENDING else None),
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }
