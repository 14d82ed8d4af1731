"""Password hashing with Argon2id, with the node's parameters (``PasswordHashing``)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend.settings import PasswordHashing


class Passwords:
    """Hashes new passwords with the configured parameters and verifies any stored hash (each
    names its own parameters)."""

    def __init__(self, hashing: PasswordHashing) -> None:
        self._hasher = PasswordHasher(time_cost=hashing.time_cost,
                                      memory_cost=hashing.memory_kib,
                                      parallelism=hashing.parallelism)
        # Verified against when the account does not exist, so that the time taken does not
        # tell an attacker whether an email is registered. Made at the first such login (a
        # hash costs what a verify does), not at start-up: every node start paid for it.
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None and self._dummy_hash is None:
            # The first login of an unknown account: making the dummy takes the time a verify
            # would, and no verify follows.
            self._dummy_hash = self._hasher.hash("not-a-real-password")
            return False
        try:
            return (self._hasher.verify(password_hash or self._dummy_hash or "", password)
                    and password_hash is not None)
        except (VerificationError, InvalidHashError):
            return False


_passwords: Passwords | None = None


def use(hashing: PasswordHashing) -> None:
    """Hash new passwords with ``hashing`` from now on (the app and the command line set it
    from their settings)."""
    global _passwords
    _passwords = Passwords(hashing)


def _current() -> Passwords:
    if _passwords is None:
        use(PasswordHashing())
    assert _passwords is not None
    return _passwords


def hash_password(password: str) -> str:
    return _current().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    return _current().verify(password, password_hash)
