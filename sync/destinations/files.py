"""The ``files`` destination: import files in a local directory.

The embedded default: the demo and local development need no cloud. Each
delivery lands as ``<path>/<run_id>/<segment>/part-NNNNN.csv`` plus a
``_delivery.json`` receipt. Files are staged in a hidden directory and the
segment folder appears with one atomic rename, so a reader never sees half a
delivery; an interrupted one leaves only the hidden staging folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from sync.core import failpoints
from sync.core.errors import ConfigError
from sync.destinations.base import DeliveryResult, Progress, SegmentDelivery

STAGING = ".incoming"


class FilesDestination:
    name = "files"
    max_parallel = 1

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def from_settings(cls, settings: dict, session=None) -> FilesDestination:
        if not settings.get("path"):
            raise ConfigError("destination.path is not set for the files destination")
        return cls(settings["path"])

    @property
    def state_key(self) -> str:
        return "files"

    def preflight(self) -> None:
        try:
            (self.path / STAGING).mkdir(parents=True, exist_ok=True)
            probe = self.path / STAGING / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"destination.path {self.path} is not writable: {exc}") from exc

    def deliver(self, delivery: SegmentDelivery, progress: Progress | None = None) -> DeliveryResult:
        final = self.path / delivery.run_id / delivery.segment
        staging = self.path / STAGING / f"{delivery.run_id}-{delivery.segment}"
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
            "delivered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / "_delivery.json").write_text(json.dumps(receipt, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        return DeliveryResult(confirmed=True, location=str(final))
