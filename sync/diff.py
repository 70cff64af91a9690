"""The diff engine: what changed in a segment since the last committed snapshot.

Everything runs inside DuckDB, which spills to disk under its memory limit, so
a 10M-row segment needs neither Python loops nor the whole table in memory.

A snapshot holds one row per member endpoint: its ``Id`` and a 64-bit digest
of its exported values. That is all the diff needs (entered / changed / exited
/ unchanged), and it keeps attribute values -- personal data -- out of the
state store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from .contract import Segment
from .errors import SegmentRefused
from .pinpoint_fields import ID_FIELD

SNAPSHOT_ID = "Id"
SNAPSHOT_DIGEST = "digest"


def qi(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def ql(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + str(value).replace("'", "''") + "'"


def digest_sql(fields: tuple[str, ...], alias: str = "") -> str:
    """SQL for the digest of a row's exported values (Id excluded).

    NULL and '' digest differently; values are joined with a unit separator.
    """
    prefix = f"{alias}." if alias else ""
    parts = [f"coalesce('=' || {prefix}{qi(f)}, chr(0))" for f in fields if f != ID_FIELD]
    if not parts:
        return "cast(0 as ubigint)"
    return f"md5_number_lower(concat_ws(chr(31), {', '.join(parts)}))"


@dataclass
class Plan:
    """What a sync of one segment would send."""

    segment: str
    rows: int = 0  # members now
    previous_rows: int = 0  # members in the committed snapshot
    entered: int = 0
    changed: int = 0
    exited: int = 0
    unchanged: int = 0
    exit_rows: int = 0  # exit rows sent (0 for `keep`)
    full_refresh: bool = False
    full_refresh_reason: str = ""
    first_sync: bool = False

    @property
    def to_send(self) -> int:
        sent = self.rows if self.full_refresh else self.entered + self.changed
        return sent + self.exit_rows

    def as_dict(self) -> dict:
        return {**asdict(self), "to_send": self.to_send}


@dataclass
class PreparedSegment:
    """A planned segment with its new snapshot written, ready to export."""

    segment: Segment
    plan: Plan
    current_sql: str  # relation yielding the current rows, Pinpoint field names
    new_snapshot: Path  # Parquet: Id, digest
    previous_snapshot: Path | None
    workdir: Path
    notes: list[str] = field(default_factory=list)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def prepare(con: duckdb.DuckDBPyConnection, segment: Segment, source_sql: str, *,
            previous: "object | None", workdir: Path, full_refresh: bool = False) -> PreparedSegment:
    """Read the segment once into a new snapshot and count the change.

    ``source_sql`` is a relation (from a reader) with the segment's declared
    columns; ``previous`` is a ``sync.state.Snapshot`` or None.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    fields = segment.fields
    renamed = ", ".join(
        f"cast({qi(m.column)} as varchar) as {qi(m.field)}" for m in segment.mappings
    )
    current_sql = f"(select {renamed} from {source_sql})"
    new_snapshot = workdir / "snapshot.parquet"
    con.execute(
        f"copy (select {qi(ID_FIELD)} as {SNAPSHOT_ID}, {digest_sql(fields)} as {SNAPSHOT_DIGEST} "
        f"from {current_sql}) to {ql(str(new_snapshot))} (format parquet, compression zstd)"
    )
    rows, distinct_ids, null_ids = _count(
        con, f"select count(*), count(distinct {SNAPSHOT_ID}), count(*) - count({SNAPSHOT_ID}) "
             f"from read_parquet({ql(str(new_snapshot))})"
    )
    if null_ids:
        raise SegmentRefused(f"{segment.name}: {null_ids} row(s) have a null Id; nothing was sent")
    if distinct_ids != rows:
        raise SegmentRefused(
            f"{segment.name}: {rows - distinct_ids} duplicate Id value(s) (rule: unique); nothing was sent"
        )

    plan = Plan(segment=segment.name, rows=rows, full_refresh=full_refresh)
    prev_path = Path(previous.path) if previous is not None else None
    if previous is None:
        plan.first_sync = True
        plan.full_refresh = True
        plan.full_refresh_reason = "first sync"
        plan.entered = rows
    else:
        plan.previous_rows = previous.rows
        if previous.mapping_hash != segment.mapping_hash:
            plan.full_refresh = True
            plan.full_refresh_reason = "field mapping changed since the last sync"
        elif full_refresh:
            plan.full_refresh_reason = "--full-refresh"
        entered, changed, exited, unchanged = _count(
            con,
            f"""
            select
              count(*) filter (where p.{SNAPSHOT_ID} is null),
              count(*) filter (where c.{SNAPSHOT_ID} is not null and p.{SNAPSHOT_ID} is not null
                               and c.{SNAPSHOT_DIGEST} <> p.{SNAPSHOT_DIGEST}),
              count(*) filter (where c.{SNAPSHOT_ID} is null),
              count(*) filter (where c.{SNAPSHOT_DIGEST} = p.{SNAPSHOT_DIGEST})
            from read_parquet({ql(str(new_snapshot))}) c
            full outer join read_parquet({ql(str(prev_path))}) p using ({SNAPSHOT_ID})
            """,
        )
        plan.entered, plan.changed, plan.exited, plan.unchanged = entered, changed, exited, unchanged
        if segment.exit_values:
            plan.exit_rows = exited
    return PreparedSegment(segment, plan, current_sql, new_snapshot, prev_path, workdir)


