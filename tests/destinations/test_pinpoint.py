"""The Pinpoint destination against moto S3 + Step Functions running the real
import tail (Pinpoint faked), and in direct mode against a Stubber'd client."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from botocore.stub import Stubber

from sync.core.errors import ConfigError
from sync.destinations import build_destination
from sync.destinations.base import Destination, SegmentDelivery
from sync.destinations.pinpoint import PinpointDestination, execution_name, group_files

from .conftest import BUCKET, IMPORT_URL, h

RUN_ID = "20261125T030000123Z-abc123"
HEADER = "Id,Address,ChannelType,User.UserAttributes.HasClicked\n"
MiB = 1024 * 1024


def write_csv(path: Path, rows: int, pad: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for i in range(rows):
            f.write(f"ep-{i},user{i}@example.com,EMAIL,{'Yes' + 'x' * pad}\n")
    return path


def delivery(
    files, segment="seg_email_clickers", run_id=RUN_ID, segment_name=None, segment_filter=None
) -> SegmentDelivery:
    return SegmentDelivery(
        run_id=run_id,
        segment=segment,
        files=tuple(files),
        fields=("Id", "Address", "ChannelType", "User.UserAttributes.HasClicked"),
        counts={"rows": 10, "entered": 3, "changed": 1, "exited": 0, "unchanged": 6},
        segment_name=segment_name,
        segment_filter=segment_filter or {},
    )


def stack_destination(tail, **overrides) -> PinpointDestination:
    settings = dict(
        application_id=h.APP_ID,
        import_s3_url=IMPORT_URL,
        mode="stack",
        state_machine_arn=tail.state_machine_arn,
        poll_seconds=0,
        retry_base_seconds=0,
    )
    settings.update(overrides)
    pinpoint = settings.pop("pinpoint", None)  # stack mode lists jobs and keeps segments with it
    return PinpointDestination(
        s3=h.client("s3"), stepfunctions=h.client("stepfunctions"), pinpoint=pinpoint, **settings
    )


def direct_destination(pinpoint_client, **overrides) -> PinpointDestination:
    settings = dict(
        application_id=h.APP_ID,
        import_s3_url=IMPORT_URL,
        mode="direct",
        import_role_arn=h.IMPORT_ROLE_ARN,
        poll_seconds=0,
        retry_base_seconds=0,
    )
    settings.update(overrides)
    return PinpointDestination(s3=h.client("s3"), pinpoint=pinpoint_client, **settings)


def executions(tail) -> list[dict]:
    return tail.sfn.list_executions(stateMachineArn=tail.state_machine_arn)["executions"]


# --------------------------------------------------------------------------- stack mode
def test_a_delivery_is_uploaded_encrypted_imported_and_confirmed(tail, fake_pinpoint, s3, bucket_keys, tmp_path):
    # given one import file of 5 rows
    f = write_csv(tmp_path / "part-00001.csv", rows=5)
    dest = stack_destination(tail)
    dest.preflight()

    # when it is delivered
    result = dest.deliver(delivery([f]))

    # then the file is under <prefix>/<run>/<segment>/part-1/, encrypted
    key = f"lakeseg/imports/{RUN_ID}/seg_email_clickers/part-1/part-00001.csv"
    assert bucket_keys() == [key]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    # and one execution, named from run id + segment + part, imported that folder
    (execution,) = executions(tail)
    assert execution["name"] == f"{RUN_ID}-seg_email_clickers-p1"
    (job,) = fake_pinpoint.created()
    assert job.request["S3Url"] == f"s3://{BUCKET}/lakeseg/imports/{RUN_ID}/seg_email_clickers/part-1/"
    assert job.request["RoleArn"] == h.IMPORT_ROLE_ARN  # baked into the stack
    assert (job.request["Format"], job.request["RegisterEndpoints"], job.request["DefineSegment"]) == (
        "CSV",
        True,
        False,
    )
    # and the verdict is confirmed, with the job's numbers
    assert result.confirmed, result.errors
    assert result.location == f"s3://{BUCKET}/lakeseg/imports/{RUN_ID}/seg_email_clickers/"
    (record,) = result.jobs
    assert (record.job_id, record.status, record.total_processed, record.total_failures, record.failures) == (
        job.id,
        "COMPLETED",
        5,
        0,
        [],
    )
    assert record.execution_arn == execution["executionArn"]
    # and on-call got one SUCCEEDED message for it
    (message,) = tail.messages()
    assert message["attributes"]["outcome"] == "SUCCEEDED"
    assert (message["body"]["Segment"], message["body"]["RunId"], message["body"]["JobId"]) == (
        "seg_email_clickers",
        RUN_ID,
        job.id,
    )
    assert message["body"]["Counts"] == delivery([f]).counts


@pytest.mark.parametrize(
    "kms_key_id, expected",
    [(None, ("AES256", None)), ("alias/lakeseg", ("aws:kms", "alias/lakeseg"))],
    ids=["sse-s3", "sse-kms"],
)
def test_uploads_are_encrypted_with_the_configured_key(tail, s3, bucket_keys, tmp_path, kms_key_id, expected):
    # given a destination with or without a KMS key
    dest = stack_destination(tail, kms_key_id=kms_key_id)

    # when a file is delivered
    dest.deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=2)]))

    # then the object is encrypted accordingly
    (key,) = bucket_keys()
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert (head["ServerSideEncryption"], head.get("SSEKMSKeyId")) == expected


def test_a_file_above_the_threshold_goes_multipart(tail, s3, bucket_keys, tmp_path):
    # given a 6 MiB file, a 5 MiB multipart threshold, and a small file
    big = write_csv(tmp_path / "part-00001.csv", rows=60_000, pad=60)
    small = write_csv(tmp_path / "part-00002.csv", rows=3)
    assert big.stat().st_size > 5 * MiB
    dest = stack_destination(tail, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)

    # when delivered
    result = dest.deliver(delivery([big, small]))

    # then the big one was uploaded in parts (its ETag counts them), the small one in one PUT, both encrypted
    assert result.confirmed, result.errors
    heads = {Path(k).name: s3.head_object(Bucket=BUCKET, Key=k) for k in bucket_keys()}
    assert heads["part-00001.csv"]["ETag"].strip('"').endswith("-2")
    assert "-" not in heads["part-00002.csv"]["ETag"]
    assert {hd["ServerSideEncryption"] for hd in heads.values()} == {"AES256"}
    assert (
        s3.get_object(Bucket=BUCKET, Key=next(k for k in bucket_keys() if k.endswith("1.csv")))["Body"].read()
        == big.read_bytes()
    )


def test_files_are_grouped_into_one_job_per_size_limit(tail, fake_pinpoint, bucket_keys, tmp_path):
    # given five files and a job limit that fits two of them
    files = [write_csv(tmp_path / f"part-{n:05d}.csv", rows=10) for n in range(1, 6)]
    size = files[0].stat().st_size
    dest = stack_destination(tail, max_job_bytes=2 * size)

    # when delivered
    result = dest.deliver(delivery(files))

    # then three folders, three executions, three jobs, each importing only its own folder
    assert result.confirmed, result.errors
    base = f"lakeseg/imports/{RUN_ID}/seg_email_clickers"
    assert bucket_keys() == [
        f"{base}/part-1/part-00001.csv",
        f"{base}/part-1/part-00002.csv",
        f"{base}/part-2/part-00003.csv",
        f"{base}/part-2/part-00004.csv",
        f"{base}/part-3/part-00005.csv",
    ]
    assert sorted(e["name"] for e in executions(tail)) == [f"{RUN_ID}-seg_email_clickers-p{n}" for n in (1, 2, 3)]
    by_folder = {job.request["S3Url"].rstrip("/").rsplit("/", 1)[-1]: job for job in fake_pinpoint.created()}
    assert {k: len(v.files) for k, v in by_folder.items()} == {"part-1": 2, "part-2": 2, "part-3": 1}
    assert sum(r.total_processed for r in result.jobs) == 50
    assert len(tail.messages()) == 3


def test_group_files_keeps_order_and_never_exceeds_the_limit(tmp_path):
    files = [write_csv(tmp_path / f"{n}.csv", rows=r) for n, r in enumerate([5, 1, 30, 2, 2, 40])]
    limit = files[5].stat().st_size + 10
    groups = group_files(files, limit)
    assert [p for g in groups for p in g] == files
    assert all(sum(p.stat().st_size for p in g) <= limit for g in groups)
    with pytest.raises(ValueError, match="more than one job takes"):
        group_files(files, 10)


def test_redelivering_the_same_run_attaches_instead_of_importing_again(tail, fake_pinpoint, tmp_path):
    # given a delivery that was imported
    d = delivery([write_csv(tmp_path / "part-00001.csv", rows=4)])
    dest = stack_destination(tail)
    first = dest.deliver(d)

    # when the same run delivers the same segment again (a retry)
    second = stack_destination(tail).deliver(d)

    # then no new execution or import job started, and the verdict is read from the first
    assert len(executions(tail)) == 1
    assert len(fake_pinpoint.jobs) == 1
    assert second.confirmed and first.confirmed
    assert [(r.job_id, r.execution_arn) for r in second.jobs] == [(r.job_id, r.execution_arn) for r in first.jobs]
    assert len(tail.messages()) == 1


def test_two_attempts_racing_on_the_same_run_import_once(tail, fake_pinpoint, tmp_path):
    # given an import that takes a while, and two attempts at the same delivery at once
    fake_pinpoint.hold = 0.4
    d = delivery([write_csv(tmp_path / "part-00001.csv", rows=4)])
    results = []
    attempts = [stack_destination(tail), stack_destination(tail)]  # two processes, as it were

    def attempt(dest):
        results.append(dest.deliver(d))

    threads = [threading.Thread(target=attempt, args=(dest,)) for dest in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then Step Functions' name idempotency leaves one execution and one import job
    assert len(executions(tail)) == 1
    assert len(fake_pinpoint.jobs) == 1
    assert [r.confirmed for r in results] == [True, True]


def test_at_most_max_concurrent_jobs_run_at_once_across_deliveries(tail, fake_pinpoint, tmp_path):
    # given five segments delivered from five threads, jobs that take a while, and a cap of 2
    fake_pinpoint.hold = 0.3
    dest = stack_destination(tail, max_concurrent_jobs=2)
    assert dest.max_parallel == 2
    deliveries = [
        delivery([write_csv(tmp_path / f"s{n}" / "part-00001.csv", rows=2)], segment=f"seg_{n}") for n in range(5)
    ]
    results = {}

    def run(d):
        results[d.segment] = dest.deliver(d)

    threads = [threading.Thread(target=run, args=(d,)) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then Pinpoint never had more than two jobs in flight, and did have two
    assert fake_pinpoint.max_in_flight == 2
    assert all(r.confirmed for r in results.values()), {k: r.errors for k, r in results.items()}
    assert len(fake_pinpoint.jobs) == 5


def failed_job(job: h.FakeJob) -> dict:
    return {
        "JobStatus": "FAILED",
        "TotalProcessed": job.rows,
        "TotalFailures": 2,
        "FailedPieces": 1,
        "TotalPieces": 1,
        "Failures": ["line 2: ChannelType is invalid", "line 3: Address is missing"],
    }


def rejected_rows(job: h.FakeJob) -> dict:
    return {
        "JobStatus": "COMPLETED",
        "TotalProcessed": job.rows,
        "TotalFailures": 1,
        "FailedPieces": 0,
        "TotalPieces": 1,
        "Failures": ["line 4: Id is too long"],
    }


@pytest.mark.parametrize(
    "verdict, status, failures",
    [(failed_job, "FAILED", 2), (rejected_rows, "COMPLETED", 1)],
    ids=["job-failed", "completed-with-rejected-rows"],
)
def test_refused_rows_fail_the_delivery_when_none_may_be_refused(
    tail, fake_pinpoint, tmp_path, verdict, status, failures
):
    # given Pinpoint fails the job, or completes it but rejects rows, and max_rejected_rows is 0
    fake_pinpoint.verdict = verdict

    # when delivered
    result = stack_destination(tail, max_rejected_rows=0).deliver(
        delivery([write_csv(tmp_path / "part-00001.csv", rows=3)])
    )

    # then the delivery is not confirmed (no isolation job either), and the job carries Pinpoint's failures
    assert not result.confirmed
    (record,) = result.jobs
    assert (record.status, record.total_failures, len(record.failures)) == (status, failures, failures)
    assert len(result.errors) == 1 and record.job_id in result.errors[0]
    assert "max_rejected_rows" in result.errors[0]
    assert "ChannelType" not in result.errors[0] and "Id is too long" not in result.errors[0]
    assert [m["attributes"]["outcome"] for m in tail.messages()] == ["FAILED"]


def refusing(s3, refused_id: str):
    """A verdict that refuses the row ``refused_id`` wherever a job's folder holds it, naming no Id."""

    def verdict(job: h.FakeJob) -> dict:
        ids = [
            line.split(",")[0]
            for key in job.files
            for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()[1:]
        ]
        if refused_id not in ids:
            return h.all_accepted(job)
        return {
            "JobStatus": "COMPLETED",
            "TotalProcessed": job.rows,
            "TotalFailures": 1,
            "FailedPieces": 0,
            "TotalPieces": 1,
            "Failures": ["a value was refused"],
        }

    return verdict


