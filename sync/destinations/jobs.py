"""The shared platform layer: a delivery as a set of platform jobs, and what the verdicts mean.

Pinpoint import jobs and Customer Profiles upload jobs work alike: files are
grouped into jobs within the platform's size limit, each job is started at
most once and polled to an end, and the platform's verdict is one of

- every row accepted;
- some rows refused (a count, sometimes messages), the rest imported;
- the job failed as a whole (or lakeseg gave up waiting).

This module turns those verdicts into one ``DeliveryResult``. Refused rows
are found by group testing: rows the platform's messages name are refused at
once; otherwise the rows of a job that refused some become a *suspect group*,
split breadth-first into ``parts`` parts per round, the jobs of a round run in
parallel (at most ``max_concurrent``), at most ``max_isolation_jobs`` jobs per
run. A row is refused only when a job that held it alone refused it (or ended
FAILED), or the platform named it. Groups still suspect when the budget is
spent are returned as ``DeliveryResult.search``: the sync keeps them in the
segment's state (Ids only) and the next run continues splitting them, never
repeating a job and never counting an unproven row as refused. The delivery is
confirmed when no job failed and at most ``max_rejected_rows`` rows were
refused; the sync then commits every other row but the suspect ones and
quarantines the refused ones. A platform module supplies only ``run_job``.

The bound (docs/guarantee.md, "Finding refused rows"): a search tree of depth D = ceil(log_g n)
with at most min(k, g^d) suspect groups at depth d costs at most
J(k, n, g) = (g-1)·sum_{d<D} min(k, g^d) + k jobs in one run; across runs each
run does at least B - (g-1) - min(k, floor(B/g)) jobs of that work
(``search_bound`` computes the runs).
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
from typing import BinaryIO, Protocol

from sync.core.errors import ConfigError
from sync.core.import_files import encode_row
from sync.destinations.aws_calls import poll
from sync.destinations.base import DeliveryResult, JobRecord, Progress, RowSearch, SegmentDelivery

log = logging.getLogger(__name__)

DEFAULT_MAX_REJECTED_ROWS = 100
DEFAULT_MAX_ISOLATION_JOBS = 32
ISOLATION_SETTINGS = {
    "max_rejected_rows": "rows the platform may refuse before a delivery counts as failed (default 100); "
    "refused rows are quarantined and resent every run",
    "max_isolation_jobs": "jobs per run spent finding refused rows by group testing (default 32); an unfinished "
    "search is kept in state and continued next run",
}


# Where a platform stages the re-imports that isolate refused rows: a folder name starting with "_", which
# Athena skips, so the imports table (each partition is a run's folder) shows every delivered row once.
ISOLATION_FOLDER = "_isolation"


@dataclass(frozen=True)
class Job:
    label: str  # "1", "2", ...; "q" retries quarantined rows; "1a", "1b", "s1a", ... are parts during a search
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
    platform_failed: bool = False  # with error: the platform ended the job FAILED (not lakeseg giving up)

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


def settle_earlier_runs(
    segment: str,
    pending: Callable[[], list[str]],
    *,
    platform: str,
    interval: float,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Wait until ``pending()`` (jobs of earlier runs of this segment still running) is empty.

    Imports of one segment stay in order: a later run does not start while an
    earlier one may still write. Returns an error when they outlive ``timeout``.
    """

    def still() -> list[str]:
        found = pending()
        if found:
            log.info("%s: %s waits for %d in-flight job(s) of earlier runs", platform, segment, len(found))
        return found

    found, done = poll(still, lambda found: not found, interval=interval, timeout=timeout, sleep=sleep, clock=clock)
    if done:
        return None
    return (
        f"{segment}: an import of an earlier run is still in flight ({found[0]}); nothing was imported so that "
        "imports stay in order; the rows are resent next run"
    )


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
    out: list[str] = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            at = next(reader).index("Id")
            out.extend(row[at] for row in reader)
    return out


