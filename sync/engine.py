"""One sync run: dbt artifacts → per-segment diff → import files → destination → commit.

For each selected segment:

1. skip it unless its model and every attached test passed in the latest dbt
   invocation;
2. take the (destination, segment) lock;
3. read the built table through the reader, write the new snapshot, count the
   change against the last committed snapshot (DuckDB);
4. refuse a mass exit unless allowed;
5. write the import files, hand them to the destination;
6. commit the new snapshot only if the destination confirmed; release the lock.

A failure or a kill anywhere before step 6 leaves the old snapshot, so the
next run sends the same change again. Run history is written as the run goes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import duckdb

from . import failpoints
from .artifacts import Artifacts
from .check import check_manifest
from .contract import Segment, load_segments
from .destinations.base import DeliveryResult, Destination, SegmentDelivery
from .diff import Plan, PreparedSegment, changes_sql, prepare, snapshot_to_commit
from .errors import ConfigError, LakesegError, LockHeld, SegmentRefused
from .guard import mass_exit_refusal
from .import_files import write_import_files
from .imports_table import register_all as register_imports
from .readers.base import SegmentReader

log = logging.getLogger(__name__)

# Segment outcomes. The first three are success; the rest make the run exit 1.
SYNCED, UNCHANGED, PLANNED = "synced", "unchanged", "planned"
SKIPPED, REFUSED, FAILED = "skipped", "refused", "failed"
OK_STATUSES = {SYNCED, UNCHANGED, PLANNED}

Progress = Callable[[str, str, int, int], None]  # (segment, stage, done, total)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time (to the millisecond), unique, safe in paths and execution names."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + uuid.uuid4().hex[:6]


def _owner_is_dead_here(owner: dict) -> bool:
    """True only when the lock owner ran on this host and its process is gone."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class SyncOptions:
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    allow_mass_exit: bool = False
    max_exit_share: float = 0.30
    max_file_bytes: int = 100 * 1024 * 1024
    memory_limit: str = "1GB"
    dry_run: bool = False  # plan: read and count, write and send nothing


@dataclass
class SegmentReport:
    segment: str
    status: str
    reason: str = ""
    plan: dict | None = None
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    jobs: list[dict] = field(default_factory=list)
    location: str | None = None
    started_at: str = ""
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass
class RunReport:
    run_id: str
    command: str
    target: str
    destination: str
    state: str
    started_at: str
    finished_at: str | None = None
    status: str = "running"
    segments: list[SegmentReport] = field(default_factory=list)
    error: str | None = None
    as_of: str | None = None  # the dbt var the segments were built with (run_results.json)

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.ok for s in self.segments)

    def as_dict(self) -> dict:
        return asdict(self)


def select_segments(segments: list[Segment], select=(), exclude=()) -> list[Segment]:
    """--select/--exclude by model name, glob (``seg_email_*``) or ``tag:<name>``."""

    def matches(seg: Segment, pattern: str) -> bool:
        if pattern.startswith("tag:"):
            return pattern[4:] in seg.tags
        return fnmatch.fnmatchcase(seg.name, pattern)

    chosen = [s for s in segments if not select or any(matches(s, p) for p in select)]
    chosen = [s for s in chosen if not any(matches(s, p) for p in exclude)]
    if select and not chosen:
        raise ConfigError(f"--select {' '.join(select)} matches no segment "
                          f"(segments: {', '.join(s.name for s in segments) or 'none'})")
    return chosen