def rows_athena_reads(s3, location: str) -> list[str]:
    """Data lines of every object under ``location``, as Athena reads a partition: names starting with _ or . skipped."""
    bucket, _, prefix = location[5:].partition("/")
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if any(part.startswith(("_", ".")) for part in obj["Key"][len(prefix) :].split("/")):
                continue
            lines += s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode().splitlines()[1:]
    return lines


@pytest.mark.parametrize("mode", ["stack", "direct"])
def test_isolation_reimports_stay_out_of_the_imports_table_and_of_each_others_folders(
    tail, fake_pinpoint, s3, tmp_path, mode
):
    # Given Pinpoint refuses one row of four without naming it, so the rows are isolated by re-importing halves
    fake_pinpoint.verdict = refusing(s3, "ep-2")
    dest = stack_destination(tail) if mode == "stack" else direct_destination(fake_pinpoint.client)
    f = write_csv(tmp_path / "part-00001.csv", rows=4)

    # When delivered
    result = dest.deliver(delivery([f]))

    # Then the refused row is isolated and the delivery confirmed
    assert result.confirmed, result.errors
    assert list(result.rejected) == ["ep-2"]
    jobs = fake_pinpoint.created()
    assert len(jobs) > 1
    # and the first job imported the run's part-1 folder; every re-import has its own folder under _isolation/
    location = result.location
    assert jobs[0].request["S3Url"] == f"{location}part-1/"
    urls = [j.request["S3Url"] for j in jobs[1:]]
    assert all(u.startswith(f"{location}_isolation/part-1") and u.endswith("/") for u in urls), urls
    # and each job imported exactly the files of its own folder (Pinpoint imports all under its S3Url)
    for j in jobs:
        folder = j.request["S3Url"][len(f"s3://{BUCKET}/") :]
        assert j.files and all("/" not in key[len(folder) :] for key in j.files), (folder, j.files)
    # and the imports table's partition (the run's folder, read as Athena reads it) holds each row once
    assert sorted(rows_athena_reads(s3, location)) == sorted(f.read_text().splitlines()[1:])


