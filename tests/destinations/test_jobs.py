"""The shared platform layer (sync/destinations/jobs.py) against a scripted platform: no AWS, exact results.

Pinpoint and Customer Profiles supply only ``run_job``; everything else -- grouping files into jobs,
isolating refused rows, the verdict and its messages, settings, progress -- is pinned here.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import stat
import threading
from pathlib import Path

import pytest

from sync.core.errors import ConfigError
from sync.core.import_files import encode_row
from sync.destinations import jobs
from sync.destinations.base import JobRecord, SegmentDelivery
from sync.destinations.jobs import (
    Job,
    JobOutcome,
    JobProgress,
    deliver_in_jobs,
    group_files,
    job_slots,
    settle_earlier_runs,
)


def write_part(folder: Path, name: str, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["Attributes.Plan", "Id"])
        w.writerows([['p,"x"', i] for i in ids])
    return path


def delivery_of(tmp_path: Path, *parts: list[str]) -> SegmentDelivery:
    files = tuple(write_part(tmp_path / "import", f"part-{n:05d}.csv", ids) for n, ids in enumerate(parts))
    return SegmentDelivery(run_id="r1", segment="seg_a", files=files, fields=("Id", "Attributes.Plan"), counts={})


def ids_of(job: Job) -> list[str]:
    out = []
    for path in job.files:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        at = rows[0].index("Id")
        out.extend(r[at] for r in rows[1:])
    return out


class Platform:
    """Refuses the rows in ``bad``; names them in its messages when ``name_ids``; fails jobs listed in ``fail``."""

    def __init__(self, bad=(), name_ids=False, fail=(), extra_messages=()):
        self.bad, self.name_ids, self.fail, self.extra = set(bad), name_ids, dict(fail), list(extra_messages)
        self.jobs: list[tuple[str, list[str]]] = []
        self.files: dict[str, list[Path]] = {}
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def run_job(self, delivery, job, tracker):
        ids = ids_of(job)
        with self.lock:
            self.jobs.append((job.label, ids))
            self.files[job.label] = list(job.files)
            self.threads.add(threading.current_thread().name)
        record = JobRecord(f"job-{job.label}", "COMPLETED", len(ids), 0)
        if job.label in self.fail:
            record.status = "FAILED"
            return JobOutcome(record, error=self.fail[job.label])
        refused = [i for i in ids if i in self.bad]
        record.total_failures = len(refused)
        if not refused:
            return JobOutcome(record, ok=True)
        messages = [f"row {i}: bad plan" for i in refused] if self.name_ids else ["some rows were bad"] * len(refused)
        return JobOutcome(record, refused_rows=len(refused), messages=messages + self.extra)


def deliver(platform, delivery, **kw):
    settings = {
        "max_job_bytes": 10**9,
        "max_concurrent": 2,
        "max_rejected_rows": 100,
        "max_isolation_jobs": 16,
        "location": "s3://b/p",
        **kw,
    }
    return deliver_in_jobs(platform, delivery, None, **settings)


# ---- the verdict ----------------------------------------------------------------------------------------------
def test_every_row_accepted_confirms_with_each_jobs_record(tmp_path):
    platform = Platform()
    result = deliver(platform, delivery_of(tmp_path, ["a", "b"], ["c"]), max_job_bytes=60)
    assert result.confirmed and result.errors == [] and result.rejected == {}
    assert [r.job_id for r in result.jobs] == ["job-1", "job-2"] and result.location == "s3://b/p"
    assert sorted(platform.jobs) == [("1", ["a", "b"]), ("2", ["c"])]


def test_nothing_to_deliver_is_confirmed_without_a_job(tmp_path):
    platform = Platform()
    empty = SegmentDelivery(run_id="r1", segment="seg_a", files=(), fields=("Id",), counts={})
    result = deliver(platform, empty)
    assert result.confirmed and result.jobs == [] and result.location == "s3://b/p" and platform.jobs == []


def test_a_file_larger_than_a_job_fails_the_delivery_naming_it(tmp_path):
    d = delivery_of(tmp_path, ["a", "b", "c"])
    size = d.files[0].stat().st_size
    result = deliver(Platform(), d, max_job_bytes=size - 1)
    assert result.confirmed is False and result.location == "s3://b/p"
    assert result.errors == [f"import file part-00000.csv has {size} bytes, more than one job takes ({size - 1})"]


def test_a_failed_job_fails_the_delivery_naming_job_and_error(tmp_path):
    result = deliver(
        Platform(fail={"2": "import job FAILED: bad role"}), delivery_of(tmp_path, ["a"], ["b"]), max_job_bytes=40
    )
    assert not result.confirmed
    assert result.errors == ["seg_a job 2: import job FAILED: bad role"]
    assert [r.status for r in result.jobs] == ["COMPLETED", "FAILED"]


def test_every_job_is_judged_after_one_failed(tmp_path):
    # Given job 1 failed and job 2 refused a row
    platform = Platform(bad={"c"}, fail={"1": "import job FAILED"})
    result = deliver(platform, delivery_of(tmp_path, ["a"], ["b", "c"]), max_job_bytes=50)
    # Then both verdicts count: job 1's error, and job 2's refused row found
    assert result.errors == ["seg_a job 1: import job FAILED"]
    assert result.rejected == {"c": "some rows were bad"}


def test_with_no_refused_row_allowed_every_job_is_still_judged(tmp_path):
    platform = Platform(bad={"a", "c"}, name_ids=True)
    result = deliver(platform, delivery_of(tmp_path, ["a"], ["c"]), max_job_bytes=40, max_rejected_rows=0)
    assert result.errors == [
        "seg_a job 1: 1 row(s) refused by the platform (job job-1); destination.max_rejected_rows is 0",
        "seg_a job 2: 1 row(s) refused by the platform (job job-2); destination.max_rejected_rows is 0",
    ]


def test_a_job_that_neither_succeeded_nor_refused_rows_is_not_accepted(tmp_path):
    class Silent(Platform):
        def run_job(self, delivery, job, tracker):
            return JobOutcome(JobRecord("job-1", "UNKNOWN"))

    result = deliver(Silent(), delivery_of(tmp_path, ["a"]))
    assert result.errors == ["seg_a job 1: not accepted"] and not result.confirmed


@pytest.mark.parametrize("name_ids", [True, False], ids=["named-in-messages", "found-by-halving"])
def test_refused_rows_are_quarantined_and_the_rest_confirmed(tmp_path, name_ids):
    platform = Platform(bad={"c", "f"}, name_ids=name_ids)
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d", "e", "f", "g", "h"]))
    assert result.confirmed and result.errors == []
    assert sorted(result.rejected) == ["c", "f"]
    if name_ids:
        assert result.rejected == {"c": "row c: bad plan", "f": "row f: bad plan"}
        assert [label for label, _ in platform.jobs] == ["1"]
    else:
        # Each lone row carries the message of the job that held it alone
        assert set(result.rejected.values()) == {"some rows were bad"}
        # Breadth first, halving: one half of each suspect group is imported, the other's count follows from its
        # group's (1a held 1 of 2: 1b holds 1; 1aa held none: 1ab holds 1; 1ba held 1: 1bb none), and a row is
        # refused only by a job that held it alone (c by 1aba; f, inferred in 1bab, by 1baba)
        assert sorted(platform.jobs) == sorted(
            [
                ("1", list("abcdefgh")),
                ("1a", list("abcd")),
                ("1aa", ["a", "b"]),
                ("1ba", ["e", "f"]),
                ("1aba", ["c"]),
                ("1baa", ["e"]),
                ("1baba", ["f"]),
            ]
        )
        assert result.search is None
        # Every job run, isolation jobs included, is in the result's records
        assert sorted(r.job_id for r in result.jobs) == sorted(f"job-{label}" for label, _ in platform.jobs)
        # The parts are written inside the delivery's own folder (removed with the run's work folder)
        assert platform.files["1a"] == [tmp_path / "import" / "isolate" / "part-1a" / "part-00000.csv"]


def test_halves_keep_the_header_and_every_row_byte_for_byte(tmp_path, open_umask):
    d = delivery_of(tmp_path, ["a", "b", "c"], ["d", "e"])
    # A value with a line break and non-ASCII text inside its quotes must come through unchanged
    with d.files[1].open("a", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n").writerow(["Z\u00fcrich\r\nline 2", "f"])
    search = jobs._Search(
        Platform(),
        d,
        JobProgress(None, "seg_a", 2, 1),
        tmp_path / "iso",
        max_concurrent=1,
        parts=2,
        max_rejected_rows=100,
    )
    a, b = search.split(jobs._Group("3", d.files, ("a", "b", "c", "d", "e", "f"), None), 2)
    assert (a.ids, b.ids) == (("a", "b", "c"), ("d", "e", "f"))
    assert (a.label, b.label) == ("3a", "3b")
    header = b"Attributes.Plan,Id\r\n"
    assert a.files[0].read_bytes() == header + b'"p,""x""",a\r\n"p,""x""",b\r\n"p,""x""",c\r\n'
    assert b.files[
        0
    ].read_bytes() == header + b'"p,""x""",d\r\n"p,""x""",e\r\n' + '"Z\u00fcrich\r\nline 2",f\r\n'.encode("utf-8")
    # Each half is an import file of its own (part-00000.csv) in a private folder
    assert [(p.parent.name, p.name) for p in (a.files[0], b.files[0])] == [
        ("part-3a", "part-00000.csv"),
        ("part-3b", "part-00000.csv"),
    ]
    assert all((p.parent.stat().st_mode & 0o777) == 0o700 for p in (a.files[0], b.files[0]))


