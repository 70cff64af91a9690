"""The Pinpoint destination, one behaviour at a time and fast.

Every AWS call goes to a real boto3 client answered by botocore's ``Stubber``,
which checks each request's exact parameters (and each scripted response)
against the service model; sleeps are recorded, never slept. The end-to-end
tests against moto running the real import tail are in test_pinpoint.py.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import ANY, Stubber

from sync.core.errors import ConfigError
from sync.destinations import pinpoint as pp
from sync.destinations.base import JobRecord, SegmentDelivery
from sync.destinations.pinpoint import PinpointDestination, execution_name, parse_s3_url, segment_dimensions

from . import pinpoint_harness as h

RUN = "20261125T030000123Z-abc123"
OLD_RUN = "20261124T030000000Z-000000"
SEG = "seg_email_clickers"
BUCKET = "lakeseg-units"
URL = f"s3://{BUCKET}/lakeseg/imports"
BASE = f"lakeseg/imports/{RUN}/{SEG}"
FOLDER = f"s3://{BUCKET}/{BASE}/part-1/"
SM_ARN = f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:stateMachine:lakeseg-import-tail"
EXEC_NAME = f"{RUN}-{SEG}-p1"
EXEC_ARN = f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:execution:lakeseg-import-tail:{EXEC_NAME}"
COUNTS = {"rows": 10, "entered": 3, "changed": 1, "exited": 0, "unchanged": 6}
KNOWN = (
    "name, application_id, import_s3_url, mode, state_machine_arn, import_role_arn, segment_name_prefix, "
    "poll_seconds, max_concurrent_jobs, kms_key_id, timeout, max_job_mb, region, max_rejected_rows, "
    "max_isolation_jobs"
)


@functools.cache
def aws_client(service: str):
    """One real client per service for the whole run (Stubbers are attached per test)."""
    return h.client(service)


@pytest.fixture
def aws_stub():
    """Stubbers on the s3, stepfunctions and pinpoint clients; every scripted call must have been made."""
    stubs = {svc: Stubber(aws_client(svc)) for svc in ("s3", "stepfunctions", "pinpoint")}
    for s in stubs.values():
        s.activate()
    yield SimpleNamespace(**{("sfn" if k == "stepfunctions" else k): v for k, v in stubs.items()})
    for s in stubs.values():
        s.deactivate()
    for s in stubs.values():
        s.assert_no_pending_responses()


class Recorder:
    """A client whose calls pass through to the stubbed one, with upload_file's arguments kept."""

    def __init__(self, client, **raising):
        self.client = client
        self.uploads: list[tuple[tuple, dict]] = []
        self.raising = raising

    def upload_file(self, *args, **kwargs):
        self.uploads.append((args, kwargs))
        return self.client.upload_file(*args, **kwargs)

    def __getattr__(self, name):
        if name in self.raising:

            def fail(**kwargs):
                raise self.raising[name]

            return fail
        return getattr(self.client, name)


def make(mode: str = "stack", *, sleeps: list | None = None, **overrides) -> PinpointDestination:
    settings = dict(
        application_id=h.APP_ID,
        import_s3_url=URL,
        mode=mode,
        s3=aws_client("s3"),
        stepfunctions=aws_client("stepfunctions") if mode == "stack" else None,
        pinpoint=aws_client("pinpoint"),
        state_machine_arn=SM_ARN if mode == "stack" else None,
        import_role_arn=h.IMPORT_ROLE_ARN if mode == "direct" else None,
        poll_seconds=0,
        retry_base_seconds=0,
        sleep=(sleeps if sleeps is not None else []).append,
    )
    settings.update(overrides)
    return PinpointDestination(**settings)


def csv_file(tmp_path: Path, name: str = "part-00001.csv", rows: int = 2) -> Path:
    path = tmp_path / name
    path.write_text("Id,Address,ChannelType\n" + "".join(f"ep-{i},u{i}@example.com,EMAIL\n" for i in range(rows)))
    return path


def delivery(files=(), *, run_id: str = RUN, segment: str = SEG, segment_name=None, segment_filter=None):
    return SegmentDelivery(
        run_id=run_id,
        segment=segment,
        files=tuple(files),
        fields=("Id", "Address", "ChannelType"),
        counts=dict(COUNTS),
        segment_name=segment_name,
        segment_filter=segment_filter or {},
    )


def error(stub, method: str, code: str, status: int = 400, message: str = "m") -> None:
    stub.add_client_error(method, service_error_code=code, service_message=message, http_status_code=status)


# --------------------------------------------------------------------------- scripted AWS answers
def expect_page(stub, method: str, response: str, items, token=None, next_token=None) -> None:
    """One page of a paged Pinpoint listing (GetImportJobs, GetSegments), asked for exactly as lakeseg pages."""
    params = {"ApplicationId": h.APP_ID, "PageSize": "100"}
    if token:
        params["Token"] = token
    page = {"Item": list(items)}
    if next_token:
        page["NextToken"] = next_token
    stub.add_response(method, {response: page}, expected_params=params)


def expect_list_jobs(stub, *items, token=None, next_token=None) -> None:
    expect_page(stub, "get_import_jobs", "ImportJobsResponse", items, token, next_token)


def expect_no_execution(stub, arn: str = EXEC_ARN, code: str = "ExecutionDoesNotExist") -> None:
    stub.add_client_error(
        "describe_execution", service_error_code=code, http_status_code=400, expected_params={"executionArn": arn}
    )


def execution(status: str, arn: str = EXEC_ARN, **extra) -> dict:
    return {
        "executionArn": arn,
        "stateMachineArn": SM_ARN,
        "status": status,
        "startDate": "2026-11-25T03:00:00Z",
        **extra,
    }


def expect_execution(stub, status: str, arn: str = EXEC_ARN, **extra) -> None:
    stub.add_response("describe_execution", execution(status, arn, **extra), expected_params={"executionArn": arn})


def expect_put(stub, key: str, **extra) -> None:
    stub.add_response(
        "put_object",
        {},
        expected_params={
            "Bucket": BUCKET,
            "Key": key,
            "Body": ANY,
            "ChecksumAlgorithm": ANY,
            "ContentType": "text/csv; charset=utf-8",
            **extra,
        },
    )


def expect_running_executions(stub, *executions_: tuple[str, str | None]) -> None:
    """ListExecutions (RUNNING) and DescribeExecution of each: (name, input)."""
    listed = [
        {
            "executionArn": f"{SM_ARN.replace('stateMachine', 'execution')}:{name}",
            "stateMachineArn": SM_ARN,
            "name": name,
            "status": "RUNNING",
            "startDate": "2026-11-25T03:00:00Z",
        }
        for name, _ in executions_
    ]
    stub.add_response(
        "list_executions",
        {"executions": listed},
        expected_params={"stateMachineArn": SM_ARN, "statusFilter": "RUNNING"},
    )
    for item, (_, payload) in zip(listed, executions_):
        extra = {"input": payload} if payload is not None else {}
        expect_execution(stub, "RUNNING", item["executionArn"], **extra)


def report(**fields) -> str:
    return json.dumps(fields)


def start_input(**extra) -> dict:
    return {
        "ApplicationId": h.APP_ID,
        "S3Url": FOLDER,
        "RunId": RUN,
        "Segment": SEG,
        "Counts": COUNTS,
        "Part": "1",
        **extra,
    }


def expect_start(stub, payload: dict, name: str = EXEC_NAME) -> None:
    stub.add_response(
        "start_execution",
        {"executionArn": EXEC_ARN, "startDate": "2026-11-25T03:00:00Z"},
        expected_params={"stateMachineArn": SM_ARN, "name": name, "input": json.dumps(payload, sort_keys=True)},
    )


# --------------------------------------------------------------------------- parse_s3_url
@pytest.mark.parametrize(
    "url, expected",
    [
        ("s3://lakeseg-units/lakeseg/imports", ("lakeseg-units", "lakeseg/imports")),
        ("s3://lakeseg-units//a/b//", ("lakeseg-units", "a/b")),
        ("s3://lakeseg-units/X/Y/X/", ("lakeseg-units", "X/Y/X")),
        ("s3://lakeseg-units/", ("lakeseg-units", "")),
        ("s3://lakeseg-units", ("lakeseg-units", "")),
        ("s3://abc/x", ("abc", "x")),
        ("s3://a.b-c/x", ("a.b-c", "x")),
        (f"s3://{'a' * 63}/x", ("a" * 63, "x")),
    ],
    ids=[
        "prefix",
        "slashes-stripped",
        "only-slashes-stripped",
        "trailing-slash",
        "bucket-only",
        "shortest-bucket",
        "dots-and-hyphens",
        "longest-bucket",
    ],
)
def test_an_s3_url_splits_into_bucket_and_prefix(url, expected):
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        (None, "destination.import_s3_url must be an s3://bucket/prefix URL, got None"),
        (5, "destination.import_s3_url must be an s3://bucket/prefix URL, got 5"),
        ("https://b/x", "destination.import_s3_url must be an s3://bucket/prefix URL, got 'https://b/x'"),
        ("S3://bucket/x", "destination.import_s3_url must be an s3://bucket/prefix URL, got 'S3://bucket/x'"),
        ("s3://ab/x", "destination.import_s3_url names no valid bucket: 's3://ab/x'"),
        (f"s3://{'a' * 64}/x", f"destination.import_s3_url names no valid bucket: 's3://{'a' * 64}/x'"),
        ("s3://Bucket/x", "destination.import_s3_url names no valid bucket: 's3://Bucket/x'"),
        ("s3://-bucket/x", "destination.import_s3_url names no valid bucket: 's3://-bucket/x'"),
        ("s3://bucket./x", "destination.import_s3_url names no valid bucket: 's3://bucket./x'"),
        ("s3://buc_ket/x", "destination.import_s3_url names no valid bucket: 's3://buc_ket/x'"),
        ("s3:///x", "destination.import_s3_url names no valid bucket: 's3:///x'"),
    ],
    ids=[
        "none",
        "not-text",
        "https",
        "upper-scheme",
        "bucket-too-short",
        "bucket-too-long",
        "upper-case",
        "leading-hyphen",
        "trailing-dot",
        "underscore",
        "no-bucket",
    ],
)
def test_a_bad_s3_url_is_refused_by_setting_name(url, message):
    with pytest.raises(ConfigError) as err:
        parse_s3_url(url)
    assert str(err.value) == message


def test_a_bad_s3_url_names_the_setting_it_came_from():
    with pytest.raises(ConfigError, match=r"^destination\.other must be an s3://"):
        parse_s3_url("x", setting="destination.other")


# --------------------------------------------------------------------------- execution names
@pytest.mark.parametrize(
    "segment, part, expected",
    [
        (SEG, 1, f"{RUN}-{SEG}-p1"),
        (SEG, "1a", f"{RUN}-{SEG}-p1a"),
        ("s" * 50, 1, f"{RUN}-{'s' * 50}-p1"),  # 26 + 1 + 50 + 3 = 80 characters: still plain
        ("seg.a", 1, f"{RUN}-seg_a-f989c7848fa0-p1"),
        ("seg_" + "x" * 120, 2, f"{RUN}-seg_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-de000fd50205-p2"),
    ],
    ids=["plain", "isolation-half", "exactly-80", "odd-character", "too-long"],
)
def test_execution_names_are_exact(segment, part, expected):
    name = execution_name(RUN, segment, part)
    assert name == expected
    assert len(name) <= 80


