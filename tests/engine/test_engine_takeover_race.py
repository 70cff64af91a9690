"""Issue 27, messages that tell the truth: only the winner of a lock takeover says it took the lock."""

from __future__ import annotations

import contextlib
import socket

import pytest

from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

SEG = "seg_a"
NO_SUCH_PID = 2**22 + 1  # above Linux's pid_max: never a live process


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment(SEG, {"endpoint_id": "Id", "tier": "User.UserAttributes.Tier"}, [("ep-1", "gold"), ("ep-2", "gold")])
    return h


@pytest.mark.parametrize(
    "winner_still_holds",
    [
        pytest.param(True, id="winner-still-holds-the-lock"),
        pytest.param(False, id="winner-already-released-it"),
    ],
)
def test_the_loser_of_a_takeover_race_never_says_it_took_the_lock(h, monkeypatch, caplog, live_pid, winner_still_holds):
    # Given a lock left by a dead run here, and another run that takes it over first (between this run's read
    # of the dead lock and its compare-and-delete), then holds it or has already released it again
    store = open_state_store(str(h.state_dir))
    real_force_unlock = store.force_unlock
    winner = {"run_id": "winner", "host": "elsewhere", "pid": live_pid}

    def raced(destination, segment, token=None):
        real_force_unlock(destination, segment, token=token)  # the winner's compare-and-delete
        if winner_still_holds:
            stack.enter_context(store.lock(destination, segment, winner))
        return real_force_unlock(destination, segment, token=token)  # this run's: the lock is no longer that one

    monkeypatch.setattr(store, "force_unlock", raced)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            store.lock("files", SEG, {"run_id": "gone", "host": socket.gethostname(), "pid": NO_SUCH_PID})
        )
        # When this run syncs the segment
        with caplog.at_level("INFO", logger="sync.run.engine"):
            segment = by_segment(h.run(state=store))[SEG]
    # Then it never says it took the lock over: it is refused by the winner's lock, or takes the free lock plainly
    assert not any("took over" in m for m in caplog.messages), caplog.messages
    assert not any("took over" in n for n in segment.notes), segment.notes
    if winner_still_holds:
        assert segment.status == "refused" and "run winner on elsewhere" in segment.reason
    else:
        assert segment.status == "synced", segment.reason