def _named(ids, outcome: JobOutcome) -> dict[str, str]:
    """Refused Ids (of the job's ``ids``) that the platform's messages name, with the message naming each.

    None at all when the messages would name more rows than the job refused:
    then they are not about refused rows alone.
    """
    if not outcome.messages:
        return {}
    joined = "\n".join(outcome.messages)
    found = {}
    for rid in ids:
        if not rid or rid not in joined:
            continue
        # The whole Id, not part of a longer one (ep-1 is not named by a message about ep-13).
        named = re.compile(rf"(?<![\w.-]){re.escape(rid)}(?![\w.-])")
        message = next((m for m in outcome.messages if named.search(m)), None)
        if message is not None:
            found[rid] = message
    return found if len(found) <= outcome.refused_rows else {}


def _attribute(ids: list[str], outcome: JobOutcome) -> dict[str, str] | None:
    """Refused Ids named in the platform's messages, if they account for every refused row."""
    found = _named(ids, outcome)
    return found if found and len(found) == outcome.refused_rows else None


def _message(outcome: JobOutcome) -> str:
    """What a row refused by a job that held it alone is quarantined with."""
    text = "; ".join(outcome.messages) or (outcome.error if outcome.platform_failed else "") or ""
    return text[:300] or f"refused by the platform (job {outcome.record.job_id})"


@dataclass
class _Group:
    """Rows under suspicion during a search: the Ids, the files holding them, how many are refused."""

    label: str
    files: tuple[Path, ...]
    ids: tuple[str, ...]  # in file order
    refused: int | None  # refused rows among them by this run's counts; None: not known in this run
    filtered: bool = False  # the files hold other rows too (only ``ids`` belong to the group)


def _write_rows(files, folder: Path, route: Callable[[str], str | None]) -> dict[str, tuple[Path, list[str]]]:
    """Stream the rows of ``files`` into one file per label ``route(Id)`` names (None: not written).

    Each file is ``<folder>/part-<label>/part-00000.csv`` with the header, every row byte for byte.
    """
    out: dict[str, tuple[Path, list[str]]] = {}
    handles: dict[str, BinaryIO] = {}
    header = None
    try:
        for path in files:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader)
                at = header.index("Id")
                for row in reader:
                    label = route(row[at])
                    if label is None:
                        continue
                    if label not in handles:
                        target = folder / f"part-{label}"
                        target.mkdir(parents=True, exist_ok=True, mode=0o700)
                        handles[label] = open(target / "part-00000.csv", "wb")  # noqa: SIM115 - closed below
                        handles[label].write(encode_row(header))
                        out[label] = (target / "part-00000.csv", [])
                    handles[label].write(encode_row(row))
                    out[label][1].append(row[at])
    finally:
        for handle in handles.values():
            handle.close()
    return out


def _hold_back(files, workdir: Path, held: dict[str, str]) -> tuple[list[Path], dict[str, tuple[Path, list[str]]]]:
    """The delivery's files without the rows ``held`` (Id -> label), and those rows written per label."""
    kept: list[Path] = []
    main = workdir / "main"
    main.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in files:
        target = main / Path(path).name
        rows = 0
        with open(path, newline="", encoding="utf-8") as fh, open(target, "wb") as out:
            reader = csv.reader(fh)
            header = next(reader)
            at = header.index("Id")
            out.write(encode_row(header))
            for row in reader:
                if row[at] not in held:
                    out.write(encode_row(row))
                    rows += 1
        if rows:
            kept.append(target)
        else:
            target.unlink()
    return kept, _write_rows(files, workdir, held.get)


