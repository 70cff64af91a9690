"""The shared platform layer: a delivery as a set of platform jobs, and what the verdicts mean.

Pinpoint import jobs and Customer Profiles upload jobs work alike: files are
grouped into jobs within the platform's size limit, each job is started at
most once and polled to an end, and the platform's verdict is one of

- every row accepted;
- some rows refused (a count, sometimes messages), the rest imported;
- the job failed as a whole (or lakeseg gave up waiting).

This module turns those verdicts into one ``DeliveryResult``. Refused rows
are isolated: when the platform's messages name the refused Ids, they are
taken from there; otherwise the job's rows are imported again in halves,
recursively, until each refused row stands alone (at most
``max_isolation_jobs`` extra jobs; rows of a chunk left unresolved then are
all quarantined). The delivery is confirmed when no job failed and at most
``max_rejected_rows`` rows were refused; the sync then commits and
quarantines those rows. A platform module supplies only ``run_job``.
"""

from __future__ import annotations

import csv
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sync.core.errors import ConfigError
from sync.core.import_files import encode_row
from sync.destinations.aws_calls import poll
from sync.destinations.base import DeliveryResult, JobRecord, Progress, SegmentDelivery

log = logging.getLogger(__name__)

DEFAULT_MAX_REJECTED_ROWS = 100
DEFAULT_MAX_ISOLATION_JOBS = 16
ISOLATION_SETTINGS = {
    "max_rejected_rows": "rows the platform may refuse before a delivery counts as failed (default 100); "
                         "refused rows are quarantined and resent every run",
    "max_isolation_jobs": "extra jobs spent finding refused rows by halving a job (default 16)",
}


# Where a platform stages the re-imports that isolate refused rows: a folder name starting with "_", which
# Athena skips, so the imports table (each partition is a run's folder) shows every delivered row once.
ISOLATION_FOLDER = "_isolation"


@dataclass(frozen=True)
class Job:
    label: str  # "1", "2", ... and "1a"/"1b" for the halves of job 1 during isolation
    files: tuple[Path, ...]
    isolating: bool = False  # a re-import of rows of an earlier job, to find the ones refused

    @property
    def folder(self) -> str:
        """The job's own folder under the run's folder: ``part-<label>``, or ``_isolation/part-<label>``."""
        return f"{ISOLATION_FOLDER}/part-{self.label}" if self.isolating else f"part-{self.label}"


@dataclass
class JobOutcome:
    """A platform's verdict on one job."""

    record: JobRecord
    ok: bool = False  # every row accepted
    refused_rows: int = 0  # rows refused while the rest was imported
    messages: list[str] = field(default_factory=list)  # the platform's row messages (may name Ids)
    error: str | None = None  # the job failed as a whole, or lakeseg gave up waiting

    @property
    def refused(self) -> bool:
        return not self.ok and self.error is None and self.refused_rows > 0


class JobPlatform(Protocol):
    def run_job(self, delivery: SegmentDelivery, job: Job, tracker: JobProgress) -> JobOutcome:
        """Upload the job's files, start the job at most once (find before create), wait for its verdict."""


def group_files(files, max_bytes: int) -> list[list[Path]]:
    """Split files, in order, into groups of at most ``max_bytes`` each."""
    groups: list[list[Path]] = []
    size = 0
    for path in files:
        n = path.stat().st_size
        if n > max_bytes:
            raise ValueError(f"import file {path.name} has {n} bytes, more than one job takes ({max_bytes})")
        if not groups or size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += n
    return groups


def isolation_limits(settings: dict) -> tuple[int, int]:
    """(max_rejected_rows, max_isolation_jobs) from a destination block, validated."""
    out = []
    for key, default in (("max_rejected_rows", DEFAULT_MAX_REJECTED_ROWS),
                         ("max_isolation_jobs", DEFAULT_MAX_ISOLATION_JOBS)):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"destination.{key} must be a whole number of 0 or more, got {value!r}")
        out.append(value)
    return out[0], out[1]


