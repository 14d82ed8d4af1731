"""Shared fixtures: real server processes on SQLite and PostgreSQL, REST helpers, and a
migrated SQLite database opened in the test's own process (``database``); the chat service's
in-process fixtures are ``tests/support/in_process.py``'s.

Servers are started once per test session and shared; tests isolate themselves by making their
own users and conversations. Tests that need special settings call ``start_server`` themselves.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.settings import Settings
from backend.storage.database import close_database, open_database
from tests.support.client import Api, admin_of, with_admin
from tests.support.cluster import Cluster
from tests.support.fake_platform import FakePlatform
from tests.support.fuzz import FUZZ_WEBHOOK_SECRET
from tests.support.server import ServerProcess, start_server
from tests.support.services import (
    Postgres,
    PrivateRedis,
    find_postgres,
    find_redis,
    free_port,
)

pytest_plugins = ["tests.support.in_process"]


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="confab-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def postgres(work_dir: Path) -> Iterator[Postgres]:
    server = find_postgres(str(work_dir))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(work_dir: Path) -> Iterator[str]:
    """A Redis every cluster test shares (each cluster under its own key prefix)."""
    url, private = find_redis(str(work_dir))
    yield url
    if private is not None:
        private.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[str]:
    """A fresh, empty database of the test's own on each engine (its URL; nothing opened)."""
    if request.param == "sqlite":
        yield f"sqlite://{work_dir / f'in-process-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    name, url = asyncio.run(postgres.create_database())
    yield url
    asyncio.run(postgres.drop_database(name))


@pytest.fixture
def redis(work_dir: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, which it may kill (SIGKILL) and start again."""
    server = PrivateRedis(free_port(), str(work_dir / f"redis-{uuid.uuid4().hex[:6]}"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_database(postgres: Postgres) -> Iterator[str]:
    """A PostgreSQL database of the cluster tests' own, dropped at the end."""
    name, url = asyncio.run(postgres.create_database())
    yield url
    asyncio.run(postgres.drop_database(name))


@pytest.fixture(scope="session")
def cluster(work_dir: Path, cluster_database: str, redis_url: str) -> Iterator[Cluster]:
    """Two nodes (A with the test admin, B) sharing ``cluster_database`` and ``redis_url``."""
    nodes = Cluster(work_dir / "cluster", cluster_database, redis_url)
    try:
        with_admin(nodes.start_node())
        nodes.start_node()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def apis(cluster: Cluster) -> AsyncIterator[tuple[Api, Api]]:
    """REST helpers on node A and node B (one database: users made on A exist on B)."""
    a, b = cluster.nodes[:2]
    admin = await admin_of(a.base_url)
    pair = (Api(a.base_url, admin), Api(b.base_url, admin))
    yield pair
    for api in pair:
        await api.aclose()


@pytest.fixture(scope="session")
def sqlite_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = with_admin(start_server(work_dir / "sqlite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(work_dir: Path, postgres: Postgres) -> Iterator[ServerProcess]:
    name, url = asyncio.run(postgres.create_database())
    server = with_admin(start_server(work_dir / "postgres", url))
    yield server
    server.stop()
    asyncio.run(postgres.drop_database(name))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def fuzz_server(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[ServerProcess]:
    """A server of the fuzz tests' own on each database (their random users, groups and
    blocks stay out of the shared servers), with send rates high enough that the fuzzing
    reaches the handlers rather than the rate limiter, and the webhooks switched on."""
    name = url = None
    if request.param == "postgres":
        postgres: Postgres = request.getfixturevalue("postgres")
        name, url = asyncio.run(postgres.create_database())
    server = with_admin(start_server(
        work_dir / f"fuzz-{request.param}", url, SEND_RATE_PER_SECOND="10000",
        SEND_BURST="10000", REGISTRATIONS_PER_HOUR="100000",
        LOGIN_ATTEMPTS_PER_MINUTE="100000", TELEGRAM_WEBHOOK_SECRET=FUZZ_WEBHOOK_SECRET,
        INSTAGRAM_APP_SECRET=FUZZ_WEBHOOK_SECRET, INSTAGRAM_VERIFY_TOKEN=FUZZ_WEBHOOK_SECRET))
    yield server
    server.stop()
    if name is not None:
        asyncio.run(postgres.drop_database(name))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """The app on each database: tests using this run once per backend."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[Api]:
    """REST helpers against ``server`` (each database in turn)."""
    client = Api(server.base_url, await admin_of(server.base_url))
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePlatform]:
    """The outside platforms' APIs (Telegram, Instagram) of a module's tests."""
    platform = FakePlatform()
    yield platform
    platform.stop()


@pytest.fixture
async def sqlite_api(sqlite_server: ServerProcess) -> AsyncIterator[Api]:
    """REST helpers against the SQLite server only (real-time tests)."""
    client = Api(sqlite_server.base_url, await admin_of(sqlite_server.base_url))
    yield client
    await client.aclose()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[None]:
    """A fresh, migrated SQLite database, open through Tortoise in this process."""
    settings = Settings.from_env({"DATABASE_URL": f"sqlite://{tmp_path / 'db.sqlite3'}",
                                  "JWT_SECRET": "s" * 40, "DATA_DIR": str(tmp_path)})
    await open_database(settings, apply_migrations=True)
    try:
        yield
    finally:
        await close_database()
