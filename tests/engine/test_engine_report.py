"""What a run tells its caller: progress, each segment's report, the imports table, the crash stages.

The summary table, `--json`, `history` and the HTML report are built from
these fields, so each is pinned to its exact value here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync.core import failpoints
from sync.destinations.base import DeliveryResult, JobRecord
from sync.destinations.files import FilesDestination
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan"}
ROWS = [("e1", "pro"), ("e2", "basic"), ("e3", "plus")]


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


class Verdict(FilesDestination):
    """The files destination, then a scripted answer: confirmed or not, with errors, rejected rows, jobs."""

    def __init__(self, path, *, confirmed=True, errors=(), rejected=None, jobs=()):
        super().__init__(path)
        self.confirmed, self.errors, self.rejected, self.jobs = confirmed, list(errors), dict(rejected or {}), jobs

    def deliver(self, delivery, progress=None):
        location = super().deliver(delivery, progress).location
        return DeliveryResult(
            confirmed=self.confirmed,
            errors=self.errors,
            rejected=self.rejected,
            location=location,
            jobs=list(self.jobs),
        )


def _export_folder(h: EngineHarness, report, segment: str):
    return h.exports / report.run_id / segment


def test_progress_names_the_segment_and_each_stage_in_order(h):
    # Given a segment whose changes fill three import files
    h.segment("seg_a", COLS, [(f"e{i:03d}", "x" * 40) for i in range(300)])
    calls = []
    # When it syncs
    report = h.run(progress=lambda *call: calls.append(call), max_file_bytes=4096)
    # Then progress went reading, writing files, then delivering file by file, all under the segment's name
    files = by_segment(report)["seg_a"].files
    assert len(files) >= 3
    assert calls == [
        ("seg_a", "reading", 0, 1),
        ("seg_a", "writing files", 0, 1),
        ("seg_a", "delivering", 0, len(files)),
    ] + [("seg_a", "delivering", n, len(files)) for n in range(1, len(files) + 1)]


def test_a_synced_segment_reports_its_files_bytes_location_jobs_and_start(h):
    # Given a destination that reports a job
    h.segment("seg_a", COLS, ROWS)
    job = JobRecord("job-7", "COMPLETED", 3, 0)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    # When the segment syncs
    report = h.run(destination=Verdict(h.exports, jobs=[job]))
    # Then its report names what was sent, where, by which job, and when it started
    rep = by_segment(report)["seg_a"]
    folder = _export_folder(h, report, "seg_a")
    parts = sorted(folder.glob("part-*.csv"))
    assert rep.status == "synced" and rep.reason == ""
    assert rep.files == [p.name for p in parts]
    assert rep.bytes == sum(p.stat().st_size for p in parts) > 0
    assert rep.location == str(folder)
    assert rep.jobs == [
        {
            "job_id": "job-7",
            "status": "COMPLETED",
            "total_processed": 3,
            "total_failures": 0,
            "execution_arn": None,
            "status_reason": None,
        }
    ]
    started = datetime.fromisoformat(rep.started_at)
    assert before <= started <= datetime.now(timezone.utc)
    assert rep.duration_s >= 0


@pytest.mark.parametrize(
    "errors, reason",
    [
        (
            ["import job FAILED", "3 rows refused"],
            "the destination did not confirm the delivery: 2 errors (platform-error; job job-1 FAILED, 3 failure(s)); "
            "the platform's messages are in the local log at debug level; the rows stay in doubt and are resent next run",
        ),
        (
            [],
            "the destination did not confirm the delivery: the destination did not say why (job job-1 FAILED, "
            "3 failure(s)); the rows stay in doubt and are resent next run",
        ),
    ],
    ids=["platform-errors", "no-error-given"],
)
def test_an_unconfirmed_delivery_reports_why_and_what_was_sent(h, errors, reason):
    # Given a destination that does not confirm, naming a refused row
    h.segment("seg_a", COLS, ROWS)
    destination = Verdict(
        h.exports,
        confirmed=False,
        errors=errors,
        rejected={"e2": "bad plan"},
        jobs=[JobRecord("job-1", "FAILED", 3, 3)],
    )
    # When the segment syncs
    report = h.run(destination=destination)
    # Then it failed naming codes and jobs (never the platform's words), and its report still says what was sent,
    # where and when
    rep = by_segment(report)["seg_a"]
    folder = _export_folder(h, report, "seg_a")
    assert rep.status == "failed"
    assert rep.reason == reason
    assert rep.quarantined == [{"id": "e2", "code": "platform-refused"}]
    assert rep.files == [p.name for p in sorted(folder.glob("part-*.csv"))]
    assert rep.bytes == sum(p.stat().st_size for p in folder.glob("part-*.csv")) > 0
    assert rep.location == str(folder)
    assert [j["job_id"] for j in rep.jobs] == ["job-1"]
    assert rep.plan["entered"] == 3 and rep.started_at


def test_rows_the_platform_rejected_make_the_segment_partial_with_a_count(h):
    # Given a destination that takes the delivery but rejects two rows
    h.segment("seg_a", COLS, ROWS)
    report = h.run(destination=Verdict(h.exports, rejected={"e1": "too long", "e3": "bad"}))
    # Then the segment is partial, says how many rows are quarantined, and lists them
    rep = by_segment(report)["seg_a"]
    assert rep.status == "partial"
    assert rep.reason == "2 row(s) rejected by the destination are quarantined (resent next run); the rest is committed"
    assert [(q["id"], q["code"], q["attempts"]) for q in rep.quarantined] == [
        ("e1", "platform-refused", 1),
        ("e3", "platform-refused", 1),
    ]


class Recorder:
    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def know(self, segments):
        pass

    def repair(self):
        pass

    def register(self, segment, run_id, location):
        self.calls.append((segment.name, run_id, location))
        if self.fail:
            raise OSError("glue is down")


def test_a_confirmed_delivery_is_registered_in_the_imports_table(h):
    # Given an imports table
    h.segment("seg_a", COLS, ROWS)
    table = Recorder()
    # When the segment syncs
    report = h.run(imports_table=table)
    # Then the delivery is registered under its segment, run and location
    assert table.calls == [("seg_a", report.run_id, str(_export_folder(h, report, "seg_a")))]


def test_an_unconfirmed_delivery_is_not_registered_and_a_failing_table_only_adds_a_note(h):
    h.segment("seg_a", COLS, ROWS)
    # Given a delivery the destination does not confirm
    table = Recorder()
    h.run(destination=Verdict(h.exports, confirmed=False), imports_table=table)
    # Then nothing is registered
    assert table.calls == []
    # And when the table itself fails, the delivery still counts, with a note
    failing = Recorder(fail=True)
    rep = by_segment(h.run(imports_table=failing))["seg_a"]
    assert rep.status == "synced"
    assert "imports table not updated: OSError (its message is in the local log at debug level)" in rep.notes


class Killed(BaseException):
    """Stands in for the process exit a failpoint makes."""


@pytest.mark.parametrize("stage", ["after-read", "after-files", "after-in-doubt", "before-commit"])
def test_a_run_killed_at_each_stage_commits_nothing_and_the_next_run_sends_the_change(h, monkeypatch, stage):
    # Given a synced segment, then a change, and a run killed at one stage
    h.segment("seg_a", COLS, ROWS)
    h.run()
    h.rebuild("seg_a", [("e1", "pro"), ("e2", "plus"), ("e3", "plus")])

    def exit_now(code):
        raise Killed(code)

    monkeypatch.setattr(failpoints.os, "_exit", exit_now)
    monkeypatch.setenv("LAKESEG_FAILPOINTS", stage)
    with pytest.raises(Killed):
        h.run()
    # When the next run starts (its lock is that of a dead run in this same process: take it over)
    monkeypatch.delenv("LAKESEG_FAILPOINTS")
    monkeypatch.setattr("sync.run.engine._owner_is_dead_here", lambda owner: True)
    report = h.run()
    # Then the change is sent, and then nothing is left to send
    assert h.delivered(report, "seg_a") == [{"Id": "e2", "Attributes.Plan": "plus"}]
    assert by_segment(h.run())["seg_a"].status == "unchanged"


def test_a_quarantined_row_keeps_its_first_run_counts_attempts_and_a_code_not_the_message(h):
    # Given a platform that refuses e2 twice with a long message
    h.segment("seg_a", COLS, ROWS)
    message = "value too long: " + "x" * 400
    first = h.run(destination=Verdict(h.exports, rejected={"e2": message}))
    second = h.run(destination=Verdict(h.exports, rejected={"e2": message}))
    # Then the second report names the run that first quarantined it, this run, two attempts and a code
    row = by_segment(second)["seg_a"].quarantined
    assert row == [
        {
            "id": "e2",
            "code": "platform-refused",
            "first_run_id": first.run_id,
            "last_run_id": second.run_id,
            "attempts": 2,
        }
    ]


def test_a_rejected_row_stays_out_of_the_committed_snapshot(h):
    # Given a first sync whose platform rejects the entering e2
    h.segment("seg_a", COLS, ROWS)
    h.run(destination=Verdict(h.exports, rejected={"e2": "bad plan"}))
    # When the next run plans
    plan = by_segment(h.run(command="plan", dry_run=True))["seg_a"].plan
    # Then e2 is still entering (the snapshot never took it), not an unchanged member resent
    assert (plan["previous_rows"], plan["entered"], plan["resent"], plan["unchanged"]) == (2, 1, 0, 2)


def test_a_run_that_started_exactly_max_age_ago_is_not_yet_interrupted(monkeypatch):
    # Given a clock frozen exactly two days after a run on another host started (the engine reads the time
    # through sync.core.clock)
    from sync.core import clock
    from sync.run import engine

    start = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(days=2))
    run = {"status": "running", "host": "elsewhere", "pid": 2**22 + 1, "started_at": start.isoformat()}
    # Then it may still be running; a second later it is interrupted
    assert engine.mark_interrupted(run)["status"] == "running"
    assert (
        engine.mark_interrupted({**run, "started_at": (start - timedelta(seconds=1)).isoformat()})["status"]
        == "interrupted"
    )


class Raising(FilesDestination):
    def __init__(self, path, exc):
        super().__init__(path)
        self.exc = exc

    def deliver(self, delivery, progress=None):
        raise self.exc


def test_a_destination_that_refuses_with_a_lakeseg_error_gives_its_message_as_the_reason(h):
    from sync.core.errors import ConfigError

    h.segment("seg_a", COLS, ROWS)
    rep = by_segment(h.run(destination=Raising(h.exports, ConfigError("destination.bucket: access denied"))))["seg_a"]
    assert (rep.status, rep.reason) == ("failed", "destination.bucket: access denied")


def test_a_destination_bug_is_reported_by_type_and_its_message_logged_at_debug_level(h, caplog):
    h.segment("seg_a", COLS, ROWS)
    with caplog.at_level("DEBUG", logger="sync.run.engine"):
        rep = by_segment(h.run(destination=Raising(h.exports, RuntimeError("connection reset\nby peer"))))["seg_a"]
    assert (rep.status, rep.reason) == ("failed", "RuntimeError (its message is in the local log at debug level)")
    debug = [r for r in caplog.records if r.levelname == "DEBUG" and r.getMessage().startswith("delivery of seg_a")]
    assert len(debug) == 1 and debug[0].exc_info and debug[0].exc_info[0] is RuntimeError
    assert debug[0].getMessage() == "delivery of seg_a failed: RuntimeError: connection reset\nby peer"
    assert "delivery of seg_a failed: RuntimeError (-vv logs its message)" in caplog.messages


def test_durations_are_seconds_rounded_to_milliseconds(h, monkeypatch):
    # Given a monotonic clock that moves 1.23456 s per reading (from an arbitrary start, as monotonic clocks do)
    import types

    from sync.run import engine

    readings = iter(10_000 + n * 1.23456 for n in range(1, 1000))
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(monotonic=lambda: next(readings), time=engine.time.time))
    h.segment("seg_a", COLS, ROWS)
    h.segment("seg_b", {"endpoint_id": "Id", "tier": "Attributes.Tier"}, [("e1", "gold")], status="error")
    report = by_segment(h.run())
    # Then each segment's duration is a whole number of readings apart, to the millisecond
    allowed = {round(k * 1.23456, 3) for k in range(1, 20)}
    assert report["seg_a"].duration_s in allowed and report["seg_b"].duration_s in allowed


def test_the_lock_names_run_host_pid_and_command(h):
    import os
    import socket

    h.segment("seg_a", COLS, ROWS)
    seen = {}

    class Peek(FilesDestination):
        def deliver(self, delivery, progress=None):
            import json

            seen.update(json.loads((h.state_dir / "locks/files/seg_a.json").read_text())["owner"])
            return super().deliver(delivery, progress)

    report = h.run(destination=Peek(h.exports), command="run")
    assert seen == {"run_id": report.run_id, "host": socket.gethostname(), "pid": os.getpid(), "command": "run"}
