"""The ``lakeseg`` command. It only parses options and calls the library.

Exit codes: 0 all selected segments synced (or nothing to do); 1 a segment
failed, was skipped or refused, ``check`` found a problem, or an unexpected
error (one line; the traceback with ``-v``); 2 usage or configuration error;
3 another run of the deployment holds the run lease (nothing built or synced);
143 stopped by SIGTERM (the run's cleanup ran: Athena queries stopped, history written).
Every option can also come from a ``LAKESEG_<OPTION>`` environment variable.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from functools import wraps
from pathlib import Path

import click

from sync import __version__
from sync.core.errors import ConfigError, LakesegError
from sync.core.signals import TERMINATED_EXIT_CODE, Terminated, terminate_on_sigterm
from sync.output import logs

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
log = logging.getLogger("sync.cli")


def _verbosity() -> int:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return int((root.params.get("verbose") if root else 0) or 0)


def _fail(exc: LakesegError) -> None:
    if _verbosity() > 0:
        click.echo(traceback.format_exc().rstrip(), err=True)
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _crash(exc: Exception) -> None:
    """The boundary for what nobody foresaw: one line, the traceback only with -v."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if _verbosity() > 0:
        click.echo(logs.redact(traceback.format_exc().rstrip()), err=True)
        hint = ""
    else:
        hint = " (run with -v for the traceback)"
    click.echo(f"Error: unexpected {type(exc).__name__}: {logs.redact(first)}{hint}", err=True)
    sys.exit(EXIT_FAILED)


