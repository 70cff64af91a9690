"""Issue 15's engine behaviours, each verified to fail on a deliberately broken copy of the engine."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

from sync.core.errors import LockHeld
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, Scripted, by_segment

SEG = "seg_a"
COLUMNS = {"endpoint_id": "Id", "tier": "User.UserAttributes.Tier"}
TEN = [(f"ep-{i}", "gold") for i in range(10)]
NO_SUCH_PID = 2**22 + 1  # above the highest pid Linux can give (pid_max is at most 2^22): never a live process


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment(SEG, COLUMNS, TEN, exit={"User.UserAttributes.Tier": "none"})
    return h


def deliveries(h: EngineHarness) -> list:
    """Delivered segment folders (the hidden staging folder excluded)."""
    if not h.exports.exists():
        return []
    return sorted(p for run in h.exports.iterdir() if not run.name.startswith(".") for p in run.iterdir())


def committed_run(h: EngineHarness) -> str | None:
    pointer = h.pointer(SEG)
    return pointer["run_id"] if pointer else None


def test_the_lock_is_held_until_the_snapshot_is_committed(h, monkeypatch):
    """Guards issue 15 behaviour 1: the segment lock is released only after the snapshot commit, never between
    delivery and commit; verified to fail on a broken copy (sync/run/engine.py:SyncRun._deliver_and_commit closing
    the lock stack right after destination.deliver)."""
    # Given a segment to sync, and an overlapping run that tries to take its lock at the moment of the commit
    store = open_state_store(str(h.state_dir))
    seen = []
    commit = store.commit_snapshot

    def overlapping_run_at_commit(destination, segment, *args, **kwargs):
        try:
            with store.lock(destination, segment, {"run_id": "overlapping"}):
                seen.append("the overlapping run took the lock")
        except LockHeld as exc:
            seen.append(str(exc))
        return commit(destination, segment, *args, **kwargs)

    monkeypatch.setattr(store, "commit_snapshot", overlapping_run_at_commit)
    # When the segment is delivered and committed
    report = h.run(state=store)
    # Then the overlapping run was refused: the lock was still this run's when the snapshot was committed
    assert by_segment(report)[SEG].status == "synced", by_segment(report)[SEG].reason
    assert len(seen) == 1 and f"run {report.run_id}" in seen[0], seen
    # and it is released afterwards
    assert store.read_lock("files", SEG) is None


@pytest.mark.parametrize("how", ["full-refresh", "mapping-change"])
def test_the_mass_exit_guard_holds_on_a_full_send(h, how):
    """Guards issue 15 behaviour 3: the mass-exit guard also refuses a --full-refresh or a mapping change;
    verified to fail on a broken copy (sync/run/guard.py:mass_exit_refusal returning None when plan.full_refresh)."""
    # Given a committed segment of ten members
    first = h.run()
    # When a build that keeps only two of them is synced as a full send
    h.rebuild(SEG, TEN[:2], **({} if how == "full-refresh" else {"exit": {"User.UserAttributes.Tier": "gone"}}))
    segment = by_segment(h.run(full_refresh=how == "full-refresh"))[SEG]
    # Then the segment is refused as a mass exit: nothing more is delivered and the old snapshot stays committed
    assert segment.plan["full_refresh"] and segment.plan["exited"] == 8
    assert segment.status == "refused" and "8 of 10 previous members" in segment.reason
    assert len(deliveries(h)) == 1
    assert committed_run(h) == first.run_id


@pytest.mark.parametrize(
    "host,taken_over", [(socket.gethostname(), True), ("another-host", False)], ids=["this-host", "another-host"]
)
def test_a_dead_owners_lock_is_taken_over_only_on_its_own_host(h, host, taken_over):
    """Guards issue 15 behaviour 8: a lock whose pid is free here is taken over only if it was taken on this host;
    verified to fail on a broken copy (sync/run/engine.py:_owner_is_dead_here without the host check)."""
    store = open_state_store(str(h.state_dir))
    # Given a lock left by a run whose pid runs nowhere here, taken on `host`
    with contextlib.ExitStack() as held:
        held.enter_context(store.lock("files", SEG, {"run_id": "gone", "host": host, "pid": NO_SUCH_PID}))
        # When the segment is synced
        segment = by_segment(h.run(state=store))[SEG]
    # Then it takes the lock over only when the owner ran on this host (elsewhere the pid says nothing)
    if taken_over:
        assert segment.status == "synced", segment.reason
        assert any("took over the lock left by a dead run" in n for n in segment.notes)
    else:
        assert segment.status == "refused" and "run gone on another-host" in segment.reason
        assert deliveries(h) == [] and committed_run(h) is None


def test_a_taken_over_lock_is_held_in_this_runs_name(h):
    store = open_state_store(str(h.state_dir))
    owners = []
    # Given a lock left by a dead run on this host, and a destination that looks at the lock while it delivers
    with contextlib.ExitStack() as held:
        held.enter_context(
            store.lock("files", SEG, {"run_id": "gone", "host": socket.gethostname(), "pid": NO_SUCH_PID})
        )
        destination = Scripted(h.exports, check=lambda _d: owners.append(store.read_lock("files", SEG).owner))
        # When the segment is synced
        report = h.run(state=store, destination=destination)
    # Then the lock it delivered under names this run, this host and this process
    assert [(o["run_id"], o["host"], o["pid"]) for o in owners] == [(report.run_id, socket.gethostname(), os.getpid())]


def test_a_takeover_is_logged_naming_the_lock_and_its_dead_owner(h, caplog):
    store = open_state_store(str(h.state_dir))
    with contextlib.ExitStack() as held:
        held.enter_context(
            store.lock("files", SEG, {"run_id": "gone", "host": socket.gethostname(), "pid": NO_SUCH_PID})
        )
        with caplog.at_level("WARNING", logger="sync.run.engine"):
            h.run(state=store)
    assert (
        f"took over the lock on files/{SEG} from dead held by run gone on {socket.gethostname()} "
        f"(pid {NO_SUCH_PID}) for 0 min"
    ) in caplog.messages


def test_a_dead_lock_replaced_by_a_live_run_meanwhile_is_not_taken(h, monkeypatch, live_pid):
    """Two runs judged the same lock dead: the one whose takeover comes second must leave the other's new lock."""
    store = open_state_store(str(h.state_dir))
    real_force_unlock = store.force_unlock
    live = {"run_id": "live", "host": "elsewhere", "pid": live_pid}

    def raced(destination, segment, token=None):
        # Meanwhile the other run deleted the dead lock and took its own
        real_force_unlock(destination, segment)
        stack.enter_context(store.lock(destination, segment, live))
        return real_force_unlock(destination, segment, token=token)

    monkeypatch.setattr(store, "force_unlock", raced)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            store.lock("files", SEG, {"run_id": "gone", "host": socket.gethostname(), "pid": NO_SUCH_PID})
        )
        segment = by_segment(h.run(state=store))[SEG]
        # Then this run is refused and the live run's lock is still there
        assert segment.status == "refused" and "run live on elsewhere" in segment.reason
        assert store.read_lock("files", SEG).owner == live
    assert deliveries(h) == []
