"""Finding and reading dbt's artifacts: manifest.json and run_results.json.

The target path is, in order: the ``--target-path`` option, ``DBT_TARGET_PATH``,
``target-path`` in ``dbt_project.yml``, then ``target``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sync.core import clock
from sync.core.errors import ArtifactError
from sync.dbt.contract import Segment, is_segment_node, test_name, tests_by_model

log = logging.getLogger(__name__)

BUILD_HINT = "run `dbt build` (or `lakeseg run`)"
PARSE_HINT = "run `dbt parse` or `dbt build`"
# Project folders whose files shape the manifest (dbt_project.yml keys and dbt's defaults).
PROJECT_PATHS = {
    "model-paths": ["models"],
    "macro-paths": ["macros"],
    "test-paths": ["tests"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "analysis-paths": ["analyses"],
}
SHAPING_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py"}


def _project_config(project_dir: Path) -> dict:
    """dbt_project.yml as a mapping; empty when it is absent, unreadable or not a mapping (dbt reports those)."""
    try:
        config = yaml.safe_load((Path(project_dir) / "dbt_project.yml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def resolve_target_path(project_dir: Path, target_path: str | os.PathLike | None = None) -> Path:
    if target_path:
        path = Path(target_path)
    elif os.environ.get("DBT_TARGET_PATH"):
        path = Path(os.environ["DBT_TARGET_PATH"])
    else:
        path = Path(_project_config(project_dir).get("target-path") or "target")
    return Path(project_dir) / path  # an absolute path stays as it is


def _load(path: Path, what: str, hint: str) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{what} not found at {path}: {hint}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{what} at {path} is unreadable ({exc}): {hint}") from exc
    if not isinstance(doc, dict):
        raise ArtifactError(
            f"{what} at {path} is not a dbt artifact (a JSON {type(doc).__name__}, expected an object): {hint}"
        )
    return doc


def load_manifest(target_dir: Path) -> dict:
    path = target_dir / "manifest.json"
    manifest = _load(path, "dbt manifest", PARSE_HINT)
    nodes = manifest.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise ArtifactError(
            f"dbt manifest at {path} has no nodes (is it a dbt manifest of this project?): {PARSE_HINT}"
        )
    broken = [
        key
        for key, node in nodes.items()
        if not isinstance(node, dict)
        or not isinstance(node.get("unique_id"), str)
        or not isinstance(node.get("resource_type"), str)
    ]
    if broken:
        raise ArtifactError(
            f"dbt manifest at {path} has malformed nodes ({', '.join(map(str, broken[:3]))}): {PARSE_HINT}"
        )
    return manifest


def _check_run_results(path: Path, run_results: dict) -> None:
    results = run_results.get("results")
    if not isinstance(results, list):
        raise ArtifactError(f"dbt run results at {path} have no 'results' list: {BUILD_HINT}")
    for i, result in enumerate(results):
        if (
            not isinstance(result, dict)
            or not isinstance(result.get("unique_id"), str)
            or not isinstance(result.get("status"), str)
        ):
            raise ArtifactError(
                f"dbt run results at {path}: result #{i + 1} has no unique_id/status "
                f"(not written by dbt?): {BUILD_HINT}"
            )


def require_segments(manifest: dict, where: Path) -> None:
    """A manifest without a single segment model is the wrong project or target path."""
    if not any(isinstance(n, dict) and is_segment_node(n) for n in (manifest.get("nodes") or {}).values()):
        raise ArtifactError(
            f"dbt manifest at {where} declares no segment models (models in models/segments/ "
            f"or with config.meta.lakeseg): check --project-dir / --target-path, then {PARSE_HINT}"
        )


@dataclass
class Eligibility:
    """Whether a segment may be synced, per the latest dbt invocation."""

    ok: bool
    reason: str = ""
    failed_tests: list[str] = field(default_factory=list)


@dataclass
class Artifacts:
    target_dir: Path
    manifest: dict
    run_results: dict

    @property
    def invocation_id(self) -> str | None:
        return (self.run_results.get("metadata") or {}).get("invocation_id")

    @property
    def generated_at(self) -> str | None:
        return (self.run_results.get("metadata") or {}).get("generated_at")

    def _results(self) -> dict[str, dict]:
        return {r["unique_id"]: r for r in self.run_results.get("results") or []}

    def was_built(self, segment: Segment) -> bool:
        """Whether the latest dbt invocation built (or tried to build) the segment's model."""
        return segment.unique_id in self._results()

    def eligibility(self, segment: Segment) -> Eligibility:
        results = self._results()
        model = results.get(segment.unique_id)
        if model is None:
            return Eligibility(False, f"not built in the latest dbt invocation: {BUILD_HINT}")
        if model.get("status") != "success":
            # dbt's message may quote data (a value a cast refused): the reason names the node, the log
            # keeps the message at debug level.
            log.debug("dbt's message for %s: %s", segment.unique_id, model.get("message"))
            return Eligibility(
                False,
                f"model {model.get('status')} in the latest dbt invocation "
                f"({segment.unique_id}); dbt's message is in dbt's log",
            )
        failed, missing = [], []
        for test in tests_by_model(self.manifest).get(segment.unique_id, []):
            res = results.get(test["unique_id"])
            if res is None:
                missing.append(test["name"])
            elif res.get("status") != "pass":
                log.debug("dbt's message for %s: %s", test["unique_id"], res.get("message"))
                failed.append(
                    f"{test['name']} ({res.get('status')}"
                    + (f", {res['failures']} failing rows" if res.get("failures") else "")
                    + ")"
                )
        if failed:
            return Eligibility(False, "tests did not pass: " + "; ".join(failed), failed)
        if missing:
            return Eligibility(
                False,
                "tests did not run in the latest dbt invocation (" + ", ".join(missing) + f"): {BUILD_HINT}",
                missing,
            )
        return Eligibility(True)


