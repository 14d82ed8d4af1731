"""The single-row reads of every connect, as plain statements: a user by id (the token's
user) and whom a user blocked (their history's filter).

Through the ORM each of these cost more to build (the query's objects, its SQL text) than to
run; here the statement is written once and the row becomes a model as the ORM's own reads
make it (``model_from_row``), so what callers get is the same.
"""

from __future__ import annotations

from typing import cast

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from backend.compat.tortoise import model_from_row
from models import Block, User

_USER_COLUMNS = ", ".join(f'"{column}"' for column in User._meta.fields_db_projection.values())


def _statements(mark: str) -> tuple[str, str]:
    return (
        f'SELECT {_USER_COLUMNS} FROM "{User._meta.db_table}" WHERE "id" = {mark}',
        f'SELECT "blocked_id" FROM "{Block._meta.db_table}" WHERE "blocker_id" = {mark}',
    )


_SQLITE = _statements("?")
_POSTGRES = _statements("$1")


def _client() -> tuple[BaseDBAsyncClient, tuple[str, str]]:
    client: BaseDBAsyncClient = connections.get("default")
    return client, _POSTGRES if client.capabilities.dialect == "postgres" else _SQLITE


async def user_by_id(user_id: int) -> User | None:
    """The user ``user_id``, or None (``User.get_or_none(id=user_id)``)."""
    client, (user_sql, _) = _client()
    rows = await client.execute_query_dict(user_sql, [user_id])
    return model_from_row(User, rows[0]) if rows else None


async def blocked_ids(blocker_id: int) -> list[int]:
    """Ids of the users ``blocker_id`` blocked."""
    client, (_, blocked_sql) = _client()
    rows = await client.execute_query_dict(blocked_sql, [blocker_id])
    return [cast(int, row["blocked_id"]) for row in rows]
