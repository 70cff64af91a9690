"""The ``pinpoint`` destination: S3 upload, then Amazon Pinpoint import jobs.

One delivery (one segment in one run) becomes one or more import jobs:

1. the files are grouped into jobs of at most 1 GB (Pinpoint's per-job limit);
   a job imports a whole S3 folder, so each group gets its own folder
   ``<import_s3_url>/<run_id>/<segment>/part-<n>/``;
2. each group's files are uploaded there, encrypted at rest (SSE-S3, or SSE-KMS
   with ``kms_key_id``), multipart above a size threshold;
3. each job runs either
   - ``mode: stack`` (default): through the import tail state machine
     (``infra/import_tail.asl.json``), one execution per job, named from run
     id + segment + part so a retry attaches to the execution it already
     started instead of importing twice; or
   - ``mode: direct``: ``CreateImportJob``/``GetImportJob`` from this process;
     the job id is written next to the folder (``_jobs/part-<n>.json``, outside
     the imported folder) so a retry attaches to the job instead of creating
     another;
4. the verdicts go through the shared platform layer (``jobs.py``): a job
   that refused some endpoints has them isolated and quarantined, any other
   failure leaves the delivery unconfirmed. The re-imports that isolate
   refused rows get folders of their own under
   ``<import_s3_url>/<run_id>/<segment>/_isolation/part-<label>/``: outside
   every other job's folder, and under a name Athena skips, so the imports
   table (a partition per run's folder) shows each delivered row once.

Import jobs are started at most once: no SDK-level retries on create calls
(only throttling, which Pinpoint answers before creating anything), and a job
is looked up by its S3 URL before one is created and after a create call
failed. Before a segment imports, jobs and executions of earlier runs still in
flight for it are waited for, so imports of one segment are strictly ordered.
At most ``max_concurrent_jobs`` import jobs run at once, counting the
project's running jobs from any process, not just this one's.

``segment_name`` keeps one *dynamic* Pinpoint segment per segment model: its
filter selects the owned attribute's in-segment values
(``meta.lakeseg.segment_values``), created once and updated when the mapping
changes. Imports define no segments of their own.

Attribute values are personal data: nothing here logs them above debug level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StrictStr

from sync.core.errors import ConfigError
from sync.core.settings_types import Number, PathPart, Strict, Whole
from sync.destinations.aws_calls import NOT_FOUND, preflight_error
from sync.destinations.aws_calls import error_code as _code
from sync.destinations.base import JobRecord, SegmentDelivery
from sync.destinations.jobs import (  # noqa: F401
    DEFAULT_MAX_ISOLATION_JOBS,
    DEFAULT_MAX_REJECTED_ROWS,
    ISOLATION_SETTINGS,
    Job,
    JobOutcome,
    JobProgress,
    deliver_in_jobs,
    group_files,
    job_slots,
    settle_earlier_runs,
)
from sync.destinations.platform import JobDestination, wiring

log = logging.getLogger(__name__)

GB = 1024**3
MAX_JOB_BYTES = GB  # Pinpoint: 1 GB per import job
MAX_EXECUTION_NAME = 80
EXECUTION_LIMIT_SECONDS = 365 * 24 * 3600  # the import tail's TimeoutSeconds
MAX_POLLS = 8700  # the import tail's bound on MaxPolls (8700 x 3600 s fits in the limit)
MODES = ("stack", "direct")
TERMINAL_JOB_STATES = {"COMPLETED", "FAILED"}


def _whole_seconds(value: float) -> float:
    if value != int(value):
        raise ValueError(f"must be a whole number of seconds, got {value!r}")
    return value


class PinpointDestinationSettings(BaseModel):
    """The ``destination:`` block of a ``pinpoint`` destination: its one check (lakeseg.yml or a caller's mapping).

    Values a delivery needs (application_id, import_s3_url, ...) may be unset here: ``preflight`` says
    which one is missing, naming the stack output that holds it.
    """

    model_config = Strict
    type: Literal["pinpoint"]
    name: PathPart | None = Field(None, description="the key state is kept under (read by the sync, not here)")
    application_id: StrictStr | None = Field(None, description="the Pinpoint project id")
    import_s3_url: Annotated[StrictStr, Field(pattern=r"^(s3://.+)?$")] | None = Field(
        None, description="s3://bucket/prefix for import files"
    )
    mode: Annotated[Literal["stack", "direct"] | None, BeforeValidator(lambda v: None if v == "" else v)] = Field(
        None, description="stack (default) or direct"
    )
    state_machine_arn: StrictStr | None = Field(
        None, description="stack mode: the import tail (stack output StateMachineArn)"
    )
    import_role_arn: StrictStr | None = Field(
        None,
        description="direct mode: the role Pinpoint assumes (stack output ImportRoleArn); "
        "stack mode: overrides the stack's role",
    )
    segment_name_prefix: StrictStr | None = Field(
        None, description="prefix for the dynamic segments named by segment_name"
    )
    poll_seconds: Annotated[Number, Field(ge=0, le=3600), AfterValidator(_whole_seconds)] | None = Field(
        None, description="seconds between status checks"
    )
    max_concurrent_jobs: Annotated[Whole, Field(ge=1, le=10)] = Field(
        2, description="import jobs running at once (default 2)"
    )
    kms_key_id: StrictStr | None = Field(
        None, description="KMS key for SSE-KMS uploads (default: the bucket's default encryption)"
    )
    timeout: Annotated[Number, Field(gt=0)] = Field(
        6 * 3600, description="seconds to wait for one import job (default 21600)"
    )
    max_job_mb: Annotated[Number, Field(gt=0, le=1024)] = Field(
        1024, description="largest import job in MiB (default and maximum 1024)"
    )
    region: StrictStr | None = Field(None, description="AWS region of the project, bucket and state machine")
    max_rejected_rows: Annotated[Whole, Field(ge=0)] = Field(
        DEFAULT_MAX_REJECTED_ROWS, description=ISOLATION_SETTINGS["max_rejected_rows"]
    )
    max_isolation_jobs: Annotated[Whole, Field(ge=0)] = Field(
        DEFAULT_MAX_ISOLATION_JOBS, description=ISOLATION_SETTINGS["max_isolation_jobs"]
    )


# Every key of the block and what it means (the docs' table).
SETTINGS = {
    "type": "pinpoint",
    **{k: str(f.description) for k, f in PinpointDestinationSettings.model_fields.items() if k != "type"},
}


# --------------------------------------------------------------------------- helpers
def parse_s3_url(url: str, setting: str = "destination.import_s3_url") -> tuple[str, str]:
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigError(f"{setting} must be an s3://bucket/prefix URL, got {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"{setting} names no valid bucket: {url!r}")
    return bucket, prefix.strip("/")


_NAME_OK = re.compile(r"[A-Za-z0-9_-]+")


def execution_name(run_id: str, segment: str, part: int | str) -> str:
    """A valid, deterministic Step Functions execution name for one import job.

    Names allow at most 80 characters; we keep to ``[A-Za-z0-9_-]`` (what
    CloudWatch Logs also accepts). When the plain name would be too long or
    needs characters replaced, a hash of the exact run id and segment keeps
    names of different jobs apart.
    """
    tail = f"-p{part}"
    plain = f"{run_id}-{segment}"
    if _NAME_OK.fullmatch(plain) and len(plain) + len(tail) <= MAX_EXECUTION_NAME:
        return plain + tail
    digest = hashlib.sha256(f"{run_id}\0{segment}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", plain)
    room = MAX_EXECUTION_NAME - len(tail) - len(digest) - 1
    return f"{safe[:room]}-{digest}{tail}"


# --------------------------------------------------------------------------- destination
class PinpointDestination(JobDestination):
    name = "pinpoint"
    # What the sync may ask of it (base.Destination), besides max_parallel (= max_concurrent_jobs): endpoints
    # never expire, every field the contract allows is a Pinpoint field, and a later run collects nothing a
    # dead run left here (as before these were declared).
    refresh_after = None

    def check_segment(self, segment: object) -> list[str]:
        return []

    def collect_debris(self, dead_runs: object, max_age_seconds: float) -> list[str]:
        return []

    def __init__(
        self,
        *,
        application_id: str | None,
        import_s3_url: str | None,
        s3,
        stepfunctions=None,
        pinpoint=None,
        mode: str = "stack",
        state_machine_arn: str | None = None,
        import_role_arn: str | None = None,
        segment_name_prefix: str | None = None,
        poll_seconds: float | None = None,
        max_concurrent_jobs: int = 2,
        kms_key_id: str | None = None,
        timeout: float = 6 * 3600,
        max_job_bytes: int = MAX_JOB_BYTES,
        multipart_threshold: int = 64 * 1024**2,
        multipart_chunksize: int = 16 * 1024**2,
        retry_base_seconds: float = 0.5,
        max_retries: int = 8,
        max_rejected_rows: int = 100,
        max_isolation_jobs: int = DEFAULT_MAX_ISOLATION_JOBS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.application_id = application_id
        self.import_s3_url = import_s3_url
        self.mode = mode
        self.state_machine_arn = state_machine_arn
        self.import_role_arn = import_role_arn
        self.segment_name_prefix = segment_name_prefix or ""
        self.poll_seconds = poll_seconds
        self.kms_key_id = kms_key_id
        self.multipart_threshold = int(multipart_threshold)
        self.multipart_chunksize = int(multipart_chunksize)
        self.s3 = s3
        self.stepfunctions = stepfunctions
        self.pinpoint = pinpoint
        self._setup(
            timeout=timeout,
            max_job_bytes=max_job_bytes,
            max_concurrent_jobs=max_concurrent_jobs,
            max_rejected_rows=max_rejected_rows,
            max_isolation_jobs=max_isolation_jobs,
            retry_base_seconds=retry_base_seconds,
            max_retries=max_retries,
            sleep=sleep,
            slots_why="Pinpoint runs at most 10 import jobs per account",
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(
        cls, settings: PinpointDestinationSettings | Mapping[str, Any], session=None
    ) -> PinpointDestination:
        # No SDK-level retries: a create call repeated after a 5xx could start a second import.
        # Calls that are safe to repeat go through _retrying (backoff with jitter) instead.
        wired = wiring(PinpointDestinationSettings, settings, session)
        block, client = wired.block, wired.client
        return cls(
            application_id=block.application_id,
            import_s3_url=block.import_s3_url,
            mode=block.mode or "stack",
            state_machine_arn=block.state_machine_arn,
            import_role_arn=block.import_role_arn,
            segment_name_prefix=block.segment_name_prefix,
            poll_seconds=block.poll_seconds,
            max_rejected_rows=block.max_rejected_rows,
            max_isolation_jobs=block.max_isolation_jobs,
            max_concurrent_jobs=block.max_concurrent_jobs,
            kms_key_id=block.kms_key_id,
            timeout=block.timeout,
            max_job_bytes=int(block.max_job_mb * 1024 * 1024),
            s3=client("s3"),
            stepfunctions=client("stepfunctions") if (block.mode or "stack") == "stack" else None,
            pinpoint=client("pinpoint"),
        )

    # ------------------------------------------------------------------ preflight
    def preflight(self) -> None:
        """Check every setting and permission the delivery needs; upload nothing."""
        if not self.application_id or not str(self.application_id).strip():
            raise ConfigError(
                "destination.application_id is not set: the Pinpoint project id (stack output ApplicationId)"
            )
        if not self.import_s3_url:
            raise ConfigError(
                "destination.import_s3_url is not set: s3://bucket/prefix for import files (stack output ImportS3Url)"
            )
        bucket, prefix = parse_s3_url(self.import_s3_url)
        if self.mode not in MODES:
            raise ConfigError(f"destination.mode must be 'stack' or 'direct', got {self.mode!r}")
        if self.mode == "stack":
            if not self.state_machine_arn:
                raise ConfigError(
                    "destination.state_machine_arn is not set (stack output StateMachineArn); or use mode: direct"
                )
            if self.stepfunctions is None:
                raise ConfigError("destination.mode is stack but no Step Functions client was given")
        else:
            if not self.import_role_arn:
                raise ConfigError(
                    "destination.import_role_arn is not set: direct mode passes the role Pinpoint "
                    "assumes to read the files (stack output ImportRoleArn)"
                )
            if self.pinpoint is None:
                raise ConfigError("destination.mode is direct but no Pinpoint client was given")
        self._check_bucket(bucket, prefix)
        if self.mode == "stack":
            self._check_state_machine()
        else:
            self._check_project()

    def _check_bucket(self, bucket: str, prefix: str) -> None:
        # ListObjectsV2 on the prefix rather than HeadBucket: it needs only s3:ListBucket
        # for that prefix, which is what the stack's runner policy grants.
        where = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        try:
            self.s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise preflight_error(
                exc,
                setting="import_s3_url",
                what=f"bucket {bucket} ({where})",
                platform="pinpoint",
                missing={"NoSuchBucket", "404", "NotFound"},
                missing_message=f"bucket {bucket} does not exist ({where})",
                actions=f"s3:ListBucket on arn:aws:s3:::{bucket} and s3:PutObject on {where}/*",
            ) from exc

    def _check_state_machine(self) -> None:
        arn = self.state_machine_arn
        try:
            self.stepfunctions.describe_state_machine(stateMachineArn=arn)
        except (ClientError, BotoCoreError) as exc:
            raise preflight_error(
                exc,
                setting="state_machine_arn",
                what=f"state machine {arn}",
                platform="pinpoint",
                missing={"StateMachineDoesNotExist", "InvalidArn", "ResourceNotFound"},
                missing_message=f"no state machine {arn} ({{code}}); use the stack output StateMachineArn",
                actions="states:DescribeStateMachine and states:StartExecution on it and "
                "states:DescribeExecution on its executions",
            ) from exc

    def _check_project(self) -> None:
        app = self.application_id
        try:
            self.pinpoint.get_import_jobs(ApplicationId=app, PageSize="1")
        except (ClientError, BotoCoreError) as exc:
            raise preflight_error(
                exc,
                setting="application_id",
                what=f"Pinpoint project {app}",
                platform="pinpoint",
                missing={"NotFoundException", "BadRequestException"},
                missing_message=f"Pinpoint has no project {app} ({{code}})",
                actions="mobiletargeting:GetImportJobs, mobiletargeting:CreateImportJob and "
                "mobiletargeting:GetImportJob on it, and iam:PassRole on "
                "destination.import_role_arn",
            ) from exc

    # ------------------------------------------------------------------ delivery
    def _base(self, delivery: SegmentDelivery) -> tuple[str, str, str]:
        """(bucket, prefix, the delivery's key ``<prefix>/<run_id>/<segment>``)."""
        bucket, prefix = parse_s3_url(self.import_s3_url or "")
        return bucket, prefix, "/".join(p for p in (prefix, delivery.run_id, delivery.segment) if p)

    def _location(self, delivery: SegmentDelivery) -> str:
        bucket, _, base = self._base(delivery)
        return f"s3://{bucket}/{base}/"

    def _wait_for_earlier_runs(self, delivery: SegmentDelivery) -> str | None:
        bucket, prefix, _ = self._base(delivery)
        return self._settle_in_flight(delivery, bucket, prefix)

    def run_job(self, delivery: SegmentDelivery, job: Job, tracker: JobProgress) -> JobOutcome:
        """One import job through the shared layer: upload, start at most once, wait, read the verdict."""
        bucket, _, base = self._base(delivery)
        folder_key = f"{base}/{job.folder}/"  # the job imports this folder only; isolation under _isolation/
        try:
            if self.mode == "stack":
                record, error = self._run_stack_job(delivery, job, bucket, folder_key, tracker)
            else:
                record, error = self._run_direct_job(delivery, job, bucket, base, folder_key, tracker)
        except (ClientError, BotoCoreError) as exc:
            return self._job_failed(exc, delivery, job)
        return _outcome(record, error)

    # ------------------------------------------------------------------ earlier runs, other processes
    def _listed(self, call: Callable[..., dict], response: str):
        """The items of a paged Pinpoint listing, page by page as they are consumed, to the last page.

        Its order is not relied on: a job is found by reading through, never by trusting the first pages.
        """
        kwargs: dict[str, Any] = {"ApplicationId": self.application_id, "PageSize": "100"}
        while True:
            page = self._retrying(call, **kwargs)[response]
            yield from page["Item"]
            if not page.get("NextToken"):
                return
            kwargs["Token"] = page["NextToken"]

    def _list_jobs(self) -> list[dict]:
        """The project's import jobs (newest pages first), as Pinpoint lists them."""
        return list(self._listed(self.pinpoint.get_import_jobs, "ImportJobsResponse"))

    def _running_jobs(self) -> list[dict]:
        return [j for j in self._list_jobs() if _running(j)]

    def _settle_in_flight(self, delivery: SegmentDelivery, bucket: str, prefix: str) -> str | None:
        """Wait for imports of this segment that earlier runs left in flight; an error if they outlive the timeout.

        Found by their S3 folder (``<import_s3_url>/<run_id>/<segment>/``) in the
        project's job list, and, in stack mode, by the Segment of running executions.
        """
        root = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
        mine = f"{root}{delivery.run_id}/"

        def earlier() -> list[str]:
            found = []
            if self.pinpoint is not None:
                try:
                    for j in self._running_jobs():
                        url = j["Definition"]["S3Url"]  # both required in Pinpoint's model
                        parts = url[len(root) :].split("/") if url.startswith(root) else []
                        if len(parts) > 1 and parts[1] == delivery.segment and not url.startswith(mine):
                            found.append(f"import job {j.get('Id')} ({url})")
                except (ClientError, BotoCoreError) as exc:
                    if self.mode == "direct":
                        raise
                    log.warning(
                        "pinpoint: cannot list import jobs (%s); in-flight imports of earlier runs "
                        "are not waited for (grant mobiletargeting:GetImportJobs)",
                        exc,
                    )
            if self.mode == "stack":
                for arn in self._running_executions(delivery.segment):
                    if not arn[arn.rindex(":") + 1 :].startswith(delivery.run_id):  # the execution's name
                        found.append(f"execution {arn}")
            return found

        return self._settle(delivery, earlier)

    def _running_executions(self, segment: str) -> list[str]:
        arns = []
        pages = self.stepfunctions.get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
        )
        for page in pages:
            for ex in page["executions"]:
                described = self._retrying(self.stepfunctions.describe_execution, executionArn=ex["executionArn"])
                raw = described.get("input")
                try:
                    payload = json.loads(raw) if raw else {}
                except ValueError:
                    payload = {}
                if payload.get("Segment") == segment:
                    arns.append(ex["executionArn"])
        return arns

    def _wait_for_a_free_job_slot(self, find: str | None = None) -> str | None:
        """Hold back while the project already runs max_concurrent_jobs import jobs (any process's).

        With ``find``, the same listing looks for a job already created for that
        S3 folder and returns its id (find before create) instead of waiting.
        """
        if self.pinpoint is None:
            return None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                listed = self._list_jobs()
            except (ClientError, BotoCoreError) as exc:
                if self.mode == "direct":
                    raise
                log.warning("pinpoint: cannot count running import jobs (%s)", exc)
                return None
            found = _job_for(listed, find)  # None without find: every listed job has an S3Url
            if found is not None:
                log.info("pinpoint: an import job for %s exists already (%s); attaching", find, found)
                return found
            running = sum(1 for j in listed if _running(j))
            if running < self.max_concurrent_jobs:
                return None
            log.info(
                "pinpoint: %d import jobs running in the project (limit %d); waiting", running, self.max_concurrent_jobs
            )
            self._sleep(self._interval())
        return None

    def _find_job(self, s3_url: str) -> str | None:
        """An import job already created for exactly this folder (after a create call failed): read until found."""
        return _job_for(self._listed(self.pinpoint.get_import_jobs, "ImportJobsResponse"), s3_url)

    # ------------------------------------------------------------------ dynamic segments
    def _keep_segment(self, delivery: SegmentDelivery) -> str | None:
        """Create or update the one dynamic segment of ``segment_name``: endpoints holding an in-segment value."""
        if self.pinpoint is None:
            return "segment_name needs a Pinpoint client"
        if not delivery.segment_filter:
            return (
                f"{delivery.segment}: segment_name is set but meta.lakeseg.segment_values is not: the dynamic "
                'segment needs the values that mean "in the segment" (e.g. {HasClicked: ["Yes"]})'
            )
        name = f"{self.segment_name_prefix}{delivery.segment_name}"
        try:
            dimensions = segment_dimensions(delivery.segment_filter)
        except ValueError as exc:
            return f"{delivery.segment}: {exc}"
        request = {"Name": name, "Dimensions": dimensions, "tags": {"lakeseg:segment": delivery.segment}}
        try:
            # Pages are read only until the segment is found.
            existing = next(
                (s for s in self._listed(self.pinpoint.get_segments, "SegmentsResponse") if s.get("Name") == name), None
            )
            if existing is None:
                self._retrying(
                    self.pinpoint.create_segment,
                    ApplicationId=self.application_id,
                    WriteSegmentRequest=request,
                    retry_transient=False,
                )
                log.info("pinpoint: created dynamic segment %r", name)
            elif existing.get("Dimensions") != dimensions:
                self._retrying(
                    self.pinpoint.update_segment,
                    ApplicationId=self.application_id,
                    SegmentId=existing["Id"],
                    WriteSegmentRequest={"Name": name, "Dimensions": dimensions},
                )
                log.info("pinpoint: updated dynamic segment %r", name)
        except ClientError as exc:
            return f"{delivery.segment}: cannot keep segment {name!r}: {_code(exc)}"
        return None

    def _upload(self, bucket: str, job: Job, folder_key: str, tracker: JobProgress) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_chunksize
        )
        for path in job.files:
            self.s3.upload_file(
                str(path),
                bucket,
                folder_key + path.name,
                Config=config,
                ExtraArgs={"ContentType": "text/csv; charset=utf-8", **self._sse()},
            )
            tracker.uploaded()

    def _sse(self) -> dict:
        """SSE-KMS with the configured key; otherwise the bucket's default encryption decides (SSE-S3 or its CMK)."""
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}

    # ------------------------------------------------------------------ stack mode
    def _execution_arn(self, name: str) -> str:
        # The first ":stateMachine:" ends the resource type; a later one is the name (and a qualifier).
        head, sep, sm_name = str(self.state_machine_arn).partition(":stateMachine:")
        if not sep:
            raise ConfigError(f"destination.state_machine_arn is not a state machine ARN: {self.state_machine_arn}")
        return f"{head}:execution:{sm_name.split(':')[0]}:{name}"

    def _run_stack_job(
        self, delivery: SegmentDelivery, job: Job, bucket: str, folder_key: str, tracker: JobProgress
    ) -> tuple[JobRecord, str | None]:
        # The execution name is the job's identity: Step Functions starts one execution per
        # name, and the execution calls CreateImportJob once (never retried on server errors).
        name = execution_name(delivery.run_id, delivery.segment, job.label)
        arn = self._execution_arn(name)
        existing = self._describe_if_exists(arn)
        if existing is not None:
            log.info(
                "pinpoint: %s part %s: attaching to execution %s (%s), not importing again",
                delivery.segment,
                job.label,
                name,
                existing["status"],
            )
            tracker.uploaded(len(job.files))
        else:
            self._upload(bucket, job, folder_key, tracker)
        with self._slots:  # an import job is in flight from here until its execution ends
            if existing is None:
                self._wait_for_a_free_job_slot()
                arn = self._start_execution(delivery, job, f"s3://{bucket}/{folder_key}", name, arn)
            described = self._wait_execution(arn, tracker)
        return self._record_from_execution(arn, described)

    def _start_execution(self, delivery: SegmentDelivery, job: Job, s3_url: str, name: str, arn: str) -> str:
        payload: dict[str, Any] = {
            "ApplicationId": self.application_id,
            "S3Url": s3_url,
            "RunId": delivery.run_id,
            "Segment": delivery.segment,
            "Counts": dict(delivery.counts),
            "Part": job.label,
        }
        if self.import_role_arn:
            payload["RoleArn"] = self.import_role_arn
        if self.poll_seconds is not None:
            # The execution gives up when lakeseg does, and always within its time limit.
            poll = int(self.poll_seconds)
            per = max(poll, 1)  # seconds a poll counts for (an interval of 0 still takes time)
            payload["PollSeconds"] = poll
            payload["MaxPolls"] = max(
                1, min(math.ceil(self.timeout / per), MAX_POLLS, (EXECUTION_LIMIT_SECONDS - 3600) // per)
            )
        try:
            arn = self._retrying(
                self.stepfunctions.start_execution,
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(payload, sort_keys=True),
            )["executionArn"]
            log.info("pinpoint: %s part %s: started execution %s", delivery.segment, job.label, name)
        except ClientError as exc:
            if _code(exc) != "ExecutionAlreadyExists":
                raise
            # Another attempt started it between our check and our start: attach to it.
            log.info("pinpoint: %s part %s: execution %s already exists; attaching", delivery.segment, job.label, name)
        return arn

    def _describe_if_exists(self, arn: str) -> dict | None:
        try:
            return self.stepfunctions.describe_execution(executionArn=arn)
        except ClientError as exc:
            if _code(exc) in {"ExecutionDoesNotExist", "ResourceNotFound"}:
                return None
            raise

    def _wait_execution(self, arn: str, tracker: JobProgress) -> dict:
        described, done = self._await_job(
            lambda: self._retrying(self.stepfunctions.describe_execution, executionArn=arn),
            lambda d: d["status"] != "RUNNING",
            self._interval(),
            tracker,
        )
        return described if done else {**described, "status": "WAIT_TIMEOUT"}

    def _record_from_execution(self, arn: str, described: dict) -> tuple[JobRecord, str | None]:
        status = described["status"]
        report: dict = {}
        raw = described.get("output") if status == "SUCCEEDED" else described.get("cause")
        if raw:
            try:
                parsed = json.loads(raw)
                report = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                report = {}
        record = JobRecord(
            job_id=str(report.get("JobId") or ""),
            status=str(report.get("JobStatus") or f"EXECUTION_{status}"),
            total_processed=report.get("TotalProcessed"),
            total_failures=report.get("TotalFailures"),
            failures=[str(f) for f in (report.get("Failures") or [])],
            execution_arn=arn,
        )
        log.debug("pinpoint: execution %s report: %s", arn, report)
        if status == "WAIT_TIMEOUT":
            return record, (
                f"import tail execution {arn} still running after {self.timeout:.0f} s; "
                "it may still import (the rows are resent next run)"
            )
        if status == "SUCCEEDED":
            return record, None
        if described.get("error") == "Lakeseg.NotificationFailed" and report.get("Outcome") == "SUCCEEDED":
            log.warning(
                "pinpoint: import job %s completed but the SNS notification failed (%s)",
                record.job_id,
                (report.get("NotifyError") or {}).get("Error"),
            )
            return record, None
        if not report:
            detail = " ".join(str(x) for x in (described.get("error"), described.get("cause")) if x)
            return record, f"import tail execution {arn} ended {status}" + (f": {detail}" if detail else "")
        error: dict = report["Error"] if isinstance(report.get("Error"), dict) else {}
        reason = ": ".join(str(x) for x in (error.get("Error"), error.get("Cause")) if x)
        if _job_ok(record) or not record.job_id:
            return record, f"import tail execution {arn} ended {status}" + (f" ({reason})" if reason else "")
        if record.status in TERMINAL_JOB_STATES and (record.total_failures or 0) > 0:
            return record, None  # endpoints refused: the shared layer isolates and quarantines them
        if error.get("Error") == "Lakeseg.ImportStillRunning":
            return record, (
                f"import job {record.job_id} still running when its execution {arn} stopped polling "
                "(MaxPolls); it may still import (the rows are resent next run)"
            )
        return record, _describe(record) + (f" ({error.get('Error')})" if error.get("Error") else "")

    # ------------------------------------------------------------------ direct mode
    def _run_direct_job(
        self, delivery: SegmentDelivery, job: Job, bucket: str, base: str, folder_key: str, tracker: JobProgress
    ) -> tuple[JobRecord, str | None]:
        marker_key = f"{base}/_jobs/part-{job.label}.json"
        s3_url = f"s3://{bucket}/{folder_key}"
        job_id = self._read_marker(bucket, marker_key)
        if job_id:
            log.info(
                "pinpoint: %s part %s: attaching to import job %s, not importing again",
                delivery.segment,
                job.label,
                job_id,
            )
            tracker.uploaded(len(job.files))
        else:
            self._upload(bucket, job, folder_key, tracker)
        with self._slots:  # an import job is in flight from here until it ends
            if not job_id:
                # Find before create (a job for this folder may exist), and wait for a free slot.
                job_id = self._wait_for_a_free_job_slot(find=s3_url)
            if not job_id:
                job_id = self._create_import_job(delivery, job, s3_url)
                if job_id is None:
                    return JobRecord(job_id="", status="NOT_CREATED"), (
                        f"CreateImportJob for {s3_url} failed on the server and no job for that folder exists; "
                        "the rows are resent next run"
                    )
            self._write_marker(bucket, marker_key, job_id, delivery, job, s3_url)
            response = self._wait_import_job(job_id, tracker)
        record = JobRecord(
            job_id=job_id,
            status=str(response["JobStatus"]),  # required in Pinpoint's model
            total_processed=response.get("TotalProcessed"),
            total_failures=response.get("TotalFailures"),
            failures=[str(f) for f in (response.get("Failures") or [])],
        )
        if record.status not in TERMINAL_JOB_STATES:
            return record, (
                f"import job {job_id} still {record.status} after "
                f"{self.timeout:.0f} s; it may still import (the rows are resent next run)"
            )
        return record, None

    def _create_import_job(self, delivery: SegmentDelivery, job: Job, s3_url: str) -> str | None:
        """CreateImportJob at most once; after a server error, look for the job it may have created."""
        request: dict[str, Any] = {
            "S3Url": s3_url,
            "RoleArn": self.import_role_arn,
            "Format": "CSV",
            "RegisterEndpoints": True,
            "DefineSegment": False,
        }
        created, found = self._create_once(
            self.pinpoint.create_import_job,
            lambda: self._find_job(s3_url),
            f"{delivery.segment} part {job.label}: CreateImportJob",
            ApplicationId=self.application_id,
            ImportJobRequest=request,
        )
        if created is None:
            return found
        job_id = created["ImportJobResponse"]["Id"]
        log.info("pinpoint: %s part %s: created import job %s", delivery.segment, job.label, job_id)
        return job_id

    def _read_marker(self, bucket: str, key: str) -> str | None:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in NOT_FOUND:
                return None
            raise
        try:
            return str(json.loads(body)["JobId"])
        except (ValueError, KeyError, TypeError):
            return None

    def _write_marker(
        self, bucket: str, key: str, job_id: str, delivery: SegmentDelivery, job: Job, s3_url: str
    ) -> None:
        body = json.dumps(
            {
                "JobId": job_id,
                "ApplicationId": self.application_id,
                "RunId": delivery.run_id,
                "Segment": delivery.segment,
                "Part": job.label,
                "S3Url": s3_url,
            }
        ).encode()
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **self._sse())

    def _wait_import_job(self, job_id: str, tracker: JobProgress) -> dict:
        response, _ = self._await_job(
            lambda: self._retrying(self.pinpoint.get_import_job, ApplicationId=self.application_id, JobId=job_id)[
                "ImportJobResponse"
            ],
            lambda r: r.get("JobStatus") in TERMINAL_JOB_STATES,
            self.poll_seconds if self.poll_seconds is not None else 15.0,
            tracker,
        )
        return response


