"""One run as its caller sees it: what each destination is handed, the run report, notes and reasons."""

from __future__ import annotations

import pytest

from sync.destinations.files import FilesDestination
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}
OTHER = {"endpoint_id": "Id", "tier": "Attributes.Tier"}


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


class Recording(FilesDestination):
    def __init__(self, path):
        super().__init__(path)
        self.deliveries, self.preflights = [], 0

    def preflight(self):
        self.preflights += 1
        super().preflight()

    def deliver(self, delivery, progress=None):
        self.deliveries.append(delivery)
        return super().deliver(delivery, progress)


def test_the_destination_is_handed_the_run_segment_header_counts_and_platform_segment(h):
    # Given a segment that keeps a platform segment of the members whose plan is 'pro'
    h.segment(
        "seg_a",
        COLS,
        [("e1", "pro"), ("e2", "basic")],
        extra_meta={"segment_name": "Pro users", "segment_values": {"Attributes.Plan": ["pro"]}},
    )
    destination = Recording(h.exports)
    # When it syncs
    report = h.run(destination=destination)
    # Then the delivery names the run, the segment, the header, every count and the platform segment
    (d,) = destination.deliveries
    assert (d.run_id, d.segment, d.fields) == (report.run_id, "seg_a", ("Id", "Attributes.Plan"))
    assert d.counts == {
        "rows": 2,
        "previous_rows": 0,
        "entered": 2,
        "changed": 0,
        "exited": 0,
        "unchanged": 0,
        "exit_rows": 0,
        "dirty": 0,
        "resent": 0,
        "resent_exits": 0,
        "refresh": 0,
        "to_send": 2,
    }
    assert (d.segment_name, d.segment_filter) == ("Pro users", {"Attributes.Plan": ("pro",)})
    assert [p.name for p in d.files] == by_segment(report)["seg_a"].files
    assert destination.preflights == 1


def test_the_run_report_names_command_target_destination_state_and_ends(h):
    h.segment("seg_b", OTHER, [("e1", "gold")])
    h.segment("seg_a", COLS, [("e2", "pro")])
    report = h.run()
    assert (report.command, report.target, report.destination, report.state) == (
        "sync",
        "local",
        "files",
        str(h.state_dir),
    )
    assert report.status == "succeeded" and report.error is None and report.finished_at >= report.started_at
    assert [s.segment for s in report.segments] == ["seg_a", "seg_b"]
    assert report.as_dict()["segments"][0]["segment"] == "seg_a"


def test_a_run_with_a_failed_segment_has_failed(h):
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.segment("seg_b", OTHER, [("e2", "gold")], status="error")
    report = h.run()
    assert report.status == "failed" and not report.ok
    assert by_segment(report)["seg_b"].status == "skipped"


def test_a_plan_neither_checks_the_destination_nor_writes_history(h):
    h.segment("seg_a", COLS, [("e1", "pro")])
    destination = Recording(h.exports)
    report = h.run(destination=destination, command="plan", dry_run=True)
    rep = by_segment(report)["seg_a"]
    assert (rep.status, rep.reason) == ("planned", "first sync")
    assert destination.preflights == 0 and destination.deliveries == []
    assert open_state_store(str(h.state_dir)).list_runs() == []
    assert not h.exports.exists() or not any(h.exports.iterdir())


def test_an_unchanged_segment_says_nothing_changed(h):
    h.segment("seg_a", COLS, [("e1", "pro")])
    h.run()
    rep = by_segment(h.run())["seg_a"]
    assert (rep.status, rep.reason, rep.files) == ("unchanged", "nothing changed", [])
    assert rep.plan["unchanged"] == 1


def test_a_segment_breaking_its_contract_is_refused_naming_each_problem(h):
    h.segment("seg_a", COLS, [("e1", "pro")], exit="drop")
    rep = by_segment(h.run())["seg_a"]
    assert rep.status == "refused"
    assert rep.reason == (
        "breaks the segment contract (see `lakeseg check`): seg_a: [exit] exit must be 'keep' or a "
        "mapping of field to value, got 'drop'"
    )


def test_a_segment_whose_model_failed_is_skipped_with_dbts_reason(h):
    h.segment("seg_a", COLS, [("e1", "pro")], status="error")
    rep = by_segment(h.run())["seg_a"]
    assert rep.status == "skipped" and rep.reason and rep.plan is None


def test_ids_in_doubt_are_resent_with_a_note_naming_the_run(h):
    from sync.destinations.base import DeliveryResult

    class Unconfirmed(FilesDestination):
        def deliver(self, delivery, progress=None):
            super().deliver(delivery, progress)
            return DeliveryResult(confirmed=False)

    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    failed = h.run(destination=Unconfirmed(h.exports))
    rep = by_segment(h.run())["seg_a"]
    assert f"2 id(s) in doubt from run {failed.run_id} (never confirmed): resent" in rep.notes
    assert rep.status == "synced" and rep.plan["dirty"] == 2


