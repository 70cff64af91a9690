"""The ``customer_profiles`` destination: Amazon Connect Customer Profiles upload jobs (Pinpoint's successor).

One delivery (one segment in one run) becomes one or more upload jobs through
the shared platform layer (``jobs.py``). Each job:

1. its files (Pinpoint header) are written as one CSV with the mapped columns
   (``profile_fields.py``);
2. find before create: an upload job named ``lakeseg-<run id>-<segment>-p<part>``
   is attached to, never created twice; otherwise ``CreateUploadJob`` (Fields,
   UniqueKey, DataExpiry) -- at most once: not retried after a server error,
   looked up by name instead, through the whole ListUploadJobs listing. The
   job is noted in the segment's job ledger (``delivery.ledger``, the state
   store) by name before the call and by id after, so later runs read it by id;
3. ``GetUploadJobPath`` -> HTTPS ``PUT`` of the CSV to the pre-signed URL with
   the SSE-C headers (the ClientToken as key, its MD5, AES256). A URL at or
   past ``ValidUntil`` is fetched again, never used;
4. ``StartUploadJob``, then ``GetUploadJob`` polled with backoff until
   SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED or STOPPED; past ``timeout``
   lakeseg gives up and calls ``StopUploadJob``;
5. the verdict: SUCCEEDED is confirmed; PARTIALLY_SUCCEEDED (or failed
   records) hands ``ResultsSummary.FailedRecords`` to the shared isolation and
   quarantine; FAILED, STOPPED and giving up leave the rows in doubt.

At most ``max_concurrent_jobs`` upload jobs run at once from this process,
and a segment's upload waits for upload jobs of earlier runs still in progress.

**Expiry.** Profiles from upload jobs expire ``data_expiry_days`` after they
were last ingested. The destination tells the sync ``refresh_after``: members
confirmed longer ago than ``data_expiry_days - refresh_before_expiry_days``
are sent again even when unchanged (the engine keeps per-member confirmation
times in the snapshot).

``segment_name`` keeps one segment definition per segment model (profiles
whose owned attributes hold an in-segment value), created once and recreated
only when its definition changes.

Attribute values are personal data: nothing here logs them above debug level.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field, StrictStr, model_validator

from sync.core import clock
from sync.core.errors import ConfigError
from sync.core.settings_types import Number, PathPart, Strict, Whole
from sync.destinations import presigned
from sync.destinations import profile_fields as pf
from sync.destinations.aws_calls import error_code, is_transient, pages, preflight_error
from sync.destinations.base import JobLedger, JobRecord, SegmentDelivery
from sync.destinations.jobs import (
    DEFAULT_MAX_ISOLATION_JOBS,
    DEFAULT_MAX_REJECTED_ROWS,
    ISOLATION_SETTINGS,
    Job,
    JobOutcome,
    JobProgress,
)
from sync.destinations.platform import JobDestination, wiring

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "STOPPED"}
RUNNING = {"IN_PROGRESS"}
URL_MARGIN = timedelta(seconds=60)  # a pre-signed URL valid for less than this is fetched again
MAX_URL_FETCHES = 3
DOMAIN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAME = re.compile(r"^lakeseg-(?P<run>\d{8}T\d{9}Z-[0-9a-f]{6})-(?P<segment>.+)-p(?P<part>[0-9a-z]+)$")


class CustomerProfilesDestinationSettings(BaseModel):
    """The ``destination:`` block of a ``customer_profiles`` destination: its one check.

    The domain may be unset here: ``preflight`` says it is missing.
    """

    model_config = Strict
    type: Literal["customer_profiles"]
    name: PathPart | None = Field(None, description="the key state is kept under (read by the sync, not here)")
    domain_name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")] | None = Field(
        None, description="the Customer Profiles domain"
    )
    region: StrictStr | None = Field(None, description="AWS region of the domain")
    data_expiry_days: Annotated[Whole, Field(ge=1, le=1098)] = Field(
        14, description="days profiles from upload jobs live (DataExpiry, default 14)"
    )
    refresh_before_expiry_days: Annotated[Whole, Field(ge=0)] = Field(
        3, description="unchanged members are sent again this many days before they expire (default 3)"
    )
    unique_key_target: Annotated[StrictStr, Field(pattern=r"^(_profile\.[A-Za-z0-9_.]+)?$")] | None = Field(
        None, description="the profile field the Id goes to (default _profile.AccountNumber)"
    )
    segment_name_prefix: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]*$")] | None = Field(
        None, description="prefix for the segment definitions named by segment_name"
    )
    poll_seconds: Annotated[Number, Field(ge=0, le=3600)] = Field(
        15.0, description="seconds between status checks (default 15)"
    )
    timeout: Annotated[Number, Field(gt=0)] = Field(
        6 * 3600, description="seconds to wait for one upload job before stopping it (default 21600)"
    )
    max_concurrent_jobs: Annotated[Whole, Field(ge=1, le=10)] = Field(
        2, description="upload jobs running at once (default 2)"
    )
    max_job_mb: Annotated[Number, Field(gt=0, le=1000)] = Field(
        1000, description="largest upload in MB (default and maximum 1000: under 1 GB)"
    )
    max_rejected_rows: Annotated[Whole, Field(ge=0)] = Field(
        DEFAULT_MAX_REJECTED_ROWS, description=ISOLATION_SETTINGS["max_rejected_rows"]
    )
    max_isolation_jobs: Annotated[Whole, Field(ge=0)] = Field(
        DEFAULT_MAX_ISOLATION_JOBS, description=ISOLATION_SETTINGS["max_isolation_jobs"]
    )

    @model_validator(mode="after")
    def _refresh_before_expiry(self):
        if self.refresh_before_expiry_days >= self.data_expiry_days:
            raise ValueError(
                f"refresh_before_expiry_days must be less than data_expiry_days "
                f"({self.data_expiry_days}), got {self.refresh_before_expiry_days}"
            )
        return self


# Every key of the block and what it means (the docs' table).
SETTINGS = {
    "type": "customer_profiles",
    **{k: str(f.description) for k, f in CustomerProfilesDestinationSettings.model_fields.items() if k != "type"},
}


def sse_c_headers(client_token: str) -> dict[str, str]:
    """The SSE-C headers for a pre-signed PUT: the ClientToken (a base64 AES-256 key), its MD5, AES256."""
    try:
        key = base64.b64decode(client_token, validate=True)
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise ValueError("GetUploadJobPath returned a ClientToken that is not a base64 256-bit key")
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": client_token,
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


def display_name(run_id: str, segment: str, part: str) -> str:
    name = f"lakeseg-{run_id}-{segment}-p{part}"
    if len(name) > pf.MAX_DISPLAY_NAME:
        name = f"lakeseg-{run_id}-{hashlib.sha256(segment.encode()).hexdigest()[:16]}-p{part}"
    return name


class UploadFailed(Exception):
    """The pre-signed PUT did not store the file."""


class CustomerProfilesDestination(JobDestination):
    name = "customer_profiles"
    poll_seconds: float

    def __init__(
        self,
        *,
        domain_name: str | None,
        profiles,
        data_expiry_days: int = 14,
        refresh_before_expiry_days: int = 3,
        unique_key_target: str = pf.DEFAULT_UNIQUE_KEY_TARGET,
        segment_name_prefix: str | None = None,
        poll_seconds: float = 15.0,
        timeout: float = 6 * 3600,
        max_concurrent_jobs: int = 2,
        max_job_bytes: int = pf.MAX_JOB_BYTES,
        max_rejected_rows: int = 100,
        max_isolation_jobs: int = DEFAULT_MAX_ISOLATION_JOBS,
        verify: bool | str = True,
        http_timeout: float = 300.0,
        retry_base_seconds: float = 0.5,
        max_retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = clock.now,
    ):
        self.domain_name = domain_name
        self.profiles = profiles
        self.data_expiry_days, self.refresh_before_expiry_days = _expiry(data_expiry_days, refresh_before_expiry_days)
        self.unique_key_target = unique_key_target
        self.segment_name_prefix = segment_name_prefix or ""
        self.poll_seconds = float(poll_seconds)
        self.verify = verify
        self.http_timeout = float(http_timeout)
        self._wall_clock = wall_clock
        self._setup(
            timeout=timeout,
            max_job_bytes=max_job_bytes,
            max_concurrent_jobs=max_concurrent_jobs,
            max_rejected_rows=max_rejected_rows,
            max_isolation_jobs=max_isolation_jobs,
            retry_base_seconds=retry_base_seconds,
            max_retries=max_retries,
            sleep=sleep,
            slots_why="lakeseg's bound on upload jobs at once",
        )
        self._http: Any = None  # the urllib3 pool of the pre-signed uploads, made on first use
        self._http_lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(
        cls, settings: CustomerProfilesDestinationSettings | Mapping[str, Any], session=None
    ) -> CustomerProfilesDestination:
        wired = wiring(CustomerProfilesDestinationSettings, settings, session)
        block = wired.block
        return cls(
            domain_name=block.domain_name,
            profiles=wired.client("customer-profiles"),
            data_expiry_days=block.data_expiry_days,
            refresh_before_expiry_days=block.refresh_before_expiry_days,
            unique_key_target=block.unique_key_target or pf.DEFAULT_UNIQUE_KEY_TARGET,
            segment_name_prefix=block.segment_name_prefix,
            poll_seconds=block.poll_seconds,
            timeout=block.timeout,
            max_concurrent_jobs=block.max_concurrent_jobs,
            max_job_bytes=int(block.max_job_mb * 1000 * 1000),
            max_rejected_rows=block.max_rejected_rows,
            max_isolation_jobs=block.max_isolation_jobs,
            verify=_ca_bundle(wired.session),
        )

    # ------------------------------------------------------------------ what the sync asks
    @property
    def refresh_after(self) -> timedelta:
        """Members confirmed longer ago than this are sent again, changed or not (before DataExpiry)."""
        return timedelta(days=self.data_expiry_days - self.refresh_before_expiry_days)

    def check_segment(self, segment) -> list[str]:
        """Why this segment cannot go to Customer Profiles (fields with no target, names), or nothing."""
        problems = pf.segment_problems(
            segment.fields,
            segment.segment_name,
            unique_key_target=self.unique_key_target,
            prefix=self.segment_name_prefix,
        )
        return [f"{p.field or 'segment_name'}: [{p.rule}] {p.why}" for p in problems]

    def collect_debris(self, dead_runs: object, max_age_seconds: float) -> list[str]:
        """A later run collects nothing a dead run left here (as before this was declared)."""
        return []

    # ------------------------------------------------------------------ preflight
    def preflight(self) -> None:
        if not self.domain_name or not str(self.domain_name).strip():
            raise ConfigError("destination.domain_name is not set: the Customer Profiles domain to upload to")
        if not DOMAIN.match(str(self.domain_name)):
            raise ConfigError(
                f"destination.domain_name {self.domain_name!r} is not a domain name (1-64 letters, digits, _ or -)"
            )
        if not self.unique_key_target.startswith("_profile."):
            raise ConfigError(
                "destination.unique_key_target must name a profile field such as "
                f"_profile.AccountNumber, got {self.unique_key_target!r}"
            )
        actions = (
            f"profile:GetDomain, profile:ListUploadJobs, profile:CreateUploadJob, profile:GetUploadJobPath, "
            f"profile:StartUploadJob, profile:GetUploadJob and profile:StopUploadJob on "
            f"arn:aws:profile:<region>:<account>:domains/{self.domain_name} and its upload jobs "
            "(the stack's CustomerProfilesRunnerPolicy)"
        )
        checks: tuple[tuple[Any, dict[str, Any]], ...] = (
            (self.profiles.get_domain, {}),
            (self.profiles.list_upload_jobs, {"MaxResults": 1}),
        )
        for call, kwargs in checks:
            try:
                self._retrying(call, DomainName=self.domain_name, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise preflight_error(
                    exc,
                    setting="domain_name",
                    what=f"Customer Profiles domain {self.domain_name}",
                    platform="customer_profiles",
                    missing={"ResourceNotFoundException"},
                    missing_message=f"no Customer Profiles domain {self.domain_name} in this "
                    "region ({code}); create it or fix destination.region",
                    actions=actions,
                ) from exc

    # ------------------------------------------------------------------ delivery (the order: platform.JobDestination)
    def _location(self, delivery: SegmentDelivery) -> str:
        return f"customer-profiles://{self.domain_name}/{delivery.segment}"

    def _mapping(self, delivery: SegmentDelivery) -> pf.ProfileMapping:
        return pf.map_fields(delivery.fields, self.unique_key_target)

    def _refused(self, delivery: SegmentDelivery) -> list[str]:
        """Fields with no Customer Profiles target: the delivery sends nothing."""
        return [
            f"{delivery.segment}: {f} has no Customer Profiles target: {why}"
            for f, why in self._mapping(delivery).problems
        ]

    def _wait_for_earlier_runs(self, delivery: SegmentDelivery) -> str | None:
        return self._settle_in_flight(delivery)

    def _keep_segment(self, delivery: SegmentDelivery) -> str | None:
        return self._keep_segment_definition(delivery, self._mapping(delivery))

    def run_job(self, delivery: SegmentDelivery, job: Job, tracker: JobProgress) -> JobOutcome:
        """One upload job: translate, find or create, upload, start (each at most once), wait, read the verdict."""
        name = display_name(delivery.run_id, delivery.segment, job.label)
        csv_path = Path(job.files[0]).parent / f"profiles-{job.label}.csv"
        job_id = ""
        try:
            rows = pf.translate(job.files, csv_path, self._mapping(delivery))
            with self._slots:  # an upload job is in flight from here until it ends
                found = self._attach_or_create(delivery, job, name)
                if isinstance(found, JobOutcome):
                    return found
                job_id, status = found
                return self._send_and_wait(delivery, job, name, job_id, status, csv_path, rows, tracker)
        except UploadFailed as exc:
            return JobOutcome(JobRecord(job_id=job_id, status="UPLOAD_FAILED"), error=str(exc))
        except (ClientError, BotoCoreError) as exc:
            return self._job_failed(exc, delivery, job, job_id)
        finally:
            csv_path.unlink(missing_ok=True)

    def _attach_or_create(self, delivery: SegmentDelivery, job: Job, name: str) -> tuple[str, str] | JobOutcome:
        """(job id, status) of the upload job of this name, created if none exists; NOT_CREATED if that failed."""
        existing = self._find_job(name, delivery)
        if existing is not None:
            job_id, status = existing["JobId"], existing.get("Status", "CREATED")
            log.info(
                "customer_profiles: %s part %s: attaching to upload job %s (%s), not creating another",
                delivery.segment,
                job.label,
                job_id,
                status,
            )
            return job_id, status
        created = self._create_job(name, self._mapping(delivery), delivery)
        if created is None:
            return JobOutcome(
                JobRecord(job_id="", status="NOT_CREATED"),
                error=(
                    f"CreateUploadJob {name} failed on the server and no job of that name exists; "
                    "the rows are resent next run"
                ),
            )
        return created, "CREATED"

    def _send_and_wait(
        self,
        delivery: SegmentDelivery,
        job: Job,
        name: str,
        job_id: str,
        status: str,
        csv_path: Path,
        rows: int,
        tracker: JobProgress,
    ) -> JobOutcome:
        """Upload and start a job not started yet, wait for its end (stop it past ``timeout``), read its verdict."""
        if status == "CREATED":
            self._upload(job_id, csv_path)
            tracker.uploaded(len(job.files))
            self._start(job_id)
        else:
            tracker.uploaded(len(job.files))
        response, done = self._await_job(
            lambda: self._retrying(self.profiles.get_upload_job, DomainName=self.domain_name, JobId=job_id),
            lambda r: r.get("Status") in TERMINAL,
            self.poll_seconds,
            tracker,
        )
        if not done:
            return self._give_up(job_id, response)
        if delivery.ledger is not None:  # it has ended: no later run needs to find it
            delivery.ledger.forget(name)
        return verdict(response, rows)

    # ------------------------------------------------------------------ the job's calls
    def _listed(self) -> Iterator[dict]:
        """Every upload job of the domain, page by page as they are consumed, to the last page.

        ListUploadJobs has no filter and promises no order: a job is found by
        reading the listing through, never by trusting the first pages.
        """
        for page in pages(self.profiles, "list_upload_jobs", self._retrying, 100, DomainName=self.domain_name):
            yield from page.get("Items") or []

    def _by_id(self, job_id: str) -> dict | None:
        """An upload job by its id (GetUploadJob), or None when the domain has none of that id."""
        try:
            job = self._retrying(self.profiles.get_upload_job, DomainName=self.domain_name, JobId=job_id)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return {**job, "JobId": job.get("JobId") or job_id}

    def _find_job(self, name: str, delivery: SegmentDelivery | None = None) -> dict | None:
        """The upload job of this name: by the id the ledger holds for it, else by reading the whole listing.

        A name the ledger has not noted was never created (every create call is noted first): nothing to look up.
        """
        ledger = delivery.ledger if delivery is not None else None
        if ledger is not None and delivery is not None:
            noted = next((e for e in ledger.entries() or [] if e.get("name") == name), None)
            if noted is None:  # this run's name, never noted: never created
                return None
            if noted.get("job_id"):
                return self._by_id(str(noted["job_id"]))
        found = next((j for j in self._listed() if j.get("DisplayName") == name), None)
        if found is not None and ledger is not None and delivery is not None:
            ledger.remember(name, str(found["JobId"]), delivery.run_id)
        return found

    def _create_job(self, name: str, mapping: pf.ProfileMapping, delivery: SegmentDelivery | None = None) -> str | None:
        ledger = delivery.ledger if delivery is not None else None
        run_id = delivery.run_id if delivery is not None else ""
        if ledger is not None:  # durably, before the call: a job created despite an error is looked for later
            ledger.remember(name, None, run_id)
        created, found = self._create_once(
            self.profiles.create_upload_job,
            lambda: next((j for j in self._listed() if j.get("DisplayName") == name), None),
            f"CreateUploadJob {name}",
            DomainName=self.domain_name,
            DisplayName=name,
            Fields=mapping.fields(),
            UniqueKey=mapping.unique_key,
            DataExpiry=self.data_expiry_days,
        )
        if created is None:
            if found is not None and ledger is not None:
                ledger.remember(name, str(found["JobId"]), run_id)
            return found["JobId"] if found else None
        if ledger is not None:
            ledger.remember(name, str(created["JobId"]), run_id)
        log.info("customer_profiles: created upload job %s (%s)", created["JobId"], name)
        return created["JobId"]

    def _upload_path(self, job_id: str) -> dict:
        """A pre-signed URL valid for at least URL_MARGIN; one closer to or past ValidUntil is fetched again."""
        for _ in range(MAX_URL_FETCHES):
            path = self._retrying(self.profiles.get_upload_job_path, DomainName=self.domain_name, JobId=job_id)
            valid_until = path.get("ValidUntil")
            if valid_until is not None:
                valid_until = clock.as_utc(valid_until)
            if valid_until is None or valid_until - self._wall_clock() > URL_MARGIN:
                return path
            log.info(
                "customer_profiles: upload URL of job %s is valid only until %s; fetching another",
                job_id,
                valid_until.isoformat(),
            )
        raise UploadFailed(
            f"upload job {job_id}: GetUploadJobPath returned {MAX_URL_FETCHES} URLs that had expired "
            "or were about to; nothing was uploaded (check the clock of this machine)"
        )

    def _pool(self) -> Any:
        """One urllib3 pool for every upload of the destination, verifying TLS against ``verify``'s trust."""
        with self._http_lock:
            if self._http is None:
                self._http = presigned.pool(self.verify, self.http_timeout)
            return self._http

    def _upload(self, job_id: str, csv_path: Path) -> None:
        """PUT the CSV to the job's pre-signed URL with the SSE-C headers; an expired URL is fetched again once."""
        for attempt in (1, 2):
            path = self._upload_path(job_id)
            url = str(path.get("Url") or "")
            if not url.lower().startswith("https://"):
                raise UploadFailed(f"upload job {job_id}: the pre-signed URL is not HTTPS; refusing to send the file")
            try:
                headers = sse_c_headers(str(path.get("ClientToken") or ""))
            except ValueError as exc:
                raise UploadFailed(f"upload job {job_id}: {exc}") from None
            try:
                status, body = presigned.put_file(self._pool(), url, csv_path, {**headers, "Content-Type": "text/csv"})
            except presigned.PutFailed as exc:
                raise UploadFailed(f"upload job {job_id}: the upload failed: {exc}") from None
            if status in (200, 201, 204):
                log.info("customer_profiles: uploaded %d bytes for upload job %s", csv_path.stat().st_size, job_id)
                return
            expired = status == 403 and b"expired" in body.lower()
            if expired and attempt == 1:
                log.info("customer_profiles: the upload URL of job %s expired on the way; fetching another", job_id)
                continue
            raise UploadFailed(
                f"upload job {job_id}: the upload answered HTTP {status}; nothing was "
                "started (the rows are resent next run)"
            )

    def _start(self, job_id: str) -> None:
        try:
            self._retrying(
                self.profiles.start_upload_job, retry_transient=False, DomainName=self.domain_name, JobId=job_id
            )
        except ClientError as exc:
            if not is_transient(exc):
                raise
            # The start may have happened: start again only if the job still waits.
            status = self._retrying(self.profiles.get_upload_job, DomainName=self.domain_name, JobId=job_id)
            if status.get("Status") == "CREATED":
                self._retrying(
                    self.profiles.start_upload_job, retry_transient=False, DomainName=self.domain_name, JobId=job_id
                )
        log.info("customer_profiles: started upload job %s", job_id)

    def _give_up(self, job_id: str, response: dict) -> JobOutcome:
        record = _record(job_id, response)
        try:
            self._retrying(self.profiles.stop_upload_job, DomainName=self.domain_name, JobId=job_id)
            stopped = "stopped it"
        except (ClientError, BotoCoreError) as exc:
            stopped = f"could not stop it ({exc})"
        return JobOutcome(
            record,
            error=(
                f"upload job {job_id} still {response.get('Status')} after "
                f"{self.timeout:.0f} s; lakeseg {stopped}; the rows are resent next run"
            ),
        )

    # ------------------------------------------------------------------ earlier runs
    def _settle_in_flight(self, delivery: SegmentDelivery) -> str | None:
        """Wait for upload jobs of earlier runs of this segment still in progress (uploads stay in order).

        With a ledger in use, those are the jobs it holds of earlier runs, each
        read by id (GetUploadJob); one noted without an id (its create call
        failed) is looked for by name in the whole listing once, then kept with
        its id or dropped. Jobs that have ended are dropped from the ledger.
        Without one, the whole listing is read.
        """
        ledger = delivery.ledger

        def noted(ledger: JobLedger, entries: list[dict]) -> list[str]:
            found = []
            for entry in entries:
                name = str(entry.get("name"))
                if entry.get("run_id") == delivery.run_id:
                    continue
                job = (
                    self._by_id(str(entry["job_id"]))
                    if entry.get("job_id")
                    else next((j for j in self._listed() if j.get("DisplayName") == name), None)
                )
                if job is not None and job.get("Status") in RUNNING:
                    ledger.remember(name, str(job["JobId"]), str(entry.get("run_id")))
                    found.append(f"upload job {job['JobId']} ({name})")
                else:
                    ledger.forget(name)
            return found

        def earlier() -> list[str]:
            entries = ledger.entries() if ledger is not None else None
            if ledger is not None and entries is not None:
                return noted(ledger, entries)
            found = []
            for j in self._listed():
                name = str(j.get("DisplayName") or "")
                m = _NAME.match(name)
                # The whole name is compared: a segment too long for DisplayName appears only as its hash.
                if (
                    m
                    and m["run"] != delivery.run_id
                    and name == display_name(m["run"], delivery.segment, m["part"])
                    and j.get("Status") in RUNNING
                ):
                    found.append(f"upload job {j.get('JobId')} ({name})")
            return found

        return self._settle(delivery, earlier)

    # ------------------------------------------------------------------ segment definitions
    def _keep_segment_definition(self, delivery: SegmentDelivery, mapping: pf.ProfileMapping) -> str | None:
        """Create the segment definition of ``segment_name``, or recreate it when its groups changed."""
        name = f"{self.segment_name_prefix}{delivery.segment_name}"
        bad_name = pf.definition_name_problem(name)
        if bad_name:
            return f"{delivery.segment}: segment definition name {bad_name}"
        if not delivery.segment_filter:
            return (
                f"{delivery.segment}: segment_name is set but meta.lakeseg.segment_values is not: the segment "
                'definition needs the values that mean "in the segment" (e.g. {HasClicked: ["Yes"]})'
            )
        try:
            groups = pf.segment_groups(delivery.segment_filter, mapping)
        except ValueError as exc:
            return f"{delivery.segment}: {exc}"
        try:
            try:
                existing = self._retrying(
                    self.profiles.get_segment_definition, DomainName=self.domain_name, SegmentDefinitionName=name
                )
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                existing = None
            # The definition's fingerprint rides in its Description: the service may echo SegmentGroups
            # back normalised, and a definition must not be replaced on every run.
            fingerprint = hashlib.sha256(json.dumps(groups, sort_keys=True).encode()).hexdigest()[:16]
            description = f"lakeseg segment {delivery.segment} (definition {fingerprint})"
            if existing is not None and existing.get("Description") == description:
                return None
            if existing is not None:  # definitions cannot be updated: replace it
                self._retrying(
                    self.profiles.delete_segment_definition, DomainName=self.domain_name, SegmentDefinitionName=name
                )
            self._retrying(
                self.profiles.create_segment_definition,
                retry_transient=False,
                DomainName=self.domain_name,
                SegmentDefinitionName=name,
                DisplayName=name,
                Description=description,
                SegmentGroups=groups,
                Tags={"lakeseg:segment": delivery.segment},
            )
            log.info("customer_profiles: %s segment definition %r", "replaced" if existing else "created", name)
        except ClientError as exc:
            return f"{delivery.segment}: cannot keep segment definition {name!r}: {error_code(exc)}"
        return None


