"""Per-conversation order on one node: publish order equals id order.

A send holds its conversation's lock from before its INSERT (where the id is taken) until its
``chat_message`` is published, so two sends to one conversation on one node publish in the
order of their ids, after their commits, once each. Sends to different conversations do not
wait on each other. Across nodes see docs/architecture.md ("Order of messages").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Generator
from types import TracebackType


class Sequencer:
    """One FIFO lock per key, existing only while held or awaited."""

    def __init__(self) -> None:
        self._locks: dict[int, _Slot] = {}

    def hold(self, key: int) -> _Slot:
        """``async with sequencer.hold(conversation_id): ...``"""
        slot = self._locks.get(key)
        if slot is None:
            slot = self._locks[key] = _Slot(self, key)
        return slot

    def __len__(self) -> int:
        return len(self._locks)

    def _release(self, slot: _Slot) -> None:
        if not slot.held and not slot.waiters and self._locks.get(slot.key) is slot:
            del self._locks[slot.key]


class _Slot:
    """A FIFO lock for one key. Uncontended (a conversation's sends one at a time, the usual
    case) it is a flag: no ``asyncio.Lock`` and no coroutine per send; a holder that finds it
    taken waits on a future of its own, and a release hands the slot to the first waiter."""

    __slots__ = ("held", "key", "owner", "waiters")

    def __init__(self, owner: Sequencer, key: int) -> None:
        self.owner = owner
        self.key = key
        self.held = False
        self.waiters: deque[asyncio.Future[None]] = deque()

    def __aenter__(self) -> Awaitable[None]:
        if not self.held:
            self.held = True
            return _TAKEN
        return self._wait()

    async def _wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._hand_on()  # it was handed the slot as it was cancelled: pass it on
            else:
                self.waiters.remove(future)
                self.owner._release(self)
            raise

    def __aexit__(self, exc_type: type[BaseException] | None,
                  exc: BaseException | None, tb: TracebackType | None) -> Awaitable[None]:
        self._hand_on()
        return _TAKEN  # None: an exception goes on

    def _hand_on(self) -> None:
        """Give the slot to the first waiter still waiting, or free it."""
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_result(None)  # still held: it is the waiter's now
                return
        self.held = False
        self.owner._release(self)


class _Taken:
    """What ``__aenter__`` returns when the slot was free: an awaitable done at once."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator that finishes without suspending


_TAKEN = _Taken()
