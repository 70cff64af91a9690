"""One sync run: dbt artifacts → per-segment diff → import files → destination → commit.

For each selected segment:

1. skip it unless its model and every attached test passed in the latest dbt
   invocation;
2. take the (destination, segment) lock;
3. read the built table through the reader, write the new snapshot, count the
   change against the last committed snapshot (DuckDB);
4. refuse a mass exit, or a jump of the segment's size or entries, unless allowed;
5. write the import files, hand them to the destination;
6. commit the new snapshot only if the destination confirmed; release the lock.

Before step 5 hands anything over, the Ids the delivery carries are recorded
as *in doubt* in the state store. A failure or a kill anywhere before step 6
leaves the old snapshot and that record, so the next run sends the change
again and also resends every in-doubt Id (current values, or an exit row if it
left since): the destination converges to the last built segment even when
upstream moved back in between. Rows the platform rejects are quarantined:
listed by Id, resent every run, never blocking the rest.
Run history is written as the run goes.

Nothing this module hands the state store quotes data: history documents, notes
and quarantine entries hold ids, counts, rule names, dbt's node ids, job ids and
codes (``platform-refused``, ``platform-error``). Messages that may quote values
-- dbt's, a platform's, an exception's -- go to the local log at debug level only
(``public_reason``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from sync.core import clock, failpoints, owners
from sync.core.capabilities import require
from sync.core.errors import ConfigError, LakesegError, LockHeld, SegmentRefused, public_reason
from sync.core.fields import ID_FIELD
from sync.core.import_files import write_import_files
from sync.core.sizes import memory_limit_bytes
from sync.core.sql import ql
from sync.dbt.artifacts import Artifacts
from sync.dbt.check import check_manifest
from sync.dbt.contract import Segment, load_segments, tests_by_model
from sync.dbt.selection import Resolver, choose_segments
from sync.destinations.base import DeliveryResult, Destination, RowSearch, SegmentDelivery
from sync.readers.base import SegmentReader
from sync.run.diff import (
    SNAPSHOT_ID,
    Expiry,
    Plan,
    PreparedSegment,
    configure,
    prepare,
    save_delta_rows,
)
from sync.run.diff_ops import DiffOps, RunnerDiff
from sync.run.guard import mass_exit_refusal, size_change_refusal
from sync.run.imports_table import ImportsTable
from sync.run.imports_table import register_all as register_imports
from sync.run.lease import RunLease
from sync.run.pushdown import choose_engine
from sync.run.pushdown.lake import LakeDiff
from sync.run.pushdown.sql import diffed_in_lake
from sync.state.base import (
    PLATFORM_REFUSED,
    InDoubt,
    PointedSnapshot,
    QuarantinedRow,
    SavedSearch,
    Snapshot,
    StateStore,
)

log = logging.getLogger(__name__)

# Segment outcomes. The first three are success; the rest make the run exit 1.
# PARTIAL: delivered and committed, but some rows are quarantined (rejected by the platform).
SYNCED, UNCHANGED, PLANNED = "synced", "unchanged", "planned"
PARTIAL, SKIPPED, REFUSED, FAILED = "partial", "skipped", "refused", "failed"
OK_STATUSES = {SYNCED, UNCHANGED, PLANNED}
INTERRUPTED = "interrupted"  # a run whose process died before it finished (history only)
OWNER_FILE = ".owner.json"  # in a run's work folder: host and pid, so a later run can clean up after a kill
# A work folder whose owner cannot be shown dead is left for a day (docs/settings.md, work_dir).
DEBRIS_AGE = timedelta(days=1)
# Longer than any run may last: a run still 'running' after this is interrupted, and a temp file or staging
# folder whose owner cannot be shown dead is collected once it is this old.
LONGEST_RUN = timedelta(days=2)

Progress = Callable[[str, str, int, int], None]  # (segment, stage, done, total)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time (to the millisecond), unique, safe in paths and execution names."""
    now = now or clock.now()
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + uuid.uuid4().hex[:6]


def _no_progress(*_args) -> None:
    """Progress for a run nobody watches: nothing."""


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


def remove_work_folder(folder: Path, failpoint: Callable[[str], None] = lambda _stage: None) -> None:
    """Remove a run's work folder, its owner file last: a folder that still holds anything names its owner.

    ``failpoint`` is hit at each step (``failpoints.CLEANUP_STAGES``), so tests can kill the run there.
    """
    failpoint("cleanup-start")
    with contextlib.suppress(OSError):
        for child in list(folder.iterdir()):
            if child.name == OWNER_FILE:
                continue
            with contextlib.suppress(OSError):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    failpoint("cleanup-after-contents")
    try:
        left = [p.name for p in folder.iterdir()]
    except OSError:
        return  # gone already, or unreadable
    if any(name != OWNER_FILE for name in left):
        return  # something could not be removed: the owner file stays with it, the next run retries
    with contextlib.suppress(OSError):
        (folder / OWNER_FILE).unlink()
    failpoint("cleanup-after-owner-file")
    with contextlib.suppress(OSError):
        folder.rmdir()


def _now() -> str:
    return clock.stamp()


def wall_clock() -> datetime:
    """UTC now: when members are confirmed, for destinations whose data expires (tests replace it)."""
    return clock.now()


