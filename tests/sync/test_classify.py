"""One classification, two engines: executed on DuckDB over Athena's Parquet layout, checked for Athena offline."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
import sqlglot

from sync.dbt.type_check import TypeChecker
from sync.run import classify

DUE_BEFORE = datetime(2026, 11, 1, tzinfo=timezone.utc)
OLD, NEW = "2026-10-01 00:00:00", "2026-11-20 00:00:00"

# key: (current digest, previous digest, previous confirmed_at, dirty) -> expected kind ("" = unchanged)
MEMBERS = {
    1: (10, None, None, False, "e"),
    2: (20, 21, NEW, False, "c"),
    3: (None, 30, NEW, False, "x"),
    4: (40, 40, NEW, True, "r"),
    5: (None, None, None, True, "q"),
    6: (60, 60, OLD, False, "f"),
    7: (70, 70, None, False, "f"),
    8: (80, 80, NEW, False, ""),
    9: (None, 90, NEW, True, "x"),  # a dirty leaver the snapshot holds: its exit is already 'x'
    10: (100, 101, OLD, True, "c"),  # dirty and changed: 'c' once
}


def _table(con, folder: Path, rows: list[tuple], columns: str) -> None:
    """Write ``rows`` as Athena would find a table: several part files, plus files Athena skips."""
    folder.mkdir(parents=True)
    con.execute(f"create or replace table t ({columns})")
    if rows:
        con.executemany(f"insert into t values ({', '.join('?' * len(rows[0]))})", rows)
    con.execute(f"copy (select * from t where k1 % 2 = 0) to '{folder / 'part-0.parquet'}' (format parquet)")
    con.execute(f"copy (select * from t where k1 % 2 = 1) to '{folder / 'part-1.parquet'}' (format parquet)")
    (folder / "_SUCCESS").write_text("")
    con.execute(f"copy (select * from t) to '{folder / '.hidden.parquet'}' (format parquet)")  # would double rows


def athena_visible(folder: Path) -> str:
    """DuckDB's read of what Athena reads under a location: every object but names starting with _ or ."""
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"


@pytest.fixture
def lake(tmp_path):
    con = duckdb.connect()
    current = [(k, k, d) for k, (d, *_rest) in MEMBERS.items() if d is not None]
    previous = [(k, k, p, ts) for k, (_c, p, ts, *_r) in MEMBERS.items() if p is not None]
    dirty = [(k, k) for k, (*_x, is_dirty, _kind) in MEMBERS.items() if is_dirty]
    _table(con, tmp_path / "current", current, "k1 ubigint, k2 ubigint, digest ubigint")
    _table(con, tmp_path / "previous", previous, "k1 ubigint, k2 ubigint, digest ubigint, confirmed_at timestamp")
    _table(con, tmp_path / "dirty", dirty, "k1 ubigint, k2 ubigint")
    return con, {name: athena_visible(tmp_path / name) for name in ("current", "previous", "dirty")}


def test_one_statement_classifies_every_member_on_duckdb(lake):
    # Given the current rows, the previous snapshot and the dirty ids in Athena's layout
    con, rel = lake
    # When the one-statement classification runs on DuckDB
    sql = classify.classification_sql(rel["current"], rel["previous"], rel["dirty"], rel["previous"], DUE_BEFORE)
    got = {k1: kind for k1, _k2, kind in con.execute(sql).fetchall()}
    # Then each member has the kind it should, once; unchanged members have none
    assert got == {k: kind for k, (*_x, kind) in MEMBERS.items() if kind}


def test_the_one_statement_matches_the_steps_the_runner_takes(lake):
    # Given the same inputs, classified step by step as sync.run.diff does (a table filled in three passes)
    con, rel = lake
    con.execute(f"create temp table _delta as {classify.changed_sql(rel['current'], rel['previous'])}")
    con.execute(f"insert into _delta {classify.dirty_sql(rel['current'], rel['previous'], rel['dirty'], '_delta')}")
    con.execute(f"insert into _delta {classify.due_sql(rel['current'], rel['previous'], '_delta', DUE_BEFORE)}")
    steps = sorted(con.execute("select k1, kind from _delta").fetchall())
    # When the one statement runs, then both agree row for row
    one = classify.classification_sql(rel["current"], rel["previous"], rel["dirty"], rel["previous"], DUE_BEFORE)
    assert sorted((k1, kind) for k1, _k2, kind in con.execute(one).fetchall()) == steps


@pytest.mark.parametrize("dialect", ["athena", "trino"])
@pytest.mark.parametrize("parts", ["changed", "dirty", "due"])
def test_the_athena_sql_parses_and_type_checks(dialect, parts):
    # Given the classification over lake tables with their declared types
    dirty = "lake.dirty" if parts != "changed" else None
    confirmed = "lake.previous" if parts == "due" else None
    sql = classify.classification_sql("lake.current", "lake.previous", dirty, confirmed, DUE_BEFORE)
    # When it is transpiled for Athena
    athena = classify.to_engine(sql, "athena")
    # Then Athena's dialect parses it, and it resolves against the declared types with no problem
    sqlglot.parse_one(athena, dialect=dialect)
    checker = TypeChecker()
    checker.add_table("lake.current", {"k1": "bigint", "k2": "bigint", "digest": "bigint"})
    checker.add_table(
        "lake.previous", {"k1": "bigint", "k2": "bigint", "digest": "bigint", "confirmed_at": "timestamp"}
    )
    checker.add_table("lake.dirty", {"k1": "bigint", "k2": "bigint"})
    assert checker.check_model("classification", "lake.classified", athena) == []
    assert "anti join" not in athena.lower()
    assert ("'2026-11-01 00:00:00'" in athena) == (parts == "due")


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="no SQL dialect"):
        classify.to_engine("select 1", "spark")
