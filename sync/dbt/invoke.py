"""Running dbt from lakeseg (``lakeseg check`` parses, ``lakeseg run`` builds).

dbt runs in-process through its programmatic entry point, so a scheduler
needs one process and one exit code.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sync.core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DbtProject:
    """Where the dbt project and its profile live, and which target to use."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    target: str | None = None

    def common_args(self) -> list[str]:
        args = ["--project-dir", str(self.project_dir)]
        profiles = self.profiles_dir or _default_profiles_dir(self.project_dir)
        if profiles is not None:
            args += ["--profiles-dir", str(profiles)]
        if self.target:
            args += ["--target", self.target]
        return args


def _default_profiles_dir(project_dir: Path) -> Path | None:
    if os.environ.get("DBT_PROFILES_DIR"):
        return Path(os.environ["DBT_PROFILES_DIR"])
    for candidate in (project_dir, Path.cwd()):
        if (candidate / "profiles.yml").exists():
            return candidate
    return None  # dbt falls back to ~/.dbt


def invoke(command: str, project: DbtProject, extra: Sequence[str] = ()) -> bool:
    """Run ``dbt <command>``; True when dbt reports success."""
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:  # pragma: no cover - dbt is a hard dependency
        raise ConfigError(f"dbt-core is not installed: {exc}") from exc
    args = [command, *project.common_args(), *extra]
    log.info("running dbt %s", " ".join(args))
    try:
        with _output_on_stderr():
            result = dbtRunner().invoke(args)
    finally:
        _release_duckdb()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise ConfigError(f"dbt {command} could not run: {result.exception}")
    return bool(result.success)


def run_dbt(args: Sequence[str], *, quiet: bool = False):
    """Run dbt with exactly ``args``; dbt's result object (``.success``, ``.result``, ``.exception``).

    ``quiet`` silences dbt's own output (its answer is in ``.result``).
    """
    from dbt.cli.main import dbtRunner

    full = (["--log-level", "none"] if quiet else []) + list(args)
    log.info("running dbt %s", " ".join(full))
    try:
        with _output_on_stderr():
            return dbtRunner().invoke(full)
    finally:
        _release_duckdb()


def _output_on_stderr():
    """dbt's console lines go to stderr: stdout carries only lakeseg's own answer (one JSON document with --json)."""
    return contextlib.redirect_stdout(sys.stderr)


def _release_duckdb() -> None:
    """dbt-duckdb keeps its database open for the life of the process; close it,
    so the sync (same process, in ``lakeseg run``) can attach the file."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - the duckdb adapter is a dependency
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        try:
            env.close()
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("closing dbt-duckdb's environment failed: %s", exc)
    DuckDBConnectionManager.close_all_connections()
    gc.collect()
