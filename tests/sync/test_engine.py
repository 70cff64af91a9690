"""One sync run (the engine) on a hand-made dbt build: a DuckDB file holding one segment table, a manifest
declaring it with every required test, and run results in which all of them passed. Real DuckDB, real
files destination, real local state store; no dbt invocation, so each case takes well under a second."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import duckdb
import pytest

from sync.artifacts import Artifacts
from sync.destinations.files import FilesDestination
from sync.engine import SyncOptions, SyncRun
from sync.errors import LockHeld
from sync.readers.duckdb import DuckDBReader
from sync.state.local import LocalStateStore

SEG = "seg_a"
UID = f"model.p.{SEG}"
COLUMNS = {"endpoint_id": "Id", "tier": "User.UserAttributes.Tier"}
REQUIRED = {"endpoint_id": ["unique", "not_null", "pinpoint_max_length", "pinpoint_no_control_chars"],
            "tier": ["pinpoint_max_length", "pinpoint_no_control_chars"]}
TEN = [(f"ep-{i}", "gold") for i in range(10)]
NO_SUCH_PID = 2**22 + 1  # above the highest pid Linux can give (pid_max is at most 2^22): never a live process


def manifest(exit_value: str) -> dict:
    """The segment model, exiting its field with ``exit_value``, and its required tests."""
    nodes = {UID: {"unique_id": UID, "resource_type": "model", "name": SEG, "path": f"segments/{SEG}.sql",
                   "original_file_path": f"models/segments/{SEG}.sql", "schema": "main", "alias": SEG,
                   "columns": {c: {"name": c, "meta": {"lakeseg": {"field": f}}} for c, f in COLUMNS.items()},
                   "config": {"meta": {"lakeseg": {"exit": {"User.UserAttributes.Tier": exit_value}}}}}}
    for column, tests in REQUIRED.items():
        for test in tests:
            tid = f"test.p.{test}_{SEG}_{column}"
            nodes[tid] = {"unique_id": tid, "resource_type": "test", "name": f"{test}_{SEG}_{column}",
                          "attached_node": UID, "column_name": column, "config": {"severity": "ERROR"},
                          "test_metadata": {"name": test, "kwargs": {}}}
    return {"metadata": {"invocation_id": "inv-1"}, "nodes": nodes}


def passed(manifest: dict) -> dict:
    """run_results.json of a build in which the model and every test passed."""
    return {"metadata": {"invocation_id": "inv-1"},
            "results": [{"unique_id": uid, "status": "success" if node["resource_type"] == "model" else "pass"}
                        for uid, node in manifest["nodes"].items()]}


class Engine:
    """Builds the segment table, then runs the engine against a files destination and a local state store."""

    def __init__(self, root: Path):
        self.root = root
        self.database = root / "build" / "lakeseg.duckdb"
        self.exports = root / "exports"
        self.state = LocalStateStore(root / "state")

    def build(self, rows: list[tuple[str, str]]) -> None:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.database))
        con.execute(f"create or replace table main.{SEG} (endpoint_id varchar, tier varchar)")
        con.executemany(f"insert into main.{SEG} values (?, ?)", rows)
        con.close()

    def sync(self, rows: list[tuple[str, str]], *, exit_value: str = "none", **options):
        self.build(rows)
        m = manifest(exit_value)
        run = SyncRun(artifacts=Artifacts(self.root / "target", m, passed(m)), reader=DuckDBReader(self.database),
                      destination=FilesDestination(self.exports), destination_key="files", state=self.state,
                      options=SyncOptions(**options), target="local", work_dir=self.root / "work")
        report = run.execute()
        (segment,) = report.segments
        return report, segment

    def deliveries(self) -> list[Path]:
        """Delivered segment folders (the hidden staging folder excluded)."""
        if not self.exports.exists():
            return []
        return sorted(p for run in self.exports.iterdir() if not run.name.startswith(".") for p in run.iterdir())

    def committed_run(self) -> str | None:
        pointer = self.state.root / "snapshots" / "files" / SEG / "current.json"
        return json.loads(pointer.read_text())["run_id"] if pointer.exists() else None


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


def test_the_lock_is_held_until_the_snapshot_is_committed(engine, monkeypatch):
    """Guards issue 15 behaviour 1: the segment lock is released only after the snapshot commit, never between
    delivery and commit; verified to fail on a broken copy (sync/engine.py:SyncRun._deliver_and_commit closing
    the lock stack right after destination.deliver)."""
    # Given a segment to sync, and an overlapping run that tries to take its lock at the moment of the commit
    seen = []
    commit = engine.state.commit_snapshot

    def overlapping_run_at_commit(destination, segment, *args, **kwargs):
        try:
            with engine.state.lock(destination, segment, {"run_id": "overlapping"}):
                seen.append("the overlapping run took the lock")
        except LockHeld as exc:
            seen.append(str(exc))
        return commit(destination, segment, *args, **kwargs)

    monkeypatch.setattr(engine.state, "commit_snapshot", overlapping_run_at_commit)
    # When the segment is delivered and committed
    report, segment = engine.sync(TEN)
    # Then the overlapping run was refused: the lock was still this run's when the snapshot was committed
    assert segment.status == "synced", segment.reason
    assert len(seen) == 1 and f"run {report.run_id}" in seen[0], seen
    # and it is released afterwards
    assert engine.state.read_lock("files", SEG) is None


@pytest.mark.parametrize("how", ["full-refresh", "mapping-change"])
def test_the_mass_exit_guard_holds_on_a_full_send(engine, how):
    """Guards issue 15 behaviour 3: the mass-exit guard also refuses a --full-refresh or a mapping change;
    verified to fail on a broken copy (sync/guard.py:mass_exit_refusal returning None when plan.full_refresh)."""
    # Given a committed segment of ten members
    first, _ = engine.sync(TEN)
    # When a build that keeps only two of them is synced as a full send
    kwargs = {"full_refresh": True} if how == "full-refresh" else {"exit_value": "gone"}
    _, segment = engine.sync(TEN[:2], **kwargs)
    # Then the segment is refused as a mass exit: nothing more is delivered and the old snapshot stays committed
    assert segment.plan["full_refresh"] and segment.plan["exited"] == 8
    assert segment.status == "refused" and "8 of 10 previous members" in segment.reason
    assert len(engine.deliveries()) == 1
    assert engine.committed_run() == first.run_id


@pytest.mark.parametrize("host,taken_over", [(socket.gethostname(), True), ("another-host", False)],
                         ids=["this-host", "another-host"])
def test_a_dead_owners_lock_is_taken_over_only_on_its_own_host(engine, host, taken_over):
    """Guards issue 15 behaviour 8: a lock whose pid is free here is taken over only if it was taken on this host;
    verified to fail on a broken copy (sync/engine.py:_owner_is_dead_here without the host check)."""
    # Given a lock left by a run whose pid runs nowhere here, taken on `host`
    with contextlib.ExitStack() as held:
        held.enter_context(engine.state.lock("files", SEG, {"run_id": "gone", "host": host, "pid": NO_SUCH_PID}))
        # When the segment is synced
        _, segment = engine.sync(TEN)
    # Then it takes the lock over only when the owner ran on this host (elsewhere the pid says nothing)
    if taken_over:
        assert segment.status == "synced", segment.reason
        assert any("took over the lock left by a dead run" in n for n in segment.notes)
    else:
        assert segment.status == "refused" and "run gone on another-host" in segment.reason
        assert engine.deliveries() == [] and engine.committed_run() is None