def number_setting(settings: dict, key: str, default, kind=float):
    """A non-negative number from a destination block (``destination.<key>``), or ``default`` when unset."""
    value = settings.get(key)
    if value is None or value == "":
        return default
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"destination.{key} must be a number, got {value!r}") from None
    if out < 0:
        raise ConfigError(f"destination.{key} must not be negative, got {value!r}")
    return out


def job_slots(value, *, why: str, limit: int = 10) -> tuple[int, threading.BoundedSemaphore]:
    """``destination.max_concurrent_jobs`` checked, and the semaphore every deliver() of a destination shares.

    A platform job holds a slot from the moment it is created until it ends, whatever thread runs it.
    """
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"destination.max_concurrent_jobs must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or n != value or not 1 <= n <= limit:
        raise ConfigError(f"destination.max_concurrent_jobs must be between 1 and {limit} ({why}), got {value!r}")
    return n, threading.BoundedSemaphore(n)


def settle_earlier_runs(segment: str, pending: Callable[[], list[str]], *, platform: str, interval: float,
                        timeout: float, sleep: Callable[[float], None],
                        clock: Callable[[], float] = time.monotonic) -> str | None:
    """Wait until ``pending()`` (jobs of earlier runs of this segment still running) is empty.

    Imports of one segment stay in order: a later run does not start while an
    earlier one may still write. Returns an error when they outlive ``timeout``.
    """
    def still() -> list[str]:
        found = pending()
        if found:
            log.info("%s: %s waits for %d in-flight job(s) of earlier runs", platform, segment, len(found))
        return found

    found, done = poll(still, lambda found: not found, interval=interval, timeout=timeout, sleep=sleep,
                       clock=clock)
    if done:
        return None
    return (f"{segment}: an import of an earlier run is still in flight ({found[0]}); nothing was imported so that "
            "imports stay in order; the rows are resent next run")


class JobProgress:
    """Reports uploads (files) then jobs through the sync's progress callback."""

    def __init__(self, progress: Progress | None, segment: str, files: int, jobs: int):
        self._progress = progress
        self._segment = segment
        self._files, self._jobs = files, jobs
        self._uploaded = self._done = 0
        self._lock = threading.Lock()

    def _emit(self, label: str, done: int, total: int) -> None:
        if self._progress:
            self._progress(label, done, total)

    def uploaded(self, n: int = 1) -> None:
        with self._lock:
            self._uploaded += n
            done, total = self._uploaded, max(self._files, self._uploaded)
        self._emit(f"{self._segment}: uploading", done, total)

    def tick(self) -> None:
        with self._lock:
            done = self._done
        self._emit(f"{self._segment}: importing", done, self._jobs)

    def job_done(self) -> None:
        with self._lock:
            self._done += 1
            done, total = self._done, max(self._jobs, self._done)
        self._emit(f"{self._segment}: importing", done, total)


def _ids(files) -> list[str]:
    out = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            at = next(reader).index("Id")
            out.extend(row[at] for row in reader)
    return out


def _attribute(ids: list[str], outcome: JobOutcome) -> dict[str, str] | None:
    """Refused Ids (of the job's ``ids``) named in the platform's messages, if they account for every refused row."""
    if not outcome.messages:
        return None
    found = {}
    for rid in ids:
        if not rid:
            continue
        # The whole Id, not part of a longer one (ep-1 is not named by a message about ep-13).
        named = re.compile(rf"(?<![\w.-]){re.escape(rid)}(?![\w.-])")
        message = next((m for m in outcome.messages if named.search(m)), None)
        if message is not None:
            found[rid] = message
    return found if len(found) == outcome.refused_rows else None


