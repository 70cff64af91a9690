"""The import tail (infra/import_tail.asl.json) executed by moto's ASL interpreter.

Pinpoint answers through botocore's Stubber (validated against the real service
model); SNS delivers to an SQS queue subscribed to the topic, so each test sees
exactly what on-call would receive.
"""

from __future__ import annotations

import json

import pytest

from .conftest import h

S3_URL = "s3://lakeseg-test-imports/lakeseg/imports/20261125T030000000Z-abc123/seg_email_clickers/part-1/"
COUNTS = {"rows": 3, "entered": 2, "changed": 1, "exited": 0, "unchanged": 7}


def tail_input(**overrides) -> dict:
    payload = {
        "ApplicationId": h.APP_ID,
        "S3Url": S3_URL,
        "RunId": "20261125T030000000Z-abc123",
        "Segment": "seg_email_clickers",
        "Counts": COUNTS,
        "PollSeconds": 0,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def expect_create(stubber, *, segment_name: str | None = None, job_id: str = "job-1") -> None:
    # Imports never define a segment (a static segment of one run's changes is not the segment).
    request = {
        "S3Url": S3_URL,
        "RoleArn": h.IMPORT_ROLE_ARN,
        "Format": "CSV",
        "RegisterEndpoints": True,
        "DefineSegment": False,
    }
    stubber.add_response(
        "create_import_job",
        {"ImportJobResponse": h.job_response(job_id, "CREATED", S3_URL)},
        expected_params={"ApplicationId": h.APP_ID, "ImportJobRequest": request},
    )


def expect_get(stubber, status: str, job_id: str = "job-1", **extra) -> None:
    stubber.add_response(
        "get_import_job",
        {"ImportJobResponse": h.job_response(job_id, status, S3_URL, **extra)},
        expected_params={"ApplicationId": h.APP_ID, "JobId": job_id},
    )


def failed_report(described: dict) -> dict:
    assert described["status"] == "FAILED"
    return json.loads(described["cause"])


def task_errors(tail, execution_arn: str) -> list[str]:
    return [e["taskFailedEventDetails"]["error"] for e in tail.history(execution_arn) if e["type"] == "TaskFailed"]


@pytest.mark.parametrize("segment_name", [None, "Email clickers"], ids=["endpoints-only", "segment-name-ignored"])
def test_completed_job_succeeds_and_notifies_once(tail, pinpoint, segment_name):
    # given Pinpoint creates the job, reports it PROCESSING, then COMPLETED with no failures
    expect_create(pinpoint, segment_name=segment_name)
    expect_get(pinpoint, "PROCESSING")
    expect_get(pinpoint, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[], TotalPieces=1, FailedPieces=0)

    # when the tail runs for one import folder
    arn = tail.start("run-1-seg_email_clickers-p1", tail_input(SegmentName=segment_name))
    described = tail.wait(arn)

    # then it succeeds, its output is the report, and on-call got exactly that report once
    assert described["status"] == "SUCCEEDED"
    report = json.loads(described["output"])
    assert report == {
        "Outcome": "SUCCEEDED",
        "Segment": "seg_email_clickers",
        "RunId": "20261125T030000000Z-abc123",
        "Part": None,
        "Parts": None,
        "Counts": COUNTS,
        "ApplicationId": h.APP_ID,
        "S3Url": S3_URL,
        "JobId": "job-1",
        "JobStatus": "COMPLETED",
        "TotalProcessed": 3,
        "TotalFailures": 0,
        "Failures": [],
        "TotalPieces": 1,
        "FailedPieces": 0,
        "Error": None,
        "ExecutionArn": arn,
    }
    assert tail.messages() == [{"body": report, "attributes": {"outcome": "SUCCEEDED", "source": "lakeseg"}}]
    pinpoint.assert_no_pending_responses()


def test_failed_job_fails_the_execution_with_the_failures(tail, pinpoint):
    # given Pinpoint reports the job FAILED with failures
    failures = ["Failed to import piece 1: invalid ChannelType on line 2", "line 3: missing Address"]
    expect_create(pinpoint)
    expect_get(pinpoint, "FAILED", TotalProcessed=2, TotalFailures=2, Failures=failures, TotalPieces=1, FailedPieces=1)

    # when the tail runs
    arn = tail.start("run-1-seg-p1", tail_input())
    report = failed_report(tail.wait(arn))

    # then the execution fails; the cause is the report with the job's failures; one FAILED message
    assert report["Outcome"] == "FAILED"
    assert report["Error"]["Error"] == "Lakeseg.ImportJobFailed"
    assert (report["JobId"], report["JobStatus"]) == ("job-1", "FAILED")
    assert (report["TotalProcessed"], report["TotalFailures"], report["Failures"]) == (2, 2, failures)
    messages = tail.messages()
    assert [m["attributes"]["outcome"] for m in messages] == ["FAILED"]
    assert messages[0]["body"] == report
    pinpoint.assert_no_pending_responses()


def test_completed_job_with_rejected_endpoints_is_a_failure(tail, pinpoint):
    # given the job COMPLETED but Pinpoint rejected one endpoint
    expect_create(pinpoint)
    expect_get(pinpoint, "COMPLETED", TotalProcessed=3, TotalFailures=1, Failures=["line 4: bad Id"])

    # when the tail runs
    report = failed_report(tail.wait(tail.start("run-1-seg-p1", tail_input())))

    # then it is reported as a failure (the rows must be resent), once
    assert report["Error"]["Error"] == "Lakeseg.RowsRejected"
    assert report["TotalFailures"] == 1
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]


