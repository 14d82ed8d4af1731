"""The chat service run in this process, over a database of a test's own: the fixtures that
open one, the stand-ins for the service's ports to the fan-out (``RecordingSink``,
``RoomTable``), and a counter of the SQL statements issued (``Statements``).

Its fixtures are the test session's (``pytest_plugins`` in ``tests/conftest.py``):
``each_database`` (SQLite, then PostgreSQL), ``sqlite_database``, ``postgres_database``,
``statements``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tortoise.backends.base.executor import EXECUTOR_CACHE

from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.events import Event
from backend.settings import Settings
from backend.storage.database import close_database, open_database
from models import User
from tests.support.services import Postgres
from tests.support.statements import listening


class RecordingSink:
    """An EventSink that keeps what is published, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, here_only: bool = False) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


class RoomTable:
    """The service's ports to the other nodes, as the fan-out manager implements them: who is
    in which room on this node (``Occupancy``), and controls run here (``ControlBus``)."""

    def __init__(self) -> None:
        self.room_members: dict[str, dict[str, Any]] = {}
        self.controls: dict[str, Any] = {}

    def on_control(self, name: str, handler: Any) -> None:
        self.controls[name] = handler

    async def broadcast(self, name: str, data: dict[str, Any]) -> None:
        await self.controls[name](data)

    def occupied(self, room: str) -> bool:
        return bool(self.room_members.get(room))

    def any_occupied(self, rooms: tuple[str, ...]) -> bool:
        return any(self.occupied(room) for room in rooms)


class Statements(logging.Handler):
    """Counts the SQL statements Tortoise's database clients and the connect's reads
    (backend/storage/lookups.py) issue (they log each one), and keeps their text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.sql.append(record.getMessage())


@pytest.fixture
def statements() -> Iterator[Statements]:
    with listening(Statements()) as handler:
        yield handler


def settings_for(url: str, work_dir: Path) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "JWT_SECRET": "s" * 40,
                              "DATA_DIR": str(work_dir)})


def fresh_tortoise() -> None:
    """Tortoise caches each model's INSERT per connection name for the process: one test's
    SQLite placeholders must not reach the next one's PostgreSQL."""
    EXECUTOR_CACHE.clear()


@contextlib.asynccontextmanager
async def opened(url: str, work_dir: Path) -> AsyncIterator[str]:
    """``url`` migrated and open in this process (Tortoise)."""
    fresh_tortoise()
    await open_database(settings_for(url, work_dir), apply_migrations=True)
    try:
        yield url
    finally:
        await close_database()


@pytest.fixture
async def each_database(database_url: str, work_dir: Path) -> AsyncIterator[str]:
    async with opened(database_url, work_dir) as url:
        yield url


@pytest.fixture
async def sqlite_database(work_dir: Path) -> AsyncIterator[str]:
    url = f"sqlite://{work_dir / f'in-process-{uuid.uuid4().hex[:8]}.sqlite3'}"
    async with opened(url, work_dir):
        yield url


@pytest.fixture
async def postgres_database(postgres: Postgres, work_dir: Path) -> AsyncIterator[str]:
    name, url = await postgres.create_database()
    try:
        async with opened(url, work_dir):
            yield url
    finally:
        await postgres.drop_database(name)


async def users(n: int) -> list[User]:
    tag = uuid.uuid4().hex[:8]
    await User.bulk_create([User(email=f"{tag}-{i}@example.com", username=f"{tag}-{i}",
                                 password_hash="x") for i in range(n)])
    return list(await User.filter(email__startswith=f"{tag}-").order_by("id"))


async def group_of(chat: ChatService, people: list[User]) -> int:
    """A group of ``people`` (the first its owner), its creation's background work (the
    inboxes' update) done: what a test counts or times next is its own."""
    view = await chat.create_conversation(Actor.of_user(people[0]), title="g", kind="group",
                                          participant_ids=[u.id for u in people[1:]])
    await chat.drain()
    return int(view["id"])