class _Search:
    """Breadth-first group testing over the rows a delivery's jobs refused (see ``deliver_in_jobs``)."""

    def __init__(
        self,
        platform: JobPlatform,
        delivery: SegmentDelivery,
        tracker: JobProgress,
        workdir: Path,
        *,
        max_concurrent: int,
        parts: int,
        max_rejected_rows: int,
    ):
        self.platform, self.delivery, self.tracker, self.workdir = platform, delivery, tracker, workdir
        self.max_concurrent, self.parts, self.max_rejected_rows = max_concurrent, parts, max_rejected_rows
        self.records: list[JobRecord] = []
        self.errors: list[str] = []
        self.rejected: dict[str, str] = {}
        self.parked: list[_Group] = []  # suspect groups whose job failed outright: not tested again in this run
        self.jobs_used = 0  # isolation jobs run

    def run(self, jobs: list[Job]) -> list[JobOutcome]:
        """Run jobs in parallel, at most ``max_concurrent`` at once, in order of the list."""
        if len(jobs) == 1:
            outcomes = [self.platform.run_job(self.delivery, jobs[0], self.tracker)]
        else:
            with ThreadPoolExecutor(
                max_workers=min(len(jobs), self.max_concurrent), thread_name_prefix="lakeseg-jobs"
            ) as pool:
                outcomes = list(pool.map(lambda j: self.platform.run_job(self.delivery, j, self.tracker), jobs))
        self.records.extend(o.record for o in outcomes)
        return outcomes

    def settle(self, group: _Group, outcome: JobOutcome, suspects: list[_Group], *, isolating: bool) -> int | None:
        """What a job of ``group``'s rows proved: refused rows, a smaller suspect group, or its count of refused rows.

        Returns how many of the group's rows the job refused (None: it failed outright).
        """
        if outcome.ok:
            return 0
        alone = len(group.ids) == 1
        if outcome.refused or (alone and outcome.platform_failed):
            if alone:  # a job that held it alone refused it, or ended FAILED
                self.rejected[group.ids[0]] = _message(outcome)
                return 1
            named = _named(group.ids, outcome)
            self.rejected.update((rid, message[:300]) for rid, message in named.items())
            if outcome.refused_rows > len(named):
                rest = tuple(i for i in group.ids if i not in named) if named else group.ids
                suspects.append(
                    _Group(
                        group.label,
                        group.files,
                        rest,
                        outcome.refused_rows - len(named),
                        filtered=group.filtered or bool(named),
                    )
                )
            return outcome.refused_rows
        what = " (isolating refused rows)" if isolating else ""
        self.errors.append(f"{self.delivery.segment} job {group.label}{what}: {outcome.error or 'not accepted'}")
        if isolating:
            self.parked.append(group)  # only its Ids are read from here on (the search left for the next run)
        return None

    def split(self, group: _Group, parts: int) -> list[_Group]:
        """The group's rows as ``parts`` groups of (nearly) equal size, each in a file of its own, in order."""
        n = len(group.ids)
        sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
        labels = [f"{group.label}{LETTERS[i]}" for i in range(parts)]
        bounds, at = [], 0
        for size in sizes:
            at += size
            bounds.append(at)
        members = set(group.ids) if group.filtered else None
        seen = [0]

        def route(rid: str) -> str | None:
            if members is not None and rid not in members:
                return None
            k = seen[0]
            seen[0] += 1
            return next(labels[i] for i, b in enumerate(bounds) if k < b)

        written = _write_rows(group.files, self.workdir, route)
        return [_Group(label, (written[label][0],), tuple(written[label][1]), None) for label in labels]

    def rounds(self, frontier: list[_Group], budget: int) -> list[_Group]:
        """Split suspect groups round by round within ``budget`` jobs; returns the groups still suspect.

        A group whose refused rows were counted in this run is split into
        ``parts`` parts of which all but the last are imported; the last one's
        count follows (its rows were all imported by the group's own job except
        the refused ones). A group known only from an earlier run has all its
        parts imported. A lone row is imported alone.
        """
        while frontier and len(self.rejected) <= self.max_rejected_rows:
            plan: list[tuple[_Group, list[_Group] | None, int]] = []
            jobs: list[Job] = []
            for group in frontier:
                if len(group.ids) == 1:
                    pieces, tested = 1, 1
                else:
                    pieces = min(self.parts, len(group.ids))
                    tested = pieces - 1 if group.refused is not None else pieces
                if tested > budget:
                    plan.append((group, None, 0))  # waits for a later run
                    continue
                budget -= tested
                split = self.split(group, pieces)
                plan.append((group, split, tested))
                # The first split of a group carried over from an earlier run imports each of its rows once in
                # this run: those are the run's own imports. Every other part re-imports rows of an earlier job.
                first_import = group.label.startswith("s") and group.label[1:].isdigit()
                jobs.extend(Job(g.label, g.files, isolating=not first_import) for g in split[:tested])
            if not jobs:
                break
            self.jobs_used += len(jobs)
            outcomes = iter(self.run(jobs))
            frontier = []
            for group, parts_of, tested in plan:
                if parts_of is None:
                    frontier.append(group)
                    continue
                counts = [self.settle(g, next(outcomes), frontier, isolating=True) for g in parts_of[:tested]]
                if tested < len(parts_of):  # the last part was not imported on its own
                    last = parts_of[-1]
                    known = [c for c in counts if c is not None]
                    left = None if len(known) < len(counts) or group.refused is None else group.refused - sum(known)
                    if left is None or left < 0:  # unknown, or the counts disagree: tested next
                        frontier.append(last)
                    elif left > 0:
                        frontier.append(_Group(last.label, last.files, last.ids, left))
                    # left == 0: its group's job imported every one of its rows
        return frontier + self.parked


