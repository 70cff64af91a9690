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
    env = {"LAKESEG_LAKE_PATH": str(lake), "LAKESEG_BUILD_DIR": str(tmp_path / "build"),
           "LAKESEG_STATE_DIR": str(tmp_path / "state"), "LAKESEG_EXPORT_DIR": str(tmp_path / "exports"),
           "LAKESEG_WORK_DIR": str(tmp_path / "work"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    args = ["run", "--project-dir", str(project_copy), "--profiles-dir", str(profiles_dir), "--json", "--",
            "--log-path", str(tmp_path / "logs")]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{\n"):])
    by_name = {s["segment"]: s for s in report["segments"]}
    broken = by_name["seg_broken_tier"]
    assert broken["status"] == "skipped"
    assert "unique_seg_broken_tier_endpoint_id" in broken["reason"] and "fail" in broken["reason"]
    assert by_name["seg_email_clickers"]["status"] == "synced", by_name["seg_email_clickers"]
    assert not (tmp_path / "exports" / report["run_id"] / "seg_broken_tier").exists()
    assert (tmp_path / "exports" / report["run_id"] / "seg_email_clickers" / "part-00000.csv").exists()
