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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


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
    the snapshot, resent every run, listed until accepted). Anything else is
    unconfirmed: nothing is committed and every row stays in doubt.
    """

    confirmed: bool
    jobs: list[JobRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # Id -> the platform's message
    location: str | None = None  # where the files went (directory, s3:// URL)

    @property
    def rejected_ids(self) -> frozenset[str]:
        return frozenset(self.rejected)


Progress = Callable[[str, int, int], None]
"""progress(label, done, total): called by long-running destinations."""


@runtime_checkable
class Destination(Protocol):
    """A place segments are delivered to."""

    name: str

    def preflight(self) -> None:
        """Check settings and permissions before anything is delivered.

        Raise ``sync.core.errors.ConfigError`` naming the setting that is wrong.
        """

    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        """Deliver one segment's files and wait for the platform's verdict."""