# --------------------------------------------------------------------------- job lists
def _running(job: dict) -> bool:
    return job.get("JobStatus") not in TERMINAL_JOB_STATES


def _job_for(jobs: list[dict], s3_url: str | None) -> str | None:
    """The id of the listed import job created for exactly this S3 folder, if any."""
    return next((str(j["Id"]) for j in jobs if (j.get("Definition") or {}).get("S3Url") == s3_url), None)


# --------------------------------------------------------------------------- verdicts
def _outcome(record: JobRecord, error: str | None) -> JobOutcome:
    """Pinpoint's verdict in the shared layer's terms.

    COMPLETED with no failures: accepted. COMPLETED or FAILED with
    ``TotalFailures`` > 0: those endpoints were refused (Pinpoint fails a job
    when any piece failed; the rest may be imported) -- isolated and
    quarantined. FAILED with no failures, a timeout, an error: the job failed.
    """
    if error is not None:  # an import job that ended FAILED (through the import tail, too) is the platform's verdict
        return JobOutcome(record, error=error, platform_failed=record.status == "FAILED" and bool(record.job_id))
    if _job_ok(record):
        return JobOutcome(record, ok=True)
    if record.status in TERMINAL_JOB_STATES and (record.total_failures or 0) > 0:
        return JobOutcome(record, refused_rows=record.total_failures or 0, messages=list(record.failures))
    # FAILED with no failure count: a one-row job that ends so refused its row (see jobs.py).
    return JobOutcome(record, error=_describe(record), platform_failed=record.status == "FAILED")