def _expiry(data_expiry_days: int, refresh_before_expiry_days: int) -> tuple[int, int]:
    """DataExpiry and the refresh margin, checked for a caller that builds the destination without its settings model."""
    expiry, margin = int(data_expiry_days), int(refresh_before_expiry_days)
    lo, hi = pf.DATA_EXPIRY_RANGE
    if not lo <= expiry <= hi:
        raise ConfigError(
            f"destination.data_expiry_days must be between {lo} and {hi} (CreateUploadJob's "
            f"DataExpiry), got {data_expiry_days!r}"
        )
    if not 0 <= margin < expiry:
        raise ConfigError(
            "destination.refresh_before_expiry_days must be at least 0 and less than "
            f"destination.data_expiry_days ({expiry}), got {refresh_before_expiry_days!r}"
        )
    return expiry, margin


def _ca_bundle(session) -> bool | str:
    """The upload trusts what the AWS clients trust: ``ca_bundle`` in the AWS config or AWS_CA_BUNDLE."""
    core = getattr(session, "_session", session)
    try:
        bundle = core.get_config_variable("ca_bundle")
    except AttributeError:
        bundle = None
    return bundle or os.environ.get("AWS_CA_BUNDLE") or True


# --------------------------------------------------------------------------- verdicts
def _record(job_id: str, response: dict) -> JobRecord:
    summary = response.get("ResultsSummary") or {}
    created, updated = summary.get("CreatedRecords"), summary.get("UpdatedRecords")
    processed = None if created is None and updated is None else int(created or 0) + int(updated or 0)
    reason = response.get("StatusReason")
    code = str(reason) if reason and re.fullmatch(r"[A-Z][A-Z_]{0,63}", str(reason)) else None  # an enum
    return JobRecord(
        job_id=job_id,
        status=str(response.get("Status") or "UNKNOWN"),
        total_processed=processed,
        total_failures=summary.get("FailedRecords"),
        failures=[str(reason)] if reason else [],
        status_reason=code,
    )


def verdict(response: dict, rows: int) -> JobOutcome:
    """Customer Profiles' verdict in the shared layer's terms.

    SUCCEEDED with no failed record: accepted. PARTIALLY_SUCCEEDED, or any
    FailedRecords: those rows were refused -- isolated and quarantined.
    FAILED, STOPPED: the job failed; its rows stay in doubt.
    """
    record = _record(str(response.get("JobId") or ""), response)
    failed = int(record.total_failures or 0)
    status = record.status
    if status == "SUCCEEDED" and not failed:
        return JobOutcome(record, ok=True)
    if status in ("SUCCEEDED", "PARTIALLY_SUCCEEDED") and failed:
        return JobOutcome(record, refused_rows=min(failed, rows) or failed)
    if status == "PARTIALLY_SUCCEEDED":
        return JobOutcome(
            record,
            error=f"upload job {record.job_id} partially succeeded but reports no failed record count; not confirmed",
        )
    reason = f" ({record.failures[0]})" if record.failures else ""
    # FAILED (not STOPPED): a one-row job that ends so refused its row (see jobs.py).
    return JobOutcome(record, error=f"upload job {record.job_id} {status}{reason}", platform_failed=status == "FAILED")
