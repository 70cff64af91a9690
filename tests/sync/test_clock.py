"""The one time helper (sync/core/clock.py): aware UTC everywhere, a naive time taken as UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync.core import clock

CET = timezone(timedelta(hours=1))


def test_now_is_aware_utc():
    assert clock.now().utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "when, expected",
    [
        (datetime(2026, 11, 1, 5, 0), datetime(2026, 11, 1, 5, 0, tzinfo=timezone.utc)),
        (datetime(2026, 11, 1, 6, 0, tzinfo=CET), datetime(2026, 11, 1, 5, 0, tzinfo=timezone.utc)),
    ],
    ids=["naive-is-utc", "aware-is-converted"],
)
def test_as_utc(when, expected):
    got = clock.as_utc(when)
    assert got == expected and got.tzinfo is timezone.utc


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-01T05:00:00+00:00", "2026-11-01T05:00:00+00:00"),
        ("2026-11-01T05:00:00Z", "2026-11-01T05:00:00+00:00"),
        ("2026-11-01 05:00:00", "2026-11-01T05:00:00+00:00"),
        ("2026-11-01T06:00:00+01:00", "2026-11-01T05:00:00+00:00"),
        (" 2026-11-01T05:00:00 ", "2026-11-01T05:00:00+00:00"),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
    ids=["offset", "trailing-z", "dbt-naive", "other-zone", "spaces", "empty", "none", "not-a-time"],
)
def test_parse_stamp(text, expected):
    got = clock.parse_stamp(text)
    assert (got.isoformat() if got else None) == expected


def test_stamp_is_iso_utc_to_the_second_or_finer():
    when = datetime(2026, 11, 1, 6, 0, 0, 123456, tzinfo=CET)
    assert clock.stamp(when) == "2026-11-01T05:00:00+00:00"
    assert clock.stamp(when, timespec="milliseconds") == "2026-11-01T05:00:00.123+00:00"
    assert clock.parse_stamp(clock.stamp()) is not None
