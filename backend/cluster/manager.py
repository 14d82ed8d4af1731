"""Emits between nodes: python-socketio's Redis manager beneath the fan-out manager.

The method order is ``RedisFanoutManager → AsyncRedisManager → AsyncPubSubManager →
FanoutManager → AsyncManager``: an emit is delivered on this node by ``FanoutManager`` and
published on the channel; every other node's listener hands it to the same ``FanoutManager``,
so Socket.IO sockets and raw WebSockets on every node get every event through one path.

Two changes to the stock Redis manager, both for outages:

- publishing goes through one ordered outbox drained by one task, so an emit never waits on
  Redis and events leave the node in the order they were emitted; while Redis is away they
  are dropped (counted) rather than queued without bound: what was committed is in the
  event log. Once a publish succeeds again, the node tells the others how far the logs of
  the conversations whose events it lost have gone (the ``eventlog_advanced`` control), and
  each catches its rooms up from the log (backend/realtime/sequence.py);
- the listener reconnects by itself with a short capped backoff, and treats a silent channel
  (no message, not even the nodes' own heartbeat pings, for three heartbeats) as a dead
  connection, which covers a listener that would otherwise wait forever. Once subscribed
  again, every room with members here is caught up from the log, from the last position it
  delivered: connected clients get what was missed, in order and once, without reconnecting.

The stock manager's private hooks are replaced through backend/compat/socketio.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from backend.cluster.link import RedisLink
from backend.compat.socketio import RedisManagerHooks, listener_task, own_message_suffix
from backend.realtime.fanout import FANOUT, LOG_ADVANCED, FanoutManager

log = logging.getLogger("confab.cluster")

OUTBOX_LIMIT = 10_000
BATCH = 256
MAX_RETRY_SECONDS = 2.0


class RedisFanoutManager(RedisManagerHooks, FanoutManager):
    """The fan-out manager of a node in a cluster."""

    name = "confab-redis"

    def __init__(self, link: RedisLink, heartbeat_seconds: float) -> None:
        super().__init__(url=link.url, channel=link.key("events"))
        self.link = link
        self.heartbeat_seconds = heartbeat_seconds
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(OUTBOX_LIMIT)
        self.dropped = 0
        #: Conversations whose events this node failed to publish: the last position lost.
        self.lost: dict[int, int] = {}
        self.listening = False
        self.last_heard = 0.0
        self._tasks: list[asyncio.Task[Any]] = []

    def initialize(self) -> None:
        # The stock listener task, plus the outbox writer.
        super().initialize()
        self._tasks.append(listener_task(self))
        self._tasks.append(asyncio.get_running_loop().create_task(self._drain_outbox()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def redis_connect(self) -> None:
        # The stock manager's own publish/listen never run (both are replaced below), but it
        # may call this; use the node's shared client.
        self.redis = self.link.client
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    # -- publishing -------------------------------------------------------------------------

    async def emit(  # type: ignore[override]  # keyword-only extras, as FanoutManager.emit
        self, event: str, data: Any, namespace: str | None = None, **kwargs: Any
    ) -> None:
        if namespace != FANOUT:
            await super().emit(event, data, namespace=namespace, **kwargs)
            return
        # The canonical envelope is plain JSON: skip the stock binary scan and callback setup.
        await FanoutManager.emit(self, event, data, namespace=FANOUT)
        await self.publish(self._emitted(event, data))

    async def emit_together(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        # Delivered here together, published one by one (each node writes them as it hears).
        await FanoutManager.emit_together(self, events)
        for event, data in events:
            await self.publish(self._emitted(event, data))

    def _emitted(self, event: str, data: Any) -> dict[str, Any]:
        """The published message of a fan-out event (what the stock manager's emit sends)."""
        return {
            "method": "emit", "event": event, "data": [data], "binary": False,
            "namespace": FANOUT, "room": None, "skip_sid": None, "callback": None,
            "host_id": self.host_id,
        }

    async def publish(self, data: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1
            # Like a failed publish: announced once publishing works, so every node catches
            # the rooms up from the log.
            self._remember_lost([data])

    def ping(self) -> None:
        """Publish a heartbeat on the channel: every listener (ours too) hears the cluster is
        alive; a listener that hears nothing for long reconnects."""
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait({"method": "ping", "host_id": self.host_id})

    async def _drain_outbox(self) -> None:
        while True:
            batch = [await self.outbox.get()]
            while len(batch) < BATCH and not self.outbox.empty():
                batch.append(self.outbox.get_nowait())
            try:
                async with self.link.client.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, self.json.dumps(message))
                    await pipe.execute()
                self.link.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.dropped += len(batch)
                self._remember_lost(batch)
                self.link.failed("publish", error)
            else:
                if self.lost:
                    self._announce_lost()

    def _remember_lost(self, batch: list[dict[str, Any]]) -> None:
        for message in batch:
            data = message.get("data")
            envelope = data[0] if isinstance(data, list) and data else None
            if not isinstance(envelope, dict) or envelope.get("position") is None:
                continue
            conversation_id = envelope["payload"].get("conversation_id")
            if isinstance(conversation_id, int):
                self.lost[conversation_id] = max(self.lost.get(conversation_id, 0),
                                                 envelope["position"])

    def _announce_lost(self) -> None:
        """Tell every node how far the logs went whose events this node failed to publish."""
        lost, self.lost = self.lost, {}
        try:
            self.outbox.put_nowait({
                "method": "emit", "event": LOG_ADVANCED,
                "data": [{"positions": {str(k): v for k, v in lost.items()}}],
                "binary": False, "namespace": FANOUT, "room": None, "skip_sid": None,
                "callback": None, "host_id": self.host_id,
            })
        except asyncio.QueueFull:
            self.lost.update(lost)

    # -- listening --------------------------------------------------------------------------

    async def listen(self) -> AsyncIterator[bytes]:
        channel = self.channel.encode()
        # Every node hears its own publishes too; the stock listener decodes them, then drops
        # them by host id. This node's own (fan-out emits and pings) end with its host id, so
        # they are dropped before decoding.
        own = own_message_suffix(self)
        loop = asyncio.get_running_loop()
        silence_limit = 3 * self.heartbeat_seconds
        retry = 0.1
        subscribed_before = False
        while True:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.link.succeeded()
                self.listening = True
                self.last_heard = loop.time()
                retry = 0.1
                if subscribed_before and self.positions is not None:
                    # What was published while we did not listen is in the log.
                    log.info("listening again: catching rooms up from the event log")
                    self.positions.recover()
                subscribed_before = True
                while True:
                    message = await pubsub.get_message(timeout=self.heartbeat_seconds)
                    now = loop.time()
                    if message is None:
                        if now - self.last_heard > silence_limit:
                            raise TimeoutError(f"no message on the channel for {silence_limit}s")
                        continue
                    self.last_heard = now
                    if message["type"] == "message" and message["channel"] == channel:
                        data = message["data"]
                        if not data.endswith(own):
                            yield data
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.listening = False
                self.link.failed("listen", error)
                await asyncio.sleep(retry)
                retry = min(retry * 2, MAX_RETRY_SECONDS)
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    # redis-py leaves PubSub.aclose unannotated.
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
