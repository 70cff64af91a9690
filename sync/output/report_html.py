"""``lakeseg report``: one self-contained HTML page built from run history.

It answers, in this order: how fresh is the data (as_of, when dbt built it, its
age, the last run's status), what broke and how to reproduce it (each failure's
one-line reason and the command to run again), where the time went (per-run and
per-phase durations), and then per segment: members over time (axes from zero)
and the entered / exited deltas, with every chart's numbers in a table.

Its size grows sub-linearly with history: plotly.js is inlined once (the bulk of
the page, constant), and older history is aggregated -- each run of the last
``RUN_DAYS`` days is a row of its own, older runs become one row per day up to
``DAY_DAYS`` days back, and one row per ISO week beyond that. The page needs no
network when viewed. It holds counts, statuses, reasons and locations from the
run documents -- never attribute values.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import jinja2

from sync.core import clock
from sync.output.terminal import PHASES as PHASE_ORDER  # the order a run goes through them
from sync.run.engine import run_status

DEFAULT_REPORT_PATH = Path("build/report/index.html")
DEFAULT_RUNS = 200
COUNTS = ("entered", "changed", "exited")
COLOURS = {"entered": "#2a9d8f", "changed": "#e9c46a", "exited": "#e76f51", "rows": "#264653"}
RUN_DAYS = 14  # newer runs: one row each
DAY_DAYS = 56  # then one row per day; older: one per ISO week
RECENT_RUNS = 30  # runs listed one by one in the runs table; older ones per day / week
COMMITTED = ("synced", "unchanged")  # a plan that was sent (or had nothing to send)
PROBLEMS = ("failed", "skipped", "refused", "interrupted")


@dataclass
class Point:
    """One run of one segment."""

    run_id: str
    started_at: str
    status: str
    reason: str = ""
    plan: dict = field(default_factory=dict)
    location: str | None = None
    files: int = 0
    quarantined: int = 0
    full_send: str = ""
    segment: str = ""
    duration_s: float = 0.0
    command: str = "sync"

    @property
    def anchor(self) -> str:
        """The id of this run's row in its segment's history (aggregated rows carry the ids they cover)."""
        return anchor(self.segment, self.run_id)

    @property
    def moment(self) -> datetime | None:
        return parse_time(self.started_at)


def anchor(segment: str, run_id: str) -> str:
    return f"seg-{segment}-run-{run_id}"


@dataclass
class Bucket:
    """A row of a segment's history: one run, or the runs of one day or one ISO week."""

    kind: str  # run | day | week
    label: str
    start: datetime | None
    points: list[Point] = field(default_factory=list)

    @property
    def committed(self) -> list[Point]:
        return [p for p in self.points if p.status in COMMITTED and p.plan]

    def total(self, key: str) -> int:
        """What was sent: counts of committed runs only (a refused plan was never sent)."""
        return sum(int(p.plan.get(key) or 0) for p in self.committed)

    @property
    def members(self) -> int | None:
        planned = self.committed or [p for p in self.points if p.plan]
        return int(planned[-1].plan.get("rows") or 0) if planned else None

    @property
    def committed_members(self) -> int | None:
        """Members after the last run of this row that committed; None when none did."""
        return int(self.committed[-1].plan.get("rows") or 0) if self.committed else None

    @property
    def statuses(self) -> list[str]:
        return sorted({p.status for p in self.points})

    @property
    def status_text(self) -> str:
        if self.kind == "run":
            return self.points[-1].status
        counts: dict[str, int] = {}
        for p in self.points:
            counts[p.status] = counts.get(p.status, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.points)

    @property
    def epoch(self) -> int:
        return int(self.start.timestamp()) if self.start else 0

    @property
    def ids(self) -> list[str]:
        return [p.anchor for p in self.points]


