"""The node's Prometheus metrics, on a registry of the app's own (never the process-wide
default), so two apps in one process never mix their figures.

Counters and the latency histogram move as things happen, each at one place: messages in the
chat service's sent hook, deliveries and latency in ``FanoutManager.deliver`` (once per event,
not per recipient), refusals where each door turns a ChatError into its answer. Figures that
already exist elsewhere are read at scrape time instead of being mirrored: open connections from
the hub's member table, Redis drops from the cluster manager (both handed to ``watch``), health
from the same checks as ``/readyz``. Every metric is described in docs/operations.md.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: The node's open connections, one ``(transport, route)`` pair each, read at scrape time.
ConnectionDoors = Callable[[], Iterable[tuple[str, str]]]
#: Events not published to the other nodes so far, or None on a node alone.
DroppedEvents = Callable[[], int | None]


class Sender(Protocol):
    """What the sent hook reads of a message's sender (the service's ``Actor``)."""

    @property
    def is_staff(self) -> bool: ...

    @property
    def kind(self) -> StrEnum: ...

#: From the publish of an event to its last write on a node: sub-millisecond on one node,
#: a Redis round trip across nodes, seconds only when something is wrong.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)


class Metrics:
    """Every metric of one node, and its text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.messages = Counter(
            "confab_messages_sent", "Messages stored and published, by sender kind.",
            ["sender"], registry=registry)
        self.deliveries = Counter(
            "confab_deliveries", "Events written to connections on this node, by event.",
            ["event"], registry=registry)
        self.fanout_latency = TalliedHistogram(
            "confab_fanout_latency_seconds",
            "From the publish of an event to its last write on this node, once per event and "
            "node that had recipients for it.", LATENCY_BUCKETS, registry)
        self.errors = Counter(
            "confab_errors", "Refusals and failures answered to clients, by door and code.",
            ["transport", "code"], registry=registry)
        self.replayed_events = Counter(
            "confab_replayed_events",
            "Logged events delivered from the event log after a gap (a lost subscription or "
            "publish, or events of other nodes arriving out of order).", registry=registry)
        self.gaps = Counter(
            "confab_event_gaps", "Live events that arrived past a gap in their room's "
            "positions on this node.", registry=registry)
        self.replay_latency = Histogram(
            "confab_replay_seconds", "How long a room's catch-up from the event log took.",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.outbox_queued = Counter(
            "confab_outbox_enqueued", "Deliveries to the outside queued in the outbox, by kind "
            "(webhook, webpush, fcm).", ["kind"], registry=registry)
        self.outbox_outcomes = Counter(
            "confab_outbox_attempts", "Outbox delivery attempts by kind and outcome "
            "(delivered, retry, dead).", ["kind", "outcome"], registry=registry)
        self.push_decisions = Counter(
            "confab_push_decisions", "Recipients of messages looked at for a push notification, "
            "by outcome (queued, online, muted, collapsed, rate_limited).", ["outcome"],
            registry=registry)
        #: The last health checks (set just before each exposition).
        self.checks: dict[str, bool] = {}
        # Each label set's child, found once: ``labels()`` validates and locks at every call,
        # and the hot hooks below run for every message and event. Label values are a few
        # fixed names (sender kinds, event names), so the caches stay small.
        self._sent_by = functools.cache(self.messages.labels)
        self._delivered_of = functools.cache(self.deliveries.labels)
        # The hot hooks only count; the Prometheus counters get the counts at each scrape
        # (``flush``): their ``inc`` takes a lock and runs a few Python calls, twice per
        # message otherwise.
        self._sent_tally: Tally[str] = Tally()
        self._delivered_tally: Tally[str] = Tally()

    def watch(self, connections: ConnectionDoors, dropped: DroppedEvents) -> None:
        """Report the node's live figures at each scrape: its open connections, and the
        events it could not publish to the other nodes."""
        self.registry.register(_NodeCollector(connections, dropped, self))

    # -- the hooks --------------------------------------------------------------------------

    def message_sent(self, conversation: Any, message: Any, actor: Sender) -> None:
        """The chat service's sent hook (``ChatService.on_message_sent``)."""
        # The kind itself (a str enum, the same key as its value): ``.value`` is an enum
        # descriptor's Python call.
        self._sent_tally["agent" if actor.is_staff else actor.kind] += 1

    def delivered(self, event: str, count: int, published_at: float | None) -> None:
        """``event`` was written to ``count`` connections of this node."""
        if count == 0:
            return
        self._delivered_tally[event] += count
        if published_at is not None:
            # Wall clock: the stamp may come from another node (clocks a little apart).
            self.fanout_latency.observe(max(0.0, time.time() - published_at))

    def flush(self) -> None:
        """Hand what the hot hooks tallied to the Prometheus objects (at each scrape)."""
        sent, self._sent_tally = self._sent_tally, Tally()
        for kind, count in sent.items():
            self._sent_by(kind).inc(count)
        delivered, self._delivered_tally = self._delivered_tally, Tally()
        for event, count in delivered.items():
            self._delivered_of(event).inc(count)

    def replayed(self, events: int, seconds: float) -> None:
        """A room was caught up from the event log: ``events`` delivered, read in
        ``seconds``."""
        self.replayed_events.inc(events)
        self.replay_latency.observe(seconds)

    def gap(self) -> None:
        """A live event arrived past a gap in its room's positions."""
        self.gaps.inc()

    def outbox_enqueued(self, kind: str) -> None:
        """A delivery of ``kind`` was queued in the outbox."""
        self.outbox_queued.labels(kind).inc()

    def outbox_outcome(self, kind: str, outcome: str) -> None:
        """An outbox attempt ended: ``delivered``, ``retry`` or ``dead``."""
        self.outbox_outcomes.labels(kind, outcome).inc()

    def push_decided(self, outcome: str) -> None:
        """A recipient of a message was looked at for a push notification."""
        self.push_decisions.labels(outcome).inc()

    def refused(self, transport: str, code: str) -> None:
        """A client was answered with error ``code`` (``internal_error`` for a 5xx)."""
        self.errors.labels(transport, code).inc()

    # -- exposition -------------------------------------------------------------------------

    def exposition(self, checks: dict[str, bool]) -> bytes:
        """The text format, with ``checks`` (``{"database": ..., "redis": ...}``) as health."""
        self.checks = checks
        self.flush()
        return generate_latest(self.registry)


class TalliedHistogram(Collector):
    """A histogram observed once per event delivered: its buckets and sum kept in a plain
    list and float (``observe`` is a bisection and two additions; prometheus_client's takes a
    lock and makes a few Python calls per observation), exposed as a histogram at each
    scrape: the same ``_bucket``, ``_count`` and ``_sum`` series (not ``_created``)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        #: Observations per bucket (``le`` inclusive), the last past every bound (+Inf).
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            # ``le`` as prometheus_client writes it for such bounds: 0.0005, 1.0, +Inf.
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), total))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                    sum_value=self.sum)


class _NodeCollector(Collector):
    """Figures read from the node at scrape time."""

    def __init__(self, connections: ConnectionDoors, dropped: DroppedEvents,
                 metrics: Metrics) -> None:
        self.connections = connections
        self.dropped = dropped
        self.metrics = metrics
        #: Doors seen once keep a series (at 0 when empty), so alerts see a drop, not a gap.
        self.seen: set[tuple[str, str]] = set()

    def collect(self) -> Iterator[Metric]:
        tally = Tally(self.connections())
        self.seen.update(tally)
        connections = GaugeMetricFamily(
            "confab_connections", "Open connections on this node, by door.",
            labels=["transport", "route"])
        for transport, route in sorted(self.seen):
            connections.add_metric([transport, route], tally[(transport, route)])
        yield connections
        checks = self.metrics.checks
        if "database" in checks:
            yield GaugeMetricFamily("confab_database_up", "1 when the database answers.",
                                    value=int(checks["database"]))
        if "redis" in checks:
            yield GaugeMetricFamily(
                "confab_redis_up", "1 when Redis answers and this node listens to the cluster.",
                value=int(checks["redis"]))
        dropped = self.dropped()
        if dropped is not None:
            yield CounterMetricFamily(
                "confab_redis_events_dropped",
                "Events not published to the other nodes (Redis away or the outbox full).",
                value=dropped)
