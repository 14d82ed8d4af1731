"""Reads that readers asking together share: one query for the clients of a conversation that
connect at once (a reconnect after a restart or a network cut), not one each.

A reader may share only a read that starts after it asked: it joined its conversation's room
before asking, so what commits after it joined reaches it live, and what committed before is in
any read that starts after it asked. Joining a read already under way could miss what committed
between that read's start and the reader's join. So per key there is at most one read under
way and one waiting: whoever asks while a read is under way joins the waiting one, which starts
when the one under way ends. Under a burst, the reads of one key run back to back, each for
everyone who asked during the one before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedReads(Generic[T]):
    """Reads by key, shared among the readers who asked before each began."""

    def __init__(self) -> None:
        #: key → the read under way (done when it is).
        self._running: dict[Hashable, asyncio.Future[T]] = {}
        #: key → the read waiting for the one under way: its outcome.
        self._waiting: dict[Hashable, asyncio.Future[T]] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``load()``'s outcome, begun after this call (shared with the others who ask for
        ``key`` before it begins). Its result is shared: readers must not change it."""
        waiting = self._waiting.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        running = self._running.get(key)
        if running is None:
            return await asyncio.shield(self._start(key, load))
        waiting = self._waiting[key] = asyncio.get_running_loop().create_future()
        # Retrieved here: a failure whose readers all went away is not logged as lost.
        waiting.add_done_callback(lambda done: done.cancelled() or done.exception())
        running.add_done_callback(lambda _: self._after(key, load, waiting))
        return await asyncio.shield(waiting)

    def _start(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(load())
        self._running[key] = task
        task.add_done_callback(lambda done: self._ended(key, done))
        return task

    def _ended(self, key: Hashable, task: asyncio.Future[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure reaches its readers, not the loop's log

    def _after(self, key: Hashable, load: Callable[[], Awaitable[T]],
               waiting: asyncio.Future[T]) -> None:
        """The read under way ended: the waiting one begins (no one joins it any more)."""
        if self._waiting.get(key) is waiting:
            del self._waiting[key]
        task = self._start(key, load)

        def settle(done: asyncio.Future[T]) -> None:
            if waiting.done():
                return
            if done.cancelled():
                waiting.cancel()
            elif (error := done.exception()) is not None:
                waiting.set_exception(error)
            else:
                waiting.set_result(done.result())

        task.add_done_callback(settle)
