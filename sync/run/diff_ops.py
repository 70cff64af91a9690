"""What a run needs of the diff after ``prepare``, wherever the diff ran: one seam, two engines.

``DiffOps`` is the seam: the rows to send (``changes_sql``), the Ids a delivery
carries (``sent_ids_sql``, for the in-doubt record), the plan as the size guard
sees it (``as_last_delivered``), and the commit of what the destination took.
``RunnerDiff`` is the diff on the runner (``sync.run.diff``, DuckDB);
``sync.run.pushdown.lake.LakeDiff`` is the diff in Athena. The run picks one per
segment (``diff.engine``) and keeps it with the segment's work, so nothing
downstream asks which engine prepared a segment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

import duckdb

from sync.core.sql import ql
from sync.run.diff import (
    SNAPSHOT_ID,
    Plan,
    PreparedSegment,
    changes_sql,
    delta_to_commit,
    sent_ids_sql,
    snapshot_to_commit,
)
from sync.state.base import QuarantinedRow, StateStore


class DiffOps(Protocol):
    """The diff of one engine, after ``prepare``: what the run sends, records and commits."""

    def changes_sql(self, prepared: PreparedSegment) -> str:
        """The rows to send, in the header order of the segment's fields."""
        ...

    def sent_ids_sql(self, prepared: PreparedSegment) -> str:
        """The Ids a delivery of ``changes_sql`` carries."""
        ...

    def as_last_delivered(self, con: duckdb.DuckDBPyConnection, prepared: PreparedSegment, dirty: Path | None) -> Plan:
        """The plan as the size guard sees it: rows the last run delivered but left out of its commit
        (quarantined, still suspect) count as members before, not as entering."""
        ...

    def commit(
        self,
        con: duckdb.DuckDBPyConnection,
        prepared: PreparedSegment,
        kept_back: frozenset[str],
        quarantine: tuple[QuarantinedRow, ...],
    ) -> None:
        """Commit what the destination took: rows in ``kept_back`` keep their previous state."""
        ...


class RunnerDiff:
    """The diff on the runner (DuckDB): its new snapshot and delta are local files the run commits."""

    def __init__(self, state: StateStore, destination_key: str, run_id: str):
        self.state, self.destination_key, self.run_id = state, destination_key, run_id

    def changes_sql(self, prepared: PreparedSegment) -> str:
        return changes_sql(prepared)

    def sent_ids_sql(self, prepared: PreparedSegment) -> str:
        return sent_ids_sql(prepared)

    def as_last_delivered(self, con: duckdb.DuckDBPyConnection, prepared: PreparedSegment, dirty: Path | None) -> Plan:
        plan, previous = prepared.plan, prepared.previous_snapshot
        if dirty is None or previous is None:
            return plan
        held, now = con.execute(
            f"select count(*), count(*) filter (where {SNAPSHOT_ID} in (select {SNAPSHOT_ID} from "
            f"read_parquet({ql(str(prepared.new_snapshot))}))) from _quarantined where {SNAPSHOT_ID} not in "
            f"(select {SNAPSHOT_ID} from read_parquet({ql(str(previous))}))"
        ).fetchall()[0]
        return replace(plan, previous_rows=plan.previous_rows + held, entered=max(0, plan.entered - now))

    def commit(
        self,
        con: duckdb.DuckDBPyConnection,
        prepared: PreparedSegment,
        kept_back: frozenset[str],
        quarantine: tuple[QuarantinedRow, ...],
    ) -> None:
        path = snapshot_to_commit(con, prepared, kept_back)
        delta = delta_to_commit(con, prepared, kept_back)
        rows = con.execute(f"select count(*) from read_parquet({ql(str(path))})").fetchall()[0][0]
        self.state.commit_snapshot(
            self.destination_key,
            prepared.segment.name,
            path,
            fields=prepared.segment.fields,
            mapping_hash=prepared.mapping_hash,
            rows=rows,
            run_id=self.run_id,
            quarantine=quarantine,
            delta=delta,
        )
