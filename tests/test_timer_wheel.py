"""The timer wheel (backend/realtime/timer_wheel.py): deadlines in coarse buckets, one loop
timer for all of them. Driven by a loop whose clock the test moves, so no assertion depends
on how fast the machine is; one test runs it on a real loop."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from backend.realtime.timer_wheel import MAX_RESOLUTION, TimerWheel, resolution_for


class Entry:
    __slots__ = ("due", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.due = 0


class Handle:
    def __init__(self, loop: Clock, when: float, callback: Any) -> None:
        self.loop, self.when, self.callback, self.cancelled = loop, when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """The part of a loop the wheel uses (``time``, ``call_at``), with a clock moved by hand:
    ``advance`` runs the timers that come due, as a loop would."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Handle:
        handle = Handle(self, when, callback)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[Handle]:
        return [handle for handle in self.handles if not handle.cancelled]

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [h for h in self.pending() if h.when <= end]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = end


def wheel_on(clock: Clock, fired: list[tuple[str, float]], resolution: float = 1.0,
             ) -> TimerWheel[Entry]:
    return TimerWheel(lambda entry: fired.append((entry.name, clock.now)), resolution,
                      loop=cast(asyncio.AbstractEventLoop, clock))


def test_deadlines_fire_in_order_never_early_and_at_most_one_bucket_late() -> None:
    clock, fired = Clock(), []
    wheel = wheel_on(clock, fired, resolution=0.5)
    start = clock.now
    delays = {"c": 7.3, "a": 0.2, "b": 3.0, "d": 7.1}
    for name, delay in delays.items():
        wheel.schedule(Entry(name), delay)
    assert len(wheel) == 4
    clock.advance(10)
    assert [name for name, _ in fired] == ["a", "b", "d", "c"] or \
        [name for name, _ in fired] == ["a", "b", "c", "d"]  # c and d share a bucket
    for name, at in fired:
        assert delays[name] <= at - start <= delays[name] + 0.5
    assert len(wheel) == 0 and not clock.pending()  # no timer left once empty


def test_many_deadlines_share_one_loop_timer() -> None:
    clock, fired = Clock(), []
    wheel = wheel_on(clock, fired)
    entries = [Entry(str(n)) for n in range(1000)]
    for n, entry in enumerate(entries):
        wheel.schedule(entry, 5 + n % 20)
    assert len(clock.pending()) == 1
    clock.advance(30)
    assert len(fired) == 1000
    assert len(clock.handles) == 0


def test_rescheduling_replaces_the_deadline_and_cancel_forgets_it() -> None:
    clock, fired = Clock(), []
    wheel = wheel_on(clock, fired)
    moved, kept, gone = Entry("moved"), Entry("kept"), Entry("gone")
    wheel.schedule(moved, 2)
    wheel.schedule(kept, 2)
    wheel.schedule(gone, 2)
    wheel.schedule(moved, 10)  # later: it does not fire at 2 s
    wheel.cancel(gone)
    assert len(wheel) == 2 and not wheel.scheduled(gone) and wheel.scheduled(moved)
    clock.advance(5)
    assert [name for name, _ in fired] == ["kept"]
    wheel.schedule(moved, 1)  # sooner than its deadline: the loop timer is moved up
    clock.advance(2)
    assert [name for name, _ in fired] == ["kept", "moved"]
    assert len(wheel) == 0


def test_a_callback_may_cancel_or_reschedule_entries_of_its_own_bucket() -> None:
    clock = Clock()
    calls: list[str] = []
    peers = [Entry(name) for name in "abc"]
    again = Entry("again")

    def callback(entry: Entry) -> None:
        calls.append(entry.name)
        if entry in peers:
            for peer in peers:
                wheel.cancel(peer)  # due in the same tick: not handed over after all
        if entry is again and calls.count("again") < 3:
            wheel.schedule(again, 0)  # "now" is the next bucket, not this tick

    wheel: TimerWheel[Entry] = TimerWheel(callback, 1.0,
                                          loop=cast(asyncio.AbstractEventLoop, clock))
    for entry in [*peers, again]:
        wheel.schedule(entry, 1)
    clock.advance(1.0)
    assert sum(calls.count(name) for name in "abc") == 1  # the first cancelled the others
    assert calls.count("again") == 1  # once per tick, though it asked for "now"
    clock.advance(5)
    assert calls.count("again") == 3 and len(wheel) == 0


