"""The DuckDB reader: attaches dbt's database read-only, selects declared columns."""

import duckdb
import pytest

from sync.core.errors import ConfigError
from sync.readers.base import RelationRef
from sync.readers.duckdb import DuckDBReader


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "dbt.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema main_segments")
    con.execute('create table main_segments.seg_x ("Endpoint_Id" varchar, tier varchar, extra varchar)')
    con.execute("insert into main_segments.seg_x values ('ep-1', 'Gold, \"A\"', 'not exported')")
    con.close()
    return path


def test_selects_declared_columns_case_insensitively(database, tmp_path):
    reader = DuckDBReader(database)
    con = duckdb.connect()
    sql = reader.stage(con, RelationRef("dbt", "main_segments", "seg_x"), ["endpoint_id", "TIER"], tmp_path)
    rel = con.execute(f"select * from {sql}")
    assert [d[0] for d in rel.description] == ["endpoint_id", "TIER"]
    assert rel.fetchall() == [("ep-1", 'Gold, "A"')]
    reader.cleanup()
    assert not [r for r in con.execute("show databases").fetchall() if r[0].startswith("lakeseg_src")]


def test_missing_column_names_relation_and_column(database, tmp_path):
    with pytest.raises(ConfigError, match="seg_x has no column matching 'score'"):
        DuckDBReader(database).stage(
            duckdb.connect(), RelationRef("dbt", "main_segments", "seg_x"), ["score"], tmp_path
        )


def test_missing_table_and_missing_database_say_run_dbt_build(database, tmp_path):
    with pytest.raises(ConfigError, match="run `dbt build`"):
        DuckDBReader(database).stage(duckdb.connect(), RelationRef("dbt", "main_segments", "nope"), ["a"], tmp_path)
    with pytest.raises(ConfigError, match="does not exist: run `dbt build`"):
        DuckDBReader(tmp_path / "none.duckdb").stage(duckdb.connect(), RelationRef("d", "s", "t"), ["a"], tmp_path)