def _halves(job: Job, workdir: Path, rows: int) -> tuple[Job, Job]:
    """Write the job's ``rows`` rows as two jobs of (about) half each, with the header, streaming."""
    first = rows // 2
    out = []
    for suffix in "ab":
        folder = workdir / f"part-{job.label}{suffix}"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        out.append(folder / "part-00000.csv")
    written = 0
    with open(out[0], "wb") as a, open(out[1], "wb") as b:
        for n, path in enumerate(job.files):
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader)
                if n == 0:
                    a.write(encode_row(header))
                    b.write(encode_row(header))
                for row in reader:
                    (a if written < first else b).write(encode_row(row))
                    written += 1
    return Job(f"{job.label}a", (out[0],), isolating=True), Job(f"{job.label}b", (out[1],), isolating=True)


def deliver_in_jobs(platform: JobPlatform, delivery: SegmentDelivery, progress: Progress | None, *,
                    max_job_bytes: int, max_concurrent: int, max_rejected_rows: int, max_isolation_jobs: int,
                    location: str | None) -> DeliveryResult:
    if not delivery.files:
        return DeliveryResult(confirmed=True, location=location)
    try:
        groups = group_files(delivery.files, max_job_bytes)
    except ValueError as exc:
        return DeliveryResult(confirmed=False, errors=[str(exc)], location=location)
    jobs = [Job(str(n), tuple(files)) for n, files in enumerate(groups, start=1)]
    tracker = JobProgress(progress, delivery.segment, len(delivery.files), len(jobs))

    if len(jobs) == 1:
        outcomes = [platform.run_job(delivery, jobs[0], tracker)]
    else:
        with ThreadPoolExecutor(max_workers=min(len(jobs), max_concurrent), thread_name_prefix="lakeseg-jobs") as pool:
            outcomes = list(pool.map(lambda j: platform.run_job(delivery, j, tracker), jobs))

    records = [o.record for o in outcomes]
    errors: list[str] = []
    rejected: dict[str, str] = {}
    budget = [max_isolation_jobs]
    workdir = Path(delivery.files[0]).parent / "isolate"
    for job, outcome in zip(jobs, outcomes):
        if outcome.ok:
            continue
        if not outcome.refused:
            errors.append(f"{delivery.segment} job {job.label}: {outcome.error or 'not accepted'}")
            continue
        if max_rejected_rows == 0:  # no row may be refused: no point isolating them
            errors.append(f"{delivery.segment} job {job.label}: {outcome.refused_rows} row(s) refused by the "
                          f"platform (job {outcome.record.job_id}); destination.max_rejected_rows is 0")
            continue
        _isolate(platform, delivery, job, outcome, tracker, workdir, budget, rejected, records, errors)
    if len(rejected) > max_rejected_rows:
        errors.append(f"{delivery.segment}: {len(rejected)} row(s) refused by the platform, more than "
                      f"destination.max_rejected_rows ({max_rejected_rows})")
    confirmed = not errors
    return DeliveryResult(confirmed=confirmed, jobs=records, errors=errors, rejected=rejected, location=location)


def _isolate(platform, delivery, job: Job, outcome: JobOutcome, tracker, workdir: Path, budget: list[int],
             rejected: dict[str, str], records: list[JobRecord], errors: list[str]) -> None:
    """Find the rows a job refused: from the platform's messages, or by importing halves."""
    ids = _ids(job.files)  # one read of the job's files: attribution, the fallback and the halving use it
    named = _attribute(ids, outcome)
    if named is not None:
        rejected.update(named)
        return
    message = "; ".join(outcome.messages)[:300] or f"refused by the platform (job {outcome.record.job_id})"
    if len(ids) <= 1 or budget[0] < 2:
        if len(ids) > 1:
            message = f"in a chunk of {len(ids)} rows with {outcome.refused_rows} refused (not isolated further: " \
                      f"destination.max_isolation_jobs reached): {message}"
        rejected.update({rid: message for rid in ids})
        return
    budget[0] -= 2
    for half in _halves(job, workdir, len(ids)):
        result = platform.run_job(delivery, half, tracker)
        records.append(result.record)
        if result.ok:
            continue
        if result.refused:
            _isolate(platform, delivery, half, result, tracker, workdir, budget, rejected, records, errors)
        else:
            errors.append(f"{delivery.segment} job {half.label} (isolating refused rows): {result.error}")
