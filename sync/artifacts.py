"""Finding and reading dbt's artifacts: manifest.json and run_results.json.

The target path is, in order: the ``--target-path`` option, ``DBT_TARGET_PATH``,
``target-path`` in ``dbt_project.yml``, then ``target``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .contract import Segment, tests_by_model, test_name
from .errors import ArtifactError

BUILD_HINT = "run `dbt build` (or `lakeseg run`)"


def resolve_target_path(project_dir: Path, target_path: str | os.PathLike | None = None) -> Path:
    if target_path:
        path = Path(target_path)
    elif os.environ.get("DBT_TARGET_PATH"):
        path = Path(os.environ["DBT_TARGET_PATH"])
    else:
        configured = None
        project_file = Path(project_dir) / "dbt_project.yml"
        if project_file.exists():
            configured = (yaml.safe_load(project_file.read_text()) or {}).get("target-path")
        path = Path(configured or "target")
    return path if path.is_absolute() else Path(project_dir) / path


def _load(path: Path, what: str, hint: str) -> dict:
    if not path.exists():
        raise ArtifactError(f"{what} not found at {path}: {hint}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{what} at {path} is unreadable ({exc}): {hint}") from exc


def load_manifest(target_dir: Path) -> dict:
    return _load(target_dir / "manifest.json", "dbt manifest", "run `dbt parse` or `dbt build`")


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

    def eligibility(self, segment: Segment) -> Eligibility:
        results = self._results()
        model = results.get(segment.unique_id)
        if model is None:
            return Eligibility(False, f"not built in the latest dbt invocation: {BUILD_HINT}")
        if model.get("status") != "success":
            msg = (model.get("message") or "").strip().splitlines()
            return Eligibility(False, f"model {model.get('status')}: {msg[0] if msg else 'see dbt logs'}")
        failed, missing = [], []
        for test in tests_by_model(self.manifest).get(segment.unique_id, []):
            res = results.get(test["unique_id"])
            if res is None:
                missing.append(test["name"])
            elif res.get("status") != "pass":
                failed.append(f"{test['name']} ({res.get('status')}"
                              + (f", {res['failures']} failing rows" if res.get("failures") else "") + ")")
        if failed:
            return Eligibility(False, "tests did not pass: " + "; ".join(failed), failed)
        if missing:
            return Eligibility(False, "tests did not run in the latest dbt invocation ("
                               + ", ".join(missing) + f"): {BUILD_HINT}", missing)
        return Eligibility(True)


def load_artifacts(project_dir: Path, target_path: str | None = None) -> Artifacts:
    """Load manifest + run_results and check they belong together."""
    target_dir = resolve_target_path(project_dir, target_path)
    manifest = load_manifest(target_dir)
    run_results = _load(target_dir / "run_results.json", "dbt run results", BUILD_HINT)
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


def _check_fresh(project_dir: Path, artifacts: Artifacts) -> None:
    """Refuse artifacts older than the model files they describe."""
    built = (artifacts.target_dir / "run_results.json").stat().st_mtime
    root = Path(project_dir)
    stale = []
    for node in (artifacts.manifest.get("nodes") or {}).values():
        if node.get("resource_type") != "model" or not node.get("original_file_path"):
            continue
        src = root / node["original_file_path"]
        if src.exists() and src.stat().st_mtime > built:
            stale.append(node["original_file_path"])
    if stale:
        raise ArtifactError(
            f"dbt artifacts in {artifacts.target_dir} are older than {', '.join(sorted(stale)[:3])}"
            + (" and others" if len(stale) > 3 else "") + f": {BUILD_HINT}"
        )


__all__ = ["Artifacts", "Eligibility", "load_artifacts", "load_manifest", "resolve_target_path", "test_name"]
