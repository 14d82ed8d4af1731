"""Send-rate limiting: a token bucket per connection (or per user for REST)."""

from __future__ import annotations

import time

from backend.service.errors import rate_limited


class TokenBucket:
    """``rate`` tokens per second, up to ``burst``; ``take`` raises when empty."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            raise rate_limited((1.0 - self.tokens) / self.rate)
        self.tokens -= 1.0
