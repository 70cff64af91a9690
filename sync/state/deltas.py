"""Snapshots as a base plus deltas: what a commit uploads, and how the current membership is read back.

A committed snapshot (pointer format 2) is a *base* -- one row per member, as
every snapshot was before -- and an ordered list of *deltas*. A delta holds
only what a run changed: an upsert (the member's new row) for each member
that entered or whose row changed, and a tombstone (``deleted``) for each
member that left. The current membership is the latest row per member: the
base's rows that no delta names, plus each named member's row in the newest
delta that names it, unless that row is a tombstone.

Members are matched on their 128-bit key ``(k1, k2)``, not on the ``Id``
string: a base and its deltas are written under one mapping hash (a new key
scheme writes a new base), so a member's key is the same in all of them, and
joining two 64-bit integers is several times cheaper than joining strings
(the diff matches members the same way, ``sync.run.classify``). A run's delta
is usually derived by the diff from its classification (``sync.run.diff.
delta_to_commit``); ``delta_sql`` works it out from two memberships when no
run supplied it.

A commit uploads a delta while the deltas stay small; past a threshold it
*compacts*: the whole new membership is uploaded as a new base and the list of
deltas starts empty (``Compaction``). Either way the pointer moves in one
write, so the store's protocol is unchanged: a crash before the pointer moves
leaves the previous pointer and its files whole.

The SQL is DuckDB's dialect; ``sync.run.classify`` turns it into Athena's
where the lake holds the snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

DELETED = "deleted"  # the delta's tombstone flag
SNAPSHOT_ROW = ("Id", "k1", "k2", "digest")
CONFIRMED = "confirmed_at"
POINTER_FORMAT = 2  # base + deltas; a pointer without "format" names one file (format 1)


@dataclass(frozen=True)
class Compaction:
    """When a commit writes a new base instead of one more delta.

    ``max_share``: the deltas' rows (this one included) reach this share of the
    base's rows. ``max_deltas``: the list would grow beyond this many. Both are
    settings (``snapshots.compact_share``, ``snapshots.max_deltas``).
    """

    max_share: float = 0.2
    max_deltas: int = 8

    @classmethod
    def from_env(cls, max_share: float = 0.2, max_deltas: int = 8) -> Compaction:
        """These thresholds, unless ``LAKESEG_COMPACT_SHARE`` / ``LAKESEG_MAX_DELTAS`` override them (tests, benchmarks)."""
        share = os.environ.get("LAKESEG_COMPACT_SHARE")
        most = os.environ.get("LAKESEG_MAX_DELTAS")
        return cls(float(share) if share else max_share, int(most) if most else max_deltas)

    def compacts(self, base_rows: int, delta_rows: Sequence[int], new_delta_rows: int) -> bool:
        if len(delta_rows) + 1 > self.max_deltas:
            return True
        return sum(delta_rows) + new_delta_rows >= self.max_share * max(base_rows, 1)


def _cols(columns: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{c}" for c in columns)


def _same(a: str, b: str) -> str:
    return f"{a}.k1 = {b}.k1 and {a}.k2 = {b}.k2"


def delta_sql(new: str, previous: str, columns: Sequence[str]) -> str:
    """The rows that take ``previous`` (a membership) to ``new``: upserts, then tombstones (``deleted``).

    Both are relations of ``columns`` (``Id``, ``k1``, ``k2`` first); a
    member's row is an upsert when any of its other columns differs. Only the
    keys and the compared columns take part in the join: the upserts' other
    columns are read again for the few rows that differ.
    """
    compared = [c for c in columns if c not in ("Id", "k1", "k2")]
    differs = " or ".join(f"n.{c} is distinct from p.{c}" for c in compared)
    keys_n = ", ".join(["k1", "k2", *compared])
    changed = (
        f"select n.k1, n.k2 from (select {keys_n} from {new}) n "
        f"left join (select {keys_n} from {previous}) p on {_same('p', 'n')} "
        f"where p.k1 is null{f' or {differs}' if differs else ''}"
    )
    return (
        f"select {_cols(columns, 'n')}, false as {DELETED} from {new} n "
        f"semi join ({changed}) d on {_same('d', 'n')}\n"
        f"union all\n"
        f"select p.Id, {', '.join(f'p.{c}' if c in ('k1', 'k2') else f'null as {c}' for c in columns[1:])}, "
        f"true as {DELETED} from {previous} p "
        f"where not exists (select 1 from (select k1, k2 from {new}) n where {_same('n', 'p')})"
    )


def current_sql(base: str, deltas: Sequence[str], columns: Sequence[str], by: Sequence[str] = ("k1", "k2")) -> str:
    """The current membership: the latest row per member over ``base`` and ``deltas`` (oldest first).

    Members are told apart by ``by``: their key ``(k1, k2)``, or their ``Id`` alone where the keys are another
    scheme's (the diff in Athena reading the runner's snapshot, ``sync.run.pushdown.sql``).
    """
    if not deltas:
        return f"select {_cols(columns)} from {base}"
    stacked = "\nunion all\n".join(
        f"select {_cols(columns)}, {DELETED}, {n} as seq from {d}" for n, d in enumerate(deltas, start=1)
    )
    latest = (
        f"select {_cols(columns)}, {DELETED} from (select *, row_number() over (partition by {_cols(by)} "
        f"order by seq desc) as rn from ({stacked}) s) r where rn = 1"
    )
    same = " and ".join(f"l.{c} = b.{c}" for c in by)
    return (
        f"with latest as ({latest})\n"
        f"select {_cols(columns, 'b')} from {base} b where not exists (select 1 from latest l where {same})\n"
        f"union all\n"
        f"select {_cols(columns)} from latest where not {DELETED}"
    )