def mark_interrupted(run: dict, max_age: timedelta = LONGEST_RUN) -> dict:
    """A history document still 'running' whose process is gone reads as 'interrupted'.

    Dead means: it ran on this host and its pid no longer runs, or it started
    longer ago than any run may last.
    """
    if run.get("status") != "running":
        return run
    dead = _owner_is_dead_here({"host": run.get("host"), "pid": run.get("pid")})
    started = clock.parse_stamp(run.get("started_at"))
    dead = dead or (started is not None and clock.now() - started > max_age)
    return {**run, "status": INTERRUPTED} if dead else run


def run_status(run: dict) -> str:
    """The one definition of a run document's status, for history, the report and metrics.

    A run still 'running' is 'interrupted' only when its process is known to be gone (see
    ``mark_interrupted``); otherwise it is running, whether or not it has a finish time yet.
    """
    return str(mark_interrupted(run).get("status") or "?")


@dataclass
class SyncOptions:
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    allow_mass_exit: bool = False
    max_exit_share: float = 0.30
    allow_size_change: bool = False
    max_size_change_share: float = 0.50
    max_entered_share: float = 0.50
    max_file_bytes: int = 100 * 1024 * 1024
    memory_limit: str = "1GB"
    dry_run: bool = False  # plan: read and count, write and send nothing
    digest_key: object | None = None  # sync.run.digest_key.DigestKey: the value digest's secret
    diff_engine: str = "duckdb"  # diff.engine: where the diff runs (sync/run/pushdown)
    pushdown_min_rows: int = 5_000_000  # diff.pushdown_min_rows: auto's threshold
    selector: Resolver | None = None  # resolves select/exclude (dbt's selection; see selection.py)


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
    data_scanned_bytes: int | None = None  # what the warehouse scanned to read the segment (Athena), if known
    quarantined: list[dict] = field(default_factory=list)  # {id, code, attempts, first_run_id, last_run_id}

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
    error: str | None = None  # public_reason of what ended the run: never a message that may quote data
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    as_of: str | None = None  # the dbt var the segments were built with (run_results.json)
    built_at: str | None = None  # when dbt built them: run_results.json's metadata.generated_at
    # Segments the latest dbt invocation did not build (a `dbt build --select`), left alone by a sync that
    # selected none of them: dbt's own contract, as `dbt build -s x` leaves the other models alone.
    left_alone: list[str] = field(default_factory=list)
    # Seconds per phase (dbt_build, select, read, diff, files, delivery, commit), summed over segments:
    # where a slow run went. Deliveries run in parallel, so their sum may exceed the run's wall time.
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # run-level notes, e.g. a run lease taken over from a dead run

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.ok for s in self.segments)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _SegmentWork:
    """One segment's work in this run: what the state store holds for it, and its notes for the report."""

    segment: Segment
    workdir: Path  # its folder inside the run's work folder
    ops: DiffOps  # the diff's engine: on the runner, or in Athena (diff.engine)
    notes: list[str] = field(default_factory=list)
    previous: Snapshot | PointedSnapshot | None = None  # the committed snapshot (its pointer alone, in Athena)
    in_doubt: InDoubt | None = None  # Ids an earlier delivery handed over and never confirmed
    quarantine: dict[str, QuarantinedRow] = field(default_factory=dict)  # rows the platform refused, by Id
    search: SavedSearch | None = None  # an unfinished search for refused rows
    dirty: Path | None = None  # every Id to resend whatever the snapshot says (see SyncRun._dirty_ids)

    def ended(self, status: str, reason: str, plan: Plan) -> SegmentReport:
        """The report of a segment that ends before delivery with a plan (refused by a guard, or planned)."""
        return SegmentReport(
            self.segment.name,
            status,
            reason,
            plan.as_dict(),
            notes=self.notes,
            quarantined=[asdict(q) for q in self.quarantine.values()],
        )


@dataclass
class _Handover:
    """A segment ready to deliver, as the pool thread that delivers and commits it receives it."""

    con: duckdb.DuckDBPyConnection  # a cursor of the run's connection, for that thread alone
    prepared: PreparedSegment
    delivery: SegmentDelivery
    work: _SegmentWork
    t0: float  # time.monotonic() when it was handed over
    started: str


@dataclass
class _Workspace:
    """What the run holds while it syncs: its work folder, its DuckDB connection and its delivery pool."""

    workdir: Path
    con: duckdb.DuckDBPyConnection
    pool: ThreadPoolExecutor
    pending: list[Future[SegmentReport]] = field(default_factory=list)

    def hand_over(
        self, held: contextlib.ExitStack, deliver: Callable[[contextlib.ExitStack, _Handover], SegmentReport], job
    ) -> None:
        """Run ``deliver(held, job)`` in the pool, which owns ``held`` (the segment's lock) from then on and
        closes it; a delivery that cannot be started closes it here. Either way it is released once."""
        try:
            self.pending.append(self.pool.submit(deliver, held, job))
        except BaseException:
            held.close()
            raise


def _check_memory_limit(memory_limit: str) -> None:
    """Refused before anything is read, written or started (the settings file is checked the same way)."""
    try:
        memory_limit_bytes(memory_limit)
    except ValueError as exc:
        raise ConfigError(f"memory_limit {exc}") from None