@dataclass
class SegmentHistory:
    name: str
    points: list[Point] = field(default_factory=list)  # oldest first
    buckets: list[Bucket] = field(default_factory=list)  # oldest first

    @property
    def last(self) -> Point:
        return self.points[-1]

    @property
    def last_committed(self) -> Point | None:
        return next((p for p in reversed(self.points) if p.status in COMMITTED), None)

    def summary(self) -> str:
        """The chart's text alternative: members first to last, the extremes, and the totals."""
        rows = [b for b in self.buckets if b.members is not None]
        members = [b.committed_members for b in rows if b.committed_members is not None]
        if not members:
            return f"{self.name}: no committed counts yet ({len(self.points)} run(s))."
        held = sum(1 for b in rows if b.committed_members is None)
        return (
            f"{self.name}: members {members[0]:,} to {members[-1]:,} over {len(self.points)} run(s) "
            f"(lowest {min(members):,}, highest {max(members):,}"
            + (f"; {held} row(s) with no committed run, marked ×" if held else "")
            + "); "
            f"in total {sum(b.total('entered') for b in rows):,} entered and "
            f"{sum(b.total('exited') for b in rows):,} exited in committed runs."
        )


@dataclass
class Failure:
    """Something that broke: a run's error, or a segment that did not sync."""

    run_id: str
    started_at: str
    status: str
    reason: str
    command: str
    segment: str | None = None

    @property
    def anchor(self) -> str | None:
        return anchor(self.segment, self.run_id) if self.segment else None


@dataclass
class Period:
    """Entered / exited totals of one segment over one day or one ISO week."""

    kind: str
    label: str
    segment: str
    start: datetime
    runs: int = 0
    entered: int = 0
    changed: int = 0
    exited: int = 0

    @property
    def epoch(self) -> int:
        return int(self.start.timestamp())


@dataclass
class ReportData:
    runs: list[dict]  # oldest first
    segments: list[SegmentHistory]
    reference: datetime | None = None  # the report's "now": buckets and data age are measured from it

    def events(self, *statuses: str) -> list[tuple[str, Point]]:
        """(segment, point) for every run in which a segment ended in one of ``statuses``, newest first."""
        found = [(s.name, p) for s in self.segments for p in s.points if p.status in statuses]
        return sorted(found, key=lambda e: e[1].started_at, reverse=True)

    @property
    def quarantines(self) -> list[tuple[str, Point]]:
        found = [(s.name, p) for s in self.segments for p in s.points if p.quarantined]
        return sorted(found, key=lambda e: e[1].started_at, reverse=True)

    @property
    def deliveries(self) -> list[tuple[str, Point]]:
        found = [(s.name, p) for s in self.segments for p in s.points if p.location]
        return sorted(found, key=lambda e: e[1].started_at, reverse=True)

    @property
    def last_run(self) -> dict | None:
        return self.runs[-1] if self.runs else None

    @property
    def failures(self) -> list[Failure]:
        """Every run error and every segment that failed, was skipped or refused, newest first."""
        out = []
        for run in reversed(self.runs):
            command = rerun_command(run)
            status = run_status(run)
            bad = [s for s in run.get("segments") or [] if isinstance(s, dict) and s.get("status") in PROBLEMS]
            if run.get("error") or (status in ("failed", "interrupted") and not bad):
                out.append(
                    Failure(
                        str(run["run_id"]),
                        str(run.get("started_at") or ""),
                        status,
                        run_error(run),
                        f"lakeseg {command}",
                    )
                )
            for seg in bad:
                out.append(
                    Failure(
                        str(run["run_id"]),
                        str(seg.get("started_at") or run.get("started_at") or ""),
                        str(seg["status"]),
                        one_line(seg.get("reason")) or "(no reason recorded)",
                        f"lakeseg {command} --select {seg['segment']}",
                        str(seg["segment"]),
                    )
                )
        return out

    def periods(self, kind: str) -> list[Period]:
        """Entered / changed / exited sent per segment per day (``day``) or ISO week (``week``), newest first.

        Days go back ``RUN_DAYS * 2`` days from the reference; weeks cover the whole history.
        """
        found: dict[tuple[str, str], Period] = {}
        since = (self.reference - timedelta(days=RUN_DAYS * 2)) if self.reference else None
        for seg in self.segments:
            for p in seg.points:
                moment = p.moment
                if moment is None or (kind == "day" and since and moment < since):
                    continue
                label, start = day_of(moment) if kind == "day" else week_of(moment)
                period = found.setdefault((label, seg.name), Period(kind, label, seg.name, start))
                period.runs += 1
                if p.status in COMMITTED and p.plan:
                    period.entered += int(p.plan.get("entered") or 0)
                    period.changed += int(p.plan.get("changed") or 0)
                    period.exited += int(p.plan.get("exited") or 0)
        return sorted(found.values(), key=lambda x: (x.start, x.segment), reverse=True)

    @property
    def recent_runs(self) -> list[dict]:
        return list(reversed(self.runs))[:RECENT_RUNS]

    @property
    def older_runs(self) -> list[dict]:
        """Runs before the recent ones, one row per day (within ``DAY_DAYS``) or week, newest first."""
        older = list(reversed(self.runs))[RECENT_RUNS:]
        rows: dict[str, dict] = {}
        for run in older:
            moment = parse_time(run.get("started_at"))
            if moment is None:
                continue
            recent = self.reference is None or self.reference - moment < timedelta(days=DAY_DAYS)
            label, start = day_of(moment) if recent else week_of(moment)
            row = rows.setdefault(
                label, {"label": label, "start": start, "runs": 0, "statuses": {}, "duration_s": 0.0, "segments": set()}
            )
            row["runs"] += 1
            status = run_status(run)
            row["statuses"][status] = row["statuses"].get(status, 0) + 1
            row["duration_s"] += run_duration(run) or 0.0
            row["segments"].update(str(s.get("segment")) for s in run.get("segments") or [] if isinstance(s, dict))
        return sorted(rows.values(), key=lambda r: r["start"], reverse=True)