def test_throttled_pinpoint_calls_are_retried_by_the_state_machine(tail, fake_pinpoint, tmp_path):
    # given Pinpoint throttles the first create and the first status call
    fake_pinpoint.throttle("CreateImportJob", 1)
    fake_pinpoint.throttle("GetImportJob", 1)

    # when delivered
    result = stack_destination(tail).deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=3)]))

    # then the import went through, after the retries
    assert result.confirmed, result.errors
    ops = [op for op, _ in fake_pinpoint.calls]
    assert ops.count("CreateImportJob") == 2 and ops.count("GetImportJob") >= 3
    assert len(fake_pinpoint.jobs) == 1


def test_a_segment_name_keeps_one_dynamic_segment_not_one_per_import(tail, fake_pinpoint, tmp_path):
    # given a segment model with segment_name and its in-segment values
    dest = stack_destination(tail, segment_name_prefix="lakeseg ", pinpoint=fake_pinpoint.client)
    in_segment = {"User.UserAttributes.HasClicked": ("Yes",)}
    # when it is delivered twice (two runs)
    for run in (RUN_ID, RUN_ID.replace("abc", "abd")):
        result = dest.deliver(
            delivery(
                [write_csv(tmp_path / f"{run}.csv", rows=1)],
                run_id=run,
                segment_name="Email clickers",
                segment_filter=in_segment,
            )
        )
        assert result.confirmed, result.errors
    # then the imports define no segment, and one dynamic segment selects HasClicked = Yes
    assert [j.request["DefineSegment"] for j in fake_pinpoint.created()] == [False, False]
    (seg,) = fake_pinpoint.segments.values()
    assert seg["Name"] == "lakeseg Email clickers"
    assert seg["Dimensions"] == {"UserAttributes": {"HasClicked": {"AttributeType": "INCLUSIVE", "Values": ["Yes"]}}}
    assert [op for op, _ in fake_pinpoint.calls].count("CreateSegment") == 1


