"""A small unbounded queue and a small event, for what the servers we run under keep per
connection.

``asyncio.Queue`` makes four deques (items, getters, putters, and its ``join`` event's
waiters) when it is created, about 2.8 KB, and an ``asyncio.Event`` one, about 0.8 KB; a
connection's queue is empty, and nobody waits on its events, nearly all its life.
``LeanQueue`` and ``LeanEvent`` have the same interfaces and hold only what is in use: an
idle one is under 100 bytes. Engine.IO makes a queue per Socket.IO connection through
``create_queue`` (backend/realtime/engine.py); uvicorn's WebSocket protocol a queue and an
event per connection (backend/realtime/protocol.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeAlias, TypeVar

T = TypeVar("T")


class LeanQueue(Generic[T]):
    """An unbounded FIFO queue with ``asyncio.Queue``'s interface (``put``/``put_nowait``,
    ``get``/``get_nowait``, ``task_done``/``join``, ``qsize``, ``empty``), the same wake-up
    order and the same behaviour when a waiting ``get`` is cancelled."""

    __slots__ = ("_finished", "_getters", "_items", "_unfinished")

    maxsize = 0

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        # One waiting getter nearly always: the future itself, a list past one (``Waiters``).
        self._getters: Waiters = None
        self._unfinished = 0
        self._finished: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<LeanQueue size={self.qsize()} unfinished={self._unfinished}>"

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done with ``task_done``."""
        return self._unfinished

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def awaited(self) -> bool:
        """Whether a ``get`` is waiting: the next item put goes to it in the loop's next
        round of callbacks."""
        getters = self._getters
        if getters is None:
            return False
        if isinstance(getters, list):
            return any(not getter.done() for getter in getters)
        return not getters.done()

    def put_nowait(self, item: T) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        self._unfinished += 1
        self._wake_getter()

    async def put(self, item: T) -> None:
        """Never waits (the queue is unbounded)."""
        self.put_nowait(item)

    def get_nowait(self) -> T:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    async def get(self) -> T:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters = _waiting(self._getters, getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case the wait was cancelled from outside
                self._getters = _not_waiting(self._getters, getter)
                if self._items and not getter.cancelled():
                    # Woken for an item and cancelled before taking it: wake the next.
                    self._wake_getter()
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()
            self._finished = None

    async def join(self) -> None:
        """Wait until every item put has been marked done."""
        if self._unfinished > 0:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()

    def _wake_getter(self) -> None:
        getters = self._getters
        if getters is None:
            return
        if not isinstance(getters, list):
            self._getters = None
            if not getters.done():
                getters.set_result(None)
            return
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None


class LeanEvent:
    """``asyncio.Event``'s interface (``set``, ``clear``, ``is_set``, ``wait``) and behaviour:
    ``set`` wakes every waiter, a cancelled ``wait`` leaves nothing behind."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: Waiters = None

    def __repr__(self) -> str:
        return f"<LeanEvent {'set' if self._value else 'unset'}>"

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            waiters, self._waiters = self._waiters, None
            for waiter in _each(waiters):
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters = _waiting(self._waiters, waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters = _not_waiting(self._waiters, waiter)  # cancelled before a set


#: Who waits, in order: nobody (None), one future (nearly always: an idle connection's read
#: waits on its queue), or a list of them from the second on (a list of one was 64 bytes
#: more on every connection).
Waiters: TypeAlias = "asyncio.Future[Any] | list[asyncio.Future[Any]] | None"


def _waiting(waiters: Waiters, future: asyncio.Future[Any]) -> Waiters:
    """``waiters`` with ``future`` added."""
    if waiters is None:
        return future
    if isinstance(waiters, list):
        waiters.append(future)
        return waiters
    return [waiters, future]


def _not_waiting(waiters: Waiters, future: asyncio.Future[Any]) -> Waiters:
    """``waiters`` without ``future`` (already gone when it was woken), None once empty."""
    if waiters is future:
        return None
    if isinstance(waiters, list):
        if future in waiters:
            waiters.remove(future)
        return waiters or None
    return waiters


def _each(waiters: Waiters) -> list[asyncio.Future[Any]]:
    if waiters is None:
        return []
    return waiters if isinstance(waiters, list) else [waiters]
