"""Refused rows found across runs (issue 22): the unfinished search lives in state, suspect rows stay in doubt.

The destination here is the shared platform layer (``deliver_in_jobs``) over a scripted platform that refuses a
chosen set of rows and only counts them, with the default limits unless a test says otherwise.
"""

from __future__ import annotations

import duckdb
import pytest

from sync.destinations.base import RowSearch
from sync.destinations.jobs import (
    DEFAULT_MAX_ISOLATION_JOBS,
    DEFAULT_MAX_REJECTED_ROWS,
    _ids,
    deliver_in_jobs,
    search_bound,
)
from tests.destinations.test_isolation_converges import CountingPlatform
from tests.engine.harness import EngineHarness, Scripted, by_segment


def query(sql: str) -> duckdb.DuckDBPyRelation:
    """``sql`` on a connection of its own: DuckDB's default connection (``duckdb.sql``) does not survive a
    fork (its worker threads stay in the parent), and ``make mutation`` forks a child per mutant."""
    return duckdb.connect().sql(sql)


COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}


class GroupTesting:
    """A job-based destination: the delivery goes through the shared layer to a platform that refuses ``bad``."""

    name = "counting"
    max_parallel = 1
    refresh_after = None

    def check_segment(self, segment):
        return []

    def collect_debris(self, dead_runs, max_age_seconds):
        return []

    def __init__(self, bad, max_isolation_jobs=DEFAULT_MAX_ISOLATION_JOBS):
        self.platform = CountingPlatform(bad)
        self.budget = max_isolation_jobs
        self.deliveries = []

    def preflight(self):
        return None

    def deliver(self, delivery, progress=None):
        self.deliveries.append(delivery)
        self.sent = {i for path in delivery.files for i in _ids([path])}
        return deliver_in_jobs(
            self.platform,
            delivery,
            progress,
            max_job_bytes=10**9,
            max_concurrent=2,
            max_rejected_rows=DEFAULT_MAX_REJECTED_ROWS,
            max_isolation_jobs=self.budget,
            location="counting://seg",
        )


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


def rows(n):
    return [(f"ep-{i}", "gold") for i in range(n)]


def search_file(h: EngineHarness, segment: str = "seg_a"):
    return h.state_dir / "snapshots" / "files" / segment / "search.json"


def test_two_refused_rows_among_844_are_quarantined_in_one_run_and_the_segment_ends_partial(h):
    # Given one job of 844 rows of which the platform refuses two, naming neither, and the default settings
    h.segment("seg_a", COLS, rows(844))
    dest = GroupTesting({"ep-17", "ep-801"})
    # When one run delivers it
    seg = by_segment(h.run(destination=dest))["seg_a"]
    # Then both rows are quarantined in that run, the other 842 committed, and nothing is left to search
    assert seg.status == "partial", seg.reason
    assert sorted(q["id"] for q in seg.quarantined) == ["ep-17", "ep-801"]
    assert h.pointer("seg_a")["rows"] == 842 and not search_file(h).exists()
    assert len(seg.jobs) <= 1 + search_bound(2, 844)[0]
    # And the next run retries just the two quarantined rows, in one job, without searching again
    again = by_segment(h.run(destination=dest))["seg_a"]
    assert again.status == "partial" and [j["job_id"] for j in again.jobs] == [f"job-{dest.deliveries[-1].run_id}-q"]


