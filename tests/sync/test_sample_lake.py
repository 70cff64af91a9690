"""The sample lake generator: large CRM tables are written in time-sorted files."""

from __future__ import annotations

import duckdb
import pytest

from sync.lake import sample_lake
from sync.lake.sample_lake import LakeSpec, generate

SPEC = LakeSpec(endpoints=400, events_per_endpoint=3, days=5)


def rows(root, table):
    return duckdb.sql(f"select * from read_parquet('{root}/crm/{table}/*.parquet') order by all").fetchall()


@pytest.mark.parametrize("table,column", [("app_logins", "login_timestamp"), ("web_sessions", "session_timestamp")])
def test_a_crm_table_split_into_files_holds_the_same_rows_each_file_in_time_order(tmp_path, monkeypatch, table, column):
    # Given the same lake written once in one file per table, once in files of 300 rows
    generate(tmp_path / "one", SPEC)
    monkeypatch.setattr(sample_lake, "CRM_ROWS_PER_FILE", 300)
    generate(tmp_path / "split", SPEC)
    # Then the split table has ceil(1600 / 300) files, each sorted by time
    files = sorted((tmp_path / "split" / "crm" / table).glob("*.parquet"))
    assert [f.name for f in files] == [f"{table}-{k:04d}.parquet" for k in range(6)]
    for f in files:
        times = [r[0] for r in duckdb.sql(f"select {column} from '{f}'").fetchall()]
        assert times == sorted(times)
    # And together they hold exactly the rows of the single file
    assert [f.name for f in (tmp_path / "one" / "crm" / table).glob("*.parquet")] == [f"{table}.parquet"]
    assert rows(tmp_path / "split", table) == rows(tmp_path / "one", table)
    assert len(rows(tmp_path / "one", table)) == 4 * SPEC.endpoints
