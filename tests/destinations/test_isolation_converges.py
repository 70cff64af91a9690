"""Finding refused rows converges: group testing within a per-run budget, continued run after run (issue 22).

A scripted platform refuses a chosen set of rows and only counts them (as Customer Profiles does: no message names
a row). Runs are simulated as the sync runs them: the first delivers every row; each later one resends the rows the
previous run left suspect (``DeliveryResult.search``, kept in state) and the quarantined ones, with the search and
the quarantine handed back in the delivery.
"""

from __future__ import annotations

import csv
import random
import threading
from pathlib import Path

import pytest

from sync.destinations.base import JobRecord, RowSearch, SegmentDelivery
from sync.destinations.jobs import (
    DEFAULT_MAX_ISOLATION_JOBS,
    DEFAULT_MAX_REJECTED_ROWS,
    ISOLATION_PARTS,
    JobOutcome,
    deliver_in_jobs,
    search_bound,
)

FIELDS = ("Id", "Attributes.Plan")


class CountingPlatform:
    """Refuses the rows in ``bad`` and says only how many it refused; imports every other row it is given."""

    def __init__(self, bad):
        self.bad = frozenset(bad)
        self.imported: set[str] = set()
        self.jobs: list[tuple[str, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def run_job(self, delivery, job, tracker):
        ids = []
        for path in job.files:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                at = next(reader).index("Id")
                ids.extend(row[at] for row in reader)
        refused = [i for i in ids if i in self.bad]
        with self.lock:
            self.jobs.append((job.label, tuple(ids)))
            self.imported.update(i for i in ids if i not in self.bad)
        record = JobRecord(f"job-{delivery.run_id}-{job.label}", "SUCCEEDED", len(ids) - len(refused), len(refused))
        if refused:
            return JobOutcome(record, refused_rows=len(refused), messages=["record failed validation"])
        return JobOutcome(record, ok=True)


def write_delivery(folder: Path, run: int, ids, search, quarantined) -> SegmentDelivery:
    folder.mkdir(parents=True)
    path = folder / "part-00000.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["Attributes.Plan", "Id"])
        w.writerows(["gold", i] for i in ids)
    return SegmentDelivery(
        run_id=f"r{run}",
        segment="seg_a",
        files=(path,),
        fields=FIELDS,
        counts={},
        quarantined=frozenset(quarantined),
        search=search,
    )


def converge(
    tmp_path: Path,
    n: int,
    bad: set[str],
    *,
    budget: int = DEFAULT_MAX_ISOLATION_JOBS,
    parts: int = ISOLATION_PARTS,
    max_runs: int = 500,
):
    """Run until nothing is left suspect; returns (runs, isolation jobs per run, platform, final quarantine)."""
    platform = CountingPlatform(bad)
    rows = [f"ep-{i}" for i in range(n)]
    search, quarantine, per_run, seen_jobs = None, {}, [], set()
    for run in range(1, max_runs + 1):
        if run == 1:
            send = rows
        else:  # what the sync resends: the rows left suspect, and the quarantined ones
            keep = search.ids | set(quarantine) if search else set(quarantine)
            send = [i for i in rows if i in keep]
        before = len(platform.jobs)
        delivery = write_delivery(tmp_path / f"run-{run}", run, send, search, quarantine)
        result = deliver_in_jobs(
            platform,
            delivery,
            None,
            max_job_bytes=10**9,
            max_concurrent=2,
            max_rejected_rows=DEFAULT_MAX_REJECTED_ROWS,
            max_isolation_jobs=budget,
            location=None,
            parts=parts,
        )
        assert result.confirmed, result.errors
        # No innocent row is ever quarantined, and suspect rows are not counted as refused
        assert set(result.rejected) <= bad, sorted(set(result.rejected) - bad)[:5]
        assert not (result.suspect_ids & set(result.rejected))
        ran = platform.jobs[before:]
        isolation = [ids for label, ids in ran if not label.isdigit() and label != "q"]
        per_run.append(len(isolation))
        assert len(isolation) <= budget
        # A run never repeats an earlier run's isolation job (the same rows in one job)
        assert not {ids for ids in isolation if len(ids) > 1} & seen_jobs
        seen_jobs.update(ids for ids in isolation if len(ids) > 1)
        quarantine, search = dict(result.rejected), result.search
        if search is None:
            return run, per_run, platform, quarantine
    raise AssertionError(f"no convergence in {max_runs} runs")


@pytest.mark.parametrize("n", [844, 100_000], ids=["844-rows", "100k-rows"])
@pytest.mark.parametrize("k", [1, 2, 10, 100], ids=["1-refused", "2-refused", "10-refused", "100-refused"])
def test_refused_rows_are_found_within_the_stated_number_of_runs(tmp_path, k, n):
    # Given k refused rows, placed at random among n, on a platform that only counts refused rows
    bad = {f"ep-{i}" for i in random.Random(k * n).sample(range(n), k)}
    # When the sync runs with the default budget until nothing is left suspect
    runs, per_run, platform, quarantine = converge(tmp_path, n, bad)
    # Then it took at most the runs the README states, the jobs stayed within the bound,
    jobs, bound = search_bound(k, n)
    assert runs <= bound and sum(per_run) <= jobs + min(k, DEFAULT_MAX_ISOLATION_JOBS // 2) * (runs - 1)
    # exactly the refused rows are quarantined, and every other row reached the platform
    assert set(quarantine) == bad
    assert platform.imported == {f"ep-{i}" for i in range(n)} - bad


@pytest.mark.parametrize("parts", [3, 4], ids=["thirds", "quarters"])
def test_any_number_of_parts_converges_within_its_bound(tmp_path, parts):
    # Given 10 refused rows among 844, split into more than two parts per round
    bad = {f"ep-{i}" for i in random.Random(parts).sample(range(844), 10)}
    # When the sync runs until nothing is left suspect
    runs, per_run, platform, quarantine = converge(tmp_path, 844, bad, parts=parts)
    # Then the bound for that number of parts holds, and exactly the refused rows are quarantined
    assert runs <= search_bound(10, 844, parts)[1]
    assert set(quarantine) == bad and platform.imported == {f"ep-{i}" for i in range(844)} - bad


def test_two_refused_rows_among_844_are_quarantined_in_one_run_with_the_defaults(tmp_path):
    # Given the case of issue 22: two refused rows in one job of 844, named by no message
    bad = {"ep-100", "ep-600"}
    # When one run delivers them with the default settings
    runs, per_run, platform, quarantine = converge(tmp_path, 844, bad, max_runs=1)
    # Then both are quarantined in that run, the other 842 rows are imported, within the stated jobs
    assert runs == 1 and set(quarantine) == bad
    assert per_run[0] <= search_bound(2, 844)[0] == 21


def test_a_tiny_budget_still_converges_run_after_run_without_quarantining_an_innocent_row(tmp_path):
    # Given three refused rows among 200 and a budget of 3 jobs per run
    bad = {"ep-3", "ep-4", "ep-150"}
    # When the sync runs until nothing is left suspect
    runs, per_run, platform, quarantine = converge(tmp_path, 200, bad, budget=3)
    # Then every run spent at most its budget, the search continued where it stopped, and it converged in bound
    assert runs > 1 and max(per_run) <= 3
    assert runs <= search_bound(3, 200, 2, 3)[1]
    assert set(quarantine) == bad


def test_a_search_found_with_another_header_is_started_afresh(tmp_path):
    # Given a search kept by an earlier run whose header was different
    platform = CountingPlatform({"ep-1"})
    stale = RowSearch((("ep-0", "ep-1"),), ("Id", "Attributes.Old"))
    delivery = write_delivery(tmp_path / "d", 2, [f"ep-{i}" for i in range(4)], stale, {})
    # When this run delivers
    result = deliver_in_jobs(
        platform,
        delivery,
        None,
        max_job_bytes=10**9,
        max_concurrent=2,
        max_rejected_rows=100,
        max_isolation_jobs=32,
        location=None,
    )
    # Then the old groups are not held back: the rows go in the delivery's job, and the search starts from it
    assert platform.jobs[0] == ("1", ("ep-0", "ep-1", "ep-2", "ep-3"))
    assert result.rejected == {"ep-1": "record failed validation"} and result.search is None


def test_quarantined_rows_are_retried_together_in_one_job_and_stay_quarantined_when_all_refused_again(tmp_path):
    # Given two rows quarantined by an earlier run, both still refused, and two other rows
    platform = CountingPlatform({"ep-1", "ep-2"})
    delivery = write_delivery(tmp_path / "d", 2, ["ep-0", "ep-1", "ep-2", "ep-3"], None, {"ep-1": "old", "ep-2": "old"})
    # When this run delivers
    result = deliver_in_jobs(
        platform,
        delivery,
        None,
        max_job_bytes=10**9,
        max_concurrent=2,
        max_rejected_rows=100,
        max_isolation_jobs=32,
        location=None,
    )
    # Then the others go in the delivery's job, the quarantined ones in one retry job, and no search is needed
    assert sorted(platform.jobs) == [("1", ("ep-0", "ep-3")), ("q", ("ep-1", "ep-2"))]
    assert set(result.rejected) == {"ep-1", "ep-2"} and result.search is None and result.confirmed


def test_a_quarantined_row_accepted_again_leaves_the_quarantine_through_the_search(tmp_path):
    # Given two quarantined rows of which the platform now accepts one
    platform = CountingPlatform({"ep-2"})
    delivery = write_delivery(tmp_path / "d", 2, ["ep-0", "ep-1", "ep-2"], None, {"ep-1": "old", "ep-2": "old"})
    # When this run delivers
    result = deliver_in_jobs(
        platform,
        delivery,
        None,
        max_job_bytes=10**9,
        max_concurrent=2,
        max_rejected_rows=100,
        max_isolation_jobs=32,
        location=None,
    )
    # Then the retry job refuses one of two: the search proves which, and the other is no longer refused
    assert result.rejected == {"ep-2": "record failed validation"} and result.search is None
    assert "ep-1" in platform.imported


@pytest.mark.parametrize(
    "k,n,parts,budget,bound",
    [
        (0, 10, 2, 32, (0, 0)),
        (3, 0, 2, 32, (0, 0)),
        (1, 1, 2, 32, (1, 1)),
        (1, 2, 2, 32, (2, 1)),
        (2, 4, 2, 32, (5, 1)),
        (3, 8, 2, 32, (9, 1)),
        (1, 9, 3, 32, (5, 1)),
        (5, 1000, 4, 32, (65, 3)),
        (3, 200, 2, 3, (24, 23)),
        (1, 1, 2, 2, (1, 1)),
    ],
    ids=[
        "no-refused-row",
        "no-row",
        "one-row-one-job",
        "a-power-of-the-parts-is-one-level",
        "two-in-four",
        "three-in-eight",
        "three-parts",
        "budget-spread-over-runs",
        "a-tiny-budget",
        "a-budget-spent-exactly-in-one-run-though-it-could-not-advance-a-second",
    ],
)
def test_the_search_bound_is_the_documented_formula_worked_by_hand(k, n, parts, budget, bound):
    # J = (g-1) * sum_{d<D} min(k, g^d) + k with D = ceil(log_g n); runs = 1 + ceil((J - (B-g+1)) / U),
    # U = B - (g-1) - min(k, B // g): e.g. k=5, n=1000, g=4: D=5, J = 3*(1+4+5+5+5) + 5 = 65; U = 24, runs = 3
    assert search_bound(k, n, parts, budget) == bound
