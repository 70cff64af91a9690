"""The CLI: documented commands, exit codes for usage and configuration errors."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from sync.cli import main


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


@pytest.mark.parametrize("path,cmd", list(all_commands(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example_or_warning(path, cmd):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert cmd.help and len(cmd.help.strip()) > 20
    assert "Example" in result.output or path == ("unlock",)


def test_unknown_option_is_a_usage_error():
    assert CliRunner().invoke(main, ["sync", "--no-such-flag"]).exit_code == 2


def test_missing_project_is_a_config_error(tmp_path):
    result = CliRunner().invoke(main, ["plan", "--project-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "dbt_project.yml" in result.output


def test_options_come_from_lakeseg_env_vars(tmp_path):
    # LAKESEG_PLAN_PROJECT_DIR feeds --project-dir of `plan`
    result = CliRunner().invoke(main, ["plan"], env={"LAKESEG_PLAN_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 2 and str(tmp_path) in result.output


def test_lake_generate_if_missing_rewrites_a_lake_of_an_older_format(tmp_path):
    from click.testing import CliRunner

    from sync.cli import main
    from sync.lake.sample_lake import LAKE_FORMAT, read_manifest

    args = ["lake", "generate", "--path", str(tmp_path / "lake"), "--endpoints", "50", "--days", "3", "--if-missing"]
    # Given a lake written by this version, then marked as an older format
    assert CliRunner().invoke(main, args).exit_code == 0
    manifest = read_manifest(tmp_path / "lake")
    assert manifest["format"] == LAKE_FORMAT
    again = CliRunner().invoke(main, args)
    assert "up to date" in again.output
    (tmp_path / "lake" / "_lake.json").write_text(__import__("json").dumps({**manifest, "format": 1}))
    # When --if-missing runs again, then the lake is written anew in the current format
    rewritten = CliRunner().invoke(main, args)
    assert rewritten.exit_code == 0 and "written to" in rewritten.output
    assert read_manifest(tmp_path / "lake")["format"] == LAKE_FORMAT
