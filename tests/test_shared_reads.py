"""SharedReads: readers who ask together share one read, and never one begun before they asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.shared_reads import SharedReads
from backend.settings import Settings
from backend.storage.database import close_database, open_database
from models import User


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


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[tuple[ChatService, Actor, int]]:
    settings = Settings.from_env({"DATABASE_URL": f"sqlite://{tmp_path / 'db.sqlite3'}",
                                  "JWT_SECRET": "s" * 40, "DATA_DIR": str(tmp_path)})
    await open_database(settings, apply_migrations=True)
    try:
        service = ChatService(_Sink(), settings.limits)
        people = [await User.create(email=f"u{i}@example.com", username=f"u{i}",
                                    password_hash="x") for i in range(2)]
        actor = Actor.of_user(people[0])
        view = await service.create_conversation(actor, title="g", kind="group",
                                                 participant_ids=[people[1].id])
        for n in range(3):
            await service.send_message(actor, int(view["id"]), {"content": f"m{n}"})
        yield service, actor, int(view["id"])
    finally:
        await close_database()


class _Sink:
    async def publish(self, event: object, *, here_only: bool = False) -> None:
        return None


async def test_connects_and_resumes_asking_together_share_reads(
    chat: tuple[ChatService, Actor, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three clients asking at once for the latest page, and three resuming from the same
    position: the first reads alone, the two who asked while it read share the next."""
    service, actor, cid = chat
    counted: dict[str, int] = {"_page": 0, "_missed": 0}
    for name in counted:
        original = getattr(service, name)

        async def counting(*args: Any, _name: str = name, _original: Any = original,
                           **kwargs: Any) -> Any:
            counted[_name] += 1
            return await _original(*args, **kwargs)

        monkeypatch.setattr(service, name, counting)
    pages = await asyncio.gather(*(service.history(actor, cid, latest=True, shared=True)
                                   for _ in range(3)))
    assert counted["_page"] == 2
    assert all([m["content"] for m in page[0]] == ["m0", "m1", "m2"] for page in pages)
    epoch = await service.log_epoch()
    missed = await asyncio.gather(*(service.events_since(actor, cid, 1, epoch)
                                    for _ in range(3)))
    assert counted["_missed"] == 2
    assert all(len(result["events"]) == 2 for result in missed)