def handle_errors(fn):
    """Turn library errors into a message and the documented exit code; nothing else escapes."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LakesegError as exc:
            _fail(exc)
        except Terminated as exc:  # SIGTERM (CodeBuild's timeout or stop): cleanup has run on the way here
            click.echo(f"Error: {exc}; the run ended early (its history says so)", err=True)
            sys.exit(TERMINATED_EXIT_CODE)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 -- the top-level boundary
            _crash(exc)

    return wrapper


def project_options(fn):
    """--project-dir / --profiles-dir / --target, shared by commands that read dbt."""
    fn = click.option("--target", "-t", default=None, help="dbt target (default: the profile's target).")(fn)
    fn = click.option(
        "--profiles-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory holding profiles.yml (default: $DBT_PROFILES_DIR, the project, ~/.dbt).",
    )(fn)
    fn = click.option(
        "--project-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="The dbt project.",
    )(fn)
    return fn


@click.group(context_settings={"auto_envvar_prefix": "LAKESEG", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lakeseg")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More of lakeseg's own log output (-vv: debug, which may include values); tracebacks on errors.",
)
@click.option(
    "--debug-aws", is_flag=True, help="Also log the AWS SDK's requests (botocore wire logs), credentials masked."
)
def main(verbose: int, debug_aws: bool) -> None:
    """lakeseg: customer segments as dbt models, synced into an engagement platform.

    \b
    Typical use:
      dbt build && lakeseg sync     # or, for a scheduler: lakeseg run
      lakeseg plan                  # what would be sent, writes nothing
    """
    logs.configure(verbose, debug_aws)
    # Everything lakeseg writes may hold personal data (import files, snapshots, work folders):
    # readable by the owner only.
    os.umask(0o077)


# --------------------------------------------------------------------------- check


@main.command()
@project_options
@click.option("--no-parse", is_flag=True, help="Use the existing target/manifest.json instead of running `dbt parse`.")
@click.option(
    "--target-path", default=None, help="dbt target path (default: $DBT_TARGET_PATH, dbt_project.yml, target)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--exposures",
    type=click.Choice(["write", "check", "off"]),
    default="write",
    show_default=True,
    help="Keep models/segments/_segments__exposures.yml (dbt lineage: where segments go) in step: "
    "write it, only check it is current (CI), or leave it alone.",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="lakeseg settings file (default: lakeseg.yml in the project): destination and owner.",
)
@handle_errors
def check(project_dir, profiles_dir, target, no_parse, target_path, as_json, exposures, settings_file):
    """Validate segment declarations: field names, id column, exits, tests, ownership.

    Also writes one dbt exposure per segment (its destination and owner from
    lakeseg.yml), so the lineage of `dbt docs generate` shows where each
    segment goes.

    \b
    Example:
      lakeseg check
      lakeseg check --exposures check   # in CI: fail if the exposures are stale
    """
    from sync.app.check import destination_limits, run_check

    segments, problems = run_check(
        project_dir,
        profiles_dir,
        target,
        parse=not no_parse,
        target_path=target_path,
        exposures=exposures,
        settings_file=settings_file,
    )
    limits = destination_limits(project_dir, profiles_dir, target, settings_file)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "segments": [s.name for s in segments],
                    "problems": [p.__dict__ for p in problems],
                    **({"destination_limits": limits} if limits else {}),
                },
                indent=2,
            )
        )
    else:
        for p in problems:
            click.echo(str(p), err=True)
        if limits:
            click.echo("Destination limits:")
            for what, limit in limits.items():
                click.echo(f"  {what}: {limit}")
        click.echo(f"{len(segments)} segment(s) checked, {len(problems)} problem(s).")
    sys.exit(EXIT_FAILED if problems else EXIT_OK)


@main.command()
@click.argument("name")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The dbt project.",
)
@click.option(
    "--field",
    default=None,
    help="The custom attribute it exports (default: User.UserAttributes.<Name> from the segment name).",
)
@click.option("--exit-value", default="No", show_default=True, help="The value written when an endpoint leaves.")
@click.option("--description", default=None, help="What the audience is (the model's description).")
@handle_errors
def new(name, project_dir, field, exit_value, description):
    """Scaffold a segment: models/segments/NAME.sql plus its YAML (field, exit, required tests).

    It passes `lakeseg check` as generated and is empty until you write the audience.

    \b
    Example:
      lakeseg new seg_high_value --description "Customers with 3+ orders in 90 days."
    """
    from sync.dbt.scaffold import new_segment

    made = new_segment(project_dir, name, field=field, exit_value=exit_value, description=description)
    click.echo(
        f"Created {made.sql} and added {name} to {made.properties}: column {made.column} -> {made.field} "
        f"(exit value {exit_value!r}).\nNext: write the audience in {made.sql.name}, then `lakeseg check` "
        f"and `lakeseg run --select {name}` (dbt build and sync of this segment alone)."
    )


# --------------------------------------------------------------------------- sync


def sync_options(fn):
    """Options shared by plan, sync and run."""
    opts = [
        click.option(
            "--target-path", default=None, help="dbt target path (default: $DBT_TARGET_PATH, dbt_project.yml, target)."
        ),
        click.option(
            "--settings",
            "settings_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="lakeseg settings file (default: lakeseg.yml in the project).",
        ),
        click.option(
            "--select",
            "-s",
            multiple=True,
            help="dbt selector syntax, resolved by dbt (seg_x, seg_email_*, tag:daily, +seg_x, "
            "path:models/segments/crm, config.materialized:table, state:modified); only "
            "segment models are synced. Repeatable.",
        ),
        click.option("--exclude", multiple=True, help="dbt selectors to leave out (same syntax as --select)."),
        click.option(
            "--dbt-state",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="dbt artifacts to compare with for state:modified selectors (dbt's own --state; "
            "lakeseg's --state is where sync state lives).",
        ),
        click.option("--full-refresh", is_flag=True, help="Send every row, not only the change."),
        click.option(
            "--max-exit-share",
            type=click.FloatRange(0, 1, min_open=True),
            default=None,
            help="Mass-exit guard: refuse a segment whose run exits more than this share (default 0.3).",
        ),
        click.option("--state", default=None, help="State location: a directory or s3://bucket/prefix."),
        click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON."),
        click.option(
            "--report-path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            envvar="LAKESEG_REPORT_PATH",
            help="Where sync and run write the HTML report (default: build/report/index.html in the project).",
        ),
        click.option("--no-report", is_flag=True, help="Do not write the HTML report after the run."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return project_options(fn)


def _request(
    project_dir,
    profiles_dir,
    target,
    target_path,
    settings_file,
    select,
    exclude,
    full_refresh,
    max_exit_share,
    state,
    allow_mass_exit=False,
    dbt_state=None,
    allow_size_change=False,
):
    from sync.app.wiring import SyncRequest
    from sync.dbt.invoke import DbtProject

    return SyncRequest(
        project=DbtProject(project_dir, profiles_dir, target),
        target_path=target_path,
        settings_file=settings_file,
        select=tuple(select),
        exclude=tuple(exclude),
        full_refresh=full_refresh,
        allow_mass_exit=allow_mass_exit,
        max_exit_share=max_exit_share,
        state=state,
        dbt_state=dbt_state,
        allow_size_change=allow_size_change,
    )


def _finish(report, as_json: bool) -> None:
    from sync.output.terminal import print_rich, render

    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    elif sys.stdout.isatty():
        print_rich(report)
    else:
        click.echo(render(report))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def guard_override_options(fn):
    """--allow-mass-exit / --allow-size-change: the commands that send (sync, run) may override the guards."""
    fn = click.option(
        "--allow-size-change",
        is_flag=True,
        help="Sync segments the size-change guard would refuse (guard.max_size_change_share, guard.max_entered_share).",
    )(fn)
    return click.option("--allow-mass-exit", is_flag=True, help="Sync segments the mass-exit guard would refuse.")(fn)


def metrics_options(fn):
    """--metrics emf: one Embedded Metric Format line per segment after the run (see sync/output/metrics.py).

    The options are kept out of the command's signature: they reach ``_execute``
    through the click context.
    """

    @wraps(fn)
    def wrapper(*args, metrics, metrics_file, metrics_namespace, **kwargs):
        click.get_current_context().meta["lakeseg.metrics"] = (metrics, metrics_file, metrics_namespace)
        return fn(*args, **kwargs)

    wrapper = click.option(
        "--metrics-namespace",
        envvar="LAKESEG_METRICS_NAMESPACE",
        default="lakeseg",
        show_default=True,
        help="CloudWatch namespace of the metrics.",
    )(wrapper)
    wrapper = click.option(
        "--metrics-file",
        envvar="LAKESEG_METRICS_FILE",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Append the metric lines to this file instead of stderr.",
    )(wrapper)
    wrapper = click.option(
        "--metrics",
        envvar="LAKESEG_METRICS",
        type=click.Choice(["none", "emf"]),
        default="none",
        show_default=True,
        help="Also print per-segment figures as CloudWatch Embedded Metric Format lines.",
    )(wrapper)
    return wrapper


def _emit_metrics(report) -> None:
    ctx = click.get_current_context(silent=True)
    metrics, metrics_file, namespace = (ctx.meta.get("lakeseg.metrics") if ctx else None) or ("none", None, "")
    if metrics != "emf":
        return
    from sync.output.metrics import emit_segment_metrics

    emit_segment_metrics(report.as_dict(), namespace=namespace, path=metrics_file, stream=sys.stderr)


def _execute(
    req,
    command: str,
    dry_run: bool,
    as_json: bool,
    report_path: Path | None = None,
    no_report: bool = False,
    dbt_args: tuple[str, ...] | None = None,
) -> None:
    from sync.app.run import build_then_sync
    from sync.app.wiring import run_sync
    from sync.output.terminal import Progress

    progress = Progress(enabled=None if not as_json else False)
    try:
        with terminate_on_sigterm():  # SIGTERM raises Terminated: finally blocks and cleanup run
            if dbt_args is not None:
                report = build_then_sync(req, dbt_args, progress=progress)
            else:
                report = run_sync(req, command=command, dry_run=dry_run, progress=progress)
    except Exception as exc:  # a run that raised is a failure to alert on too, then handled as before
        if not dry_run:
            from sync.app.wiring import send_notifications
            from sync.output.notify import crashed_run

            send_notifications(req, crashed_run("run" if dbt_args is not None else command, exc))
        raise
    finally:
        progress.close()
    _emit_metrics(report)
    if not dry_run and not no_report:
        _write_html_report(req, report_path)
    if not dry_run:  # after the report; bounded, and never changes the exit code
        from sync.app.wiring import send_notifications

        send_notifications(req, report)
    _finish(report, as_json)


def _write_html_report(req, report_path: Path | None) -> None:
    """The HTML report after a sync or run; a failure to write it never changes the run's outcome."""
    from sync.app.wiring import write_html_report

    try:
        written = write_html_report(req, report_path)
    except Exception as exc:  # noqa: BLE001 - the run's own result matters more
        logging.getLogger(__name__).warning("could not write the HTML report: %s", exc)
        return
    click.echo(f"Report: {written.path} ({written.bytes / 1e6:.1f} MB, {written.seconds:.1f} s)", err=True)