def load_artifacts(project_dir: Path, target_path: str | None = None) -> Artifacts:
    """Load manifest + run_results and check they belong together."""
    target_dir = resolve_target_path(project_dir, target_path)
    manifest = load_manifest(target_dir)
    require_segments(manifest, target_dir / "manifest.json")
    run_results = _load(target_dir / "run_results.json", "dbt run results", BUILD_HINT)
    _check_run_results(target_dir / "run_results.json", run_results)
    m_inv = (manifest.get("metadata") or {}).get("invocation_id")
    r_inv = (run_results.get("metadata") or {}).get("invocation_id")
    if m_inv and r_inv and m_inv != r_inv:
        raise ArtifactError(
            f"{target_dir}/manifest.json and run_results.json come from different dbt invocations "
            f"(a later `dbt parse`/`dbt compile` replaced the manifest): {BUILD_HINT}"
        )
    artifacts = Artifacts(target_dir, manifest, run_results)
    _check_fresh(project_dir, artifacts)
    return artifacts


def _built_at(artifacts: Artifacts) -> float:
    """When dbt read the project: the earliest of the manifest's generated_at and the artifacts' mtimes."""
    times = [(artifacts.target_dir / name).stat().st_mtime for name in ("manifest.json", "run_results.json")]
    stamp = (artifacts.manifest.get("metadata") or {}).get("generated_at")
    parsed = clock.parse_stamp(stamp)  # None unless an ISO time (JSON holds no other kind of time)
    if parsed is not None:
        times.append(parsed.timestamp())
    return min(times)


def shaping_files(project_dir: Path) -> list[Path]:
    """Every file that shapes the manifest: dbt_project.yml and the SQL/YAML/CSV under the project's paths."""
    root = Path(project_dir)
    project_file = root / "dbt_project.yml"
    files = [project_file] if project_file.exists() else []
    config = _project_config(root)
    for key, default in PROJECT_PATHS.items():
        folders = config.get(key)
        for folder in folders if isinstance(folders, list) else default:
            base = root / str(folder)
            if base.is_dir():
                files.extend(p for p in base.rglob("*") if p.suffix in SHAPING_SUFFIXES and p.is_file())
    return files


def _check_fresh(project_dir: Path, artifacts: Artifacts) -> None:
    """Refuse artifacts older than any file that shapes the manifest: models' SQL and YAML, macros,
    tests, seeds, snapshots and dbt_project.yml (mtime against when dbt read the project)."""
    from sync.dbt.exposures import EXPOSURES_FILE

    built = _built_at(artifacts)
    root = Path(project_dir)
    stale = []
    for path in shaping_files(root):
        if path == root / EXPOSURES_FILE:
            continue  # written by `lakeseg check` itself; exposures say where segments go, not what they hold
        try:
            if path.stat().st_mtime > built:
                stale.append(path.relative_to(root).as_posix())
        except OSError:
            continue
    if stale:
        raise ArtifactError(
            f"dbt artifacts in {artifacts.target_dir} are older than {', '.join(sorted(stale)[:3])}"
            + (f" and {len(stale) - 3} other file(s)" if len(stale) > 3 else "")
            + f" (edited after the last dbt build): {BUILD_HINT}"
        )


__all__ = ["Artifacts", "Eligibility", "load_artifacts", "load_manifest", "resolve_target_path", "test_name"]
