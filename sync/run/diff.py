"""The diff engine: what changed in a segment since the last committed snapshot.

Everything runs inside DuckDB, which spills to disk under its memory limit, so
a 10M-row segment needs neither Python loops nor the whole table in memory.

A snapshot holds one row per member endpoint: its ``Id`` and a 64-bit digest
of its exported values. That is all the diff needs (entered / changed / exited
/ unchanged), and it keeps attribute values -- personal data -- out of the
state store. The digest is keyed (see ``digest_key.py``): without the key, a
snapshot's digests cannot be matched against guessed values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from sync.core.errors import SegmentRefused
from sync.core.fields import ID_FIELD
from sync.core.sql import qi, ql
from sync.dbt.check import ValueRule, value_rules
from sync.dbt.contract import Segment
from sync.run import classify
from sync.state.base import Snapshot
from sync.state.deltas import DELETED

SNAPSHOT_ID = "Id"
# The hash-signature part of a mapping hash the diff in Athena writes (``sync.run.pushdown.sql.SIGNATURE``).
LAKE_SIGNATURE = "athena"
SNAPSHOT_DIGEST = "digest"
# Destinations whose data expires (Customer Profiles upload jobs) keep, per member, when the
# platform last confirmed it (UTC): members confirmed before a cutoff are sent again.
SNAPSHOT_CONFIRMED = "confirmed_at"
# Ids are matched on a 128-bit key (two 64-bit hashes of the Id) stored in the
# snapshot: joining two 10M-row snapshots on integers is several times faster
# than on strings, and carrying the strings through the join is slower still.
# k2 hashes the Id's bytes with a suffix. (Before key scheme "k2v2" it was
# hash(Id, salt), which DuckDB computes by combining hash(Id) -- that is, k1 --
# with the salt's hash: a function of k1, so the key held only 64 bits.)
KEY_COLUMNS = ("k1", "k2")
KEY_SALT = "lakeseg"
KEY_SCHEME = "k2v2"
# Parquet settings for snapshots: Ids are unique and their hashes random, so
# neither dictionary encoding nor a codec shrinks them (measured: lz4 made a
# 10M-row snapshot larger, zstd halved it at 1.7x the write time); both only
# cost time.
SNAPSHOT_FORMAT = "format parquet, compression uncompressed, dictionary_size_limit 1"


def k2_sql(id_expr: str) -> str:
    """The key's second half: a hash of other bytes than k1's, so not a function of k1."""
    return f"hash({id_expr} || chr(0) || {ql(KEY_SALT)})"


def key_sql(id_expr: str) -> str:
    return f"hash({id_expr}) as k1, {k2_sql(id_expr)} as k2"


DIGEST_KEY_VARIABLE = "lakeseg_digest_key"
# The value digest's construction, recorded in every snapshot's mapping hash:
# a snapshot written with another construction is answered with a full send.
# d2: MD5 over a derived 128-bit subkey and DuckDB's hash of the values (see digest_sql): equal values gave
# equal digests, so a reader of the store saw which members share a value.
# d3: the same, over DuckDB's hash of the Id and the values: every member's digest is its own.
DIGEST_SCHEME = "d3"


def digest_subkey(secret: str) -> str:
    """The 128-bit subkey (32 hex characters) that keys the value digest, derived from the secret.

    32 characters keep the MD5 input (subkey, a separator, at most 20 digits)
    within one 64-byte block: half the work of a longer key, per row.
    """
    return hashlib.sha256(b"lakeseg value digest subkey\0" + secret.encode("utf-8")).hexdigest()[:32]


def digest_sql(fields: tuple[str, ...], alias: str = "", keyed: bool = False) -> str:
    """SQL for the 64-bit digest of a row's exported values, bound to its Id.

    Keyed (scheme d3): ``H = hash(Id, v1, ..., vn)``, DuckDB's positional
    64-bit hash of the Id and the values (NULL hashes apart from ''), then MD5
    over the subkey (a DuckDB session variable, so it never appears in SQL
    text), a NUL and H in decimal; the digest is the upper 64 bits of
    ``md5_number``. H is never stored, so a reader of the state store who
    guesses values can compute H but not the MD5 over the secret subkey: no
    dictionary attack without the key. (DuckDB's hash alone, even with the key
    hashed in, would not do: its combine steps are invertible, so one right
    guess would give away the key's contribution.) One MD5 block per row: the
    subkey, a NUL and at most 20 digits.

    The Id in H makes each member's digest its own: two members with equal
    values get unrelated digests, so the store does not even show which
    members share a value (scheme d2 hashed the values alone: a three-value
    segment showed three digests, and group sizes matched against public name
    frequencies recovered names). A change of value still changes the digest,
    which is all the diff compares: a member's digest is only ever compared
    with its own previous one.

    Unkeyed: DuckDB's positional ``hash`` of the Id and the values. DuckDB's
    hash is not guaranteed stable across releases, so ``hash_signature`` goes
    into every segment's mapping hash: after an upgrade that changes it, the
    next sync is a full send and Ids are re-keyed, never misread as exits.
    """
    prefix = f"{alias}." if alias else ""
    values = [f"{prefix}{qi(f)}" for f in fields if f != ID_FIELD]
    if not values:
        return "cast(0 as ubigint)"  # no values, nothing to tell apart or to give away
    cols = ", ".join([f"{prefix}{qi(ID_FIELD)}", *values])
    if keyed:
        return f"(md5_number(getvariable('{DIGEST_KEY_VARIABLE}') || chr(0) || hash({cols})::varchar) >> 64)::ubigint"
    return f"hash({cols})"


def hash_signature(con: duckdb.DuckDBPyConnection) -> str:
    """Fingerprint of DuckDB's hash function, recorded with each snapshot."""
    return str(con.execute(f"select hash({ql(KEY_SALT)}, 'sig', cast(null as varchar), '')").fetchall()[0][0])


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
    dirty: int = 0  # ids in doubt or quarantined, resent whatever the snapshot says
    resent: int = 0  # of those, current members sent again though unchanged since the snapshot
    resent_exits: int = 0  # of those, ids that left and were never in the snapshot: exit rows
    refresh: int = 0  # unchanged members sent again because their last confirmation is about to expire
    full_refresh: bool = False
    full_refresh_reason: str = ""
    first_sync: bool = False

    @property
    def to_send(self) -> int:
        sent = self.rows if self.full_refresh else self.entered + self.changed + self.resent + self.refresh
        return sent + self.exit_rows

    def as_dict(self) -> dict:
        return {**asdict(self), "to_send": self.to_send}


@dataclass
class PreparedSegment:
    """A planned segment with its new snapshot written, ready to export."""

    segment: Segment
    plan: Plan
    current_sql: str  # relation yielding the current rows, Pinpoint field names
    new_snapshot: Path  # Parquet: Id, k1, k2, digest
    previous_snapshot: Path | None
    workdir: Path
    mapping_hash: str  # the segment's mapping hash plus DuckDB's hash signature
    previous_sql: str = ""  # relation over the previous snapshot, keys as this run computes them
    tracks_confirmation: bool = False  # snapshots carry confirmed_at (see Expiry)
    delta_rows: Path | None = None  # the change from the previous snapshot (save_delta_rows), for the state store


def configure(con: duckdb.DuckDBPyConnection, memory_limit: str, temp_directory: Path) -> None:
    """The DuckDB settings a sync runs the diff with (the engine's and the benchmark's).

    Past ``memory_limit`` DuckDB spills to ``temp_directory``; rows need not
    keep their order (the import files have none to keep), which lets every
    pass run on all threads.
    """
    con.execute(f"set memory_limit = {ql(memory_limit)}")
    con.execute(f"set temp_directory = {ql(str(temp_directory))}")
    con.execute("set preserve_insertion_order = false")


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def _parquet(path: Path) -> str:
    return f"read_parquet({ql(str(path))})"


def effective_mapping_hash(con: duckdb.DuckDBPyConnection, segment: Segment, key_fingerprint: str = "") -> str:
    """The segment's mapping hash, DuckDB's hash signature, the digest key's fingerprint, the digest scheme
    and the key scheme."""
    return f"{segment.mapping_hash}-{hash_signature(con)}-{key_fingerprint or 'unkeyed'}-{DIGEST_SCHEME}-{KEY_SCHEME}"


def _only_keys_differ(previous_hash: str, current_hash: str) -> bool:
    """True when a snapshot differs from now only in how Ids are keyed: re-key it, send nothing more."""
    return previous_hash.split("-")[:4] == current_hash.split("-")[:4]


def _engines_differ(previous_hash: str, current_hash: str) -> bool:
    """True when one snapshot was diffed on the runner (DuckDB) and the other in Athena (``diff.engine``).

    Their keys and digests come from different functions (DuckDB's unsigned ``hash``; Trino's signed
    ``xxhash64`` and ``hmac_sha256``, ``sync.run.pushdown.sql``), so neither engine reads the other's keys or
    digests: only its Ids, re-keyed, for the exits; every current member is sent once.
    """
    old, new = previous_hash.split("-"), current_hash.split("-")
    return len(old) >= 2 and len(new) >= 2 and (old[1] == LAKE_SIGNATURE) != (new[1] == LAKE_SIGNATURE)


def _full_send_reason(previous_hash: str, current_hash: str) -> str:
    old, new = previous_hash.split("-"), current_hash.split("-")
    if old[:1] == new[:1] and _engines_differ(previous_hash, current_hash):
        return (
            "the diff moved between the runner (DuckDB) and Athena (diff.engine): their snapshots are keyed and "
            "digested differently, so every member is sent again, once"
        )
    if len(old) >= 3 and old[:3] == new[:3]:
        return "the value digest's construction changed (a lakeseg upgrade): every member is sent again"
    if len(old) >= 3 and old[:2] == new[:2]:
        return "the digest key changed (digest_key): every member is sent again"
    if old[:1] == new[:1] and len(old) >= 2 and old[1] != new[1]:
        return "DuckDB's hash function changed (an upgrade): every member is sent again"
    return "field mapping or exit values changed since the last sync"


# The contract's control characters, as the pinpoint_no_control_chars test spells them (RE2).
_CONTROL_CHARS_RE2 = r"[\x00-\x1F\x7F-\x9F\x{2028}\x{2029}]"
_BROKEN_RULE = re.compile(r"lakeseg-value-rule-broken\b")


def rule_sql(rule: ValueRule) -> str:
    """True for a value that breaks ``rule`` (values are text here, as the tests cast them)."""
    v = qi(rule.field)
    if rule.kind == "max_length":
        # strlen (bytes, stored with the string) is never below length (characters, counted): it screens.
        return f"(strlen({v}) > {int(rule.limit)} and length({v}) > {int(rule.limit)})"
    if rule.kind == "no_control_chars":
        return f"regexp_matches({v}, {ql(_CONTROL_CHARS_RE2)})"
    if rule.kind == "numeric":
        return f"({v} is not null and try_cast({v} as double) is null)"
    if rule.kind == "accepted_values":
        return f"({v} is not null and {v} not in ({', '.join(ql(a) for a in rule.values)}))"
    raise ValueError(f"unknown value rule kind {rule.kind!r}")


def checked_id_sql(rules: list[ValueRule]) -> str:
    """The Id column, or an error when a row breaks any rule: the contract checked in the pass that reads the
    segment, at the cost of the conditions alone (no second read, no extra column). Which rules, in which
    columns, is counted only on refusal (``_refuse_broken_rules``).

    The control-character rule runs one regular expression over the row's values concatenated (a character
    is in one of them exactly when it is in their concatenation; NULL adds nothing): measured at 1M rows of
    five columns, 250 ms of CPU where one match per column took 350 ms.
    """
    if not rules:
        return qi(ID_FIELD)
    conditions = [rule_sql(r) for r in rules if r.kind != "no_control_chars"]
    control = [qi(r.field) for r in rules if r.kind == "no_control_chars"]
    if control:
        conditions.append(f"regexp_matches(concat({', '.join(control)}), {ql(_CONTROL_CHARS_RE2)})")
    return f"case when {' or '.join(conditions)} then error('lakeseg-value-rule-broken') else {qi(ID_FIELD)} end"


def _refuse_broken_rules(
    con: duckdb.DuckDBPyConnection, segment: Segment, current_sql: str, rules: list[ValueRule]
) -> SegmentRefused:
    """The refusal when values break the contract: each broken rule with its column and row count, no value."""
    counts = _one(con, f"select {', '.join(f'count_if({rule_sql(r)})' for r in rules)} from {current_sql}")
    broken = "; ".join(
        f"column {r.column} ({r.field}) breaks {r.rule} in {n:,} row(s)" for r, n in zip(rules, counts) if n
    )
    return SegmentRefused(
        f"{segment.name}: {broken or 'a value breaks the contract'} -- the table changed after "
        "its dbt tests passed (rebuild it with `dbt build`); nothing was sent"
    )


def prepare(
    con: duckdb.DuckDBPyConnection,
    segment: Segment,
    source_sql: str,
    *,
    previous: Snapshot | None,
    workdir: Path,
    full_refresh: bool = False,
    dirty: Path | None = None,
    digest_key=None,
    expiry: Expiry | None = None,
    tests: list[dict] | None = None,
) -> PreparedSegment:
    """Read the segment once into a new snapshot and classify every member.

    ``source_sql`` is a relation (from a reader) with the segment's declared
    columns; ``previous`` is a ``sync.state.Snapshot`` or None; ``dirty`` is a
    Parquet file of Ids whose state at the destination is unknown (an
    unconfirmed delivery, quarantined rows): each is sent again -- its current
    values, or an exit row if it left -- whatever the snapshot says. Leaves a
    temp table ``_delta(k1, k2, kind)`` of entered ('e'), changed ('c'),
    exited ('x'), dirty members resent ('r') and dirty leavers absent from the
    snapshot ('q') for ``changes_sql``, and ``_dirty(Id, k1, k2)``.

    The pass that reads the segment also checks every value against the
    contract's data rules (``value_rules``: Pinpoint's, with the stricter
    settings of the tests attached to the model, ``tests``): a table changed
    after its tests passed is refused naming the model, column and rule --
    never the value -- and nothing is sent.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    new_snapshot = workdir / "snapshot.parquet"
    current_sql, rows = _write_snapshot(con, segment, source_sql, new_snapshot, digest_key, tests)
    mapping_hash = effective_mapping_hash(con, segment, digest_key.fingerprint if digest_key is not None else "")
    plan = Plan(segment=segment.name, rows=rows, full_refresh=full_refresh)
    prev_path = Path(previous.path) if previous is not None else None
    prev_rel = _previous_relation(plan, previous, mapping_hash, full_refresh)
    _count_changes(con, segment, plan, new_snapshot, prev_rel, previous)
    _add_dirty(con, plan, new_snapshot, prev_rel, dirty)
    if segment.exit_values:
        plan.exit_rows = plan.exited + plan.resent_exits
    if expiry is not None:
        # A full send stamps every member now, so the previous stamps matter only to an incremental run.
        prev_confirmed = prev_rel if previous is not None and previous.confirmed else None
        new_snapshot = _stamp(con, plan, new_snapshot, prev_rel, prev_confirmed, expiry, workdir)
    return PreparedSegment(
        segment,
        plan,
        current_sql,
        new_snapshot,
        prev_path,
        workdir,
        mapping_hash,
        prev_rel,
        tracks_confirmation=expiry is not None,
    )


def _write_snapshot(
    con: duckdb.DuckDBPyConnection, segment: Segment, source_sql: str, new_snapshot: Path, digest_key, tests
) -> tuple[str, int]:
    """Read the segment once into ``new_snapshot`` (Id, keys, digest), checking its values against the contract
    on the way; returns the relation of its current rows (Pinpoint field names) and its row count."""
    renamed = ", ".join(f"cast({qi(m.column)} as varchar) as {qi(m.field)}" for m in segment.mappings)
    current_sql = f"(select {renamed} from {source_sql})"
    if digest_key is not None:
        con.execute(f"set variable {DIGEST_KEY_VARIABLE} = ?", [digest_subkey(digest_key.secret)])
    rules = value_rules(segment, list(tests or ()))
    try:
        con.execute(
            f"copy (select {checked_id_sql(rules)} as {SNAPSHOT_ID}, {key_sql(qi(ID_FIELD))}, "
            f"{digest_sql(segment.fields, keyed=digest_key is not None)} as {SNAPSHOT_DIGEST} from {current_sql}) "
            f"to {ql(str(new_snapshot))} ({SNAPSHOT_FORMAT})"
        )
    except duckdb.Error as exc:
        if not _BROKEN_RULE.search(str(exc)):
            raise
        raise _refuse_broken_rules(con, segment, current_sql, rules) from None
    rows, null_ids = _one(con, f"select count(*), count(*) - count({SNAPSHOT_ID}) from {_parquet(new_snapshot)}")
    if null_ids:
        raise SegmentRefused(f"{segment.name}: {null_ids} row(s) have a null Id (rule: not_null); nothing was sent")
    return current_sql, rows


def _previous_relation(plan: Plan, previous: Snapshot | None, mapping_hash: str, full_refresh: bool) -> str:
    """The relation of the previous snapshot (an empty one on a first sync), keyed as this run keys Ids; says in
    ``plan`` whether, and why, every member is sent."""
    if previous is None:
        plan.first_sync = plan.full_refresh = True
        plan.full_refresh_reason = "first sync"
        prev_rel = (
            f"(select cast(null as varchar) as {SNAPSHOT_ID}, 0::ubigint as k1, 0::ubigint as k2, "
            f"0::ubigint as {SNAPSHOT_DIGEST} where false)"
        )
    else:
        plan.previous_rows = previous.rows
        prev_rel = _parquet(Path(previous.path))
        rekey = previous.mapping_hash != mapping_hash
        if rekey and not _only_keys_differ(previous.mapping_hash, mapping_hash):
            plan.full_refresh = True
            plan.full_refresh_reason = _full_send_reason(previous.mapping_hash, mapping_hash)
        elif full_refresh:
            plan.full_refresh_reason = "--full-refresh"
        if rekey:
            # Keys may come from another hash function or key scheme: derive them afresh.
            confirmed = f", {SNAPSHOT_CONFIRMED}" if previous.confirmed else ""
            # Another engine's digest (signed, another function) is never compared: only its Ids are read.
            digest = (
                f"cast(null as ubigint) as {SNAPSHOT_DIGEST}"
                if _engines_differ(previous.mapping_hash, mapping_hash)
                else SNAPSHOT_DIGEST
            )
            prev_rel = f"(select {SNAPSHOT_ID}, {key_sql(SNAPSHOT_ID)}, {digest}{confirmed} from {prev_rel})"
    return prev_rel


def _count_changes(
    con: duckdb.DuckDBPyConnection,
    segment: Segment,
    plan: Plan,
    new_snapshot: Path,
    prev_rel: str,
    previous: Snapshot | None,
) -> None:
    """Classify every member into ``_delta`` and count them in ``plan``; refuse a segment with duplicate Ids."""
    rows = plan.rows
    _classify(con, new_snapshot, prev_rel)
    counts = dict(con.execute("select kind, count(*) from _delta group by kind").fetchall())
    plan.entered, plan.changed, plan.exited = counts.get("e", 0), counts.get("c", 0), counts.get("x", 0)
    plan.unchanged = rows - plan.entered - plan.changed
    # Duplicate Ids show up either twice in the (small) delta, or as more
    # matches than the previous snapshot had members.
    repeated = _one(con, "select count(*) - count(distinct (k1, k2)) from _delta")[0]
    matched = plan.unchanged + plan.changed + plan.exited
    if plan.unchanged < 0 or repeated or (previous is not None and matched != plan.previous_rows):
        # Only on refusal: count the distinct Ids, for a message that adds up.
        distinct = _one(con, f"select count(distinct {SNAPSHOT_ID}) from {_parquet(new_snapshot)}")[0]
        raise SegmentRefused(
            f"{segment.name}: duplicate Id values (rule: unique) -- {rows - distinct:,} of {rows:,} rows repeat "
            f"an Id ({distinct:,} distinct); nothing was sent"
        )


def _classify(con: duckdb.DuckDBPyConnection, new_snapshot: Path, prev_rel: str) -> None:
    """Fill ``_delta`` with the entered ('e'), changed ('c') and exited ('x') members.

    One full outer join of the new and previous snapshots' keys and digests.
    Past DuckDB's memory limit (a 10M-member join needs about 730 MB) it
    spills. Splitting it into ranges of k1 that each fit in memory was
    measured (issue 14: 5 ranges at 10M and 256 MB) and was no faster in the
    whole sync: reading both snapshots once per range cost what spilling did.
    """
    con.execute(f"create or replace temp table _delta as {classify.changed_sql(_parquet(new_snapshot), prev_rel)}")


@dataclass(frozen=True)
class Expiry:
    """For destinations whose data expires: now, and the cutoff before which a confirmation is due again."""

    now: datetime  # UTC; stamped on every member this delivery sends
    due_before: datetime  # members last confirmed at or before this (or never) are sent again


_ts = classify.timestamp_sql


def _stamp(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    new_snapshot: Path,
    prev_rel: str,
    prev_confirmed: str | None,
    expiry: Expiry,
    workdir: Path,
) -> Path:
    """Mark members due for a refresh ('f' in _delta) and write the snapshot with each member's confirmed_at.

    A member sent now is stamped ``expiry.now``; an unchanged member keeps its
    previous stamp. A previous snapshot without stamps makes every member due.
    """
    confirmed = (
        f"(select k1, k2, {SNAPSHOT_CONFIRMED} from {prev_confirmed})"
        if prev_confirmed
        else f"(select k1, k2, cast(null as timestamp) as {SNAPSHOT_CONFIRMED} from {prev_rel})"
    )
    if not plan.full_refresh:
        con.execute(
            f"insert into _delta {classify.due_sql(_parquet(new_snapshot), confirmed, '_delta', expiry.due_before)}"
        )
        plan.refresh = _one(con, "select count(*) from _delta where kind = 'f'")[0]
        plan.unchanged -= plan.refresh
    out = workdir / "snapshot-confirmed.parquet"
    sent = (
        "true"
        if plan.full_refresh
        else "exists (select 1 from _delta d where d.k1 = s.k1 and d.k2 = s.k2 and d.kind in ('e', 'c', 'r', 'f'))"
    )
    con.execute(
        f"""
        copy (
          select s.{SNAPSHOT_ID}, s.k1, s.k2, s.{SNAPSHOT_DIGEST},
                 case when {sent} then {_ts(expiry.now)} else p.{SNAPSHOT_CONFIRMED} end as {SNAPSHOT_CONFIRMED}
          from {_parquet(new_snapshot)} s
          left join {confirmed} p on p.k1 = s.k1 and p.k2 = s.k2
        ) to {ql(str(out))} ({SNAPSHOT_FORMAT})
        """
    )
    return out


def _add_dirty(
    con: duckdb.DuckDBPyConnection, plan: Plan, new_snapshot: Path, prev_rel: str, dirty: Path | None
) -> None:
    """Mark ids in doubt as to-send: members as 'r', leavers the snapshot does not know as 'q'."""
    source = (
        f"(select distinct {SNAPSHOT_ID} from {_parquet(dirty)} where {SNAPSHOT_ID} is not null)"
        if dirty is not None
        else f"(select cast(null as varchar) as {SNAPSHOT_ID} where false)"
    )
    con.execute(f"create or replace temp table _dirty as select {SNAPSHOT_ID}, {key_sql(SNAPSHOT_ID)} from {source}")
    plan.dirty = _one(con, "select count(*) from _dirty")[0]
    if not plan.dirty:
        return
    con.execute(f"insert into _delta {classify.dirty_sql(_parquet(new_snapshot), prev_rel, '_dirty', '_delta')}")
    counts = dict(con.execute("select kind, count(*) from _delta where kind in ('r', 'q') group by kind").fetchall())
    plan.resent, plan.resent_exits = counts.get("r", 0), counts.get("q", 0)
    plan.unchanged -= plan.resent


def _k2_matches(a: str, b: str) -> str:
    """k2 equality as a condition the hash join checks on k1's matches only.

    Written as ``a = b``, DuckDB makes it a second hash key: every probed row
    then pays a second hash of its Id (the segment's) or a wider key (the
    previous snapshot's), for the 1-in-2^64 chance that k1 alone is wrong.
    """
    return f"xor({a}, {b}) = 0"


def changes_sql(prepared: PreparedSegment) -> str:
    """The rows to send, in the header order of the segment's fields."""
    seg, plan = prepared.segment, prepared.plan
    cols = ", ".join(qi(f) for f in seg.fields)
    if plan.full_refresh:
        upserts = f"select {cols} from {prepared.current_sql}"
    else:
        # Join on k1 alone and check k2 on the few matches: one hash per row, not two.
        upserts = (
            f"select {', '.join('c.' + qi(f) for f in seg.fields)} from {prepared.current_sql} c "
            f"join (select k1, k2 from _delta where kind in ('e', 'c', 'r', 'f')) d on d.k1 = hash(c.{qi(ID_FIELD)}) "
            f"and {_k2_matches(k2_sql('c.' + qi(ID_FIELD)), 'd.k2')}"
        )
    if not plan.exit_rows:
        return upserts
    exit_values = seg.exit_values
    exit_cols = ", ".join(
        f"p.{SNAPSHOT_ID} as {qi(f)}" if f == ID_FIELD else f"{ql(exit_values[f])} as {qi(f)}" for f in seg.fields
    )
    exits = (
        f"select {exit_cols} from {prepared.previous_sql} p "
        f"semi join (select k1, k2 from _delta where kind = 'x') d on d.k1 = p.k1 and {_k2_matches('p.k2', 'd.k2')}"
    )
    if plan.resent_exits:
        exits += (
            f"\nunion all\nselect {exit_cols} from _dirty p "
            f"semi join (select k1, k2 from _delta where kind = 'q') d on d.k1 = p.k1 and d.k2 = p.k2"
        )
    return f"{upserts}\nunion all\n{exits}"


def sent_ids_sql(prepared: PreparedSegment) -> str:
    """The Ids a delivery of ``changes_sql`` carries (for the in-doubt record), without reading the source."""
    plan = prepared.plan
    members = (
        f"select {SNAPSHOT_ID} from {_parquet(prepared.new_snapshot)}"
        if plan.full_refresh
        else f"select s.{SNAPSHOT_ID} from {_parquet(prepared.new_snapshot)} s "
        f"semi join (select k1, k2 from _delta where kind in ('e', 'c', 'r', 'f')) d on d.k1 = s.k1 "
        f"and {_k2_matches('d.k2', 's.k2')}"
    )
    if not plan.exit_rows:
        return members
    return (
        f"{members}\nunion all\nselect p.{SNAPSHOT_ID} from {prepared.previous_sql} p "
        f"semi join (select k1, k2 from _delta where kind = 'x') d on d.k1 = p.k1 and {_k2_matches('p.k2', 'd.k2')}"
        f"\nunion all\nselect p.{SNAPSHOT_ID} from _dirty p "
        f"semi join (select k1, k2 from _delta where kind = 'q') d on d.k1 = p.k1 and d.k2 = p.k2"
    )


def _columns(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    return {r[0] for r in con.execute(f"describe select * from {_parquet(path)}").fetchall()}


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
    # A rejected member keeps its previous row -- and its previous confirmation time, if any.
    confirmed = ""
    if (
        prepared.tracks_confirmation
        and prepared.previous_snapshot
        and SNAPSHOT_CONFIRMED in _columns(con, prepared.previous_snapshot)
    ):
        confirmed = f", {SNAPSHOT_CONFIRMED}"
    # The previous row's digest as this scheme stores it: a snapshot the diff in Athena wrote has signed
    # digests (BIGINT), which would widen the column; another engine's digest never matches, so NULL is as good.
    keep_previous = (
        f"union all by name select {SNAPSHOT_ID}, {key_sql(SNAPSHOT_ID)}, "
        f"try_cast({SNAPSHOT_DIGEST} as ubigint) as {SNAPSHOT_DIGEST}{confirmed} "
        f"from {_parquet(prepared.previous_snapshot)} where {SNAPSHOT_ID} in (select id from _rejected)"
        if prepared.previous_snapshot
        else ""
    )
    con.execute(
        f"copy (select * from {_parquet(prepared.new_snapshot)} "
        f"where {SNAPSHOT_ID} not in (select id from _rejected) {keep_previous}) "
        f"to {ql(str(out))} ({SNAPSHOT_FORMAT})"
    )
    return out


def save_delta_rows(con: duckdb.DuckDBPyConnection, prepared: PreparedSegment) -> None:
    """Write the rows that take the previous snapshot to the new one, from ``_delta``, while it is this segment's.

    Call it on the connection ``prepare`` ran on, before another segment's
    ``prepare`` replaces ``_delta`` (a delivery commits later, on a cursor of
    its own that has no ``_delta``); ``delta_to_commit`` takes them from
    ``prepared.delta_rows``. The classification already names every member
    whose row changes: entered and changed members are upserts (their new
    rows), and so are the resent and refreshed ones where the snapshot keeps
    confirmation times (they are stamped now); exited members are tombstones.
    A full send that stamps every member upserts them all. Only the rows named
    are read from the snapshots: a scan of the new snapshot, not a join of two
    memberships (``sync.state.deltas``). Nothing on a first sync.
    """
    if prepared.previous_snapshot is None:
        return
    path = prepared.new_snapshot
    columns = [c for c in (SNAPSHOT_ID, "k1", "k2", SNAPSHOT_DIGEST, SNAPSHOT_CONFIRMED) if c in _columns(con, path)]
    kinds = classify.SENT_KINDS if prepared.tracks_confirmation else ("e", "c")
    named = ", ".join(f"s.{c}" for c in columns)
    upserts = (
        f"select {named}, false as {DELETED} from {_parquet(path)} s"
        if prepared.plan.full_refresh and prepared.tracks_confirmation
        else f"select {named}, false as {DELETED} from {_parquet(path)} s "
        f"semi join (select k1, k2 from _delta where kind in ({', '.join(ql(k) for k in kinds)})) d "
        f"on d.k1 = s.k1 and {_k2_matches('d.k2', 's.k2')}"
    )
    gone = ", ".join(f"p.{c}" if c in (SNAPSHOT_ID, "k1", "k2") else f"null as {c}" for c in columns)
    tombstones = (
        f"select {gone}, true as {DELETED} from {prepared.previous_sql} p "
        f"semi join (select k1, k2 from _delta where kind = 'x') d on d.k1 = p.k1 and {_k2_matches('p.k2', 'd.k2')}"
    )
    out = prepared.workdir / "snapshot-delta-rows.parquet"
    con.execute(f"copy ({upserts}\nunion all\n{tombstones}) to {ql(str(out))} ({SNAPSHOT_FORMAT})")
    prepared.delta_rows = out


def delta_to_commit(
    con: duckdb.DuckDBPyConnection, prepared: PreparedSegment, rejected_ids: frozenset[str]
) -> Path | None:
    """The change from the previous snapshot to ``snapshot_to_commit``'s: ``save_delta_rows``'s rows without the
    rejected and suspect Ids (they keep their previous row, or stay absent). None when none were saved: the state
    store then works the delta out itself."""
    if prepared.delta_rows is None or not rejected_ids:
        return prepared.delta_rows
    out = prepared.workdir / "snapshot-delta.parquet"
    con.execute("create or replace temp table _rejected (id varchar)")
    con.executemany("insert into _rejected values (?)", [(i,) for i in sorted(rejected_ids)])
    con.execute(
        f"copy (select * from {_parquet(prepared.delta_rows)} where {SNAPSHOT_ID} not in (select id from _rejected)) "
        f"to {ql(str(out))} ({SNAPSHOT_FORMAT})"
    )
    return out
