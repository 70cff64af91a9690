"""The diff in Athena for one segment: from the committed pointer to the rows to send, and the commit.

``LakeDiff.prepare`` registers, per segment and run, Glue tables over the
files the diff reads where they lie -- the segment's snapshot folder in the
state store (and the folder of a base Athena wrote), the digest's key table,
and the Ids to resend -- and runs ONE Athena statement
(``sql.rows_to_send_sql``) that classifies every member and UNLOADs only the
rows to send, plus one row of counts. The runner downloads those rows (the
churn, not the segment), checks them against the contract's data rules, and
hands them on as any prepared segment: the import files, the in-doubt record
and the guards read them like the DuckDB diff's.

The commit keeps the pointer protocol (``sync.state``): a full send (a first
sync, a change of scheme, ``--full-refresh``) commits the rows it sent as a
new base the runner writes -- it holds every member anyway --; any other run
commits a delta of what it sent (upserts and tombstones), and past the
compaction thresholds Athena writes the new base (an UNLOAD of the base and
deltas' latest rows) into a fresh folder the new pointer names. Rows the
destination rejected keep their previous state, as on DuckDB.

What stays behind a run: its Glue tables and scratch files are dropped by
``cleanup``; those a killed run left are dropped by the next run that diffs
the segment (under the segment's lock, so their run is dead); the rows it
UNLOADed go with the reader's staging prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import duckdb

from sync.core.errors import SegmentRefused
from sync.core.fields import ID_FIELD
from sync.core.sql import qi, ql
from sync.dbt.check import value_rules
from sync.dbt.contract import Segment
from sync.readers.base import RelationRef
from sync.run import classify
from sync.run.diff import Plan, PreparedSegment, _full_send_reason, _refuse_broken_rules, rule_sql
from sync.run.pushdown import glue, sql
from sync.state.base import PointedSnapshot, QuarantinedRow, StateStore
from sync.state.documents import SnapshotLakePointer

log = logging.getLogger(__name__)

SENDS = (*classify.SENT_KINDS, sql.UNCHANGED)  # rows sent with their values ('u' on a full send only)
EXITS = classify.EXIT_KINDS
_NOT_NAME = re.compile(r"[^a-z0-9_]+")
TABLE_PREFIX = "lakeseg_diff_"


class LakeQueries(Protocol):
    """What the diff needs of the Athena reader (``sync.readers.athena.AthenaReader``)."""

    def unload(self, select: str, relation: RelationRef, local: Path, label: str = ...) -> list[Path]: ...

    def unload_to(self, select: str, location: str, database: str, token: str | None = None) -> str: ...


@dataclass
class LakePrepared(PreparedSegment):
    """A segment diffed in Athena: ``sent`` holds the rows to send (c0..cn, id, k1, k2, digest, kind)."""

    sent: Path = Path()
    previous: PointedSnapshot | None = None
    database: str = ""
    snapshot_table: str = ""
    base_table: str | None = None


def _rp(path: Path) -> str:
    return f"read_parquet({ql(str(path))})"


def _kinds(kinds) -> str:
    return ", ".join(ql(k) for k in kinds)


def table_tag(destination: str, segment: str, run_id: str) -> str:
    """The Glue names of a segment's tables in one run: ``lakeseg_diff_<segment>_<hash>__<run>`` in Glue's
    letters, where the hash of the destination and the exact segment name keeps apart what Glue's letters
    would not (``web.users`` and ``web_users``; one segment synced to two destinations from one schema)."""
    owner = hashlib.sha256(f"{destination}\0{segment}".encode()).hexdigest()[:8]
    return f"{TABLE_PREFIX}{_NOT_NAME.sub('_', segment.lower())}_{owner}__{_NOT_NAME.sub('_', run_id.lower())}"


def run_tables(destination: str, segment: str) -> re.Pattern[str]:
    """The names of the segment's tables (for this destination) in any run (a run id as ``new_run_id`` makes
    them), and no other segment's or destination's."""
    run = r"[0-9]{8}t[0-9]{9}z_[0-9a-f]{6}"
    return re.compile(f"{re.escape(table_tag(destination, segment, ''))}{run}_(key|snap|base|dirty)")


class LakeDiff:
    """The diff in Athena for one run: ``prepare`` per segment, ``commit`` after delivery, ``cleanup`` at the end."""

    def __init__(self, queries: LakeQueries, glue_client, state: StateStore, destination_key: str, run_id: str):
        self.queries = queries
        self.glue = glue_client
        self.state = state
        self.destination_key = destination_key
        self.run_id = run_id
        self._tables: dict[str, glue.GlueTables] = {}
        self._segments: set[str] = set()
        self._keys: dict[str, str] = {}  # digest key fingerprint -> the key table's folder, stored once a run

    # ------------------------------------------------------------------ prepare
    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        segment: Segment,
        previous: PointedSnapshot | None,
        *,
        workdir: Path,
        full_refresh: bool,
        dirty: Path | None,
        digest_key,
        tests: list[dict] | None,
        sweep: bool,
    ) -> LakePrepared:
        """Classify every member in Athena; download only the rows to send; count them into a plan.

        Refused, with nothing sent, like the DuckDB diff: a NULL Id, a repeated Id, a value that breaks the
        contract's data rules (checked on every row this run sends), a snapshot that does not add up.
        ``sweep``: drop what killed runs left for the segment first -- only under the segment's lock (a plan
        holds none: another run may be using its tables). ``workdir``: the segment's own work folder (the
        engine made it, private).
        """
        fingerprint = digest_key.fingerprint if digest_key is not None else ""
        mapping_hash = sql.mapping_hash(segment.mapping_hash, fingerprint)
        plan = Plan(segment=segment.name, full_refresh=full_refresh)
        native = _plan_previous(plan, previous, mapping_hash, full_refresh)
        tables = self._tables_for(segment, sweep)
        tag = table_tag(self.destination_key, segment.name, self.run_id)
        key_table = tables.register(f"{tag}_key", self._key_location(digest_key, workdir), glue.KEY_COLUMNS)
        snap, base_table, prev_rel = self._previous_tables(tables, tag, segment, previous, native)
        dirty_rel = self._dirty_table(con, tables, tag, segment, dirty)
        relation = segment.relation
        current = sql.current_sql(
            f"{qi(relation.schema)}.{qi(relation.identifier)}", segment.columns, segment.fields, key_table
        )
        select = sql.rows_to_send_sql(current, prev_rel, dirty_rel, len(segment.fields), plan.full_refresh)
        sent = self._rows_to_send(con, select, segment, workdir)
        prepared = LakePrepared(
            segment,
            plan,
            f"({_sent_values(segment, sent, SENDS)})",
            sent,
            None,
            workdir,
            mapping_hash,
            sent=sent,
            previous=previous,
            database=relation.schema,
            snapshot_table=snap,
            base_table=base_table,
        )
        self._count(con, prepared, tests)
        return prepared

    def _previous_tables(
        self, tables: glue.GlueTables, tag: str, segment: Segment, previous: PointedSnapshot | None, native: bool
    ) -> tuple[str, str | None, str]:
        """Tables over the segment's snapshot folder (and the folder of a base Athena wrote, if the pointer
        names one): (snapshot table, base table or None, the committed membership as a relation)."""
        folder = self.state.snapshot_location(self.destination_key, segment.name)
        snap = tables.register(f"{tag}_snap", folder, glue.SNAPSHOT_COLUMNS)
        base_table = None
        if previous is not None and isinstance(previous.pointer, SnapshotLakePointer):
            base_folder = f"{folder}{previous.pointer.lake_base.folder}/"
            base_table = tables.register(f"{tag}_base", base_folder, glue.SNAPSHOT_COLUMNS)
        deltas = [[d] for d in previous.deltas] if previous else []
        prev_rel = sql.previous_sql(snap, previous.base if previous else (), deltas, native, base_table)
        return snap, base_table, prev_rel

    def _rows_to_send(self, con: duckdb.DuckDBPyConnection, select: str, segment: Segment, workdir: Path) -> Path:
        """Run the statement (an UNLOAD) and gather what it wrote into one local Parquet file."""
        files = self.queries.unload(
            classify.to_engine(select, "athena"), segment.relation, workdir / "lake", "lakeseg-diff"
        )
        if not files:  # the counts row is always there: no file means Athena wrote none at all
            raise SegmentRefused(f"{segment.name}: the diff in Athena wrote no rows, not even its counts; nothing sent")
        sent = workdir / "sent.parquet"
        listing = "[" + ", ".join(ql(str(f)) for f in files) + "]"
        con.execute(f"copy (select * from read_parquet({listing}, union_by_name = true)) to {ql(str(sent))}")
        return sent

    def _tables_for(self, segment: Segment, sweep: bool) -> glue.GlueTables:
        """The run's tables in the segment's database; with ``sweep``, after dropping what killed runs left
        for the segment (under the segment's lock, no live run uses them)."""
        database = segment.relation.schema
        tables = self._tables.setdefault(database, glue.GlueTables(self.glue, database))
        if segment.name not in self._segments:
            self._segments.add(segment.name)
            if sweep:
                own = table_tag(self.destination_key, segment.name, self.run_id)
                tables.drop_matching(run_tables(self.destination_key, segment.name), keep=own)
                self.state.drop_scratch(self.destination_key, segment.name, keep=self.run_id)
        return tables

    def _key_location(self, digest_key, workdir: Path) -> str:
        """The key table's folder: one row, the HMAC key Athena's digest uses (a subkey, never the secret);
        stored once a run, whatever the number of segments."""
        fingerprint = digest_key.fingerprint if digest_key is not None else "unkeyed"
        if fingerprint not in self._keys:
            self._keys[fingerprint] = self._store_key(
                digest_key.secret if digest_key is not None else "", fingerprint, workdir
            )
        return self._keys[fingerprint]

    def _store_key(self, secret: str, fingerprint: str, workdir: Path) -> str:
        local = workdir / "key.parquet"
        con = duckdb.connect()
        try:
            con.execute(
                f"copy (select unhex(?) as {sql.KEY_COLUMN}) to {ql(str(local))} (format parquet)",
                [sql.athena_subkey(secret).hex()],
            )
        finally:
            con.close()
        try:
            return self.state.put_lake_key(fingerprint, local)
        finally:
            local.unlink(missing_ok=True)

    def _dirty_table(
        self, con: duckdb.DuckDBPyConnection, tables: glue.GlueTables, tag: str, segment: Segment, dirty: Path | None
    ) -> str | None:
        """The Ids to resend whatever the snapshot says, as a table Athena reads (None when there are none);
        ``_dirty`` (Id) on the runner, for the in-doubt record."""
        source = (
            f"(select distinct Id from {_rp(dirty)} where Id is not null)"
            if dirty is not None
            else "(select cast(null as varchar) as Id where false)"
        )
        con.execute(f"create or replace temp table _dirty as select Id from {source}")
        if dirty is None:
            return None
        location = self.state.put_scratch(self.destination_key, segment.name, self.run_id, "dirty", dirty)
        return tables.register(f"{tag}_dirty", location, glue.DIRTY_COLUMNS)

    def _count(self, con: duckdb.DuckDBPyConnection, prepared: LakePrepared, tests: list[dict] | None) -> None:
        """The plan from the rows Athena sent back; refusals as the DuckDB diff's."""
        seg, plan, rp = prepared.segment, prepared.plan, _rp(prepared.sent)
        found = con.execute(f"select k1, k2 from {rp} where kind = {ql(sql.COUNTS)}").fetchall()
        rows, null_ids = (int(found[0][0]), int(found[0][1])) if found else (0, 0)
        if null_ids:
            raise SegmentRefused(f"{seg.name}: {null_ids} row(s) have a null Id (rule: not_null); nothing was sent")
        repeated, keys = con.execute(
            f"select count(*), count(distinct (k1, k2)) from {rp} where kind = {ql(sql.DUPLICATE)}"
        ).fetchall()[0]
        if repeated:
            distinct = rows - (repeated - keys)
            raise SegmentRefused(
                f"{seg.name}: duplicate Id values (rule: unique) -- {rows - distinct:,} of {rows:,} rows repeat "
                f"an Id ({distinct:,} distinct); nothing was sent"
            )
        rules = value_rules(seg, list(tests or ()))
        if rules:
            broken = con.execute(
                f"select count(*) from {prepared.current_sql} where {' or '.join(rule_sql(r) for r in rules)}"
            ).fetchall()[0][0]
            if broken:
                raise _refuse_broken_rules(con, seg, prepared.current_sql, rules)
        counts = dict(con.execute(f"select kind, count(*) from {rp} group by kind").fetchall())
        plan.rows = rows
        plan.entered, plan.changed, plan.exited = counts.get("e", 0), counts.get("c", 0), counts.get("x", 0)
        plan.resent, plan.resent_exits = counts.get("r", 0), counts.get("q", 0)
        plan.dirty = con.execute("select count(*) from _dirty").fetchall()[0][0]
        plan.unchanged = rows - plan.entered - plan.changed - plan.resent
        if seg.exit_values:
            plan.exit_rows = plan.exited + plan.resent_exits
        if prepared.previous is not None and rows - plan.entered + plan.exited != plan.previous_rows:
            raise SegmentRefused(
                f"{seg.name}: the committed snapshot holds {plan.previous_rows:,} members, the diff in Athena matched "
                f"{rows - plan.entered + plan.exited:,}; nothing was sent (restore the snapshot, or delete its "
                "pointer to send the whole segment again)"
            )

    # ------------------------------------------------------- what the run sends
    def changes_sql(self, segment: PreparedSegment) -> str:
        """The rows to send, in the header order of the segment's fields: as ``sync.run.diff.changes_sql``."""
        prepared = _lake(segment)
        upserts = _sent_values(prepared.segment, prepared.sent, SENDS)
        if not prepared.plan.exit_rows:
            return upserts
        seg = prepared.segment
        exit_cols = ", ".join(
            f"id as {qi(f)}" if f == ID_FIELD else f"{ql(seg.exit_values[f])} as {qi(f)}" for f in seg.fields
        )
        return f"{upserts}\nunion all\nselect {exit_cols} from {_rp(prepared.sent)} where kind in ({_kinds(EXITS)})"

    def sent_ids_sql(self, segment: PreparedSegment) -> str:
        """The Ids a delivery of ``changes_sql`` carries (for the in-doubt record)."""
        prepared = _lake(segment)
        kinds = SENDS + (EXITS if prepared.plan.exit_rows else ())
        return f"select id as Id from {_rp(prepared.sent)} where kind in ({_kinds(kinds)})"

    def as_last_delivered(self, con: duckdb.DuckDBPyConnection, segment: PreparedSegment, dirty: Path | None) -> Plan:
        """The plan as the size guard sees it (``SyncRun._as_last_delivered``): quarantined rows the snapshot
        does not hold count as members before, not as entering. The classification says which: entered ('e')
        or a dirty leaver the snapshot never held ('q')."""
        prepared = _lake(segment)
        plan = prepared.plan
        if dirty is None or prepared.previous is None:
            return plan
        held, now = con.execute(
            f"select count(*) filter (where s.kind in ('e', 'q')), count(*) filter (where s.kind = 'e') "
            f"from _quarantined q join {_rp(prepared.sent)} s on s.id = q.Id"
        ).fetchall()[0]
        return replace(plan, previous_rows=plan.previous_rows + held, entered=max(0, plan.entered - now))

    # ------------------------------------------------------------------ commit
    def commit(
        self,
        con: duckdb.DuckDBPyConnection,
        segment: PreparedSegment,
        kept_back: frozenset[str],
        quarantine: tuple[QuarantinedRow, ...],
    ) -> None:
        """Commit what the destination took: rows in ``kept_back`` (rejected, suspect) keep their previous state."""
        prepared = _lake(segment)
        seg, plan, rp = prepared.segment, prepared.plan, _rp(prepared.sent)
        con.execute("create or replace temp table _kept_back (id varchar)")
        if kept_back:
            con.execute("insert into _kept_back select unnest($1::varchar[])", [sorted(kept_back)])
        taken = "id not in (select id from _kept_back)"
        common: dict[str, Any] = {
            "fields": seg.fields,
            "mapping_hash": prepared.mapping_hash,
            "run_id": self.run_id,
            "quarantine": quarantine,
        }
        if plan.full_refresh or prepared.previous is None:
            base = prepared.workdir / "lake-base.parquet"
            con.execute(
                f"copy (select id as Id, k1, k2, digest from {rp} where kind in ({_kinds(SENDS)}) and {taken}) "
                f"to {ql(str(base))} (format parquet)"
            )
            rows = con.execute(f"select count(*) from {_rp(base)}").fetchall()[0][0]
            self.state.commit_snapshot(self.destination_key, seg.name, base, rows=rows, **common)
            return
        delta = prepared.workdir / "lake-delta.parquet"
        con.execute(
            f"copy (select id as Id, k1, k2, digest, kind = 'x' as deleted from {rp} "
            f"where kind in ('e', 'c', 'x') and {taken}) to {ql(str(delta))} (format parquet)"
        )
        entered, exited = con.execute(
            f"select count(*) filter (where kind = 'e'), count(*) filter (where kind = 'x') from {rp} where {taken}"
        ).fetchall()[0]
        previous = prepared.previous

        def compact(location: str, files: list[str]) -> None:
            self._compact(prepared, location, files[: len(previous.base)], files[len(previous.base) :])

        self.state.commit_lake_delta(
            self.destination_key,
            seg.name,
            delta,
            previous=previous,
            rows=previous.rows + entered - exited,
            compact=compact,
            **common,
        )

    def _compact(self, prepared: LakePrepared, location: str, base: list[str], deltas: list[str]) -> None:
        """Athena writes the membership over ``base`` and ``deltas`` (the new one included) at ``location``."""
        rel = sql.previous_sql(prepared.snapshot_table, base, [[d] for d in deltas], True, prepared.base_table)
        select = classify.to_engine(f"select Id, k1, k2, digest from {rel} m", "athena")
        self.queries.unload_to(select, location, prepared.database)

    # ----------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Drop the run's Glue tables and scratch files (best effort: the next run drops what is left)."""
        for tables in self._tables.values():
            tables.drop()
        for segment in sorted(self._segments):
            with contextlib.suppress(Exception):
                self.state.drop_scratch(self.destination_key, segment, only=self.run_id)


def _lake(prepared: PreparedSegment) -> LakePrepared:
    """The segment as the diff in Athena prepared it (a run keeps each segment with the diff that prepared it)."""
    if not isinstance(prepared, LakePrepared):
        raise TypeError(f"{prepared.segment.name} was diffed on the runner, not in Athena")
    return prepared


def _plan_previous(plan: Plan, previous: PointedSnapshot | None, mapping_hash: str, full_refresh: bool) -> bool:
    """Whether the committed snapshot is this scheme's (its keys and digests are compared); says in ``plan``
    whether, and why, every member is sent."""
    if previous is None:
        plan.first_sync = plan.full_refresh = True
        plan.full_refresh_reason = "first sync"
        return True
    plan.previous_rows = previous.rows
    if previous.mapping_hash != mapping_hash:
        plan.full_refresh = True
        plan.full_refresh_reason = _full_send_reason(previous.mapping_hash, mapping_hash)
        return False
    if full_refresh:
        plan.full_refresh_reason = "--full-refresh"
    return True


def _sent_values(segment: Segment, sent: Path, kinds) -> str:
    """A select of the rows of ``kinds`` in ``sent`` with the segment's field names, values as text (as the
    DuckDB diff reads them; the Id's column holds the Id as typed, so its text is the Id)."""
    cols = ", ".join(f"cast(c{n} as varchar) as {qi(f)}" for n, f in enumerate(segment.fields))
    return f"select {cols} from {_rp(sent)} where kind in ({_kinds(kinds)})"
