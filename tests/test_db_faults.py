"""Database faults end to end: a real server on PostgreSQL reached through a TCP proxy that the
test stalls (the database hangs) and cuts (the database is gone).

While the database is away, every door answers each send with the ``unavailable`` fault in its
own shape (REST 503 with ``detail`` and ``Retry-After``, a Socket.IO ack ``{ok: false}``, a raw
``error`` frame) within a bounded time, ``/readyz`` says 503 without hanging, and every
connection stays open. Once it is back, the same connections send again (retries with the same
``client_msg_id`` included), and every acknowledged message is in the history exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tortoise.exceptions import (
    DBConnectionError,
    IntegrityError,
    OperationalError,
    TransactionManagementError,
)

from backend.service.faults import database_fault, is_database_fault
from backend.settings import ConfigurationError, Settings
from backend.storage.database import tortoise_config
from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres
from tests.support.tcp_proxy import TcpProxy, proxy_for_database
from tests.test_raw_support import RawClient, close_code, raw
from tests.test_socketio_helpers import Client, chat_client

#: The server's DB_TIMEOUT_SECONDS: a statement, a connect, a cancel each wait this long.
DB_TIMEOUT = 1.0
#: A send during a stall fails after its statement times out and its cancel is given up:
#: about two timeouts; the bound leaves room for a loaded machine.
FAULT_BOUND = 4 * DB_TIMEOUT + 2
#: Waits for answers, generous: a failing test fails on its assertion, not on a hang.
WAIT = 15.0


@pytest.fixture(scope="module")
def faulty_database(work_dir: Path, postgres: Postgres) -> Iterator[tuple[ServerProcess, TcpProxy]]:
    """A server of its own whose PostgreSQL is behind a proxy the test controls."""
    name, url = asyncio.run(postgres.create_database())
    proxy, proxied = proxy_for_database(url)
    server = None
    try:
        server = start_server(work_dir / "db-faults", proxied,
                              DB_TIMEOUT_SECONDS=str(DB_TIMEOUT))
        yield server, proxy
    finally:
        if server is not None:
            server.stop()
        proxy.close()
        asyncio.run(postgres.drop_database(name))


class Doors:
    """One user's three open connections to one conversation: REST, Socket.IO /chat and raw
    /ws/chat/; ``send`` tries a message through each at once."""

    def __init__(self, api: Api, user: TestUser, cid: int, sio: Client, ws: RawClient) -> None:
        self.api, self.user, self.cid, self.sio, self.ws = api, user, cid, sio, ws
        #: client_msg_id → id of the stored message, for every acknowledged send.
        self.acked: dict[str, int] = {}

    async def send(self, tag: str) -> dict[str, dict[str, Any]]:
        """Send ``tag`` through every door concurrently: door → ``{"ok": True, "id"}`` or
        ``{"ok": False, "error": {code, message}, ...}``."""
        rest, sio, ws = await asyncio.gather(self._rest(f"rest-{tag}"), self._sio(f"sio-{tag}"),
                                             self._raw(f"raw-{tag}"))
        return {"rest": rest, "sio": sio, "raw": ws}

    async def _rest(self, key: str) -> dict[str, Any]:
        response = await self.api.http.post(
            f"/api/v1/chat/sessions/{self.cid}/messages", headers=self.user.headers,
            json={"content": key, "client_msg_id": key}, timeout=WAIT)
        body = response.json()
        if response.status_code == 201:
            return self._acked(key, body["id"])
        return {"ok": False, "status": response.status_code, "error": body,
                "retry_after_header": response.headers.get("retry-after")}

    async def _sio(self, key: str) -> dict[str, Any]:
        ack = await self.sio.sio.call("chat_message", {"conversation_id": self.cid,
                                                       "content": key, "client_msg_id": key},
                                      namespace="/chat", timeout=WAIT)
        if ack.get("ok"):
            return self._acked(key, ack["message"]["id"])
        return {"ok": False, "error": ack["error"]}

    async def _raw(self, key: str) -> dict[str, Any]:
        await self.ws.send({"type": "chat_message", "content": key, "client_msg_id": key})
        frame = await self.ws.next(
            lambda f: f.get("type") == "error" or (
                f.get("type") == "chat_message" and f["message"]["client_msg_id"] == key),
            within=WAIT)
        if frame["type"] == "chat_message":
            return self._acked(key, frame["message_id"])
        return {"ok": False, "error": frame}

    def _acked(self, key: str, message_id: int) -> dict[str, Any]:
        assert self.acked.setdefault(key, message_id) == message_id, "a retry got a new id"
        return {"ok": True, "id": message_id}

    def still_open(self) -> None:
        assert self.sio.connected and not self.sio.disconnected.is_set()
        assert self.ws.ws.close_code is None


def assert_unavailable(outcome: dict[str, dict[str, Any]]) -> None:
    """Each door refused with the fault code, in its own shape."""
    rest = outcome["rest"]
    assert rest["ok"] is False and rest["status"] == 503, rest
    assert rest["error"]["code"] == "unavailable" and rest["error"]["detail"], rest
    assert rest["retry_after_header"] is not None and int(rest["retry_after_header"]) >= 1
    sio = outcome["sio"]
    assert sio["ok"] is False and sio["error"]["code"] == "unavailable", sio
    assert sio["error"]["message"] and sio["error"]["retry_after"] > 0
    assert outcome["raw"]["ok"] is False, outcome["raw"]
    frame = outcome["raw"]["error"]
    assert frame["type"] == "error" and frame["code"] == "unavailable", frame
    assert frame["message"] == frame["error"] and frame["message"]


def assert_sent(outcome: dict[str, dict[str, Any]]) -> None:
    assert all(result["ok"] for result in outcome.values()), outcome


async def readyz(api: Api) -> tuple[int, float, dict[str, Any]]:
    started = time.monotonic()
    response = await api.http.get("/readyz", timeout=WAIT)
    return response.status_code, time.monotonic() - started, response.json()


async def until_ready(api: Api) -> None:
    """/readyz says 200 again once the database is back. A probe still in flight from the
    outage (probes share one query) may answer 503 first; the next one starts afresh."""
    async with asyncio.timeout(WAIT):
        while (await readyz(api))[0] != 200:
            pass


async def while_down(api: Api, doors: Doors, tag: str) -> None:
    """Sends, new connections and a readiness probe while the database is away: each is
    answered within a bound, refused as a server fault, and the open connections stay."""
    started = time.monotonic()
    outcome, raw_close, sio_refusal, (status, took, body) = await asyncio.gather(
        doors.send(tag),
        close_code(f"{api.base_url.replace('http', 'ws')}/ws/chat/{doors.cid}/"
                   f"?token={doors.user.token}"),
        Client(api.base_url, "/chat").refused({"token": doors.user.token}),
        readyz(api),
    )
    elapsed = time.monotonic() - started
    assert_unavailable(outcome)
    assert elapsed < FAULT_BOUND, f"the doors answered after {elapsed:.1f} s"
    # A new connection is refused as a server fault (1011), not as a bad credential (4002).
    assert raw_close == 1011
    assert sio_refusal["code"] == 1011 and sio_refusal["message"], sio_refusal
    assert status == 503 and body["checks"]["database"] is False, body
    assert took < DB_TIMEOUT + 1.5, f"/readyz took {took:.1f} s"
    doors.still_open()


async def test_stall_and_cut_are_unavailable_and_lose_nothing(
    faulty_database: tuple[ServerProcess, TcpProxy],
) -> None:
    server, proxy = faulty_database
    api = Api(server.base_url)
    user = await api.register()
    cid = int((await api.conversation(user))["id"])
    sio = await chat_client(api, user, cid)
    try:
        await sio.next("user_joined")  # joined: the socket may send in the conversation
        async with raw(f"{server.ws_url}/ws/chat/{cid}/?token={user.token}") as ws:
            await ws.next("recent_messages")
            doors = Doors(api, user, cid, sio, ws)
            assert_sent(await doors.send("before"))

            proxy.stall()
            try:
                await while_down(api, doors, "stalled")
            finally:
                proxy.restore()
            await until_ready(api)
            assert_sent(await doors.send("stalled"))  # the same ids, retried
            assert_sent(await doors.send("after-stall"))

            proxy.cut()
            try:
                await while_down(api, doors, "cut")
            finally:
                proxy.restore()
            await until_ready(api)
            assert_sent(await doors.send("cut"))
            assert_sent(await doors.send("after-cut"))
            doors.still_open()

        # Acknowledged before, after, and retried after each fault: each stored exactly once.
        history = await api.history(user, cid)
        keys = Counter(m["client_msg_id"] for m in history)
        assert all(count == 1 for count in keys.values()), keys
        stored = {m["client_msg_id"]: m["id"] for m in history}
        assert len(doors.acked) == 5 * 3
        assert {key: stored.get(key) for key in doors.acked} == doors.acked
    finally:
        await sio.close()
        await api.aclose()

    # Each refusal is logged once, as a warning without a traceback; no door took a fault
    # for a bug (internal_error and its traceback).
    lines = server.log().splitlines()
    faults = [i for i, line in enumerate(lines) if "event=database_unavailable" in line]
    assert len(faults) == 2 * 5, "\n".join(lines[i] for i in faults)
    assert all(" WARNING " in lines[i] and not lines[i + 1].startswith("Traceback")
               for i in faults if i + 1 < len(lines))
    # asyncpg's own reconnect attempts too: one line each, with the error, no traceback.
    assert not [line for line in lines if line.startswith("Traceback")], server.log()[-3000:]
    doors_loggers = (" confab.namespaces:", " confab.raw:", " confab.app:", " confab.rest:")
    bugs = [line for line in lines if " ERROR " in line and any(n in line for n in doors_loggers)]
    assert not bugs, bugs


# -- SQLite: a lock held past the busy timeout ----------------------------------------------


@pytest.fixture(scope="module")
def sqlite_faults(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "db-faults-sqlite", DB_TIMEOUT_SECONDS=str(DB_TIMEOUT))
    yield server
    server.stop()


async def test_sqlite_lock_past_busy_timeout_is_unavailable(
    sqlite_faults: ServerProcess,
) -> None:
    """Another process holding SQLite's write lock (a backup, a CLI) makes a send wait for
    ``DB_TIMEOUT_SECONDS`` (the busy timeout), then answer 503; released, it goes through."""
    api = Api(sqlite_faults.base_url)
    user = await api.register()
    cid = int((await api.conversation(user))["id"])
    url = f"/api/v1/chat/sessions/{cid}/messages"
    holder = sqlite3.connect(Path(sqlite_faults.env["DATA_DIR"]) / "chat.sqlite3",
                             isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        response = await api.http.post(url, headers=user.headers,
                                       json={"content": "locked", "client_msg_id": "k-1"})
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "unavailable" and response.headers["retry-after"]
        # The busy timeout is DB_TIMEOUT_SECONDS, not sqlite3's default of 5 s.
        assert DB_TIMEOUT * 0.9 <= took < DB_TIMEOUT + 1.5, f"answered after {took:.1f} s"
        holder.execute("ROLLBACK")
        response = await api.http.post(url, headers=user.headers,
                                       json={"content": "locked", "client_msg_id": "k-1"})
        assert response.status_code == 201, response.text
        assert [m["client_msg_id"] for m in await api.history(user, cid)] == ["k-1"]
    finally:
        holder.close()
        await api.aclose()


# -- what is a fault -------------------------------------------------------------------------


def _raised(exc: BaseException, during: BaseException | None = None) -> BaseException:
    """``exc`` as raised (with its ``__context__``) while handling ``during``."""
    try:
        if during is None:
            raise exc
        try:
            raise during
        except BaseException:
            raise exc  # noqa: B904 - the implicit context is the point
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(("exc", "fault"), [
    (TimeoutError(), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"), True),
    (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
    (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
    (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
    (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
    (DBConnectionError("can't connect"), True),
    (OperationalError(sqlite3.OperationalError("database is locked")), True),
    (_raised(TransactionManagementError("Transaction is in invalid state"), TimeoutError()),
     True),
    # bugs and bad input stay what they are
    (OperationalError(asyncpg.exceptions.PostgresSyntaxError("syntax error")), False),
    (OperationalError(sqlite3.OperationalError("no such table: message")), False),
    (asyncpg.InterfaceError("the server expects 2 arguments, 1 was passed"), False),
    (TransactionManagementError("Transaction already finalised"), False),
    (IntegrityError("duplicate key"), False),
    (ValueError("bad"), False),
])
def test_what_is_a_database_fault(exc: BaseException, fault: bool) -> None:
    assert is_database_fault(exc) is fault
    error = database_fault(exc, door="test", action="unit")
    if fault:
        assert error is not None and (error.code, error.status) == ("unavailable", 503)
        assert error.retry_after > 0  # type: ignore[attr-defined]
    else:
        assert error is None


def test_timeouts_reach_the_drivers() -> None:
    """DB_TIMEOUT_SECONDS is asyncpg's statement and connect timeout and SQLite's busy
    timeout; migrations keep the connect bound only (a migration may take long)."""
    env = {"JWT_SECRET": "x" * 40, "DB_TIMEOUT_SECONDS": "2.5"}
    postgres = Settings.from_env({**env, "DATABASE_URL": "postgres://u:p@db:5432/chat"})
    credentials = tortoise_config(postgres)["connections"]["default"]["credentials"]
    assert credentials["command_timeout"] == 2.5 and credentials["timeout"] == 2.5
    migrating = tortoise_config(postgres, migrating=True)["connections"]["default"]
    assert migrating["credentials"]["command_timeout"] is None
    assert migrating["credentials"]["timeout"] == 2.5
    sqlite = Settings.from_env({**env, "DATABASE_URL": "sqlite://:memory:"})
    assert tortoise_config(sqlite)["connections"]["default"]["credentials"]["busy_timeout"] == 2500
    assert Settings.from_env({"JWT_SECRET": "x" * 40}).db_timeout_seconds == 5.0
    with pytest.raises(ConfigurationError, match="DB_TIMEOUT_SECONDS"):
        Settings.from_env({**env, "DB_TIMEOUT_SECONDS": "0"})
