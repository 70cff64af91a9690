"""The one small interface every destination implements.

A destination receives one segment's import files (already diffed and split by
the sync) and reports whether it *confirmed* them. The sync commits the new
snapshot only for a confirmed delivery; anything else leaves the previous
snapshot in place, so the next run resends.

Files are UTF-8, RFC-4180 CSV with a header of Pinpoint field names (the
project's canonical schema). Destinations that speak another schema translate
from those names.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RowSearch:
    """An unfinished search for refused rows: groups of Ids, each still holding at least one refused row.

    Ids only, no values. The sync keeps it in the segment's state between runs:
    its rows are neither committed as delivered nor counted as refused, they
    stay in doubt (resent), and the next run continues the search by splitting
    these groups instead of starting over. ``fields`` is the header the groups
    were found with: a delivery with another header starts afresh.
    """

    groups: tuple[tuple[str, ...], ...] = ()
    fields: tuple[str, ...] = ()

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(i for group in self.groups for i in group)

    @property
    def rows(self) -> int:
        return sum(len(group) for group in self.groups)


@runtime_checkable
class JobLedger(Protocol):
    """The platform jobs a segment's deliveries created, kept durably (names and ids only) until each has ended.

    A destination notes a job's name before the create call and its id after,
    so a later run finds a job created despite an error, or still in flight,
    by its id instead of by listing the platform's jobs.
    """

    def entries(self) -> list[dict] | None:
        """Every job noted and not yet forgotten: {"name", "job_id" (None until known), "run_id"}; None if never used."""

    def remember(self, name: str, job_id: str | None, run_id: str) -> None:
        """Note (or update) a job by name."""

    def forget(self, name: str) -> None:
        """Drop a job that has ended."""


@dataclass(frozen=True)
class SegmentDelivery:
    """What the sync hands a destination for one segment in one run."""

    run_id: str
    segment: str  # dbt model name, e.g. "seg_email_clickers"
    files: tuple[Path, ...]  # CSV import files, each below the size limit
    fields: tuple[str, ...]  # header, Pinpoint field names, declared case
    counts: dict[str, int]  # rows, entered, changed, exited, unchanged
    segment_name: str | None = None  # optional platform segment to define/update
    segment_filter: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> in-segment values
    quarantined: frozenset[str] = frozenset()  # Ids refused before (proven), resent in this delivery to retry them
    search: RowSearch | None = None  # the search for refused rows an earlier run left unfinished
    ledger: JobLedger | None = None  # where a job-based destination notes the jobs it creates (the state store)


@dataclass
class JobRecord:
    """One job the destination ran on the platform (e.g. a Pinpoint import job)."""

    job_id: str
    status: str
    total_processed: int | None = None
    total_failures: int | None = None
    failures: list[str] = field(default_factory=list)  # the platform's words: they may quote rows (log only)
    execution_arn: str | None = None
    status_reason: str | None = None  # the platform's code for the status (INTERNAL_FAILURE): an enum, no free text


@dataclass
class DeliveryResult:
    """The destination's verdict on one SegmentDelivery.

    ``confirmed`` is True when the platform took the delivery: every row, or
    all but ``rejected`` -- rows it refused, by Id, with its message -- as long
    as those stay within the destination's ``max_rejected_rows``. The sync
    commits a confirmed delivery and quarantines the rejected rows (kept out of
    the snapshot, resent every run, listed until accepted). Rows of ``search``
    (an unfinished search for refused rows) are neither: they stay in doubt
    and the sync keeps the search for the next run. Anything else is
    unconfirmed: nothing is committed and every row stays in doubt.
    """

    confirmed: bool
    jobs: list[JobRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # Id -> the platform's message
    location: str | None = None  # where the files went (directory, s3:// URL)
    search: RowSearch | None = None  # rows still suspect when the run's isolation budget ran out

    @property
    def rejected_ids(self) -> frozenset[str]:
        return frozenset(self.rejected)

    @property
    def suspect_ids(self) -> frozenset[str]:
        return self.search.ids if self.search is not None else frozenset()


Progress = Callable[[str, int, int], None]
"""progress(label, done, total): called by long-running destinations."""


class SegmentShape(Protocol):
    """What a destination may ask of a segment before any run: its name, its fields and its platform segment.

    ``sync.dbt.contract.Segment`` has all three; a destination imports nothing of dbt.
    """

    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> tuple[str, ...]: ...

    @property
    def segment_name(self) -> str | None: ...


@runtime_checkable
class Destination(Protocol):
    """A place segments are delivered to, and everything the sync asks of it.

    Every destination states each capability, even as "none" (``refresh_after = None``, a
    ``check_segment`` that finds nothing): the sync calls them all directly, mypy checks each
    implementation (``sync/destinations/__init__.py``), and ``SyncRun`` refuses one that lacks any
    (``sync.core.capabilities.require``).
    """

    name: str

    @property
    def max_parallel(self) -> int:
        """How many deliveries the destination takes at once (1: one after the other)."""

    @property
    def refresh_after(self) -> timedelta | None:
        """For data that expires: members confirmed longer ago than this are sent again. None: it never expires."""

    def check_segment(self, segment: SegmentShape) -> list[str]:
        """Why this destination cannot take ``segment`` (each reason as ``<field>: [<rule>] why``), or nothing."""

    def preflight(self) -> None:
        """Check settings and permissions before anything is delivered.

        Raise ``sync.core.errors.ConfigError`` naming the setting that is wrong.
        """

    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        """Deliver one segment's files and wait for the platform's verdict."""

    def collect_debris(self, dead_runs: Collection[str], max_age_seconds: float) -> list[str]:
        """Remove what runs that died (``dead_runs``), or anything older than ``max_age_seconds``, left behind
        (staging folders); returns what was removed. A destination that leaves nothing returns []."""