def test_a_name_one_character_over_the_limit_is_hashed_to_exactly_80():
    # given a plain name of 81 characters, then the name keeps the room a hash leaves and is exactly 80 long
    name = execution_name(RUN, "s" * 51, 1)
    assert len(name) == 80
    assert re.fullmatch(rf"{RUN}-s{{37}}-[0-9a-f]{{12}}-p1", name)


# --------------------------------------------------------------------------- construction
class FakeSession:
    """What from_settings asks a boto3 session for (no request is made while building)."""

    def __init__(self):
        self.asked: list[tuple[str, str | None, object]] = []

    def client(self, service, region_name=None, config=None):
        self.asked.append((service, region_name, config))
        return f"<{service} client>"


def build(settings: dict, session=None) -> PinpointDestination:
    return PinpointDestination.from_settings(
        {"type": "pinpoint", **settings}, FakeSession() if session is None else session
    )


def test_from_settings_passes_every_setting_on():
    # given a full destination block
    session = FakeSession()
    dest = build(
        {
            "name": "prod",
            "application_id": "app",
            "import_s3_url": URL,
            "mode": "direct",
            "state_machine_arn": "sm",
            "import_role_arn": "role",
            "segment_name_prefix": "lakeseg ",
            "poll_seconds": "30",
            "max_concurrent_jobs": 3,
            "kms_key_id": "alias/k",
            "timeout": "120",
            "max_job_mb": 0.5,
            "region": "eu-west-1",
            "max_rejected_rows": 7,
            "max_isolation_jobs": 4,
        },
        session,
    )
    # then each reaches the destination, and the clients come from the session, in the region, without SDK retries
    assert (
        dest.application_id,
        dest.import_s3_url,
        dest.mode,
        dest.state_machine_arn,
        dest.import_role_arn,
        dest.segment_name_prefix,
        dest.poll_seconds,
        dest.max_concurrent_jobs,
        dest.kms_key_id,
        dest.timeout,
        dest.max_job_bytes,
        dest.max_rejected_rows,
        dest.max_isolation_jobs,
    ) == ("app", URL, "direct", "sm", "role", "lakeseg ", 30.0, 3, "alias/k", 120.0, 512 * 1024, 7, 4)
    assert [(service, region) for service, region, _ in session.asked] == [
        ("s3", "eu-west-1"),
        ("pinpoint", "eu-west-1"),
    ]
    assert (dest.s3, dest.stepfunctions, dest.pinpoint) == ("<s3 client>", None, "<pinpoint client>")
    config = session.asked[0][2]
    assert config is session.asked[1][2]
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


def test_from_settings_defaults():
    session = FakeSession()
    dest = build({"region": ""}, session)
    assert (
        dest.mode,
        dest.application_id,
        dest.import_s3_url,
        dest.state_machine_arn,
        dest.import_role_arn,
        dest.segment_name_prefix,
        dest.poll_seconds,
        dest.max_concurrent_jobs,
        dest.kms_key_id,
        dest.timeout,
        dest.max_job_bytes,
        dest.max_rejected_rows,
        dest.max_isolation_jobs,
    ) == ("stack", None, None, None, None, "", None, 2, None, 21600.0, 1024**3, 100, 32)
    assert [(service, region) for service, region, _ in session.asked] == [
        ("s3", None),
        ("stepfunctions", None),
        ("pinpoint", None),
    ]
    assert dest.stepfunctions == "<stepfunctions client>"


def test_from_settings_without_a_session_uses_boto3s_default_one(monkeypatch):
    # given boto3's default session (stood in for: a real one loads every service model)
    import boto3

    default = FakeSession()
    monkeypatch.setattr(boto3, "Session", lambda: default)
    # when built without a session, then its clients come from the default one
    dest = PinpointDestination.from_settings({"type": "pinpoint", "mode": "", "region": "eu-west-2"})
    assert dest.mode == "stack"
    assert [(service, region) for service, region, _ in default.asked] == [
        ("s3", "eu-west-2"),
        ("stepfunctions", "eu-west-2"),
        ("pinpoint", "eu-west-2"),
    ]


MB = (
    "must be above 0 and at most 1024 for pinpoint (1 GB per import job) or 1000 for customer_profiles "
    "(an upload stays under 1 GB)"
)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"aplication_id": "x"}, "destination.aplication_id: unknown key; did you mean 'application_id'?"),
        (
            {"zz": 1, "aa": 2},
            f"2 problems:\n  destination.zz: unknown key; valid keys: type, {KNOWN}\n  "
            f"destination.aa: unknown key; valid keys: type, {KNOWN}",
        ),
        ({"mode": "lambda"}, "destination.mode: Input should be 'stack' or 'direct', got 'lambda'"),
        ({"poll_seconds": 1.5}, "destination.poll_seconds: must be a whole number of seconds, got 1.5"),
        ({"poll_seconds": "3601"}, "destination.poll_seconds: must be between 0 and 3600 seconds, got '3601'"),
        ({"max_job_mb": 0}, f"destination.max_job_mb: {MB}, got 0"),
        ({"max_job_mb": 1024.5}, f"destination.max_job_mb: {MB}, got 1024.5"),
        (
            {"max_concurrent_jobs": 11},
            "destination.max_concurrent_jobs: must be a whole number between 1 and 10 (Pinpoint runs at most 10 import "
            "jobs), got 11",
        ),
    ],
    ids=[
        "unknown-key",
        "first-unknown-key-sorted",
        "mode",
        "poll-fraction",
        "poll-above-an-hour",
        "job-mb-zero",
        "job-mb-above-1024",
        "too-many-jobs",
    ],
)
def test_from_settings_refuses_a_bad_setting_word_for_word(settings, message):
    with pytest.raises(ConfigError) as err:
        build(settings)
    assert str(err.value) == f"destination settings: {message}"  # the block's one check: its settings model


@pytest.mark.parametrize("poll, expected", [(0, 0.0), (3600, 3600.0), ("60", 60.0)], ids=["zero", "an-hour", "text"])
def test_poll_seconds_accepts_whole_seconds_up_to_an_hour(poll, expected):
    assert build({"poll_seconds": poll}).poll_seconds == expected


def test_max_job_mb_of_1024_is_pinpoints_limit():
    assert build({"max_job_mb": 1024}).max_job_bytes == 1024**3


def test_constructor_defaults():
    dest = PinpointDestination(application_id="a", import_s3_url=URL, s3=None)
    assert (
        dest.mode,
        dest.segment_name_prefix,
        dest.timeout,
        dest.max_job_bytes,
        dest.multipart_threshold,
        dest.multipart_chunksize,
        dest.retry_base_seconds,
        dest.max_retries,
        dest.max_rejected_rows,
        dest.max_isolation_jobs,
        dest.max_concurrent_jobs,
        dest.max_parallel,
        dest.poll_seconds,
    ) == ("stack", "", 21600.0, 1024**3, 64 * 1024**2, 16 * 1024**2, 0.5, 8, 100, 32, 2, 2, None)
    assert (dest._retrying.label, dest._retrying.max_retries, dest._retrying.base_seconds) == ("pinpoint", 8, 0.5)
    assert dest.name == "pinpoint"


def test_constructor_converts_and_keeps_what_it_is_given():
    sleeps: list = []
    dest = PinpointDestination(
        application_id="a",
        import_s3_url=URL,
        s3="s3",
        stepfunctions="sfn",
        pinpoint="pp",
        timeout="1.5",
        max_job_bytes="10",
        multipart_threshold="11",
        multipart_chunksize="12",
        retry_base_seconds="0.25",
        max_retries="3",
        max_rejected_rows="4",
        max_isolation_jobs="5",
        max_concurrent_jobs=3,
        sleep=sleeps.append,
    )
    assert (
        dest.timeout,
        dest.max_job_bytes,
        dest.multipart_threshold,
        dest.multipart_chunksize,
        dest.retry_base_seconds,
        dest.max_retries,
        dest.max_rejected_rows,
        dest.max_isolation_jobs,
    ) == (1.5, 10, 11, 12, 0.25, 3, 4, 5)
    assert (dest.s3, dest.stepfunctions, dest.pinpoint, dest.max_parallel) == ("s3", "sfn", "pp", 3)
    assert (dest._retrying.max_retries, dest._retrying.base_seconds) == (3, 0.25)
    dest._sleep(1)
    dest._retrying.sleep(2)
    assert sleeps == [1, 2]
    # three job slots, shared by every delivery of the destination
    assert all(dest._slots.acquire(blocking=False) for _ in range(3))
    assert not dest._slots.acquire(blocking=False)


# --------------------------------------------------------------------------- preflight: settings
STACK_NOT_SET = {
    "no-application-id": (
        dict(application_id=None),
        "destination.application_id is not set: the Pinpoint project id (stack output ApplicationId)",
    ),
    "blank-application-id": (
        dict(application_id=" "),
        "destination.application_id is not set: the Pinpoint project id (stack output ApplicationId)",
    ),
    "no-import-url": (
        dict(import_s3_url=""),
        "destination.import_s3_url is not set: s3://bucket/prefix for import files (stack output ImportS3Url)",
    ),
    "bad-import-url": (dict(import_s3_url="s3://B"), "destination.import_s3_url names no valid bucket: 's3://B'"),
    "bad-mode": (dict(mode="lambda"), "destination.mode must be 'stack' or 'direct', got 'lambda'"),
    "no-state-machine": (
        dict(state_machine_arn=""),
        "destination.state_machine_arn is not set (stack output StateMachineArn); or use mode: direct",
    ),
    "no-sfn-client": (dict(stepfunctions=None), "destination.mode is stack but no Step Functions client was given"),
}
DIRECT_NOT_SET = {
    "no-role": (
        dict(import_role_arn=None),
        "destination.import_role_arn is not set: direct mode passes the role "
        "Pinpoint assumes to read the files (stack output ImportRoleArn)",
    ),
    "no-pinpoint-client": (dict(pinpoint=None), "destination.mode is direct but no Pinpoint client was given"),
}


@pytest.mark.parametrize(
    "mode, overrides, message",
    [("stack", *c) for c in STACK_NOT_SET.values()] + [("direct", *c) for c in DIRECT_NOT_SET.values()],
    ids=[*STACK_NOT_SET, *DIRECT_NOT_SET],
)
def test_preflight_refuses_a_missing_setting_before_any_call(aws_stub, mode, overrides, message):
    overrides = dict(overrides)
    # given a destination with one setting missing (the stubbers answer no call at all)
    dest = make(overrides.pop("mode", mode), **overrides)
    # when preflight runs, then it names the setting, word for word
    with pytest.raises(ConfigError) as err:
        dest.preflight()
    assert str(err.value) == message


def expect_bucket_listed(stub, prefix: str = "lakeseg/imports/") -> None:
    stub.add_response(
        "list_objects_v2",
        {"KeyCount": 0, "IsTruncated": False},
        expected_params={"Bucket": BUCKET, "Prefix": prefix, "MaxKeys": 1},
    )


def test_stack_preflight_lists_the_prefix_and_describes_the_state_machine(aws_stub):
    # given a bucket and state machine that answer (a stack destination needs no Pinpoint client)
    expect_bucket_listed(aws_stub.s3)
    aws_stub.sfn.add_response(
        "describe_state_machine",
        {
            "stateMachineArn": SM_ARN,
            "name": "lakeseg-import-tail",
            "definition": "{}",
            "roleArn": h.SFN_ROLE_ARN,
            "type": "STANDARD",
            "creationDate": "2026-11-25T03:00:00Z",
        },
        expected_params={"stateMachineArn": SM_ARN},
    )
    # when preflight runs, then it passes having made exactly those calls
    make("stack", pinpoint=None).preflight()


