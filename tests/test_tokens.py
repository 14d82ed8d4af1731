"""JWT handling: HS256 pinned, expiry checked, access and refresh told apart; the session
claim, and each node's memory of which sessions are live."""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from backend.auth import accounts
from backend.auth import sessions as sessions_module
from backend.auth.sessions import REVOKED, Sessions
from backend.auth.tokens import (
    LEGACY_SESSION,
    Claims,
    InvalidToken,
    decode_claims,
    decode_token,
    issue_pair,
    issue_token,
)
from backend.service.actors import Actor
from backend.service.grants import Grants
from backend.service.ports import ControlHandler
from backend.settings import Settings
from backend.storage import lookups
from models import AuthSession, Role, User, UserFacts


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path), "JWT_SECRET": "s" * 40})


def test_access_token_round_trip_and_claims(settings: Settings) -> None:
    token = issue_token(settings, 42, "access")
    assert decode_token(settings, token, "access") == 42
    claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == settings.access_token_seconds


def test_refresh_token_is_not_an_access_token(settings: Settings) -> None:
    pair = issue_pair(settings, 7)
    with pytest.raises(InvalidToken, match="access"):
        decode_token(settings, pair.refresh_token, "access")
    assert decode_token(settings, pair.refresh_token, "refresh") == 7


