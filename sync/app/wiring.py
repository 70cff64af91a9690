"""Wiring: from a dbt project, its profile and lakeseg.yml to a ready SyncRun.

The CLI calls these; tests call them too, passing their own boto3 session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sync.core import aws
from sync.core.errors import ConfigError
from sync.dbt.artifacts import load_artifacts, resolve_target_path
from sync.dbt.as_of import as_of_of_invocation
from sync.dbt.invoke import DbtProject
from sync.dbt.profile import Target, load_target
from sync.dbt.selection import DbtSelector
from sync.destinations import build_destination, state_key
from sync.destinations.files import FilesDestinationSettings
from sync.readers.base import SegmentReader
from sync.run.digest_key import resolve_digest_key
from sync.run.engine import Progress, RunReport, SyncOptions, SyncRun, new_run_id
from sync.run.imports_table import ImportsTable
from sync.run.lease import RunLease, open_lease
from sync.run.pushdown import check_engine, pushdown_problem
from sync.settings import Settings, load_settings
from sync.state.deltas import Compaction


@dataclass
class SyncRequest:
    """Everything a sync/plan/run invocation asks for (CLI flags, env)."""

    project: DbtProject
    target_path: str | None = None
    settings_file: Path | None = None
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    allow_mass_exit: bool = False
    max_exit_share: float | None = None
    allow_size_change: bool = False
    destination_path: str | None = None  # files destination override
    state: str | None = None
    dbt_state: Path | None = None  # dbt artifacts to compare with, for state:modified selectors


def _boto_session(region: str | None = None):
    return aws.session(region)


def build_reader(target: Target, project_dir: Path, session=None, run_id: str | None = None) -> SegmentReader:
    if target.type == "duckdb":
        from sync.readers.duckdb import DuckDBReader

        # Relative to the working directory, as dbt-duckdb resolves it.
        return DuckDBReader(Path(str(target.config.get("path", ""))))
    if target.type == "athena":
        from sync.readers.athena import AthenaReader

        return AthenaReader.from_profile(
            target.config, session or _boto_session(target.config.get("region_name")), run_id=run_id
        )
    raise ConfigError(f"dbt target '{target.name}' uses adapter '{target.type}'; lakeseg reads duckdb and athena")


def build_state(url: str, session=None, kms_key_id: str | None = None):
    from sync.state import open_state_store

    if url.startswith("s3://"):
        return open_state_store(url, s3_client=(session or _boto_session()).client("s3"), kms_key_id=kms_key_id)
    return open_state_store(url)


def prepare_local_database(project: DbtProject) -> None:
    """dbt-duckdb cannot create its database file in a missing directory: make it."""
    target = load_target(Path(project.project_dir), project.profiles_dir, project.target)
    if target.type == "duckdb" and target.config.get("path") not in (None, "", ":memory:"):
        # dbt-duckdb resolves a relative path against the working directory; so do we.
        Path(str(target.config["path"])).parent.mkdir(parents=True, exist_ok=True)


def load_context(req: SyncRequest) -> tuple[Target, Settings]:
    project_dir = Path(req.project.project_dir)
    target = load_target(project_dir, req.project.profiles_dir, req.project.target)
    overrides: dict = {}
    if req.max_exit_share is not None:
        overrides["guard"] = {"max_exit_share": req.max_exit_share}
    if req.state:
        overrides["state"] = req.state
    if req.destination_path:
        overrides["destination"] = {"path": req.destination_path}
    settings = load_settings(
        project_dir, target.name, path=req.settings_file, overrides=overrides, defined_targets=target.targets
    )
    # Local paths in lakeseg.yml are relative to the dbt project.
    if not settings.state.startswith("s3://") and not Path(settings.state).is_absolute():
        settings.state = str(project_dir / settings.state)
    if settings.digest_key.startswith("file:") and not Path(settings.digest_key[5:]).is_absolute():
        settings.digest_key = f"file:{project_dir / settings.digest_key[5:]}"
    dest = settings.destination
    if isinstance(dest, FilesDestinationSettings) and not Path(dest.path).is_absolute():
        settings.destination = dest.model_copy(update={"path": str(project_dir / dest.path)})
    return target, settings


def prepare_run(
    req: SyncRequest,
    *,
    command: str,
    dry_run: bool = False,
    session=None,
    progress: Progress | None = None,
    lease: RunLease | None = None,
) -> SyncRun:
    target, settings = load_context(req)
    run_id = lease.run_id if lease is not None else new_run_id()
    project_dir = Path(req.project.project_dir)
    artifacts = load_artifacts(project_dir, req.target_path)
    if session is None and (
        settings.destination.type != "files" or settings.state.startswith("s3://") or target.type != "duckdb"
    ):
        session = _boto_session(getattr(settings.destination, "region", None) or target.config.get("region_name"))
    destination = build_destination(settings.destination, session)
    state = build_state(settings.state, session, settings.state_kms_key_id)
    state.compaction = Compaction.from_env(settings.compact_share, settings.max_deltas)
    options = SyncOptions(
        select=req.select,
        exclude=req.exclude,
        full_refresh=req.full_refresh,
        allow_mass_exit=req.allow_mass_exit,
        max_exit_share=settings.max_exit_share,
        allow_size_change=req.allow_size_change,
        max_size_change_share=settings.max_size_change_share,
        max_entered_share=settings.max_entered_share,
        max_file_bytes=settings.max_file_bytes,
        memory_limit=settings.memory_limit,
        dry_run=dry_run,
        digest_key=resolve_digest_key(settings.digest_key, session),
        selector=DbtSelector(
            req.project, resolve_target_path(project_dir, req.target_path) / "lakeseg-select", req.dbt_state
        ),
    )
    options.diff_engine, options.pushdown_min_rows = settings.diff_engine, settings.pushdown_min_rows
    work_dir = settings.work_dir if settings.work_dir.is_absolute() else project_dir / settings.work_dir
    reader = build_reader(target, project_dir, session, run_id)
    destination_key = state_key(destination, settings.destination)
    run = SyncRun(
        artifacts=artifacts,
        reader=reader,
        destination=destination,
        destination_key=destination_key,
        state=state,
        lake=build_lake_diff(target, settings, destination, reader, state, destination_key, run_id, session),
        options=options,
        target=target.name,
        work_dir=work_dir,
        command=command,
        progress=progress,
        run_id=run_id,
        lease=lease,
        imports_table=build_imports_table(target, settings, session),
    )
    run.report.as_of = as_of_of_invocation(artifacts.run_results)
    run.report.built_at = artifacts.generated_at
    return run


def build_lake_diff(target: Target, settings: Settings, destination, reader, state, destination_key, run_id, session):
    """The diff in Athena (``sync.run.pushdown``) where ``diff.engine`` may use it, else None; ``athena`` where
    the deployment cannot push down is a configuration error."""
    problem = pushdown_problem(
        athena_target=target.type == "athena",
        state_on_s3=settings.state.startswith("s3://"),
        expires=destination.refresh_after is not None,
    )
    check_engine(settings.diff_engine, problem)
    if problem is not None or settings.diff_engine == "duckdb":
        return None
    from sync.run.pushdown.lake import LakeDiff

    region = target.config.get("region_name")
    glue = (session or _boto_session(region)).client("glue", region_name=region)
    return LakeDiff(reader, glue, state, destination_key, run_id)


def build_imports_table(target: Target, settings: Settings, session=None) -> ImportsTable | None:
    """Where confirmed deliveries are registered: Glue on Athena with an S3 destination, DuckDB views locally."""
    from sync.run.imports_table import DuckDBImportsViews, GlueImportsTable

    if isinstance(settings.destination, FilesDestinationSettings):
        return DuckDBImportsViews(Path(settings.destination.path))
    if settings.destination.type == "pinpoint" and target.type == "athena":
        region = target.config.get("region_name")
        glue = (session or _boto_session(region)).client("glue", region_name=region)
        return GlueImportsTable(glue, f"{target.config.get('schema', 'lakeseg')}_imports")
    return None


def run_lease(req: SyncRequest, *, command: str, session=None) -> RunLease:
    """The deployment's run lease (not yet taken): one run or sync at a time (sync/run/lease.py)."""
    _, settings = load_context(req)
    return open_lease(
        build_state(settings.state, session, settings.state_kms_key_id), run_id=new_run_id(), command=command
    )


