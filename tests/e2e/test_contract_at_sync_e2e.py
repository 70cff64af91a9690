"""End to end: a built table changed after `dbt build` passed is refused by `lakeseg sync`, naming model,
column and rule; nothing of it is sent."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from tests.e2e.conftest import Build

pytestmark = pytest.mark.e2e


def test_given_a_newline_written_into_a_built_table_after_its_tests_passed_then_sync_refuses_that_segment(
    lakeseg, build_now, tmp_path
):
    # Given a private copy of a build whose every test passed
    build = Build("changed", tmp_path / "build", tmp_path / "build" / "target", True)
    shutil.copytree(build_now.build_dir, build.build_dir, ignore=shutil.ignore_patterns("logs"))
    # When one row of seg_lifecycle_stage gets a newline in its value afterwards (dbt's artifacts unchanged)
    con = duckdb.connect(str(build.build_dir / "lakeseg.duckdb"))
    (schema,) = con.execute(
        "select table_schema from information_schema.tables where table_name = 'seg_lifecycle_stage'"
    ).fetchall()[0]
    table = f'"{schema}".seg_lifecycle_stage'
    con.execute(
        f"update {table} set lifecycle_stage = lifecycle_stage || chr(10) || 'Zyxwv' "
        f"where endpoint_id = (select min(endpoint_id) from {table})"
    )
    con.close()
    code, report = lakeseg.json("sync", build)
    # Then that segment is refused naming model, column and rule, never the value; the others are synced
    by_name = {s["segment"]: s for s in report["segments"]}
    refused = by_name.pop("seg_lifecycle_stage")
    assert code == 1 and refused["status"] == "refused"
    assert refused["reason"].startswith(
        "seg_lifecycle_stage: column lifecycle_stage "
        "(User.UserAttributes.LifecycleStage) breaks pinpoint_no_control_chars "
        "in 1 row(s)"
    )
    assert "Zyxwv" not in refused["reason"]
    assert {s["status"] for s in by_name.values()} == {"synced"}
    # And nothing of it was sent
    assert not list(lakeseg.exports.glob("*/seg_lifecycle_stage"))