@main.command()
@sync_options
@metrics_options
@handle_errors
def plan(
    project_dir,
    profiles_dir,
    target,
    target_path,
    settings_file,
    select,
    exclude,
    dbt_state,
    full_refresh,
    max_exit_share,
    state,
    as_json,
    report_path,
    no_report,
):
    """Show what a sync would send, per segment. Reads only; writes and sends nothing.

    It compares the tables of the last dbt build (not the lake itself) with
    the last committed sync: run `dbt build` first to plan from fresh data.

    \b
    Example:
      lakeseg plan --select seg_email_clickers --json
    """
    req = _request(
        project_dir,
        profiles_dir,
        target,
        target_path,
        settings_file,
        select,
        exclude,
        full_refresh,
        max_exit_share,
        state,
        dbt_state=dbt_state,
    )
    _execute(req, "plan", True, as_json)


@main.command("sync")
@sync_options
@metrics_options
@guard_override_options
@handle_errors
def sync_cmd(
    project_dir,
    profiles_dir,
    target,
    target_path,
    settings_file,
    select,
    exclude,
    dbt_state,
    full_refresh,
    max_exit_share,
    state,
    as_json,
    report_path,
    no_report,
    allow_mass_exit,
    allow_size_change,
):
    """Send what changed in each segment since the last successful sync.

    Reads dbt's artifacts: a segment is synced only if its model and every
    test attached to it passed in the latest dbt invocation.

    \b
    Example:
      dbt build && lakeseg sync --select tag:daily
    """
    req = _request(
        project_dir,
        profiles_dir,
        target,
        target_path,
        settings_file,
        select,
        exclude,
        full_refresh,
        max_exit_share,
        state,
        allow_mass_exit,
        dbt_state,
        allow_size_change,
    )
    _execute(req, "sync", False, as_json, report_path, no_report)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@sync_options
