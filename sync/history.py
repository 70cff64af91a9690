"""``lakeseg history`` and ``lakeseg unlock``: reading and repairing state."""

from __future__ import annotations

from pathlib import Path

from .dbt_invoke import DbtProject
from .runtime import SyncRequest, build_state, load_context


def _state(project_dir, profiles_dir, target, settings_file, state):
    req = SyncRequest(project=DbtProject(project_dir, profiles_dir, target), settings_file=settings_file, state=state)
    _, settings = load_context(req)
    return build_state(settings.state)


def load_history(project_dir: Path, profiles_dir, target, settings_file, state, limit: int, run_id: str | None):
    store = _state(project_dir, profiles_dir, target, settings_file, state)
    if run_id:
        run = store.get_run(run_id)
        return [run] if run else []
    return store.list_runs(limit)


def force_unlock(project_dir, profiles_dir, target, settings_file, state, destination: str, segment: str):
    return _state(project_dir, profiles_dir, target, settings_file, state).force_unlock(destination, segment)


def history_lines(runs: list[dict], detailed: bool = False) -> list[str]:
    lines = []
    for run in runs:
        segs = run.get("segments") or []
        by_status: dict[str, int] = {}
        for s in segs:
            by_status[s["status"]] = by_status.get(s["status"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items())) or "no segments"
        lines.append(f"{run['run_id']}  {run.get('command', '?'):<4}  {run.get('status', '?'):<9}  "
                     f"{run.get('started_at', '')}  {run.get('destination', '')}  {summary}"
                     + (f"  as_of {run['as_of']}" if run.get("as_of") else ""))
        if run.get("error"):
            lines.append(f"    error: {run['error']}")
        for s in segs:
            if not detailed and s["status"] in ("synced", "unchanged"):
                continue
            plan = s.get("plan") or {}
            counts = ", ".join(f"{k} {plan[k]:,}" for k in ("rows", "entered", "changed", "exited") if k in plan)
            lines.append(f"    {s['segment']}: {s['status']}" + (f" ({counts})" if counts else "")
                         + (f" - {s['reason']}" if s.get("reason") else ""))
            for job in s.get("jobs") or []:
                lines.append(f"      job {job.get('job_id')}: {job.get('status')} processed={job.get('total_processed')} "
                             f"failures={job.get('total_failures')}")
                for failure in (job.get("failures") or [])[:5]:
                    lines.append(f"        {failure}")
    return lines
