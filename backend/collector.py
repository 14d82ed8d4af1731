"""Python's garbage collector, tuned for a server holding many live connections.

Every object that survives two young collections ends in the oldest generation, and a
collection of that generation walks all of it: with 500 Socket.IO connections and PostgreSQL
the benchmark saw 160-180 ms pauses every few seconds, during which no frame moves (the rooms
p99). Two changes, once start-up is over:

- ``gc.freeze()``: what start-up made (modules, classes, functions, the app) moves to a
  generation that is never walked again. It still dies by reference counting; only cycles
  among those objects would outlive their use, and start-up objects live as long as the
  process.
- A young generation of ``YOUNG_THRESHOLD`` net allocations instead of 700: objects of
  messages in flight (alive for a few milliseconds) are far less often caught alive by a
  young collection and promoted, so the oldest generation grows, and is walked, much less
  often. A young collection walks at most that many objects (about a millisecond).
"""

from __future__ import annotations

import gc

#: Net container allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def tune_after_startup() -> None:
    """Freeze what start-up made and widen the young generation (see the module doc)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
