"""The single-row reads of every connect, as plain statements: a user's facts by id (the
token's user, as its actor holds them), whom a user blocked (their history's filter), a
participant's unread figures (the conversation view every Socket.IO join answers with), a
login session's state (a token first seen on this node: every client of a reconnect storm
onto a node just started), and a conversation with its device and customer and who takes
part in it (the access facts a node loads at the first connect to each conversation).

Through the ORM each of these cost more to build (the query's objects, its SQL text) than to
run; here the statement is written once, and the values are converted as the ORM's own reads
convert them, so what callers get is the same. On SQLite they run on the event
loop's thread, on a read-only connection of their own (``InlineReads``): a lookup by key is a
few microseconds there, against the hand-over to aiosqlite's worker thread and back.

What a connect needs together is read together: the token's user with its login session
when the node holds no verdict on the session, and with the user's blocks when the door sends
the history next and the node does not hold them (``token_user``); the conversation with its
device, its customer and its participants (``conversation_and_parties``). On PostgreSQL every
statement is a round trip: a first connect to ``/ws/chat/`` ran five of these, now two (its
history page aside). Outside a transaction they run on up to three pool connections these
reads hold between reads (``HeldConnection``): Tortoise's pool acquires and releases a
connection for every statement, which cost about as much of the node's CPU as the read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.connection import get_connection
from tortoise.models import Model

from backend.compat.tortoise import attach_related, model_from_row
from backend.storage.held_connection import HeldConnection
from backend.storage.side_connections import open_beside
from models import (
    AuthSession,
    Block,
    Conversation,
    Customer,
    MobileSession,
    Participant,
    Role,
    User,
    UserFacts,
)

#: A user's columns that make their facts (``UserFacts``' fields), and whether they are active
#: (of the users table as ``u``).
_FACT_FIELDS = ("id", "email", "username", "first_name", "last_name", "avatar_url", "role",
                "legacy_tokens_revoked_at", "is_active")
_USER_COLUMNS = ", ".join(
    f'u."{User._meta.fields_db_projection[name]}" AS "{name}"' for name in _FACT_FIELDS)
#: The ORM's conversion of the one column the drivers do not give as Python has it (SQLite's
#: text for a date): what a read through the ORM applies to it.
_REVOKED_AT = User._meta.fields_map["legacy_tokens_revoked_at"]


def _statements(first: str, second: str) -> tuple[str, str, str]:
    return (
        f'SELECT "blocked_id" FROM "{Block._meta.db_table}" WHERE "blocker_id" = {first}',
        # The offset and the counter in one statement: read at the same moment.
        f'SELECT p."unread_offset", c."total_messages" FROM "{Participant._meta.db_table}" p '
        f'JOIN "{Conversation._meta.db_table}" c ON c."id" = p."conversation_id" '
        f'WHERE p."conversation_id" = {first} AND p."user_id" = {second}',
        # Whether a login session is live: a connect with a token first seen here.
        f'SELECT "user_id", "revoked_at" IS NOT NULL AS "revoked" '
        f'FROM "{AuthSession._meta.db_table}" WHERE "id" = {first}',
    )


@functools.cache
def _token_user(postgres: bool, session: bool, blocks: bool) -> str:
    """A user's facts by id (the first parameter); with ``session`` the state of a login
    session (the second: its owner and whether it was revoked, NULL for no such session);
    with ``blocks`` whom the user blocked and who blocked them (``blocked``, ``blockers``: a
    list each on PostgreSQL, comma-separated text or NULL for none on SQLite)."""
    user, session_id = ("$1", "$2") if postgres else ("?1", "?2")
    columns = [_USER_COLUMNS]
    join = ""
    if session:
        columns.append('s."user_id" AS "session_user_id", '
                       's."revoked_at" IS NOT NULL AS "session_revoked"')
        join = f' LEFT JOIN "{AuthSession._meta.db_table}" s ON s."id" = {session_id}'
    if blocks:
        for name, found, by in (("blocked", "blocked_id", "blocker_id"),
                                ("blockers", "blocker_id", "blocked_id")):
            among = f'FROM "{Block._meta.db_table}" b WHERE b."{by}" = u."id"'
            columns.append(f'ARRAY(SELECT b."{found}" {among}) AS "{name}"' if postgres
                           else f'(SELECT group_concat(b."{found}") {among}) AS "{name}"')
    return (f'SELECT {", ".join(columns)} FROM "{User._meta.db_table}" u{join} '
            f'WHERE u."id" = {user}')


#: ``_token_user``'s statement of each kind, by (with the session, with the blocks).
_TOKEN_USER = {(session, blocks): functools.partial(_token_user, session=session, blocks=blocks)
               for session in (False, True) for blocks in (False, True)}


#: Each statement read inline at DEBUG, as Tortoise's clients log theirs
#: ("tortoise.db_client").
_log = logging.getLogger(__name__)

_SQLITE = _statements("?", "?")
_POSTGRES = _statements("$1", "$2")


#: A conversation's relations read with it: (relation, its id column, its model, the alias of
#: its table, the prefix of its columns' names in the row).
_RELATED: tuple[tuple[str, str, type[Model], str, str], ...] = (
    ("device", "device_id", MobileSession, "d", "device."),
    ("customer", "customer_id", Customer, "k", "customer."),
)


@functools.cache
def _conversation(postgres: bool, with_parties: bool) -> str:
    """A conversation's row by id, its device's and its customer's beside it (their columns'
    names prefixed), and with ``with_parties`` who takes part: the ids of the active
    participants (``members``) and of the others (``former``), a list each on PostgreSQL,
    comma-separated text (or NULL for none) on SQLite. Written at the first read, once the
    ORM is up: foreign keys' columns join a model's projection then."""
    columns = [f'c."{column}" AS "{column}"'
               for column in Conversation._meta.fields_db_projection.values()]
    joins = []
    for _, id_column, model, alias, prefix in _RELATED:
        columns += [f'{alias}."{column}" AS "{prefix}{column}"'
                    for column in model._meta.fields_db_projection.values()]
        joins.append(f'LEFT JOIN "{model._meta.db_table}" {alias} '
                     f'ON {alias}."id" = c."{id_column}"')
    if with_parties:
        for name, active in (("members", ""), ("former", "NOT ")):
            among = (f'FROM "{Participant._meta.db_table}" p WHERE p."conversation_id" = c."id" '
                     f'AND {active}p."is_active"')
            columns.append(f'ARRAY(SELECT p."user_id" {among}) AS "{name}"' if postgres
                           else f'(SELECT group_concat(p."user_id") {among}) AS "{name}"')
    return (f'SELECT {", ".join(columns)} FROM "{Conversation._meta.db_table}" c '
            f'{" ".join(joins)} WHERE c."id" = {"$1" if postgres else "?"}')


_CONVERSATION = functools.partial(_conversation, with_parties=False)
_CONVERSATION_AND_PARTIES = functools.partial(_conversation, with_parties=True)


class InlineReads:
    """SQLite reads on the event loop's thread, by a read-only connection of their own (as
    Tortoise's: autocommit; rows as dicts by column name). In WAL mode a reader waits for no
    writer; a read that finds the database busy anyway (or fails in any way) returns None
    and the caller asks Tortoise's connection, whose errors are the ones callers know. Not
    for an in-memory database, where a second connection would open another database."""

    def __init__(self) -> None:
        self._client: BaseDBAsyncClient | None = None
        self._connection: sqlite3.Connection | None = None
        #: Each statement's column names (the statements are few: constants, and the pages'
        #: lists of at most a page's ids).
        self._names: dict[str, tuple[str, ...]] = {}

    def rows(self, client: BaseDBAsyncClient, sql: str,
             params: Sequence[Any]) -> list[dict[str, Any]] | None:
        connection = self._connection_for(client)
        if connection is None:
            return None
        try:
            cursor = connection.execute(sql, params)
            rows = cursor.fetchall()
        except sqlite3.Error:
            return None
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s %s", sql, params)
        if not rows:
            return []
        # Plain tuples zipped with the column names: a third cheaper than ``sqlite3.Row``
        # made into a dict, for the same dicts. A statement's names are read once.
        names = self._names.get(sql)
        if names is None:
            names = self._names[sql] = tuple(column[0] for column in cursor.description)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _connection_for(self, client: BaseDBAsyncClient) -> sqlite3.Connection | None:
        if client is not self._client:  # the first read, or the database was reopened
            self.close()
            self._client = client
            try:
                connection = open_beside(client, query_only=1)
            except sqlite3.Error:  # busy now (a pragma that writes): set up at the next read
                self._client = None
                return None
            if connection is None:
                return None
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._client = self._connection = None
        self._names.clear()  # another database may name its columns otherwise


_inline = InlineReads()


#: The PostgreSQL connections these reads hold, tried in turn: a connect's reads are small
#: round trips and connects come together. The first is held from a pool of three or more
#: (the send path may hold another), each further one from a pool one larger.
_HELD = tuple(HeldConnection(min_pool=3 + n) for n in range(3))


async def _held_rows(client: BaseDBAsyncClient, sql: str,
                     params: Sequence[Any]) -> list[dict[str, Any]] | None:
    """The rows read on a held connection, or None when all are busy or not held, or the
    read failed there: then the caller asks Tortoise's client, whose errors are the ones
    callers know (a read may be asked twice)."""
    for held in _HELD:
        try:
            connection = await held.take(client)
        except Exception:  # the pool could not give one (the database down): Tortoise says so
            return None
        if connection is not None:
            break
    else:
        return None
    try:
        records = await connection.fetch(sql, *params)
    except asyncio.CancelledError:
        await held.drop(connection)
        raise
    except Exception:
        await held.drop(connection)  # it may be broken: the pool decides
        return None
    held.give_back(connection)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s %s", sql, params)
    return [dict(record) for record in records]


async def close() -> None:
    """Close the inline connection and hand the held ones back (the database is closing)."""
    _inline.close()
    for held in _HELD:
        await held.close()


async def _rows(which: int, params: list[Any]) -> list[dict[str, Any]]:
    return await rows_of(lambda postgres: (_POSTGRES if postgres else _SQLITE)[which], params)


async def rows_of(statement: Callable[[bool], str], params: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of ``statement(postgres)`` (its text for PostgreSQL's placeholders or
    SQLite's), as dicts by column name: inline on SQLite, else through Tortoise's client (the
    caller's transaction's, within one: a read there must see what it wrote)."""
    client: BaseDBAsyncClient = get_connection("default")
    in_transaction = isinstance(client, TransactionalDBClient)
    if client.capabilities.dialect == "postgres":
        if not in_transaction:
            held = await _held_rows(client, statement(True), params)
            if held is not None:
                return held
        return await client.execute_query_dict(statement(True), list(params))
    sql = statement(False)
    rows = None if in_transaction else _inline.rows(client, sql, params)
    if rows is None:
        rows = await client.execute_query_dict(sql, list(params))
    return rows