class SyncRun:
    """Carries one run's collaborators; ``execute`` does the work, one ``_sync_segment`` per segment.

    The destination, the reader and the imports table must each declare every capability of its Protocol
    (``Destination``, ``SegmentReader``, ``ImportsTable``): one that lacks any is refused here, by name.
    """

    def __init__(
        self,
        *,
        artifacts: Artifacts,
        reader: SegmentReader,
        destination: Destination,
        destination_key: str,
        state: StateStore,
        options: SyncOptions,
        target: str,
        work_dir: Path,
        command: str,
        progress: Progress | None = None,
        clock: Callable[[], datetime] | None = None,
        run_id: str | None = None,
        lease: RunLease | None = None,
        imports_table: ImportsTable | None = None,
        lake: LakeDiff | None = None,
    ):
        self.clock = clock or wall_clock
        self.artifacts = artifacts
        self.reader = require(reader, SegmentReader, "reader")
        self.destination = require(destination, Destination, "destination")
        self.destination_key = destination_key
        self.state = state
        self.options = options
        self.progress = progress or _no_progress
        self.run_id = run_id or new_run_id()
        self.lease = lease  # sync.run.lease.RunLease this run holds, or None
        self.work_root = Path(work_dir)
        self.report = RunReport(self.run_id, command, target, destination_key, state.url, _now())
        self._history_lock = threading.Lock()
        # Where confirmed deliveries are registered, if anywhere.
        self.imports_table = (
            require(imports_table, ImportsTable, "imports table") if imports_table is not None else None
        )
        self.lake = lake  # the diff in Athena, where diff.engine may use it (sync/run/pushdown)
        self._runner_diff = RunnerDiff(state, destination_key, self.run_id)
        if lease is not None and lease.took_over:  # never silent: the run's history names the dead run
            self.report.notes.append(lease.took_over)

    # ------------------------------------------------------------------ public
    def execute(self) -> RunReport:
        opts = self.options
        _check_memory_limit(opts.memory_limit)
        segments = self._choose_segments()
        # The static contract is enforced here too, whether or not anyone ran `lakeseg check`.
        self._contract_problems = self._contract_problems_by_segment()
        self._expiry = self._expiry_now()
        if segments:  # a reader that cannot read at all (no DuckDB file) is a configuration error, not N failures
            self.reader.preflight()
        if not opts.dry_run:
            self._get_ready()
        with self._workspace() as space:
            for seg in segments:
                self._sync_segment(space, seg)
            for future in space.pending:
                self._record(future.result())
        return self.report

    # ------------------------------------------------------------ the run's steps
    def _choose_segments(self) -> list[Segment]:
        """The project's segments (the imports table learns them all), and those this run syncs."""
        opts = self.options
        self._segments = load_segments(self.artifacts.manifest)
        if self.imports_table is not None:  # the local views: a rebuild needs every segment
            self.imports_table.know(self._segments)
        t = time.monotonic()
        segments = choose_segments(self._segments, opts.select, opts.exclude, opts.selector)
        self._spent("select", t)
        if not opts.select:  # a segment named by --select but not built is refused (skipped) below instead
            self.report.left_alone = sorted(s.name for s in segments if not self.artifacts.was_built(s))
            segments = [s for s in segments if self.artifacts.was_built(s)]
        return segments

    def _contract_problems_by_segment(self) -> dict[str, list[str]]:
        """What breaks the segment contract, and what this destination cannot take (e.g. a field with no
        Customer Profiles target), by segment."""
        problems: dict[str, list[str]] = {}
        for problem in check_manifest(self.artifacts.manifest)[1]:
            problems.setdefault(problem.model, []).append(str(problem))
        for seg in self._segments:
            for cannot in self.destination.check_segment(seg):
                problems.setdefault(seg.name, []).append(f"{seg.name}.{cannot}")
        return problems

    def _expiry_now(self) -> Expiry | None:
        """Destinations whose data expires: members confirmed before the cutoff are sent again."""
        refresh_after = self.destination.refresh_after
        now = self.clock()
        return Expiry(now, now - refresh_after) if refresh_after is not None else None

    def _get_ready(self) -> None:
        """What dead runs left goes first (it may be what filled the disk). Then fail before anything is
        delivered: the state store must take the commit, and the destination must be reachable and configured."""
        self._collect_debris(self._clean_old_work())
        self._repair_imports_table()
        self.state.check_writable()
        self.destination.preflight()
        self._write_history()

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[_Workspace]:
        """The run's work folder, connection and pool for the block; its outcome recorded however it ends.

        An exception -- SIGTERM's ``Terminated`` included -- becomes the run's error; then, as on any other
        exit, what the run holds is released (``_held_for_the_run``) and its history written, once.
        """
        try:
            with self._held_for_the_run() as space:
                yield space
        except BaseException as exc:
            log.debug("the run ended: %s: %s", type(exc).__name__, exc)
            self.report.error = public_reason(exc)
            raise
        finally:
            self._finish()

    @contextlib.contextmanager
    def _held_for_the_run(self) -> Iterator[_Workspace]:
        """Made in this order, released in the reverse: the work folder, the DuckDB connection, the reader's
        staged data, the pool (which first waits for deliveries under way)."""
        # Named after the run and its owner (see sync/core/owners.py): judged dead or alive by a later run
        # whatever its clean-up reached.
        workdir = self.work_root / f"{self.run_id}.{owners.tag()}"
        self._make_workdir(workdir)
        with contextlib.ExitStack() as stack:
            stack.callback(remove_work_folder, workdir, failpoints.hit)
            con = duckdb.connect()
            stack.callback(con.close)
            opts = self.options
            configure(con, opts.memory_limit, workdir / "spill")  # settings are quoted literals, never pasted SQL
            con.execute("set enable_progress_bar = false")
            stack.callback(self._clean_up_reader)
            if self.lake is not None:  # its Glue tables, before the reader's staging goes
                stack.callback(self._clean_up_lake, self.lake)
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, int(self.destination.max_parallel))))
            yield _Workspace(workdir, con, pool)

    def _clean_up_reader(self) -> None:
        with contextlib.suppress(Exception):
            self.reader.cleanup()

    @staticmethod
    def _clean_up_lake(lake: LakeDiff) -> None:
        with contextlib.suppress(Exception):
            lake.cleanup()

    def _finish(self) -> None:
        """The run's outcome in its report and (unless a plan) its history."""
        self.report.finished_at = _now()
        self.report.status = "succeeded" if self.report.ok else "failed"
        self.report.segments.sort(key=lambda r: r.segment)
        if not self.options.dry_run:
            self._write_history()

    # ----------------------------------------------------------------- helpers
    def _spent(self, phase: str, since: float) -> float:
        """Add the time since ``since`` (time.monotonic) to ``phase`` of the run report; returns now."""
        now = time.monotonic()
        with self._history_lock:
            self.report.phases[phase] = round(self.report.phases.get(phase, 0.0) + now - since, 3)
        return now

    def _record(self, rep: SegmentReport) -> None:
        seg = next(s for s in self._segments if s.name == rep.segment)  # each report is of a segment chosen from these
        rep.data_scanned_bytes = (self.reader.stats_for(seg.relation) or {}).get("data_scanned_bytes")
        with self._history_lock:
            self.report.segments.append(rep)
            if not self.options.dry_run:
                self._write_history()

    def _write_history(self) -> None:
        try:
            self.state.write_run(self.report.as_dict())
        except Exception as exc:  # history must not mask the run's own outcome
            log.warning("could not write run history: %s", exc)

    def _clean_old_work(self) -> set[str]:
        """Remove work folders (they hold personal data) left by killed runs; returns their run ids.

        A folder whose run ran on this host and is gone is removed at once,
        whatever state its own clean-up reached: its owner is in its name
        (``<run_id>.<pid>@<host>``) as well as in its owner file. Any other
        folder (a run elsewhere that shares the disk, or no owner to be told)
        goes after a day.
        """
        if not self.work_root.exists():
            return set()
        cutoff = time.time() - DEBRIS_AGE.total_seconds()
        dead_runs = set()
        for child in self.work_root.iterdir():
            if not child.is_dir() or child.is_symlink():
                continue
            try:
                owner = json.loads((child / OWNER_FILE).read_text())
            except (OSError, ValueError):  # no owner file, or a damaged one: the name, else the age decides
                owner = {}
            owner = owner if isinstance(owner, dict) else {}
            named = owners.owner_of(child.name)
            with contextlib.suppress(OSError):  # gone meanwhile: nothing to remove
                if (
                    _owner_is_dead_here(owner)
                    or (named is not None and _owner_is_dead_here(named))
                    or child.stat().st_mtime < cutoff
                ):
                    remove_work_folder(child)
                    dead_runs.add(str(owner.get("run_id") or child.name.partition(".")[0]))
        return dead_runs

    def _repair_imports_table(self) -> None:
        """A local imports database left unreadable or short of a view (a full disk) is rebuilt from the export
        folder before the run; if that fails, the run fails (exit 1), as any unrecorded delivery does."""
        if self.imports_table is None:
            return
        try:
            self.imports_table.repair()
        except Exception as exc:  # noqa: BLE001 - the run goes on, but cannot succeed
            log.debug("imports table not repaired: %s: %s", type(exc).__name__, exc)
            log.warning("imports table not repaired: %s", public_reason(exc))
            self.report.error = f"imports table not repaired: {public_reason(exc)}"

    def _collect_debris(self, dead_runs: set[str]) -> None:
        """Temporary files in the state store and staging folders in the export folder that dead runs left.

        Only what a dead owner left, or what is older than any run may last (LONGEST_RUN): a live run's stay. A failure
        here is logged and never stops the run (the next run tries again).
        """
        age = LONGEST_RUN.total_seconds()
        collectors: tuple[tuple[str, Callable[[], list[str]]], ...] = (
            ("state store", lambda: self.state.collect_debris(_owner_is_dead_here, age)),
            ("destination", lambda: self.destination.collect_debris(dead_runs, age)),
        )
        for where, collect in collectors:
            try:
                removed = collect()
            except Exception as exc:  # noqa: BLE001 - housekeeping must not fail the run
                log.warning("could not collect what dead runs left in the %s: %s: %s", where, type(exc).__name__, exc)
                continue
            if removed:
                log.info("removed %d file(s) or folder(s) dead runs left in the %s", len(removed), where)

    def _make_workdir(self, workdir: Path) -> None:
        """The run's private scratch folder (0700), marked with its owner for _clean_old_work."""
        workdir.mkdir(parents=True, mode=0o700)  # the run id is new: so is its folder
        os.chmod(workdir, 0o700)
        (workdir / OWNER_FILE).write_text(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id})
        )

    def _owner(self) -> dict:
        owner = {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": self.report.command,
        }
        if self.lease is not None:  # the lease it runs under: a lock of any other lease is a dead run's
            owner["lease"] = self.lease.token
        return owner

    def _lock_outlived_its_lease(self, owner: dict) -> bool:
        """The lock was taken under a run lease that is not the one this run holds now: its run is dead."""
        return self.lease is not None and bool(owner.get("lease")) and owner.get("lease") != self.lease.token

    def _hold_lease(self) -> None:
        """Before anything is handed over or committed: this run must still hold its lease (LeaseLost)."""
        if self.lease is not None:
            self.lease.ensure_held()

    def _ownership_problems_waived(self, seg: Segment, problems: list[str]) -> bool:
        """A field claimed by two segments refuses only the one without committed state for it.

        The incumbent (its committed snapshot already writes the field) keeps
        syncing; the newcomer is refused until the conflict is resolved.
        """
        if not problems or not all("[field-ownership]" in p for p in problems):
            return False
        try:
            committed = self.state.committed_fields(self.destination_key, seg.name)
        except Exception:  # noqa: BLE001 - unreadable state: do not waive
            return False
        contested = {f for other in self._segments if other.name != seg.name for f in other.fields} & set(seg.fields)
        contested.discard(ID_FIELD)
        return bool(contested) and contested <= set(committed)

    # ------------------------------------------------------------ one segment
    def _sync_segment(self, space: _Workspace, seg: Segment) -> None:
        """One segment: it ends here (skipped, refused, planned, unchanged) or goes to the pool for delivery,
        whose report is recorded when the pool is done."""
        started, t0 = _now(), time.monotonic()
        try:
            rep = self._prepare_and_submit(space, seg)
        except Exception as exc:  # one segment's bug or I/O error fails that segment, not the run
            log.debug("segment %s failed: %s", seg.name, exc, exc_info=True)
            rep = SegmentReport(seg.name, FAILED, public_reason(exc))
        if rep is not None:
            rep.started_at, rep.duration_s = started, round(time.monotonic() - t0, 3)
            self._record(rep)

    def _prepare_and_submit(self, space: _Workspace, seg: Segment) -> SegmentReport | None:
        """Under the segment's lock: read, diff and guard it, write its files and hand them to the pool, which
        then holds the lock until the delivery is committed or not. Any other ending releases the lock here."""
        work = _SegmentWork(seg, space.workdir / seg.name, self._runner_diff)
        unread = self._refused_unread(work)
        if unread is not None:
            return unread
        with contextlib.ExitStack() as held:
            try:
                if not self.options.dry_run:
                    held.enter_context(self._segment_lock(seg.name, work.notes))
                ready = self._plan_segment(space.con, work)
            except LakesegError as exc:
                status = REFUSED if isinstance(exc, (SegmentRefused, LockHeld)) else FAILED
                if exc.public != str(exc):
                    log.debug("%s: %s", seg.name, exc)
                return SegmentReport(seg.name, status, exc.public, notes=work.notes)
            if isinstance(ready, SegmentReport):
                return ready
            # Delivery waits on the platform: run it in the pool, commit when confirmed.
            prepared, delivery = ready
            job = _Handover(space.con.cursor(), prepared, delivery, work, time.monotonic(), _now())
            space.hand_over(held.pop_all(), self._deliver_and_commit, job)
        return None

    def _refused_unread(self, work: _SegmentWork) -> SegmentReport | None:
        """Skipped (not built, or a test failed) or refused (the contract) before anything is read or locked."""
        seg = work.segment
        eligible = self.artifacts.eligibility(seg)
        if not eligible.ok:
            return SegmentReport(seg.name, SKIPPED, eligible.reason)
        problems = self._contract_problems.get(seg.name)
        if problems and self._ownership_problems_waived(seg, problems):
            work.notes.append("keeps its fields although another segment claims them: " + "; ".join(problems))
            problems = None
        if problems:
            return SegmentReport(
                seg.name, REFUSED, "breaks the segment contract (see `lakeseg check`): " + "; ".join(problems)
            )
        return None

    @contextlib.contextmanager
    def _segment_lock(self, segment: str, notes: list[str]) -> Iterator[None]:
        """The (destination, segment) lock for the block (a dead run's taken over, see ``_acquire_lock``)."""
        with contextlib.ExitStack() as stack:
            self._acquire_lock(stack, segment, notes)
            yield

    def _plan_segment(self, con, work: _SegmentWork) -> SegmentReport | tuple[PreparedSegment, SegmentDelivery]:
        """Read and diff the segment; its report if it ends here, else its delivery, written and in doubt."""
        prepared = self._read_and_diff(con, work)
        ended = self._ends_before_delivery(con, work, prepared)
        if ended is not None:
            return ended
        return prepared, self._write_delivery(con, work, prepared)

    def _load_state(self, con, work: _SegmentWork, previous: Snapshot | PointedSnapshot | None) -> None:
        """What the state store holds for the segment besides its committed snapshot (``previous``: the
        snapshot, or only its pointer where Athena diffs), and the Ids to resend whatever the snapshot says."""
        seg, workdir, notes = work.segment, work.workdir, work.notes
        in_doubt = self.state.load_in_doubt(
            self.destination_key,
            seg.name,
            workdir / "in-doubt",
            committed_run_id=previous.run_id if previous else None,
        )
        quarantine = {q.id: q for q in (previous.quarantine if previous else ())}
        search = self.state.load_search(self.destination_key, seg.name, workdir / "search")
        dirty = self._dirty_ids(con, workdir, in_doubt, quarantine, search.ids if search else ())
        if in_doubt is not None:
            notes.append(f"{in_doubt.rows:,} id(s) in doubt from run {in_doubt.run_id} (never confirmed): resent")
        if search is not None:
            notes.append(
                f"{search.rows:,} row(s) in {len(search.groups):,} group(s) still suspect from run "
                f"{search.run_id}: resent, the search for refused rows continues"
            )
        work.previous, work.in_doubt, work.search = previous, in_doubt, search
        work.quarantine, work.dirty = quarantine, dirty

    def _lake_for(self, seg: Segment) -> tuple[LakeDiff, PointedSnapshot | None] | None:
        """The diff in Athena and the segment's committed pointer, when the segment is diffed there
        (``diff.engine``, decided from the pointer alone); None when it is diffed on the runner."""
        if self.lake is None:
            return None
        pointed = self.state.read_snapshot(self.destination_key, seg.name)
        opts = self.options
        engine = choose_engine(
            opts.diff_engine,
            opts.pushdown_min_rows,
            problem=None,
            previous_rows=pointed.rows if pointed is not None else None,
            in_lake=pointed is not None and diffed_in_lake(pointed.mapping_hash),
        )
        return (self.lake, pointed) if engine == "athena" else None

    def _read_and_diff(self, con, work: _SegmentWork) -> PreparedSegment:
        """Its state, then the built table through the reader, into a new snapshot diffed against the last --
        on the runner, or in Athena (which sends back only the rows to send)."""
        opts, seg = self.options, work.segment
        self.progress(seg.name, "reading", 0, 1)
        t = time.monotonic()
        tests = tests_by_model(self.artifacts.manifest).get(seg.unique_id, [])
        work.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        in_lake = self._lake_for(seg)
        if in_lake is not None:
            lake, pointed = in_lake
            self._load_state(con, work, pointed)
            work.ops = lake
            prepared: PreparedSegment = lake.prepare(
                con,
                seg,
                pointed,
                workdir=work.workdir,
                full_refresh=opts.full_refresh,
                dirty=work.dirty,
                digest_key=opts.digest_key,
                tests=tests,
                sweep=not opts.dry_run,  # a plan holds no lock: it leaves other runs' tables alone
            )
            work.notes.append("diffed in Athena (diff.engine): only the rows to send left the lake")
            work.notes.extend(self.reader.notes_for(seg.relation))
            self._spent("diff", t)
        else:
            previous = self.state.load_snapshot(self.destination_key, seg.name, work.workdir / "previous")
            self._load_state(con, work, previous)
            source = self.reader.stage(con, seg.relation, seg.columns, work.workdir / "source")
            t = self._spent("read", t)
            work.notes.extend(self.reader.notes_for(seg.relation))  # Athena: query id, bytes
            prepared = prepare(
                con,
                seg,
                source,
                previous=previous,
                workdir=work.workdir,
                full_refresh=opts.full_refresh,
                dirty=work.dirty,
                digest_key=opts.digest_key,
                expiry=self._expiry,
                tests=tests,
            )
            self._spent("diff", t)
        failpoints.hit("after-read")
        plan = prepared.plan
        if plan.refresh and self._expiry is not None:  # only a destination whose data expires refreshes
            work.notes.append(
                f"{plan.refresh:,} unchanged member(s) due for a refresh before they expire "
                f"(last confirmed at or before {self._expiry.due_before:%Y-%m-%d %H:%M} UTC): resent"
            )
        return prepared

    def _ends_before_delivery(self, con, work: _SegmentWork, prepared: PreparedSegment) -> SegmentReport | None:
        """Refused by a guard, planned only (a dry run), or nothing to send: its report. Else None."""
        opts, plan = self.options, prepared.plan
        refusal = mass_exit_refusal(plan, opts.max_exit_share, opts.allow_mass_exit) or size_change_refusal(
            work.ops.as_last_delivered(con, prepared, work.dirty),
            opts.max_size_change_share,
            opts.max_entered_share,
            opts.allow_size_change,
        )
        if refusal:
            return work.ended(REFUSED, refusal, plan)
        if opts.dry_run:
            return work.ended(PLANNED, plan.full_refresh_reason, plan)
        if plan.to_send == 0:
            return self._nothing_to_send(con, work, prepared)
        return None

    def _nothing_to_send(self, con, work: _SegmentWork, prepared: PreparedSegment) -> SegmentReport:
        """Unchanged: committed all the same when that settles a record (in doubt, quarantine, leavers)."""
        seg, plan, previous, in_doubt = work.segment, prepared.plan, work.previous, work.in_doubt
        if work.search is not None:  # none of its rows is left to send: nothing left to search
            self.state.clear_search(self.destination_key, seg.name)
        if (
            previous is None
            or previous.mapping_hash != prepared.mapping_hash
            or in_doubt is not None
            or work.quarantine
            or plan.exited
        ):
            # Nothing left to send for what was in doubt or quarantined, or for leavers of a
            # `keep` segment: the commit supersedes those records, and a leaver is counted
            # once (an uncommitted one would count again every run, towards the guard).
            save_delta_rows(con, prepared)
            self._commit(con, work.ops, prepared, DeliveryResult(confirmed=True), {})
            if in_doubt is not None:
                self.state.clear_in_doubt(self.destination_key, seg.name, in_doubt.run_id)
        return SegmentReport(seg.name, UNCHANGED, "nothing changed", plan.as_dict(), notes=work.notes)

    def _write_delivery(self, con, work: _SegmentWork, prepared: PreparedSegment) -> SegmentDelivery:
        """The import files, every Id they carry recorded in doubt, and the delivery the destination gets."""
        opts, seg, plan, workdir, search = self.options, work.segment, prepared.plan, work.workdir, work.search
        self.progress(seg.name, "writing files", 0, 1)
        t = time.monotonic()
        files = write_import_files(con, work.ops.changes_sql(prepared), workdir / "import", opts.max_file_bytes)
        save_delta_rows(con, prepared)  # while _delta is this segment's: the commit runs on another cursor
        failpoints.hit("after-files")
        self._record_in_doubt(con, work.ops, prepared)
        self._spent("files", t)
        failpoints.hit("after-in-doubt")
        return SegmentDelivery(
            run_id=self.run_id,
            segment=seg.name,
            files=tuple(files),
            fields=seg.fields,
            counts={k: v for k, v in plan.as_dict().items() if isinstance(v, int) and not isinstance(v, bool)},
            segment_name=seg.segment_name,
            segment_filter=seg.segment_filter,
            quarantined=frozenset(work.quarantine),
            search=RowSearch(search.groups, search.fields) if search else None,
            ledger=self.state.job_ledger(self.destination_key, seg.name),
        )

    def _dirty_ids(
        self, con, workdir: Path, in_doubt, quarantine: dict[str, QuarantinedRow], suspect=()
    ) -> Path | None:
        """One Parquet file of every Id to resend whatever the snapshot says: in doubt, quarantined or suspect."""
        if in_doubt is None and not quarantine and not suspect:
            return None
        out = workdir / "dirty.parquet"
        con.execute(f"create or replace temp table _quarantined ({SNAPSHOT_ID} varchar)")
        if quarantine or suspect:
            con.execute(
                f"insert into _quarantined select unnest($1::varchar[]) as {SNAPSHOT_ID}",
                [sorted(set(quarantine) | set(suspect))],
            )
        parts = ["select * from _quarantined"]
        if in_doubt is not None:
            parts.append(f"select {SNAPSHOT_ID} from read_parquet({ql(str(in_doubt.path))})")
        con.execute(f"copy ({' union '.join(parts)}) to {ql(str(out))} (format parquet)")
        return out

    def _record_in_doubt(self, con, ops: DiffOps, prepared: PreparedSegment) -> None:
        """Durably record every Id this delivery carries, plus those still in doubt, before handing over."""
        out = prepared.workdir / "in-doubt.parquet"
        sent = ops.sent_ids_sql(prepared)
        con.execute(
            f"copy (select distinct {SNAPSHOT_ID} from ({sent} union all "
            f"select {SNAPSHOT_ID} from _dirty)) to {ql(str(out))} (format parquet)"
        )
        rows = con.execute(f"select count(*) from read_parquet({ql(str(out))})").fetchall()[0][0]
        self.state.record_in_doubt(self.destination_key, prepared.segment.name, out, rows=rows, run_id=self.run_id)

    def _acquire_lock(self, stack: contextlib.ExitStack, segment: str, notes: list[str]) -> None:
        """Take the (destination, segment) lock.

        A lock whose owner is a process on this host that no longer runs (a
        killed sync), or a run that took it under a run lease this run has
        since taken (sync/run/lease.py: that run is dead), is taken over, and the run says so; any other held lock
        refuses the segment with its owner and age. The takeover deletes only
        the lock it judged dead (compare-and-delete on its token), so two runs
        that judged it dead at once cannot both end up holding it.
        """
        try:
            stack.enter_context(self.state.lock(self.destination_key, segment, self._owner()))
            return
        except LockHeld:
            held = self.state.read_lock(self.destination_key, segment)
            if held is None or not (_owner_is_dead_here(held.owner) or self._lock_outlived_its_lease(held.owner)):
                raise
        removed = self.state.force_unlock(self.destination_key, segment, token=held.token)
        # Only the winner of the compare-and-delete says it took the lock over; a run that lost the race
        # (another run removed the dead lock first) tries the lock like any run, and is refused if it is held.
        stack.enter_context(self.state.lock(self.destination_key, segment, self._owner()))
        if removed is not None:
            log.warning("took over the lock on %s/%s from dead %s", self.destination_key, segment, held.describe())
            notes.append(f"took over the lock left by a dead run ({held.describe()})")

    def _deliver_and_commit(self, held: contextlib.ExitStack, job: _Handover) -> SegmentReport:
        """In the pool: deliver, then commit if confirmed. ``held`` (the segment's lock) is released as this
        ends, however it ends; a failure becomes the segment's report, never the run's."""
        with held:
            seg, files = job.prepared.segment, job.delivery.files
            rep = SegmentReport(
                seg.name,
                FAILED,
                plan=job.prepared.plan.as_dict(),
                started_at=job.started,
                notes=job.work.notes,
                files=[p.name for p in files],
                bytes=sum(p.stat().st_size for p in files),
            )
            try:
                self._deliver_then_commit(job, rep)
            except LakesegError as exc:
                if exc.public != str(exc):
                    log.debug("delivery of %s: %s", seg.name, exc)
                rep.reason = exc.public
            except Exception as exc:  # a destination bug must not lose the report
                log.debug("delivery of %s failed: %s: %s", seg.name, type(exc).__name__, exc, exc_info=True)
                log.warning("delivery of %s failed: %s (-vv logs its message)", seg.name, type(exc).__name__)
                rep.reason = public_reason(exc)
            finally:
                job.con.close()
                rep.duration_s = round(time.monotonic() - job.t0, 3)
        return rep

    def _deliver_then_commit(self, job: _Handover, rep: SegmentReport) -> None:
        """Hand the files over; commit what the destination confirmed and register it. ``rep`` says how it went."""
        seg, delivery, notes = job.prepared.segment, job.delivery, job.work.notes
        self._hold_lease()
        self.progress(seg.name, "delivering", 0, len(delivery.files))
        t = time.monotonic()
        result = self.destination.deliver(
            delivery, lambda label, done, total: self.progress(seg.name, "delivering", done, total)
        )
        t = self._spent("delivery", t)
        rep.jobs = [_job_document(seg.name, j) for j in result.jobs]
        rep.location = result.location
        if not result.confirmed:
            rep.reason = _unconfirmed_reason(seg.name, result)
            _log_refusals(seg.name, result.rejected)
            rep.quarantined = [{"id": i, "code": PLATFORM_REFUSED} for i in sorted(result.rejected)]
            return
        failpoints.hit("before-commit")
        # The unfinished search is kept before the commit that leaves its rows out (in doubt, resent).
        self.state.save_search(
            self.destination_key,
            seg.name,
            result.search.groups if result.search else (),
            fields=delivery.fields,
            run_id=self.run_id,
            workdir=job.prepared.workdir / "search",
        )
        kept = self._commit(job.con, job.work.ops, job.prepared, result, job.work.quarantine)
        self._spent("commit", t)
        rep.quarantined = [asdict(q) for q in kept]
        suspect = len(result.suspect_ids)
        if kept or suspect:
            rep.status, rep.reason = PARTIAL, _partial_reason(len(kept), suspect)
        else:
            rep.status = SYNCED
        if not register_imports(self.imports_table, seg, self.run_id, result.location, notes):
            # Delivered and committed, but not recorded where users look for it: the run fails (exit 1).
            with self._history_lock:
                self.report.error = self.report.error or f"{seg.name}: {notes[-1]}"

    def _commit(
        self,
        con,
        ops: DiffOps,
        prepared: PreparedSegment,
        result: DeliveryResult,
        quarantine: dict[str, QuarantinedRow],
    ) -> list[QuarantinedRow]:
        """Commit the new snapshot with the rows the platform rejected quarantined; returns them."""
        self._hold_lease()
        seg = prepared.segment
        rejected = dict(result.rejected)
        _log_refusals(seg.name, rejected)
        kept = []
        for rid in sorted(rejected):
            old = quarantine.get(rid)
            kept.append(
                QuarantinedRow(
                    rid,
                    PLATFORM_REFUSED,
                    old.first_run_id if old else self.run_id,
                    self.run_id,
                    (old.attempts + 1) if old else 1,
                )
            )
        kept_back = frozenset(rejected) | result.suspect_ids  # suspect: neither
        ops.commit(con, prepared, kept_back, tuple(kept))
        return kept


