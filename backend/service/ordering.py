"""Per-conversation order on one node: publish order equals id order.

A send holds its conversation's lock from before its INSERT (where the id is taken) until its
``chat_message`` is published, so two sends to one conversation on one node publish in the
order of their ids, after their commits, once each. Sends to different conversations do not
wait on each other. Across nodes see docs/architecture.md ("Order of messages").
"""

from __future__ import annotations

import asyncio
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
        if slot.users == 0 and self._locks.get(slot.key) is slot:
            del self._locks[slot.key]


class _Slot:
    __slots__ = ("key", "lock", "owner", "users")

    def __init__(self, owner: Sequencer, key: int) -> None:
        self.owner = owner
        self.key = key
        self.lock = asyncio.Lock()
        self.users = 0  # holders and waiters

    async def __aenter__(self) -> None:
        self.users += 1
        try:
            await self.lock.acquire()
        except BaseException:
            self.users -= 1
            self.owner._release(self)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.lock.release()
        self.users -= 1
        self.owner._release(self)
