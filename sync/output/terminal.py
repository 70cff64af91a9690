"""Terminal output: progress on long work and the summary table at the end.

Both come from ``rich``: on a terminal, live progress bars on stderr and a
coloured table; otherwise -- a pipe, a log file, a scheduler, ``NO_COLOR`` --
the same table without styles, never folded to a width, and no progress output
at all. ``--json`` prints the run report as JSON instead (no table).
"""

from __future__ import annotations

import io
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sync.run.engine import RunReport

COLUMNS = (
    "segment",
    "status",
    "rows",
    "entered",
    "changed",
    "exited",
    "unchanged",
    "resent",
    "sent",
    "quarantined",
    "files",
    "full send",
)
NUMERIC = {"rows", "entered", "changed", "exited", "unchanged", "resent", "sent", "quarantined", "files"}
STYLES = {
    "synced": "green",
    "unchanged": "green",
    "planned": "cyan",
    "skipped": "yellow",
    "refused": "yellow",
    "partial": "yellow",
    "failed": "bold red",
    "succeeded": "green",
    "interrupted": "yellow",
}


def full_send_reason(plan: dict | None) -> str:
    """Why every row of a segment is (to be) sent, or '' for an incremental send."""
    plan = plan or {}
    if not plan.get("full_refresh"):
        return ""
    return str(plan.get("full_refresh_reason") or "full refresh")


def _row(seg) -> list[str]:
    plan = seg.plan or {}

    def n(key):
        return f"{plan[key]:,}" if key in plan else "-"

    sent = (
        f"{plan['to_send']:,}"
        if seg.status in ("synced", "planned", "partial") and "to_send" in plan
        else "0"
        if plan
        else "-"
    )
    full = full_send_reason(plan) if seg.status in ("synced", "planned", "failed", "partial") else ""
    # resent: ids in doubt (an unconfirmed delivery) or quarantined, sent again whatever the snapshot says
    resent = f"{plan.get('resent', 0) + plan.get('resent_exits', 0):,}" if plan else "-"
    quarantined = f"{len(seg.quarantined):,}" if seg.quarantined else "-"
    return [
        seg.segment,
        seg.status,
        n("rows"),
        n("entered"),
        n("changed"),
        n("exited"),
        n("unchanged"),
        resent,
        sent,
        quarantined,
        str(len(seg.files)) if seg.files else "-",
        full or "-",
    ]


def summary_table(report: RunReport) -> Table:
    """One row per segment: names, statuses and counts never wrap or truncate; only the reason column folds."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    rows = [_row(seg) for seg in report.segments]
    for i, col in enumerate(COLUMNS):
        widest = max([len(col)] + [len(r[i]) for r in rows])
        fixed = col != "full send"
        table.add_column(
            col,
            justify="right" if col in NUMERIC else "left",
            no_wrap=fixed,
            min_width=widest if fixed else None,
            style="dim" if not fixed else None,
        )
    for seg, (name, status, *counts) in zip(report.segments, rows):
        table.add_row(name, Text(status, style=STYLES.get(seg.status, "")), *counts)
    return table


PHASES = ("dbt_build", "select", "read", "diff", "files", "delivery", "commit")


def phase_line(phases: dict[str, float]) -> str:
    """Seconds per phase, in the order a run goes through them, e.g. 'dbt build 12.3 s · read 0.4 s · ...'."""
    order = [p for p in PHASES if p in phases] + sorted(set(phases) - set(PHASES))
    return " · ".join(f"{p.replace('_', ' ')} {phases[p]:.1f} s" for p in order)


def _header(report: RunReport) -> str:
    verb = {"plan": "Plan", "sync": "Sync", "run": "Run"}.get(report.command, report.command)
    as_of = f" · as_of {report.as_of}" if report.as_of else ""
    return f"{verb} {report.run_id} · target {report.target}{as_of} → {report.destination} · state {report.state}"


def _notes(report: RunReport) -> list[str]:
    notes = [
        f"  {s.segment}: {s.reason}"
        for s in report.segments
        if s.reason and s.status not in ("planned", "unchanged") and s.reason != full_send_reason(s.plan)
    ]
    notes += [f"  {s.segment}: {n}" for s in report.segments for n in s.notes]
    return [f"  {n}" for n in report.notes] + notes  # run-level first (a run lease taken over)


def _footer(report: RunReport) -> list[str]:
    out = []
    delivered = [s for s in report.segments if s.location]
    if delivered:
        out += ["", "Delivered to:"] + [f"  {s.segment}: {s.location}" for s in delivered]
    if report.phases:
        out += ["", "Time: " + phase_line(report.phases)]
    if report.left_alone:
        out += ["", f"Left alone (not built in the latest dbt invocation): {', '.join(report.left_alone)}"]
    ok = sum(1 for s in report.segments if s.ok)
    out += ["", f"{ok} of {len(report.segments)} segment(s) ok · status {report.status}"]
    return out


PLAN_NOTE = (
    "A plan compares the tables of the last dbt build (not the lake itself) with the last "
    "committed sync: run `dbt build` (or `lakeseg run`) first to plan from fresh data."
)
# Off a terminal nothing is folded to a screen's width: a log line is as long as it needs to be.
PLAIN_WIDTH = 10_000


def print_report(report: RunReport, console: Console | None = None) -> None:
    """The run's header, table, notes and footer. On a terminal rich colours them and fits them to its
    width; to a pipe or file, or with NO_COLOR, rich writes them without styles."""
    console = console or Console()
    console.print(_header(report), highlight=False, soft_wrap=True)
    console.print()
    console.print(summary_table(report))
    if report.command == "plan":
        console.print()
        console.print(PLAN_NOTE, style="dim", highlight=False)
    notes = _notes(report)
    if notes:
        console.print("\n".join(["", *notes]), highlight=False, markup=False, soft_wrap=True)
    console.print("\n".join(_footer(report)), highlight=False, markup=False, soft_wrap=True)


def render(report: RunReport) -> str:
    """Plain text (for logs, pipes and tests): what ``print_report`` shows, without styles or folding."""
    out = io.StringIO()
    print_report(report, Console(file=out, width=PLAIN_WIDTH, force_terminal=False, color_system=None))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


print_rich = print_report  # the name the CLI and tests know


class Progress:
    """Progress bars on stderr through rich, on a terminal only (silent otherwise)."""

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._bars: Any = None  # rich's Progress, started on the first call
        self._tasks: dict[str, int] = {}

    def _start(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.fields[segment]:<28}"),
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=self.stream, force_terminal=True),
            transient=True,
        )
        self._bars.start()
        return self._bars

    def __call__(self, segment: str, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bars = self._bars or self._start()
        if segment not in self._tasks:
            self._tasks[segment] = bars.add_task(stage, segment=segment, total=total or None)
        bars.update(self._tasks[segment], description=stage, completed=done, total=total or None)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