def test_more_refused_rows_than_allowed_fail_the_delivery(tmp_path):
    result = deliver(
        Platform(bad={"a", "b", "c"}, name_ids=True), delivery_of(tmp_path, ["a", "b", "c", "d"]), max_rejected_rows=2
    )
    assert not result.confirmed
    assert result.errors == ["seg_a: 3 row(s) refused by the platform, more than destination.max_rejected_rows (2)"]
    assert len(result.rejected) == 3


def test_exactly_the_allowed_number_of_refused_rows_is_confirmed(tmp_path):
    result = deliver(
        Platform(bad={"a", "b"}, name_ids=True), delivery_of(tmp_path, ["a", "b", "c"]), max_rejected_rows=2
    )
    assert result.confirmed and sorted(result.rejected) == ["a", "b"]


def test_rows_named_refused_past_the_allowance_stop_the_search_for_the_others(tmp_path):
    # Given a job of four rows of which the platform refuses three, its messages naming two of them
    platform = Platform(bad={"a", "b", "c"}, extra_messages=["row a: bad plan", "row b: bad plan"])
    # When delivered with one refused row allowed
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_rejected_rows=1)
    # Then the two named rows already exceed it: the delivery fails and no isolation job looks for the third
    assert not result.confirmed and sorted(result.rejected) == ["a", "b"]
    assert [label for label, _ in platform.jobs] == ["1"]


