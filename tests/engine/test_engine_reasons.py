"""The words a segment's report carries, pinned exactly: why a delivery is partial or unconfirmed, what a
job looks like in history, and which lock a run may treat as outlived. The platform's own messages (which
may quote rows) go to the local log at debug level only."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from sync.destinations.base import DeliveryResult, JobRecord
from sync.run.engine import SyncRun, _job_document, _partial_reason, _unconfirmed_reason, run_status


@pytest.mark.parametrize(
    "kept,suspect,reason",
    [
        (2, 0, "2 row(s) rejected by the destination are quarantined (resent next run); the rest is committed"),
        (
            0,
            3,
            "3 row(s) still suspect (not yet proven refused or accepted) are resent next run, which continues the "
            "search; the rest is committed",
        ),
        (
            2,
            3,
            "2 row(s) rejected by the destination are quarantined (resent next run); 3 row(s) still suspect (not "
            "yet proven refused or accepted) are resent next run, which continues the search; the rest is committed",
        ),
    ],
    ids=["rejected", "suspect", "both"],
)
def test_a_partial_delivery_says_how_many_rows_were_rejected_and_how_many_are_suspect(kept, suspect, reason):
    assert _partial_reason(kept, suspect) == reason


JOBS = [
    JobRecord("j1", "FAILED", total_failures=4, status_reason="INTERNAL_FAILURE"),
    JobRecord("j2", "COMPLETED"),
]
TAIL = "; the rows stay in doubt and are resent next run"


@pytest.mark.parametrize(
    "errors,jobs,said",
    [
        (
            ["boom Smith"],
            JOBS,
            "1 error (platform-error; job j1 FAILED (INTERNAL_FAILURE), 4 failure(s), job j2 COMPLETED); the "
            "platform's messages are in the local log at debug level",
        ),
        (
            ["a", "b"],
            [],
            "2 errors (platform-error); the platform's messages are in the local log at debug level",
        ),
        ([], JOBS[1:], "the destination did not say why (job j2 COMPLETED)"),
        ([], [], "the destination did not say why"),
    ],
    ids=["one-error-with-jobs", "errors-no-jobs", "no-error-with-a-job", "nothing-said"],
)
def test_an_unconfirmed_delivery_says_why_by_codes_and_counts_never_the_platforms_words(errors, jobs, said, caplog):
    # Given a delivery the destination did not confirm
    result = DeliveryResult(confirmed=False, jobs=jobs, errors=errors)
    # When its reason is written
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        reason = _unconfirmed_reason("seg_a", result)
    # Then it names counts, job ids and statuses; the platform's messages are only in the debug log
    assert reason == f"the destination did not confirm the delivery: {said}{TAIL}"
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == [f"seg_a: {e}" for e in errors]


def test_a_job_in_history_keeps_ids_and_counts_and_logs_its_failures_at_debug(caplog):
    job = JobRecord("j1", "FAILED", total_processed=5, total_failures=2, failures=["row 3: Smith, Jr."])
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        doc = _job_document("seg_a", job)
    assert "failures" not in doc and doc["job_id"] == "j1" and doc["total_failures"] == 2
    assert [r.getMessage() for r in caplog.records] == ["seg_a job j1: row 3: Smith, Jr."]


def test_a_run_document_without_a_status_reads_as_unknown():
    assert run_status({"run_id": "r1", "status": ""}) == "?"


@pytest.mark.parametrize(
    "held,owner,outlived",
    [
        ("t1", {"lease": "t0"}, True),
        ("t1", {"lease": "t1"}, False),
        ("t1", {}, False),
        (None, {"lease": "t0"}, False),
    ],
    ids=["under-another-lease", "under-this-lease", "no-lease-recorded", "this-run-holds-no-lease"],
)
def test_a_lock_outlived_its_lease_only_when_it_names_another_one(held, owner, outlived):
    run = SimpleNamespace(lease=SimpleNamespace(token=held) if held else None)
    assert SyncRun._lock_outlived_its_lease(run, owner) is outlived
