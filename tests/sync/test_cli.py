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


@pytest.mark.parametrize(
    "path,cmd", list(all_commands(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
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
    # Given a lake written by this version, then marked as format 2 (whose events past one chunk were wrong)
    assert CliRunner().invoke(main, args).exit_code == 0
    manifest = read_manifest(tmp_path / "lake")
    assert manifest["format"] == LAKE_FORMAT
    again = CliRunner().invoke(main, args)
    assert "up to date" in again.output
    (tmp_path / "lake" / "_lake.json").write_text(__import__("json").dumps({**manifest, "format": 2}))
    # When --if-missing runs again, then the lake is written anew in the current format
    rewritten = CliRunner().invoke(main, args)
    assert rewritten.exit_code == 0 and "written to" in rewritten.output
    assert read_manifest(tmp_path / "lake")["format"] == LAKE_FORMAT


def test_lake_generate_without_a_terminal_says_how_many_chunks_are_written(tmp_path):
    # Given no terminal (CliRunner's streams are not ttys)
    # When a small lake is generated (1 event chunk and 4 CRM files)
    result = CliRunner().invoke(
        main, ["lake", "generate", "--path", str(tmp_path / "lake"), "--endpoints", "50", "--days", "3"]
    )
    # Then stderr has a plain line from the start to the end, and stdout only the summary
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines[0].startswith("lake generate: 0/5 chunks written (0%)")
    assert lines[-1].startswith("lake generate: 5/5 chunks written (100%)")
    assert "chunks" not in result.stdout and "written to" in result.stdout


def test_lake_progress_without_a_terminal_writes_a_line_per_tenth_not_per_chunk():
    import io

    from sync.cli import LakeProgress

    # Given a lake of 100 write steps, and no terminal
    stream = io.StringIO()
    progress = LakeProgress(stream)
    # When every step is reported
    for done in range(101):
        progress(done, 100)
    progress.close()
    # Then it wrote 11 lines: 0%, 10%, ... 100%
    shares = [line.split("(")[1].split(")")[0] for line in stream.getvalue().splitlines()]
    assert shares == [f"{p}%" for p in range(0, 101, 10)]


def test_lake_progress_on_a_terminal_draws_a_bar_instead_of_lines():
    import io

    from sync.cli import LakeProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    # Given a terminal
    stream = Terminal()
    progress = LakeProgress(stream)
    # When steps are reported
    for done in range(4):
        progress(done, 3)
    progress.close()
    # Then rich drew the sample lake's bar, and no plain line
    drawn = stream.getvalue()
    assert "sample lake" in drawn and "3/3" in drawn
    assert "lake generate:" not in drawn


@pytest.mark.parametrize(
    "flags,allowed",
    [
        pytest.param([], False, id="guarded-by-default"),
        pytest.param(["--allow-size-change"], True, id="allowed-by-flag"),
    ],
)
def test_sync_passes_allow_size_change_to_the_run(tmp_path, monkeypatch, flags, allowed):
    import sync.cli

    # Given a sync whose run is captured instead of executed
    seen = []
    monkeypatch.setattr(sync.cli, "_execute", lambda req, *a, **k: seen.append(req))
    # When it is invoked with or without --allow-size-change
    result = CliRunner().invoke(main, ["sync", "--project-dir", str(tmp_path), *flags])
    # Then the request carries the flag, and leaves the mass-exit guard alone
    assert result.exit_code == 0, result.output
    assert (seen[0].allow_size_change, seen[0].allow_mass_exit) == (allowed, False)
