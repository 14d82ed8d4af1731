"""One timer for many deadlines: the heartbeats of every connection of a node.

Each connection has a deadline most of its life: its next keepalive ping, or the pong it
waits for. One ``loop.call_later`` per connection is a timer handle (and, under uvloop, a
libuv timer) per connection, re-made at every ping; at 100,000 idle connections those are
100,000 handles in the loop's timer heap. A ``TimerWheel`` keeps instead one loop timer for
all of them: deadlines fall into coarse buckets (``resolution`` seconds wide, a set of
entries each) and one tick, armed for the earliest bucket, hands each due entry to the
wheel's one ``callback``. An entry costs its place in one set and one int attribute.

A deadline is rounded up to its bucket's end: an entry is never handed over before its
deadline (less the loop's own clock resolution) and at most ``resolution`` later, or later
still when the loop is behind. Heartbeats are coarse: a ping a fraction of a second late
changes nothing clients see, as long as ``resolution`` is small beside the intervals, which
the owners ensure (``resolution_for``).

An entry is any object with a writable ``due`` attribute (``Timed``): the wheel's bookkeeping,
0 while the entry is not scheduled. An entry is in one wheel at a time.

The callback may return a delay: the entry is then scheduled that much later, as ``schedule``
would, by the tick itself (a heartbeat's ping is followed by its pong's deadline: one bucket
reckoned for every entry of a tick, not a ``schedule`` call per entry).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from math import ceil, floor
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("confab.timers")

#: The coarsest bucket a heartbeat wheel uses, and its share of the shortest interval it
#: serves (so that tests with intervals of a few hundred milliseconds keep their shape). A
#: bucket's entries are handed over in one turn of the loop, which messages then wait behind:
#: with 1 s buckets, 18,000 connections pinged every 20 s made bursts of 900 pings, and the
#: p99 of a light message load held beside them went from 5 to 27 ms; a tenth of a second
#: makes each burst a tenth as long, for ten wake-ups a second.
MAX_RESOLUTION = 0.1
SHARE = 10
#: How early the loop may run a timer (its clock's resolution): a bucket whose end is this
#: close counts as reached.
EARLY = 1e-3


class Timed(Protocol):
    """What the wheel keeps on an entry: its bucket, 0 when not scheduled."""

    due: int


T = TypeVar("T", bound=Timed)


def resolution_for(*intervals: float | None) -> float:
    """A bucket width for deadlines of these intervals: a tenth of the shortest, at most
    ``MAX_RESOLUTION`` (None and non-positive intervals are ignored)."""
    given = [interval for interval in intervals if interval is not None and interval > 0]
    return min([MAX_RESOLUTION, *(interval / SHARE for interval in given)])


class TimerWheel(Generic[T]):
    """Deadlines in buckets, one loop timer for all of them (see the module doc).

    Bound to ``loop``, or else to the running loop of its first ``schedule`` (once empty it
    may then be used on another)."""

    __slots__ = ("_armed", "_buckets", "_callback", "_fixed", "_handle", "_loop", "_near",
                 "_order", "_size", "resolution")

    def __init__(self, callback: Callable[[T], float | None], resolution: float,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if resolution <= 0:
            raise ValueError("a wheel's resolution must be positive")
        self.resolution = resolution
        #: Delays under this may round to a bucket already reached (``schedule``).
        self._near = resolution + EARLY
        self._callback = callback
        #: Bucket number -> its entries; the bucket numbers in a heap (an emptied bucket
        #: stays until its time comes, found empty).
        self._buckets: dict[int, set[T]] = {}
        self._order: list[int] = []
        self._size = 0
        self._fixed = loop is not None
        self._loop = loop
        self._handle: asyncio.TimerHandle | _Ticking | None = None
        self._armed = 0  # the bucket the loop timer is set for

    def __len__(self) -> int:
        """Entries scheduled."""
        return self._size

    def schedule(self, entry: T, delay: float) -> None:
        """Hand ``entry`` to the callback ``delay`` seconds from now (rounded up to its
        bucket; at least the next bucket), replacing its deadline if it had one."""
        # Every heartbeat passes here twice per ping (its ping's deadline, then its next
        # ping's): the steps are inlined, no ``max`` (whose keyword parsing cost more than
        # the rest of the arithmetic), dictionaries indexed rather than asked with ``get``.
        loop = self._loop
        if loop is None or (not self._fixed and not self._size and loop is not _running()):
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        resolution = self.resolution
        bucket = ceil((now + delay) / resolution)
        if delay < self._near:
            # Never a bucket already reached: a tick hands over only what was due before it
            # ran. (A longer delay's bucket is past the reached one anyway.)
            first = floor((now + EARLY) / resolution) + 1
            if bucket < first:
                bucket = first
        old = entry.due
        if old == bucket:
            return
        buckets = self._buckets
        if old:
            # Scheduled: in its bucket, unless that bucket's tick is handing it over now.
            try:
                buckets[old].discard(entry)
            except KeyError:
                pass
        else:
            self._size += 1
        entry.due = bucket
        try:
            buckets[bucket].add(entry)
        except KeyError:
            buckets[bucket] = {entry}
            heapq.heappush(self._order, bucket)
        if bucket < self._armed or self._handle is None:
            self._arm(bucket)

    def time(self) -> float:
        """The clock of the wheel's loop (``loop.time()``), read without asking for the
        running loop: Python 3.11's ``get_running_loop`` makes a ``getpid`` system call."""
        loop = self._loop
        return (loop if loop is not None else asyncio.get_running_loop()).time()

    def cancel(self, entry: T) -> None:
        """Forget ``entry``'s deadline, if it has one."""
        old = entry.due
        if old:
            members = self._buckets.get(old)
            if members is not None:
                members.discard(entry)
            entry.due = 0
            self._size -= 1

    def scheduled(self, entry: T) -> bool:
        """Whether ``entry`` has a deadline in this wheel."""
        members = self._buckets.get(entry.due) if entry.due else None
        return members is not None and entry in members

    def close(self) -> None:
        """Forget every deadline and stop the loop timer."""
        for members in self._buckets.values():
            for entry in members:
                entry.due = 0
        self._buckets.clear()
        self._order.clear()
        self._size = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, bucket: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        assert self._loop is not None
        self._armed = bucket
        self._handle = self._loop.call_at(bucket * self.resolution, self._tick)

    def _tick(self) -> None:
        """Hand every entry of the buckets now due to the callback, then arm for the next
        bucket that holds any."""
        # While the tick runs, the deadlines its callbacks set do not arm the loop timer
        # (each pinged connection's would have, the first of them made a timer handle for
        # nothing): it is armed once, at the end, for the earliest bucket.
        self._handle, self._armed = _TICKING, 0
        loop = self._loop
        assert loop is not None
        try:
            resolution = self.resolution
            reached = floor((loop.time() + EARLY) / resolution)
            order, buckets = self._order, self._buckets
            callback = self._callback
            # The last delay returned, at what loop time, and its bucket: a tick's entries
            # return the same delay in the same millisecond, whose bucket is reckoned once.
            last_now = last_delay = -1.0
            target: set[T] = set()
            due = 0
            while order and order[0] <= reached:
                bucket = heapq.heappop(order)
                members = buckets.pop(bucket, None)
                if not members:
                    continue
                for entry in members:
                    if entry.due != bucket:
                        continue  # cancelled or moved by an earlier entry's callback
                    entry.due = 0
                    self._size -= 1
                    try:
                        delay = callback(entry)
                    except Exception:  # one entry's failure must not stop the others'
                        log.exception("a timer wheel's callback failed")
                        continue
                    if delay is None:
                        continue
                    if entry.due or self._handle is not _TICKING:
                        # Scheduled by its callback already, or the wheel closed by one.
                        self.schedule(entry, delay)
                        continue
                    # ``schedule``'s steps for an entry with no deadline, its bucket kept.
                    now = loop.time()
                    if now != last_now or delay != last_delay:
                        last_now, last_delay = now, delay
                        due = ceil((now + delay) / resolution)
                        if delay < self._near:
                            first = floor((now + EARLY) / resolution) + 1
                            if due < first:
                                due = first
                        try:
                            target = buckets[due]
                        except KeyError:
                            target = buckets[due] = set()
                            heapq.heappush(order, due)
                    entry.due = due
                    target.add(entry)
                    self._size += 1
            while order and order[0] not in buckets:
                heapq.heappop(order)
        finally:
            if self._handle is _TICKING:  # (``close`` from a callback leaves None)
                self._handle = None
            if self._order:
                self._arm(self._order[0])


class _Ticking:
    """The wheel's loop timer while a tick runs (see ``_tick``): cancelling it is nothing."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_TICKING = _Ticking()


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
