"""Many users at once, written straight into a server's database (PostgreSQL or SQLite).

Registering through ``/register`` hashes each password with Argon2id (on purpose slow: about
50 ms of CPU each), so thousands of users that only need to exist (to be added to a group,
never to log in) are inserted in one statement instead. Their password hash is not a valid
one: they cannot log in; ``with_tokens`` gives them tokens of no session instead, signed as
the test servers sign (``TEST_SECRET``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime

import asyncpg

from backend.auth.tokens import issue_pair
from backend.settings import Settings
from tests.support.client import TestUser
from tests.support.server import TEST_SECRET


async def insert_users(database_url: str, count: int, *, active: bool = True,
                       role: str = "user") -> list[int]:
    """Insert ``count`` users of ``role`` and return their ids, in order.
    ``database_url``: ``postgres://...`` or ``sqlite:///path/to/file``."""
    tag = uuid.uuid4().hex[:10]
    if database_url.startswith("sqlite://"):
        return await asyncio.to_thread(_insert_sqlite, database_url.removeprefix("sqlite://"),
                                       tag, count, active, role)
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            'INSERT INTO "users" ("email", "username", "password_hash", "first_name", '
            '"last_name", "avatar_url", "role", "is_active", "created_at") '
            "SELECT 'bulk-' || $1 || '-' || n || '@example.com', 'bulk-' || $1 || '-' || n, "
            "'!', 'Bulk', 'User ' || n, '', $5, $2, $3 "
            'FROM generate_series(1, $4::int) AS n ORDER BY n RETURNING "id"',
            tag, active, datetime.now(UTC), count, role)
    finally:
        await connection.close()
    return sorted(int(row["id"]) for row in rows)


def _insert_sqlite(path: str, tag: str, count: int, active: bool, role: str) -> list[int]:
    stamp = datetime.now(UTC).isoformat(sep=" ")
    # The server writes the same file meanwhile: wait for its locks as it does for ours.
    connection = sqlite3.connect(path, timeout=30)
    try:
        with connection:
            connection.executemany(
                'INSERT INTO "users" ("email", "username", "password_hash", "first_name", '
                '"last_name", "avatar_url", "role", "is_active", "created_at") '
                "VALUES (?, ?, '!', 'Bulk', ?, '', ?, ?, ?)",
                [(f"bulk-{tag}-{n}@example.com", f"bulk-{tag}-{n}", f"User {n}", role,
                  int(active), stamp) for n in range(1, count + 1)])
        rows = connection.execute('SELECT "id" FROM "users" WHERE "username" LIKE ?',
                                  (f"bulk-{tag}-%",)).fetchall()
    finally:
        connection.close()
    return sorted(int(row[0]) for row in rows)


def with_tokens(user_ids: list[int], role: str) -> list[TestUser]:
    """Users inserted by ``insert_users``, with tokens (of no session) for the test servers."""
    settings = Settings.from_env({"JWT_SECRET": TEST_SECRET})
    users = []
    for user_id in user_ids:
        pair = issue_pair(settings, user_id)
        users.append(TestUser(user_id, f"bulk-{user_id}@example.com", "", pair.access_token,
                              pair.refresh_token, role, "Bulk", f"User {user_id}"))
    return users
