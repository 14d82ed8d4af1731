"""An actor holds its user's facts, not their row: made from the row, equal when the row's
read fields are, shared by the actors of one user while they hold them."""

from __future__ import annotations

import gc
from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime

import pytest

from backend.service.actors import Actor, shared_facts
from backend.service.serializers import user_dict
from models import Role, User, UserFacts


def _row(**changes: object) -> User:
    values: dict[str, object] = {
        "id": 41, "email": "ann@example.com", "username": "ann", "password_hash": "x",
        "first_name": "Ann", "last_name": "Lee", "avatar_url": "https://a.example/ann.png",
        "role": Role.AGENT, "legacy_tokens_revoked_at": None}
    values.update(changes)
    return User(**values)


def test_facts_are_the_rows_read_fields() -> None:
    row = _row(legacy_tokens_revoked_at=datetime(2026, 1, 2, tzinfo=UTC))
    facts = UserFacts.of(row)
    for field in fields(UserFacts):
        assert getattr(facts, field.name) == getattr(row, field.name), field.name
    assert facts.display_name == row.display_name == "Ann Lee"
    assert facts.is_staff and row.is_staff
    assert user_dict(facts) == user_dict(row)
    assert UserFacts.of(_row(first_name="", last_name="")).display_name == "ann"
    assert not UserFacts.of(_row(role=Role.USER)).is_staff
    # Immutable, slotted: nothing to add per instance, nothing changes under its holders.
    with pytest.raises(FrozenInstanceError):
        facts.role = Role.USER  # type: ignore[misc]
    assert not hasattr(facts, "__dict__")


def test_actors_of_one_user_share_equal_facts() -> None:
    first = Actor.of_user(_row(), "s1")
    second = Actor.of_user(_row(), "s2")  # another read of the same row
    assert isinstance(first.user, UserFacts) and not isinstance(first.user, User)
    assert first.user is second.user
    assert (first.session_id, second.session_id) == ("s1", "s2")
    assert first.key == second.key == "user:41"
    # The row changed since: the newer facts are not the older ones, and from now on the
    # newer ones are shared; actors made before keep what they were made with.
    promoted = Actor.of_user(_row(role=Role.ADMIN))
    assert promoted.user is not first.user and promoted.user is not None
    assert promoted.user.role == Role.ADMIN and first.user is not None
    assert first.user.role == Role.AGENT
    assert Actor.of_user(_row(role=Role.ADMIN)).user is promoted.user
    # Another user's equal-looking facts are never shared.
    assert Actor.of_user(_row(id=42, username="bob")).user is not first.user


def test_facts_held_by_no_actor_are_forgotten() -> None:
    facts = shared_facts(UserFacts.of(_row(id=43)))
    assert shared_facts(UserFacts.of(_row(id=43))) is facts
    del facts
    gc.collect()
    again = UserFacts.of(_row(id=43))
    assert shared_facts(again) is again
