"""Per-segment and per-run figures as CloudWatch Embedded Metric Format (EMF).

An EMF document is one JSON object on one log line. CloudWatch Logs turns the
members named in its ``_aws.CloudWatchMetrics`` directive into metrics, with no
API call from the run: print the lines to a log stream CloudWatch Logs ingests
(the CodeBuild runner's log group does) and the metrics appear.

Two kinds of document:

* one per segment, from a run report (``RunReport.as_dict()`` or a history
  document): members, entered, changed, exited, sent, quarantined, duration,
  whether the segment failed, and on Athena the bytes its query scanned
  (``DataScannedBytes``, what Athena bills), dimensions ``Destination`` and ``Segment``;
* one per run outcome, from the exit code alone (a run that stopped on a
  configuration error has no report): ``RunsFinished`` (the heartbeat) and
  ``RunsFailed``, no dimensions.

Only counts and ids are emitted, never attribute values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sized
from pathlib import Path
from typing import TextIO

DEFAULT_NAMESPACE = "lakeseg"
OK_STATUSES = {"synced", "unchanged", "planned"}
DELIVERED_STATUSES = {"synced", "partial"}

# Metric name, EMF unit, and how to read it from a segment's report.
SEGMENT_METRICS: tuple[tuple[str, str], ...] = (
    ("Members", "Count"),
    ("Entered", "Count"),
    ("Changed", "Count"),
    ("Exited", "Count"),
    ("Sent", "Count"),
    ("Quarantined", "Count"),
    ("DurationSeconds", "Seconds"),
    ("SegmentFailed", "Count"),
    ("DataScannedBytes", "Bytes"),
)
SEGMENT_DIMENSIONS = ("Destination", "Segment")
RUN_METRICS: tuple[tuple[str, str], ...] = (("RunsFinished", "Count"), ("RunsFailed", "Count"))


def _count(value) -> int:
    """A count from an int, or the length of a list of ids; anything else is 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, Sized) and not isinstance(value, (str, bytes, Mapping)):
        return len(value)
    if isinstance(value, Mapping):
        return _count(value.get("count", value.get("rows", 0)))
    return 0


def segment_values(segment: Mapping) -> dict[str, float]:
    """The figures of one segment report (a dict as written to history).

    A segment that never got to a plan (skipped, or refused before reading)
    has only its duration and its failure flag: counts it does not know are
    left out rather than reported as zero members.
    """
    status = str(segment.get("status", ""))
    plan = segment.get("plan") or {}
    values: dict[str, float] = {}
    if plan:
        values["Members"] = _count(plan.get("rows", 0))
        values["Entered"] = _count(plan.get("entered", 0))
        values["Changed"] = _count(plan.get("changed", 0))
        values["Exited"] = _count(plan.get("exited", 0))
        # Delivered and committed: synced, or partial (committed, some rows quarantined).
        values["Sent"] = _count(plan.get("to_send", 0)) if status in DELIVERED_STATUSES else 0
    values["Quarantined"] = _count(segment.get("quarantined", 0))
    values["DurationSeconds"] = round(float(segment.get("duration_s") or 0.0), 3)
    values["SegmentFailed"] = 0 if status in OK_STATUSES else 1
    scanned = segment.get("data_scanned_bytes")
    if isinstance(scanned, int) and not isinstance(scanned, bool):  # read through Athena: what the query scanned
        values["DataScannedBytes"] = scanned
    return values


def _document(
    namespace: str,
    dimensions: Mapping[str, str],
    values: Mapping[str, float],
    units: Mapping[str, str],
    properties: Mapping[str, object],
    timestamp_ms: int,
) -> dict:
    doc: dict = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": units[name]} for name in values],
                }
            ],
        },
    }
    # Properties first, so a dimension or metric of the same name wins.
    doc.update(properties)
    doc.update(dimensions)
    doc.update(values)
    return doc


def segment_documents(
    report: Mapping, *, namespace: str = DEFAULT_NAMESPACE, timestamp_ms: int | None = None
) -> list[dict]:
    """One EMF document per segment of a run report."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    units = dict(SEGMENT_METRICS)
    docs = []
    for seg in report.get("segments") or []:
        dims = {"Destination": str(report.get("destination", "")), "Segment": str(seg.get("segment", ""))}
        props = {
            "RunId": report.get("run_id", ""),
            "Command": report.get("command", ""),
            "Target": report.get("target", ""),
            "Status": seg.get("status", ""),
        }
        docs.append(_document(namespace, dims, segment_values(seg), units, props, ts))
    return docs


def run_document(
    exit_code: int,
    *,
    run_id: str | None = None,
    failed_segments: Iterable[str] = (),
    namespace: str = DEFAULT_NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict:
    """The run's outcome: the heartbeat (RunsFinished) and RunsFailed (exit code not 0)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    values = {"RunsFinished": 1, "RunsFailed": 0 if exit_code == 0 else 1}
    props = {"ExitCode": exit_code, "RunId": run_id or "", "FailedSegments": sorted(failed_segments)}
    doc = _document(namespace, {}, values, dict(RUN_METRICS), props, ts)
    # A directive with no dimensions publishes the metrics without dimensions.
    doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = [[]]
    return doc


def emf_lines(docs: Iterable[Mapping]) -> list[str]:
    """Each document on one line: CloudWatch Logs reads one log event per line."""
    return [json.dumps(d, separators=(",", ":"), sort_keys=False, default=str) for d in docs]


def emit_segment_metrics(report: Mapping, *, namespace: str, path: Path | None, stream: TextIO) -> int:
    """Write the report's segment documents to ``stream``, or append them to ``path``; returns the count."""
    lines = emf_lines(segment_documents(report, namespace=namespace))
    if path is None:
        stream.writelines(line + "\n" for line in lines)
        stream.flush()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
    return len(lines)
