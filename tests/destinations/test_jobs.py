"""The shared platform layer (sync/destinations/jobs.py) against a scripted platform: no AWS, exact results.

Pinpoint and Customer Profiles supply only ``run_job``; everything else -- grouping files into jobs,
isolating refused rows, the verdict and its messages, settings, progress -- is pinned here.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from sync.core.errors import ConfigError
from sync.destinations import jobs
from sync.destinations.base import JobRecord, SegmentDelivery
from sync.destinations.jobs import (
    Job,
    JobOutcome,
    JobProgress,
    deliver_in_jobs,
    group_files,
    isolation_limits,
    job_slots,
    number_setting,
    settle_earlier_runs,
)


def write_part(folder: Path, name: str, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["Attributes.Plan", "Id"])
        w.writerows([["p,\"x\"", i] for i in ids])
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
    settings = {"max_job_bytes": 10**9, "max_concurrent": 2, "max_rejected_rows": 100, "max_isolation_jobs": 16,
                "location": "s3://b/p", **kw}
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
    result = deliver(Platform(fail={"2": "import job FAILED: bad role"}), delivery_of(tmp_path, ["a"], ["b"]),
                     max_job_bytes=40)
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
        "seg_a job 2: 1 row(s) refused by the platform (job job-2); destination.max_rejected_rows is 0"]


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
        # 1 -> 1a (a-d), 1b (e-h), depth first -> each halved again -> c and f alone
        assert platform.jobs[:2] == [("1", list("abcdefgh")), ("1a", list("abcd"))]
        assert ("1b", list("efgh")) in platform.jobs
        assert ("1aba", ["c"]) in platform.jobs and ("1bab", ["f"]) in platform.jobs
        # Every job run, halves included, is in the result's records
        assert [r.job_id for r in result.jobs] == [f"job-{label}" for label, _ in platform.jobs]
        # The halves are written inside the delivery's own folder (removed with the run's work folder)
        assert platform.files["1a"] == [tmp_path / "import" / "isolate" / "part-1a" / "part-00000.csv"]


def test_halves_keep_the_header_and_every_row_byte_for_byte(tmp_path, open_umask):
    d = delivery_of(tmp_path, ["a", "b", "c"], ["d", "e"])
    # A value with a line break and non-ASCII text inside its quotes must come through unchanged
    with d.files[1].open("a", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n").writerow(["Z\u00fcrich\r\nline 2", "f"])
    a, b = jobs._halves(Job("3", d.files), tmp_path / "iso", 6)
    assert (a.label, b.label) == ("3a", "3b")
    header = b'Attributes.Plan,Id\r\n'
    assert a.files[0].read_bytes() == header + b'"p,""x""",a\r\n"p,""x""",b\r\n"p,""x""",c\r\n'
    assert b.files[0].read_bytes() == header + b'"p,""x""",d\r\n"p,""x""",e\r\n' + \
        '"Z\u00fcrich\r\nline 2",f\r\n'.encode("utf-8")
    # Each half is an import file of its own (part-00000.csv) in a private folder
    assert [(p.parent.name, p.name) for p in (a.files[0], b.files[0])] == [("part-3a", "part-00000.csv"),
                                                                          ("part-3b", "part-00000.csv")]
    assert all((p.parent.stat().st_mode & 0o777) == 0o700 for p in (a.files[0], b.files[0]))


def test_more_refused_rows_than_allowed_fail_the_delivery(tmp_path):
    result = deliver(Platform(bad={"a", "b", "c"}, name_ids=True), delivery_of(tmp_path, ["a", "b", "c", "d"]),
                     max_rejected_rows=2)
    assert not result.confirmed
    assert result.errors == ["seg_a: 3 row(s) refused by the platform, more than destination.max_rejected_rows (2)"]
    assert len(result.rejected) == 3


def test_exactly_the_allowed_number_of_refused_rows_is_confirmed(tmp_path):
    result = deliver(Platform(bad={"a", "b"}, name_ids=True), delivery_of(tmp_path, ["a", "b", "c"]),
                     max_rejected_rows=2)
    assert result.confirmed and sorted(result.rejected) == ["a", "b"]