def _count(value) -> int:
    """Quarantined rows may be recorded as a count, a list of ids or {count/ids: ...}."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple, set)):
        return len(value)
    if isinstance(value, dict):
        if isinstance(value.get("count"), int):
            return value["count"]
        return _count(value.get("ids") or value.get("rows"))
    return 0


def parse_time(stamp) -> datetime | None:
    """An ISO time (or dbt's 'YYYY-MM-DD HH:MM:SS', taken as UTC), in UTC; None when it is not one."""
    return clock.parse_stamp(stamp)


def day_of(moment: datetime) -> tuple[str, datetime]:
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m-%d"), start


def week_of(moment: datetime) -> tuple[str, datetime]:
    year, week, weekday = moment.isocalendar()
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=weekday - 1)
    return f"{year}-W{week:02d}", start


def when(stamp) -> str:
    """'2026-11-03T05:00:20+00:00' -> '2026-11-03 05:00:20 UTC' (anything else unchanged)."""
    moment = parse_time(stamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if moment else str(stamp or "")


def seconds(value) -> str:
    """A duration for people: '0.4 s', '42 s', '3 min 05 s', '2 h 03 min'."""
    if value is None:
        return "-"
    s = float(value)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def age(stamp, reference: datetime | None) -> str:
    """How long before ``reference`` the time ``stamp`` was: '1 d 5 h', '3 h 10 min', '-' if unknown."""
    moment = parse_time(stamp)
    if moment is None or reference is None:
        return "-"
    s = (reference - moment).total_seconds()
    if s < 0:
        return "in the future"
    if s >= 86400:
        return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 60)} min"


def one_line(text, limit: int = 200) -> str:
    """The first line of a reason or an error, at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def run_duration(run: dict) -> float | None:
    start, end = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
    return (end - start).total_seconds() if start and end else None


def run_phases(run: dict) -> list[tuple[str, float]]:
    """The run's per-phase seconds (``phases``, when recorded), in pipeline order then any others."""
    phases = run.get("phases")
    if not isinstance(phases, dict):
        return []
    clean = {
        str(k): float(v)
        for k, v in phases.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    }
    known = [k for k in PHASE_ORDER if k in clean]
    return [(k, clean[k]) for k in known + sorted(set(clean) - set(known))]


def run_error(run: dict) -> str:
    """A run's one-line reason: its error, else what its segments said, else what its status implies."""
    if run.get("error"):
        return one_line(run["error"])
    bad = [s for s in run.get("segments") or [] if isinstance(s, dict) and s.get("status") in PROBLEMS]
    if bad:
        return "; ".join(f"{s.get('segment')} {s.get('status')}" for s in bad)
    if run_status(run) == "interrupted":
        return "the run stopped before it finished (killed or crashed): run it again"
    if run_status(run) == "failed":
        return "(no reason recorded)"
    return ""


