"""The writes of one turn of the event loop, gathered behind the first.

Both databases' send paths write what arrives in one turn of the loop together (one round
trip and one commit on PostgreSQL, one transaction on SQLite). The first write of a turn
leads it: it lets the rest of the turn run (``rest_of_turn``: it resumes right after the
callbacks already due, where a ``call_soon`` callback would run) while the writes that come
after it join its batch, each with a future its writer awaits. The leader then writes its
own and the batch's, or alone (the usual case below saturation) just its own, in its
writer's task: no task, no future and no extra turn of the loop.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Generator
from typing import Generic, TypeVar

W = TypeVar("W")
R = TypeVar("R")

@types.coroutine
def rest_of_turn() -> Generator[None, None, None]:
    """``asyncio.sleep(0)`` in one step: a bare yield, which the task answers by scheduling
    its next step after the callbacks already due (``sleep(0)`` is two Python calls more)."""
    yield


class Turn(Generic[W, R]):
    """Where the writes of one turn gather (see the module doc): ``leading`` while a leader
    waits for the turn's end; ``join`` then, else ``open``, ``rest_of_turn()`` and ``close``
    (also when the leader is cancelled: the others are written all the same)."""

    __slots__ = ("_joined",)

    def __init__(self) -> None:
        #: While a leader waits for the turn's end: the writes that came after it.
        self._joined: list[tuple[W, asyncio.Future[R]]] | None = None

    @property
    def leading(self) -> bool:
        """A leader waits for the turn's end: a write now joins its batch."""
        return self._joined is not None

    def join(self, write: W) -> asyncio.Future[R]:
        """The future of ``write``'s outcome, settled once the leader's batch is written."""
        joined = self._joined
        assert joined is not None, "join() is for a turn that has a leader"
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        joined.append((write, future))
        return future

    def open(self) -> None:
        """The caller leads this turn: writes from now until ``close`` join its batch. The
        leader then awaits ``rest_of_turn()`` (in its own frame: one more coroutine in the
        chain would be resumed at each of the write's waits)."""
        self._joined = []

    def close(self) -> list[tuple[W, asyncio.Future[R]]]:
        """The turn's end (or its leader cancelled): the writes that joined, but for those
        whose writers gave up (cancelled), for the leader to write with its own."""
        joined = self._joined
        self._joined = None
        return [(w, f) for w, f in joined if not f.done()] if joined else []