# ------------------------------------------------ value-free forms of what a destination says
def _job_document(segment: str, job) -> dict:
    """A job as history keeps it: id, status, counts -- not the platform's failure messages (logged at debug)."""
    doc = asdict(job)
    for failure in doc.pop("failures", None) or ():
        log.debug("%s job %s: %s", segment, job.job_id, failure)
    return doc


def _unconfirmed_reason(segment: str, result: DeliveryResult) -> str:
    """Why a delivery is unconfirmed, by code, job ids, statuses and counts; the platform's messages go to the log."""
    for error in result.errors:
        log.debug("%s: %s", segment, error)
    jobs = ", ".join(
        f"job {j.job_id} {j.status}"
        + (f" ({j.status_reason})" if j.status_reason else "")
        + (f", {j.total_failures} failure(s)" if j.total_failures else "")
        for j in result.jobs
    )
    count = len(result.errors)
    said = (
        f"{count} error{'s' if count != 1 else ''} (platform-error" + (f"; {jobs}" if jobs else "") + "); "
        "the platform's messages are in the local log at debug level"
        if count
        else "the destination did not say why" + (f" ({jobs})" if jobs else "")
    )
    return f"the destination did not confirm the delivery: {said}; the rows stay in doubt and are resent next run"


def _partial_reason(kept: int, suspect: int) -> str:
    """Why a committed delivery is partial: rows the platform refused (quarantined), rows still suspect, or both."""
    return (
        "; ".join(
            filter(
                None,
                (
                    f"{kept} row(s) rejected by the destination are quarantined (resent next run)" if kept else "",
                    f"{suspect} row(s) still suspect (not yet proven refused or accepted) are resent next run, "
                    "which continues the search"
                    if suspect
                    else "",
                ),
            )
        )
        + "; the rest is committed"
    )


def _log_refusals(segment: str, rejected: dict[str, str]) -> None:
    for rid, message in sorted(rejected.items()):
        log.debug("%s: the platform refused %s: %s", segment, rid, message)