class SyncRun:
    """Carries one run's collaborators; ``execute`` does the work."""

    def __init__(self, *, artifacts: Artifacts, reader: SegmentReader, destination: Destination,
                 destination_key: str, state, options: SyncOptions, target: str, work_dir: Path,
                 command: str = "sync", progress: Progress | None = None):
        self.artifacts = artifacts
        self.reader = reader
        self.destination = destination
        self.destination_key = destination_key
        self.state = state
        self.options = options
        self.progress = progress or (lambda *a: None)
        self.run_id = new_run_id()
        self.work_root = Path(work_dir)
        self.report = RunReport(self.run_id, command, target, destination_key, getattr(state, "url", str(state)), _now())
        self._history_lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def execute(self) -> RunReport:
        opts = self.options
        segments = select_segments(load_segments(self.artifacts.manifest), opts.select, opts.exclude)
        # The static contract is enforced here too, whether or not anyone ran `lakeseg check`.
        self._contract_problems: dict[str, list[str]] = {}
        for problem in check_manifest(self.artifacts.manifest)[1]:
            self._contract_problems.setdefault(problem.model, []).append(str(problem))
        if not opts.dry_run:
            # Fail before anything is delivered: the state store must take the
            # commit, and the destination must be reachable and configured.
            self.state.check_writable()
            self.destination.preflight()
            self._clean_old_work()
            self._write_history()
        workdir = self.work_root / self.run_id
        con = duckdb.connect()
        con.execute(f"set memory_limit = '{opts.memory_limit}'")
        con.execute(f"set temp_directory = '{workdir / 'spill'}'")
        con.execute("set preserve_insertion_order = false")
        con.execute("set enable_progress_bar = false")
        pool = ThreadPoolExecutor(max_workers=max(1, int(getattr(self.destination, "max_parallel", 1))))
        pending = []
        try:
            for seg in segments:
                started, t0 = _now(), time.monotonic()
                rep = self._prepare_and_submit(con, seg, workdir / seg.name, pool, pending)
                if rep is not None:
                    rep.started_at, rep.duration_s = started, round(time.monotonic() - t0, 3)
                    self._record(rep)
            for future in pending:
                self._record(future.result())
        except BaseException as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            pool.shutdown(wait=True)
            with contextlib.suppress(Exception):
                self.reader.cleanup()
            con.close()
            shutil.rmtree(workdir, ignore_errors=True)
            self.report.finished_at = _now()
            self.report.status = "succeeded" if self.report.ok else "failed"
            self.report.segments.sort(key=lambda r: r.segment)
            if not opts.dry_run:
                self._write_history()
        return self.report

    # ----------------------------------------------------------------- helpers
    def _record(self, rep: SegmentReport) -> None:
        with self._history_lock:
            self.report.segments.append(rep)
            if not self.options.dry_run:
                self._write_history()

    def _write_history(self) -> None:
        try:
            self.state.write_run(self.report.as_dict())
        except Exception as exc:  # history must not mask the run's own outcome
            log.warning("could not write run history: %s", exc)

    def _clean_old_work(self) -> None:
        """Remove work folders (they hold personal data) left by runs killed over a day ago."""
        if not self.work_root.exists():
            return
        cutoff = time.time() - timedelta(days=1).total_seconds()
        for child in self.work_root.iterdir():
            with contextlib.suppress(OSError):
                if child.is_dir() and child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)

    def _owner(self) -> dict:
        return {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "command": self.report.command}

    def _prepare_and_submit(self, con, seg: Segment, workdir: Path, pool, pending) -> SegmentReport | None:
        opts = self.options
        eligible = self.artifacts.eligibility(seg)
        if not eligible.ok:
            return SegmentReport(seg.name, SKIPPED, eligible.reason)
        problems = self._contract_problems.get(seg.name)
        if problems:
            return SegmentReport(seg.name, REFUSED, "breaks the segment contract (see `lakeseg check`): "
                                 + "; ".join(problems))
        stack = contextlib.ExitStack()
        notes: list[str] = []
        try:
            if not opts.dry_run:
                self._acquire_lock(stack, seg.name, notes)
            self.progress(seg.name, "reading", 0, 1)
            previous = self.state.load_snapshot(self.destination_key, seg.name, workdir / "previous")
            source = self.reader.stage(con, seg.relation, seg.columns, workdir / "source")
            notes.extend(getattr(self.reader, "notes_for", lambda _relation: [])(seg.relation))  # Athena: query id, bytes
            prepared = prepare(con, seg, source, previous=previous, workdir=workdir,
                               full_refresh=opts.full_refresh)
            failpoints.hit("after-read")
            plan = prepared.plan
            refusal = mass_exit_refusal(plan, opts.max_exit_share, opts.allow_mass_exit)
            if refusal:
                stack.close()
                return SegmentReport(seg.name, REFUSED, refusal, plan.as_dict(), notes=notes)
            if opts.dry_run:
                stack.close()
                return SegmentReport(seg.name, PLANNED, plan.full_refresh_reason, plan.as_dict(), notes=notes)
            if plan.to_send == 0:
                if previous is None or previous.mapping_hash != prepared.mapping_hash:
                    self._commit(con, prepared, DeliveryResult(confirmed=True))
                stack.close()
                return SegmentReport(seg.name, UNCHANGED, "nothing changed", plan.as_dict(), notes=notes)
            self.progress(seg.name, "writing files", 0, 1)
            files = write_import_files(con, changes_sql(prepared), workdir / "import", opts.max_file_bytes)
            failpoints.hit("after-files")
            delivery = SegmentDelivery(
                run_id=self.run_id, segment=seg.name, files=tuple(files), fields=seg.fields,
                counts={k: v for k, v in plan.as_dict().items() if isinstance(v, int) and not isinstance(v, bool)},
                segment_name=seg.segment_name,
            )
        except LakesegError as exc:
            stack.close()
            status = REFUSED if isinstance(exc, (SegmentRefused, LockHeld)) else FAILED
            return SegmentReport(seg.name, status, str(exc), notes=notes)
        except BaseException:
            stack.close()
            raise
        # Delivery waits on the platform: run it in the pool, commit when confirmed.
        t0, started = time.monotonic(), _now()
        pending.append(pool.submit(self._deliver_and_commit, con.cursor(), prepared, delivery, stack, t0, started,
                                   notes))
        return None

    def _acquire_lock(self, stack: contextlib.ExitStack, segment: str, notes: list[str]) -> None:
        """Take the (destination, segment) lock.

        A lock whose owner is a process on this host that no longer runs (a
        killed sync) is taken over, and the run says so; any other held lock
        refuses the segment with its owner and age.
        """
        try:
            stack.enter_context(self.state.lock(self.destination_key, segment, self._owner()))
            return
        except LockHeld:
            held = self.state.read_lock(self.destination_key, segment)
            if held is None or not _owner_is_dead_here(held.owner):
                raise
        self.state.force_unlock(self.destination_key, segment)
        log.warning("took over the lock on %s/%s from dead %s", self.destination_key, segment, held.describe())
        notes.append(f"took over the lock left by a dead run ({held.describe()})")
        stack.enter_context(self.state.lock(self.destination_key, segment, self._owner()))

    def _deliver_and_commit(self, con, prepared: PreparedSegment, delivery: SegmentDelivery,
                            stack: contextlib.ExitStack, t0: float, started: str,
                            notes: list[str]) -> SegmentReport:
        seg, plan = prepared.segment, prepared.plan
        rep = SegmentReport(seg.name, FAILED, plan=plan.as_dict(), started_at=started, notes=notes,
                            files=[p.name for p in delivery.files],
                            bytes=sum(p.stat().st_size for p in delivery.files))
        try:
            with stack:
                self.progress(seg.name, "delivering", 0, len(delivery.files))
                result = self.destination.deliver(
                    delivery, lambda label, done, total: self.progress(seg.name, "delivering", done, total))
                rep.jobs = [asdict(j) for j in result.jobs]
                rep.location = result.location
                if not result.confirmed:
                    rep.reason = "; ".join(result.errors) or "the destination did not confirm the delivery"
                    return rep
                failpoints.hit("before-commit")
                self._commit(con, prepared, result)
                rep.status = SYNCED
                register_imports(getattr(self, "imports_table", None), seg, self.run_id, result.location, notes)
                if result.rejected_ids:
                    rep.reason = f"{len(result.rejected_ids)} row(s) rejected by the destination; resent next run"
        except LakesegError as exc:
            rep.reason = str(exc)
        except Exception as exc:  # a destination bug must not lose the report
            log.exception("delivery of %s failed", seg.name)
            rep.reason = f"{type(exc).__name__}: {exc}"
        finally:
            con.close()
            rep.duration_s = round(time.monotonic() - t0, 3)
        return rep

    def _commit(self, con, prepared: PreparedSegment, result: DeliveryResult) -> None:
        seg = prepared.segment
        path = snapshot_to_commit(con, prepared, result.rejected_ids)
        rows = con.execute(f"select count(*) from read_parquet('{path}')").fetchall()[0][0]
        self.state.commit_snapshot(self.destination_key, seg.name, path, fields=seg.fields,
                                   mapping_hash=prepared.mapping_hash, rows=rows, run_id=self.run_id)
