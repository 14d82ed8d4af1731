from typing import Any

from asyncpg import connection as connection
from asyncpg import exceptions as exceptions
from asyncpg.connection import Connection
from asyncpg.exceptions import InterfaceError as InterfaceError
from asyncpg.exceptions import PostgresConnectionError as PostgresConnectionError
from asyncpg.exceptions import PostgresError as PostgresError

async def connect(dsn: str | None = ..., **kwargs: Any) -> Connection: ...
