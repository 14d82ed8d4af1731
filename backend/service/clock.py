"""Timestamps as clients see them: ISO 8601 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

#: orjson writes an aware datetime as ``isoformat`` does (microseconds only when not zero),
#: UTC as ``Z``: a third of the CPU of ``isoformat`` (whose ``%``-formatting and offset
#: formatting cost ~10,000 instructions) and the ``replace`` after it. Every message sent
#: formats its stamp.
_UTC_Z = orjson.OPT_UTC_Z


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not UTC:  # the clock's and the drivers' stamps are UTC already
        moment = moment.astimezone(UTC)
    try:
        return orjson.dumps(moment, option=_UTC_Z)[1:-1].decode()
    except TypeError:  # a type orjson does not take as a datetime
        return moment.isoformat().replace("+00:00", "Z")


def iso_now() -> str:
    return orjson.dumps(now(), option=_UTC_Z)[1:-1].decode()  # ``now`` is UTC already
