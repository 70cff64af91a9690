"""``lakeseg check`` as a library call: parse the project, then check the manifest."""

from __future__ import annotations

from pathlib import Path

from .artifacts import load_manifest, require_segments, resolve_target_path
from .check import Problem, check_manifest
from .contract import Segment
from .dbt_invoke import DbtProject, invoke
from .errors import ConfigError


def run_check(project_dir: Path, profiles_dir: Path | None = None, target: str | None = None, *,
              parse: bool = True, target_path: str | None = None) -> tuple[list[Segment], list[Problem]]:
    target_dir = resolve_target_path(Path(project_dir), target_path)
    if parse:
        # Parse into a directory of our own: replacing target/manifest.json would
        # separate it from the run_results.json of the last `dbt build`.
        target_dir = target_dir / "lakeseg-check"
        extra = ["--target-path", str(target_dir)]
        if not invoke("parse", DbtProject(Path(project_dir), profiles_dir, target), extra):
            raise ConfigError("`dbt parse` failed; fix the errors dbt printed above, then run lakeseg check again")
    manifest = load_manifest(target_dir)
    require_segments(manifest, target_dir / "manifest.json")
    return check_manifest(manifest)
