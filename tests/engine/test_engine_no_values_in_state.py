"""No attribute value reaches the state store, whatever quotes it: dbt's messages, the platform's, exceptions.

A distinctive value is planted in a segment's rows and in every message a run may receive about them -- a
model's dbt error, a failing test's message, a platform's refusal of one row, a platform error and job failures,
an exception raised by the destination -- and every byte the state store holds afterwards (local directory, S3
bucket) is searched for it. The full messages go to the local log at debug level only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from sync.destinations.base import DeliveryResult, JobRecord
from sync.destinations.files import FilesDestination
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

PLANTED = "Zyxwv-Smith, Jr."


def columns(segment: str) -> dict[str, str]:
    """Each segment owns a field of its own (LastNameModelError, ...): a field has one owner."""
    own = "".join(part.title() for part in segment.split("_")[1:])
    return {"endpoint_id": "Id", "last_name": f"User.UserAttributes.LastName{own}"}


ROWS = [("ep-1", PLANTED), ("ep-2", "Jones"), ("ep-3", "Brown")]


class Quoting(FilesDestination):
    """A platform whose every message quotes the planted value: one segment has a row refused, one a failed
    import job, one a client that raises."""

    def deliver(self, delivery, progress=None):
        result = super().deliver(delivery, progress)
        quote = f"endpoint ep-1: value '{PLANTED}' of User.UserAttributes.LastName is invalid"
        if delivery.segment == "seg_refused_row":
            return DeliveryResult(
                confirmed=True,
                rejected={"ep-1": quote},
                location=result.location,
                jobs=[JobRecord("job-r", "COMPLETED", 3, 1, failures=[quote])],
            )
        if delivery.segment == "seg_platform_error":
            return DeliveryResult(
                confirmed=False,
                errors=[f"import job job-e FAILED: {quote}"],
                jobs=[JobRecord("job-e", "FAILED", 3, 3, failures=[quote, quote])],
                location=result.location,
            )
        if delivery.segment == "seg_raises":
            raise RuntimeError(f"connection reset while sending {quote}")
        return result


class QuotingImportsTable:
    """An imports table whose reader fails quoting a row of the import files it reads."""

    def know(self, segments):
        pass

    def repair(self):
        pass

    def register(self, segment, run_id, location):
        raise RuntimeError(f"Error when sniffing file. Original Line: ep-1,{PLANTED}")


def _project(tmp_path: Path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment(
        "seg_model_error",
        columns("seg_model_error"),
        ROWS,
        status="error",
        dbt_message=f"Conversion Error: Could not convert string '{PLANTED}' to INT32",
    )
    h.segment(
        "seg_test_failure",
        columns("seg_test_failure"),
        ROWS,
        test_status={("pinpoint_max_length", "last_name"): "fail"},
        dbt_message=f"Got 1 result, configured to fail if != 0: failing_value='{PLANTED}'",
    )
    for name in ("seg_refused_row", "seg_platform_error", "seg_raises"):
        h.segment(name, columns(name), ROWS)
    return h


def _local_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _s3_bytes(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """(state store, a function returning every object it holds) -- a local directory or a moto bucket."""
    if request.param == "local":
        root = tmp_path / "state"
        yield open_state_store(str(root)), lambda: _local_bytes(root)
        return
    request.getfixturevalue("aws")
    boto3.client("s3").create_bucket(Bucket="lakeseg-state")
    yield open_state_store("s3://lakeseg-state/prod"), lambda: _s3_bytes("lakeseg-state")


def test_given_messages_quoting_a_value_when_synced_twice_then_no_byte_of_the_state_store_holds_it(
    tmp_path, store, caplog
):
    # Given segments whose rows and whose every message (dbt's, the platform's, an exception's, the imports
    # table's reader's) quote a value
    h = _project(tmp_path / "project")
    state, stored = store
    destination = Quoting(tmp_path / "exports")
    # When the sync runs twice (the second run reads back the quarantine and the in-doubt record)
    with caplog.at_level(logging.DEBUG, logger="sync"):
        first = h.run(destination=destination, state=state, imports_table=QuotingImportsTable())
        second = h.run(destination=destination, state=state, imports_table=QuotingImportsTable())
    # Then each segment ended as expected ...
    for report in (first, second):
        assert {s: r.status for s, r in by_segment(report).items()} == {
            "seg_model_error": "skipped",
            "seg_test_failure": "skipped",
            "seg_refused_row": "partial",
            "seg_platform_error": "failed",
            "seg_raises": "failed",
        }
    # ... the store holds history, snapshots, the quarantine and an in-doubt record ...
    objects = stored()
    assert any("history/" in k for k in objects) and any(k.endswith("in_doubt.json") for k in objects)
    assert any(k.endswith("seg_refused_row/current.json") for k in objects)
    # ... and not one byte of it holds the value, nor any part of it
    leaks = {k for k, data in objects.items() if b"Zyxwv" in data}
    assert leaks == set()
    # And the messages are in the local log, at debug level only
    quoting = [r for r in caplog.records if "Zyxwv" in r.getMessage()]
    assert quoting and {r.levelno for r in quoting} == {logging.DEBUG}


class FailedWithCode(FilesDestination):
    def deliver(self, delivery, progress=None):
        located = super().deliver(delivery, progress).location
        return DeliveryResult(
            confirmed=False,
            errors=["upload job j-9 FAILED (INTERNAL_FAILURE)"],
            location=located,
            jobs=[JobRecord("j-9", "FAILED", 0, None, failures=["INTERNAL_FAILURE"], status_reason="INTERNAL_FAILURE")],
        )


def test_given_a_failed_job_with_a_status_code_then_the_reason_names_job_status_and_code(tmp_path):
    h = EngineHarness(tmp_path / "project")
    h.segment("seg_a", columns("seg_a"), ROWS)
    rep = by_segment(h.run(destination=FailedWithCode(tmp_path / "exports")))["seg_a"]
    assert "(platform-error; job j-9 FAILED (INTERNAL_FAILURE)); " in rep.reason
    assert rep.jobs[0]["status_reason"] == "INTERNAL_FAILURE" and "failures" not in rep.jobs[0]


def test_given_messages_quoting_a_value_then_the_report_names_rules_nodes_codes_and_counts(tmp_path):
    # Given the same segments
    h = _project(tmp_path / "project")
    # When the sync runs
    report = by_segment(h.run(destination=Quoting(tmp_path / "exports")))
    # Then what it says is value-free and still tells what happened
    assert report["seg_model_error"].reason == (
        "model error in the latest dbt invocation (model.lakeseg_engine.seg_model_error); dbt's message is in dbt's log"
    )
    assert report["seg_test_failure"].reason == (
        "tests did not pass: pinpoint_max_length_seg_test_failure_last_name (fail, 3 failing rows)"
    )
    assert report["seg_refused_row"].quarantined[0]["id"] == "ep-1"
    assert report["seg_refused_row"].quarantined[0]["code"] == "platform-refused"
    assert "message" not in report["seg_refused_row"].quarantined[0]
    assert report["seg_refused_row"].jobs[0]["total_failures"] == 1
    assert report["seg_platform_error"].reason == (
        "the destination did not confirm the delivery: 1 error (platform-error; job job-e FAILED, 3 failure(s)); "
        "the platform's messages are in the local log at debug level; "
        "the rows stay in doubt and are resent next run"
    )
    assert report["seg_raises"].reason == "RuntimeError (its message is in the local log at debug level)"
    for rep in report.values():
        assert PLANTED not in repr(rep)


def test_an_os_error_keeps_its_number_and_the_systems_words_but_not_its_path():
    from sync.core.errors import public_reason

    # Given a disk-full error on a file whose name quotes a value
    exc = OSError(28, "No space left on device", "/work/Zyxwv-Smith, Jr..csv")
    # Then the public reason says what happened, without the path
    assert public_reason(exc) == (
        "OSError: [Errno 28] No space left on device (the path is in the local log at debug level)"
    )
    assert "Zyxwv" not in public_reason(exc)
