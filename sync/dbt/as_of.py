"""One ``as_of`` per run.

Every relative window ("last 24 hours", "last 30 days") is measured from the
dbt var ``as_of``. ``lakeseg run`` fixes it once, before ``dbt build``, and
passes it to dbt, so every model of the run sees the same instant and its
partition bounds are constants; the sync records it in run history (read back
from dbt's run_results.json, which keeps the vars of the invocation).

Unless pinned (``lakeseg run -- --vars '{as_of: "..."}'``), it is:

* on a DuckDB target over a local lake, the lake's end -- the latest
  ``arrival_timestamp`` in ``all_events`` under ``$LAKESEG_LAKE_PATH`` (the
  location the sources read) -- so runs over the sample lake are reproducible;
* anywhere else, the current time (UTC, millisecond precision).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from sync.core import clock
from sync.core.errors import ConfigError

FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def format_as_of(value: datetime) -> str:
    return value.strftime(FORMAT)[:-3]


def _vars_index(args: Sequence[str]) -> int | None:
    for i, arg in enumerate(args):
        if arg == "--vars" and i + 1 < len(args):
            return i
    return None


def _parse_vars(text: str) -> dict:
    try:
        parsed = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"dbt --vars {text!r} is not YAML: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"dbt --vars {text!r} must be a mapping such as '{{as_of: \"2026-11-01 00:00:00\"}}'")
    return parsed


def pinned_as_of(dbt_args: Sequence[str]) -> str | None:
    """The as_of given in the dbt arguments' --vars, if any."""
    i = _vars_index(dbt_args)
    if i is None:
        return None
    value = _parse_vars(dbt_args[i + 1]).get("as_of")
    return None if value is None else str(value)


def with_as_of(dbt_args: Sequence[str], as_of: str) -> list[str]:
    """The dbt arguments with as_of set in --vars (other vars kept)."""
    args = list(dbt_args)
    i = _vars_index(args)
    if i is None:
        return [*args, "--vars", yaml.safe_dump({"as_of": as_of}, default_flow_style=True).strip()]
    merged = {**_parse_vars(args[i + 1]), "as_of": as_of}
    args[i + 1] = yaml.safe_dump(merged, default_flow_style=True).strip()
    return args


def lake_end(lake: Path) -> datetime | None:
    """The latest arrival in a local lake's all_events, or None when it has none."""
    events = Path(lake) / "due" / "all_events"
    partitions = sorted(p for p in events.glob("ingest_timestamp=*") if p.is_dir())
    if not partitions:
        return None
    import duckdb

    con = duckdb.connect()
    try:
        # Arrivals lie within their ingest partition or later; the last partition holds the latest.
        files = [str(f) for f in partitions[-1].glob("*.parquet")]
        if not files:
            return None
        [(end_ms,)] = con.execute("select max(arrival_timestamp) from read_parquet(?)", [files]).fetchall()
    finally:
        con.close()
    return None if end_ms is None else datetime(1970, 1, 1) + timedelta(milliseconds=int(end_ms))


def fix_as_of(
    target_type: str, dbt_args: Sequence[str], *, now: datetime | None = None, lake: Path | None = None
) -> tuple[str, list[str]]:
    """Fix the run's as_of: (as_of, dbt arguments that pass it)."""
    pinned = pinned_as_of(dbt_args)
    if pinned:
        return pinned, list(dbt_args)
    value = None
    if target_type == "duckdb":
        value = lake_end(lake if lake is not None else Path(os.environ.get("LAKESEG_LAKE_PATH", "build/lake")))
    if value is None:
        value = clock.as_utc(now or clock.now()).replace(tzinfo=None)
    as_of = format_as_of(value)
    return as_of, with_as_of(dbt_args, as_of)


def as_of_of_invocation(run_results: dict) -> str | None:
    """The as_of the dbt invocation behind run_results.json was given, if any."""
    value = ((run_results.get("args") or {}).get("vars") or {}).get("as_of")
    return None if value is None else str(value)