def test_a_delay_returned_by_the_callback_schedules_the_entry_as_schedule_would() -> None:
    """The tick sets a returned delay itself: the bucket ``schedule`` would have given it
    (the same for every entry of the tick), a delay of 0 the next bucket, and the entry
    counted, cancellable and handed over again; a callback that scheduled its entry itself
    gets the returned delay in place of its own; after ``close`` nothing is kept."""
    clock = Clock()
    calls: list[str] = []
    delays = {"a": 2.5, "b": 2.5, "c": 0.0, "d": 0.4, "e": None}

    def callback(entry: Entry) -> float | None:
        calls.append(entry.name)
        if entry.name == "self":
            wheel.schedule(entry, 100)  # replaced by the delay returned
            return 1.0
        return delays[entry.name] if calls.count(calls[-1]) == 1 else None  # once each

    wheel: TimerWheel[Entry] = TimerWheel(callback, 0.5,
                                          loop=cast(asyncio.AbstractEventLoop, clock))
    reference: TimerWheel[Entry] = TimerWheel(lambda entry: None, 0.5,
                                              loop=cast(asyncio.AbstractEventLoop, clock))
    entries = {name: Entry(name) for name in delays}
    for entry in entries.values():
        wheel.schedule(entry, 1)
    clock.advance(1.0)
    assert sorted(calls) == list(delays)  # once each, in this tick
    assert len(wheel) == 4 and not wheel.scheduled(entries["e"])
    for name in "abcd":  # the buckets ``schedule`` gives, from the tick's time
        twin = Entry(name)
        reference.schedule(twin, cast(float, delays[name]))
        assert entries[name].due == twin.due and wheel.scheduled(entries[name])
    wheel.cancel(entries["b"])
    clock.advance(0.5)  # "c" and "d": the next bucket
    assert sorted(calls[5:]) == ["c", "d"]
    clock.advance(3)
    assert calls[7:] == ["a"] and len(wheel) == 0  # "b" cancelled
    own = Entry("self")
    wheel.schedule(own, 1)
    clock.advance(1)
    assert wheel.scheduled(own) and own.due == reference_due(reference, clock, 1.0)


def test_a_delay_returned_after_a_callback_closed_the_wheel_is_kept() -> None:
    """A callback closes the wheel after an earlier entry of the tick was set again: that
    deadline is gone with the rest, the later entry's returned delay is a deadline of its
    own, counted and handed over."""
    clock = Clock()
    calls = 0

    def callback(entry: Entry) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 2:
            wheel.close()
        return 1.0 if calls <= 2 else None

    wheel: TimerWheel[Entry] = TimerWheel(callback, 0.5,
                                          loop=cast(asyncio.AbstractEventLoop, clock))
    pair = [Entry("x"), Entry("y")]
    for entry in pair:
        wheel.schedule(entry, 1)
    clock.advance(1)
    assert calls == 2 and len(wheel) == 1
    assert sum(wheel.scheduled(entry) for entry in pair) == 1
    clock.advance(1.5)
    assert calls == 3 and len(wheel) == 0 and not clock.pending()


def reference_due(reference: TimerWheel[Entry], clock: Clock, delay: float) -> int:
    twin = Entry("twin")
    reference.schedule(twin, delay)
    return twin.due


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    seen: list[str] = []

    def callback(entry: Entry) -> None:
        seen.append(entry.name)
        raise RuntimeError("boom")

    wheel: TimerWheel[Entry] = TimerWheel(callback, 1.0,
                                          loop=cast(asyncio.AbstractEventLoop, clock))
    for name in "abc":
        wheel.schedule(Entry(name), 1)
    clock.advance(2)
    assert sorted(seen) == ["a", "b", "c"]
    assert "callback failed" in caplog.text


def test_close_forgets_everything() -> None:
    clock, fired = Clock(), []
    wheel = wheel_on(clock, fired)
    entry = Entry("a")
    wheel.schedule(entry, 1)
    wheel.close()
    assert entry.due == 0 and len(wheel) == 0 and not clock.pending()
    clock.advance(5)
    assert fired == []


def test_the_resolution_follows_the_shortest_interval() -> None:
    assert resolution_for(25, 20) == MAX_RESOLUTION
    assert resolution_for(0.3, 0.2) == pytest.approx(0.02)
    assert resolution_for(None, 0, 20) == MAX_RESOLUTION
    with pytest.raises(ValueError):
        TimerWheel(lambda entry: None, 0)


async def test_on_a_real_loop_the_wheel_hands_entries_over() -> None:
    done = asyncio.Event()
    order: list[str] = []

    def callback(entry: Entry) -> None:
        order.append(entry.name)
        if len(order) == 2:
            done.set()

    wheel: TimerWheel[Entry] = TimerWheel(callback, 0.01)
    wheel.schedule(Entry("later"), 0.05)
    wheel.schedule(Entry("sooner"), 0.01)
    await asyncio.wait_for(done.wait(), 5)
    assert order == ["sooner", "later"] and len(wheel) == 0


def test_time_is_the_clock_of_the_wheels_loop() -> None:
    clock = Clock()
    wheel = wheel_on(clock, [])
    assert wheel.time() == 1000.0
    clock.advance(2.5)
    assert wheel.time() == 1002.5


async def test_an_unbound_wheel_reads_the_running_loops_clock() -> None:
    wheel: TimerWheel[Entry] = TimerWheel(lambda entry: None, 0.01)
    before = asyncio.get_running_loop().time()
    assert before <= wheel.time() <= asyncio.get_running_loop().time()
