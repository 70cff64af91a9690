"""`lakeseg run` fixes as_of once, builds every model with it and records it in run history."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from sync.dbt.as_of import lake_end
from tests.e2e.conftest import PROJECT

pytestmark = pytest.mark.e2e


def test_run_fixes_as_of_once_and_records_it(lake, profiles_dir, tmp_path):
    env = {
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(tmp_path / "build"),
        "LAKESEG_STATE_DIR": str(tmp_path / "state"),
        "LAKESEG_EXPORT_DIR": str(tmp_path / "exports"),
        "LAKESEG_WORK_DIR": str(tmp_path / "work"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    target = tmp_path / "target"
    args = [
        "run",
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(profiles_dir),
        "--target-path",
        str(target),
        "--json",
        "--",
        "--log-path",
        str(tmp_path / "logs"),
    ]
    # When lakeseg run runs without a pinned as_of on the local lake
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{\n") :])
    # Then as_of is the lake's end, recorded in the run report and history
    expected = lake_end(lake).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    assert report["as_of"] == expected
    hist = CliRunner().invoke(
        cli,
        ["history", "--project-dir", str(PROJECT), "--profiles-dir", str(profiles_dir), "--json"],
        env=env,
        catch_exceptions=False,
    )
    assert f"as_of {expected}" in hist.stdout or f'"as_of": "{expected}"' in hist.stdout
    # and every windowed model was compiled with that one instant
    seen = set()
    for sql in (target / "compiled" / "lakeseg" / "models").rglob("*.sql"):
        seen |= set(re.findall(r"timestamp '(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})'", sql.read_text()))
    assert seen == {expected}


def test_run_registers_each_delivery_in_the_local_imports_views(lake, profiles_dir, tmp_path):
    import csv

    import duckdb

    env = {
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(tmp_path / "build"),
        "LAKESEG_STATE_DIR": str(tmp_path / "state"),
        "LAKESEG_EXPORT_DIR": str(tmp_path / "exports"),
        "LAKESEG_WORK_DIR": str(tmp_path / "work"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    args = [
        "run",
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(profiles_dir),
        "--target-path",
        str(tmp_path / "target"),
        "--json",
        "--",
        "--log-path",
        str(tmp_path / "logs"),
    ]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{\n") :])
    con = duckdb.connect(str(tmp_path / "lakeseg_imports.duckdb"), read_only=True)
    synced = [s for s in report["segments"] if s["status"] == "synced"]
    assert len(synced) == len(list((PROJECT / "models" / "segments").glob("seg_*.sql")))
    for seg in synced:
        folder = tmp_path / "exports" / report["run_id"] / seg["segment"]
        delivered = []
        for f in sorted(folder.glob("part-*.csv")):
            with f.open(newline="", encoding="utf-8") as fh:
                delivered += [tuple(row) for row in list(csv.reader(fh))[1:]]  # empty and NULL read as ''
        got = con.execute(
            f"select * exclude (run_id) from imports.{seg['segment']} where run_id = '{report['run_id']}'"
        ).fetchall()
        assert sorted(got) == sorted(delivered), seg["segment"]
