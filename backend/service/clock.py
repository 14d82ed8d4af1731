"""Timestamps as clients see them: ISO 8601 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from time import time_ns

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


#: The last second ``iso_at`` formatted and its text up to the seconds, as one tuple (read
#: and replaced whole: a thread never pairs one second with another's text).
_kept: tuple[int, str] = (-1, "")


def iso_now() -> str:
    """``iso(now())``, formatted by ``iso_at``."""
    return iso_at(time_ns())


def iso_at(epoch_ns: int) -> str:
    """``iso`` of the UTC moment ``epoch_ns`` nanoseconds after the epoch, to the microsecond
    below (as ``datetime.now``): the same text (microseconds left out when zero, as
    ``isoformat`` does), its date and time formatted once per second rather than at every
    call (every presence event and welcome frame stamps one)."""
    global _kept
    seconds, nanoseconds = divmod(epoch_ns, 1_000_000_000)
    kept_second, prefix = _kept
    if seconds != kept_second:
        prefix = datetime.fromtimestamp(seconds, UTC).isoformat().removesuffix("+00:00")
        _kept = (seconds, prefix)
    micro = nanoseconds // 1000
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"
