"""``lakeseg history`` and ``lakeseg unlock``: reading and repairing state."""

from __future__ import annotations

from pathlib import Path

from sync.app.wiring import SyncRequest, build_state, load_context
from sync.dbt.invoke import DbtProject
from sync.output.report_html import run_outcome
from sync.output.terminal import full_send_reason


def _state(project_dir, profiles_dir, target, settings_file, state):
    req = SyncRequest(project=DbtProject(project_dir, profiles_dir, target), settings_file=settings_file, state=state)
    _, settings = load_context(req)
    return build_state(settings.state)


def load_history(project_dir: Path, profiles_dir, target, settings_file, state, limit: int, run_id: str | None):
    from sync.run.engine import mark_interrupted

    store = _state(project_dir, profiles_dir, target, settings_file, state)
    if run_id:
        run = store.get_run(run_id)
        return [mark_interrupted(run)] if run else []
    return [mark_interrupted(run) for run in store.list_runs(limit)]


def force_unlock(project_dir, profiles_dir, target, settings_file, state, destination: str, segment: str):
    return _state(project_dir, profiles_dir, target, settings_file, state).force_unlock(destination, segment)


def quarantined_rows(segment: dict) -> list[dict]:
    rows = segment.get("quarantined")
    return [q for q in rows if isinstance(q, dict)] if isinstance(rows, list) else []


def history_lines(runs: list[dict], detailed: bool = False) -> list[str]:
    lines = []
    for run in runs:
        segs = run.get("segments") or []
        by_status: dict[str, int] = {}
        for s in segs:
            by_status[s["status"]] = by_status.get(s["status"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items())) or "no segments"
        outcome = run_outcome(run)
        lines.append(
            f"{run['run_id']}  {run.get('command', '?'):<4}  {outcome:<11}  "
            f"{run.get('started_at', '')}  {run.get('destination', '')}  {summary}"
            + (f"  as_of {run['as_of']}" if run.get("as_of") else "")
        )
        if outcome == "interrupted":
            lines.append(
                "    interrupted: the run never finished (killed or crashed); segments it had not "
                "committed are sent again by the next run"
            )
        if run.get("error"):
            lines.append(f"    error: {run['error']}")
        for s in segs:
            plan = s.get("plan") or {}
            full = full_send_reason(plan)
            if not detailed and s["status"] in ("synced", "unchanged") and not full and not quarantined_rows(s):
                continue
            counts = ", ".join(f"{k} {plan[k]:,}" for k in ("rows", "entered", "changed", "exited") if k in plan)
            reason = s.get("reason") if s.get("reason") != full else ""
            lines.append(
                f"    {s['segment']}: {s['status']}"
                + (f" ({counts})" if counts else "")
                + (f" - full send: {full}" if full else "")
                + (f" - {reason}" if reason else "")
            )
            for note in s.get("notes") or []:
                lines.append(f"      note: {note}")
            quarantined = quarantined_rows(s)
            if quarantined:
                lines.append(f"      quarantined: {len(quarantined)} row(s) the platform refused, resent every run")
                for q in quarantined[:5]:
                    tries = f", {q['attempts']} attempt(s)" if q.get("attempts") else ""
                    lines.append(f"        {q.get('id')}{tries}: {q.get('code') or q.get('message', '')}")
            for job in s.get("jobs") or []:
                lines.append(
                    f"      job {job.get('job_id')}: {job.get('status')} processed={job.get('total_processed')} "
                    f"failures={job.get('total_failures')}"
                )
                for failure in (job.get("failures") or [])[:5]:
                    lines.append(f"        {failure}")
    return lines