@metrics_options
@guard_override_options
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def run(
    project_dir,
    profiles_dir,
    target,
    target_path,
    settings_file,
    select,
    exclude,
    dbt_state,
    full_refresh,
    max_exit_share,
    state,
    as_json,
    report_path,
    no_report,
    allow_mass_exit,
    allow_size_change,
    dbt_args,
):
    """`dbt build`, then sync, in one process: the unit a scheduler calls.

    --select/--exclude go to dbt build too: it builds what `dbt build -s X`
    builds and syncs those segments. Arguments after `--` go to dbt build.
    Only segments whose model and tests passed in this build are synced. as_of is fixed once at the start (the
    lake's end on a local DuckDB lake, now elsewhere) unless pinned with
    --vars, passed to dbt and recorded in run history.

    \b
    Example:
      lakeseg run -- --vars '{as_of: "2026-11-01 00:00:00"}'
    """
    req = _request(
        project_dir,
        profiles_dir,
        target,
        target_path,
        settings_file,
        select,
        exclude,
        full_refresh,
        max_exit_share,
        state,
        allow_mass_exit,
        dbt_state,
        allow_size_change,
    )
    _execute(req, "run", False, as_json, report_path, no_report, dbt_args=dbt_args)


@main.command()
@project_options
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--state", default=None, help="State location: a directory or s3://bucket/prefix.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--run-id", default=None, help="Show one run in full.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def history(project_dir, profiles_dir, target, settings_file, state, limit, run_id, as_json):
    """Past runs: per segment, counts, files, job ids, status, errors, durations.

    \b
    Example:
      lakeseg history --limit 5
    """
    from sync.app.history import history_lines, load_history

    runs = load_history(project_dir, profiles_dir, target, settings_file, state, limit, run_id)
    if run_id is not None and not runs:
        raise ConfigError(f"no run {run_id!r} in the run history; `lakeseg history` lists the runs recorded")
    if as_json:
        click.echo(json.dumps(runs if run_id is None else runs[0], indent=2, default=str))
        return
    click.echo("\n".join(history_lines(runs, detailed=run_id is not None)) or "No runs recorded yet.")


@main.command()
@project_options
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--state", default=None, help="State location: a directory or s3://bucket/prefix.")
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="LAKESEG_REPORT_PATH",
    help="HTML file to write (default: build/report/index.html in the project).",
)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Runs of history to read.")
@handle_errors
def report(project_dir, profiles_dir, target, settings_file, state, output, limit):
    """Write the HTML report: segments over time, refusals, skips, quarantine, deliveries.

    One self-contained file (charts included, no network needed to view it),
    built from run history. `lakeseg sync` and `lakeseg run` also write it.

    \b
    Example:
      lakeseg report -o /tmp/segments.html
    """
    from sync.app.wiring import SyncRequest, write_html_report
    from sync.dbt.invoke import DbtProject

    req = SyncRequest(project=DbtProject(project_dir, profiles_dir, target), settings_file=settings_file, state=state)
    written = write_html_report(req, output, limit=limit)
    click.echo(
        f"Wrote {written.path}: {written.runs} run(s), {written.segments} segment(s), "
        f"{written.bytes / 1e6:.1f} MB in {written.seconds:.1f} s."
    )


