"""Time in lakeseg: always timezone-aware UTC, stamped and read back in ISO 8601.

One rule everywhere: a naive time (no offset: dbt's ``YYYY-MM-DD HH:MM:SS``, an old state document, a
platform's timestamp without a zone) is taken as UTC, never as the host's local time, so it is never
compared with an aware one by accident.
"""

from __future__ import annotations

from datetime import datetime, timezone

UTC = timezone.utc


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """``when`` in UTC: a naive time is taken as UTC, an aware one converted."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_stamp(value: object) -> datetime | None:
    """An ISO 8601 time (a trailing ``Z`` too; naive taken as UTC) in UTC, or None when ``value`` is not one."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(moment)


def stamp(when: datetime | None = None, timespec: str = "seconds") -> str:
    """``when`` (default: now) as an ISO 8601 stamp in UTC, e.g. ``2026-11-01T05:00:00+00:00``."""
    return (now() if when is None else as_utc(when)).isoformat(timespec=timespec)
