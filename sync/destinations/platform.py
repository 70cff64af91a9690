"""What every job-platform destination (Pinpoint, Customer Profiles) does alike, written once.

A platform destination turns a delivery into platform jobs through ``jobs.deliver_in_jobs``;
around that it

- builds its clients from its settings block (``wiring``): one session, the block's region, the
  platform client configuration of ``aws_calls`` (no SDK retries);
- keeps the common knobs (timeout, job size, concurrency slots, isolation budget) and one
  ``Retrier`` (``JobDestination._setup``);
- delivers in the same order (``JobDestination.deliver``): refuse what the platform cannot take,
  wait for earlier runs' jobs of the segment, deliver in jobs, keep the platform segment;
- creates a job at most once (``_create_once``), waits for a job to end (``_await_job``) and turns
  a failed AWS call into the job's outcome (``_job_failed``).

A platform module subclasses ``JobDestination`` and supplies what is its own: ``run_job``,
``_location``, ``_wait_for_earlier_runs``, ``_keep_segment`` (and ``_refused`` when some fields
cannot go). Imports only ``sync.core`` and this package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from sync.core import aws
from sync.core.settings_types import destination_block
from sync.destinations.aws_calls import Retrier, Status, client_config, error_code, is_transient, poll
from sync.destinations.base import DeliveryResult, JobRecord, Progress, SegmentDelivery
from sync.destinations.jobs import Job, JobOutcome, JobProgress, deliver_in_jobs, job_slots, settle_earlier_runs

Block = TypeVar("Block", bound=BaseModel)
Made = TypeVar("Made")

DEFAULT_POLL_SECONDS = 15.0


@dataclass(frozen=True)
class Wiring(Generic[Block]):
    """A destination block checked by its model, and the session and clients it asks for."""

    block: Block
    session: Any
    config: Any = field(default_factory=client_config)  # one for every client of the destination

    def client(self, service: str) -> Any:
        """A client of ``service`` in the block's region, with SDK retries off (``aws_calls.client_config``)."""
        region = getattr(self.block, "region", None)
        return self.session.client(service, region_name=region or None, config=self.config)


def wiring(model: type[Block], settings: Block | Mapping[str, Any], session=None) -> Wiring[Block]:
    """The settings -> client wiring every platform's ``from_settings`` starts with."""
    return Wiring(destination_block(model, settings), session if session is not None else aws.session())


class JobDestination:
    """The shared half of a platform destination (see the module doc); ``name`` is the platform's."""

    name: str
    timeout: float
    poll_seconds: float | None

    def _setup(
        self,
        *,
        timeout: float,
        max_job_bytes: int,
        max_concurrent_jobs: int,
        max_rejected_rows: int,
        max_isolation_jobs: int,
        retry_base_seconds: float,
        max_retries: int,
        sleep: Callable[[float], None],
        slots_why: str,
    ) -> None:
        self.timeout = float(timeout)
        self.max_job_bytes = int(max_job_bytes)
        self.max_rejected_rows = int(max_rejected_rows)
        self.max_isolation_jobs = int(max_isolation_jobs)
        self.retry_base_seconds = float(retry_base_seconds)
        self.max_retries = int(max_retries)
        self._sleep = sleep
        self._retrying = Retrier(
            label=self.name, max_retries=self.max_retries, base_seconds=self.retry_base_seconds, sleep=sleep
        )
        self.max_concurrent_jobs, self._slots = job_slots(max_concurrent_jobs, why=slots_why)
        self.max_parallel = self.max_concurrent_jobs
        self._log = logging.getLogger(type(self).__module__)

    # ------------------------------------------------------------------ what a platform supplies
    def run_job(self, delivery: SegmentDelivery, job: Job, tracker: JobProgress) -> JobOutcome:
        raise NotImplementedError

    def _location(self, delivery: SegmentDelivery) -> str:
        raise NotImplementedError

    def _refused(self, delivery: SegmentDelivery) -> list[str]:
        """Why the platform cannot take this delivery at all (nothing is sent then); nothing by default."""
        return []

    def _wait_for_earlier_runs(self, delivery: SegmentDelivery) -> str | None:
        raise NotImplementedError

    def _keep_segment(self, delivery: SegmentDelivery) -> str | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the delivery
    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        """Deliver in platform jobs after earlier runs' jobs of the segment ended; then keep its platform segment."""
        location = self._location(delivery)
        refused = self._refused(delivery)
        if refused:
            return DeliveryResult(confirmed=False, location=location, errors=refused)
        if delivery.files:
            waiting = self._wait_for_earlier_runs(delivery)
            if waiting:
                return DeliveryResult(confirmed=False, errors=[waiting], location=location)
        result = deliver_in_jobs(
            self,
            delivery,
            progress,
            max_job_bytes=self.max_job_bytes,
            max_concurrent=self.max_concurrent_jobs,
            max_rejected_rows=self.max_rejected_rows,
            max_isolation_jobs=self.max_isolation_jobs,
            location=location,
        )
        if result.confirmed and delivery.segment_name:
            error = self._keep_segment(delivery)
            if error:
                result.errors.append(error)
                result.confirmed = False
        return result

    # ------------------------------------------------------------------ shared steps
    def _interval(self) -> float:
        """Seconds between status checks: ``poll_seconds`` (default 15) kept within 0.02 and 60."""
        poll_seconds = self.poll_seconds if self.poll_seconds is not None else DEFAULT_POLL_SECONDS
        return max(0.02, min(poll_seconds, 60.0))

    def _settle(self, delivery: SegmentDelivery, earlier: Callable[[], list[str]]) -> str | None:
        """Wait until ``earlier()`` (jobs of earlier runs of this segment still running) lists none."""
        return settle_earlier_runs(
            delivery.segment,
            earlier,
            platform=self.name,
            interval=self._interval(),
            timeout=self.timeout,
            sleep=self._sleep,
        )

    def _create_once(
        self, call: Callable[..., dict], find: Callable[[], Made], what: str, **kwargs
    ) -> tuple[dict | None, Made | None]:
        """A create call made at most once: (its answer, None), or after a server error (None, what ``find`` finds).

        Throttling is retried (the service refused before creating anything); a server error may have
        created the job, so it is looked for instead of asked for again.
        """
        try:
            return self._retrying(call, retry_transient=False, **kwargs), None
        except ClientError as exc:
            if not is_transient(exc):
                raise
            self._log.warning(
                "%s: %s answered %s; looking for the job before anything else", self.name, what, error_code(exc)
            )
            return None, find()

    def _await_job(
        self, fetch: Callable[[], Status], finished: Callable[[Status], bool], interval: float, tracker: JobProgress
    ) -> tuple[Status, bool]:
        """Poll a job's status until it is final or ``timeout`` passes, ticking the progress; (status, ended?)."""
        status, done = poll(
            fetch, finished, interval=interval, timeout=self.timeout, sleep=self._sleep, tick=tracker.tick
        )
        if done:
            tracker.job_done()
        return status, done

    def _job_failed(
        self, exc: ClientError | BotoCoreError, delivery: SegmentDelivery, job: Job, job_id: str = ""
    ) -> JobOutcome:
        """A job whose AWS call failed: an ERROR outcome naming the error code (the rows stay in doubt)."""
        if isinstance(exc, ClientError):
            self._log.warning("%s: %s part %s failed: %s", self.name, delivery.segment, job.label, error_code(exc))
            return JobOutcome(JobRecord(job_id=job_id, status="ERROR"), error=f"{error_code(exc)}: {exc}")
        return JobOutcome(JobRecord(job_id=job_id, status="ERROR"), error=str(exc))