@dataclass(frozen=True, slots=True)
class TokenUser:
    """What ``token_user`` read: the user's facts (None: no such user, or not active), the
    session's ``(user_id, revoked)`` (None: not asked, no such session or no such user), and
    the user's ``(blocked, blockers)`` (None: not asked, or no such user)."""

    facts: UserFacts | None
    session: tuple[int, bool] | None = None
    blocks: tuple[list[int], list[int]] | None = None


async def token_user(user_id: int, session_id: str | None = None,
                     blocks: bool = False) -> TokenUser:
    """The facts of user ``user_id`` (``active_user_facts``), and in the same statement what
    else a connect asks with them: the state of login session ``session_id``
    (``session_state``) when given, and with ``blocks`` the user's blocks both ways
    (``blocks_of``). A token whose session the node holds no verdict on, by a user whose
    blocks it does not hold, costs one round trip, not three."""
    params: list[Any] = [user_id] if session_id is None else [user_id, session_id]
    rows = await rows_of(_TOKEN_USER[session_id is not None, blocks], params)
    if not rows:
        return TokenUser(None)
    row = rows[0]
    owner = row.get("session_user_id")
    return TokenUser(
        _facts(row),
        None if owner is None else (cast(int, owner), bool(row["session_revoked"])),
        (_ids(row["blocked"]), _ids(row["blockers"])) if blocks else None)