def rerun_command(run: dict) -> str:
    command = str(run.get("command") or "sync")
    return command if command in ("sync", "run", "plan") else "sync"


def run_outcome(run: dict) -> str:
    """A run's status (``sync.run.engine.run_status``: a live run is running, a dead one interrupted)."""
    return run_status(run)


def _buckets(points: list[Point], reference: datetime | None) -> list[Bucket]:
    out: dict[str, Bucket] = {}
    for p in points:
        moment = p.moment
        if moment is None or reference is None or reference - moment < timedelta(days=RUN_DAYS):
            out[f"run:{p.run_id}"] = Bucket("run", when(p.started_at), moment, [p])
            continue
        kind = "day" if reference - moment < timedelta(days=DAY_DAYS) else "week"
        label, start = day_of(moment) if kind == "day" else week_of(moment)
        out.setdefault(f"{kind}:{label}", Bucket(kind, label, start)).points.append(p)
    return list(out.values())


def collect(runs: list[dict], reference: datetime | None = None) -> ReportData:
    """Turn run documents (any order, as the state store lists them) into per-segment histories.

    ``reference`` is the report's "now" (default: the newest run's start).
    """
    ordered = sorted(
        (r for r in runs if isinstance(r, dict) and r.get("run_id")), key=lambda r: str(r.get("started_at") or "")
    )
    by_segment: dict[str, SegmentHistory] = {}
    for run in ordered:
        for seg in run.get("segments") or []:
            if not isinstance(seg, dict) or not seg.get("segment"):
                continue
            plan: dict = seg["plan"] if isinstance(seg.get("plan"), dict) else {}
            duration = seg.get("duration_s")
            point = Point(
                run_id=str(run["run_id"]),
                started_at=str(seg.get("started_at") or run.get("started_at") or ""),
                status=str(seg.get("status") or "?"),
                reason=str(seg.get("reason") or ""),
                plan=plan,
                location=seg.get("location"),
                files=len(seg.get("files") or []),
                quarantined=_count(seg.get("quarantined")),
                full_send=str(plan.get("full_refresh_reason") or "") if plan.get("full_refresh") else "",
                segment=str(seg["segment"]),
                command=rerun_command(run),
                duration_s=float(duration) if isinstance(duration, (int, float)) else 0.0,
            )
            by_segment.setdefault(seg["segment"], SegmentHistory(seg["segment"])).points.append(point)
    if reference is None and ordered:
        reference = parse_time(ordered[-1].get("started_at"))
    for seg in by_segment.values():
        seg.buckets = _buckets(seg.points, reference)
    return ReportData(ordered, [by_segment[k] for k in sorted(by_segment)], reference)


def segment_figure(history: SegmentHistory):
    """Members over time (line, from zero) above what entered (up) and exited (down) in each row (bars)."""
    from plotly.subplots import make_subplots

    rows = [b for b in history.buckets if b.members is not None]
    x = [b.start.isoformat() if b.start else b.label for b in rows]
    text = [f"{b.label} · {b.status_text}" for b in rows]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        row_heights=[0.55, 0.45],
        subplot_titles=("Members (axis from zero)", "Entered (+) and exited (−), as sent"),
    )
    _add_members(fig, rows, x, text)
    _add_flows(fig, rows, x, text)
    _style(fig)
    return fig


def _add_members(fig, rows: list, x: list[str], text: list[str]) -> None:
    """The top chart. The line joins what was committed; a run that did not commit (refused, failed) is a × at
    what it would have made the segment, off the line, so a refused mass exit does not read as a real dip."""
    import plotly.graph_objects as go

    kept = [(xi, b.committed_members, t) for xi, b, t in zip(x, rows, text) if b.committed_members is not None]
    held = [(xi, b.members, t) for xi, b, t in zip(x, rows, text) if b.committed_members is None]
    fig.add_trace(
        go.Scatter(
            x=[k[0] for k in kept],
            y=[k[1] for k in kept],
            mode="lines+markers",
            name="members",
            line={"color": COLOURS["rows"]},
            hovertext=[k[2] for k in kept],
            hoverinfo="text+y",
            marker={"size": 6},
        ),
        row=1,
        col=1,
    )
    if held:
        fig.add_trace(
            go.Scatter(
                x=[h[0] for h in held],
                y=[h[1] for h in held],
                mode="markers",
                name="not committed",
                hovertext=[h[2] for h in held],
                hoverinfo="text+y",
                marker={"symbol": "x", "size": 9, "color": COLOURS["exited"]},
            ),
            row=1,
            col=1,
        )