def test_no_refused_row_allowed_fails_without_isolating(tmp_path):
    platform = Platform(bad={"b"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c"]), max_rejected_rows=0)
    assert not result.confirmed and result.rejected == {}
    assert result.errors == ["seg_a job 1: 1 row(s) refused by the platform (job job-1); "
                             "destination.max_rejected_rows is 0"]
    assert [label for label, _ in platform.jobs] == ["1"]


@pytest.mark.parametrize("budget, jobs_run", [(0, 1), (1, 1), (2, 3)], ids=["none", "one-is-not-a-pair", "one-pair"])
def test_an_exhausted_isolation_budget_quarantines_the_whole_chunk_saying_so(tmp_path, budget, jobs_run):
    platform = Platform(bad={"b"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]), max_isolation_jobs=budget)
    assert len(platform.jobs) == jobs_run and result.confirmed
    chunk = ["a", "b", "c", "d"] if budget < 2 else ["a", "b"]
    assert sorted(result.rejected) == chunk
    assert result.rejected["b"] == (f"in a chunk of {len(chunk)} rows with 1 refused (not isolated further: "
                                    "destination.max_isolation_jobs reached): some rows were bad")


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
    assert [label for label, _ in platform.jobs] == ["1", "1a", "1aa", "1ab", "1b"]
    assert result.rejected == {"b": "some rows were bad"}


def test_a_half_two_levels_down_that_fails_outright_fails_the_delivery(tmp_path):
    platform = Platform(bad={"a", "c"}, fail={"1ab": "throttled for good"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d", "e", "f", "g", "h"]))
    assert result.confirmed is False
    assert result.errors == ["seg_a job 1ab (isolating refused rows): throttled for good"]


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
    platform = Platform(bad={"a"}, fail={"1b": "throttled for good"})
    result = deliver(platform, delivery_of(tmp_path, ["a", "b", "c", "d"]))
    assert not result.confirmed
    assert result.errors == ["seg_a job 1b (isolating refused rows): throttled for good"]


# ---- attributing refused rows from messages --------------------------------------------------------------------
@pytest.mark.parametrize("messages, refused, expected", [
    (["ep-13 is bad"], 1, {"ep-13": "ep-13 is bad"}),
    (["ep-1 is bad", "ep-13 is bad"], 2, {"ep-1": "ep-1 is bad", "ep-13": "ep-13 is bad"}),
    (["bad: ep-1."], 1, None),
    (["bad: (ep-1)"], 1, {"ep-1": "bad: (ep-1)"}),
    (["ep-1 is bad"], 2, None),
    ([], 1, None),
], ids=["longer-id-is-not-it", "each-its-own", "dot-continues-an-id", "brackets-delimit", "too-few-named",
        "no-messages"])
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
def test_isolation_limits_default_and_accept_zero():
    assert isolation_limits({}) == (100, 16)
    assert isolation_limits({"max_rejected_rows": 0, "max_isolation_jobs": 0}) == (0, 0)


@pytest.mark.parametrize("key, value", [("max_rejected_rows", -1), ("max_rejected_rows", True),
                                        ("max_isolation_jobs", 2.5), ("max_isolation_jobs", "3")],
                         ids=["negative", "bool", "fraction", "text"])
def test_isolation_limits_refuse_anything_but_whole_numbers(key, value):
    with pytest.raises(ConfigError) as refused:
        isolation_limits({key: value})
    assert str(refused.value) == f"destination.{key} must be a whole number of 0 or more, got {value!r}"


@pytest.mark.parametrize("value, expected", [(None, 7.5), ("", 7.5), ("3", 3.0), (0, 0.0), (2.5, 2.5)],
                         ids=["unset", "empty", "text-number", "zero", "fraction"])
def test_a_number_setting_defaults_when_unset(value, expected):
    assert number_setting({"timeout": value}, "timeout", 7.5) == expected


def test_a_number_setting_converts_with_its_kind():
    assert number_setting({"n": "4"}, "n", 1, kind=int) == 4 and isinstance(number_setting({"n": "4"}, "n", 1, int), int)


@pytest.mark.parametrize("value, message", [("soon", "destination.timeout must be a number, got 'soon'"),
                                            ([1], "destination.timeout must be a number, got [1]"),
                                            (-1, "destination.timeout must not be negative, got -1")],
                         ids=["text", "list", "negative"])
def test_a_bad_number_setting_is_refused_naming_it(value, message):
    with pytest.raises(ConfigError) as refused:
        number_setting({"timeout": value}, "timeout", 1)
    assert str(refused.value) == message


def test_job_slots_share_one_semaphore_of_that_size():
    n, slots = job_slots(3, why="the project's quota")
    assert n == 3
    assert all(slots.acquire(blocking=False) for _ in range(3)) and not slots.acquire(blocking=False)
    assert job_slots(10, why="x")[0] == 10 and job_slots(1, why="x")[0] == 1


@pytest.mark.parametrize("value, message", [
    ("many", "destination.max_concurrent_jobs must be a whole number, got 'many'"),
    (None, "destination.max_concurrent_jobs must be a whole number, got None"),
    (0, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 0"),
    (11, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 11"),
    (2.5, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got 2.5"),
    (True, "destination.max_concurrent_jobs must be between 1 and 10 (quota), got True"),
], ids=["text", "none", "zero", "above-limit", "fraction", "bool"])
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
        error = settle_earlier_runs("seg_a", lambda: answers.pop(0), platform="pinpoint", interval=2.0, timeout=60,
                                    sleep=slept.append)
    assert error is None and answers == [] and slept == [2.0, 2.0]
    assert caplog.messages == ["pinpoint: seg_a waits for 2 in-flight job(s) of earlier runs",
                               "pinpoint: seg_a waits for 1 in-flight job(s) of earlier runs"]


def test_an_earlier_run_still_in_flight_at_the_timeout_stops_the_delivery():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    error = settle_earlier_runs("seg_a", lambda: ["job-old", "job-older"], platform="pinpoint", interval=5.0,
                                timeout=12, sleep=sleep, clock=lambda: now[0])
    assert error == ("seg_a: an import of an earlier run is still in flight (job-old); nothing was imported so that "
                     "imports stay in order; the rows are resent next run")
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
    assert calls == [("seg_a: uploading", 1, 2), ("seg_a: uploading", 3, 3), ("seg_a: importing", 0, 2),
                     ("seg_a: importing", 1, 2), ("seg_a: importing", 2, 2), ("seg_a: importing", 3, 3)]


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
    assert ("1ab", ["田中"]) in platform.jobs