async def active_user_facts(user_id: int) -> UserFacts | None:
    """The facts of user ``user_id`` when the user exists and is active, else None: what
    ``UserFacts.of(await User.get_or_none(id=user_id))`` gives, without the row made into a
    model (about 6 µs) only to be dropped."""
    return (await token_user(user_id)).facts


def _facts(row: dict[str, Any]) -> UserFacts | None:
    """A user's facts from their row's ``_FACT_FIELDS``; None when the user is not active."""
    if not row["is_active"]:
        return None
    revoked_at = row["legacy_tokens_revoked_at"]
    if revoked_at is not None:
        revoked_at = _REVOKED_AT.to_python_value(revoked_at)
    return UserFacts(row["id"], row["email"], row["username"], row["first_name"],
                     row["last_name"], row["avatar_url"], Role(row["role"]), revoked_at)


async def blocked_ids(blocker_id: int) -> list[int]:
    """Ids of the users ``blocker_id`` blocked."""
    rows = await _rows(0, [blocker_id])
    return [cast(int, row["blocked_id"]) for row in rows]


async def unread_figures(conversation_id: int, user_id: int) -> tuple[int, int] | None:
    """A participant's ``(unread_offset, total_messages)`` in one conversation, or None
    when the user never took part in it."""
    rows = await _rows(1, [conversation_id, user_id])
    if not rows:
        return None
    return cast(int, rows[0]["unread_offset"]), cast(int, rows[0]["total_messages"])


