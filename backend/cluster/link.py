"""The node's Redis client, and its health as the node sees it.

Every part of the node that talks to Redis reports here; an outage is logged once when it
starts and once when it ends, whatever the number of failed calls in between.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("confab.cluster")


class RedisLink:
    """One Redis client shared by the manager and presence, and whether Redis answers."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = f"{prefix}:"
        # Fail fast: while Redis is away the node serves its own sockets, so a call must not
        # hang on it (the heartbeat probes it again a few seconds later).
        self.client: Redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 1)
        )
        self.up = True

    def key(self, name: str) -> str:
        return self.prefix + name

    def failed(self, what: str, error: BaseException) -> None:
        """Record a failed call; the first failure of an outage is logged."""
        if self.up:
            self.up = False
            log.error(
                "redis unavailable (%s: %s): serving this node's own sockets only until it is back",
                what, error or type(error).__name__,
                extra={"event": "redis_down", "redis_url": _redacted(self.url)},
            )

    def succeeded(self) -> None:
        """Record a call that worked; the first after an outage is logged."""
        if not self.up:
            self.up = True
            log.warning("redis is back: cross-node delivery resumes",
                        extra={"event": "redis_up", "redis_url": _redacted(self.url)})

    async def close(self) -> None:
        await self.client.aclose()


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"