def test_throttled_calls_are_retried_under_the_name_aws_uses(tail, pinpoint):
    # given Pinpoint throttles the first CreateImportJob and the first GetImportJob
    h.stub_error(pinpoint, "create_import_job", "TooManyRequestsException", 429)
    expect_create(pinpoint)
    h.stub_error(pinpoint, "get_import_job", "TooManyRequestsException", 429)
    expect_get(pinpoint, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[])

    # when the tail runs
    arn = tail.start("run-1-seg-p1", tail_input())
    described = tail.wait(arn)

    # then both throttles were retried (as Pinpoint.TooManyRequestsException) and the import succeeded
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert task_errors(tail, arn) == ["Pinpoint.TooManyRequestsException"] * 2
    pinpoint.assert_no_pending_responses()
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["SUCCEEDED"]


def test_a_non_retryable_pinpoint_error_is_caught_notified_and_fails(tail, pinpoint):
    # given Pinpoint refuses the request (e.g. the role cannot read the bucket)
    h.stub_error(pinpoint, "create_import_job", "BadRequestException", 400)

    # when the tail runs
    arn = tail.start("run-1-seg-p1", tail_input())
    report = failed_report(tail.wait(arn))

    # then it is not retried, the catch-all notifies once and the execution fails
    assert task_errors(tail, arn) == ["Pinpoint.BadRequestException"]
    assert report["Error"]["Error"] == "Pinpoint.BadRequestException"
    assert report["JobId"] is None and report["Failures"] == []
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]


@pytest.mark.parametrize("missing", ["ApplicationId", "S3Url"])
def test_invalid_input_fails_without_calling_pinpoint(tail, pinpoint, missing):
    # given an input without a required field
    payload = tail_input()
    del payload[missing]

    # when the tail runs
    report = failed_report(tail.wait(tail.start("run-1-seg-p1", payload)))

    # then no import is attempted, and the failure is still notified
    assert report["Error"]["Error"] == "Lakeseg.InvalidInput"
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]


def test_a_job_that_never_finishes_is_reported_after_max_polls(tail, pinpoint):
    # given a job that stays PROCESSING
    expect_create(pinpoint)
    for _ in range(3):
        expect_get(pinpoint, "PROCESSING")

    # when the tail may poll only three times (MaxPolls is the number of status checks)
    report = failed_report(tail.wait(tail.start("run-1-seg-p1", tail_input(MaxPolls=3))))

    # then it stops waiting and says so
    assert report["Error"]["Error"] == "Lakeseg.ImportStillRunning"
    assert report["JobStatus"] == "PROCESSING"
    pinpoint.assert_no_pending_responses()


def test_an_unreachable_topic_fails_the_execution_with_the_report(aws, pinpoint):
    # given a tail whose topic does not exist
    tail = h.deploy_import_tail(name="lakeseg-no-topic")
    h.client("sns").delete_topic(TopicArn=tail.topic_arn)
    expect_create(pinpoint)
    expect_get(pinpoint, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[])

    # when the tail runs
    described = tail.wait(tail.start("run-1-seg-p1", tail_input()))

    # then it fails as NotificationFailed, and the cause still says the import succeeded
    assert described["error"] == "Lakeseg.NotificationFailed"
    report = json.loads(described["cause"])
    assert (report["Outcome"], report["JobStatus"]) == ("SUCCEEDED", "COMPLETED")
    assert report["NotifyError"]["Error"]


@pytest.mark.parametrize(
    "code, status",
    [("InternalServerErrorException", 500), ("ServiceUnavailable", 503), ("AccessDeniedException", 403)],
    ids=["500", "503-unmodelled", "access-denied"],
)
def test_create_import_job_is_not_retried_after_an_error_that_may_have_created_a_job(tail, pinpoint, code, status):
    # given CreateImportJob answers an error after which a job may exist
    # (one stubbed answer: a second CreateImportJob would fail as "Unexpected API Call")
    h.stub_error(pinpoint, "create_import_job", code, status)

    # when the tail runs
    report = failed_report(tail.wait(tail.start("run-1-seg-p1", tail_input())))

    # then it called CreateImportJob exactly once: the failure is Pinpoint's own error, not a second call
    assert report["Error"]["Error"].startswith("Pinpoint.") and "Unexpected API Call" not in json.dumps(report)
    pinpoint.assert_no_pending_responses()
    assert report["JobId"] is None
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]


@pytest.mark.parametrize(
    "overrides",
    [{"PollSeconds": 1.5}, {"MaxPolls": 2.5}, {"MaxPolls": 0}, {"PollSeconds": -1}, {"PollSeconds": "30"}],
    ids=["fractional-poll", "fractional-max-polls", "zero-max-polls", "negative-poll", "poll-as-text"],
)
def test_bad_numbers_are_refused_before_any_import(tail, pinpoint, overrides):
    # given numbers a Wait state cannot use
    report = failed_report(tail.wait(tail.start("run-1-seg-p1", tail_input(**overrides))))
    # then nothing is imported (no Pinpoint call) and the failure is notified
    assert report["Error"]["Error"] == "Lakeseg.InvalidInput"
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]
