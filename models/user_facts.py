"""A user as an actor holds them: the row's fields the service reads, immutable and slotted.

A live connection keeps its actor for as long as it is open; a ``User`` row is an ORM
instance with a dict of every column (the password hash, the creation date) and the ORM's
own state, about 0.7 KB, where these facts are the object and the strings the service reads.
They are read at connect (and at each request) like the row, so they are as current as it
was then; what must be current at the moment (a role taken away, a deactivation) is asked of
the database or closes the user's connections, as it was with the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from models.people import Role, User, display_name


@dataclass(frozen=True, slots=True, weakref_slot=True)
class UserFacts:
    """What the service, the doors and the real-time spine read of an acting user. Equal
    facts are interchangeable: connections of one user share one (``backend.service.actors``).
    Only active users act, so there is no ``is_active``."""

    id: int
    email: str
    username: str
    first_name: str
    last_name: str
    avatar_url: str
    role: Role
    #: The row's, for a token without a login session (backend/auth/sessions.py).
    legacy_tokens_revoked_at: datetime | None = None

    @classmethod
    def of(cls, user: User) -> UserFacts:
        """The facts of ``user``'s row as it was read."""
        return cls(user.id, user.email, user.username, user.first_name, user.last_name,
                   user.avatar_url, Role(user.role), user.legacy_tokens_revoked_at)

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.AGENT, Role.ADMIN)

    @property
    def display_name(self) -> str:
        """'first last', or the username when both are empty (as ``User.display_name``)."""
        return display_name(self.first_name, self.last_name, self.username)