LETTERS = "abcdefghijklmnopqrstuvwxyz"
ISOLATION_PARTS = 2  # g: the parts a suspect group is split into per round


def deliver_in_jobs(
    platform: JobPlatform,
    delivery: SegmentDelivery,
    progress: Progress | None,
    *,
    max_job_bytes: int,
    max_concurrent: int,
    max_rejected_rows: int,
    max_isolation_jobs: int,
    location: str | None,
    parts: int = ISOLATION_PARTS,
) -> DeliveryResult:
    """Deliver in jobs; find refused rows by group testing, continuing the search an earlier run left.

    Rows of ``delivery.search`` (an unfinished search) and ``delivery.quarantined``
    (rows refused before) are held back from the delivery's jobs: the quarantined
    rows are retried together in one job ("q"), the unfinished groups are split
    further. A job that refused rows makes its rows a suspect group; the search
    runs in rounds (``_Search.rounds``) within ``max_isolation_jobs`` jobs, and
    whatever is still suspect then is returned as ``DeliveryResult.search``.
    """
    if not 2 <= parts <= len(LETTERS):
        raise ValueError(f"parts must be between 2 and {len(LETTERS)}, got {parts}")
    if not delivery.files:
        return DeliveryResult(confirmed=True, location=location)
    workdir = Path(delivery.files[0]).parent / "isolate"
    files, held = _held_back(delivery, workdir, max_rejected_rows)
    try:
        groups = group_files(files, max_job_bytes)
    except ValueError as exc:
        return DeliveryResult(confirmed=False, errors=[str(exc)], location=location)
    jobs = [Job(str(n), tuple(f)) for n, f in enumerate(groups, start=1)]
    retry = [_Group("q", (held["q"][0],), tuple(held["q"][1]), None)] if "q" in held else []
    carried = [_Group(label, (path,), tuple(ids), None) for label, (path, ids) in held.items() if label != "q"]
    tracker = JobProgress(progress, delivery.segment, len(delivery.files), len(jobs) + len(retry))
    search = _Search(
        platform,
        delivery,
        tracker,
        workdir,
        max_concurrent=max_concurrent,
        parts=parts,
        max_rejected_rows=max_rejected_rows,
    )
    outcomes = search.run(jobs + [Job(g.label, g.files) for g in retry]) if jobs or retry else []
    frontier = _first_verdicts(search, jobs, outcomes[: len(jobs)], max_rejected_rows)
    frontier += _retried_verdicts(search, retry, outcomes[len(jobs) :])
    left = search.rounds(frontier + carried, max_isolation_jobs)
    return _result(search, left, location)


def _held_back(
    delivery: SegmentDelivery, workdir: Path, max_rejected_rows: int
) -> tuple[list[Path], dict[str, tuple[Path, list[str]]]]:
    """The delivery's files without the rows held back, and those rows per label.

    Rows refused before (``delivery.quarantined``) go to label "q", the groups of an unfinished search
    (``delivery.search``, when found with the same header) to "s1", "s2", ...; nothing is held back when
    no row may be refused.
    """
    saved = (
        delivery.search if delivery.search is not None and delivery.search.fields == tuple(delivery.fields) else None
    )
    if not (max_rejected_rows and (saved is not None or delivery.quarantined)):
        return list(delivery.files), {}
    labels = {rid: "q" for rid in delivery.quarantined}
    for n, group in enumerate(saved.groups if saved else (), start=1):
        labels.update((rid, f"s{n}") for rid in group)
    return _hold_back(delivery.files, workdir, labels)