async def session_state(session_id: str) -> tuple[int, bool] | None:
    """A login session's ``(user_id, revoked)``, or None when there is no such session."""
    rows = await _rows(2, [session_id])
    if not rows:
        return None
    return cast(int, rows[0]["user_id"]), bool(rows[0]["revoked"])


async def conversation_of(conversation_id: int) -> Conversation | None:
    """The conversation with ``device`` and ``customer`` loaded, as
    ``Conversation.get_or_none(id=...).select_related("device", "customer")`` gives it, or
    None. One statement: the ORM's join cost more to build than to run."""
    rows = await rows_of(_CONVERSATION, [conversation_id])
    return _with_related(rows[0]) if rows else None


async def conversation_and_parties(
    conversation_id: int
) -> tuple[Conversation, list[int], list[int]] | None:
    """``conversation_of``'s conversation, the user ids of its active participants and of
    its others, in one statement (the access facts a node loads at the first connect to
    each conversation: one round trip, not three or four); None when there is no such
    conversation."""
    rows = await rows_of(_CONVERSATION_AND_PARTIES, [conversation_id])
    if not rows:
        return None
    row = rows[0]
    return _with_related(row), _ids(row["members"]), _ids(row["former"])


def _with_related(row: dict[str, Any]) -> Conversation:
    conversation = model_from_row(Conversation, row)
    for relation, _, model, _, prefix in _RELATED:
        found = None
        if row[f"{prefix}id"] is not None:  # the related row, left joined: it is there
            found = model_from_row(model, {column: row[f"{prefix}{column}"] for column
                                           in model._meta.fields_db_projection.values()})
        attach_related(conversation, relation, found)
    return conversation


def _ids(found: list[int] | str | None) -> list[int]:
    """User ids as the statement gives them: a list (PostgreSQL), or comma-separated text,
    None for none (SQLite's ``group_concat``)."""
    if found is None:
        return []
    if isinstance(found, str):
        return [int(user_id) for user_id in found.split(",")]
    return found


@functools.cache
def _blocks(postgres: bool) -> str:
    mark = "$1" if postgres else "?1"  # one parameter, named twice
    return (f'SELECT "blocker_id", "blocked_id" FROM "{Block._meta.db_table}" '
            f'WHERE "blocker_id" = {mark} OR "blocked_id" = {mark}')


async def blocks_of(user_id: int) -> tuple[list[int], list[int]]:
    """Whom ``user_id`` blocked and who blocked ``user_id``, in one statement: a connect asks
    both (the history's filter, and who must not get its presence)."""
    blocked: list[int] = []
    blockers: list[int] = []
    for row in await rows_of(_blocks, [user_id]):
        if row["blocker_id"] == user_id:
            blocked.append(cast(int, row["blocked_id"]))
        if row["blocked_id"] == user_id:
            blockers.append(cast(int, row["blocker_id"]))
    return blocked, blockers