def changes_sql(prepared: PreparedSegment) -> str:
    """The rows to send, in the header order of the segment's fields."""
    seg, plan = prepared.segment, prepared.plan
    cols = ", ".join(qi(f) for f in seg.fields)
    if plan.full_refresh or prepared.previous_snapshot is None:
        upserts = f"select {cols} from {prepared.current_sql}"
    else:
        upserts = (
            f"select {', '.join('c.' + qi(f) for f in seg.fields)} from {prepared.current_sql} c "
            f"left join read_parquet({ql(str(prepared.previous_snapshot))}) p "
            f"on p.{SNAPSHOT_ID} = c.{qi(ID_FIELD)} "
            f"where p.{SNAPSHOT_ID} is null or p.{SNAPSHOT_DIGEST} <> {digest_sql(seg.fields, 'c')}"
        )
    if not plan.exit_rows or prepared.previous_snapshot is None:
        return upserts
    exit_values = seg.exit_values
    exit_cols = ", ".join(
        f"p.{SNAPSHOT_ID} as {qi(f)}" if f == ID_FIELD else f"{ql(exit_values[f])} as {qi(f)}" for f in seg.fields
    )
    exits = (
        f"select {exit_cols} from read_parquet({ql(str(prepared.previous_snapshot))}) p "
        f"anti join read_parquet({ql(str(prepared.new_snapshot))}) c on c.{SNAPSHOT_ID} = p.{SNAPSHOT_ID}"
    )
    return f"{upserts}\nunion all\n{exits}"


def snapshot_to_commit(con: duckdb.DuckDBPyConnection, prepared: PreparedSegment, rejected_ids: frozenset[str]) -> Path:
    """The snapshot to commit after delivery.

    Rows the destination rejected keep their previous state (or stay absent),
    so the next run sends them again.
    """
    if not rejected_ids:
        return prepared.new_snapshot
    out = prepared.workdir / "snapshot-committed.parquet"
    con.execute("create or replace temp table _rejected (id varchar)")
    con.executemany("insert into _rejected values (?)", [(i,) for i in sorted(rejected_ids)])
    prev = (
        f"union all select * from read_parquet({ql(str(prepared.previous_snapshot))}) "
        f"where {SNAPSHOT_ID} in (select id from _rejected)"
        if prepared.previous_snapshot else ""
    )
    con.execute(
        f"copy (select * from read_parquet({ql(str(prepared.new_snapshot))}) "
        f"where {SNAPSHOT_ID} not in (select id from _rejected) {prev}) "
        f"to {ql(str(out))} (format parquet, compression zstd)"
    )
    return out
