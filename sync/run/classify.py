"""The classification of a segment's members, written once for both engines.

Every member key ``(k1, k2)`` of the current rows (``current``: k1, k2,
digest), the previous snapshot (``previous``: k1, k2, digest, and
``confirmed_at`` for destinations whose data expires) and the ids in doubt or
quarantined (``dirty``: k1, k2) gets at most one kind:

- ``e`` entered: in ``current``, not in ``previous``;
- ``c`` changed: in both, with another digest;
- ``x`` exited: in ``previous``, not in ``current``;
- ``r`` resent: dirty, a current member, not already e or c;
- ``q`` quarantined leaver: dirty, in neither (the snapshot never held it): an exit row;
- ``f`` due for a refresh: unchanged, its last confirmation at or before a cutoff (or never).

Members with no kind are unchanged. The SQL is DuckDB's dialect and portable
(``not exists``, no ``anti join``): DuckDB runs the three parts one after the
other into a table (``sync.run.diff``), Athena runs ``classification_sql`` as
one statement, transpiled by sqlglot (``athena``). What differs per engine is
only how keys and digests are computed (``sync.run.pushdown``).
"""

from __future__ import annotations

from datetime import datetime

import sqlglot

from sync.core import clock
from sync.core.sql import ql

SNAPSHOT_DIGEST = "digest"
SNAPSHOT_CONFIRMED = "confirmed_at"
SENT_KINDS = ("e", "c", "r", "f")  # rows sent with their current values
EXIT_KINDS = ("x", "q")  # exit rows


def _same(a: str, b: str) -> str:
    return f"{a}.k1 = {b}.k1 and {a}.k2 = {b}.k2"


def timestamp_sql(value: datetime) -> str:
    return f"timestamp {ql(clock.as_utc(value).replace(tzinfo=None).isoformat(sep=' '))}"


def changed_sql(current: str, previous: str) -> str:
    """Entered ('e'), changed ('c') and exited ('x'): one full outer join of keys and digests."""
    return f"""
        select coalesce(c.k1, p.k1) as k1, coalesce(c.k2, p.k2) as k2,
               case when p.k1 is null then 'e' when c.k1 is null then 'x' else 'c' end as kind
        from (select k1, k2, {SNAPSHOT_DIGEST} from {current}) c
        full outer join (select k1, k2, {SNAPSHOT_DIGEST} from {previous}) p
          on {_same("c", "p")}
        where c.{SNAPSHOT_DIGEST} is distinct from p.{SNAPSHOT_DIGEST} or c.k1 is null or p.k1 is null
        """


def dirty_sql(current: str, previous: str, dirty: str, classified: str) -> str:
    """Ids in doubt: current members not in ``classified`` ('r'), leavers the snapshot never held ('q')."""
    return f"""
        select d.k1, d.k2, case when c.k1 is not null then 'r' else 'q' end as kind
        from (select k1, k2 from {dirty}) d
        left join (select k1, k2 from {current}) c on {_same("c", "d")}
        left join (select k1, k2 from {previous}) p on {_same("p", "d")}
        where (c.k1 is not null or p.k1 is null)
          and not exists (select 1 from {classified} x where {_same("x", "d")})
        """


def due_sql(current: str, confirmed: str, classified: str, due_before: datetime) -> str:
    """Unchanged members last confirmed at or before ``due_before``, or never ('f').

    ``confirmed`` is the previous snapshot's (k1, k2, confirmed_at); NULL when it kept none.
    """
    return f"""
        select c.k1, c.k2, 'f' as kind
        from (select k1, k2 from {current}) c
        join (select k1, k2, {SNAPSHOT_CONFIRMED} from {confirmed}) p on {_same("p", "c")}
        where not exists (select 1 from {classified} x where {_same("x", "c")})
          and (p.{SNAPSHOT_CONFIRMED} is null or p.{SNAPSHOT_CONFIRMED} <= {timestamp_sql(due_before)})
        """


def classification_sql(
    current: str,
    previous: str,
    dirty: str | None = None,
    confirmed: str | None = None,
    due_before: datetime | None = None,
) -> str:
    """Every classified member as one statement: ``(k1, k2, kind)``, in DuckDB's dialect."""
    parts = [f"changed as ({changed_sql(current, previous)})"]
    classified = "changed"
    if dirty is not None:
        parts.append(f"dirty as ({dirty_sql(current, previous, dirty, classified)})")
        parts.append("after_dirty as (select k1, k2, kind from changed union all select k1, k2, kind from dirty)")
        classified = "after_dirty"
    if confirmed is not None and due_before is not None:
        parts.append(f"due as ({due_sql(current, confirmed, classified, due_before)})")
        parts.append(f"after_due as (select k1, k2, kind from {classified} union all select k1, k2, kind from due)")
        classified = "after_due"
    return "with " + ",\n".join(parts) + f"\nselect k1, k2, kind from {classified}"


def to_engine(sql: str, engine: str) -> str:
    """``sql`` (DuckDB's dialect) for ``engine``: ``duckdb`` as it is, ``athena`` (Trino) through sqlglot."""
    if engine == "duckdb":
        return sql
    if engine not in ("athena", "trino"):
        raise ValueError(f"no SQL dialect for diff engine {engine!r}")
    return sqlglot.transpile(sql, read="duckdb", write=engine)[0]