def test_a_segment_name_without_in_segment_values_is_not_confirmed(tail, fake_pinpoint, tmp_path):
    dest = stack_destination(tail, pinpoint=fake_pinpoint.client)
    result = dest.deliver(delivery([write_csv(tmp_path / "p.csv", rows=1)], segment_name="Email clickers"))
    assert not result.confirmed and "segment_values" in result.errors[0]


def test_progress_reports_uploads_then_imports(tail, tmp_path):
    seen = []
    files = [write_csv(tmp_path / f"part-{n}.csv", rows=1) for n in (1, 2)]
    stack_destination(tail).deliver(delivery(files), lambda label, done, total: seen.append((label, done, total)))
    assert seen[:2] == [("seg_email_clickers: uploading", 1, 2), ("seg_email_clickers: uploading", 2, 2)]
    assert seen[-1] == ("seg_email_clickers: importing", 1, 1)


def test_an_import_that_outlives_the_timeout_is_not_confirmed(tail, fake_pinpoint, tmp_path):
    # given a job that does not finish within the destination's timeout
    fake_pinpoint.hold = 30
    dest = stack_destination(tail, timeout=0.3)

    # when delivered
    t0 = time.monotonic()
    result = dest.deliver(delivery([write_csv(tmp_path / "p.csv", rows=1)]))

    # then the destination stops waiting and says the import may still happen
    assert time.monotonic() - t0 < 5
    assert not result.confirmed
    assert "still running" in result.errors[0]


