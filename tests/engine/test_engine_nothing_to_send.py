"""Runs that send nothing: when they still commit, and what their reports carry."""

from __future__ import annotations

import pytest

from sync.state import open_state_store
from tests.engine.harness import EngineHarness, Scripted, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}
TIER = {"endpoint_id": "Id", "plan": "Attributes.Tier"}


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


def test_an_unchanged_run_commits_nothing(h):
    # Given a synced segment
    h.segment("seg_a", COLS, [("e1", "pro")])
    first = h.run()
    # When nothing changed upstream
    again = by_segment(h.run())["seg_a"]
    # Then it is unchanged and the committed snapshot is still the first run's
    assert (again.status, again.reason, again.notes) == ("unchanged", "nothing changed", [])
    assert h.pointer("seg_a")["run_id"] == first.run_id


def test_the_first_sync_of_an_empty_segment_commits_an_empty_snapshot(h):
    # Given a segment with no members yet
    h.segment("seg_a", COLS, [])
    # When it syncs for the first time
    report = h.run()
    # Then nothing is sent, but an empty snapshot is committed: the next run is no longer a first sync
    assert by_segment(report)["seg_a"].status == "unchanged"
    assert (h.pointer("seg_a")["run_id"], h.pointer("seg_a")["rows"]) == (report.run_id, 0)
    h.rebuild("seg_a", [("e1", "pro")])
    assert by_segment(h.run())["seg_a"].reason != "first sync"


def test_a_mapping_change_of_an_empty_segment_is_committed(h):
    # Given an empty segment committed with Attributes.Plan
    h.segment("seg_a", COLS, [])
    h.run()
    # When its column is mapped to another field
    h.rebuild("seg_a", columns=TIER)
    report = h.run()
    # Then the new mapping is committed although nothing was sent
    assert h.pointer("seg_a")["run_id"] == report.run_id
    assert h.pointer("seg_a")["fields"] == ["Id", "Attributes.Tier"]


def test_an_id_in_doubt_that_left_a_keep_segment_is_settled_by_a_commit(h):
    # Given e1 committed, then e2 entering in a delivery that was never confirmed
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "basic")])
    failed = h.run(destination=Scripted(h.exports, "unconfirmed"), allow_size_change=True)  # 1 -> 2 members
    # When e2 leaves again (a `keep` segment sends no exit for it)
    h.rebuild("seg_a", [("e1", "pro")])
    settled = h.run()
    # Then nothing is sent, the run says what was in doubt, and commits to supersede the record
    rep = by_segment(settled)["seg_a"]
    assert (rep.status, rep.reason) == ("unchanged", "nothing changed")
    assert rep.notes == [f"1 id(s) in doubt from run {failed.run_id} (never confirmed): resent"]
    assert h.pointer("seg_a")["run_id"] == settled.run_id
    # And the record is cleared: the next run has nothing in doubt
    store = open_state_store(str(h.state_dir))
    assert store.load_in_doubt("files", "seg_a", h.root / "check") is None
    assert by_segment(h.run())["seg_a"].notes == []


def test_a_quarantined_id_that_left_a_keep_segment_is_released_by_a_commit(h):
    # Given e2 refused by the platform (quarantined) while e1 was committed
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    h.run(destination=Scripted(h.exports, rejected={"e2": "bad value"}))
    assert [q["id"] for q in h.pointer("seg_a")["quarantine"]] == ["e2"]
    # When e2 leaves the segment
    h.rebuild("seg_a", [("e1", "pro")])
    report = h.run()
    # Then nothing is sent and the commit releases the quarantine
    assert by_segment(report)["seg_a"].status == "unchanged"
    assert (h.pointer("seg_a")["run_id"], h.pointer("seg_a")["quarantine"]) == (report.run_id, [])


def _quarantined_and_in_doubt(h: EngineHarness) -> str:
    """e1..e4 committed but e2 quarantined; then a delivery of a change to e3 never confirmed. Returns its run."""
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic"), ("e3", "pro"), ("e4", "pro")])
    h.run(destination=Scripted(h.exports, rejected={"e2": "bad value"}))
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "basic"), ("e3", "plus"), ("e4", "pro")])
    return h.run(destination=Scripted(h.exports, "unconfirmed")).run_id


@pytest.mark.parametrize(
    ("options", "status"),
    [
        pytest.param({"max_exit_share": 0.5}, "refused", id="mass-exit-refusal"),
        pytest.param(
            {"dry_run": True, "command": "plan", "allow_mass_exit": True, "allow_size_change": True},
            "planned",
            id="plan",
        ),
    ],
)
def test_a_run_that_stops_before_delivery_still_reports_notes_and_quarantined_rows(h, options, status):
    # Given a quarantined row and ids in doubt
    unconfirmed = _quarantined_and_in_doubt(h)
    # When most members leave, and the run is refused by the guard or only planned
    h.rebuild("seg_a", [("e1", "pro")])
    rep = by_segment(h.run(**options))["seg_a"]
    # Then its report still says what was in doubt (e3, and e2 resent with it) and which rows are quarantined
    assert rep.status == status
    assert rep.notes == [f"2 id(s) in doubt from run {unconfirmed} (never confirmed): resent"]
    assert [(q["id"], q["code"], q["attempts"]) for q in rep.quarantined] == [("e2", "platform-refused", 1)]


def test_a_waiver_note_names_every_contested_field(h):
    # Given seg_a committed two fields, then seg_b claims both
    both = {"endpoint_id": "Id", "plan": "Attributes.Plan", "tier": "Attributes.Tier"}
    h.segment("seg_a", both, [("e1", "pro", "gold")])
    h.run()
    h.segment(
        "seg_b", {"endpoint_id": "Id", "p": "Attributes.Plan", "t": "Attributes.Tier"}, [("e2", "basic", "silver")]
    )
    # When both sync
    rep = by_segment(h.run())["seg_a"]
    # Then seg_a keeps both, and its note lists the two conflicts apart
    rule = "each field has exactly one owner"
    assert rep.notes == [
        "keeps its fields although another segment claims them: "
        f"seg_a.plan: [field-ownership] Attributes.Plan is also written by seg_b; {rule}; "
        f"seg_a.tier: [field-ownership] Attributes.Tier is also written by seg_b; {rule}"
    ]


def test_a_segment_that_cannot_be_read_fails_and_keeps_the_notes_gathered_before(h):
    import duckdb

    # Given ids in doubt from an unconfirmed delivery, then the segment's table gone from the build
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.run()
    h.rebuild("seg_a", [("e1", "plus")])
    unconfirmed = h.run(destination=Scripted(h.exports, "unconfirmed")).run_id
    with duckdb.connect(str(h.database)) as con:
        con.execute('drop table segments."seg_a"')
    # When it syncs
    rep = by_segment(h.run())["seg_a"]
    # Then it failed (a build to fix, not a refusal of bad data), saying why and what was in doubt
    assert rep.status == "failed"
    assert rep.reason.startswith("lakeseg.segments.seg_a is not in ") and rep.reason.endswith(
        ": run `dbt build` for this segment"
    )
    assert rep.notes == [f"1 id(s) in doubt from run {unconfirmed} (never confirmed): resent"]