def _add_flows(fig, rows: list, x: list[str], text: list[str]) -> None:
    """The bottom chart: what entered (up) and exited (down) in each row, as sent."""
    import plotly.graph_objects as go

    for name, sign in (("entered", 1), ("exited", -1)):
        fig.add_trace(
            go.Bar(
                x=x,
                y=[sign * b.total(name) for b in rows],
                name=name,
                hovertext=text,
                marker={"color": COLOURS[name]},
            ),
            row=2,
            col=1,
        )


def _style(fig) -> None:
    fig.update_yaxes(rangemode="tozero", gridcolor="#eef1f4", zerolinecolor="#9aa7b1", row=1, col=1)
    fig.update_yaxes(zeroline=True, zerolinecolor="#1d2b36", gridcolor="#eef1f4", row=2, col=1)
    fig.update_xaxes(gridcolor="#eef1f4")
    # No template: plotly's default one is ~10 kB of JSON in every chart.
    fig.update_layout(
        template=None,
        barmode="relative",
        height=420,
        autosize=True,
        margin={"l": 50, "r": 10, "t": 40, "b": 30},
        paper_bgcolor="#fff",
        plot_bgcolor="#fff",
        font={"family": "system-ui, sans-serif", "size": 12, "color": "#1d2b36"},
        legend={"orientation": "h", "y": -0.15},
    )


def render_html(runs: list[dict], *, title: str = "lakeseg report", generated_at: str | None = None) -> str:
    generated_at = generated_at or clock.stamp()
    data = collect(runs, reference=parse_time(generated_at))
    charts = {}
    first = True
    for seg in data.segments:
        if not any(b.members is not None for b in seg.buckets):
            continue
        # plotly.js goes into the page once, inline, with the first chart.
        charts[seg.name] = segment_figure(seg).to_html(
            full_html=False,
            include_plotlyjs=True if first else False,
            div_id=f"chart-{seg.name}",
            config={"displaylogo": False, "responsive": True, "displayModeBar": False},
            default_width="100%",
        )
        first = False
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["seconds"] = seconds
    env.filters["epoch"] = lambda s: int(m.timestamp()) if (m := parse_time(s)) else ""
    env.filters["num"] = lambda v: "-" if v is None or v == "" else f"{int(v):,}"
    template = env.from_string(resources.files("sync.output").joinpath("templates/report.html.j2").read_text("utf-8"))
    last = data.last_run
    return template.render(
        title=title,
        data=data,
        charts=charts,
        outcome=run_outcome,
        last=last,
        last_status=run_status(last) if last else None,
        age=lambda s: age(s, data.reference),
        duration=run_duration,
        phases=run_phases,
        run_error=run_error,
        problems=PROBLEMS,
        generated_at=generated_at,
        markup=jinja2.utils.markupsafe.Markup,
        tojson=json.dumps,
        statuses=sorted({p.status for s in data.segments for p in s.points} | {run_status(r) for r in data.runs}),
        run_days=RUN_DAYS,
        day_days=DAY_DAYS,
        recent=RECENT_RUNS,
    )


@dataclass
class ReportWritten:
    path: Path
    runs: int
    segments: int
    bytes: int
    seconds: float


def write_report(store, path: Path, *, limit: int = DEFAULT_RUNS, title: str = "lakeseg report") -> ReportWritten:
    """Read the last ``limit`` runs from the state store and write the page (atomically) to ``path``."""
    started = time.monotonic()
    runs = store.list_runs(limit)
    html = render_html(runs, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    data_segments = len({s.get("segment") for r in runs for s in (r.get("segments") or []) if isinstance(s, dict)})
    return ReportWritten(path, len(runs), data_segments, path.stat().st_size, round(time.monotonic() - started, 3))
