"""The per-conversation order of sends (``backend/service/ordering.py``)."""

from __future__ import annotations

import asyncio

from backend.service.ordering import Sequencer


async def test_sequencer_orders_holders_and_forgets_idle_keys() -> None:
    sequencer, order = Sequencer(), []

    async def hold(key: int, n: int, ready: asyncio.Event | None = None) -> None:
        async with sequencer.hold(key):
            if ready is not None:
                await ready.wait()
            order.append((key, n))

    ready = asyncio.Event()
    first = asyncio.ensure_future(hold(1, 0, ready))
    await asyncio.sleep(0)  # let it take the lock
    later = [asyncio.ensure_future(hold(1, n)) for n in (1, 2)]
    other = asyncio.ensure_future(hold(2, 0))
    await other  # another key does not wait
    assert order == [(2, 0)]
    ready.set()
    await asyncio.gather(first, *later)
    assert order == [(2, 0), (1, 0), (1, 1), (1, 2)]
    assert len(sequencer) == 0


async def test_sequencer_skips_cancelled_waiters_and_passes_a_handed_slot_on() -> None:
    sequencer, order = Sequencer(), []
    release = asyncio.Event()

    async def hold(n: int, wait: asyncio.Event | None = None) -> None:
        async with sequencer.hold(1):
            order.append(n)
            if wait is not None:
                await wait.wait()

    first = asyncio.ensure_future(hold(0, release))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(hold(1))  # cancelled while it waits
    handed = asyncio.ensure_future(hold(2))  # cancelled once the slot is handed to it
    last = asyncio.ensure_future(hold(3))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # the first holder leaves: the slot is handed to the next waiter
    handed.cancel()
    await asyncio.gather(first, last)
    assert gone.cancelled() and handed.cancelled()
    assert order == [0, 3]
    assert len(sequencer) == 0

