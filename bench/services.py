"""The databases and the Redis a benchmark run uses.

SQLite: a fresh file in the run's folder. PostgreSQL: ``DATABASE_URL`` when it names PostgreSQL,
else ``postgres://postgres@127.0.0.1:5432/test`` (trust); a fresh database is created on it for
the run and dropped afterwards. Each server run gets a copy of the fixtures' database
(``copy_of``), so that every run starts from the same state: what an earlier run stored (tens
of thousands of messages and their search index) must not slow a later one.
Redis (``--nodes 2``): ``REDIS_URL``, else 127.0.0.1:6379, with a unique ``REDIS_PREFIX`` per
server start, so runs never see each other's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def postgres_admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url.replace("postgresql://", "postgres://", 1)
    return DEFAULT_POSTGRES


def is_local(url: str) -> bool:
    """Does ``url`` name a server on this machine (whose processes /proc can read)?"""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or (not host and "host=/" in parts.query)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextlib.contextmanager
def database(kind: str, run_dir: Path) -> Iterator[str]:
    """Yield the URL of a fresh database of ``kind`` (``sqlite`` or ``postgres``)."""
    if kind == "sqlite":
        path = run_dir / "sqlite" / "bench.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        yield f"sqlite://{path}"
        return
    with _postgres_database() as url:
        yield url


@contextlib.contextmanager
def _postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` when given), dropped afterwards."""
    admin = postgres_admin_url()
    name = f"confab_bench_{uuid.uuid4().hex[:12]}"
    copying = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"{copying}'))
    try:
        yield _with_database(admin, name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def copy_of(kind: str, url: str) -> Iterator[str]:
    """Yield the URL of a copy of the database at ``url``, dropped afterwards: a SQLite file
    copied by SQLite's online backup (WAL included), or a PostgreSQL database made with the
    fixtures' database as its template (no session may be connected to it meanwhile)."""
    if kind == "sqlite":
        import sqlite3

        source = Path(url.removeprefix("sqlite://"))
        target = source.with_name(f"run-{uuid.uuid4().hex[:8]}.sqlite3")
        with contextlib.closing(sqlite3.connect(source)) as src, \
                contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        try:
            yield f"sqlite://{target}"
        finally:
            for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
                path.unlink(missing_ok=True)
        return
    with _postgres_database(template=urlsplit(url).path.lstrip("/")) as copy:
        yield copy


async def _admin(admin: str, statement: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL: cannot connect to {admin} ({exc}); set DATABASE_URL to a server "
            "where this user may CREATE DATABASE, or run with --db sqlite"
        ) from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def postgres_backends(database_url: str) -> list[int]:
    """Process ids of the PostgreSQL backends connected to the database of ``database_url``
    (readable in /proc when the server runs on this machine; others are skipped when read):
    their CPU is the database's share of the work, reported beside the node's own."""
    import asyncpg

    name = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(postgres_admin_url(), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


async def redis_url() -> str:
    """``REDIS_URL``, else the local Redis; fails with a message naming what is missing."""
    from redis.asyncio import Redis

    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        raise RuntimeError(
            f"Redis: {url} does not answer ({exc}); --nodes 2 needs Redis (set REDIS_URL)"
        ) from exc
    finally:
        await client.aclose()
    return url


async def redis_pid(url: str) -> int | None:
    """The redis-server process id when it runs on this machine (its CPU is reported too)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    pid = info.get("process_id")
    return int(pid) if pid else None


async def drop_redis_prefix(url: str, prefix: str) -> None:
    """Remove the keys a run left under its prefix (nodes clean up on SIGTERM; this is a
    safety net)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
