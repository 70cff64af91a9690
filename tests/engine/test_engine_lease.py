"""The engine under the run lease: segment locks of dead runs, hand-overs after a lost lease, and
``lakeseg run`` / ``lakeseg sync`` taking the lease before anything is built or sent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest
from click.testing import CliRunner

from sync.core.errors import LeaseHeld
from sync.readers.duckdb import DuckDBReader
from sync.run.lease import RunLease
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

SEG = "seg_a"
COLUMNS = {"endpoint_id": "Id", "tier": "User.UserAttributes.Tier"}
TEN = [(f"ep-{i}", "gold") for i in range(10)]


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment(SEG, COLUMNS, TEN, exit={"User.UserAttributes.Tier": "none"})
    return h


def new_lease(store, run_id="20261201T050000000Z-abcdef", **kw) -> RunLease:
    return RunLease(store, run_id=run_id, command="run", ttl=600, heartbeat=60, on_lost=lambda _r: None, **kw)


@pytest.mark.parametrize(
    "lock_lease,expected",
    [
        ("t-killed-run", "synced"),
        (None, "refused"),
    ],
    ids=["taken-under-an-earlier-lease", "taken-without-a-lease"],
)
def test_a_segment_lock_of_a_run_whose_lease_is_gone_is_taken_over(h, live_pid, lock_lease, expected):
    # Given a segment lock left by a run on another host (whose pid says nothing here), taken under an
    # earlier run lease -- or under none (an older lakeseg): then its owner's death cannot be proven
    store = open_state_store(str(h.state_dir))
    owner = {
        "run_id": "r-killed",
        "host": "codebuild-9",
        "pid": live_pid,
        **({"lease": lock_lease} if lock_lease else {}),
    }
    with contextlib.ExitStack() as left, new_lease(store) as lease:
        left.enter_context(store.lock("files", SEG, owner))
        # When a run holding the lease syncs the segment
        segment = by_segment(h.run(state=store, lease=lease))[SEG]
    # Then a lock of an earlier lease is taken over, saying whose; one without a lease still refuses
    assert segment.status == expected, segment.reason
    if expected == "synced":
        assert any(
            "took over the lock left by a dead run (held by run r-killed on codebuild-9" in n for n in segment.notes
        )
    else:
        assert "r-killed" in segment.reason


def test_segment_locks_name_the_lease_they_are_taken_under(h):
    store = open_state_store(str(h.state_dir))
    seen = []
    from tests.engine.harness import Scripted

    destination = Scripted(h.exports, check=lambda _d: seen.append(store.read_lock("files", SEG).owner))
    with new_lease(store) as lease:
        report = h.run(state=store, destination=destination, lease=lease)
    assert report.run_id == lease.run_id
    assert [o.get("lease") for o in seen] == [lease.token]


def test_a_run_that_lost_its_lease_hands_nothing_over(h):
    # Given a run whose lease was taken over by another (it looked dead from there)
    store = open_state_store(str(h.state_dir))
    lease = new_lease(store).acquire()
    lease.lost = "run r: the run lease is no longer this run's (another run took it over)"
    # When it syncs, then the segment fails without a delivery or a commit
    segment = by_segment(h.run(state=store, lease=lease))[SEG]
    assert segment.status == "failed" and "no longer this run's" in segment.reason
    assert [p for p in h.exports.glob("*") if not p.name.startswith(".")] == []  # nothing delivered
    assert h.pointer(SEG) is None


class ScanningReader(DuckDBReader):
    """The DuckDB reader, reporting what each relation's query scanned once staged (as the Athena reader does)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scanned: dict[str, dict] = {}

    def stage(self, con, relation, *args, **kwargs):
        self.scanned[str(relation)] = {"query_id": "q-1", "data_scanned_bytes": 123_456}
        return super().stage(con, relation, *args, **kwargs)

    def stats_for(self, relation):
        return self.scanned.get(str(relation))

    def notes_for(self, relation):
        got = self.scanned.get(str(relation))
        return [f"query {got['query_id']} scanned {got['data_scanned_bytes']} bytes"] if got else []


def test_bytes_scanned_per_segment_reach_history_and_metrics(h):
    from sync.output.metrics import segment_documents

    # Given a reader that knows what each segment's query scanned
    store = open_state_store(str(h.state_dir))
    # When the segment is synced
    report = h.run(state=store, reader=ScanningReader(h.database))
    # Then the segment report, its notes, the run history and the segment's metric line carry it
    assert by_segment(report)[SEG].data_scanned_bytes == 123_456
    assert "query q-1 scanned 123456 bytes" in by_segment(report)[SEG].notes
    assert store.get_run(report.run_id)["segments"][0]["data_scanned_bytes"] == 123_456
    doc = segment_documents(store.get_run(report.run_id))[0]
    assert doc["DataScannedBytes"] == 123_456
    assert {"Name": "DataScannedBytes", "Unit": "Bytes"} in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]


# ---------------------------------------------------------------- lakeseg run / lakeseg sync


class Req:
    project = None


REQ = Req()


class Settings:
    def __init__(self, state: str):
        self.state, self.state_kms_key_id = state, None


