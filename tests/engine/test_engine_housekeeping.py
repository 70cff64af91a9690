"""The engine's housekeeping: run ids, dead owners, interrupted runs, private work folders, field ownership."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import types
from datetime import datetime, timedelta, timezone

import pytest

from sync.run.engine import OWNER_FILE, _owner_is_dead_here, mark_interrupted, new_run_id
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

HERE = socket.gethostname()
GONE = 2**22 + 4321  # above Linux's pid_max: no such process


def test_run_ids_sort_by_start_to_the_millisecond_and_are_unique():
    t = datetime(2026, 11, 26, 6, 7, 8, 912345, tzinfo=timezone.utc)
    a, b = new_run_id(t), new_run_id(t)
    assert a.startswith("20261126T060708912Z-") and len(a) == len("20261126T060708912Z-") + 6
    assert a != b
    assert new_run_id(t) < new_run_id(t + timedelta(milliseconds=1))


@pytest.mark.parametrize(
    "run,status",
    [
        pytest.param({"status": "running", "host": HERE, "pid": GONE}, "interrupted", id="dead-pid-here"),
        pytest.param({"status": "running", "host": HERE, "pid": "<live>"}, "running", id="live-pid-here"),
        pytest.param({"status": "running", "host": "elsewhere", "pid": GONE}, "running", id="other-host-recent"),
        pytest.param(
            {"status": "running", "host": "elsewhere", "pid": GONE, "started_at": "2020-01-01T00:00:00+00:00"},
            "interrupted",
            id="other-host-days-old",
        ),
        pytest.param(
            {"status": "running", "host": "elsewhere", "pid": GONE, "started_at": "2020-01-01T00:00:00"},
            "interrupted",
            id="naive-timestamp-days-old",
        ),
        pytest.param({"status": "running", "host": HERE, "pid": "12"}, "running", id="pid-not-a-number"),
        pytest.param({"status": "succeeded", "host": HERE, "pid": GONE}, "succeeded", id="finished-kept"),
    ],
)
def test_a_running_run_whose_process_is_gone_reads_as_interrupted(run, status, live_pid):
    run = {"started_at": datetime.now(timezone.utc).isoformat(), **run}
    run["pid"] = live_pid if run["pid"] == "<live>" else run["pid"]
    assert mark_interrupted(run)["status"] == status


def test_work_folders_of_dead_runs_here_are_removed_and_live_ones_kept(tmp_path, live_pid):
    # Given work folders left by a dead run here, a live run here, another host (recent and old)
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    folders = {}
    for name, owner in {
        "dead": {"host": HERE, "pid": GONE},
        "live": {"host": HERE, "pid": live_pid},
        "remote": {"host": "elsewhere", "pid": GONE},
        "remote-old": {"host": "elsewhere", "pid": GONE},
    }.items():
        d = h.work / name
        d.mkdir(parents=True)
        (d / OWNER_FILE).write_text(json.dumps(owner))
        folders[name] = d
    old = time.time() - 2 * 86400
    os.utime(folders["remote-old"], (old, old))
    # When a sync runs
    h.run()
    # Then only the dead run's and the day-old folder are gone
    assert sorted(p.name for p in h.work.iterdir()) == ["live", "remote"]


@pytest.mark.parametrize(
    ("owner_file", "age_days", "removed"),
    [
        pytest.param(None, 1.5, True, id="no-owner-file-day-and-a-half-old"),
        pytest.param("not json", 2, True, id="damaged-owner-file-old"),
        pytest.param("[1, 2]", 2, True, id="owner-file-not-a-mapping-old"),
        pytest.param("not json", 0, False, id="damaged-owner-file-recent"),
        pytest.param(None, 0, False, id="no-owner-file-recent"),
    ],
)
def test_a_work_folder_of_unknown_owner_is_removed_once_a_day_old(tmp_path, owner_file, age_days, removed):
    # Given a work folder whose owner cannot be told, beside plain files (they are not work folders)
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    folder = h.work / "left"
    folder.mkdir(parents=True)
    if owner_file is not None:
        (folder / OWNER_FILE).write_text(owner_file)
    for n in range(5):
        (h.work / f"note-{n}.txt").write_text("kept")
    when = time.time() - age_days * 86400
    os.utime(folder, (when, when))
    # When a sync runs
    assert h.run().status == "succeeded"
    # Then the folder goes once it is over a day old, and the files stay
    assert folder.exists() is not removed
    assert sorted(p.name for p in h.work.iterdir()) == (["left"] if not removed else []) + [
        f"note-{n}.txt" for n in range(5)
    ]


def test_a_work_folder_removed_by_another_run_while_this_one_looks_at_it_is_skipped(tmp_path, monkeypatch):
    from sync.run import engine

    # Given a work folder that another run removes just as this one reads its owner from the name
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    folder = h.work / "left"
    folder.mkdir(parents=True)
    real = engine.owners.owner_of

    def removed_meanwhile(name):
        if name == "left" and folder.exists():
            folder.rmdir()
        return real(name)

    monkeypatch.setattr(engine.owners, "owner_of", removed_meanwhile)
    # When a sync runs, then the folder that is gone is skipped and the run goes on
    assert h.run().status == "succeeded"
    assert not folder.exists()


def test_a_work_folder_exactly_a_day_old_is_kept(tmp_path, monkeypatch):
    from sync.run import engine

    # Given a clock fixed at T and a folder of another host last touched at T minus exactly one day
    now = 1_790_000_000
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic))
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    folder = h.work / "remote"
    folder.mkdir(parents=True)
    (folder / OWNER_FILE).write_text(json.dumps({"host": "elsewhere", "pid": GONE}))
    os.utime(folder, ns=((now - 86400) * 10**9, (now - 86400) * 10**9))
    # When a sync runs, then the folder stays: only older than a day is abandoned
    h.run()
    assert folder.exists()


def test_the_runs_work_folder_is_private_while_it_runs_and_removed_after(tmp_path):
    from sync.destinations.files import FilesDestination

    # Given a segment, and a destination that looks at the run's work folder while it delivers
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    seen = {}

    class Peek(FilesDestination):
        def deliver(self, delivery, progress=None):
            run_dir = h.work / os.listdir(h.work)[0]
            seen["mode"] = stat.S_IMODE(run_dir.stat().st_mode)
            seen["segment's mode"] = stat.S_IMODE((run_dir / "seg_a").stat().st_mode)
            seen["owner"] = json.loads((run_dir / OWNER_FILE).read_text())
            return super().deliver(delivery, progress)

    # When it runs
    report = h.run(destination=Peek(h.exports))
    # Then the run's folder and the segment's inside it are the owner's alone, and nothing is left after
    assert seen["mode"] == seen["segment's mode"] == 0o700
    assert seen["owner"] == {"host": HERE, "pid": os.getpid(), "run_id": report.run_id}
    assert list(h.work.iterdir()) == []


def test_a_field_claimed_by_two_segments_refuses_only_the_newcomer(tmp_path):
    # Given seg_a synced Attributes.Plan first
    h = EngineHarness(tmp_path)
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro")])
    h.run()
    # When seg_b claims the same field
    h.segment("seg_b", {"endpoint_id": "Id", "plan2": "Attributes.Plan"}, [("e2", "basic")])
    h.rebuild("seg_a", [("e1", "plus")])
    report = h.run()
    # Then seg_a keeps syncing (with a note) and seg_b is refused naming the rule
    a, b = by_segment(report)["seg_a"], by_segment(report)["seg_b"]
    assert a.status == "synced" and any("another segment claims" in n for n in a.notes)
    assert b.status == "refused" and "[field-ownership]" in b.reason


def test_asking_whether_a_live_owner_is_dead_does_not_signal_it():
    # Given a live process on this host, on which any signal would act (SIGHUP too, even under nohup)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        # When its liveness is checked
        dead = _owner_is_dead_here({"host": HERE, "pid": child.pid})
        # Then it is alive, and still running afterwards (the check sends no signal)
        assert dead is False
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.3)
    finally:
        child.kill()
        child.wait()


def test_an_owner_this_user_may_not_signal_is_not_dead(monkeypatch):
    # Given a pid that belongs to another user (kill answers EPERM)
    def refuse(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)
    # Then it is taken as alive: its lock and work folder are left alone
    assert _owner_is_dead_here({"host": HERE, "pid": 12345}) is False


PLAN_COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


def _incumbent_and_newcomer(h: EngineHarness, newcomer_columns: dict) -> None:
    """seg_a committed Attributes.Plan; then seg_b claims it too and seg_a changes."""
    h.segment("seg_a", PLAN_COLS, [("e1", "pro")])
    h.run()
    h.segment("seg_b", newcomer_columns, [("e2", "basic", "gold")[: len(newcomer_columns)]])
    h.rebuild("seg_a", [("e1", "plus")])


def test_the_incumbent_keeps_its_field_when_the_newcomer_also_exports_fields_of_its_own(tmp_path):
    # Given seg_b claims seg_a's committed field and exports one only it has
    h = EngineHarness(tmp_path)
    _incumbent_and_newcomer(h, {"endpoint_id": "Id", "plan2": "Attributes.Plan", "tier": "Attributes.Tier"})
    # When both sync
    report = by_segment(h.run())
    # Then only the shared field is contested: seg_a syncs, saying why, and seg_b is refused
    assert report["seg_a"].status == "synced"
    assert report["seg_a"].notes == [
        "keeps its fields although another segment claims them: seg_a.plan: "
        "[field-ownership] Attributes.Plan is also written by seg_b; each field has "
        "exactly one owner"
    ]
    assert report["seg_b"].status == "refused"


def test_the_incumbent_keeps_its_field_after_adding_an_uncontested_one(tmp_path):
    # Given seg_b claims seg_a's field, and seg_a now also exports a field nobody else has (not yet committed)
    h = EngineHarness(tmp_path)
    _incumbent_and_newcomer(h, {"endpoint_id": "Id", "plan2": "Attributes.Plan"})
    h.rebuild("seg_a", [("e1", "plus", "gold")], columns={**PLAN_COLS, "tier": "Attributes.Tier"})
    # Then seg_a still syncs: only its contested field must be committed
    report = by_segment(h.run())
    assert report["seg_a"].status == "synced"
    assert report["seg_b"].status == "refused"


def test_an_incumbent_with_another_contract_problem_is_refused(tmp_path):
    # Given seg_a holds the contested field but also breaks another rule (an exit choice that is not one)
    h = EngineHarness(tmp_path)
    _incumbent_and_newcomer(h, {"endpoint_id": "Id", "plan2": "Attributes.Plan"})
    h.rebuild("seg_a", exit="drop")
    # Then the ownership waiver does not cover the other problem
    rep = by_segment(h.run())["seg_a"]
    assert rep.status == "refused"
    assert "[field-ownership]" in rep.reason and "[exit]" in rep.reason


def test_an_unreadable_state_waives_no_ownership_conflict(tmp_path, monkeypatch):
    # Given the incumbent, whose committed fields cannot be read this time
    h = EngineHarness(tmp_path)
    _incumbent_and_newcomer(h, {"endpoint_id": "Id", "plan2": "Attributes.Plan"})
    state = open_state_store(str(h.state_dir))

    def unreadable(destination, segment):
        raise OSError("state store unreachable")

    monkeypatch.setattr(state, "committed_fields", unreadable)
    # Then neither segment may write the contested field
    report = by_segment(h.run(state=state))
    assert report["seg_a"].status == "refused" and report["seg_b"].status == "refused"


def test_a_test_that_signals_a_process_it_does_not_own_fails_without_signalling_it():
    # Given the machine's init (pid 1), which no test owns
    # When a test's code sends it a signal (as a mutant of the liveness check once did)
    # Then the test fails before the signal is sent
    with pytest.raises(pytest.fail.Exception, match="sent signal 1 to pid 1, a process it does not own"):
        os.kill(1, signal.SIGHUP)


def test_the_live_stand_in_is_this_tests_own_process_and_alive(live_pid):
    # Given the stand-in for another run's live process, then it runs on this host and a check finds it alive
    assert _owner_is_dead_here({"host": HERE, "pid": live_pid}) is False
