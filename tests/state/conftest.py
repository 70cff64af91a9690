"""Fixtures the state store's tests share."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sync.state import base


@pytest.fixture
def frozen(monkeypatch):
    """The state store's clock, fixed at 2026-11-26 08:00 UTC."""
    now = datetime(2026, 11, 26, 8, 0, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(base, "utcnow", lambda: now)
    return now
