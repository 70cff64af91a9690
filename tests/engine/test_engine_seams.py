"""The run's seams: what a collaborator must declare, and who releases a segment's lock."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sync.readers.duckdb import DuckDBReader
from sync.run.engine import _Workspace
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, Scripted

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


class Staging:
    """A reader that stages and cleans up, and declares nothing else."""

    def __init__(self, inner: DuckDBReader):
        self.inner = inner

    def stage(self, con, relation, columns, workdir):
        return self.inner.stage(con, relation, columns, workdir)

    def cleanup(self):
        self.inner.cleanup()


class Registering:
    """An imports table that registers, and declares nothing else."""

    def register(self, segment, run_id, location):
        pass


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment("seg_a", COLS, [("e1", "pro")])
    return h


@pytest.mark.parametrize(
    ("collaborator", "message"),
    [
        pytest.param(
            "reader",
            "the reader Staging does not declare notes_for, preflight, stats_for (every reader states each "
            "capability of sync.readers.base.SegmentReader, even as none)",
            id="reader",
        ),
        pytest.param(
            "imports_table",
            "the imports table Registering does not declare know, repair (every imports table states each "
            "capability of sync.run.imports_table.ImportsTable, even as none)",
            id="imports-table",
        ),
    ],
)
def test_a_collaborator_that_does_not_declare_every_capability_is_refused_by_name(h, collaborator, message):
    # Given a reader or an imports table that leaves capabilities of its Protocol undeclared
    given = {"reader": Staging(DuckDBReader(h.database)), "imports_table": Registering()}[collaborator]
    # When a run is put together with it, then it is refused, naming what it lacks
    with pytest.raises(TypeError) as err:
        h.run(**{collaborator: given})
    assert str(err.value) == message
    # And nothing ran: no state, no work folder
    assert not h.state_dir.exists() and not h.work.exists()


def test_a_delivery_that_cannot_be_started_releases_the_segments_lock_once(tmp_path: Path):
    # Given a segment's lock held for a delivery, and a pool that no longer takes work
    released: list[str] = []
    held = contextlib.ExitStack()
    held.callback(released.append, "lock")
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    space = _Workspace(tmp_path, None, pool)
    # When the delivery is handed over
    with pytest.raises(RuntimeError):
        space.hand_over(held, lambda stack, job: None, job=None)
    # Then the lock is released here, once, and nothing is pending
    held.close()
    assert released == ["lock"] and space.pending == []


def test_a_delivery_handed_over_releases_the_segments_lock_in_the_pool_once(tmp_path: Path):
    # Given a segment's lock held for a delivery
    released: list[str] = []
    held = contextlib.ExitStack()
    held.callback(released.append, "lock")

    def deliver(stack, job):
        with stack:
            return "delivered"

    # When the pool runs the delivery
    with ThreadPoolExecutor(max_workers=1) as pool:
        space = _Workspace(tmp_path, None, pool)
        space.hand_over(held, deliver, None)
        (future,) = space.pending
        assert future.result() == "delivered"
    # Then the pool released the lock, once; the stack left with the caller holds nothing more
    held.close()
    assert released == ["lock"]


def test_a_delivery_carries_the_segments_job_ledger_in_the_state_store(h):
    # Given a destination that notes a job it creates in the ledger its delivery carries
    def note_a_job(delivery):
        delivery.ledger.remember("lakeseg-seg_a-1", "job-1", delivery.run_id)

    destination = Scripted(h.exports, check=note_a_job)
    # When the segment syncs
    report = h.run(destination=destination)
    # Then the job is in the segment's ledger in the state store, for a later run to find
    entries = open_state_store(str(h.state_dir)).job_ledger("files", "seg_a").entries()
    assert report.status == "succeeded"
    assert [(e["name"], e["job_id"], e["run_id"]) for e in entries] == [("lakeseg-seg_a-1", "job-1", report.run_id)]


def test_a_delivery_carries_the_unfinished_search_with_the_header_it_was_found_with(h):
    # Given a segment synced once, then an unfinished search for refused rows kept in its state
    assert h.run().status == "succeeded"
    state = open_state_store(str(h.state_dir))
    fields = ("Id", "Attributes.Plan")
    state.save_search("files", "seg_a", [("e1",)], fields=fields, run_id="r0", workdir=h.work / "saved")
    seen = []
    # When the next run delivers
    report = h.run(destination=Scripted(h.exports, check=lambda d: seen.append(d.search)))
    # Then its delivery continues that search: the same groups, found with the same header
    assert report.status == "succeeded"
    assert [(s.groups, s.fields) for s in seen] == [((("e1",),), fields)]
