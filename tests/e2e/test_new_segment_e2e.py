"""`lakeseg new` scaffolds a segment that passes `lakeseg check` and builds, and `lakeseg check` lists it
as an exposure in dbt's manifest (lineage: where it goes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sync.cli import main as cli
from tests.e2e.conftest import PROJECT, dbt_build

pytestmark = pytest.mark.e2e


@pytest.fixture
def project_copy(tmp_path) -> Path:
    dest = tmp_path / "project"
    dest.mkdir()
    for part in ("models", "macros", "dbt_project.yml", "lakeseg.yml"):
        src = PROJECT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / part)
    return dest


def test_new_segment_passes_check_builds_and_is_an_exposure(project_copy, profiles_dir, lake, tmp_path):
    run = CliRunner()
    # Given a new segment scaffolded into the project
    made = run.invoke(cli, ["new", "seg_vip_members", "--project-dir", str(project_copy)], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    # When lakeseg check runs twice (the first writes the exposures, the second parses them)
    args = ["check", "--project-dir", str(project_copy), "--profiles-dir", str(profiles_dir)]
    first = run.invoke(cli, args, catch_exceptions=False)
    second = run.invoke(cli, [*args, "--exposures", "check"], catch_exceptions=False)
    # Then it passes with the new segment counted
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "7 segment(s) checked, 0 problem(s)." in second.output
    # and dbt's manifest has an application exposure for it, owned as lakeseg.yml says
    manifest = json.loads((project_copy / "target" / "lakeseg-check" / "manifest.json").read_text())
    exposure = manifest["exposures"]["exposure.lakeseg.seg_vip_members__files"]
    assert exposure["type"] == "application"
    assert exposure["depends_on"]["nodes"] == ["model.lakeseg.seg_vip_members"]
    assert exposure["owner"]["email"] == "marketing-ops@example.com"
    # and it builds with its required tests passing (empty until the author writes the audience)
    build = dbt_build(tmp_path, "build", lake, profiles_dir, "--select", "+seg_vip_members", project=project_copy)
    assert build.ok, (build.build_dir / "logs" / "dbt.log").read_text()[-3000:]


def test_stale_exposures_fail_check_in_ci_mode(project_copy, profiles_dir):
    # Given the exposures file no longer lists every segment
    path = project_copy / "models" / "segments" / "_segments__exposures.yml"
    doc = yaml.safe_load(path.read_text())
    doc["exposures"] = doc["exposures"][1:]
    path.write_text(yaml.safe_dump(doc))
    # When check runs in CI mode
    result = CliRunner().invoke(
        cli,
        ["check", "--project-dir", str(project_copy), "--profiles-dir", str(profiles_dir), "--exposures", "check"],
        catch_exceptions=False,
    )
    # Then it fails, naming the file and the command that fixes it
    assert result.exit_code == 1
    assert "[exposures] models/segments/_segments__exposures.yml is out of date" in result.output