def test_direct_preflight_lists_the_bucket_root_and_one_import_job(aws_stub):
    expect_bucket_listed(aws_stub.s3, prefix="")
    aws_stub.pinpoint.add_response(
        "get_import_jobs",
        {"ImportJobsResponse": {"Item": []}},
        expected_params={"ApplicationId": h.APP_ID, "PageSize": "1"},
    )
    make("direct", import_s3_url=f"s3://{BUCKET}", stepfunctions=None).preflight()


WHERE = f"s3://{BUCKET}/lakeseg/imports"
PREFLIGHT_ERRORS = {
    "bucket-missing": (
        "s3",
        "list_objects_v2",
        "NoSuchBucket",
        404,
        f"destination.import_s3_url: bucket {BUCKET} does not exist ({WHERE})",
    ),
    "bucket-404": (
        "s3",
        "list_objects_v2",
        "404",
        404,
        f"destination.import_s3_url: bucket {BUCKET} does not exist ({WHERE})",
    ),
    "bucket-not-found": (
        "s3",
        "list_objects_v2",
        "NotFound",
        404,
        f"destination.import_s3_url: bucket {BUCKET} does not exist ({WHERE})",
    ),
    "bucket-denied": (
        "s3",
        "list_objects_v2",
        "AccessDenied",
        403,
        f"destination.import_s3_url: access denied to bucket {BUCKET} ({WHERE}); the caller needs "
        f"s3:ListBucket on arn:aws:s3:::{BUCKET} and s3:PutObject on {WHERE}/*",
    ),
    "bucket-other": (
        "s3",
        "list_objects_v2",
        "SlowDown",
        400,
        f"destination.import_s3_url: cannot reach bucket {BUCKET} ({WHERE}): SlowDown",
    ),
    "sm-missing": (
        "sfn",
        "describe_state_machine",
        "StateMachineDoesNotExist",
        400,
        f"destination.state_machine_arn: no state machine {SM_ARN} (StateMachineDoesNotExist); use the "
        "stack output StateMachineArn",
    ),
    "sm-invalid-arn": (
        "sfn",
        "describe_state_machine",
        "InvalidArn",
        400,
        f"destination.state_machine_arn: no state machine {SM_ARN} (InvalidArn); use the stack output StateMachineArn",
    ),
    "sm-resource-not-found": (
        "sfn",
        "describe_state_machine",
        "ResourceNotFound",
        400,
        f"destination.state_machine_arn: no state machine {SM_ARN} (ResourceNotFound); use the "
        "stack output StateMachineArn",
    ),
    "sm-denied": (
        "sfn",
        "describe_state_machine",
        "AccessDeniedException",
        400,
        f"destination.state_machine_arn: access denied to state machine {SM_ARN}; the caller needs "
        "states:DescribeStateMachine and states:StartExecution on it and states:DescribeExecution on its "
        "executions",
    ),
    "sm-other": (
        "sfn",
        "describe_state_machine",
        "ThrottlingException",
        400,
        f"destination.state_machine_arn: cannot reach state machine {SM_ARN}: ThrottlingException",
    ),
    "project-missing": (
        "pinpoint",
        "get_import_jobs",
        "NotFoundException",
        404,
        f"destination.application_id: Pinpoint has no project {h.APP_ID} (NotFoundException)",
    ),
    "project-bad-request": (
        "pinpoint",
        "get_import_jobs",
        "BadRequestException",
        400,
        f"destination.application_id: Pinpoint has no project {h.APP_ID} (BadRequestException)",
    ),
    "project-denied": (
        "pinpoint",
        "get_import_jobs",
        "ForbiddenException",
        403,
        f"destination.application_id: access denied to Pinpoint project {h.APP_ID}; the caller needs "
        "mobiletargeting:GetImportJobs, mobiletargeting:CreateImportJob and "
        "mobiletargeting:GetImportJob on it, and iam:PassRole on destination.import_role_arn",
    ),
    "project-other": (
        "pinpoint",
        "get_import_jobs",
        "TooManyRequestsException",
        429,
        f"destination.application_id: cannot reach Pinpoint project {h.APP_ID}: TooManyRequestsException",
    ),
}


@pytest.mark.parametrize("service, method, code, status, message", PREFLIGHT_ERRORS.values(), ids=PREFLIGHT_ERRORS)
def test_preflight_turns_a_failed_call_into_the_settings_error(aws_stub, service, method, code, status, message):
    # given every call before the failing one answers
    mode = "direct" if service == "pinpoint" else "stack"
    if service != "s3":
        expect_bucket_listed(aws_stub.s3)
    error(getattr(aws_stub, service), method, code, status)
    # when preflight runs, then the error names the setting, what failed and (when denied) the IAM actions
    with pytest.raises(ConfigError) as err:
        make(mode).preflight()
    assert str(err.value) == message


def test_preflight_names_a_missing_bucket_without_prefix(aws_stub):
    error(aws_stub.s3, "list_objects_v2", "NoSuchBucket", 404)
    with pytest.raises(ConfigError) as err:
        make("stack", import_s3_url=f"s3://{BUCKET}/").preflight()
    assert str(err.value) == f"destination.import_s3_url: bucket {BUCKET} does not exist (s3://{BUCKET})"


@pytest.mark.parametrize("service", ["s3", "stepfunctions", "pinpoint"])
def test_preflight_says_when_there_are_no_credentials(aws_stub, service):
    if service != "s3":
        expect_bucket_listed(aws_stub.s3)
    clients = {"s3": aws_client("s3"), "stepfunctions": aws_client("stepfunctions"), "pinpoint": aws_client("pinpoint")}
    method = {"s3": "list_objects_v2", "stepfunctions": "describe_state_machine", "pinpoint": "get_import_jobs"}
    clients[service] = Recorder(clients[service], **{method[service]: NoCredentialsError()})
    with pytest.raises(ConfigError) as err:
        make("direct" if service == "pinpoint" else "stack", **clients).preflight()
    assert str(err.value) == (
        "no AWS credentials for the pinpoint destination (set a profile, role or AWS_* environment variables)"
    )


@pytest.mark.parametrize("service", ["s3", "stepfunctions", "pinpoint"])
def test_preflight_reports_an_unreachable_endpoint_by_setting(aws_stub, service):
    # given the service cannot be reached at all
    down = EndpointConnectionError(endpoint_url=f"https://{service}.example")
    if service != "s3":
        expect_bucket_listed(aws_stub.s3)
    clients = {"s3": aws_client("s3"), "stepfunctions": aws_client("stepfunctions"), "pinpoint": aws_client("pinpoint")}
    method = {"s3": "list_objects_v2", "stepfunctions": "describe_state_machine", "pinpoint": "get_import_jobs"}
    clients[service] = Recorder(clients[service], **{method[service]: down})
    setting = {"s3": "import_s3_url", "stepfunctions": "state_machine_arn", "pinpoint": "application_id"}[service]
    dest = make("direct" if service == "pinpoint" else "stack", **clients)
    # when preflight runs, then it names the setting and the endpoint
    with pytest.raises(ConfigError) as err:
        dest.preflight()
    assert str(err.value).startswith(f"destination.{setting}: cannot reach ")
    assert str(err.value).endswith(f'Could not connect to the endpoint URL: "https://{service}.example"')
    assert isinstance(err.value.__cause__, EndpointConnectionError)


# --------------------------------------------------------------------------- verdicts (no AWS)
def rec(status="COMPLETED", failures=0, job_id="j1", processed=10, messages=(), arn=None) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        status=status,
        total_processed=processed,
        total_failures=failures,
        failures=list(messages),
        execution_arn=arn,
    )


@pytest.mark.parametrize(
    "record, expected",
    [
        (rec("COMPLETED", 0), True),
        (rec("COMPLETED", None), True),
        (rec("COMPLETED", 1), False),
        (rec("FAILED", 0), False),
        (rec("PROCESSING", 0), False),
    ],
    ids=["completed", "completed-no-count", "completed-with-failures", "failed", "processing"],
)
def test_a_job_is_ok_only_completed_without_failures(record, expected):
    assert pp._job_ok(record) is expected


@pytest.mark.parametrize(
    "record, text",
    [
        (
            rec("COMPLETED", 2, processed=10),
            "import job j1 completed but rejected 2 endpoint(s) of 10; see the job's failures in `lakeseg history`",
        ),
        (
            rec("COMPLETED", 2, processed=10, arn="arn:x"),
            "import job j1 completed but rejected 2 endpoint(s) of 10 (execution arn:x); see the job's failures in "
            "`lakeseg history`",
        ),
        (rec("FAILED", 0), "import job j1 FAILED"),
        (rec("FAILED", 0, job_id="", arn="arn:x"), "import job (none) FAILED (execution arn:x)"),
    ],
    ids=["completed-with-rejections", "with-execution", "failed", "no-job-id"],
)
def test_a_job_is_described_in_one_line(record, text):
    assert pp._describe(record) == text


def test_outcome_of_an_error_is_that_error():
    outcome = pp._outcome(rec("COMPLETED", 0), "boom")
    assert (outcome.ok, outcome.error, outcome.refused_rows) == (False, "boom", 0)


def test_outcome_of_a_clean_job_is_accepted():
    outcome = pp._outcome(rec("COMPLETED", 0), None)
    assert (outcome.ok, outcome.error, outcome.refused_rows, outcome.messages) == (True, None, 0, [])


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED"])
def test_outcome_of_refused_endpoints_carries_their_count_and_messages(status):
    record = rec(status, 2, messages=["line 2: bad", "line 3: bad"])
    outcome = pp._outcome(record, None)
    assert (outcome.ok, outcome.error, outcome.refused_rows, outcome.messages) == (
        False,
        None,
        2,
        ["line 2: bad", "line 3: bad"],
    )
    assert outcome.refused and outcome.record is record
    assert outcome.messages is not record.failures


@pytest.mark.parametrize(
    "record, text",
    [
        (rec("FAILED", 0), "import job j1 FAILED"),
        (rec("FAILED", None), "import job j1 FAILED"),
        (rec("PROCESSING", 3), "import job j1 PROCESSING"),
    ],
    ids=["failed-no-failures", "failed-no-count", "not-terminal"],
)
def test_outcome_of_a_failed_job_is_an_error(record, text):
    outcome = pp._outcome(record, None)
    assert (outcome.ok, outcome.error, outcome.refused_rows) == (False, text, 0)


@pytest.mark.parametrize(
    "record, error, platform_failed",
    [
        (rec("FAILED", 0), None, True),
        (rec("FAILED", None), "import job j1 FAILED (States.TaskFailed)", True),
        (rec("FAILED", 0, job_id=""), "import tail execution arn:x ended FAILED", False),
        (rec("PROCESSING", 0), "import job j1 still PROCESSING after 5 s", False),
        (rec("COMPLETED", 0), "boom", False),
    ],
    ids=["direct-failed", "tail-failed", "no-job-created", "gave-up-waiting", "an-error"],
)
def test_only_an_import_job_that_pinpoint_ended_failed_is_the_platforms_verdict(record, error, platform_failed):
    # Given a job's record and the error lakeseg met, if any
    # When it becomes an outcome
    outcome = pp._outcome(record, error)
    # Then a one-row job would count its row refused only when Pinpoint itself ended the job FAILED
    assert outcome.platform_failed is platform_failed and outcome.error