@main.command()
@project_options
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--state", default=None, help="State location: a directory or s3://bucket/prefix.")
@click.option(
    "--destination", "destination_key", required=True, help="Destination key (as shown by `lakeseg history`)."
)
@click.option("--segment", required=True)
@handle_errors
def unlock(project_dir, profiles_dir, target, settings_file, state, destination_key, segment):
    """Remove a (destination, segment) lock left by a run that died.

    Check first that the run holding it is really gone: two syncs delivering
    the same segment at once can import it twice.
    """
    from sync.app.history import force_unlock

    info = force_unlock(project_dir, profiles_dir, target, settings_file, state, destination_key, segment)
    if info is None:
        click.echo(f"No lock held for {destination_key}/{segment}.")
    else:
        click.echo(
            f"Removed the lock on {destination_key}/{segment} held by {info.owner} for {info.age_seconds / 60:.0f} min."
        )


# --------------------------------------------------------------------------- lake


@main.group()
def lake() -> None:
    """The sample data lake (synthetic, deterministic)."""


class LakeProgress:
    """``lake generate``'s progress on stderr: a rich bar on a terminal, otherwise one
    plain line at the start and at each further tenth of the write steps."""

    def __init__(self, stream=None):
        import time

        from sync.output.terminal import Progress

        self.stream = stream or sys.stderr
        self.bars = Progress(self.stream, enabled=True) if self.stream.isatty() else None
        self.started, self.clock = time.monotonic(), time.monotonic
        self.shown = -1  # the last tenth a line was written for

    def __call__(self, done: int, total: int) -> None:
        if self.bars is not None:
            self.bars("sample lake", "writing chunks", done, total)
            return
        tenth = done * 10 // max(1, total)
        if tenth > self.shown:
            self.shown = tenth
            click.echo(
                f"lake generate: {done}/{total} chunks written ({done / max(1, total):.0%}) "
                f"after {self.clock() - self.started:.0f}s",
                file=self.stream,
            )

    def close(self) -> None:
        if self.bars is not None:
            self.bars.close()


@lake.command("generate")
@click.option(
    "--path",
    type=click.Path(path_type=Path),
    default=Path("build/lake"),
    show_default=True,
    help="Directory to write the lake into (replaced).",
)
@click.option("--endpoints", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--events-per-endpoint", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=200, show_default=True, help="Days of events.")
@click.option("--end", default=None, help="Exclusive end of the event window, UTC (default 2026-11-01T00:00:00).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when a lake with the same parameters and format exists (an older format is rewritten).",
)
@handle_errors
def lake_generate(path, endpoints, events_per_endpoint, days, end, seed, if_missing):
    """Write the sample lake: DUE all_events + CRM tables as Parquet.

    \b
    Example:
      lakeseg lake generate --endpoints 1000000 --path build/lake-1m
    """
    import time

    from sync.lake.sample_lake import DEFAULT_END, LakeSpec, generate, read_manifest

    spec = LakeSpec(
        endpoints=endpoints, events_per_endpoint=events_per_endpoint, days=days, end=end or DEFAULT_END, seed=seed
    )
    from sync.lake.sample_lake import LAKE_FORMAT

    if (
        if_missing
        and (existing := read_manifest(path))
        and existing.get("spec") == spec.__dict__
        and existing.get("format") == LAKE_FORMAT
    ):
        click.echo(f"Sample lake at {path} is up to date ({existing['rows']['all_events']:,} events).")
        return
    started = time.monotonic()
    progress = LakeProgress()
    try:
        manifest = generate(path, spec, progress=progress)
    finally:
        progress.close()
    rows = ", ".join(f"{k} {v:,}" for k, v in manifest["rows"].items())
    click.echo(f"Sample lake written to {path} in {time.monotonic() - started:.1f}s: {rows}.")


if __name__ == "__main__":  # pragma: no cover
    main()
