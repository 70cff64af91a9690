"""Issue 27: a corrupt local imports database (build/lakeseg_imports.duckdb, left by a full disk) is rebuilt from the
export folder -- the views are derived data -- and a failure to rebuild it fails the run (exit 1), never a note and
exit 0 on every later run."""

from __future__ import annotations

import duckdb
import pytest

from sync.run.imports_table import DuckDBImportsViews
from tests.engine.harness import EngineHarness, by_segment

A = {"endpoint_id": "Id", "plan": "Attributes.Plan"}
B = {"endpoint_id": "Id", "tier": "Attributes.Tier"}


def views(database) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(database), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select view_name from duckdb_views() where schema_name = 'imports' order by 1"
            ).fetchall()
        ]
        return {n: sorted(con.execute(f'select * exclude (run_id) from imports."{n}"').fetchall()) for n in names}
    finally:
        con.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut-off-half-way"),
        pytest.param(lambda data: b"\0" * len(data), id="zeroed"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_corrupt_imports_database_is_rebuilt_from_the_export_folder(tmp_path, damage):
    # Given two delivered segments and their views, then the database file damaged (a disk that filled up)
    h = EngineHarness(tmp_path)
    table = DuckDBImportsViews(h.exports)
    h.segment("seg_a", A, [("e1", "pro")])
    h.segment("seg_b", B, [("e2", "gold")])
    h.run(imports_table=table)
    table.database.write_bytes(damage(table.database.read_bytes()))
    # When the next run delivers a change of seg_a only
    h.rebuild("seg_a", [("e1", "plus")])
    report = h.run(imports_table=DuckDBImportsViews(h.exports))
    # Then the run succeeds without an "imports table not updated" note, and both views read every delivery again
    seg_a = by_segment(report)["seg_a"]
    assert report.ok and seg_a.status == "synced", (report.error, report.segments)
    assert not any("imports table not updated" in n for n in seg_a.notes), seg_a.notes
    assert views(table.database) == {"seg_a": [("e1", "plus"), ("e1", "pro")], "seg_b": [("e2", "gold")]}


def test_an_imports_database_that_cannot_be_rebuilt_fails_the_run(tmp_path):
    # Given an imports database that can be neither opened nor replaced (a folder where the file should be)
    h = EngineHarness(tmp_path)
    h.segment("seg_a", A, [("e1", "pro")])
    blocker = tmp_path / "lakeseg_imports.duckdb"
    (blocker / "in-the-way").mkdir(parents=True)
    # When a sync delivers
    report = h.run(imports_table=DuckDBImportsViews(h.exports))
    # Then the delivery is committed, but the run fails (exit 1), saying what was not recorded
    seg_a = by_segment(report)["seg_a"]
    assert seg_a.status == "synced" and h.pointer("seg_a")["run_id"] == report.run_id
    assert any(n.startswith("imports table not updated:") for n in seg_a.notes), seg_a.notes
    assert not report.ok and report.status == "failed"
    assert report.error.startswith("seg_a: imports table not updated:")