def test_segment_dimensions_select_in_segment_values():
    dims = segment_dimensions(
        {
            "User.UserAttributes.HasClicked": ("Yes",),
            "User.UserAttributes.Tier": ("a", "b"),
            "Attributes.Plan": ("gold",),
            "Attributes.Region": ("eu",),
        }
    )
    assert dims == {
        "UserAttributes": {
            "HasClicked": {"AttributeType": "INCLUSIVE", "Values": ["Yes"]},
            "Tier": {"AttributeType": "INCLUSIVE", "Values": ["a", "b"]},
        },
        "Attributes": {
            "Plan": {"AttributeType": "INCLUSIVE", "Values": ["gold"]},
            "Region": {"AttributeType": "INCLUSIVE", "Values": ["eu"]},
        },
    }


def test_an_attribute_name_is_everything_after_the_first_dot():
    assert segment_dimensions({"Attributes.plan.tier": ("gold",)}) == {
        "Attributes": {"plan.tier": {"AttributeType": "INCLUSIVE", "Values": ["gold"]}}
    }


@pytest.mark.parametrize(
    "field, values, message",
    [
        (
            "Metrics.score",
            ("1",),
            "segment_values: Metrics.score cannot select a dynamic segment (use a "
            "User.UserAttributes.* or Attributes.* field)",
        ),
        (
            "Attributes.",
            ("1",),
            "segment_values: Attributes. cannot select a dynamic segment (use a "
            "User.UserAttributes.* or Attributes.* field)",
        ),
        (
            "User.Plan",
            ("1",),
            "segment_values: User.Plan cannot select a dynamic segment (use a "
            "User.UserAttributes.* or Attributes.* field)",
        ),
        ("Attributes.Plan", (), "segment_values: Attributes.Plan lists no value"),
        ("User.UserAttributes.Plan", (), "segment_values: User.UserAttributes.Plan lists no value"),
    ],
    ids=["metric", "attribute-without-name", "user-field", "no-attribute-value", "no-user-attribute-value"],
)
def test_segment_dimensions_refuse_what_cannot_select(field, values, message):
    with pytest.raises(ValueError) as err:
        segment_dimensions({field: values})
    assert str(err.value) == message


@pytest.mark.parametrize(
    "status, running",
    [("CREATED", True), ("PROCESSING", True), ("INITIALIZING", True), ("COMPLETED", False), ("FAILED", False)],
)
def test_a_listed_job_runs_until_completed_or_failed(status, running):
    assert pp._running({"JobStatus": status}) is running


def test_the_job_for_a_folder_is_the_first_listed_for_exactly_that_url():
    jobs = [
        {"Id": "a", "Definition": None},
        {"Id": "b"},
        {"Id": "c", "Definition": {"S3Url": FOLDER + "x/"}},
        {"Id": 7, "Definition": {"S3Url": FOLDER}},
        {"Id": "e", "Definition": {"S3Url": FOLDER}},
    ]
    assert pp._job_for(jobs, FOLDER) == "7"
    assert pp._job_for(jobs[:3], FOLDER) is None


# --------------------------------------------------------------------------- stack mode, request by request
def progress_log() -> tuple[list, object]:
    seen: list = []
    return seen, lambda label, done, total: seen.append((label, done, total))


def test_stack_delivery_uploads_starts_one_execution_and_reads_its_report(aws_stub, tmp_path, caplog):
    # given no import in flight, no execution of this job yet, and an import tail that succeeds
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    f = csv_file(tmp_path)
    expect_list_jobs(aws_stub.pinpoint)  # earlier runs' jobs: none
    expect_running_executions(aws_stub.sfn)  # earlier runs' executions: none
    expect_no_execution(aws_stub.sfn)  # this job's: not started
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")  # the bucket's default encryption
    expect_list_jobs(aws_stub.pinpoint, h.job_response("other", "PROCESSING", "s3://x/y/"))  # a free slot
    expect_start(aws_stub.sfn, start_input(PollSeconds=0, MaxPolls=8700))
    expect_execution(aws_stub.sfn, "RUNNING")
    expect_execution(
        aws_stub.sfn,
        "SUCCEEDED",
        output=report(JobId="job-1", JobStatus="COMPLETED", TotalProcessed=2, TotalFailures=0, Failures=[]),
    )
    sleeps: list = []
    s3 = Recorder(aws_client("s3"))
    seen, progress = progress_log()
    # when delivered
    result = make("stack", s3=s3, sleeps=sleeps).deliver(delivery([f]), progress)
    # then confirmed with the job's numbers, the execution named after run, segment and part
    assert (result.confirmed, result.errors, result.location) == (True, [], f"s3://{BUCKET}/{BASE}/")
    assert result.jobs == [
        JobRecord(
            job_id="job-1", status="COMPLETED", total_processed=2, total_failures=0, failures=[], execution_arn=EXEC_ARN
        )
    ]
    # and it polled once at the shortest interval, reporting progress
    assert sleeps == [0.02]
    assert seen == [(f"{SEG}: uploading", 1, 1), (f"{SEG}: importing", 0, 1), (f"{SEG}: importing", 1, 1)]
    ((args, kwargs),) = s3.uploads
    assert args == (str(f), BUCKET, f"{BASE}/part-1/part-00001.csv")
    assert kwargs["ExtraArgs"] == {"ContentType": "text/csv; charset=utf-8"}
    assert (kwargs["Config"].multipart_threshold, kwargs["Config"].multipart_chunksize) == (64 * 1024**2, 16 * 1024**2)
    assert f"pinpoint: {SEG} part 1: started execution {EXEC_NAME}" in caplog.messages


