"""Replays kept a moment for the next readers resuming from the same point while the log has
not moved: a reconnect storm's clients resume from the same position, and every shared read
of theirs (shared_reads.py) would otherwise read and render the same events again.

A kept replay is handed out only to a read that has just found the log where the replay left
it (same epoch, same last position): the events after the readers' point are then exactly the
replay's (positions are never reused; a trim only removes from the bottom, checked by the
read). Messages are rendered as they are now, and an edit, a delete, a reaction or a receipt
is itself logged and moves the log; what changes a rendering without moving it (a sender's
profile, a file link's signature) is at most ``KEEP_SECONDS`` old.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

#: How long a replay may be handed out again.
KEEP_SECONDS = 2.0
#: Replays kept at most (the oldest dropped first).
MAX_KEPT = 64

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Kept(Generic[T]):
    epoch: str
    top: int
    #: When the replay's first event was logged (its age is checked again), or None.
    first_at: datetime | None
    until: float
    replay: T


class KeptReplays(Generic[T]):
    """Replays by the readers' point, each with where the log stood when it was read."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, _Kept[T]] = {}

    def get(self, key: Hashable, epoch: str, top: int,
            oldest: datetime) -> T | None:
        """The replay kept for ``key`` if the log still stands at ``epoch``/``top`` and its
        first event was logged after ``oldest`` (the retention's age), else None."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.until <= time.monotonic():
            del self._kept[key]
            return None
        if kept.epoch != epoch or kept.top != top or (
                kept.first_at is not None and kept.first_at < oldest):
            return None
        return kept.replay

    def keep(self, key: Hashable, epoch: str, top: int, first_at: datetime | None,
             replay: T) -> None:
        """Keep ``replay``, read when the log stood at ``epoch``/``top``."""
        self._kept.pop(key, None)
        while len(self._kept) >= MAX_KEPT:
            del self._kept[next(iter(self._kept))]  # the oldest (dicts keep insertion order)
        self._kept[key] = _Kept(epoch, top, first_at, time.monotonic() + KEEP_SECONDS, replay)
