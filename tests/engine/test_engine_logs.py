"""What a run says in its log when housekeeping or a delivery goes wrong: a warning a user can act on, the
exception's own words (which may quote data) at debug level only, and the segment or place named."""

from __future__ import annotations

import logging

import pytest

from sync.core.errors import LakesegError
from sync.destinations.base import DeliveryResult, JobRecord
from sync.destinations.files import FilesDestination
from sync.readers.duckdb import DuckDBReader
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment("seg_a", COLS, [("e1", "pro")])
    return h


def records(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == "sync.run.engine"]


def above_debug(caplog) -> list[str]:
    """What the run said at info and warning level: where no attribute value may appear."""
    return records(caplog, logging.INFO) + records(caplog, logging.WARNING)


class BrokenImports:
    """An imports table whose repair fails, quoting a value in its message."""

    def know(self, segments) -> None: ...

    def repair(self) -> None:
        raise OSError("cannot rebuild from 'Smith, Jr.'")

    def register(self, segment, run_id, location) -> None: ...


def test_an_imports_table_that_cannot_be_repaired_is_a_warning_and_the_run_fails(h, caplog):
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(imports_table=BrokenImports())
    assert report.status == "failed" and report.error.startswith("imports table not repaired: ")
    assert [m for m in records(caplog, logging.WARNING) if m.startswith("imports table")] == [report.error]
    assert "imports table not repaired: OSError: cannot rebuild from 'Smith, Jr.'" in records(caplog, logging.DEBUG)


class Debris(FilesDestination):
    """The files destination, whose clean-up of dead runs' staging folders removes two, or fails."""

    def __init__(self, exports, fail: bool):
        super().__init__(exports)
        self.fail = fail

    def collect_debris(self, dead_runs, max_age_seconds):
        if self.fail:
            raise PermissionError("export folder is read-only")
        return ["a", "b"]


@pytest.mark.parametrize(
    "fail,level,message",
    [
        (
            True,
            logging.WARNING,
            "could not collect what dead runs left in the destination: PermissionError: export folder is read-only",
        ),
        (False, logging.INFO, "removed 2 file(s) or folder(s) dead runs left in the destination"),
    ],
    ids=["collection-fails", "collection-removes"],
)
def test_collecting_what_dead_runs_left_says_what_it_removed_or_why_it_could_not(h, caplog, fail, level, message):
    with caplog.at_level(logging.INFO, logger="sync.run.engine"):
        report = h.run(destination=Debris(h.exports, fail))
    # Then the run goes on either way, and the log says what happened where
    assert by_segment(report)["seg_a"].status == "synced"
    assert message in records(caplog, level)


def test_a_run_that_ends_in_an_exception_logs_it_at_debug_with_its_type(h, caplog):
    state = open_state_store(str(h.state_dir))

    def broken(*_a, **_k):
        raise RuntimeError("state offline")

    state.collect_debris = broken  # housekeeping only warns: the run goes on to its segments
    state.load_snapshot = broken
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(state=state)
    assert by_segment(report)["seg_a"].status == "failed"
    assert "segment seg_a failed: state offline" in records(caplog, logging.DEBUG)
    assert "could not collect what dead runs left in the state store: RuntimeError: state offline" in records(
        caplog, logging.WARNING
    )


def test_the_platforms_words_on_a_refused_row_go_to_the_debug_log_only(h, caplog):
    from tests.engine.harness import Scripted

    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(destination=Scripted(h.exports, rejected={"e1": "bad value 'Smith, Jr.'"}))
    assert by_segment(report)["seg_a"].status == "partial"
    assert "seg_a: the platform refused e1: bad value 'Smith, Jr.'" in records(caplog, logging.DEBUG)
    assert not [m for m in above_debug(caplog) if "Smith" in m]


class QuotingError(LakesegError):
    """A lakeseg error carrying another system's words (which may quote data), as a query engine's does."""

    @property
    def public(self) -> str:
        return "the platform refused the import (its words are in the local log at debug level)"


class Quoting(FilesDestination):
    """The files destination, whose delivery fails with ``error``."""

    def __init__(self, exports, error: Exception):
        super().__init__(exports)
        self.error = error

    def deliver(self, delivery, progress=None):
        raise self.error


class FailingRead(DuckDBReader):
    """The DuckDB reader, whose read of the segment fails with ``error``."""

    def __init__(self, database, error: Exception):
        super().__init__(database)
        self.error = error

    def stage(self, con, relation, columns, workdir):
        raise self.error


# Where a lakeseg error is raised: what the run is given to raise it there, and how its debug line starts.
FAILING = {
    "reading": (lambda h, error: {"reader": FailingRead(h.database, error)}, "seg_a: "),
    "delivering": (lambda h, error: {"destination": Quoting(h.exports, error)}, "delivery of seg_a: "),
}


@pytest.mark.parametrize("where", list(FAILING))
@pytest.mark.parametrize(
    ("error", "debug"),
    [
        pytest.param(
            QuotingError("value 'Smith, Jr.' is not allowed"),
            ["value 'Smith, Jr.' is not allowed"],
            id="its-words-differ-from-the-public-ones",
        ),
        pytest.param(LakesegError("the relation is gone"), [], id="its-words-are-the-public-ones"),
    ],
)
def test_a_lakeseg_error_reports_its_public_words_and_logs_any_others_at_debug_naming_the_segment(
    h, caplog, where, error, debug
):
    # Given a read of the segment, or its delivery, that fails with a lakeseg error
    failing, starts = FAILING[where]
    # When the segment syncs, with debug logging on
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(**failing(h, error))
    # Then the report keeps its public words, and only words beyond them go to the debug log, naming the segment
    assert by_segment(report)["seg_a"].reason == error.public
    assert [m.removeprefix(starts) for m in records(caplog, logging.DEBUG) if m.startswith(starts)] == debug


class Unconfirmed(FilesDestination):
    """A platform that took nothing: its job failed, with its words on the job, the delivery and a refused row."""

    def deliver(self, delivery, progress=None):
        job = JobRecord("job-1", "FAILED", 1, 1, failures=["row 1: 'Smith, Jr.' too long"])
        return DeliveryResult(
            confirmed=False, jobs=[job], errors=["import FAILED near 'Smith, Jr.'"], rejected={"e1": "'Smith, Jr.'"}
        )


def test_an_unconfirmed_deliverys_platform_words_go_to_the_debug_log_each_naming_the_segment(h, caplog):
    # Given a delivery the platform did not take, its job, errors and refused row quoting a value
    # When the segment syncs, with debug logging on
    with caplog.at_level(logging.DEBUG, logger="sync.run.engine"):
        report = h.run(destination=Unconfirmed(h.exports))
    # Then each of the platform's words is a debug line naming the segment, and none reaches a higher level
    assert by_segment(report)["seg_a"].status == "failed"
    debug = records(caplog, logging.DEBUG)
    assert "seg_a job job-1: row 1: 'Smith, Jr.' too long" in debug
    assert "seg_a: import FAILED near 'Smith, Jr.'" in debug
    assert "seg_a: the platform refused e1: 'Smith, Jr.'" in debug
    assert not [m for m in above_debug(caplog) if "Smith" in m]