def test_an_expiring_destination_resends_members_due_for_a_refresh_with_a_note(h):
    from datetime import datetime, timedelta, timezone

    class Expiring(FilesDestination):
        refresh_after = timedelta(days=30)

    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    start = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    first = by_segment(h.run(destination=Expiring(h.exports), clock=lambda: start))["seg_a"]
    # the first run sends both as new: none is due for a refresh, and no note says one is
    assert first.plan["refresh"] == 0 and not [n for n in first.notes if "due for a refresh" in n]
    later = start + timedelta(days=31)
    # 31 days on, both members were confirmed before the 30-day cutoff: they are sent again
    report = h.run(destination=Expiring(h.exports), clock=lambda: later)
    rep = by_segment(report)["seg_a"]
    assert rep.plan["refresh"] == 2 and sorted(r["Id"] for r in h.delivered(report, "seg_a")) == ["e1", "e2"]
    assert (
        "2 unchanged member(s) due for a refresh before they expire (last confirmed at or before "
        "2026-11-02 12:00 UTC): resent"
    ) in rep.notes
    # and a day later nothing is due
    assert (
        by_segment(h.run(destination=Expiring(h.exports), clock=lambda: later + timedelta(days=1)))["seg_a"].status
        == "unchanged"
    )


def test_a_destination_that_cannot_take_a_segment_refuses_only_that_one(h):
    class Picky(FilesDestination):
        def check_segment(self, seg):
            return ["Attributes.Tier [no-target]: no profile field for it"] if seg.name == "seg_b" else []

    h.segment("seg_a", COLS, [("e1", "pro")])
    h.segment("seg_b", OTHER, [("e2", "gold")])
    report = by_segment(h.run(destination=Picky(h.exports)))
    assert report["seg_a"].status == "synced"
    assert report["seg_b"].reason == (
        "breaks the segment contract (see `lakeseg check`): seg_b.Attributes.Tier [no-target]: no profile field for it"
    )


def test_the_wall_clock_is_utc():
    from datetime import timezone

    from sync.run.engine import wall_clock

    assert wall_clock().tzinfo is timezone.utc


def test_a_segment_with_several_contract_problems_names_them_all(h):
    h.segment(
        "seg_a",
        {"endpoint_id": "Id", "plan": "Attributes.Plan", "plan2": "Attributes.Plan"},
        [("e1", "pro", "pro")],
        exit="drop",
    )
    rep = by_segment(h.run())["seg_a"]
    assert rep.reason == (
        "breaks the segment contract (see `lakeseg check`): "
        "seg_a.plan2: [one-column-per-field] Attributes.Plan is also mapped from column plan; "
        "seg_a: [exit] exit must be 'keep' or a mapping of field to value, got 'drop'"
    )


def test_an_in_doubt_record_of_the_run_that_committed_is_void(h):
    # Given a committed run whose in-doubt record was left behind (a crash between commit and clean-up)
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    first = h.run()
    store = open_state_store(str(h.state_dir))
    ids = h.root / "ids.parquet"
    import duckdb

    with duckdb.connect() as con:
        con.execute(f"copy (select 'e1' as Id) to '{ids}' (format parquet)")
    store.record_in_doubt("files", "seg_a", ids, rows=1, run_id=first.run_id)
    # Then the next run has nothing in doubt and nothing to send
    rep = by_segment(h.run())["seg_a"]
    assert (rep.status, rep.plan["dirty"]) == ("unchanged", 0)


def test_a_quarantined_row_is_resent_even_when_upstream_moved_back(h):
    from sync.destinations.base import DeliveryResult

    class RejectE2(FilesDestination):
        def deliver(self, delivery, progress=None):
            location = super().deliver(delivery, progress).location
            return DeliveryResult(confirmed=True, rejected={"e2": "bad plan"}, location=location)

    # Given e2 committed as 'basic', then 'plus' refused by the platform (quarantined)
    h.segment("seg_a", COLS, [("e1", "pro"), ("e2", "basic")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "plus")])
    assert by_segment(h.run(destination=RejectE2(h.exports)))["seg_a"].status == "partial"
    # When upstream goes back to 'basic'
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "basic")])
    report = h.run()
    # Then e2 is still resent (quarantined rows are resent every run until accepted)
    assert h.delivered(report, "seg_a") == [{"Id": "e2", "Attributes.Plan": "basic"}]
    assert by_segment(report)["seg_a"].plan["resent"] == 1


class NotingReader:
    """The DuckDB reader, recording where it is asked to stage and adding a note per relation (as Athena does)."""

    def __init__(self, inner):
        self.inner, self.staged = inner, []

    def stage(self, con, relation, columns, workdir):
        self.staged.append(workdir)
        return self.inner.stage(con, relation, columns, workdir)

    def preflight(self):
        self.inner.preflight()

    def stats_for(self, relation):
        return self.inner.stats_for(relation)

    def notes_for(self, relation):
        return [f"read {relation.identifier} (query q-1, 1 MB scanned)"]

    def cleanup(self):
        self.inner.cleanup()


def test_the_reader_stages_in_the_segments_folder_and_its_notes_reach_the_report(h):
    from sync.readers.duckdb import DuckDBReader

    h.segment("seg_a", COLS, [("e1", "pro")])
    reader = NotingReader(DuckDBReader(h.database))
    report = h.run(reader=reader)
    (staged,) = reader.staged
    assert staged == h.run_folder(report) / "seg_a" / "source"
    assert "read seg_a (query q-1, 1 MB scanned)" in by_segment(report)["seg_a"].notes
