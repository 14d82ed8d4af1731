"""Shared fixtures: real server processes on SQLite and PostgreSQL, and REST helpers.

Servers are started once per test session and shared; tests isolate themselves by making their
own users and conversations. Tests that need special settings call ``start_server`` themselves.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres, find_postgres

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-123"


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="confab-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def postgres(work_dir: Path) -> Iterator[Postgres]:
    server = find_postgres(str(work_dir))
    yield server
    server.stop()


def _with_admin(server: ServerProcess) -> ServerProcess:
    result = server.cli("create-user", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD,
                        "--role", "admin", "--first-name", "Ada", "--last-name", "Admin")
    assert result.returncode == 0, result.stderr
    return server


@pytest.fixture(scope="session")
def sqlite_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = _with_admin(start_server(work_dir / "sqlite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(work_dir: Path, postgres: Postgres) -> Iterator[ServerProcess]:
    name, url = asyncio.run(postgres.create_database())
    server = _with_admin(start_server(work_dir / "postgres", url))
    yield server
    server.stop()
    asyncio.run(postgres.drop_database(name))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """The app on each database: tests using this run once per backend."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


async def _admin(base_url: str) -> TestUser:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post("/api/v1/auth/login",
                                   json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.text
        data = response.json()
    return TestUser(data["user"]["id"], ADMIN_EMAIL, ADMIN_PASSWORD, data["access_token"],
                    data["refresh_token"], "admin", "Ada", "Admin")


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[Api]:
    """REST helpers against ``server`` (each database in turn)."""
    client = Api(server.base_url, await _admin(server.base_url))
    yield client
    await client.aclose()


@pytest.fixture
async def sqlite_api(sqlite_server: ServerProcess) -> AsyncIterator[Api]:
    """REST helpers against the SQLite server only (real-time tests)."""
    client = Api(sqlite_server.base_url, await _admin(sqlite_server.base_url))
    yield client
    await client.aclose()
