"""``lakeseg report``: one self-contained HTML page built from run history.

Per segment: members over time and entered / changed / exited per run
(plotly charts), its last status with the reason, guard refusals, skips with
the failing tests, quarantined rows and where each delivery went.

The page needs no network when viewed: plotly's JavaScript is inlined once
(``include_plotlyjs=True``) and every chart is drawn from data in the page.
It holds counts, statuses, reasons and locations from the run documents --
never attribute values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2

from sync.run.engine import run_status

DEFAULT_REPORT_PATH = Path("build/report/index.html")
DEFAULT_RUNS = 200
COUNTS = ("entered", "changed", "exited")
COLOURS = {"entered": "#2a9d8f", "changed": "#e9c46a", "exited": "#e76f51", "rows": "#264653"}


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


@dataclass
class SegmentHistory:
    name: str
    points: list[Point] = field(default_factory=list)  # oldest first

    @property
    def last(self) -> Point:
        return self.points[-1]


@dataclass
class ReportData:
    runs: list[dict]  # oldest first
    segments: list[SegmentHistory]

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


def when(stamp) -> str:
    """'2026-11-03T05:00:20+00:00' -> '2026-11-03 05:00:20 UTC' (anything else unchanged)."""
    text = str(stamp or "")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def run_outcome(run: dict) -> str:
    """A run's status (``sync.run.engine.run_status``: a live run is running, a dead one interrupted)."""
    return run_status(run)


def collect(runs: list[dict]) -> ReportData:
    """Turn run documents (any order, as the state store lists them) into per-segment histories."""
    ordered = sorted((r for r in runs if isinstance(r, dict) and r.get("run_id")),
                     key=lambda r: str(r.get("started_at") or ""))
    by_segment: dict[str, SegmentHistory] = {}
    for run in ordered:
        for seg in run.get("segments") or []:
            if not isinstance(seg, dict) or not seg.get("segment"):
                continue
            plan = seg.get("plan") if isinstance(seg.get("plan"), dict) else {}
            point = Point(
                run_id=str(run["run_id"]), started_at=str(seg.get("started_at") or run.get("started_at") or ""),
                status=str(seg.get("status") or "?"), reason=str(seg.get("reason") or ""), plan=plan,
                location=seg.get("location"), files=len(seg.get("files") or []),
                quarantined=_count(seg.get("quarantined")),
                full_send=str(plan.get("full_refresh_reason") or "") if plan.get("full_refresh") else "",
            )
            by_segment.setdefault(seg["segment"], SegmentHistory(seg["segment"])).points.append(point)
    return ReportData(ordered, [by_segment[k] for k in sorted(by_segment)])


def segment_figure(history: SegmentHistory):
    """Members over time (line) above entered / changed / exited per run (bars)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pts = [p for p in history.points if p.plan]
    x = [p.started_at for p in pts]
    text = [f"{p.run_id}<br>{p.status}" for p in pts]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45],
                        subplot_titles=("Members (rows built)", "Entered / changed / exited per run"))
    fig.add_trace(go.Scatter(x=x, y=[p.plan.get("rows", 0) for p in pts], mode="lines+markers", name="members",
                             line={"color": COLOURS["rows"]}, hovertext=text,
                             marker={"symbol": ["circle" if p.status in ("synced", "unchanged") else "x"
                                                for p in pts], "size": 9}), row=1, col=1)
    for key in COUNTS:
        fig.add_trace(go.Bar(x=x, y=[p.plan.get(key, 0) for p in pts], name=key, hovertext=text,
                             marker={"color": COLOURS[key]}), row=2, col=1)
    fig.update_layout(barmode="group", height=420, margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.12}, template="plotly_white")
    return fig


def render_html(runs: list[dict], *, title: str = "lakeseg report", generated_at: str | None = None) -> str:
    data = collect(runs)
    charts = {}
    first = True
    for seg in data.segments:
        if not any(p.plan for p in seg.points):
            continue
        # plotly.js goes into the page once, inline, with the first chart.
        charts[seg.name] = segment_figure(seg).to_html(
            full_html=False, include_plotlyjs=True if first else False, div_id=f"chart-{seg.name}",
            config={"displaylogo": False, "responsive": True})
        first = False
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["when"] = when
    template = env.from_string(resources.files("sync.output").joinpath("templates/report.html.j2").read_text("utf-8"))
    return template.render(
        title=title, data=data, charts=charts, outcome=run_outcome,
        generated_at=generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        markup=jinja2.utils.markupsafe.Markup,
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
