"""Client-facing timestamps: ``iso_at`` writes what ``iso`` of the same moment writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.service.clock import iso, iso_at, iso_now

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment(epoch_ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=epoch_ns // 1000)


def test_iso_at_is_iso_of_the_same_moment() -> None:
    base = 1_796_571_175 * 1_000_000_000
    cases = [base, base + 999, base + 1_000, base + 613_272_999, base + 999_999_999,
             base + 1_000_000_000, base + 1_000_000_001, base - 1, 0, 86_400 * 10**9 - 1]
    # Out of order too: the kept second must follow the moment asked about.
    for epoch_ns in cases + cases[::-1]:
        assert iso_at(epoch_ns) == iso(moment(epoch_ns)), epoch_ns


def test_a_whole_second_has_no_fraction() -> None:
    assert iso_at(1_796_571_175 * 1_000_000_000) == "2026-12-06T15:32:55Z"
    assert iso_at(1_796_571_175 * 1_000_000_000 + 5_000) == "2026-12-06T15:32:55.000005Z"


def test_iso_now_is_between_two_reads_of_the_clock() -> None:
    before = iso(datetime.now(UTC))
    stamp = iso_now()
    after = iso(datetime.now(UTC))
    assert before is not None and after is not None
    parse = datetime.fromisoformat
    assert parse(before) <= parse(stamp) <= parse(after)