# --------------------------------------------------------------------------- direct mode
@pytest.fixture
def stubbed_pinpoint(aws):
    client = h.pinpoint_client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_direct_create(stubber, folder: str, job_id: str = "job-d1") -> None:
    stubber.add_response(
        "create_import_job",
        {"ImportJobResponse": h.job_response(job_id, "CREATED", folder)},
        expected_params={
            "ApplicationId": h.APP_ID,
            "ImportJobRequest": {
                "S3Url": folder,
                "RoleArn": h.IMPORT_ROLE_ARN,
                "Format": "CSV",
                "RegisterEndpoints": True,
                "DefineSegment": False,
            },
        },
    )


def expect_list(stubber, *items) -> None:
    """GetImportJobs: before importing (earlier runs' jobs in flight) and before creating (find before create)."""
    stubber.add_response(
        "get_import_jobs",
        {"ImportJobsResponse": {"Item": list(items)}},
        expected_params={"ApplicationId": h.APP_ID, "PageSize": "100"},
    )


def expect_direct_get(stubber, status: str, job_id: str = "job-d1", **extra) -> None:
    stubber.add_response(
        "get_import_job",
        {"ImportJobResponse": h.job_response(job_id, status, **extra)},
        expected_params={"ApplicationId": h.APP_ID, "JobId": job_id},
    )


FOLDER = f"s3://{BUCKET}/lakeseg/imports/{RUN_ID}/seg_email_clickers/part-1/"


@pytest.mark.parametrize("throttled", [False, True], ids=["calm", "throttled"])
def test_direct_mode_creates_polls_and_confirms(s3, stubbed_pinpoint, bucket_keys, tmp_path, throttled):
    # given Pinpoint (optionally throttling each call once) creates and completes the job
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_list(stubber)
    if throttled:
        h.stub_error(stubber, "create_import_job", "TooManyRequestsException", 429)
    expect_direct_create(stubber, FOLDER)
    if throttled:
        h.stub_error(stubber, "get_import_job", "TooManyRequestsException", 429)
    expect_direct_get(stubber, "PROCESSING")
    expect_direct_get(stubber, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[])
    dest = direct_destination(client)

    # when delivered
    result = dest.deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=3)]))

    # then confirmed, and the job id is kept next to (not inside) the imported folder
    assert result.confirmed, result.errors
    assert [(r.job_id, r.status, r.total_processed) for r in result.jobs] == [("job-d1", "COMPLETED", 3)]
    base = f"lakeseg/imports/{RUN_ID}/seg_email_clickers"
    assert bucket_keys() == [f"{base}/_jobs/part-1.json", f"{base}/part-1/part-00001.csv"]
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/_jobs/part-1.json")["Body"].read())
    assert marker["JobId"] == "job-d1"


def test_direct_mode_redelivery_attaches_to_the_job(s3, stubbed_pinpoint, tmp_path):
    # given a delivery whose import job was created
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_list(stubber)
    expect_direct_create(stubber, FOLDER)
    expect_direct_get(stubber, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[])
    d = delivery([write_csv(tmp_path / "part-00001.csv", rows=3)])
    direct_destination(client).deliver(d)

    # when delivered again: only a status call is expected (a create would find no stubbed response)
    expect_list(stubber)
    expect_direct_get(stubber, "COMPLETED", TotalProcessed=3, TotalFailures=0, Failures=[])
    result = direct_destination(client).deliver(d)

    # then it reads the same job's verdict
    assert result.confirmed
    assert result.jobs[0].job_id == "job-d1"