def test_uploads_use_the_kms_key_and_the_multipart_settings(aws_stub, tmp_path):
    # given a KMS key and multipart settings, and two files
    files = [csv_file(tmp_path, "part-00001.csv"), csv_file(tmp_path, "part-00002.csv")]
    for f in files:
        expect_put(aws_stub.s3, f"{BASE}/part-1/{f.name}", ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/k")
    s3 = Recorder(aws_client("s3"))
    dest = make("stack", s3=s3, kms_key_id="alias/k", multipart_threshold=6 * 1024**2, multipart_chunksize=7 * 1024**2)
    seen, progress = progress_log()
    tracker = pp.JobProgress(progress, SEG, 2, 1)
    # when one job's files are uploaded
    dest._upload(BUCKET, pp.Job("1", tuple(files)), f"{BASE}/part-1/", tracker)
    # then each is encrypted with the key, uploaded with those settings, and counted
    assert [kw["ExtraArgs"] for _, kw in s3.uploads] == [
        {"ContentType": "text/csv; charset=utf-8", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}
    ] * 2
    assert {(kw["Config"].multipart_threshold, kw["Config"].multipart_chunksize) for _, kw in s3.uploads} == {
        (6 * 1024**2, 7 * 1024**2)
    }
    assert seen == [(f"{SEG}: uploading", 1, 2), (f"{SEG}: uploading", 2, 2)]


@pytest.mark.parametrize(
    "poll_seconds, timeout, extra",
    [
        (None, 100, {}),
        (30, 100, {"PollSeconds": 30, "MaxPolls": 4}),
        (30, 90, {"PollSeconds": 30, "MaxPolls": 3}),
        (0, 0, {"PollSeconds": 0, "MaxPolls": 1}),
        (0, 5.5, {"PollSeconds": 0, "MaxPolls": 6}),
        (1, 10**9, {"PollSeconds": 1, "MaxPolls": 8700}),
        (7200, 10**9, {"PollSeconds": 7200, "MaxPolls": 4379}),
        (8759, 10**9, {"PollSeconds": 8759, "MaxPolls": 3600}),  # (365 days - 1 hour) / 8759 s is exactly 3600
    ],
    ids=[
        "tail-default",
        "timeout-over-interval",
        "exact-multiple",
        "at-least-one-poll",
        "no-interval",
        "tail-bound",
        "execution-time-limit",
        "execution-time-limit-exactly",
    ],
)
def test_the_execution_polls_as_long_as_lakeseg_waits(aws_stub, poll_seconds, timeout, extra):
    # given a poll interval and timeout, then the input tells the tail how often and how long to poll
    expect_start(aws_stub.sfn, start_input(**extra))
    dest = make("stack", poll_seconds=poll_seconds, timeout=timeout)
    arn = dest._start_execution(delivery(), pp.Job("1", ()), FOLDER, EXEC_NAME, "arn:computed")
    assert arn == EXEC_ARN


def test_the_execution_input_carries_a_configured_role(aws_stub):
    expect_start(aws_stub.sfn, start_input(RoleArn="arn:aws:iam::1:role/r"))
    make("stack", import_role_arn="arn:aws:iam::1:role/r", poll_seconds=None)._start_execution(
        delivery(), pp.Job("1", ()), FOLDER, EXEC_NAME, "arn:computed"
    )


def test_an_execution_started_meanwhile_is_attached_to(aws_stub, caplog):
    # given another attempt started the execution between our check and our start
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    error(aws_stub.sfn, "start_execution", "ExecutionAlreadyExists")
    # when started, then the computed ARN of that execution is used, and the log says so
    arn = make("stack", poll_seconds=None)._start_execution(
        delivery(), pp.Job("1", ()), FOLDER, EXEC_NAME, "arn:computed"
    )
    assert arn == "arn:computed"
    assert caplog.messages == [f"pinpoint: {SEG} part 1: execution {EXEC_NAME} already exists; attaching"]


def test_a_job_whose_execution_was_started_meanwhile_waits_for_that_execution(aws_stub, tmp_path):
    # given no execution when checked, but another attempt starts it before ours
    expect_no_execution(aws_stub.sfn)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    error(aws_stub.sfn, "start_execution", "ExecutionAlreadyExists")
    expect_execution(aws_stub.sfn, "SUCCEEDED", output=report(JobId="job-1", JobStatus="COMPLETED", TotalFailures=0))
    # when the job runs, then it waits for that execution (by its ARN) and takes its verdict
    outcome = make("stack", pinpoint=None).run_job(
        delivery(), pp.Job("1", (csv_file(tmp_path),)), pp.JobProgress(None, SEG, 1, 1)
    )
    assert outcome.ok and outcome.record.execution_arn == EXEC_ARN


def test_a_throttled_start_is_retried_after_a_backoff(aws_stub):
    error(aws_stub.sfn, "start_execution", "ThrottlingException")
    expect_start(aws_stub.sfn, start_input())
    sleeps: list = []
    assert (
        make("stack", poll_seconds=None, sleeps=sleeps)._start_execution(
            delivery(), pp.Job("1", ()), FOLDER, EXEC_NAME, "arn:computed"
        )
        == EXEC_ARN
    )
    assert sleeps == [0]


def test_a_start_refused_otherwise_fails_the_job(aws_stub, tmp_path, caplog):
    # given the state machine is gone when the job starts
    caplog.set_level(logging.WARNING, logger="sync.destinations.pinpoint")
    expect_no_execution(aws_stub.sfn)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    error(aws_stub.sfn, "start_execution", "StateMachineDoesNotExist", message="gone")
    dest = make("stack", pinpoint=None)
    # when the job runs, then it fails with the code and the message, and no slot stays taken
    outcome = dest.run_job(delivery(), pp.Job("1", (csv_file(tmp_path),)), pp.JobProgress(None, SEG, 1, 1))
    assert outcome.error == (
        "StateMachineDoesNotExist: An error occurred (StateMachineDoesNotExist) when calling "
        "the StartExecution operation: gone"
    )
    assert (outcome.record.job_id, outcome.record.status, outcome.ok) == ("", "ERROR", False)
    assert all(dest._slots.acquire(blocking=False) for _ in range(2))
    assert caplog.messages == [f"pinpoint: {SEG} part 1 failed: StateMachineDoesNotExist"]


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED"])
def test_an_existing_execution_is_attached_to_not_started_again(aws_stub, tmp_path, caplog, status):
    # given this job's execution exists already (an earlier attempt of the same run started it)
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    files = (csv_file(tmp_path, "a.csv"), csv_file(tmp_path, "b.csv"))
    out = report(JobId="job-1", JobStatus="COMPLETED", TotalProcessed=4, TotalFailures=0)
    expect_execution(aws_stub.sfn, status, **({"output": out} if status == "SUCCEEDED" else {}))
    expect_execution(aws_stub.sfn, "SUCCEEDED", output=out)  # then waited for as any other
    seen, progress = progress_log()
    # when the job runs: no upload, no slot wait, no start (the stubbers would refuse them)
    outcome = make("stack").run_job(delivery(), pp.Job("1", files), pp.JobProgress(progress, SEG, 2, 1))
    # then its verdict is read, the files count as uploaded, and the log says why nothing was imported
    assert outcome.ok and outcome.record.job_id == "job-1"
    assert seen[0] == (f"{SEG}: uploading", 2, 2)
    assert caplog.messages[0] == (
        f"pinpoint: {SEG} part 1: attaching to execution {EXEC_NAME} ({status}), not importing again"
    )


@pytest.mark.parametrize("code", ["ExecutionDoesNotExist", "ResourceNotFound"])
def test_an_execution_that_does_not_exist_is_none(aws_stub, code):
    expect_no_execution(aws_stub.sfn, code=code)
    assert make("stack")._describe_if_exists(EXEC_ARN) is None


def test_a_describe_refused_otherwise_fails_the_job(aws_stub, tmp_path):
    expect_no_execution(aws_stub.sfn, code="AccessDeniedException")
    outcome = make("stack").run_job(delivery(), pp.Job("1", (csv_file(tmp_path),)), pp.JobProgress(None, SEG, 1, 1))
    assert outcome.error.startswith(
        "AccessDeniedException: An error occurred (AccessDeniedException) when calling the DescribeExecution operation"
    )


def test_an_unreachable_service_fails_the_job_with_its_message(tmp_path):
    down = EndpointConnectionError(endpoint_url="https://states.example")
    dest = make("stack", stepfunctions=Recorder(aws_client("stepfunctions"), describe_execution=down))
    outcome = dest.run_job(delivery(), pp.Job("1", (csv_file(tmp_path),)), pp.JobProgress(None, SEG, 1, 1))
    assert outcome.error == 'Could not connect to the endpoint URL: "https://states.example"'
    assert (outcome.record.job_id, outcome.record.status) == ("", "ERROR")


def test_an_execution_still_running_at_the_timeout_is_not_confirmed(aws_stub):
    # given an execution that keeps running, and a timeout of 0
    expect_execution(aws_stub.sfn, "RUNNING")
    seen, progress = progress_log()
    dest = make("stack", timeout=0)
    # when waited for, then it is reported as a timeout and not counted as done
    described = dest._wait_execution(EXEC_ARN, pp.JobProgress(progress, SEG, 1, 1))
    assert described["status"] == "WAIT_TIMEOUT" and described["executionArn"] == EXEC_ARN
    assert seen == [(f"{SEG}: importing", 0, 1)]
    record, err = dest._record_from_execution(EXEC_ARN, described)
    assert err == (
        f"import tail execution {EXEC_ARN} still running after 0 s; it may still import (the rows are resent next run)"
    )
    assert (record.job_id, record.status) == ("", "EXECUTION_WAIT_TIMEOUT")


@pytest.mark.parametrize(
    "poll_seconds, interval",
    [(None, 15.0), (0, 0.02), (5, 5), (600, 60.0)],
    ids=["default", "floor", "configured", "ceiling"],
)
def test_polls_wait_the_interval_between_status_checks(aws_stub, poll_seconds, interval):
    expect_execution(aws_stub.sfn, "RUNNING")
    expect_execution(aws_stub.sfn, "FAILED")
    sleeps: list = []
    make("stack", poll_seconds=poll_seconds, sleeps=sleeps)._wait_execution(EXEC_ARN, pp.JobProgress(None, SEG, 1, 1))
    assert sleeps == [interval]


def test_the_execution_arn_is_derived_from_the_state_machine_arn():
    assert make("stack")._execution_arn("n") == f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:execution:lakeseg-import-tail:n"
    assert (
        make("stack", state_machine_arn=SM_ARN + ":live")
        ._execution_arn("n")
        .endswith(":execution:lakeseg-import-tail:n")
    )
    # a state machine named "stateMachine", addressed through an alias
    named = f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:stateMachine:stateMachine:live"
    assert make("stack", state_machine_arn=named)._execution_arn("n") == (
        f"arn:aws:states:{h.REGION}:{h.ACCOUNT}:execution:stateMachine:n"
    )
    with pytest.raises(ConfigError) as err:
        make("stack", state_machine_arn="arn:aws:lambda:x")._execution_arn("n")
    assert str(err.value) == "destination.state_machine_arn is not a state machine ARN: arn:aws:lambda:x"


# --------------------------------------------------------------------------- the import tail's report
def verdict(status: str, raw: str | None = None, error_name: str | None = None, timeout: float = 21600) -> tuple:
    described = {"status": status}
    if raw is not None:
        described["output" if status == "SUCCEEDED" else "cause"] = raw
    if error_name is not None:
        described["error"] = error_name
    return make("stack", timeout=timeout)._record_from_execution(EXEC_ARN, described)


def test_a_succeeded_execution_reports_the_job(caplog):
    caplog.set_level(logging.DEBUG, logger="sync.destinations.pinpoint")
    record, err = verdict(
        "SUCCEEDED", report(JobId="j1", JobStatus="COMPLETED", TotalProcessed=5, TotalFailures=0, Failures=["x", 3])
    )
    assert err is None
    assert record == JobRecord(
        job_id="j1",
        status="COMPLETED",
        total_processed=5,
        total_failures=0,
        failures=["x", "3"],
        execution_arn=EXEC_ARN,
    )
    assert caplog.messages == [
        f"pinpoint: execution {EXEC_ARN} report: {{'JobId': 'j1', 'JobStatus': 'COMPLETED', "
        "'TotalProcessed': 5, 'TotalFailures': 0, 'Failures': ['x', 3]}"
    ]


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]"], ids=["none", "empty", "not-json", "not-a-dict"])
def test_a_succeeded_execution_without_a_report_is_accepted_as_such(raw):
    record, err = verdict("SUCCEEDED", raw)
    assert err is None
    assert record == JobRecord(
        job_id="",
        status="EXECUTION_SUCCEEDED",
        total_processed=None,
        total_failures=None,
        failures=[],
        execution_arn=EXEC_ARN,
    )


def test_a_failed_execution_reads_its_report_from_the_cause_not_the_output():
    record, err = make("stack")._record_from_execution(
        EXEC_ARN,
        {
            "status": "FAILED",
            "output": report(JobId="wrong"),
            "cause": report(JobId="j1", JobStatus="FAILED", TotalFailures=2, TotalProcessed=2),
        },
    )
    assert (record.job_id, record.total_failures, err) == ("j1", 2, None)


def test_a_succeeded_execution_reads_its_output_not_the_cause():
    record, _ = make("stack")._record_from_execution(
        EXEC_ARN,
        {"status": "SUCCEEDED", "cause": report(JobId="wrong"), "output": report(JobId="j1", JobStatus="COMPLETED")},
    )
    assert record.job_id == "j1"


@pytest.mark.parametrize(
    "status, raw, error_name, message",
    [
        ("FAILED", None, "States.Timeout", f"import tail execution {EXEC_ARN} ended FAILED: States.Timeout"),
        (
            "FAILED",
            "oops",
            "States.TaskFailed",
            f"import tail execution {EXEC_ARN} ended FAILED: States.TaskFailed oops",
        ),
        ("ABORTED", None, None, f"import tail execution {EXEC_ARN} ended ABORTED"),
        ("TIMED_OUT", "[]", None, f"import tail execution {EXEC_ARN} ended TIMED_OUT: []"),
        (
            "FAILED",
            report(Error={"Error": "Pinpoint.BadRequestException", "Cause": "no role"}),
            None,
            f"import tail execution {EXEC_ARN} ended FAILED (Pinpoint.BadRequestException: no role)",
        ),
        (
            "FAILED",
            report(Error={"Cause": "no role"}),
            None,
            f"import tail execution {EXEC_ARN} ended FAILED (no role)",
        ),
        ("FAILED", report(Error="flat", Outcome="FAILED"), None, f"import tail execution {EXEC_ARN} ended FAILED"),
        (
            "FAILED",
            report(JobId="j1", JobStatus="COMPLETED", TotalFailures=0),
            "Lakeseg.Other",
            f"import tail execution {EXEC_ARN} ended FAILED",
        ),
        (
            "FAILED",
            report(JobId="j1", JobStatus="FAILED", TotalFailures=0, Error={"Error": "Lakeseg.ImportStillRunning"}),
            None,
            f"import job j1 still running when its execution {EXEC_ARN} stopped polling (MaxPolls); it may still import "
            "(the rows are resent next run)",
        ),
        (
            "FAILED",
            report(JobId="j1", JobStatus="FAILED", TotalFailures=0, Error={"Error": "Lakeseg.ImportFailed"}),
            None,
            f"import job j1 FAILED (execution {EXEC_ARN}) (Lakeseg.ImportFailed)",
        ),
        (
            "FAILED",
            report(JobId="j1", JobStatus="PROCESSING", TotalFailures=3),
            None,
            f"import job j1 PROCESSING (execution {EXEC_ARN})",
        ),
        (
            "FAILED",
            report(JobId="j1", JobStatus="FAILED", TotalFailures=0, Error={"Cause": "c"}),
            None,
            f"import job j1 FAILED (execution {EXEC_ARN})",
        ),
        ("FAILED", report(JobId="j1", JobStatus="FAILED"), None, f"import job j1 FAILED (execution {EXEC_ARN})"),
    ],
    ids=[
        "no-report",
        "cause-not-json",
        "aborted",
        "report-not-a-dict",
        "no-job",
        "no-job-cause-only",
        "no-job-flat-error",
        "job-ok-execution-failed",
        "still-running",
        "job-failed",
        "job-not-ended",
        "job-failed-unnamed-error",
        "job-failed-no-failure-count",
    ],
)
def test_a_failed_execution_says_why(status, raw, error_name, message):
    _, err = verdict(status, raw, error_name)
    assert err == message


@pytest.mark.parametrize("job_status, failures", [("FAILED", 2), ("COMPLETED", 1)])
def test_refused_endpoints_are_left_to_the_shared_layer(job_status, failures):
    record, err = verdict(
        "FAILED",
        report(
            JobId="j1",
            JobStatus=job_status,
            TotalFailures=failures,
            Failures=["line 2: bad"],
            Error={"Error": "Lakeseg.ImportFailed"},
        ),
    )
    assert err is None and record.total_failures == failures and record.failures == ["line 2: bad"]


