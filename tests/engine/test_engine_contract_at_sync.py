"""A table changed after its dbt tests passed is refused by the sync, and nothing of it is sent or committed."""

from __future__ import annotations

import pytest

from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "last_name": "User.UserAttributes.LastName"}
OTHER = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


@pytest.fixture
def h(tmp_path):
    return EngineHarness(tmp_path)


def test_given_a_newline_written_after_the_tests_passed_when_synced_then_that_segment_is_refused_and_nothing_sent(h):
    # Given two segments built, tested (every test passed) and synced once
    h.segment("seg_a", COLS, [("e1", "Jones"), ("e2", "Brown")])
    h.segment("seg_b", OTHER, [("e1", "pro")])
    first = h.run()
    committed = h.pointer("seg_a")
    # When seg_a's table is changed after its tests passed (a newline in a value), the artifacts unchanged
    h.rebuild("seg_a", [("e1", "Jones"), ("e2", "Zyxwv-Smith,\nJr.")])
    h.rebuild("seg_b", [("e1", "plus")])
    report = by_segment(h.run())
    # Then seg_a is refused naming the model, the column and the rule (not the value), and seg_b is synced
    assert report["seg_a"].status == "refused"
    assert report["seg_a"].reason.startswith(
        "seg_a: column last_name (User.UserAttributes.LastName) breaks pinpoint_no_control_chars in 1 row(s)"
    )
    assert "Zyxwv" not in report["seg_a"].reason
    assert report["seg_b"].status == "synced"
    # And nothing of seg_a was sent or committed: its last delivery is the first run's, its snapshot unchanged
    assert sorted(p.name for p in h.exports.glob("*/seg_a")) == ["seg_a"]
    assert (h.exports / first.run_id / "seg_a").exists()
    assert h.pointer("seg_a") == committed
