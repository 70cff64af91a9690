"""The ``lakeseg`` command. It only parses options and calls the library.

Exit codes: 0 all selected segments synced (or nothing to do); 1 a segment
failed, was skipped or refused; 2 usage or configuration error.
Every option can also come from a ``LAKESEG_<OPTION>`` environment variable.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import wraps
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError, LakesegError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _fail(exc: LakesegError) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


def handle_errors(fn):
    """Turn library errors into a message and the documented exit code."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LakesegError as exc:
            _fail(exc)

    return wrapper


def project_options(fn):
    """--project-dir / --profiles-dir / --target, shared by commands that read dbt."""
    fn = click.option("--target", "-t", default=None, help="dbt target (default: the profile's target).")(fn)
    fn = click.option("--profiles-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Directory holding profiles.yml (default: $DBT_PROFILES_DIR, the project, ~/.dbt).")(fn)
    fn = click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                      show_default=True, help="The dbt project.")(fn)
    return fn


@click.group(context_settings={"auto_envvar_prefix": "LAKESEG", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lakeseg")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, which may include values).")
def main(verbose: int) -> None:
    """lakeseg: customer segments as dbt models, synced into an engagement platform.

    \b
    Typical use:
      dbt build && lakeseg sync     # or, for a scheduler: lakeseg run
      lakeseg plan                  # what would be sent, writes nothing
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------------- check

@main.command()
@project_options
@click.option("--no-parse", is_flag=True, help="Use the existing target/manifest.json instead of running `dbt parse`.")
@click.option("--target-path", default=None, help="dbt target path (default: $DBT_TARGET_PATH, dbt_project.yml, target).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def check(project_dir, profiles_dir, target, no_parse, target_path, as_json):
    """Validate segment declarations: field names, id column, exits, tests, ownership.

    \b
    Example:
      lakeseg check
    """
    from .check_command import run_check

    segments, problems = run_check(project_dir, profiles_dir, target, parse=not no_parse, target_path=target_path)
    if as_json:
        click.echo(json.dumps({
            "segments": [s.name for s in segments],
            "problems": [p.__dict__ for p in problems],
        }, indent=2))
    else:
        for p in problems:
            click.echo(str(p), err=True)
        click.echo(f"{len(segments)} segment(s) checked, {len(problems)} problem(s).")
    sys.exit(EXIT_FAILED if problems else EXIT_OK)


# --------------------------------------------------------------------------- lake

@main.group()
def lake() -> None:
    """The sample data lake (synthetic, deterministic)."""


@lake.command("generate")
@click.option("--path", type=click.Path(path_type=Path), default=Path("build/lake"), show_default=True,
              help="Directory to write the lake into (replaced).")
@click.option("--endpoints", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--events-per-endpoint", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=200, show_default=True, help="Days of events.")
@click.option("--end", default=None, help="Exclusive end of the event window, UTC (default 2026-11-01T00:00:00).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing when a lake with the same parameters exists.")
@handle_errors
def lake_generate(path, endpoints, events_per_endpoint, days, end, seed, if_missing):
    """Write the sample lake: DUE all_events + CRM tables as Parquet.

    \b
    Example:
      lakeseg lake generate --endpoints 1000000 --path build/lake-1m
    """
    import time

    from .sample_lake import DEFAULT_END, LakeSpec, generate, read_manifest

    spec = LakeSpec(endpoints=endpoints, events_per_endpoint=events_per_endpoint, days=days,
                    end=end or DEFAULT_END, seed=seed)
    if if_missing and (existing := read_manifest(path)) and existing.get("spec") == spec.__dict__:
        click.echo(f"Sample lake at {path} is up to date ({existing['rows']['all_events']:,} events).")
        return
    started = time.monotonic()
    manifest = generate(path, spec)
    rows = ", ".join(f"{k} {v:,}" for k, v in manifest["rows"].items())
    click.echo(f"Sample lake written to {path} in {time.monotonic() - started:.1f}s: {rows}.")


if __name__ == "__main__":  # pragma: no cover
    main()