def test_direct_mode_failed_job_with_no_row_failures_is_not_confirmed(s3, stubbed_pinpoint, tmp_path):
    # given a job that FAILED as a whole (no endpoint refused: a bad file, a role it could not assume)
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_list(stubber)
    expect_direct_create(stubber, FOLDER)
    expect_direct_get(stubber, "FAILED", TotalProcessed=0, TotalFailures=0, Failures=[])
    # when delivered
    result = direct_destination(client).deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=3)]))
    # then it is not confirmed, nothing is quarantined, and the counters say what Pinpoint said
    assert not result.confirmed and not result.rejected
    assert [(r.status, r.total_processed, r.total_failures) for r in result.jobs] == [("FAILED", 0, 0)]
    assert "job-d1 FAILED" in result.errors[0]


def test_direct_mode_gives_up_waiting_after_the_timeout(s3, stubbed_pinpoint, tmp_path):
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_direct_create(stubber, FOLDER)
    expect_direct_get(stubber, "PROCESSING")
    result = direct_destination(client, timeout=0).deliver(delivery([write_csv(tmp_path / "p.csv", rows=1)]))
    assert not result.confirmed
    assert "still PROCESSING" in result.errors[0]


def test_direct_mode_does_not_repeat_a_create_that_failed_on_the_server(s3, stubbed_pinpoint, tmp_path):
    # given Pinpoint answers CreateImportJob with a 500 and no job was created
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_list(stubber)
    h.stub_error(stubber, "create_import_job", "InternalServerErrorException", 500)
    expect_list(stubber)  # looked for, not created again

    # when delivered, then it is not retried (no idempotency token) and not confirmed
    result = direct_destination(client).deliver(delivery([write_csv(tmp_path / "p.csv", rows=1)]))
    assert not result.confirmed
    assert "failed on the server and no job for that folder exists" in result.errors[0]


def test_direct_mode_a_500_on_create_that_did_create_a_job_attaches_to_it(s3, stubbed_pinpoint, tmp_path):
    # given Pinpoint created the job but answered CreateImportJob with a 500
    client, stubber = stubbed_pinpoint
    expect_list(stubber)
    expect_list(stubber)
    h.stub_error(stubber, "create_import_job", "InternalServerErrorException", 500)
    expect_list(stubber, h.job_response("job-d1", "PROCESSING", FOLDER))
    expect_direct_get(stubber, "COMPLETED", TotalProcessed=1, TotalFailures=0, Failures=[])
    # when delivered
    result = direct_destination(client).deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=1)]))
    # then exactly one job exists for the folder: the one Pinpoint created, found and waited for
    assert result.confirmed, result.errors
    assert [r.job_id for r in result.jobs] == ["job-d1"]


def test_direct_mode_waits_for_an_earlier_runs_import_of_the_segment(s3, stubbed_pinpoint, tmp_path):
    # given an import of this segment left in flight by an earlier (killed) run
    client, stubber = stubbed_pinpoint
    old = FOLDER.replace(RUN_ID, "20261124T030000000Z-000000")
    expect_list(stubber, h.job_response("job-old", "PROCESSING", old))
    expect_list(stubber, h.job_response("job-old", "COMPLETED", old))
    expect_list(stubber, h.job_response("job-old", "COMPLETED", old))
    expect_direct_create(stubber, FOLDER)
    expect_direct_get(stubber, "COMPLETED", TotalProcessed=1, TotalFailures=0, Failures=[])
    # when this run delivers
    result = direct_destination(client).deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=1)]))
    # then it waited for the old import to end before creating its own (imports of a segment stay ordered)
    assert result.confirmed, result.errors


def test_direct_mode_gives_up_when_an_earlier_import_outlives_the_timeout(s3, stubbed_pinpoint, tmp_path):
    client, stubber = stubbed_pinpoint
    old = FOLDER.replace(RUN_ID, "20261124T030000000Z-000000")
    expect_list(stubber, h.job_response("job-old", "PROCESSING", old))
    result = direct_destination(client, timeout=0).deliver(delivery([write_csv(tmp_path / "p.csv", rows=1)]))
    assert not result.confirmed and "still in flight" in result.errors[0]


# --------------------------------------------------------------------------- preflight
def _stubbed_client(service: str, method: str, code: str, status: int):
    client = h.client(service)
    stubber = Stubber(client)
    stubber.add_client_error(method, service_error_code=code, http_status_code=status)
    stubber.activate()
    return client