def test_no_refused_row_allowed_fails_without_isolating(tmp_path):
    platform = Platform(bad={"b"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c"]), max_rejected_rows=0)
    assert not result.confirmed and result.rejected == {}
    assert result.errors == [
        "seg_a job 1: 1 row(s) refused by the platform (job job-1); destination.max_rejected_rows is 0"
    ]
    assert [label for label, _ in platform.jobs] == ["1"]


@pytest.mark.parametrize(
    "budget, jobs_run, suspect",
    [(0, 1, ("a", "b", "c", "d")), (1, 2, ("a", "b")), (2, 3, ("b",))],
    ids=["none", "one-job", "two-jobs"],
)
def test_an_exhausted_isolation_budget_leaves_the_unproven_rows_suspect_not_refused(
    tmp_path, budget, jobs_run, suspect
):
    # Given one refused row among four, named by no message, and a budget too small to isolate it
    platform = Platform(bad={"b"})
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_isolation_jobs=budget)
    # Then no row is counted as refused (none was held alone), the delivery is confirmed, and the rows not proven
    # clean are returned as the unfinished search the next run continues
    assert len(platform.jobs) == jobs_run and result.confirmed and result.rejected == {}
    assert result.search.groups == (suspect,) and result.search.fields == ("Id", "Attributes.Plan")
    assert result.suspect_ids == frozenset(suspect)


def test_a_lone_refused_row_without_messages_gets_the_jobs_id(tmp_path):
    class Mute(Platform):
        def run_job(self, delivery, job, tracker):
            out = super().run_job(delivery, job, tracker)
            out.messages = []
            return out

    result = deliver(Mute(bad={"a"}), delivery_of(tmp_path, ["a"]))
    assert result.rejected == {"a": "refused by the platform (job job-1)"}


def test_a_long_platform_message_is_cut_to_300_characters(tmp_path):
    platform = Platform(bad={"a"}, extra_messages=["x" * 400])
    result = deliver(platform, delivery_of(tmp_path, ["a"]))
    assert result.rejected["a"] == ("some rows were bad; " + "x" * 400)[:300]


def test_a_budget_for_two_pairs_isolates_a_row_two_levels_down(tmp_path):
    platform = Platform(bad={"b"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_isolation_jobs=4)
    # 1a holds the refused row (1b is then clean), 1aa does not: b, inferred, is imported alone to prove it
    assert [label for label, _ in platform.jobs] == ["1", "1a", "1aa", "1aba"]
    assert result.rejected == {"b": "some rows were bad"} and result.search is None


def test_a_half_two_levels_down_that_fails_outright_fails_the_delivery(tmp_path):
    platform = Platform(bad={"a", "c"}, fail={"1aa": "throttled for good"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d", "e", "f", "g", "h"]))
    assert result.confirmed is False
    assert result.errors == ["seg_a job 1aa (isolating refused rows): throttled for good"]


class Gate(Platform):
    """Holds each job until ``width`` jobs run at once (or a short wait passes), recording the most at once."""

    def __init__(self, width):
        super().__init__()
        self.width, self.active, self.most = width, 0, 0
        self.cond = threading.Condition()

    def run_job(self, delivery, job, tracker):
        with self.cond:
            self.active += 1
            self.most = max(self.most, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.active >= self.width, timeout=0.2)
        try:
            return super().run_job(delivery, job, tracker)
        finally:
            with self.cond:
                self.active -= 1


def test_at_most_max_concurrent_jobs_run_at_once_on_threads_named_for_lakeseg(tmp_path):
    platform = Gate(width=4)
    result = deliver(platform, delivery_of(tmp_path, ["a"], ["b"], ["c"], ["d"]), max_job_bytes=40, max_concurrent=2)
    assert result.confirmed and len(platform.jobs) == 4
    assert platform.most == 2
    assert platform.threads and all(t.startswith("lakeseg-jobs_") for t in platform.threads)


def test_a_half_that_fails_outright_fails_the_delivery(tmp_path):
    platform = Platform(bad={"a"}, fail={"1a": "throttled for good"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    assert not result.confirmed
    assert result.errors == ["seg_a job 1a (isolating refused rows): throttled for good"]


# ---- attributing refused rows from messages --------------------------------------------------------------------
@pytest.mark.parametrize(
    "messages, refused, expected",
    [
        (["ep-13 is bad"], 1, {"ep-13": "ep-13 is bad"}),
        (["ep-1 is bad", "ep-13 is bad"], 2, {"ep-1": "ep-1 is bad", "ep-13": "ep-13 is bad"}),
        (["bad: ep-1."], 1, None),
        (["bad: (ep-1)"], 1, {"ep-1": "bad: (ep-1)"}),
        (["ep-1 is bad"], 2, None),
        ([], 1, None),
    ],
    ids=[
        "longer-id-is-not-it",
        "each-its-own",
        "dot-continues-an-id",
        "brackets-delimit",
        "too-few-named",
        "no-messages",
    ],
)
def test_a_message_names_an_id_only_as_a_whole_word(messages, refused, expected):
    outcome = JobOutcome(JobRecord("j", "COMPLETED"), refused_rows=refused, messages=messages)
    assert jobs._attribute(["", "ep-1", "ep-13", "ep-2"], outcome) == expected


# ---- grouping ----------------------------------------------------------------------------------------------------
def test_files_fill_jobs_in_order_up_to_the_limit(tmp_path):
    sizes = [40, 60, 30, 100, 1]
    files = []
    for n, size in enumerate(sizes):
        p = tmp_path / f"f{n}"
        p.write_bytes(b"x" * size)
        files.append(p)
    assert [[p.name for p in g] for g in group_files(files, 100)] == [["f0", "f1"], ["f2"], ["f3"], ["f4"]]
    assert [[p.name for p in g] for g in group_files(files, 101)] == [["f0", "f1"], ["f2"], ["f3", "f4"]]


# ---- settings ------------------------------------------------------------------------------------------------------
MODELS = [
    pytest.param("sync.destinations.pinpoint:PinpointDestinationSettings", id="pinpoint"),
    pytest.param("sync.destinations.customer_profiles:CustomerProfilesDestinationSettings", id="profiles"),
]


def _model(path: str):
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("model", MODELS)
def test_isolation_limits_default_and_accept_zero_and_text_from_the_environment(model):
    from sync.core.settings_types import destination_block

    m = _model(model)
    kind = m.model_fields["type"].annotation.__args__[0]
    block = destination_block(m, {"type": kind})
    assert (block.max_rejected_rows, block.max_isolation_jobs) == (100, 32)
    zero = destination_block(m, {"type": kind, "max_rejected_rows": 0, "max_isolation_jobs": "0"})
    assert (zero.max_rejected_rows, zero.max_isolation_jobs) == (0, 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "key, value",
    [
        ("max_rejected_rows", -1),
        ("max_rejected_rows", True),
        ("max_isolation_jobs", 2.5),
        ("max_isolation_jobs", "many"),
    ],
    ids=["negative", "bool", "fraction", "text"],
)
def test_isolation_limits_refuse_anything_but_whole_numbers(model, key, value):
    from sync.core.settings_types import destination_block

    m = _model(model)
    kind = m.model_fields["type"].annotation.__args__[0]
    with pytest.raises(ConfigError) as refused:
        destination_block(m, {"type": kind, key: value})
    assert str(refused.value).startswith(f"destination settings: destination.{key}: ")
    assert str(refused.value).endswith(
        (f"got {value!r}", f"got the YAML boolean {value!r}", "got a number with a fractional part")
    )


def test_job_slots_share_one_semaphore_of_that_size():
    n, slots = job_slots(3, why="the project's quota")
    assert n == 3
    assert all(slots.acquire(blocking=False) for _ in range(3)) and not slots.acquire(blocking=False)
    assert job_slots(10, why="x")[0] == 10 and job_slots(1, why="x")[0] == 1


@pytest.mark.parametrize(
    "value, message",
    [
        ("many", "destination.max_concurrent_jobs must be a whole number, got 'many'"),
        (None, "destination.max_concurrent_jobs must be a whole number, got None"),
        (0, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 0"),
        (11, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 11"),
        (2.5, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 2.5"),
        (True, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got True"),
    ],
    ids=["text", "none", "zero", "above-limit", "fraction", "bool"],
)
def test_job_slots_refuse_what_the_quota_does_not_allow(value, message):
    with pytest.raises(ConfigError) as refused:
        job_slots(value, why="quota")
    assert str(refused.value) == message


def test_job_slots_take_their_own_limit():
    with pytest.raises(ConfigError, match="between 1 and 3 "):
        job_slots(4, why="q", limit=3)


# ---- waiting for earlier runs ------------------------------------------------------------------------------------
def test_earlier_runs_are_waited_for_until_none_is_left_saying_so(caplog):
    answers = [["job-old", "job-older"], ["job-old"], []]
    slept = []
    with caplog.at_level("INFO", logger="sync.destinations.jobs"):
        error = settle_earlier_runs(
            "seg_a", lambda: answers.pop(0), platform="pinpoint", interval=2.0, timeout=60, sleep=slept.append
        )
    assert error is None and answers == [] and slept == [2.0, 2.0]
    assert caplog.messages == [
        "pinpoint: seg_a waits for 2 in-flight job(s) of earlier runs",
        "pinpoint: seg_a waits for 1 in-flight job(s) of earlier runs",
    ]


def test_an_earlier_run_still_in_flight_at_the_timeout_stops_the_delivery():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    error = settle_earlier_runs(
        "seg_a",
        lambda: ["job-old", "job-older"],
        platform="pinpoint",
        interval=5.0,
        timeout=12,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert error == (
        "seg_a: an import of an earlier run is still in flight (job-old); nothing was imported so that "
        "imports stay in order; the rows are resent next run"
    )
    assert now[0] == 15.0  # checked at 0, 5, 10 and 15 s: the first check past the deadline gives up


# ---- progress -------------------------------------------------------------------------------------------------------
def test_progress_counts_uploads_then_jobs_under_the_segments_name():
    calls = []
    tracker = JobProgress(lambda *c: calls.append(c), "seg_a", files=2, jobs=2)
    tracker.uploaded()
    tracker.uploaded(2)  # more files than announced (halves while isolating): the total grows with them
    tracker.tick()
    tracker.job_done()
    tracker.job_done()
    tracker.job_done()
    assert calls == [
        ("seg_a: uploading", 1, 2),
        ("seg_a: uploading", 3, 3),
        ("seg_a: importing", 0, 2),
        ("seg_a: importing", 1, 2),
        ("seg_a: importing", 2, 2),
        ("seg_a: importing", 3, 3),
    ]


def test_progress_without_a_callback_is_silent():
    tracker = JobProgress(None, "seg_a", files=1, jobs=1)
    tracker.uploaded()
    tracker.tick()
    tracker.job_done()


def test_refused_rows_are_isolated_on_a_machine_whose_locale_is_not_utf8(tmp_path, ascii_locale):
    """Import files are UTF-8 whatever the host's locale: reading their ids and writing halves must not decode them
    in the locale's encoding (under an ASCII locale that fails on the first non-ASCII id)."""
    # Given a job whose ids are not all ASCII, one of them refused without being named, on a host with an ASCII locale
    platform = Platform(bad={"田中"})
    # When it is delivered
    result = deliver(platform, delivery_of(tmp_path, ["Zoë", "田中", "José", "c"]))
    # Then halving finds the refused row, and the rest is confirmed
    assert result.confirmed and result.errors == []
    assert result.rejected == {"田中": "some rows were bad"}
    assert ("1aba", ["田中"]) in platform.jobs


# ---- a one-row job that ends FAILED (issue 22) ----------------------------------------------------------------
class FailsAlone(Platform):
    """Counts refused rows in a job of several; a job holding one refused row alone ends FAILED, with no count."""

    def run_job(self, delivery, job, tracker):
        ids = ids_of(job)
        if len(ids) == 1 and ids[0] in self.bad:
            with self.lock:
                self.jobs.append((job.label, ids))
            return JobOutcome(
                JobRecord(f"job-{job.label}", "FAILED", 0, 0),
                error=f"import job job-{job.label} FAILED",
                platform_failed=True,
            )
        return super().run_job(delivery, job, tracker)


@pytest.mark.parametrize("rows", [["b"], ["a", "b", "c", "d"]], ids=["delivered-alone", "isolated-alone"])
def test_a_one_row_job_that_ends_failed_is_that_row_refused(tmp_path, rows):
    # Given a platform that ends a job FAILED (not partially succeeded) when its only row is refused
    platform = FailsAlone(bad={"b"})
    # When b is delivered alone, or found alone by the search
    result = deliver(platform, delivery_of(tmp_path, rows))
    # Then b is refused with the platform's verdict as its message, and the delivery is confirmed
    assert result.confirmed and result.errors == [] and result.search is None
    assert result.rejected == {
        "b": next(f"import job job-{label} FAILED" for label, ids in platform.jobs if ids == ["b"])
    }


def test_a_job_of_several_rows_that_ends_failed_with_no_count_still_fails_the_delivery(tmp_path):
    # Given a job of two rows that the platform ends FAILED, counting no refused row
    class FailsAll(Platform):
        def run_job(self, delivery, job, tracker):
            return JobOutcome(JobRecord("job-1", "FAILED"), error="import job job-1 FAILED", platform_failed=True)

    # When it is delivered
    result = deliver(FailsAll(), delivery_of(tmp_path, ["a", "b"]))
    # Then nothing is refused: the job failed, and the rows stay in doubt
    assert not result.confirmed and result.rejected == {} and result.errors == ["seg_a job 1: import job job-1 FAILED"]


def test_rows_a_message_names_are_refused_at_once_and_only_the_rest_is_searched(tmp_path):
    # Given a platform whose messages name only the first refused row of a job (Pinpoint lists a sample)
    class NamesFirst(Platform):
        def run_job(self, delivery, job, tracker):
            out = super().run_job(delivery, job, tracker)
            if out.refused:
                first = next(i for i in ids_of(job) if i in self.bad)
                out.messages = [f"row {first}: bad plan"] + ["one more row was bad"] * (out.refused_rows - 1)
            return out

    platform = NamesFirst(bad={"c", "f"})
    # When eight rows with two refused are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d", "e", "f", "g", "h"]))
    # Then c is refused from the message, and the search covers the other seven rows only (one refused among them)
    assert result.confirmed and result.search is None
    assert result.rejected == {"c": "row c: bad plan", "f": "row f: bad plan"}
    assert [label for label, ids in platform.jobs if "c" in ids] == ["1"]


def test_the_jobs_of_one_round_of_the_search_run_in_parallel(tmp_path):
    # Given two refused rows that fall in different halves, on a platform recording how many jobs run at once
    platform = Gate(width=2)
    platform.bad = {"a", "h"}
    # When eight rows are delivered with two jobs allowed at once
    result = deliver(platform, delivery_of(tmp_path, list("abcdefgh")), max_concurrent=2)
    # Then each round after the first splits both suspect halves at the same time, and both rows are found
    assert sorted(result.rejected) == ["a", "h"] and platform.most == 2
    assert {"1aa", "1ba"} <= {label for label, _ in platform.jobs}


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(encode_row(list(r)) for r in [("Id", "Location.City"), *rows]))
    return path


def _held_back_delivery(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    first = _csv(tmp_path / "import" / "part-00000.csv", [("a", "Zürich"), ("b", "Köln")])
    second = _csv(tmp_path / "import" / "part-00001.csv", [("c", "Århus")])
    return first, second, {"a": "q", "c": "s1"}


def test_held_back_rows_leave_the_delivery_a_file_left_empty_is_dropped_and_the_rest_is_byte_for_byte(tmp_path):
    # Given two import files: a row of the first and the only row of the second are held back
    first, second, held = _held_back_delivery(tmp_path)
    work = tmp_path / "import" / "isolate"
    # When the delivery's files are split, twice in the same folder (a delivery handed over again in the run)
    jobs._hold_back([first, second], work, held)
    kept, rows = jobs._hold_back([first, second], work, held)
    # Then the first file keeps its other row byte for byte, the second (left with no row) is dropped
    assert kept == [work / "main" / "part-00000.csv"]
    assert kept[0].read_bytes() == encode_row(["Id", "Location.City"]) + encode_row(["b", "Köln"])
    assert not (work / "main" / "part-00001.csv").exists()
    # And the held rows are written per label, in a folder only the runner can read
    assert {label: ids for label, (_path, ids) in rows.items()} == {"q": ["a"], "s1": ["c"]}
    assert stat.S_IMODE((work / "main").stat().st_mode) == 0o700


def test_held_back_rows_are_split_as_utf_8_whatever_the_machines_locale(tmp_path, ascii_locale):
    first, second, held = _held_back_delivery(tmp_path)
    kept, _rows = jobs._hold_back([first, second], tmp_path / "isolate", held)
    assert kept[0].read_bytes().decode("utf-8").endswith("b,Köln\r\n")


# ---- the search's finer points ---------------------------------------------------------------------------------
class Recording(Platform):
    """Also keeps every job as it came (its label, whether it re-imports rows of an earlier job, its rows);
    ``named``: the refused rows its messages name (the others get an anonymous message); ``failed``: jobs the
    platform ends FAILED (not lakeseg giving up); ``silent``: jobs that end neither accepted nor refused."""

    def __init__(self, bad=(), named=(), failed=(), silent=(), **kw):
        super().__init__(bad=bad, **kw)
        self.named, self.failed, self.silent = set(named), set(failed), set(silent)
        self.seen: list[tuple[str, bool, list[str]]] = []

    def run_job(self, delivery, job, tracker):
        out = super().run_job(delivery, job, tracker)
        ids = ids_of(job)
        with self.lock:
            self.seen.append((job.label, job.isolating, ids))
        if job.label in self.failed:
            return JobOutcome(out.record, error="import job FAILED", platform_failed=True)
        if job.label in self.silent:
            return JobOutcome(out.record)
        if self.named and out.refused:
            out.messages = [f"row {i}: bad" if i in self.named else "a row was bad" for i in ids if i in self.bad]
        return out

    def labels(self) -> list[str]:
        return [label for label, _iso, _ids in self.seen]

    def imported_once(self) -> list[str]:
        """Ids of the jobs that are the run's own imports (not re-imports under ``_isolation/``), sorted."""
        return sorted(i for _label, isolating, ids in self.seen if not isolating for i in ids)


def _search_of(*groups) -> jobs.RowSearch:
    return jobs.RowSearch(tuple(tuple(g) for g in groups), ("Id", "Attributes.Plan"))


@pytest.mark.parametrize(
    "rows_per_file, bad, carried",
    [
        (2, {"x5"}, ()),
        (2, {"x23"}, ()),  # the 12th job: a label of two digits is not a carried group
        (1, {"b", "x1"}, (("a", "b"), ("x0", "x1", "x2"))),
    ],
    ids=["a-refused-row", "in-the-twelfth-job", "a-search-carried-from-an-earlier-run"],
)
def test_every_row_is_imported_once_outside_the_isolation_folder_however_the_search_goes(
    tmp_path, rows_per_file, bad, carried
):
    # Given rows in several files (one job each), refused rows among them, and perhaps a search an earlier run left
    rows = [f"x{i}" for i in range(24)] if rows_per_file == 2 else ["a", "b", "x0", "x1", "x2", "y"]
    parts = [rows[i : i + rows_per_file] for i in range(0, len(rows), rows_per_file)]
    d = delivery_of(tmp_path, *parts)
    if carried:
        d = dataclasses.replace(d, search=_search_of(*carried))
    platform = Recording(bad=bad)
    # When it is delivered
    result = deliver(platform, d, max_job_bytes=max(f.stat().st_size for f in d.files))
    # Then each row went once into a job of the run's own (the imports table's view), re-imports only under
    # _isolation, and the refused rows were found
    assert platform.imported_once() == sorted(rows)
    assert sorted(result.rejected) == sorted(bad) and result.search is None
    if carried:  # the carried groups are numbered from 1, in the order the earlier run kept them
        assert {"s1a", "s1b", "s2a", "s2b"} <= set(platform.labels())


def test_a_message_that_names_more_rows_than_were_refused_quarantines_none_of_them(tmp_path):
    # Given one refused row, and the platform's messages naming it and an innocent row beside it
    platform = Recording(bad={"a"}, extra_messages=["row b looks like row a"], name_ids=True)
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    # Then the messages are not trusted: the refused row is found by the search, the innocent one never quarantined
    assert list(result.rejected) == ["a"] and result.confirmed


def test_rows_a_message_names_are_quarantined_at_once_and_only_the_others_are_searched_for(tmp_path):
    # Given two refused rows among four, the platform's messages naming only one of them
    platform = Recording(bad={"a", "c"}, named={"a"})
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    # Then a is quarantined with its message, and the search looks for one row among b, c, d: [b, c] holds it, so
    # d is clean without a job of its own; c is proven alone
    assert result.rejected == {"a": "row a: bad", "c": "a row was bad"}
    assert platform.labels() == ["1", "1a", "1aa", "1aba"]


def test_a_message_naming_a_row_in_a_group_is_kept_to_300_characters(tmp_path):
    class Long(Recording):
        def run_job(self, delivery, job, tracker):
            out = super().run_job(delivery, job, tracker)
            out.messages = [f"row a: {'x' * 400}"] if out.refused else out.messages
            return out

    result = deliver(Long(bad={"a"}), delivery_of(tmp_path, ["a", "b"]))
    assert result.rejected == {"a": f"row a: {'x' * 400}"[:300]}


def test_the_search_goes_on_while_exactly_the_allowed_number_of_rows_is_refused(tmp_path):
    # Given a job refusing two rows, one named at once, and one refused row allowed
    platform = Recording(bad={"a", "c"}, named={"a"})
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_rejected_rows=1)
    # Then the search did not stop at the allowed one: it found the second, and the delivery fails on the limit
    assert sorted(result.rejected) == ["a", "c"] and result.search is None
    assert result.errors == ["seg_a: 2 row(s) refused by the platform, more than destination.max_rejected_rows (1)"]


def test_a_lone_suspect_row_takes_one_job_of_the_budget(tmp_path):
    # Given one refused row of two, and a budget of exactly the two isolation jobs that prove it
    platform = Recording(bad={"b"})
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b"]), max_isolation_jobs=2)
    # Then a is imported alone (clean), so b is suspect alone, imported alone and quarantined: nothing left to search
    assert platform.labels() == ["1", "1a", "1ba"]
    assert result.rejected == {"b": "some rows were bad"} and result.search is None


@pytest.mark.parametrize("platform_failed", [False, True], ids=["lakeseg-gave-up", "the-platform-ended-it-failed"])
def test_a_part_that_fails_outright_leaves_its_sibling_unknown_and_fails_the_delivery(tmp_path, platform_failed):
    # Given one refused row among four, and the job of the first half failing as a whole
    platform = Recording(
        bad={"a"}, **({"failed": {"1a"}} if platform_failed else {"fail": {"1a": "import job FAILED"}})
    )
    # When the rows are delivered
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    # Then the failure is the delivery's error, and the other half is not assumed to hold the refused row: both its
    # parts are imported (they are clean), and the failed half's rows are left to search next run
    assert result.errors == ["seg_a job 1a (isolating refused rows): import job FAILED"] and not result.confirmed
    assert sorted(platform.labels()) == ["1", "1a", "1ba", "1bb"]
    assert result.rejected == {} and result.search.groups == (("a", "b"),)


def test_an_isolation_job_that_ends_neither_accepted_nor_refusing_is_not_accepted(tmp_path):
    platform = Recording(bad={"a"}, silent={"1a"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    assert result.errors == ["seg_a job 1a (isolating refused rows): not accepted"]


def test_a_retry_of_quarantined_rows_that_fails_outright_is_named_as_that_job_alone(tmp_path):
    # Given two rows quarantined by an earlier run, and their retry job failing as a whole
    d = dataclasses.replace(delivery_of(tmp_path, ["a", "b", "c"]), quarantined=frozenset({"a", "b"}))
    platform = Recording(fail={"q": "throttled for good"})
    # When the delivery runs, then the error names the retry job, not an isolation
    result = deliver(platform, d)
    assert result.errors == ["seg_a job q: throttled for good"] and not result.confirmed


def test_quarantined_rows_refused_again_each_keep_the_message_naming_it_cut_to_300_characters(tmp_path):
    # Given two rows quarantined by an earlier run, retried together, and the platform refusing both again,
    # naming each in a message of its own (a's longer than 300 characters)
    class Naming(Platform):
        def run_job(self, delivery, job, tracker):
            out = super().run_job(delivery, job, tracker)
            bad = [i for i in ids_of(job) if i in self.bad]
            out.messages = [f"row {i}: " + ("too long " * 50 if i == "a" else "bad plan") for i in bad]
            return out

    d = dataclasses.replace(delivery_of(tmp_path, ["a", "b", "c"]), quarantined=frozenset({"a", "b"}))
    # When the delivery runs
    result = deliver(Naming(bad={"a", "b"}), d)
    # Then both stay quarantined, each with the message that names it, cut to 300 characters
    assert result.confirmed, result.errors
    assert result.rejected == {"a": ("row a: " + "too long " * 50)[:300], "b": "row b: bad plan"}


def test_a_search_left_unfinished_is_logged_with_the_isolation_jobs_it_took(tmp_path, caplog):
    # Given one refused row among four and a budget of two isolation jobs, used in two rounds
    platform = Recording(bad={"b"})
    with caplog.at_level(logging.INFO, logger="sync.destinations.jobs"):
        result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_isolation_jobs=2)
    # Then the log says how many isolation jobs ran, and what is left to search
    assert platform.labels() == ["1", "1a", "1aa"] and result.search.groups == (("b",),)
    assert caplog.messages[-1] == (
        "seg_a: 2 isolation job(s); 1 row(s) in 1 group(s) still hold refused rows: the search continues next run"
    )


def test_a_budget_that_cannot_advance_a_search_over_runs_is_refused_by_the_bound():
    # a budget of 2 jobs with halves leaves nothing to advance a search carried over; one job more does
    with pytest.raises(ValueError, match="^a budget of 2 jobs per run cannot be relied on to advance the search$"):
        jobs.search_bound(1, 2, 2, 2)
    assert jobs.search_bound(1, 2, 2, 3) == (2, 1)


def test_rows_refused_in_several_jobs_are_each_found(tmp_path):
    # Given refused rows in the first and the second of two jobs
    platform = Recording(bad={"a", "d"})
    # When they are delivered, then both jobs are judged and searched: each refused row is found
    result = deliver(platform, delivery_of(tmp_path, ["a", "b"], ["c", "d"]), max_job_bytes=50)
    assert sorted(result.rejected) == ["a", "d"] and result.confirmed


@pytest.mark.parametrize(
    "parts, refused", [(1, True), (2, False), (26, False), (27, True)], ids=["one", "two", "every-letter", "too-many"]
)
def test_a_search_splits_a_group_into_two_to_twenty_six_parts(tmp_path, parts, refused):
    d = delivery_of(tmp_path, ["a", "b"])
    if refused:
        with pytest.raises(ValueError, match=f"^parts must be between 2 and 26, got {parts}$"):
            deliver(Recording(bad={"a"}), d, parts=parts)
    else:
        assert deliver(Recording(bad={"a"}), d, parts=parts).rejected == {"a": "some rows were bad"}


def test_progress_counts_the_retry_of_quarantined_rows_among_the_jobs(tmp_path):
    # Given one job of new rows and the retry of a quarantined row
    d = dataclasses.replace(delivery_of(tmp_path, ["a", "b"]), quarantined=frozenset({"a"}))
    seen = []

    class Reporting(Recording):
        def run_job(self, delivery, job, tracker):
            out = super().run_job(delivery, job, tracker)
            tracker.job_done()
            return out

    # When it is delivered, then progress reports two jobs to import
    deliver_in_jobs(
        Reporting(),
        d,
        lambda label, done, total: seen.append((label, done, total)),
        max_job_bytes=10**9,
        max_concurrent=1,
        max_rejected_rows=10,
        max_isolation_jobs=4,
        location=None,
    )
    assert [(done, total) for label, done, total in seen if label == "seg_a: importing"] == [(1, 2), (2, 2)]
