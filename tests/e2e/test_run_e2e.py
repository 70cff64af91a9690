"""`lakeseg run` (dbt build + sync in one process) on a copy of the project
with one broken segment: the broken one is skipped, naming its failed test;
the rest are synced; the exit code says something failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from tests.e2e.conftest import PROJECT

pytestmark = pytest.mark.e2e

BROKEN_SQL = """
select endpoint_id, 'Gold' as tier from (values ('dup-1'), ('dup-1'), ('ok-2')) t(endpoint_id)
"""

BROKEN_YML = """
version: 2
models:
  - name: seg_broken_tier
    description: A segment with a duplicated id. One row per endpoint (supposedly).
    config:
      meta:
        lakeseg:
          exit: keep
    columns:
      - name: endpoint_id
        config: {meta: {lakeseg: {field: Id}}}
        data_tests: [unique, not_null, pinpoint_max_length, pinpoint_no_control_chars]
      - name: tier
        config: {meta: {lakeseg: {field: User.UserAttributes.BrokenTier}}}
        data_tests: [pinpoint_max_length, pinpoint_no_control_chars]
"""


@pytest.fixture
def project_copy(tmp_path):
    dest = tmp_path / "project"
    skip = {".venv", ".tools", "build", "target", "logs", "tests", ".git", "benchmarks", "infra", "docs"}
    shutil.copytree(PROJECT, dest, ignore=lambda d, names: [n for n in names if Path(d) == PROJECT and n in skip])
    (dest / "models" / "segments" / "seg_broken_tier.sql").write_text(BROKEN_SQL)
    (dest / "models" / "segments" / "_broken__models.yml").write_text(BROKEN_YML)
    return dest


def test_run_skips_the_broken_segment_and_syncs_the_rest(project_copy, lake, profiles_dir, tmp_path):
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
        str(project_copy),
        "--profiles-dir",
        str(profiles_dir),
        "--json",
        "--",
        "--log-path",
        str(tmp_path / "logs"),
    ]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout)  # dbt's own lines go to stderr: stdout is one JSON document
    by_name = {s["segment"]: s for s in report["segments"]}
    broken = by_name["seg_broken_tier"]
    assert broken["status"] == "skipped"
    assert "unique_seg_broken_tier_endpoint_id" in broken["reason"] and "fail" in broken["reason"]
    assert by_name["seg_email_clickers"]["status"] == "synced", by_name["seg_email_clickers"]
    assert not (tmp_path / "exports" / report["run_id"] / "seg_broken_tier").exists()
    assert (tmp_path / "exports" / report["run_id"] / "seg_email_clickers" / "part-00000.csv").exists()


def test_run_select_builds_what_dbt_would_and_syncs_those_and_new_segment_hint_works(
    project_copy, lake, profiles_dir, tmp_path
):
    env = {
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(tmp_path / "build"),
        "LAKESEG_STATE_DIR": str(tmp_path / "state"),
        "LAKESEG_EXPORT_DIR": str(tmp_path / "exports"),
        "LAKESEG_WORK_DIR": str(tmp_path / "work"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    (project_copy / "models" / "segments" / "seg_broken_tier.sql").unlink()
    (project_copy / "models" / "segments" / "_broken__models.yml").unlink()
    shared = ["--project-dir", str(project_copy), "--profiles-dir", str(profiles_dir)]

    def lakeseg(*args):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    # Given a project built and synced once
    assert lakeseg("run", *shared, "--no-report").exit_code == 0
    # When `lakeseg run -s seg_lifecycle_stage` runs
    result = lakeseg("run", *shared, "-s", "seg_lifecycle_stage", "--json", "--no-report")
    # Then dbt built that model and its tests only, the sync synced it alone, and stdout is one JSON document
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert [s["segment"] for s in report["segments"]] == ["seg_lifecycle_stage"]
    assert report["phases"]["dbt_build"] > 0 and {"select", "read", "diff"} <= set(report["phases"])
    built = json.loads((project_copy / "target" / "run_results.json").read_text())["results"]
    models = {r["unique_id"] for r in built if r["unique_id"].startswith("model.")}
    assert models == {"model.lakeseg.seg_lifecycle_stage"}
    assert all(r["unique_id"].startswith("model.") or "seg_lifecycle_stage" in r["unique_id"] for r in built)
    # And the hint `lakeseg new` prints is a command that works: scaffold, then run what it says
    made = lakeseg("new", "seg_vip_members", "--project-dir", str(project_copy))
    hint = made.output.split("`lakeseg run ")[1].split("`")[0]
    assert hint == "--select seg_vip_members"
    again = lakeseg("run", *shared, *hint.split(), "--json", "--no-report")
    assert again.exit_code == 0, again.output[-2000:]
    assert [s["segment"] for s in json.loads(again.stdout)["segments"]] == ["seg_vip_members"]
    # And a plain sync after that partial build leaves the other segments alone instead of failing
    after = lakeseg("sync", *shared, "--json", "--no-report")
    assert after.exit_code == 0, after.output[-2000:]
    doc = json.loads(after.stdout)
    assert [s["segment"] for s in doc["segments"]] == ["seg_vip_members"] and "seg_lifecycle_stage" in doc["left_alone"]


def test_history_of_an_unknown_run_id_is_an_error(project_copy, profiles_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "history",
            "--project-dir",
            str(project_copy),
            "--profiles-dir",
            str(profiles_dir),
            "--state",
            str(tmp_path / "state"),
            "--run-id",
            "nope",
        ],
    )
    assert result.exit_code == 2 and "no run 'nope' in the run history" in result.stderr
