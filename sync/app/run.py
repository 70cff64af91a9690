"""``lakeseg run``: ``dbt build`` then the sync, in one process -- the unit a scheduler calls.

The selection is dbt's contract: ``lakeseg run -s seg_x`` builds what ``dbt build -s seg_x`` builds
(and ``--exclude``, ``--dbt-state`` as dbt's ``--state``), then syncs those segments; the rest of the
project is neither built nor synced. Settings are read first, so a mistake in ``lakeseg.yml`` costs no
build; ``as_of`` is fixed once for the whole run unless pinned with ``--vars``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from sync.app.wiring import SyncRequest, load_context, prepare_local_database, prepare_run, run_lease
from sync.dbt.artifacts import resolve_target_path
from sync.dbt.as_of import fix_as_of
from sync.dbt.invoke import invoke
from sync.dbt.profile import load_target
from sync.run.engine import Progress, RunReport

log = logging.getLogger(__name__)


def dbt_build_args(req: SyncRequest, dbt_args: Sequence[str]) -> list[str]:
    """The arguments of the run's ``dbt build``: the run's selection, its ``as_of``, then the user's own."""
    project = req.project
    _, extra = fix_as_of(
        load_target(Path(project.project_dir), project.profiles_dir, project.target).type, list(dbt_args)
    )
    args: list[str] = []
    if req.select:
        args += ["--select", *req.select]
    if req.exclude:
        args += ["--exclude", *req.exclude]
    if req.dbt_state is not None:
        args += ["--state", str(req.dbt_state)]
    if req.target_path:
        args += ["--target-path", str(resolve_target_path(project.project_dir, req.target_path))]
    return args + extra


def build_then_sync(
    req: SyncRequest, dbt_args: Sequence[str] = (), *, progress: Progress | None = None, session=None
) -> RunReport:
    """``dbt build`` (the request's selection) and then sync what it built, both under the run lease.

    The lease is taken before the build: a second run of the deployment (the other runner, a person)
    stops with LeaseHeld (exit 3) before building anything (sync/run/lease.py).
    """
    load_context(req)  # settings first: a typo in lakeseg.yml must not cost a whole dbt build
    prepare_local_database(req.project)
    with run_lease(req, command="run", session=session) as lease:
        started = time.monotonic()
        if not invoke("build", req.project, dbt_build_args(req, dbt_args)):
            log.warning("dbt build reported failures; syncing only the segments whose model and tests passed")
        built = round(time.monotonic() - started, 3)
        lease.ensure_held()
        run = prepare_run(req, command="run", session=session, progress=progress, lease=lease)
        run.report.phases["dbt_build"] = built
        return run.execute()