def test_a_failed_notification_after_a_completed_import_is_accepted_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="sync.destinations.pinpoint")
    raw = report(
        JobId="j1",
        JobStatus="COMPLETED",
        TotalFailures=0,
        Outcome="SUCCEEDED",
        NotifyError={"Error": "SNS.AuthorizationError"},
    )
    record, err = verdict("FAILED", raw, "Lakeseg.NotificationFailed")
    assert err is None and record.job_id == "j1"
    assert caplog.messages == [
        "pinpoint: import job j1 completed but the SNS notification failed (SNS.AuthorizationError)"
    ]
    caplog.clear()
    assert (
        verdict("FAILED", report(JobId="j1", JobStatus="COMPLETED", Outcome="SUCCEEDED"), "Lakeseg.NotificationFailed")[
            1
        ]
        is None
    )
    assert caplog.messages == ["pinpoint: import job j1 completed but the SNS notification failed (None)"]


def test_a_failed_notification_of_a_failed_import_is_still_a_failure():
    _, err = verdict(
        "FAILED",
        report(JobId="j1", JobStatus="FAILED", TotalFailures=0, Outcome="FAILED"),
        "Lakeseg.NotificationFailed",
    )
    assert err == f"import job j1 FAILED (execution {EXEC_ARN})"
    _, err = verdict(
        "FAILED", report(JobId="j1", JobStatus="FAILED", TotalFailures=0, Outcome="SUCCEEDED"), "Lakeseg.Other"
    )
    assert err == f"import job j1 FAILED (execution {EXEC_ARN})"


def test_the_timeout_is_reported_in_whole_seconds():
    _, err = verdict("WAIT_TIMEOUT", timeout=21600.4)
    assert "still running after 21600 s;" in err


# --------------------------------------------------------------------------- direct mode, request by request
MARKER = f"{BASE}/_jobs/part-1.json"


def expect_no_marker(stub, code: str = "NoSuchKey", status: int = 404) -> None:
    stub.add_client_error(
        "get_object",
        service_error_code=code,
        http_status_code=status,
        expected_params={"Bucket": BUCKET, "Key": MARKER},
    )


def expect_marker(stub, body: bytes) -> None:
    import io

    from botocore.response import StreamingBody

    stub.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(body), len(body))},
        expected_params={"Bucket": BUCKET, "Key": MARKER},
    )


def marker_body(job_id: str = "job-d1") -> bytes:
    return json.dumps(
        {"JobId": job_id, "ApplicationId": h.APP_ID, "RunId": RUN, "Segment": SEG, "Part": "1", "S3Url": FOLDER}
    ).encode()


def expect_marker_written(stub, job_id: str = "job-d1", **sse) -> None:
    stub.add_response(
        "put_object",
        {},
        expected_params={
            "Bucket": BUCKET,
            "Key": MARKER,
            "Body": marker_body(job_id),
            "ContentType": "application/json",
            **sse,
        },
    )


def expect_create(stub, job_id: str = "job-d1") -> None:
    stub.add_response(
        "create_import_job",
        {"ImportJobResponse": h.job_response(job_id, "CREATED", FOLDER)},
        expected_params={
            "ApplicationId": h.APP_ID,
            "ImportJobRequest": {
                "S3Url": FOLDER,
                "RoleArn": h.IMPORT_ROLE_ARN,
                "Format": "CSV",
                "RegisterEndpoints": True,
                "DefineSegment": False,
            },
        },
    )


def expect_get(stub, status: str, job_id: str = "job-d1", **extra) -> None:
    stub.add_response(
        "get_import_job",
        {"ImportJobResponse": h.job_response(job_id, status, FOLDER, **extra)},
        expected_params={"ApplicationId": h.APP_ID, "JobId": job_id},
    )


def run_direct(dest, tmp_path, files=None, progress=None):
    files = files or (csv_file(tmp_path),)
    return dest.run_job(delivery(files), pp.Job("1", tuple(files)), pp.JobProgress(progress, SEG, len(files), 1))


def test_direct_delivery_uploads_creates_once_records_the_job_and_waits(aws_stub, tmp_path, caplog):
    # given no earlier import, no marker, a free slot, and a job that completes after one poll
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    f = csv_file(tmp_path)
    expect_list_jobs(aws_stub.pinpoint)
    expect_no_marker(aws_stub.s3)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv", ServerSideEncryption="aws:kms", SSEKMSKeyId="k")
    expect_list_jobs(aws_stub.pinpoint, h.job_response("other", "COMPLETED", "s3://x/y/"))
    expect_create(aws_stub.pinpoint)
    expect_marker_written(aws_stub.s3, ServerSideEncryption="aws:kms", SSEKMSKeyId="k")
    expect_get(aws_stub.pinpoint, "PROCESSING")
    expect_get(aws_stub.pinpoint, "COMPLETED", TotalProcessed=2, TotalFailures=0, Failures=[])
    sleeps: list = []
    seen, progress = progress_log()
    # when delivered
    result = make("direct", kms_key_id="k", poll_seconds=5, sleeps=sleeps).deliver(delivery([f]), progress)
    # then confirmed with the job's numbers; the job id was kept next to the folder before waiting
    assert (result.confirmed, result.errors) == (True, [])
    assert result.jobs == [
        JobRecord(job_id="job-d1", status="COMPLETED", total_processed=2, total_failures=0, failures=[])
    ]
    assert sleeps == [5]
    assert seen == [(f"{SEG}: uploading", 1, 1), (f"{SEG}: importing", 0, 1), (f"{SEG}: importing", 1, 1)]
    assert f"pinpoint: {SEG} part 1: created import job job-d1" in caplog.messages


@pytest.mark.parametrize("poll_seconds, interval", [(None, 15.0), (0, 0)], ids=["default", "configured-zero"])
def test_direct_polls_at_the_configured_interval(aws_stub, poll_seconds, interval):
    expect_get(aws_stub.pinpoint, "PROCESSING")
    expect_get(aws_stub.pinpoint, "FAILED")
    sleeps: list = []
    response = make("direct", poll_seconds=poll_seconds, sleeps=sleeps)._wait_import_job(
        "job-d1", pp.JobProgress(None, SEG, 1, 1)
    )
    assert sleeps == [interval] and response["JobStatus"] == "FAILED"


def test_direct_a_throttled_status_check_is_retried(aws_stub):
    error(aws_stub.pinpoint, "get_import_job", "TooManyRequestsException", 429)
    expect_get(aws_stub.pinpoint, "COMPLETED")
    sleeps: list = []
    assert (
        make("direct", sleeps=sleeps)._wait_import_job("job-d1", pp.JobProgress(None, SEG, 1, 1))["JobStatus"]
        == "COMPLETED"
    )
    assert sleeps == [0]


@pytest.mark.parametrize(
    "status, failures, ok, refused",
    [("COMPLETED", 0, True, 0), ("FAILED", 3, False, 3), ("COMPLETED", 1, False, 1)],
    ids=["completed", "failed-with-refusals", "completed-with-refusals"],
)
def test_direct_a_job_with_a_marker_is_attached_to(aws_stub, tmp_path, caplog, status, failures, ok, refused):
    # given the marker of an earlier attempt of this run names the job
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    files = (csv_file(tmp_path, "a.csv"), csv_file(tmp_path, "b.csv"))
    expect_marker(aws_stub.s3, marker_body("job-9"))
    expect_marker_written(aws_stub.s3, "job-9")
    expect_get(aws_stub.pinpoint, status, "job-9", TotalProcessed=4, TotalFailures=failures, Failures=["x"] * failures)
    seen, progress = progress_log()
    # when the job runs: no upload, no listing, no create
    outcome = run_direct(make("direct"), tmp_path, files, progress)
    # then that job's verdict counts
    assert (outcome.ok, outcome.refused_rows, outcome.error) == (ok, refused, None)
    assert outcome.record == JobRecord(
        job_id="job-9", status=status, total_processed=4, total_failures=failures, failures=["x"] * failures
    )
    assert seen[0] == (f"{SEG}: uploading", 2, 2)
    assert caplog.messages[0] == f"pinpoint: {SEG} part 1: attaching to import job job-9, not importing again"


@pytest.mark.parametrize(
    "body, job_id",
    [(b"not json", None), (b'{"Id": "x"}', None), (b'["JobId"]', None), (b'{"JobId": ""}', "")],
    ids=["not-json", "no-job-id", "not-an-object", "empty-job-id"],
)
def test_direct_an_unreadable_marker_means_no_job_yet(aws_stub, body, job_id):
    expect_marker(aws_stub.s3, body)
    assert make("direct")._read_marker(BUCKET, MARKER) == job_id


@pytest.mark.parametrize("code, status", [("NoSuchKey", 404), ("404", 404), ("NotFound", 404)])
def test_direct_a_missing_marker_means_no_job_yet(aws_stub, code, status):
    expect_no_marker(aws_stub.s3, code, status)
    assert make("direct")._read_marker(BUCKET, MARKER) is None


def test_direct_a_marker_that_cannot_be_read_fails_the_job(aws_stub, tmp_path):
    expect_list_jobs(aws_stub.pinpoint)
    expect_no_marker(aws_stub.s3, "AccessDenied", 403)
    result = make("direct").deliver(delivery([csv_file(tmp_path)]))
    assert not result.confirmed
    assert result.errors == [
        f"{SEG} job 1: AccessDenied: An error occurred (AccessDenied) when calling the GetObject operation: "
    ]


