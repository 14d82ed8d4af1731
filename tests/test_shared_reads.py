"""SharedReads: readers who ask together share one read, and never one begun before they asked."""

from __future__ import annotations

import asyncio

import pytest

from backend.service.shared_reads import SharedReads


async def turns() -> None:
    """Let every task scheduled so far run until it waits (a few turns of the loop)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Source:
    """A read that returns how many reads began before it, and ends when told to."""

    def __init__(self) -> None:
        self.begun = 0
        self.release: list[asyncio.Event] = []

    async def load(self) -> int:
        self.begun += 1
        number = self.begun
        gate = asyncio.Event()
        self.release.append(gate)
        await gate.wait()
        return number


async def test_readers_asking_during_a_read_share_the_next_one_begun_after_they_asked() -> None:
    reads: SharedReads[int] = SharedReads()
    source = Source()
    first = asyncio.ensure_future(reads.read("k", source.load))
    await turns()
    assert source.begun == 1
    # Asked while the first read is under way: neither may use it (it may have missed what
    # they are owed), both wait for one read, begun once the first ends.
    second = asyncio.ensure_future(reads.read("k", source.load))
    third = asyncio.ensure_future(reads.read("k", source.load))
    other_key = asyncio.ensure_future(reads.read("other", source.load))
    await turns()
    assert source.begun == 2  # the first's, and the other key's at once
    source.release[0].set()
    assert await first == 1
    await turns()
    assert source.begun == 3
    # Asked while the shared read is under way: waits for the one after it.
    fourth = asyncio.ensure_future(reads.read("k", source.load))
    await turns()
    for gate in source.release[1:]:
        gate.set()
    assert await second == await third == 3
    assert await other_key == 2
    await turns()
    assert source.begun == 4
    source.release[3].set()
    assert await fourth == 4
    # Nothing under way: a reader starts its own read at once.
    fifth = asyncio.ensure_future(reads.read("k", source.load))
    await turns()
    assert source.begun == 5
    source.release[4].set()
    assert await fifth == 5


async def test_a_failed_read_fails_each_of_its_readers_and_not_the_next() -> None:
    reads: SharedReads[int] = SharedReads()
    gate = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 2:
            raise RuntimeError("database away")
        return calls

    first = asyncio.ensure_future(reads.read("k", load))
    await turns()
    waiting = [asyncio.ensure_future(reads.read("k", load)) for _ in range(2)]
    await turns()
    gate.set()
    assert await first == 1
    for reader in waiting:
        with pytest.raises(RuntimeError, match="database away"):
            await reader
    assert await reads.read("k", load) == 3
