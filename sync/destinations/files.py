"""The ``files`` destination: import files in a local directory.

The embedded default: the demo and local development need no cloud. Each
delivery lands as ``<path>/<run_id>/<segment>/part-NNNNN.csv`` plus a
``_delivery.json`` receipt. Files are staged in a hidden directory and the
segment folder appears with one atomic rename, so a reader never sees half a
delivery. A delivery that fails (a full disk) removes its staging folder; one
a killed run left (``.incoming/<run_id>-<segment>``) is collected by the next
run (``collect_debris``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from sync.core import clock, failpoints
from sync.core.errors import ConfigError
from sync.core.settings_types import PathPart, Strict, Text, destination_block
from sync.destinations.base import DeliveryResult, Progress, SegmentDelivery, SegmentShape

STAGING = ".incoming"
_STAGED_RUN = re.compile(r"^(\d{8}T\d{9}Z-[0-9a-f]{6})-")  # .incoming/<run_id>-<segment>: the run id


class FilesDestinationSettings(BaseModel):
    """The ``destination:`` block of a ``files`` destination: its one check."""

    model_config = Strict
    type: Literal["files"]
    path: Text
    name: PathPart | None = None


class FilesDestination:
    name = "files"
    # What the sync may ask of it (base.Destination): one delivery at a time, files that never expire, any
    # segment the contract allows; what a dead run staged is collected (collect_debris, below).
    max_parallel = 1
    refresh_after: timedelta | None = None

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def from_settings(cls, settings: FilesDestinationSettings | Mapping[str, Any], session=None) -> FilesDestination:
        return cls(destination_block(FilesDestinationSettings, settings).path)

    def check_segment(self, segment: SegmentShape) -> list[str]:
        """Files take every field the segment contract allows: nothing to refuse."""
        return []

    def preflight(self) -> None:
        """Both places a delivery writes must take it: the staging folder, and the export folder itself
        (where each run's folder is made). Otherwise a configuration error (exit 2), before anything is sent."""
        try:
            (self.path / STAGING).mkdir(parents=True, exist_ok=True)
            probe = self.path / STAGING / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            folder = self.path / f".probe-{os.getpid()}"
            folder.mkdir(exist_ok=True)
            folder.rmdir()
        except OSError as exc:
            raise ConfigError(f"destination.path {self.path} is not writable: {exc}") from exc

    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        staging = self.path / STAGING / f"{delivery.run_id}-{delivery.segment}"
        try:
            return self._deliver(delivery, staging, progress)
        except Exception:  # not a kill (BaseException): a full disk, a copy error -- leave nothing staged
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def collect_debris(self, dead_runs: Collection[str], max_age_seconds: float) -> list[str]:
        """Remove staging folders left by runs that died (``dead_runs``) or older than ``max_age_seconds``.

        A live run's staging folder is younger than any run lasts and its run is not dead: it is left alone.
        """
        staging_root = self.path / STAGING
        if not staging_root.is_dir():
            return []
        cutoff, removed = time.time() - max_age_seconds, []
        for staged in staging_root.iterdir():
            with contextlib.suppress(OSError):  # gone meanwhile: nothing to do
                run = _STAGED_RUN.match(staged.name)
                if (
                    staged.is_dir()
                    and not staged.is_symlink()
                    and ((run is not None and run.group(1) in dead_runs) or staged.lstat().st_mtime < cutoff)
                ):
                    shutil.rmtree(staged)
                    removed.append(staged.name)
        return removed

    def _deliver(self, delivery: SegmentDelivery, staging, progress: Progress | None) -> DeliveryResult:
        final = self.path / delivery.run_id / delivery.segment
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        names = []
        for n, src in enumerate(delivery.files):
            shutil.copyfile(src, staging / src.name)
            names.append(src.name)
            if progress:
                progress(delivery.segment, n + 1, len(delivery.files))
            failpoints.hit("during-delivery")
        receipt = {
            "run_id": delivery.run_id,
            "segment": delivery.segment,
            "fields": list(delivery.fields),
            "counts": delivery.counts,
            "files": names,
            "delivered_at": clock.stamp(),
        }
        (staging / "_delivery.json").write_text(json.dumps(receipt, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        return DeliveryResult(confirmed=True, location=str(final))
