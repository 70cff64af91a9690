"""``lakeseg check`` as a library call: parse the project, check the manifest, keep the exposures in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync.core.errors import ConfigError
from sync.dbt.artifacts import load_manifest, require_segments, resolve_target_path
from sync.dbt.check import Problem, check_manifest
from sync.dbt.contract import Segment
from sync.dbt.invoke import DbtProject, invoke

EXPOSURE_MODES = ("write", "check", "off")


def run_check(
    project_dir: Path,
    profiles_dir: Path | None = None,
    target: str | None = None,
    *,
    parse: bool = True,
    target_path: str | None = None,
    exposures: str = "off",
    settings_file: Path | None = None,
) -> tuple[list[Segment], list[Problem]]:
    """Check the segment contract; ``exposures``: 'write' the exposures file, 'check' it is current, or 'off'."""
    from sync.dbt.exposures import prune_missing_models

    target_dir = resolve_target_path(Path(project_dir), target_path)
    if parse:
        if exposures == "write":
            prune_missing_models(Path(project_dir))
        # Parse into a directory of our own: replacing target/manifest.json would
        # separate it from the run_results.json of the last `dbt build`.
        target_dir = target_dir / "lakeseg-check"
        extra = ["--target-path", str(target_dir)]
        if not invoke("parse", DbtProject(Path(project_dir), profiles_dir, target), extra):
            raise ConfigError("`dbt parse` failed; fix the errors dbt printed above, then run lakeseg check again")
    manifest = load_manifest(target_dir)
    require_segments(manifest, target_dir / "manifest.json")
    segments, problems = check_manifest(manifest)
    problems += destination_problems(Path(project_dir), profiles_dir, target, settings_file, segments)
    if exposures != "off":
        problems += _exposures(Path(project_dir), profiles_dir, target, settings_file, segments, exposures == "write")
    return segments, problems


def _exposures(project_dir, profiles_dir, target, settings_file, segments, write: bool) -> list[Problem]:
    from sync.app.wiring import SyncRequest, load_context
    from sync.dbt.exposures import Destination, sync_exposures

    _, settings = load_context(
        SyncRequest(project=DbtProject(project_dir, profiles_dir, target), settings_file=settings_file)
    )
    return sync_exposures(project_dir, segments, Destination.from_settings(settings), write=write)


def _destination_settings(project_dir, profiles_dir, target, settings_file) -> Any:
    """The target's destination block (its settings model), or None when there are no settings to read."""
    from sync.app.wiring import SyncRequest, load_context

    if settings_file is None and not (Path(project_dir) / "lakeseg.yml").exists():
        return None
    _, settings = load_context(
        SyncRequest(project=DbtProject(project_dir, profiles_dir, target), settings_file=settings_file)
    )
    return settings.destination


def destination_problems(project_dir, profiles_dir, target, settings_file, segments: list[Segment]) -> list[Problem]:
    """What the configured destination cannot take: for customer_profiles, fields with no target and bad names."""
    destination = _destination_settings(project_dir, profiles_dir, target, settings_file)
    if destination is None or destination.type != "customer_profiles":
        return []
    from sync.destinations import profile_fields as pf

    key_target = destination.unique_key_target or pf.DEFAULT_UNIQUE_KEY_TARGET
    prefix = destination.segment_name_prefix or ""
    out = []
    for seg in segments:
        for problem in pf.segment_problems(seg.fields, seg.segment_name, unique_key_target=key_target, prefix=prefix):
            if problem.field is None:
                out.append(Problem(seg.name, None, problem.rule, f"segment definition name {problem.why}"))
                continue
            column = next((m.column for m in seg.mappings if m.field == problem.field), None)
            out.append(Problem(seg.name, column, problem.rule, f"{problem.field}: {problem.why}"))
    return out


def destination_limits(project_dir, profiles_dir, target, settings_file) -> dict[str, str]:
    """The configured destination's documented limits (shown by `lakeseg check`)."""
    destination = _destination_settings(project_dir, profiles_dir, target, settings_file)
    if destination is not None and destination.type == "customer_profiles":
        from sync.destinations.profile_fields import LIMITS

        return dict(LIMITS)
    return {}