def test_unsigned_and_other_algorithms_are_refused(settings: Settings) -> None:
    now = int(time.time())
    claims = {"sub": "1", "type": "access", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(InvalidToken):
        decode_token(settings, unsigned, "access")
    hs512 = jwt.encode(claims, settings.jwt_secret, algorithm="HS512")
    with pytest.raises(InvalidToken):
        decode_token(settings, hs512, "access")


def test_expired_and_foreign_tokens_are_refused(settings: Settings) -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": "1", "type": "access", "iat": now - 100, "exp": now - 60},
                         settings.jwt_secret, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(settings, expired, "access")
    foreign = jwt.encode({"sub": "1", "type": "access", "iat": now, "exp": now + 60},
                         "another-secret-" * 3, algorithm="HS256")
    with pytest.raises(InvalidToken):
        decode_token(settings, foreign, "access")
    with pytest.raises(InvalidToken):
        decode_token(settings, "not.a.jwt", "access")


def test_issuer_and_audience_are_checked_when_configured(settings: Settings) -> None:
    strict = replace(settings, jwt_issuer="confab", jwt_audience="chat")
    token = issue_token(strict, 3, "access")
    assert decode_token(strict, token, "access") == 3
    with pytest.raises(InvalidToken):
        decode_token(strict, issue_token(settings, 3, "access"), "access")


def test_tokens_issued_together_carry_their_session(settings: Settings) -> None:
    pair = issue_pair(settings, 7, "abc123")
    for token, kind in ((pair.access_token, "access"), (pair.refresh_token, "refresh")):
        claims = decode_claims(settings, token, kind)  # type: ignore[arg-type]
        assert (claims.user_id, claims.session_id) == (7, "abc123")
    # Issued before sessions existed: the user's legacy session.
    legacy = decode_claims(settings, issue_token(settings, 7, "access"), "access")
    assert legacy.session_id == LEGACY_SESSION


class FakeBus:
    """The ControlBus port on one process: controls run on every "node" attached to it."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[ControlHandler]] = {}

    def on_control(self, name: str, handler: ControlHandler) -> None:
        self.handlers.setdefault(name, []).append(handler)

    async def broadcast(self, name: str, data: dict[str, Any]) -> None:
        for handler in self.handlers.get(name, []):
            await handler(data)


async def test_session_checks_ask_the_database_once_per_node_until_revoked(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    revoked: set[str] = set()

    async def session_state(session_id: str) -> tuple[int, bool] | None:
        reads.append(session_id)
        return 7, session_id in revoked

    monkeypatch.setattr(sessions_module, "session_state", session_state)
    bus = FakeBus()
    node_a, node_b = Sessions(), Sessions()
    node_a.attach(bus, clustered=True)
    node_b.attach(bus, clustered=True)
    user = SimpleNamespace(id=7, legacy_tokens_revoked_at=None)
    first, second = Claims(7, "s1", 0), Claims(7, "s2", 0)
    for _ in range(3):
        assert await node_a.is_live(user, first)  # type: ignore[arg-type]
        assert await node_b.is_live(user, first)  # type: ignore[arg-type]
    assert await node_a.is_live(user, second)  # type: ignore[arg-type]
    assert reads == ["s1", "s1", "s2"]  # once per node and session

    # Revoked on a third node: both forget at once, without asking again.
    revoked.add("s1")
    await bus.broadcast(REVOKED, {"user_id": 7, "session_id": "s1"})
    assert not await node_a.is_live(user, first)  # type: ignore[arg-type]
    assert not await node_b.is_live(user, first)  # type: ignore[arg-type]
    assert await node_a.is_live(user, second)  # type: ignore[arg-type]
    await bus.broadcast(REVOKED, {"user_id": 7, "session_id": None})  # all of them
    assert not await node_a.is_live(user, second)  # type: ignore[arg-type]
    assert reads == ["s1", "s1", "s2"]

    # A node that missed a revocation believes a session live for its TTL at most.
    node_b.ttl = 0.0
    revoked.add("s2")
    assert not await node_b.is_live(user, second)  # type: ignore[arg-type]
    assert reads[-1] == "s2"


async def test_a_session_not_held_is_read_with_its_user_and_then_held(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """A token whose session this node holds no verdict on: the user's row and the session
    in one read, the verdict remembered (unless a revocation was heard meanwhile); once held,
    the user's row alone. With the grants of a door that reads history, the user's blocks in
    the same read, kept there. No user, no verdict kept."""
    reads: list[tuple[int, str | None, bool]] = []
    states = {"s1": (7, False), "s2": (7, True), "s3": (8, False), "s6": (7, False)}
    revoke_during_read: list[str] = []

    async def token_user(user_id: int, session_id: str | None = None,
                         blocks: bool = False) -> lookups.TokenUser:
        reads.append((user_id, session_id, blocks))
        for revoked in revoke_during_read:
            await bus.broadcast(REVOKED, {"user_id": 7, "session_id": revoked})
        if user_id not in (7, 8):
            return lookups.TokenUser(None)
        return lookups.TokenUser(_facts(user_id), None if session_id is None
                                 else states.get(session_id), ([8], []) if blocks else None)

    monkeypatch.setattr(accounts, "token_user", token_user)
    bus = FakeBus()
    node = Sessions()
    node.attach(bus, clustered=True)

    async def actor(user_id: int, session_id: str, grants: Grants | None = None) -> Actor:
        token = issue_token(settings, user_id, "access", session_id)
        return await accounts.actor_from_token(settings, node, token, grants)

    assert (await actor(7, "s1")).user == _facts(7)
    assert (await actor(7, "s1")).user == _facts(7)
    assert reads == [(7, "s1", False), (7, None, False)]
    # Revoked, unknown, another user's: refused, and held so.
    for session_id in ("s2", "s4", "s3"):
        reads.clear()
        for _ in range(2):
            with pytest.raises(accounts.CredentialInvalid, match="logged out"):
                await actor(7, session_id)
        assert reads == [(7, session_id, False), (7, None, False)]
    # No such user: nothing held of the session.
    reads.clear()
    for _ in range(2):
        with pytest.raises(accounts.CredentialInvalid, match="does not exist"):
            await actor(9, "s5")
    assert reads == [(9, "s5", False)] * 2
    # A revocation heard while the read was under way: its verdict is used once, not held.
    revoke_during_read.append("s9")
    reads.clear()
    assert (await actor(7, "s6")).session_id == "s6"
    revoke_during_read.clear()
    assert (await actor(7, "s6")).session_id == "s6"
    assert reads == [(7, "s6", False)] * 2
    # A legacy token: the user's row alone (its verdict is on the row).
    reads.clear()
    legacy = await accounts.actor_from_token(settings, node,
                                             issue_token(settings, 7, "access"))
    assert legacy.session_id == LEGACY_SESSION and reads == [(7, None, False)]
    # With grants: the blocks read with the user while not held there, then not.
    grants = Grants()
    reads.clear()
    await actor(7, "s1", grants)
    assert grants.holds_blocks(7) and await grants.blocked(7) == {8}
    await actor(7, "s1", grants)
    assert reads == [(7, None, True), (7, None, False)]
    # A change forgotten while the read was under way: the blocks read are not kept.
    grants.forget(blocker_user_id=7)
    original = token_user

    async def forgetting(user_id: int, session_id: str | None = None,
                         blocks: bool = False) -> lookups.TokenUser:
        grants.forget(blocker_user_id=7)
        return await original(user_id, session_id, blocks)

    monkeypatch.setattr(accounts, "token_user", forgetting)
    await actor(7, "s1", grants)
    assert not grants.holds_blocks(7)


async def test_legacy_tokens_are_live_until_the_users_legacy_tokens_are_revoked() -> None:
    sessions = Sessions()
    now = int(time.time())
    user = SimpleNamespace(id=7, legacy_tokens_revoked_at=None)
    old = Claims(7, LEGACY_SESSION, now - 100)
    assert await sessions.is_live(user, old)  # type: ignore[arg-type]
    user.legacy_tokens_revoked_at = datetime.fromtimestamp(now - 10, UTC)
    assert not await sessions.is_live(user, old)  # type: ignore[arg-type]
    assert await sessions.is_live(user, Claims(7, LEGACY_SESSION, now))  # type: ignore[arg-type]


async def test_a_revocation_heard_closes_and_a_new_connection_asks_again(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node runs its revocation handlers (the hub closes its sockets of the sessions)
    once its memory knows; a connection asks again once registered: from that memory, or for
    a legacy token from the user's row, read again."""
    async def live_session(session_id: str) -> tuple[int, bool] | None:
        return 7, False

    monkeypatch.setattr(sessions_module, "session_state", live_session)
    bus = FakeBus()
    node = Sessions()
    node.attach(bus, clustered=True)
    told: list[tuple[int, str | None, bool]] = []

    async def closing(user_id: int, session_id: str | None) -> None:
        told.append((user_id, session_id, await node.still_live(connection)))

    node.on_revoked(closing)
    user = _facts(7)
    connection = Actor.of_user(user, "s1")
    assert await node.is_live(user, Claims(7, "s1", 0))
    assert await node.still_live(connection)
    await bus.broadcast(REVOKED, {"user_id": 7, "session_id": "s1"})
    assert told == [(7, "s1", False)]
    assert not await node.still_live(connection)
    await bus.broadcast(REVOKED, {"user_id": 7, "session_id": None})
    assert told[-1] == (7, None, False)

    # A legacy token's connection: revoked when the user's legacy tokens were revoked since
    # the connect read the user.
    stored = SimpleNamespace(id=7, legacy_tokens_revoked_at=None)

    async def user_row(id: int) -> Any:
        return stored

    monkeypatch.setattr(User, "get_or_none", user_row)
    legacy = Actor.of_user(user, LEGACY_SESSION)
    assert await node.still_live(legacy)
    stored.legacy_tokens_revoked_at = datetime.now(UTC)
    assert not await node.still_live(legacy)
    assert await node.still_live(
        Actor.of_user(_facts(7, stored.legacy_tokens_revoked_at), LEGACY_SESSION))


def _facts(user_id: int, legacy_tokens_revoked_at: datetime | None = None) -> UserFacts:
    return UserFacts(user_id, f"u{user_id}@example.com", f"u{user_id}", "", "", "", Role.USER,
                     legacy_tokens_revoked_at)


async def test_no_revocation_heard_since_the_connect_check_asks_nothing_again(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection registered with no revocation heard since its credential was checked is
    live without another read (a revocation heard later finds it registered and closes it);
    once one was heard, the session is asked again."""
    reads: list[object] = []

    async def user_row(id: int) -> Any:
        reads.append(id)
        return SimpleNamespace(id=7, legacy_tokens_revoked_at=datetime.now(UTC))

    monkeypatch.setattr(User, "get_or_none", user_row)
    bus = FakeBus()
    node = Sessions()
    node.attach(bus, clustered=True)
    legacy = Actor.of_user(_facts(7), LEGACY_SESSION)
    heard = node.heard
    assert await node.still_live(legacy, heard)
    assert reads == []
    await bus.broadcast(REVOKED, {"user_id": 7, "session_id": None})
    assert not await node.still_live(legacy, heard)
    assert reads == [7]


async def test_the_periodic_check_asks_for_the_sessions_revoked_in_its_window(
    database: None
) -> None:
    """The periodic check reads only what was revoked since it last answered (less the time a
    live verdict is believed and a margin): a session revoked long before is not read again,
    one revoked now is, and one revoked while it was away (a missed control) too."""
    user = await User.create(email="r@example.com", username="r", password_hash="x")
    node = Sessions()
    node.attach(FakeBus(), clustered=True, recheck_seconds=30.0)
    old, fresh, live = await node.open(user), await node.open(user), await node.open(user)
    window = node.ttl + sessions_module.RECHECK_MARGIN_SECONDS
    long_ago = datetime.now(UTC) - timedelta(seconds=window + 600)
    await AuthSession.filter(id=old).update(revoked_at=long_ago)
    assert await node.recently_revoked() == set()

    # Revoked by another process (no control heard): found, and no longer believed live.
    await AuthSession.filter(id=fresh).update(revoked_at=datetime.now(UTC))
    assert await node.recently_revoked() == {fresh}
    assert not await node.is_live(user, Claims(user.id, fresh, 0))
    assert await node.is_live(user, Claims(user.id, live, 0))

    # Its window moves on from the last answer: what is older than it is not read again.
    await AuthSession.filter(id=fresh).update(revoked_at=long_ago)
    assert await node.recently_revoked() == set()


# -- access tokens kept once verified ------------------------------------------------------


def test_a_kept_access_token_still_expires_and_matures(settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.auth import tokens

    token = issue_token(settings, 42, "access", "s1")
    issued = jwt.decode(token, options={"verify_signature": False})
    now = float(issued["iat"])
    monkeypatch.setattr(tokens, "clock", lambda: now)
    assert decode_claims(settings, token, "access").user_id == 42  # verified, kept
    # Later uses are checked against the clock as jwt.decode checks, leeway included.
    now = issued["exp"] + tokens.LEEWAY_SECONDS - 0.5
    assert decode_claims(settings, token, "access").user_id == 42
    now = issued["iat"] - tokens.LEEWAY_SECONDS - 0.5  # the clock stepped back
    with pytest.raises(InvalidToken, match="not yet valid"):
        decode_claims(settings, token, "access")
    now = issued["exp"] + tokens.LEEWAY_SECONDS
    with pytest.raises(InvalidToken, match="expired"):
        decode_claims(settings, token, "access")


def test_kept_tokens_are_checked_against_the_settings_and_type(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.auth import tokens

    token = issue_token(settings, 42, "access")
    assert decode_token(settings, token, "access") == 42
    rotated = replace(settings, jwt_secret="t" * 40)
    with pytest.raises(InvalidToken):
        decode_token(rotated, token, "access")
    with pytest.raises(InvalidToken):
        decode_token(replace(settings, jwt_audience="elsewhere"), token, "access")
    with pytest.raises(InvalidToken):
        decode_token(settings, token, "refresh")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidToken):
        decode_token(settings, tampered, "access")
    monkeypatch.setattr(tokens, "VERIFIED_MAX", 3)
    for user_id in range(10):
        decode_token(settings, issue_token(settings, user_id, "access"), "access")
    assert len(tokens._verified) <= 3
