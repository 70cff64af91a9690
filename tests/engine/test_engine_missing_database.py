"""Issue 27: a missing DuckDB database file is a configuration error (exit 2) before anything is written,
not one failure per segment (exit 1)."""

from __future__ import annotations

import pytest

from sync.core.errors import ConfigError
from sync.readers.duckdb import DuckDBReader
from tests.engine.harness import EngineHarness


@pytest.mark.parametrize("dry_run", [pytest.param(False, id="sync"), pytest.param(True, id="plan")])
def test_a_missing_duckdb_database_is_a_configuration_error_before_anything_is_written(tmp_path, dry_run):
    # Given a segment, and a dbt profile whose DuckDB database file does not exist
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    missing = tmp_path / "no-such" / "lakeseg.duckdb"
    # When a sync (or plan) runs, then it stops with a configuration error naming the file and what to run
    with pytest.raises(ConfigError, match=f"DuckDB database {missing} does not exist: run `dbt build`"):
        h.run(reader=DuckDBReader(missing), dry_run=dry_run, command="plan" if dry_run else "sync")
    # and nothing was written: no history, no delivery, no work folder
    assert not h.state_dir.exists() or not any(h.state_dir.rglob("*.json"))
    assert not h.exports.exists() or not any(p for p in h.exports.iterdir() if not p.name.startswith("."))
    assert not h.work.exists() or list(h.work.iterdir()) == []