def test_direct_a_job_already_created_for_the_folder_is_found_not_created_again(aws_stub, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    expect_no_marker(aws_stub.s3)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    expect_list_jobs(aws_stub.pinpoint, h.job_response("job-7", "PROCESSING", FOLDER))
    expect_marker_written(aws_stub.s3, "job-7")
    expect_get(aws_stub.pinpoint, "COMPLETED", "job-7", TotalFailures=0)
    outcome = run_direct(make("direct", max_concurrent_jobs=1), tmp_path)
    assert outcome.ok and outcome.record.job_id == "job-7"
    assert f"pinpoint: an import job for {FOLDER} exists already (job-7); attaching" in caplog.messages


def test_direct_a_create_that_failed_on_the_server_is_looked_for_not_repeated(aws_stub, tmp_path, caplog):
    # given CreateImportJob answers 500 and no job for the folder exists
    caplog.set_level(logging.WARNING, logger="sync.destinations.pinpoint")
    expect_no_marker(aws_stub.s3)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    expect_list_jobs(aws_stub.pinpoint)
    error(aws_stub.pinpoint, "create_import_job", "InternalServerErrorException", 500)
    expect_list_jobs(aws_stub.pinpoint, h.job_response("x", "PROCESSING", FOLDER + "other/"))
    # when the job runs, then nothing is retried and the job is not created
    outcome = run_direct(make("direct"), tmp_path)
    assert outcome.error == (
        f"CreateImportJob for {FOLDER} failed on the server and no job for that folder "
        "exists; the rows are resent next run"
    )
    assert (outcome.record.job_id, outcome.record.status) == ("", "NOT_CREATED")
    assert caplog.messages == [
        f"pinpoint: {SEG} part 1: CreateImportJob answered InternalServerErrorException; "
        "looking for the job before anything else"
    ]


def test_direct_a_job_created_despite_a_server_error_is_found_past_the_20th_page(aws_stub, tmp_path):
    # Given CreateImportJob answers 500 although it created the job, which a busy project lists on its 25th page
    expect_no_marker(aws_stub.s3)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    expect_list_jobs(aws_stub.pinpoint)
    error(aws_stub.pinpoint, "create_import_job", "InternalServerErrorException", 500)
    expect_list_jobs(aws_stub.pinpoint, h.job_response("x0", "COMPLETED", FOLDER + "other/"), next_token="t1")
    for n in range(1, 24):
        expect_list_jobs(
            aws_stub.pinpoint,
            h.job_response(f"x{n}", "COMPLETED", FOLDER + "other/"),
            token=f"t{n}",
            next_token=f"t{n + 1}",
        )
    expect_list_jobs(aws_stub.pinpoint, h.job_response("job-7", "PROCESSING", FOLDER), token="t24")
    expect_marker_written(aws_stub.s3, "job-7")
    expect_get(aws_stub.pinpoint, "COMPLETED", "job-7", TotalFailures=0)
    # When the job runs
    outcome = run_direct(make("direct"), tmp_path)
    # Then it attaches to the job the failed call created (not NOT_CREATED, not a second job)
    assert outcome.ok and outcome.record.job_id == "job-7"


def test_direct_a_create_refused_as_a_bad_request_fails_the_job(aws_stub, tmp_path):
    expect_no_marker(aws_stub.s3)
    expect_put(aws_stub.s3, f"{BASE}/part-1/part-00001.csv")
    expect_list_jobs(aws_stub.pinpoint)
    error(aws_stub.pinpoint, "create_import_job", "BadRequestException", 400, message="bad role")
    outcome = run_direct(make("direct"), tmp_path)
    assert outcome.error == (
        "BadRequestException: An error occurred (BadRequestException) when calling the "
        "CreateImportJob operation: bad role"
    )


def test_direct_a_throttled_create_is_retried(aws_stub):
    error(aws_stub.pinpoint, "create_import_job", "TooManyRequestsException", 429)
    expect_create(aws_stub.pinpoint)
    assert make("direct")._create_import_job(delivery(), pp.Job("1", ()), FOLDER) == "job-d1"


def test_direct_a_job_still_running_at_the_timeout_is_not_confirmed(aws_stub, tmp_path):
    # given a job that is still processing, and a timeout of 0 (one status check)
    expect_marker(aws_stub.s3, marker_body())
    expect_marker_written(aws_stub.s3)
    expect_get(aws_stub.pinpoint, "PROCESSING")
    seen, progress = progress_log()
    # when the job runs, then lakeseg stops waiting, says the import may still happen, and counts no job done
    outcome = run_direct(make("direct", timeout=0), tmp_path, progress=progress)
    assert outcome.error == (
        "import job job-d1 still PROCESSING after 0 s; it may still import (the rows are resent next run)"
    )
    assert outcome.record.status == "PROCESSING"
    assert seen == [(f"{SEG}: uploading", 1, 1), (f"{SEG}: importing", 0, 1)]


def test_direct_a_marker_job_id_is_read_as_text(aws_stub):
    expect_marker(aws_stub.s3, b'{"JobId": 12}')
    assert make("direct")._read_marker(BUCKET, MARKER) == "12"


# --------------------------------------------------------------------------- the project's job list
def test_the_job_list_follows_next_tokens(aws_stub):
    a, b, c = (h.job_response(i, "PROCESSING", f"s3://x/{i}/") for i in "abc")
    expect_list_jobs(aws_stub.pinpoint, a, next_token="t1")
    expect_list_jobs(aws_stub.pinpoint, b, token="t1", next_token="t2")
    expect_list_jobs(aws_stub.pinpoint, c, token="t2")
    assert [j["Id"] for j in make("direct")._list_jobs()] == ["a", "b", "c"]


def test_the_job_list_reads_every_page_to_the_last(aws_stub):
    # Given a project whose import jobs fill 25 pages (issue 22: the list used to stop after 20)
    expect_list_jobs(aws_stub.pinpoint, next_token="t1")
    for n in range(1, 25):
        expect_list_jobs(
            aws_stub.pinpoint,
            h.job_response(f"j{n}", "FAILED"),
            token=f"t{n}",
            next_token=f"t{n + 1}" if n < 24 else None,
        )
    # When it is listed, then every page is read
    assert len(make("direct")._list_jobs()) == 24


def test_a_throttled_job_list_is_retried(aws_stub):
    error(aws_stub.pinpoint, "get_import_jobs", "TooManyRequestsException", 429)
    expect_list_jobs(aws_stub.pinpoint, h.job_response("a", "CREATED"))
    assert [j["Id"] for j in make("direct")._running_jobs()] == ["a"]


# --------------------------------------------------------------------------- job slots
def test_a_free_slot_needs_fewer_running_jobs_than_the_limit(aws_stub, caplog):
    # given the project runs 2 jobs (one other is done) with a limit of 2, then 1 after a wait
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    busy = [h.job_response("a", "PROCESSING"), h.job_response("b", "CREATED"), h.job_response("c", "COMPLETED")]
    expect_list_jobs(aws_stub.pinpoint, *busy)
    expect_list_jobs(aws_stub.pinpoint, *busy[1:])
    sleeps: list = []
    # when a job waits for a slot, then it waited one interval and found none for its folder
    assert make("direct", poll_seconds=7, sleeps=sleeps)._wait_for_a_free_job_slot(find=FOLDER) is None
    assert sleeps == [7]
    assert caplog.messages == ["pinpoint: 2 import jobs running in the project (limit 2); waiting"]


def test_no_slot_wait_without_a_pinpoint_client():
    assert make("stack", pinpoint=None)._wait_for_a_free_job_slot() is None


def test_waiting_for_a_slot_gives_up_at_the_timeout(aws_stub, monkeypatch):
    # given a clock that reaches the timeout after one listing, and a busy project
    ticks = iter([100.0, 100.0, 110.0])
    monkeypatch.setattr(pp, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    expect_list_jobs(aws_stub.pinpoint, h.job_response("a", "PROCESSING"), h.job_response("b", "PROCESSING"))
    sleeps: list = []
    # when a job waits for a slot, then it stops waiting at the deadline (and goes ahead)
    assert make("direct", timeout=10, poll_seconds=5, sleeps=sleeps)._wait_for_a_free_job_slot() is None
    assert sleeps == [5]


def test_stack_mode_does_not_wait_for_a_slot_it_cannot_count(aws_stub, caplog):
    caplog.set_level(logging.WARNING, logger="sync.destinations.pinpoint")
    error(aws_stub.pinpoint, "get_import_jobs", "ForbiddenException", 403)
    assert make("stack")._wait_for_a_free_job_slot() is None
    assert caplog.messages == [
        "pinpoint: cannot count running import jobs (An error occurred (ForbiddenException) "
        "when calling the GetImportJobs operation: m)"
    ]


def test_direct_mode_fails_when_it_cannot_count_running_jobs(aws_stub):
    error(aws_stub.pinpoint, "get_import_jobs", "ForbiddenException", 403)
    with pytest.raises(pp.ClientError):
        make("direct")._wait_for_a_free_job_slot(find=FOLDER)


def test_an_unreachable_job_list_is_not_counted_in_stack_mode():
    down = EndpointConnectionError(endpoint_url="https://pinpoint.example")
    dest = make("stack", pinpoint=Recorder(aws_client("pinpoint"), get_import_jobs=down))
    assert dest._wait_for_a_free_job_slot() is None


# --------------------------------------------------------------------------- earlier runs still importing
def earlier_job(status: str = "PROCESSING", run: str = OLD_RUN, segment: str = SEG, root: str = URL) -> dict:
    return h.job_response(f"job-{run[-3:]}-{segment}", status, f"{root}/{run}/{segment}/part-1/")


def settle(dest) -> str | None:
    return dest._settle_in_flight(delivery([Path("x.csv")]), BUCKET, "lakeseg/imports")


def test_an_earlier_runs_job_of_this_segment_holds_the_delivery(aws_stub):
    # given the job list shows, besides jobs that do not matter, one earlier-run job of this segment in flight
    expect_list_jobs(
        aws_stub.pinpoint,
        earlier_job("COMPLETED"),
        earlier_job(run=RUN),
        earlier_job(segment="seg_other"),
        earlier_job(root="s3://elsewhere/lakeseg/imports"),
        h.job_response("odd", "PROCESSING", f"{URL}/{OLD_RUN}"),
        earlier_job(),
    )
    # when the timeout is 0, then the delivery names that job and imports nothing
    message = settle(make("direct", timeout=0))
    assert message == (
        f"{SEG}: an import of an earlier run is still in flight (import job job-000-{SEG} "
        f"({URL}/{OLD_RUN}/{SEG}/part-1/)); nothing was imported so that imports stay in order; the "
        "rows are resent next run"
    )


def test_the_delivery_goes_ahead_once_the_earlier_job_ended(aws_stub, caplog):
    caplog.set_level(logging.INFO, logger="sync.destinations.jobs")
    expect_list_jobs(aws_stub.pinpoint, earlier_job())
    expect_list_jobs(aws_stub.pinpoint, earlier_job("FAILED"))
    sleeps: list = []
    assert settle(make("direct", poll_seconds=3, sleeps=sleeps)) is None
    assert sleeps == [3]
    assert caplog.messages == [f"pinpoint: {SEG} waits for 1 in-flight job(s) of earlier runs"]


def test_an_earlier_job_of_the_segment_folder_itself_holds_the_delivery(aws_stub):
    expect_list_jobs(aws_stub.pinpoint, h.job_response("old", "PROCESSING", f"{URL}/{OLD_RUN}/{SEG}"))
    assert f"(import job old ({URL}/{OLD_RUN}/{SEG}))" in settle(make("direct", timeout=0))


def test_earlier_jobs_are_found_under_a_bucket_without_prefix(aws_stub):
    job = h.job_response("old", "PROCESSING", f"s3://{BUCKET}/{OLD_RUN}/{SEG}/part-1/")
    expect_list_jobs(aws_stub.pinpoint, job)
    message = make("direct", timeout=0)._settle_in_flight(delivery([Path("x.csv")]), BUCKET, "")
    assert f"(import job old (s3://{BUCKET}/{OLD_RUN}/{SEG}/part-1/))" in message


def test_earlier_executions_of_this_segment_hold_the_delivery(aws_stub):
    # given running executions: this segment's of an earlier run, this run's own, another segment's, unreadable ones
    expect_list_jobs(aws_stub.pinpoint)
    mine = json.dumps({"Segment": SEG})
    expect_running_executions(
        aws_stub.sfn,
        (execution_name(OLD_RUN, SEG, 1), mine),
        (EXEC_NAME, mine),
        ("other", json.dumps({"Segment": "seg_other"})),
        ("garbled", "{not json"),
        ("no-input", None),
    )
    # when the timeout is 0, then the earlier one is named
    message = settle(make("stack", timeout=0))
    arn = f"{SM_ARN.replace('stateMachine', 'execution')}:{execution_name(OLD_RUN, SEG, 1)}"
    assert message.startswith(f"{SEG}: an import of an earlier run is still in flight (execution {arn}); ")


def test_this_runs_own_executions_do_not_hold_the_delivery(aws_stub):
    # given the only running execution of the segment is this run's (a retry of the same run)
    expect_list_jobs(aws_stub.pinpoint)
    expect_running_executions(aws_stub.sfn, (EXEC_NAME, json.dumps({"Segment": SEG})))
    # then nothing holds the delivery: the retry attaches to it instead
    assert settle(make("stack", timeout=0)) is None


def test_stack_mode_without_a_job_list_still_waits_for_executions(aws_stub, caplog):
    # given the job list is denied (stack mode needs it only to see other processes' jobs)
    caplog.set_level(logging.WARNING, logger="sync.destinations.pinpoint")
    error(aws_stub.pinpoint, "get_import_jobs", "ForbiddenException", 403)
    expect_running_executions(aws_stub.sfn)
    # when settling, then nothing holds the delivery and the log says what is not waited for
    assert settle(make("stack")) is None
    assert caplog.messages == [
        "pinpoint: cannot list import jobs (An error occurred (ForbiddenException) when "
        "calling the GetImportJobs operation: m); in-flight imports of earlier runs are not "
        "waited for (grant mobiletargeting:GetImportJobs)"
    ]


def test_stack_mode_without_a_pinpoint_client_waits_for_executions_only(aws_stub):
    expect_running_executions(aws_stub.sfn)
    assert settle(make("stack", pinpoint=None)) is None


def test_direct_mode_fails_when_it_cannot_list_earlier_jobs(aws_stub):
    error(aws_stub.pinpoint, "get_import_jobs", "ForbiddenException", 403)
    with pytest.raises(pp.ClientError):
        settle(make("direct"))


def test_an_unreachable_job_list_is_skipped_in_stack_mode(aws_stub):
    expect_running_executions(aws_stub.sfn)
    down = EndpointConnectionError(endpoint_url="https://pinpoint.example")
    assert settle(make("stack", pinpoint=Recorder(aws_client("pinpoint"), get_import_jobs=down))) is None


def test_a_delivery_held_by_an_earlier_import_is_not_confirmed(aws_stub, tmp_path):
    expect_list_jobs(aws_stub.pinpoint, earlier_job())
    result = make("direct", timeout=0).deliver(delivery([csv_file(tmp_path)]))
    assert (result.confirmed, result.location, result.jobs) == (False, f"s3://{BUCKET}/{BASE}/", [])
    assert result.errors[0].startswith(f"{SEG}: an import of an earlier run is still in flight")


def test_a_delivery_without_files_is_confirmed_without_any_call(aws_stub):
    result = make("direct", import_s3_url=f"s3://{BUCKET}").deliver(delivery())
    assert (result.confirmed, result.errors, result.location) == (True, [], f"s3://{BUCKET}/{RUN}/{SEG}/")


# --------------------------------------------------------------------------- the dynamic segment
IN_SEGMENT = {"User.UserAttributes.HasClicked": ("Yes",)}
DIMS = {"UserAttributes": {"HasClicked": {"AttributeType": "INCLUSIVE", "Values": ["Yes"]}}}


def pinpoint_segment(seg_id: str, name: str, dims: dict) -> dict:
    return {
        "ApplicationId": h.APP_ID,
        "Arn": f"arn:aws:mobiletargeting:{h.REGION}:{h.ACCOUNT}:apps/x/segments/{seg_id}",
        "CreationDate": "2026-11-25T03:00:00Z",
        "Id": seg_id,
        "Name": name,
        "Dimensions": dims,
        "SegmentType": "DIMENSIONAL",
    }


def expect_segments(stub, *items, token=None, next_token=None) -> None:
    expect_page(stub, "get_segments", "SegmentsResponse", items, token, next_token)


def segment_delivery(**kw):
    return delivery(segment_name="Email clickers", segment_filter=kw.pop("segment_filter", IN_SEGMENT), **kw)


def test_a_new_dynamic_segment_is_created_with_its_filter_and_tag(aws_stub, caplog):
    # given no segment of that name (another segment on the first page, none on the second)
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s0", "lakeseg Other", DIMS), next_token="t1")
    expect_segments(aws_stub.pinpoint, token="t1")
    aws_stub.pinpoint.add_response(
        "create_segment",
        {"SegmentResponse": pinpoint_segment("s1", "lakeseg Email clickers", DIMS)},
        expected_params={
            "ApplicationId": h.APP_ID,
            "WriteSegmentRequest": {
                "Name": "lakeseg Email clickers",
                "Dimensions": DIMS,
                "tags": {"lakeseg:segment": SEG},
            },
        },
    )
    # when kept, then it is created once, named with the prefix
    assert make("stack", segment_name_prefix="lakeseg ")._keep_segment(segment_delivery()) is None
    assert caplog.messages == ["pinpoint: created dynamic segment 'lakeseg Email clickers'"]


def test_a_dynamic_segment_whose_filter_changed_is_updated(aws_stub, caplog):
    # given the segment exists on the second page with another filter
    caplog.set_level(logging.INFO, logger="sync.destinations.pinpoint")
    old = {"UserAttributes": {"HasClicked": {"AttributeType": "INCLUSIVE", "Values": ["No"]}}}
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s0", "Other", DIMS), next_token="t1")
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", old), token="t1", next_token="t2")
    aws_stub.pinpoint.add_response(
        "update_segment",
        {"SegmentResponse": pinpoint_segment("s1", "Email clickers", DIMS)},
        expected_params={
            "ApplicationId": h.APP_ID,
            "SegmentId": "s1",
            "WriteSegmentRequest": {"Name": "Email clickers", "Dimensions": DIMS},
        },
    )
    assert make("stack")._keep_segment(segment_delivery()) is None
    assert caplog.messages == ["pinpoint: updated dynamic segment 'Email clickers'"]


def test_an_unchanged_dynamic_segment_is_left_alone(aws_stub):
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", DIMS), next_token="t1")
    assert make("stack")._keep_segment(segment_delivery()) is None


def test_a_segment_is_looked_for_on_every_page_and_not_created_twice(aws_stub):
    # Given the project's segment on the 25th page of its segment list (issue 22: the lookup used to stop at 20)
    expect_segments(aws_stub.pinpoint, next_token="t1")
    for n in range(1, 24):
        expect_segments(aws_stub.pinpoint, token=f"t{n}", next_token=f"t{n + 1}")
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", DIMS), token="t24")
    # When the segment is kept, then it is found there and no second one is created
    assert make("stack")._keep_segment(segment_delivery()) is None


def test_a_throttled_segment_list_is_retried(aws_stub):
    error(aws_stub.pinpoint, "get_segments", "TooManyRequestsException", 429)
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", DIMS))
    assert make("stack")._keep_segment(segment_delivery()) is None


def test_a_segment_create_that_failed_on_the_server_is_not_repeated(aws_stub):
    # given CreateSegment answers 500 (it may have created the segment)
    expect_segments(aws_stub.pinpoint)
    error(aws_stub.pinpoint, "create_segment", "InternalServerErrorException", 500)
    # when kept, then the delivery says so (not retried: a second segment of that name could appear)
    err = make("stack")._keep_segment(segment_delivery())
    assert err == f"{SEG}: cannot keep segment 'Email clickers': InternalServerErrorException"


def test_a_segment_update_that_failed_on_the_server_is_repeated(aws_stub):
    # given UpdateSegment answers 500 once (an update is safe to repeat), then a refusal
    old = {"Attributes": {"Plan": {"AttributeType": "INCLUSIVE", "Values": ["x"]}}}
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", old))
    error(aws_stub.pinpoint, "update_segment", "InternalServerErrorException", 500)
    error(aws_stub.pinpoint, "update_segment", "BadRequestException", 400)
    err = make("stack")._keep_segment(segment_delivery())
    assert err == f"{SEG}: cannot keep segment 'Email clickers': BadRequestException"


@pytest.mark.parametrize(
    "dest_kw, kw, message",
    [
        ({"pinpoint": None}, {}, "segment_name needs a Pinpoint client"),
        (
            {},
            {"segment_filter": {}},
            f"{SEG}: segment_name is set but meta.lakeseg.segment_values is not: the dynamic "
            'segment needs the values that mean "in the segment" (e.g. {HasClicked: ["Yes"]})',
        ),
        (
            {},
            {"segment_filter": {"Metrics.x": ("1",)}},
            f"{SEG}: segment_values: Metrics.x cannot select a dynamic segment (use a User.UserAttributes.* or Attributes.* "
            "field)",
        ),
    ],
    ids=["no-client", "no-values", "bad-field"],
)
def test_a_segment_that_cannot_be_kept_says_why_without_any_call(aws_stub, dest_kw, kw, message):
    assert make("stack", **dest_kw)._keep_segment(segment_delivery(**kw)) == message


def test_a_delivery_whose_segment_cannot_be_kept_is_not_confirmed(aws_stub, tmp_path):
    # given a delivery whose one job is attached to and completed, and a segment_name without values
    expect_list_jobs(aws_stub.pinpoint)
    expect_marker(aws_stub.s3, marker_body())
    expect_marker_written(aws_stub.s3)
    expect_get(aws_stub.pinpoint, "COMPLETED", TotalFailures=0)
    d = delivery([csv_file(tmp_path)], segment_name="Email clickers")
    # when delivered, then the import counts but the delivery is not confirmed
    result = make("direct").deliver(d)
    assert result.confirmed is False
    assert [r.job_id for r in result.jobs] == ["job-d1"]
    assert result.errors == [
        f"{SEG}: segment_name is set but meta.lakeseg.segment_values is not: the dynamic "
        'segment needs the values that mean "in the segment" (e.g. {HasClicked: ["Yes"]})'
    ]


def test_a_failed_delivery_keeps_no_segment(aws_stub, tmp_path):
    expect_list_jobs(aws_stub.pinpoint)
    expect_marker(aws_stub.s3, marker_body())
    expect_marker_written(aws_stub.s3)
    expect_get(aws_stub.pinpoint, "FAILED", TotalFailures=0)
    result = make("direct").deliver(
        delivery([csv_file(tmp_path)], segment_name="Email clickers", segment_filter=IN_SEGMENT)
    )
    assert result.errors == [f"{SEG} job 1: import job job-d1 FAILED"]


def test_a_confirmed_delivery_keeps_its_segment(aws_stub, tmp_path):
    expect_list_jobs(aws_stub.pinpoint)
    expect_marker(aws_stub.s3, marker_body())
    expect_marker_written(aws_stub.s3)
    expect_get(aws_stub.pinpoint, "COMPLETED", TotalFailures=0)
    expect_segments(aws_stub.pinpoint, pinpoint_segment("s1", "Email clickers", DIMS))
    result = make("direct").deliver(
        delivery([csv_file(tmp_path)], segment_name="Email clickers", segment_filter=IN_SEGMENT)
    )
    assert (result.confirmed, result.errors) == (True, [])


def test_a_delivery_without_an_import_url_is_refused_by_setting_name(tmp_path):
    # given no import_s3_url (preflight would have said so), then deliver and run_job name it, calling nothing
    dest = make("direct", import_s3_url=None)
    message = "destination.import_s3_url must be an s3://bucket/prefix URL, got ''"
    with pytest.raises(ConfigError) as err:
        dest.deliver(delivery([csv_file(tmp_path)]))
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        dest.run_job(delivery(), pp.Job("1", ()), pp.JobProgress(None, SEG, 1, 1))
    assert str(err.value) == message


def test_a_job_bound_past_pinpoints_quota_names_the_quota_when_built_directly():
    with pytest.raises(ConfigError) as refused:
        PinpointDestination(application_id="a", import_s3_url=URL, s3=None, max_concurrent_jobs=11)
    assert str(refused.value) == (
        "destination.max_concurrent_jobs must be between 1 and 10 "
        "(Pinpoint runs at most 10 import jobs per account), got 11"
    )
