"""The job ledger (``jobs.json``): the platform jobs a segment's deliveries created, by name and id, kept in
the state store so a later run finds its earlier jobs without listing them all. A damaged ledger reads as
never written (the destination then lists the platform's jobs), with a warning naming it."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sync.state import base, open_state_store

NOW = datetime(2026, 12, 7, 8, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "utcnow", lambda: NOW)
    return open_state_store(str(tmp_path / "state")).job_ledger("files", "seg_a")


def test_a_ledger_never_written_has_no_entries(ledger):
    assert ledger.entries() is None


def test_a_job_is_remembered_by_name_with_its_run_and_time_and_replaced_by_name(ledger):
    # Given two jobs remembered, then the first one's name remembered again with another id
    ledger.remember("lakeseg-seg_a-r1-0", "j1", "r1")
    ledger.remember("lakeseg-seg_a-r1-1", None, "r1")
    ledger.remember("lakeseg-seg_a-r1-0", "j3", "r2")
    # Then each name has one entry, the latest, with its run and the time it was recorded
    assert ledger.entries() == [
        {"name": "lakeseg-seg_a-r1-1", "job_id": None, "run_id": "r1", "recorded_at": "2026-12-07T08:00:00+00:00"},
        {"name": "lakeseg-seg_a-r1-0", "job_id": "j3", "run_id": "r2", "recorded_at": "2026-12-07T08:00:00+00:00"},
    ]


def test_forgetting_a_job_keeps_the_others(ledger):
    ledger.remember("a", "j1", "r1")
    ledger.remember("b", "j2", "r1")
    ledger.forget("a")
    ledger.forget("never-remembered")
    assert [e["name"] for e in ledger.entries()] == ["b"]


def test_a_damaged_ledger_reads_as_never_written_and_a_warning_names_it(ledger, tmp_path, caplog):
    # Given a ledger document that is not a ledger
    path = Path(tmp_path / "state" / "snapshots" / "files" / "seg_a" / "jobs.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"jobs": "not a list"}')
    # When it is read
    with caplog.at_level(logging.WARNING, logger="sync.state.base"):
        entries = ledger.entries()
    # Then it has no entries, and the warning names the document and why
    assert entries is None
    [warning] = [r.getMessage() for r in caplog.records]
    assert (
        warning
        == f"job ledger {path} is unreadable (jobs: Input should be a valid array); jobs are looked up by listing"
    )
    # And remembering a job starts a new ledger
    ledger.remember("a", "j1", "r1")
    assert [e["job_id"] for e in ledger.entries()] == ["j1"]
