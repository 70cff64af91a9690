"""Human-readable output: progress on long work, the summary table at the end."""

from __future__ import annotations

import sys
import time

import click

from .engine import RunReport

COLUMNS = ("segment", "status", "rows", "entered", "changed", "exited", "unchanged", "sent", "files")


def _row(seg) -> list[str]:
    plan = seg.plan or {}

    def n(key):
        return f"{plan[key]:,}" if key in plan else "-"

    sent = f"{plan['to_send']:,}" if seg.status in ("synced", "planned") and "to_send" in plan else "0" if plan else "-"
    return [seg.segment, seg.status, n("rows"), n("entered"), n("changed"), n("exited"), n("unchanged"),
            sent, str(len(seg.files)) if seg.files else "-"]


def summary_table(report: RunReport) -> str:
    rows = [list(COLUMNS)] + [_row(s) for s in report.segments]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for k, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(report: RunReport) -> str:
    verb = {"plan": "Plan", "sync": "Sync", "run": "Run"}.get(report.command, report.command)
    as_of = f" · as_of {report.as_of}" if report.as_of else ""
    out = [f"{verb} {report.run_id} · target {report.target}{as_of} → {report.destination} · state {report.state}", "",
           summary_table(report)]
    notes = [f"  {s.segment}: {s.reason}" for s in report.segments if s.reason and s.status not in ("planned", "unchanged")]
    notes += [f"  {s.segment}: full send ({s.reason})" for s in report.segments if s.status == "planned" and s.reason]
    notes += [f"  {s.segment}: {n}" for s in report.segments for n in s.notes]
    if notes:
        out += ["", *notes]
    delivered = [s for s in report.segments if s.location]
    if delivered:
        out += ["", "Delivered to:"] + [f"  {s.segment}: {s.location}" for s in delivered]
    ok = sum(1 for s in report.segments if s.ok)
    out += ["", f"{ok} of {len(report.segments)} segment(s) ok · status {report.status}"]
    return "\n".join(out)


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0

    def __call__(self, segment: str, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        filled = int(width * done / total) if total else 0
        bar = "#" * filled + "-" * (width - filled)
        click.echo(f"\r\x1b[2K{segment:<28} {stage:<14} [{bar}] {done}/{total}", file=self.stream, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("\r\x1b[2K", file=self.stream, nl=False)