def test_a_search_cut_short_by_the_budget_continues_next_run_until_every_refused_row_stands_alone(h):
    # Given three refused rows among 200 and a budget of 3 isolation jobs per run
    bad = {"ep-3", "ep-4", "ep-150"}
    h.segment("seg_a", COLS, rows(200))
    dest = GroupTesting(bad, max_isolation_jobs=3)
    # When the first run delivers
    first = by_segment(h.run(destination=dest))["seg_a"]
    # Then it ends partial with rows still suspect: neither quarantined nor committed, kept in state as Ids only
    assert first.status == "partial" and "still suspect" in first.reason
    assert {q["id"] for q in first.quarantined} <= bad
    kept = query(f"select * from read_parquet('{search_file(h).parent}/search-*.parquet')")
    assert kept.columns == ["Id", "grp", "pos"]
    suspect = {r[0] for r in kept.fetchall()}
    assert suspect and not suspect & {q["id"] for q in first.quarantined}
    assert h.pointer("seg_a")["rows"] == 200 - len(suspect) - len(first.quarantined)
    # When later runs follow, the search continues: each run resends the suspect and quarantined rows only
    runs, seg = 1, first
    while search_file(h).exists():
        owed = suspect | {q["id"] for q in seg.quarantined}
        report = h.run(destination=dest)
        seg, runs = by_segment(report)["seg_a"], runs + 1
        # each run resends exactly the rows left suspect and the quarantined ones, and continues the search
        assert dest.sent == owed and dest.deliveries[-1].search.ids == suspect
        assert any("still suspect" in n for n in seg.notes)
        assert {q["id"] for q in seg.quarantined} <= bad
        suspect = set()
        if search_file(h).exists():
            kept = query(f"select Id from read_parquet('{search_file(h).parent}/search-*.parquet')").fetchall()
            suspect = {r[0] for r in kept}
        assert runs <= 50
    # Then it converged within the stated bound, every refused row quarantined and every other row committed
    assert runs <= search_bound(3, 200, 2, 3)[1]
    assert {q["id"] for q in seg.quarantined} == bad and h.pointer("seg_a")["rows"] == 197
    assert dest.platform.imported == {f"ep-{i}" for i in range(200)} - bad


def test_a_changed_mapping_starts_the_search_afresh(h):
    # Given a run that left all 40 rows of its job suspect (no isolation job allowed)
    h.segment("seg_a", COLS, rows(40))
    h.run(destination=GroupTesting({"ep-7"}, max_isolation_jobs=0))
    assert search_file(h).exists()
    # When the segment gains a field (another header) and the next run has the default budget
    h.rebuild("seg_a", [(i, p, "x") for i, p in rows(40)], columns={**COLS, "tier": "Attributes.Tier"})
    dest = GroupTesting({"ep-7"})
    seg = by_segment(h.run(destination=dest))["seg_a"]
    # Then the old groups are not continued: the rows go in the delivery's own job, searched from there
    assert dest.platform.jobs[0][0] == "1" and len(dest.platform.jobs[0][1]) == 40
    assert [q["id"] for q in seg.quarantined] == ["ep-7"] and not search_file(h).exists()


@pytest.mark.parametrize("left_out", ["quarantined", "suspect"])
def test_rows_left_out_of_the_last_commit_are_no_jump_in_the_segments_size(h, left_out):
    # Given a first sync of 10 rows of which 6 were left out of the commit: refused (quarantined), or still suspect
    h.segment("seg_a", COLS, rows(10))
    if left_out == "quarantined":
        first = h.run(destination=Scripted(h.exports, rejected={f"ep-{i}": "bad" for i in range(6)}))
    else:

        class Suspect(Scripted):
            def deliver(self, delivery, progress=None):
                result = super().deliver(delivery, progress)
                result.search = RowSearch((tuple(f"ep-{i}" for i in range(6)),), delivery.fields)
                return result

        first = h.run(destination=Suspect(h.exports))
    assert by_segment(first)["seg_a"].status == "partial" and h.pointer("seg_a")["rows"] == 4
    # When the next run resends them, the segment unchanged
    again = by_segment(h.run(destination=Scripted(h.exports)))["seg_a"]
    # Then the size guard sees 10 members before and after, not a segment growing from 4 to 10
    assert again.status == "synced", again.reason
    assert h.pointer("seg_a")["rows"] == 10


def test_a_search_whose_rows_all_left_the_segment_is_cleared_though_nothing_is_sent(h):
    # Given a first sync of 10 rows that left two of them still suspect (kept as a search, not committed)
    h.segment("seg_a", COLS, rows(10))

    class Suspect(Scripted):
        def deliver(self, delivery, progress=None):
            result = super().deliver(delivery, progress)
            result.search = RowSearch((("ep-0", "ep-1"),), delivery.fields)
            return result

    h.run(destination=Suspect(h.exports))
    assert search_file(h).exists() and h.pointer("seg_a")["rows"] == 8
    # When both suspect rows leave the segment, so the next run has nothing to send
    h.rebuild("seg_a", rows(10)[2:])
    again = by_segment(h.run(destination=Scripted(h.exports)))["seg_a"]
    # Then nothing is sent and the search is over: no search left in state, none continued next run
    assert again.status == "unchanged", again.reason
    assert not search_file(h).exists()
    last = by_segment(h.run(destination=Scripted(h.exports)))["seg_a"]
    assert last.status == "unchanged" and not any("still suspect" in n for n in last.notes)
