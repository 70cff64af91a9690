"""Deliveries that fail, half-succeed or crash: nothing is lost, nothing is committed early."""

from __future__ import annotations

import pytest

from sync.state import open_state_store
from tests.engine.harness import EngineHarness, Scripted, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


@pytest.mark.parametrize("verdict", ["unconfirmed", "raise"])
def test_a_failed_delivery_commits_nothing_and_the_next_run_resends_it(h, verdict):
    # Given a synced segment whose next delivery fails
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "plus"), ("e3", "pro")])
    failed = by_segment(h.run(destination=Scripted(h.exports, verdict)))["seg_a"]
    # Then the segment failed, saying so, and the exit code will be 1
    assert failed.status == "failed"
    assert (
        ("resent next run" in failed.reason) if verdict == "unconfirmed" else (failed.reason.startswith("RuntimeError"))
    )
    # And the next run sends the same rows again
    again = h.run()
    assert sorted(r["Id"] for r in h.delivered(again, "seg_a")) == ["e2", "e3"]
    assert by_segment(h.run())["seg_a"].status == "unchanged"


def test_rows_in_doubt_are_resent_even_when_upstream_moved_back(h):
    # Given e2 was 'basic' (committed), then 'plus' was delivered but never confirmed
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "plus")])
    h.run(destination=Scripted(h.exports, "unconfirmed"))
    # When upstream goes back to 'basic' (equal to the committed snapshot)
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "basic")])
    report = h.run()
    # Then e2 is resent anyway: the platform may hold 'plus'
    seg = by_segment(report)["seg_a"]
    assert h.delivered(report, "seg_a") == [{"Id": "e2", "Attributes.Plan": "basic"}]
    assert any("in doubt" in n for n in seg.notes)
    assert by_segment(h.run())["seg_a"].status == "unchanged"


def test_rejected_rows_are_quarantined_and_resent_until_accepted(h):
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic"), ("e3", "pro")])
    # When the platform refuses e2
    partial = by_segment(h.run(destination=Scripted(h.exports, rejected={"e2": "bad value"})))["seg_a"]
    # Then the rest is committed, e2 is quarantined by code (the platform's message may quote values), and the
    # run is not ok
    assert partial.status == "partial" and "1 row(s)" in partial.reason
    assert [(q["id"], q["code"], q["attempts"]) for q in partial.quarantined] == [("e2", "platform-refused", 1)]
    # And the next run resends only e2; refused again, its attempts grow
    again = h.run(destination=Scripted(h.exports, rejected={"e2": "bad value"}))
    assert [r["Id"] for r in h.delivered(again, "seg_a")] == ["e2"]
    assert by_segment(again)["seg_a"].quarantined[0]["attempts"] == 2
    # And once accepted, the segment is clean
    accepted = h.run()
    assert by_segment(accepted)["seg_a"].status == "synced" and by_segment(accepted)["seg_a"].quarantined == []
    assert by_segment(h.run())["seg_a"].status == "unchanged"


def test_a_segment_locked_by_a_live_run_is_refused_and_the_others_proceed(h, live_pid):
    import socket

    store = open_state_store(str(h.state_dir))
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.segment("seg_b", {"endpoint_id": "Id", "tier": "Attributes.Tier"}, [("e1", "gold")])
    # Given another live process on this host holds seg_a's lock
    with store.lock("files", "seg_a", {"run_id": "other", "host": socket.gethostname(), "pid": live_pid}):
        report = h.run(state=store)
    seg = by_segment(report)["seg_a"]
    assert seg.status == "refused" and "other" in seg.reason
    assert by_segment(report)["seg_b"].status == "synced"
    # And seg_a syncs once the lock is free
    assert by_segment(h.run(state=store))["seg_a"].status == "synced"


def test_one_segments_crash_fails_only_that_segment(h):
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.segment("seg_b", {"endpoint_id": "Id", "tier": "Attributes.Tier"}, [("e1", "gold")])

    def boom(delivery):
        if delivery.segment == "seg_a":
            raise ValueError("a bug")

    report = h.run(destination=Scripted(h.exports, check=boom))
    assert by_segment(report)["seg_a"].status == "failed" and by_segment(report)["seg_a"].reason.startswith(
        "ValueError"
    )
    assert by_segment(report)["seg_b"].status == "synced"
    assert report.status == "failed" and not report.ok