PREFLIGHT_CASES = {
    "no-application-id": (dict(application_id=None), "destination.application_id"),
    "blank-application-id": (dict(application_id="  "), "destination.application_id"),
    "no-import-url": (dict(import_s3_url=None), "destination.import_s3_url"),
    "import-url-not-s3": (dict(import_s3_url="https://example.com/x"), "destination.import_s3_url"),
    "bucket-missing": (
        dict(import_s3_url="s3://no-such-bucket-lakeseg/x"),
        "bucket no-such-bucket-lakeseg does not exist",
    ),
    "bucket-denied": (dict(s3="denied"), "s3:ListBucket"),
    "no-state-machine": (dict(state_machine_arn=None), "destination.state_machine_arn is not set"),
    "wrong-state-machine": (
        dict(state_machine_arn=f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:stateMachine:nope"),
        "destination.state_machine_arn: no state machine",
    ),
    "state-machine-denied": (dict(stepfunctions="denied"), "states:DescribeStateMachine"),
    "bad-mode": (dict(mode="lambda"), "destination.mode"),
}


@pytest.mark.parametrize("overrides, message", PREFLIGHT_CASES.values(), ids=PREFLIGHT_CASES.keys())
def test_preflight_names_the_bad_setting_before_any_upload(tail, bucket_keys, overrides, message):
    # given a stack-mode destination with one thing wrong
    overrides = dict(overrides)
    if overrides.get("s3") == "denied":
        overrides["s3"] = _stubbed_client("s3", "list_objects_v2", "AccessDenied", 403)
    if overrides.get("stepfunctions") == "denied":
        overrides["stepfunctions"] = _stubbed_client(
            "stepfunctions", "describe_state_machine", "AccessDeniedException", 400
        )
    settings = dict(
        application_id=h.APP_ID,
        import_s3_url=IMPORT_URL,
        state_machine_arn=tail.state_machine_arn,
        s3=h.client("s3"),
        stepfunctions=h.client("stepfunctions"),
    )
    settings.update(overrides)
    dest = PinpointDestination(**settings)

    # when preflight runs, then it refuses with a message naming the setting, and nothing was uploaded
    with pytest.raises(ConfigError, match=re.escape(message)):
        dest.preflight()
    assert bucket_keys() == []
    assert executions(tail) == []


@pytest.mark.parametrize("case", ["no-role", "unknown-project", "project-denied"])
def test_direct_mode_preflight(s3, bucket_keys, case):
    client = h.pinpoint_client()
    stubber = Stubber(client)
    if case == "unknown-project":
        stubber.add_client_error("get_import_jobs", service_error_code="NotFoundException", http_status_code=404)
    elif case == "project-denied":
        stubber.add_client_error("get_import_jobs", service_error_code="ForbiddenException", http_status_code=403)
    stubber.activate()
    dest = direct_destination(client, import_role_arn=None if case == "no-role" else h.IMPORT_ROLE_ARN)
    expected = {
        "no-role": "destination.import_role_arn",
        "unknown-project": "destination.application_id: Pinpoint has no project",
        "project-denied": "mobiletargeting:GetImportJobs",
    }[case]
    with pytest.raises(ConfigError, match=re.escape(expected)):
        dest.preflight()
    assert bucket_keys() == []


def test_direct_mode_preflight_passes_with_a_reachable_project(s3):
    client = h.pinpoint_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_import_jobs",
            {"ImportJobsResponse": {"Item": []}},
            expected_params={"ApplicationId": h.APP_ID, "PageSize": "1"},
        )
        direct_destination(client).preflight()


