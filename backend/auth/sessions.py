"""Login sessions: opened at login, kept through refreshes, revoked by a logout.

The tokens issued together carry their session's id (claim ``sid``, backend/auth/tokens.py);
a session is a row of ``auth_sessions``. A revoked session's refresh token is refused, and so is
its access token, on every request and connect. So that those hot paths do not ask the
database each time, every node keeps what it learned of a session for a while (``Sessions``);
when it must ask, the session is read with the token's user, in one statement (``to_read``);
a logout tells every node at once through the ``auth_sessions_revoked`` control, and the
entries' lifetime bounds how long a node that missed the control (Redis away) believes it.
The same control closes each node's sockets of the revoked sessions (``on_revoked``), and a
connection asks again once it is registered (``still_live``): a logout made while it was being
set up, whose control found nothing to close yet, closes it then. The node that makes the
revocation runs the control itself at once (it does not wait for Redis to bring it back), and
every node of a cluster asks, once per entry lifetime, which of its sockets' sessions were
revoked since it last asked (``recently_revoked``): a control missed in an outage closes them
within that bound too.

Tokens issued before sessions existed have no ``sid``: they are the user's one legacy session
(``LEGACY_SESSION``), revoked as a whole by ``users.legacy_tokens_revoked_at`` (any logout of
such a token, and every ``all`` logout), read with the user's row the check loads anyway. A
legacy refresh token is exchanged once for a session of its own: that revokes the legacy
tokens too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from backend.auth.tokens import LEGACY_SESSION, Claims
from backend.service.actors import Actor
from backend.service.ports import ControlBus
from backend.storage.lookups import session_state
from models import AuthSession, PushSubscription, User, UserFacts

#: The control every node runs when sessions were revoked: ``{user_id, session_id}`` (the
#: session id None: every session of the user).
REVOKED = "auth_sessions_revoked"
#: How long a node believes a live session is live without asking again, in a cluster (where
#: a missed control is possible) and alone (where every revocation is made here).
TTL_SECONDS = 30.0
LOCAL_TTL_SECONDS = 300.0
#: Past this many sessions known, the least recently checked are forgotten.
MAX_ENTRIES = 100_000
#: How far before the last answered check the next one looks for revocations, beyond the
#: time a live verdict is believed: the nodes' clocks and a revocation's commit may lag that much.
RECHECK_MARGIN_SECONDS = 60.0

#: Told of a revocation: ``(user_id, session_id)``, the session None for every one of the user.
RevokedHandler = Callable[[int, str | None], Awaitable[None]]


class Sessions:
    """This node's view of which login sessions are live."""

    def __init__(self, ttl: float = LOCAL_TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        #: session id → (user id, revoked, when it was read): oldest read first.
        self._known: dict[str, tuple[int, bool, float]] = {}
        #: Counts the revocations heard: a read that one overtook is not remembered.
        self._revocations = 0
        self.bus: ControlBus | None = None
        self._on_revoked: list[RevokedHandler] = []
        #: When the last periodic check that answered began (at first: when this node's view
        #: began, older than any of its sockets).
        self._checked_at = datetime.now(UTC)

    def attach(self, bus: ControlBus, *, clustered: bool,
               recheck_seconds: float = TTL_SECONDS) -> None:
        """Learn of revocations made on any node through ``bus``; in a cluster, believe what
        was read for ``recheck_seconds`` at most."""
        self.bus = bus
        self.ttl = recheck_seconds if clustered else LOCAL_TTL_SECONDS
        bus.on_control(REVOKED, self._revoked_control)

    def on_revoked(self, handler: RevokedHandler) -> None:
        """Run ``handler`` on this node whenever any node revokes sessions, once this node's
        memory knows (the hub closes its sockets of them: one control does both)."""
        self._on_revoked.append(handler)

    async def open(self, user: User) -> str:
        """A new session of ``user`` (a login): its id, for the tokens to carry."""
        session_id = uuid.uuid4().hex
        await AuthSession.create(id=session_id, user_id=user.id)
        self._remember(session_id, user.id, revoked=False)
        return session_id

    def to_read(self, claims: Claims) -> bool:
        """Whether the session of an access token must be read from the database: this node
        holds no verdict on it (a legacy token's is on the user's row). The caller reads it
        with the user (``lookups.token_user``) and gives the state to ``learned``, with
        ``heard`` taken before the read."""
        return claims.session_id != LEGACY_SESSION and self._held(claims.session_id) is None

    async def is_live(self, user: UserFacts, claims: Claims) -> bool:
        """Whether the session of an access token is live: without a database query when this
        node read it recently."""
        if claims.session_id == LEGACY_SESSION:
            return _legacy_live(user, claims)
        return await self._live(user.id, claims.session_id)

    @property
    def heard(self) -> int:
        """How many revocations this node has heard: taken before a connect's check and given
        to ``still_live`` once the connection is registered."""
        return self._revocations

    async def still_live(self, actor: Actor, heard: int | None = None) -> bool:
        """Whether the login session a connection was opened with is still live, asked again
        once the connection is registered (where a logout's close would find it): a logout
        whose control ran between the connect's check and the registration closed nothing.
        Answered from this node's memory as ``is_live`` is (a revocation heard needs no
        query). ``heard``: ``self.heard`` taken before the connect's check; when no
        revocation was heard since, the check's answer stands without asking again (one
        heard from now on finds the connection registered and closes it)."""
        user, session_id = actor.user, actor.session_id
        if user is None or session_id is None:
            return True  # a device or a customer: no login session
        if heard is not None and heard == self._revocations:
            return True
        if session_id == LEGACY_SESSION:
            # Rare (no such token is issued any more): the user's row read again; any
            # revocation of the legacy tokens since the connect's read revoked this one.
            row = await User.get_or_none(id=user.id)
            return row is not None and (
                row.legacy_tokens_revoked_at == user.legacy_tokens_revoked_at)
        return await self._live(user.id, session_id)

    def _held(self, session_id: str) -> tuple[int, bool, float] | None:
        """What this node read of a session, while it believes it: a revoked one for good,
        a live one for ``ttl``."""
        known = self._known.get(session_id)
        if known is not None and (known[1] or time.monotonic() - known[2] < self.ttl):
            return known
        return None

    async def _live(self, user_id: int, session_id: str) -> bool:
        known = self._held(session_id)
        if known is not None:
            return known[0] == user_id and not known[1]
        heard = self._revocations
        return self.learned(user_id, session_id, await session_state(session_id), heard)

    def learned(self, user_id: int, session_id: str, state: tuple[int, bool] | None,
                heard: int) -> bool:
        """Whether a session read as ``state`` (``session_state``'s answer) is a live one
        of ``user_id``'s; remembered unless a revocation was heard since ``heard`` (taken
        before the read, which that revocation may have overtaken)."""
        revoked = state is None or state[1] or state[0] != user_id
        if heard == self._revocations:
            self._remember(session_id, user_id, revoked=revoked)
        return not revoked

    async def refresh(self, user: User, claims: Claims) -> str | None:
        """The session a refresh token continues: its id when live (the database asked, not
        the cache: a refresh is rare), None when revoked. A legacy token's refresh opens a
        session of its own, once: it revokes the legacy tokens in the same statement that
        checks they are live, so a second refresh (or a concurrent one) is refused."""
        if claims.session_id == LEGACY_SESSION:
            issued = datetime.fromtimestamp(claims.issued_at, UTC)
            # Live as ``_legacy_live`` says: never revoked, or revoked before the token's
            # second (``iat`` whole seconds: ``int(revoked) < iat`` is ``revoked < iat``).
            exchanged = await User.filter(
                Q(legacy_tokens_revoked_at__isnull=True)
                | Q(legacy_tokens_revoked_at__lt=issued), id=user.id,
            ).update(legacy_tokens_revoked_at=datetime.now(UTC))
            return await self.open(user) if exchanged else None
        updated = await AuthSession.filter(
            id=claims.session_id, user_id=user.id, revoked_at=None
        ).update(refreshed_at=datetime.now(UTC))
        return claims.session_id if updated else None

    async def revoke(self, user_id: int, session_id: str | None) -> None:
        """Revoke one session of user ``user_id`` (``session_id``), or with None every one of
        them (the legacy one too), and tell every node."""
        now = datetime.now(UTC)
        if session_id is None or session_id == LEGACY_SESSION:
            await User.filter(id=user_id).update(legacy_tokens_revoked_at=now)
        if session_id is None:
            await AuthSession.filter(user_id=user_id, revoked_at=None).update(revoked_at=now)
        elif session_id != LEGACY_SESSION:
            await AuthSession.filter(id=session_id, user_id=user_id).update(revoked_at=now)
        # The devices subscribed to push notifications in what is logged out stop getting them.
        devices = PushSubscription.filter(user_id=user_id)
        if session_id is not None:
            devices = devices.filter(session_id=session_id)
        await devices.delete()
        control = {"user_id": user_id, "session_id": session_id}
        # Here first, whatever Redis does: the control is idempotent, and this node hears it
        # again from the bus with the others.
        await self._revoked_control(control)
        if self.bus is not None:
            await self.bus.broadcast(REVOKED, control)

    async def recently_revoked(self) -> set[str]:
        """The sessions revoked since the last answer, for the periodic check of a node's
        sockets (see the module's docstring): one indexed query for what changed, whatever the
        number of sockets. The window reaches back past the last answered check by the time a
        live verdict is believed (a socket may have connected on one read that long before)
        and ``RECHECK_MARGIN_SECONDS`` (a revocation's time is the revoking node's clock,
        committed a moment later). A deactivated user's sessions are revoked with it
        (``deactivate_user``). The legacy session is not among them (checked on the user's
        row)."""
        started = datetime.now(UTC)
        since = self._checked_at - timedelta(seconds=self.ttl + RECHECK_MARGIN_SECONDS)
        heard = self._revocations
        rows = await AuthSession.filter(revoked_at__gte=since).values_list("id", "user_id")
        self._checked_at = started
        if heard == self._revocations:
            for session_id, user_id in rows:
                self._remember(str(session_id), int(user_id), revoked=True)
        return {str(session_id) for session_id, _ in rows}

    async def _revoked_control(self, control: dict[str, Any]) -> None:
        """The ``auth_sessions_revoked`` control, run on every node (this one included)."""
        user_id, session_id = control.get("user_id"), control.get("session_id")
        if not isinstance(user_id, int):
            return
        self._revocations += 1
        if not isinstance(session_id, str):
            session_id = None
            for known_id, (owner, _, _) in list(self._known.items()):
                if owner == user_id:
                    self._remember(known_id, owner, revoked=True)
        elif session_id != LEGACY_SESSION:  # legacy tokens are checked on the user's row
            self._remember(session_id, user_id, revoked=True)
        for handler in self._on_revoked:
            await handler(user_id, session_id)

    def _remember(self, session_id: str, user_id: int, *, revoked: bool) -> None:
        self._known.pop(session_id, None)
        self._known[session_id] = (user_id, revoked, time.monotonic())
        while len(self._known) > self.max_entries:
            del self._known[next(iter(self._known))]


def _legacy_live(user: UserFacts, claims: Claims) -> bool:
    """A token without a session: live unless issued before the user's legacy tokens were
    revoked (``iat`` has whole seconds: one issued in the second of the revocation is
    refused; no token without a session is issued any more)."""
    revoked_at = user.legacy_tokens_revoked_at
    return revoked_at is None or claims.issued_at > int(revoked_at.timestamp())
