"""A node's membership of a cluster: its Redis link, fan-out manager and presence, started
and stopped together.

The app builds one when ``REDIS_URL`` is set and hands its manager and presence to the
real-time layer (backend/realtime/hub.py), which then carries every emit and every presence
figure through Redis without knowing it.
"""

from __future__ import annotations

import asyncio

from backend.cluster.link import RedisLink
from backend.cluster.manager import RedisFanoutManager
from backend.cluster.presence import ClusterPresence, DepartureHandler
from backend.settings import Settings

#: How long ``stop`` lets the departures just published leave the outbox (in 50 ms steps).
OUTBOX_GRACE_STEPS = 20


class ClusterNode:
    """This node in the cluster of every node sharing ``REDIS_URL`` and ``REDIS_PREFIX``."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url
        self.link = RedisLink(settings.redis_url, settings.redis_prefix)
        self.manager = RedisFanoutManager(self.link, settings.node_ttl_seconds / 3)
        self.presence = ClusterPresence(self.link, self.manager.host_id,
                                        settings.node_ttl_seconds, on_beat=self.manager.ping)
        # A dead node may have committed events it never published: every node catches up.
        self.presence.on_node_lost = self.manager.node_lost

    def on_departures(self, handler: DepartureHandler) -> None:
        """Call ``handler`` when another node is gone (or this one leaves)."""
        self.presence.on_departures = handler

    async def start(self) -> None:
        """Join the cluster: the first heartbeat, then the presence loops (the manager's
        listener is started with the Socket.IO server's manager)."""
        await self.presence.start()

    async def stop(self) -> None:
        """Leave the cluster (the others hear this node's users leave) and stop listening."""
        await self.presence.stop()
        for _ in range(OUTBOX_GRACE_STEPS):
            if self.manager.outbox.empty():
                break
            await asyncio.sleep(0.05)
        await self.manager.stop()
        await self.link.close()

    def health(self) -> dict[str, bool]:
        """Checks for /readyz: Redis answers and this node listens to it."""
        return {"redis": self.link.up and self.manager.listening}