def _first_verdicts(
    search: _Search, jobs: list[Job], outcomes: list[JobOutcome], max_rejected_rows: int
) -> list[_Group]:
    """Settle the delivery's own jobs: the suspect groups they leave (a job that failed is an error)."""
    segment = search.delivery.segment
    frontier: list[_Group] = []
    for job, outcome in zip(jobs, outcomes):
        if outcome.ok:
            continue
        if outcome.refused and max_rejected_rows == 0:  # no row may be refused: no point isolating them
            search.errors.append(
                f"{segment} job {job.label}: {outcome.refused_rows} row(s) refused by the "
                f"platform (job {outcome.record.job_id}); destination.max_rejected_rows is 0"
            )
            continue
        if outcome.refused or outcome.platform_failed:
            job_ids = tuple(_ids(job.files))  # one read of the job's files: attribution and the search use it
            if outcome.refused or len(job_ids) == 1:
                search.settle(_Group(job.label, job.files, job_ids, None), outcome, frontier, isolating=False)
                continue
        search.errors.append(f"{segment} job {job.label}: {outcome.error or 'not accepted'}")
    return frontier


def _retried_verdicts(search: _Search, retry: list[_Group], outcomes: list[JobOutcome]) -> list[_Group]:
    """Settle the job that retried quarantined rows: rows refused again stay quarantined, the rest is settled."""
    frontier: list[_Group] = []
    for again, outcome in zip(retry, outcomes):
        if outcome.refused and outcome.refused_rows >= len(again.ids):
            # Every row refused again: rows refused before stay quarantined (named ones with their message).
            named = _named(again.ids, outcome)
            search.rejected.update((rid, named.get(rid, _message(outcome))[:300]) for rid in again.ids)
        else:
            search.settle(again, outcome, frontier, isolating=False)
    return frontier


def _result(search: _Search, left: list[_Group], location: str | None) -> DeliveryResult:
    """The delivery's verdict: confirmed unless a job failed or more rows were refused than allowed."""
    delivery = search.delivery
    errors, rejected = search.errors, search.rejected
    if len(rejected) > search.max_rejected_rows:
        errors.append(
            f"{delivery.segment}: {len(rejected)} row(s) refused by the platform, more than "
            f"destination.max_rejected_rows ({search.max_rejected_rows})"
        )
    if left:
        log.info(
            "%s: %d isolation job(s); %d row(s) in %d group(s) still hold refused rows: the search continues next run",
            delivery.segment,
            search.jobs_used,
            sum(len(g.ids) for g in left),
            len(left),
        )
    found = RowSearch(tuple(g.ids for g in left), tuple(delivery.fields)) if left else None
    return DeliveryResult(
        confirmed=not errors, jobs=search.records, errors=errors, rejected=rejected, location=location, search=found
    )


def search_bound(
    k: int, n: int, parts: int = ISOLATION_PARTS, budget: int = DEFAULT_MAX_ISOLATION_JOBS
) -> tuple[int, int]:
    """(jobs, runs): at most how many isolation jobs find ``k`` refused rows among ``n``, and in how many runs.

    The search is a tree: a suspect group of m rows splits into ``parts`` (g)
    parts of at most ceil(m/g) rows, so it is D = ceil(log_g n) levels deep,
    and the suspect groups of one level are disjoint, each holding a refused
    row: at most min(k, g^d) at level d. A group counted in the same run costs
    g-1 jobs (its last part's count follows), a lone row inferred refused one
    more (it must be imported alone):

        J(k, n, g) = (g-1) * sum_{d<D} min(k, g^d) + k.

    A run spends its budget B but for less than one group's split (at most
    g-1 jobs left over); a group carried over from an earlier run has all g
    parts imported, one job more than in a single run, and a run splits at most
    min(k, floor(B/g)) of those. So every run but the last advances the tree by
    at least U = B - (g-1) - min(k, floor(B/g)) jobs (the first by B - (g-1)):

        runs <= 1 + ceil(max(0, J - (B - g + 1)) / U).
    """
    if k <= 0 or n <= 0:
        return 0, 0
    depth, reach = 0, 1
    while reach < n:
        depth, reach = depth + 1, reach * parts
    jobs = (parts - 1) * sum(min(k, parts**d) for d in range(depth)) + k
    first = budget - (parts - 1)
    later = budget - (parts - 1) - min(k, budget // parts)
    if jobs <= first:
        return jobs, 1
    if later <= 0:
        raise ValueError(f"a budget of {budget} jobs per run cannot be relied on to advance the search")
    return jobs, 1 + -(-(jobs - first) // later)