def run_sync(
    req: SyncRequest,
    *,
    command: str = "sync",
    dry_run: bool = False,
    session=None,
    progress: Progress | None = None,
    lease: RunLease | None = None,
) -> RunReport:
    """One sync. It runs under the run lease: ``lease`` when the caller holds it (``lakeseg run``), else
    its own, taken here; a plan (``dry_run``), which writes and sends nothing, takes none."""
    if dry_run or lease is not None:
        return prepare_run(
            req, command=command, dry_run=dry_run, session=session, progress=progress, lease=lease
        ).execute()
    with run_lease(req, command=command, session=session) as own:
        return prepare_run(req, command=command, session=session, progress=progress, lease=own).execute()


def write_html_report(req: SyncRequest, path: Path | None = None, *, limit: int | None = None, session=None):
    """Write the HTML report from the run history in the request's state store.

    ``path`` defaults to ``build/report/index.html`` in the dbt project.
    """
    from sync.output.report_html import DEFAULT_REPORT_PATH, DEFAULT_RUNS, write_report

    _, settings = load_context(req)
    state = build_state(settings.state, session, settings.state_kms_key_id)
    out = Path(path) if path else Path(req.project.project_dir) / DEFAULT_REPORT_PATH
    return write_report(state, out, limit=limit or DEFAULT_RUNS)


def send_notifications(req: SyncRequest, report: RunReport | dict) -> list[str]:
    """The run's alerts, as the target's ``notify:`` block asks (sync/output/notify.py); never raises.

    ``report`` is the run's report, or for a run that raised, ``sync.output.notify.crashed_run``'s document.
    """
    import logging

    from sync.output.notify import notify

    try:
        _, settings = load_context(req)
    except ConfigError as exc:  # the run's own error says so already: no alert settings to read, no second word
        logging.getLogger(__name__).debug("notify: settings not read: %s", exc)
        return []
    except Exception as exc:  # noqa: BLE001 - an alert never changes the run's outcome
        logging.getLogger(__name__).warning("notify: settings not read: %s", exc)
        return []
    doc = report if isinstance(report, dict) else report.as_dict()
    if not doc.get("target"):
        doc = {**doc, "target": settings.target}
    return notify(doc, settings.notify.model_dump() if settings.notify else None)