@pytest.fixture
def app(tmp_path, monkeypatch):
    """``build_then_sync`` with dbt and the sync replaced by recorders; the lease and its store are real."""
    from sync.app import run as app_run
    from sync.app import wiring

    state_dir = tmp_path / "state"
    calls: list[tuple] = []
    monkeypatch.setattr(wiring, "load_context", lambda req: (None, Settings(str(state_dir))))
    monkeypatch.setattr(app_run, "load_context", lambda req: (None, Settings(str(state_dir))))
    monkeypatch.setattr(app_run, "prepare_local_database", lambda project: None)
    monkeypatch.setattr(app_run, "dbt_build_args", lambda req, args: [])
    monkeypatch.setattr(wiring, "send_notifications", lambda req, run: None)  # no notify settings here

    def invoke(command, project, args):
        calls.append(("dbt " + command, json.loads(open_state_store(str(state_dir)).read_lease())["owner"]))
        return True

    def prepare_run(req, *, command, lease=None, **kw):
        calls.append(("sync", lease))

        class Run:
            class report:  # noqa: N801
                phases: dict = {}

            def execute(self):
                return "report"

        return Run()

    monkeypatch.setattr(app_run, "invoke", invoke)
    monkeypatch.setattr(wiring, "prepare_run", prepare_run)
    monkeypatch.setattr(app_run, "prepare_run", prepare_run)
    return open_state_store(str(state_dir)), calls


def plant_live_lease(store, pid: int) -> None:
    store.create_lease(
        json.dumps(
            {
                "owner": {"run_id": "r-codebuild", "command": "run", "host": "codebuild-1", "pid": pid},
                "token": "t",
                "renewed_at": "2099-01-01T00:00:00+00:00",
                "expires_at": "2099-01-01T00:10:00+00:00",
            }
        ).encode()
    )


def test_lakeseg_run_builds_and_syncs_under_one_lease(app):
    from sync.app.run import build_then_sync

    store, calls = app
    # When lakeseg run runs, then dbt build ran holding the lease, and the sync got that same lease
    assert build_then_sync(REQ) == "report"
    (build, owner), (sync, lease) = calls
    assert build == "dbt build" and sync == "sync"
    assert owner["run_id"] == lease.run_id and owner["pid"] == os.getpid() and owner["command"] == "run"
    # and the lease is released at the end
    assert store.read_lease() is None


@pytest.mark.parametrize("command", ["run", "sync"])
def test_a_second_run_finding_a_live_lease_stops_before_building(app, live_pid, command):
    from sync.app.run import build_then_sync
    from sync.app.wiring import run_sync

    store, calls = app
    # Given the other runner's run holds the lease
    plant_live_lease(store, live_pid)
    # When lakeseg run (or lakeseg sync) starts, then it stops with LeaseHeld: nothing built, nothing synced
    with pytest.raises(LeaseHeld, match="another run holds the lease .*run r-codebuild"):
        build_then_sync(REQ) if command == "run" else run_sync(REQ)
    assert calls == []


def test_a_plan_takes_no_lease(app, live_pid):
    from sync.app.wiring import run_sync

    store, calls = app
    plant_live_lease(store, live_pid)
    assert run_sync(REQ, command="plan", dry_run=True) == "report"
    assert calls == [("sync", None)]


def test_the_cli_exits_3_with_the_holder_named_when_the_lease_is_held(app, live_pid):
    from sync import cli

    store, calls = app
    plant_live_lease(store, live_pid)
    result = CliRunner().invoke(cli.main, ["run", "--no-report"], catch_exceptions=False)
    assert result.exit_code == 3
    assert "Error: another run holds the lease (run r-codebuild (lakeseg run) on codebuild-1" in result.stderr
    assert "nothing was built or synced" in result.stderr and calls == []


def test_sigterm_during_a_sync_ends_the_cli_with_143_after_cleanup(monkeypatch):
    from sync import cli
    from sync.app import wiring

    cleaned = []

    def sync_killed_by_codebuild(req, **kw):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # this test's own process
            time.sleep(5)
        finally:
            cleaned.append("finally ran")
        raise AssertionError("SIGTERM did not end the sync")

    monkeypatch.setattr(wiring, "run_sync", sync_killed_by_codebuild)
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(cli.main, ["sync", "--no-report"], catch_exceptions=False)
    assert result.exit_code == 143 and "stopped by SIGTERM" in result.stderr
    assert cleaned == ["finally ran"]
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only


def test_a_lease_taken_over_is_in_the_runs_history_and_output(h):
    from sync.output.terminal import render

    # Given a lease left by a run killed on another host, expired
    store = open_state_store(str(h.state_dir))
    store.create_lease(
        json.dumps(
            {
                "owner": {"run_id": "r-killed", "command": "run", "host": "codebuild-1", "pid": 7},
                "token": "t",
                "renewed_at": "2020-01-01T00:00:00+00:00",
                "expires_at": "2020-01-01T00:15:00+00:00",
            }
        ).encode()
    )
    # When a run takes it over and syncs
    with new_lease(store) as lease:
        report = h.run(state=store, lease=lease)
    # Then its history and its printed report name the dead run
    notes = store.get_run(report.run_id)["notes"]
    assert len(notes) == 1 and notes[0].startswith("took over the run lease of dead run r-killed (run r-killed")
    assert notes[0] in render(report)


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_a_stop_during_dbt_build_ends_the_run_instead_of_syncing(monkeypatch, tmp_path, stop):
    """dbt's runner returns every exception as a result (after cancelling its queries on Ctrl-C);
    a stop must still end lakeseg run, not go on to sync."""
    import dbt.cli.main

    from sync.core.signals import Terminated
    from sync.dbt.invoke import DbtProject, invoke

    exc = Terminated("stopped by SIGTERM") if stop == "sigterm" else KeyboardInterrupt()

    class Runner:
        def invoke(self, args):
            return dbt.cli.main.dbtRunnerResult(success=False, exception=exc)

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", Runner)
    with pytest.raises(type(exc)):
        invoke("build", DbtProject(tmp_path, tmp_path))
