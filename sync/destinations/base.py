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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable


@dataclass(frozen=True)
class SegmentDelivery:
    """What the sync hands a destination for one segment in one run."""

    run_id: str
    segment: str  # dbt model name, e.g. "seg_email_clickers"
    files: tuple[Path, ...]  # CSV import files, each below the size limit
    fields: tuple[str, ...]  # header, Pinpoint field names, declared case
    counts: dict[str, int]  # rows, entered, changed, exited, unchanged
    segment_name: str | None = None  # optional platform segment to define/update


@dataclass
class JobRecord:
    """One job the destination ran on the platform (e.g. a Pinpoint import job)."""

    job_id: str
    status: str
    total_processed: int | None = None
    total_failures: int | None = None
    failures: list[str] = field(default_factory=list)
    execution_arn: str | None = None


@dataclass
class DeliveryResult:
    """The destination's verdict on one SegmentDelivery.

    ``confirmed`` is True only when the platform accepted every row.  Row-level
    rejections the destination can attribute to an id go in ``rejected_ids``:
    the sync leaves those rows out of the committed snapshot so they are resent.
    """

    confirmed: bool
    jobs: list[JobRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejected_ids: frozenset[str] = frozenset()
    location: str | None = None  # where the files went (directory, s3:// URL)


Progress = Callable[[str, int, int], None]
"""progress(label, done, total): called by long-running destinations."""


@runtime_checkable
class Destination(Protocol):
    """A place segments are delivered to."""

    name: str

    def preflight(self) -> None:
        """Check settings and permissions before anything is delivered.

        Raise ``sync.errors.ConfigError`` naming the setting that is wrong.
        """

    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        """Deliver one segment's files and wait for the platform's verdict."""