# --------------------------------------------------------------------------- settings and names
def test_from_settings_builds_a_working_destination(tail, fake_pinpoint, tmp_path):
    # given lakeseg.yml's destination block, as the sync passes it
    settings = {
        "type": "pinpoint",
        "application_id": h.APP_ID,
        "import_s3_url": IMPORT_URL,
        "mode": "stack",
        "state_machine_arn": tail.state_machine_arn,
        "max_concurrent_jobs": 3,
        "poll_seconds": 0,
        "region": h.REGION,
    }

    # when the registry builds it from a boto3 session
    dest = build_destination(settings, h.session())

    # then it is a Destination with the configured concurrency that delivers
    assert isinstance(dest, Destination) and dest.name == "pinpoint"
    assert (dest.max_parallel, dest.max_concurrent_jobs) == (3, 3)
    dest.preflight()
    assert dest.deliver(delivery([write_csv(tmp_path / "p.csv", rows=2)])).confirmed


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"aplication_id": "x"}, "destination.aplication_id: unknown key; did you mean 'application_id'?"),
        ({"mode": "lambda"}, "destination.mode"),
        ({"max_concurrent_jobs": 11}, "destination.max_concurrent_jobs"),
        ({"max_concurrent_jobs": "two"}, "destination.max_concurrent_jobs"),
        ({"poll_seconds": "soon"}, "destination.poll_seconds"),
        ({"max_job_mb": 2048}, "destination.max_job_mb"),
    ],
    ids=["typo", "mode", "too-many-jobs", "jobs-not-a-number", "poll-not-a-number", "job-too-big"],
)
def test_from_settings_rejects_bad_settings_by_name(aws, settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PinpointDestination.from_settings({"type": "pinpoint", **settings}, h.session())


def test_defaults(aws):
    dest = PinpointDestination.from_settings(
        {"type": "pinpoint", "application_id": h.APP_ID, "import_s3_url": IMPORT_URL}, h.session()
    )
    assert (dest.mode, dest.max_parallel, dest.kms_key_id, dest.max_job_bytes) == ("stack", 2, None, 1024**3)
    # stack mode lists the project's import jobs too (earlier runs' imports, the account's running jobs)
    assert dest.pinpoint is not None and dest.stepfunctions is not None


VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@pytest.mark.parametrize(
    "segment",
    ["seg_email_clickers", "seg_" + "x" * 120, "seg with spaces/and:colons"],
    ids=["plain", "too-long", "odd-characters"],
)
def test_execution_names_are_valid_deterministic_and_distinct(segment):
    names = {execution_name(RUN_ID, segment, part) for part in (1, 2, 10)}
    assert len(names) == 3
    assert all(VALID_NAME.match(n) for n in names)
    assert execution_name(RUN_ID, segment, 1) == execution_name(RUN_ID, segment, 1)
    assert execution_name(RUN_ID, segment, 1) != execution_name(RUN_ID.replace("abc", "abd"), segment, 1)


def test_names_that_differ_only_in_replaced_characters_stay_distinct():
    assert execution_name(RUN_ID, "seg.a", 1) != execution_name(RUN_ID, "seg_a", 1)


OLD_RUN = "20261124T030000000Z-000000"


def start_orphan(tail, segment="seg_email_clickers") -> str:
    """An execution of an earlier (killed) run for the segment, still importing."""
    return tail.start(
        execution_name(OLD_RUN, segment, 1),
        {
            "ApplicationId": h.APP_ID,
            "S3Url": f"s3://{BUCKET}/lakeseg/imports/{OLD_RUN}/{segment}/part-1/",
            "RunId": OLD_RUN,
            "Segment": segment,
            "PollSeconds": 0,
        },
    )


@pytest.mark.parametrize("lists_jobs", [True, False], ids=["job-list-and-executions", "executions-only"])
def test_an_orphaned_import_of_the_segment_is_waited_for(tail, fake_pinpoint, tmp_path, lists_jobs):
    # given an earlier run's execution for this segment, its job still PROCESSING for a while
    fake_pinpoint.hold = 0.6
    orphan = start_orphan(tail)
    dest = stack_destination(tail, pinpoint=fake_pinpoint.client if lists_jobs else None)
    # when this run delivers the segment
    result = dest.deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=2)]))
    # then it waited: the old import ended before the new one started (never two in flight)
    assert result.confirmed, result.errors
    assert tail.sfn.describe_execution(executionArn=orphan)["status"] == "SUCCEEDED"
    assert fake_pinpoint.max_in_flight == 1 and len(fake_pinpoint.jobs) == 2


def test_an_orphan_that_outlives_the_timeout_stops_the_delivery(tail, fake_pinpoint, tmp_path):
    fake_pinpoint.hold = 30
    start_orphan(tail)
    # (the orphan's job exists before this run starts: on a loaded machine moto's worker may take a while)
    deadline = time.monotonic() + 20
    while not fake_pinpoint.jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    dest = stack_destination(tail, pinpoint=fake_pinpoint.client, timeout=0.3)
    result = dest.deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=2)]))
    # then nothing of this run was imported, and the reason says why
    assert not result.confirmed and "still in flight" in result.errors[0]
    assert len(fake_pinpoint.jobs) == 1


def test_an_orphan_of_another_segment_does_not_hold_this_one(tail, fake_pinpoint, tmp_path):
    fake_pinpoint.hold = 30
    start_orphan(tail, segment="seg_other")
    dest = stack_destination(tail, pinpoint=fake_pinpoint.client, timeout=5)
    fake_pinpoint.hold = 0
    result = dest.deliver(delivery([write_csv(tmp_path / "part-00001.csv", rows=2)]))
    assert result.confirmed, result.errors
