"""When something breaks mid-run: one segment's bug, an interrupted run, cleanup and history that fail,
and deliveries the run must wait for."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import types
from datetime import datetime, timezone

import pytest

from sync.destinations.files import FilesDestination
from sync.readers.duckdb import DuckDBReader
from sync.run import engine
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}
TIER = {"endpoint_id": "Id", "tier": "Attributes.Tier"}


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.segment("seg_b", TIER, [("e2", "gold")])
    return h


class Failing(DuckDBReader):
    """The DuckDB reader, raising ``error`` when it stages ``segment``."""

    def __init__(self, path, segment: str, error: BaseException, before=None):
        super().__init__(path)
        self.segment, self.error, self.before = segment, error, before

    def stage(self, con, relation, columns, workdir):
        if relation.identifier == self.segment:
            if self.before:
                self.before()
            raise self.error
        return super().stage(con, relation, columns, workdir)


def test_an_unexpected_error_in_one_segment_fails_only_that_segment(h, monkeypatch, caplog):
    # Given a monotonic clock that moves 1.5 s per reading, and a reader with a bug for seg_a
    readings = iter(10_000 + n * 1.5 for n in range(1000))
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(monotonic=lambda: next(readings), time=engine.time.time))
    reader = Failing(h.database, "seg_a", ValueError("bad row 7\nsecond line of detail"))
    # When the run goes on
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(reader=reader)
    seg = by_segment(report)
    # Then seg_a failed with the error's type and first line, timed like any segment, and seg_b synced
    assert (seg["seg_a"].status, seg["seg_a"].reason) == (
        "failed",
        "ValueError (its message is in the local log at debug level)",
    )
    assert seg["seg_a"].started_at and seg["seg_a"].duration_s in {1.5, 3.0, 4.5}
    assert seg["seg_b"].status == "synced" and report.status == "failed"
    # And the traceback is logged at debug level only, naming the segment
    (record,) = [r for r in caplog.records if r.getMessage().startswith("segment seg_a failed")]
    assert record.levelno == logging.DEBUG and record.exc_info[0] is ValueError


def test_an_interrupted_run_records_why_in_its_history_and_leaves_no_work_folder(h):
    # Given a run interrupted while it reads seg_a (Ctrl-C)
    with pytest.raises(KeyboardInterrupt):
        h.run(reader=Failing(h.database, "seg_a", KeyboardInterrupt("stop")))
    # Then its history says it failed and why, and its work folder (personal data) is gone
    (run,) = open_state_store(str(h.state_dir)).list_runs()
    assert (run["status"], run["error"]) == (
        "failed",
        "KeyboardInterrupt (its message is in the local log at debug level)",
    )
    assert list(h.work.iterdir()) == []


class Slow(FilesDestination):
    """Delivers after ``release`` is set, and a moment more; says when it finished."""

    def __init__(self, path, release: threading.Event):
        super().__init__(path)
        self.release, self.finished = release, threading.Event()

    def deliver(self, delivery, progress=None):
        self.release.wait(5)
        time.sleep(0.3)
        result = super().deliver(delivery, progress)
        self.finished.set()
        return result


def test_an_interrupted_run_waits_for_the_delivery_in_flight_before_it_ends(h):
    # Given seg_a handed to the destination, and the run interrupted while it reads seg_b
    started = threading.Event()
    destination = Slow(h.exports, started)
    reader = Failing(h.database, "seg_b", KeyboardInterrupt("stop"), before=started.set)
    # When the interruption ends the run
    with pytest.raises(KeyboardInterrupt):
        h.run(reader=reader, destination=destination)
    # Then seg_a's delivery had finished by then (its files are not pulled from under it)
    assert destination.finished.is_set()


def test_a_reader_that_fails_to_clean_up_does_not_fail_the_run(h):
    class Untidy(DuckDBReader):
        def cleanup(self):
            raise OSError("detach failed")

    report = h.run(reader=Untidy(h.database))
    assert report.status == "succeeded"


def test_a_work_folder_removed_before_the_run_ends_does_not_fail_it(h):
    # Given something (a temp cleaner) that removes the work folders as the run ends
    class Cleaned(DuckDBReader):
        def cleanup(self):
            super().cleanup()
            shutil.rmtree(h.work)

    # Then the run still ends with its own outcome
    assert h.run(reader=Cleaned(h.database)).status == "succeeded"


def test_a_history_that_cannot_be_written_is_logged_and_the_run_goes_on(h, caplog):
    # Given a state store that cannot write run history
    state = open_state_store(str(h.state_dir))

    def full(run):
        raise OSError("disk full")

    state.write_run = full
    # When a run goes on
    with caplog.at_level(logging.WARNING, logger="sync.run.engine"):
        report = h.run(state=state)
    # Then it succeeds, and says (as a warning) why its history is missing
    assert report.status == "succeeded"
    assert "could not write run history: disk full" in caplog.messages


def test_duckdb_spills_into_the_runs_own_work_folder(h):
    # Given a reader that notes where DuckDB spills while the run reads
    seen = []

    class Peek(DuckDBReader):
        def stage(self, con, relation, columns, workdir):
            seen.append(con.execute("select current_setting('temp_directory')").fetchone()[0])
            return super().stage(con, relation, columns, workdir)

    report = h.run(reader=Peek(h.database))
    # Then it is inside this run's work folder (private, and removed with it)
    assert seen and all(s.startswith(str(h.run_folder(report)) + "/") for s in seen)


class Overlap(FilesDestination):
    """Notes how many deliveries run at once; each waits a moment for another to start."""

    def __init__(self, path, max_parallel: int | None):
        super().__init__(path)
        if max_parallel is not None:
            self.max_parallel = max_parallel
        self.active = self.most = 0
        self.lock, self.another = threading.Lock(), threading.Event()

    def deliver(self, delivery, progress=None):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            if self.active > 1:
                self.another.set()
        self.another.wait(0.3)
        with self.lock:
            self.active -= 1
        return super().deliver(delivery, progress)


class Bare:
    """A destination that delivers, and says nothing else: not how many deliveries it takes at once, whether
    its data expires, what it cannot take, or what a dead run left."""

    name = "bare"

    def __init__(self, inner: FilesDestination):
        self.inner = inner

    def preflight(self):
        self.inner.preflight()

    def deliver(self, delivery, progress=None):
        return self.inner.deliver(delivery, progress)


@pytest.mark.parametrize(
    ("max_parallel", "most"),
    [
        pytest.param(1, 1, id="one-at-a-time"),
        pytest.param(2, 2, id="two-at-once"),
    ],
)
def test_deliveries_overlap_only_as_far_as_the_destination_allows(h, max_parallel, most):
    destination = Overlap(h.exports, max_parallel)
    report = h.run(destination=destination)
    assert report.status == "succeeded"
    assert destination.most == most


def test_a_destination_that_does_not_declare_every_capability_is_refused_before_anything_runs(h):
    # Given a destination that leaves capabilities of base.Destination undeclared
    h.segment("seg_a", COLS, [("e1", "pro")])
    destination = Overlap(h.exports, None)
    # When a run is put together with it
    with pytest.raises(TypeError) as err:
        h.run(destination=Bare(destination))
    # Then it is refused, naming what it lacks, instead of each capability being skipped silently
    assert str(err.value) == (
        "the destination Bare does not declare check_segment, collect_debris, max_parallel, refresh_after "
        "(every destination states each capability of sync.destinations.base.Destination, even as none)"
    )
    # And nothing was read, sent or written
    assert destination.most == 0 and not h.state_dir.exists() and not h.work.exists()


def test_run_ids_are_utc_whatever_the_machines_time_zone(new_york):
    # Given a machine whose local time is not UTC, when a run is named
    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    run_id = engine.new_run_id()
    # Then the run id's time is UTC
    named = datetime.strptime(run_id[:15], "%Y%m%dT%H%M%S")
    assert 0 <= (named - before).total_seconds() < 5