def segment_dimensions(segment_filter: dict[str, tuple[str, ...]]) -> dict:
    """Pinpoint SegmentDimensions selecting endpoints whose owned fields hold an in-segment value."""
    dims: dict[str, Any] = {}
    for f, values in segment_filter.items():
        kind, _, name = f.partition(".")
        if f.startswith("User.UserAttributes."):
            dims.setdefault("UserAttributes", {})[f[len("User.UserAttributes.") :]] = {
                "AttributeType": "INCLUSIVE",
                "Values": list(values),
            }
        elif kind == "Attributes" and name:
            dims.setdefault("Attributes", {})[name] = {"AttributeType": "INCLUSIVE", "Values": list(values)}
        else:
            raise ValueError(
                f"segment_values: {f} cannot select a dynamic segment (use a User.UserAttributes.* "
                "or Attributes.* field)"
            )
        if not values:
            raise ValueError(f"segment_values: {f} lists no value")
    return dims


def _job_ok(record: JobRecord) -> bool:
    return record.status == "COMPLETED" and not (record.total_failures or 0)


def _describe(record: JobRecord) -> str:
    where = f" (execution {record.execution_arn})" if record.execution_arn else ""
    if record.status == "COMPLETED":
        return (
            f"import job {record.job_id} completed but rejected {record.total_failures} endpoint(s) "
            f"of {record.total_processed}{where}; see the job's failures in `lakeseg history`"
        )
    return f"import job {record.job_id or '(none)'} {record.status}{where}"
