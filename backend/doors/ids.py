"""Ids, resume points, id lists and page requests as clients send them, read one way on every
door (Socket.IO payloads, raw frames, REST bodies and query strings through ``pydantic_id``).

An id is an integer, or a string of digits (seed 003's clients treat ids as opaque strings).
Ids are 32-bit: a larger one (or one below 1) names nothing and never reaches a query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.service.errors import MAX_ID, ChatError, invalid, not_found, valid_id

#: The most ids one list may carry (reads of ``message_ids``).
MAX_IDS = 1000
#: Longer digit strings are not turned into integers: they could not be an id anyway.
_MAX_DIGITS = 18


def as_id(value: Any, name: str = "message_id") -> int:
    """``value`` as an id; raises ``invalid`` naming ``name``."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        value = int(value)
    if not valid_id(value):
        raise invalid(f"{name} must be an integer id from 1 to {MAX_ID}")
    checked: int = value
    return checked


def as_after_id(value: Any, name: str) -> int:
    """A resume point: an id, or 0 for "from the first message" (CONTRACT section 8)."""
    if value in (0, "0") and not isinstance(value, bool):
        return 0
    return as_id(value, name)


def as_ids(value: Any, name: str = "message_ids", most: int = MAX_IDS) -> list[int]:
    """A list of at most ``most`` ids."""
    if not isinstance(value, list) or len(value) > most:
        raise invalid(f"{name} must be a list of at most {most} ids")
    return [as_id(item, name) for item in value]


def named_id(value: Any, what: str) -> int:
    """The id of a thing a connection or a path names (a raw route's path, Socket.IO's
    ``auth``, a REST path): one that cannot exist is not found (404, 4003), like one that
    does not."""
    try:
        return as_id(value, what)
    except ChatError:
        raise not_found(what) from None


def conversation_ref(value: Any) -> int:
    """The conversation a connection names (``named_id``)."""
    return named_id(value, "Conversation")


# -- fields of a payload (a dict) -----------------------------------------------------------


def id_field(data: dict[str, Any], name: str) -> int:
    """A required id field."""
    if data.get(name) is None:
        raise invalid(f"{name} is required")
    return as_id(data[name], name)


def optional_id(data: dict[str, Any], name: str) -> int | None:
    return None if data.get(name) is None else as_id(data[name], name)


def optional_after_id(data: dict[str, Any], name: str) -> int | None:
    return None if data.get(name) is None else as_after_id(data[name], name)


def id_list(data: dict[str, Any], name: str) -> list[int] | None:
    return None if data.get(name) is None else as_ids(data[name], name)


def page_request(data: dict[str, Any], default: int, most: int) -> tuple[int, str | None]:
    """``limit`` (1 to ``most``, ``default`` when absent) and ``cursor`` (an opaque string from
    the previous page; empty is none) of a ``get_conversations`` request."""
    limit = data.get("limit", default)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise invalid(f"limit must be an integer from 1 to {most}")
    cursor = data.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise invalid("cursor must be a string")
    return limit, cursor or None


# -- REST (pydantic) ------------------------------------------------------------------------


def pydantic(parse: Callable[[Any, str], int]) -> Callable[[Any], int]:
    """``parse`` (``as_id``, ``as_after_id``) as a pydantic ``BeforeValidator``: its refusal
    becomes a validation error (REST's 422)."""

    def validate(value: Any) -> int:
        try:
            return parse(value, "id")
        except ChatError as error:
            raise ValueError(error.message) from None

    return validate


def resume_point(since: Any) -> tuple[int, str | None]:
    """A ``since`` of the event log (CONTRACT §9): ``{position, epoch}`` (Socket.IO) or a
    bare position; returns the position (0 or more) and the epoch (None when not given)."""
    epoch: Any = None
    position = since
    if isinstance(since, dict):
        position, epoch = since.get("position"), since.get("epoch")
    if isinstance(position, str) and position.isdigit():
        position = int(position)
    if isinstance(position, bool) or not isinstance(position, int) or not (
            0 <= position <= 2**62):
        raise invalid("since must hold a position: an integer of 0 or more")
    if epoch is not None and (not isinstance(epoch, str) or len(epoch) > 64):
        raise invalid("since.epoch must be a string")
    return position, epoch or None
