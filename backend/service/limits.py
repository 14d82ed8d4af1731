"""Rate limiting: a token bucket per connection (or per user for REST), and buckets per key
(client address, email) for the unauthenticated REST routes."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from backend.service.errors import rate_limited

#: How many times faster than chat messages any inbound event may arrive (typing, reads...).
EVENT_RATE_FACTOR = 5


class TokenBucket:
    """``rate`` tokens per second, up to ``burst``; ``take`` raises when empty."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, what: str = "messages") -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            raise rate_limited((1.0 - self.tokens) / self.rate, what)
        self.tokens -= 1.0


class KeyedBuckets:
    """One ``TokenBucket`` per key, for at most ``max_keys`` keys (the least recently used go
    first: a forgotten key starts again with a full bucket, which errs on the side of letting
    people in, while the memory an attacker can make us hold stays bounded)."""

    def __init__(self, rate: float, burst: int, what: str, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket; raises ``rate_limited`` when it is empty."""
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        bucket.take(self.what)


class TypingThrottle:
    """Typing events of one actor in one conversation: a change of state always goes through;
    repeats of the same state (clients that report typing on every keystroke) get ``burst``
    and then one per ``interval`` seconds. Alternating floods are bounded by the connection's
    event rate."""

    def __init__(self, interval: float, burst: int = 3, max_keys: int = 100_000) -> None:
        self.interval = interval
        self.burst = float(burst)
        self.max_keys = max_keys
        #: key → [last state sent, tokens, when the tokens were counted]
        self.last: OrderedDict[tuple[str, int], list[Any]] = OrderedDict()

    def allow(self, actor_key: str, conversation_id: int, is_typing: bool) -> bool:
        """True when this event should be sent on (and counts it)."""
        key = (actor_key, conversation_id)
        now = time.monotonic()
        entry = self.last.get(key)
        if entry is None or entry[0] != is_typing:
            self.last[key] = [is_typing, self.burst - 1, now]
            self.last.move_to_end(key)
            if len(self.last) > self.max_keys:
                self.last.popitem(last=False)
            return True
        refill = (now - entry[2]) / self.interval if self.interval > 0 else self.burst
        tokens = min(self.burst, entry[1] + refill)
        entry[2] = now
        if tokens < 1:
            entry[1] = tokens
            return False
        entry[1] = tokens - 1
        return True
