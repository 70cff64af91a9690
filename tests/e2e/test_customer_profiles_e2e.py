"""End to end through Customer Profiles: dbt on DuckDB → `lakeseg sync` (the CLI) → the
model-validated Customer Profiles fake → the pre-signed PUT to a real HTTPS server on
127.0.0.1 → state committed; then three weeks of daily runs on a controllable clock."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import boto3
import duckdb
import pytest
from click.testing import CliRunner

import sync.app.wiring
import sync.run.engine
from sync.cli import main as cli
from tests.destinations import profiles_harness as ph
from tests.e2e.conftest import PROJECT

pytestmark = pytest.mark.e2e

SEGMENTS = {
    "seg_lifecycle_stage": ("lifecycle_stage", "LifecycleStage"),
    "seg_active_last_24h": ("logged_in_last_24h", "LoggedInDuringLast24Hours"),
}
SELECTED = [a for s in SEGMENTS for a in ("--select", s)]
EXPIRY, MARGIN = 14, 3


class Cloud:
    def __init__(self, clock, server, fake):
        self.clock, self.server, self.fake = clock, server, fake

    def uploaded_ids(self, since: int = 0) -> list[set[str]]:
        """AccountNumber values of each upload job created after the first ``since`` jobs, in order."""
        out = []
        for job in list(self.fake.jobs.values())[since:]:
            body = self.server.bodies.get(job.id, b"").decode()
            out.append({row["AccountNumber"] for row in csv.DictReader(io.StringIO(body))})
        return out


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    # Simulated time starts now and only moves forward: the destination checks ValidUntil on the real clock.
    clock = ph.Clock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    tls = ph.self_signed(tmp_path / "tls")
    server = ph.UploadServer(tls, clock)
    session = boto3.Session(region_name=ph.REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    fake = ph.FakeCustomerProfiles(session.client("customer-profiles"), server, clock, polls=1, events=session.events)
    # The CLI builds its clients from this session (the fake answers them) and reads the run's clock.
    monkeypatch.setattr(sync.app.wiring, "_boto_session", lambda region=None: session)
    monkeypatch.setattr(sync.run.engine, "wall_clock", clock)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls[0]))  # the upload trusts what the AWS clients trust
    yield Cloud(clock, server, fake)
    server.close()


def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "lakeseg.yml"
    path.write_text(f"""
targets:
  local:
    destination:
      type: customer_profiles
      domain_name: {ph.DOMAIN}
      region: {ph.REGION}
      data_expiry_days: {EXPIRY}
      refresh_before_expiry_days: {MARGIN}
      poll_seconds: 0
    guard: {{max_exit_share: 1.0}}  # the simulation moves the data back and forth on purpose
    state: {tmp_path / "state"}
    work_dir: {tmp_path / "work"}
""")
    return path


def lakeseg(command, build, settings: Path, *extra):
    args = [
        command,
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(build.profiles_dir),
        "--target-path",
        str(build.target_path),
        "--settings",
        str(settings),
        "--json",
        *SELECTED,
        *extra,
    ]
    result = CliRunner().invoke(cli, args, env=build.env(), catch_exceptions=False)
    assert result.stdout.startswith("{"), result.output
    return result.exit_code, json.loads(result.stdout)


def members(build) -> dict[str, dict[str, str]]:
    """segment -> {Id: attribute value}, read from the table dbt built."""
    con = duckdb.connect(str(build.build_dir / "lakeseg.duckdb"), read_only=True)
    try:
        return {
            seg: {
                str(i): str(v) for i, v in con.execute(f"select endpoint_id, {col} from main_segments.{seg}").fetchall()
            }
            for seg, (col, _) in SEGMENTS.items()
        }
    finally:
        con.close()


class ProjectBuild:
    """A dbt build and the profiles directory it was built with."""

    def __init__(self, build, profiles_dir: Path):
        self.build, self.profiles_dir = build, profiles_dir
        self.build_dir, self.target_path, self.env = build.build_dir, build.target_path, build.env


@pytest.fixture
def builds(build_now, build_later, profiles_dir):
    return {"now": ProjectBuild(build_now, profiles_dir), "later": ProjectBuild(build_later, profiles_dir)}


def test_sync_uploads_through_customer_profiles_and_commits(cloud, builds, tmp_path):
    build = builds["now"]
    settings = settings_file(tmp_path)
    # When the two segments are synced to Customer Profiles
    code, report = lakeseg("sync", build, settings)
    # Then each became one upload job, SUCCEEDED, carrying exactly the segment's members
    assert code == 0, [(s["segment"], s["status"], s["reason"]) for s in report["segments"]]
    want = members(build)
    by_name = {s["segment"]: s for s in report["segments"]}
    assert len(cloud.fake.jobs) == 2
    for seg, (_, attribute) in SEGMENTS.items():
        entry = by_name[seg]
        assert entry["status"] == "synced", entry
        (record,) = entry["jobs"]
        assert record["status"] == "SUCCEEDED" and record["total_processed"] == entry["plan"]["to_send"]
        job = next(j for j in cloud.fake.jobs.values() if seg in j.name)
        assert job.fields[attribute]["Target"] == f"_profile.Attributes.{attribute}"
        assert {r["AccountNumber"]: r[attribute] for r in job.rows} == want[seg]
        for i, value in want[seg].items():
            assert cloud.fake.profiles[i][f"_profile.Attributes.{attribute}"] == value
        # And the state is committed, with each member's confirmation time
        pointer = json.loads(
            (tmp_path / "state" / "snapshots" / "customer_profiles" / seg / "current.json").read_text()
        )
        assert pointer["rows"] == len(want[seg])
        con = duckdb.connect()
        stamps = con.execute(
            "select distinct confirmed_at from read_parquet(?)", [str(tmp_path / "state" / pointer["file"])]
        ).fetchall()
        assert stamps == [(cloud.clock().replace(tzinfo=None),)]
    # And every PUT carried the SSE-C headers (the server checked them) and succeeded
    assert [p.status for p in cloud.server.puts] == [200, 200]
    # And a second sync the same day sends nothing
    code, again = lakeseg("sync", build, settings)
    assert code == 0 and {s["status"] for s in again["segments"]} == {"unchanged"}
    assert len(cloud.fake.jobs) == 2


def test_three_weeks_of_daily_runs_refresh_members_before_they_expire(cloud, builds, tmp_path):
    """Members never expire, and an unchanged member is resent only when its confirmation is due."""
    settings = settings_file(tmp_path)
    refresh_after = dt.timedelta(days=EXPIRY - MARGIN)
    last_sent: dict[str, dt.datetime] = {}
    schedule = []
    for day in range(21):
        # The data changes on days 5 and 6 (an earlier build, then back), otherwise stays the same.
        build = builds["later" if day == 5 else "now"]
        want = members(build)
        jobs_before = len(cloud.fake.jobs)
        held = {i: dict(p) for i, p in cloud.fake.profiles.items()}
        if day == EXPIRY - MARGIN:
            # `plan` on the day members fall due says how many, and sends nothing
            code, plan = lakeseg("plan", build, settings)
            assert code == 0 and sum(s["plan"]["refresh"] for s in plan["segments"]) > 0
            assert any("due for a refresh" in n for s in plan["segments"] for n in s["notes"])
            assert len(cloud.fake.jobs) == jobs_before
        code, report = lakeseg("sync", build, settings)
        assert code == 0, [(s["segment"], s["status"], s["reason"]) for s in report["segments"]]
        now = cloud.clock()
        sent = set().union(*cloud.uploaded_ids(jobs_before)) if len(cloud.fake.jobs) > jobs_before else set()
        # An uploaded member whose values were already there, alive, is a refresh: only when due
        for seg, (_, attribute) in SEGMENTS.items():
            key = f"_profile.Attributes.{attribute}"
            for i, value in want[seg].items():
                if i in sent and i in held and held[i].get(key) == value and held[i]["_expires"] > now:
                    assert now - last_sent[i] >= refresh_after, (day, i)
        for i in sent:
            last_sent[i] = now
        schedule.append(
            {
                "day": day,
                "jobs": len(cloud.fake.jobs) - jobs_before,
                "rows": len(sent),
                "refresh": sum(s["plan"].get("refresh", 0) for s in report["segments"]),
            }
        )
        # Members never expire: every current member is alive now and until the next run
        alive = cloud.fake.alive(now + dt.timedelta(days=1))
        for seg, current in want.items():
            assert set(current) <= set(alive), (day, seg, len(set(current) - set(alive)))
        cloud.clock.advance(days=1)
    # The schedule: a full send on day 0, changes on days 5 and 6, and refreshes only when due
    (tmp_path / "schedule.json").write_text(json.dumps(schedule))
    print("customer_profiles 3-week schedule:", json.dumps(schedule))
    refresh_days = [d["day"] for d in schedule if d["refresh"]]
    assert refresh_days and min(refresh_days) == EXPIRY - MARGIN
    assert all(d["rows"] == 0 for d in schedule if d["day"] not in (0, 5, 6, *refresh_days))
    assert sum(d["refresh"] for d in schedule) >= sum(len(m) for m in members(builds["now"]).values()) // 2


def test_check_reports_fields_without_a_target_and_the_limits(builds, tmp_path):
    from sync.app.check import destination_problems
    from sync.dbt.contract import FieldMapping, Segment
    from sync.readers.base import RelationRef

    build = builds["now"]
    settings = settings_file(tmp_path)
    # The real project's segments all map to Customer Profiles; check lists the destination's limits
    args = [
        "check",
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(build.profiles_dir),
        "--no-parse",
        "--target-path",
        str(build.target_path),
        "--settings",
        str(settings),
        "--exposures",
        "off",
    ]
    result = CliRunner().invoke(cli, args + ["--json"], env=build.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["problems"] == [] and "under 1 GB" in out["destination_limits"]["file"]
    text = CliRunner().invoke(cli, args, env=build.env(), catch_exceptions=False)
    assert "Destination limits:" in text.output and "1-64 characters" in text.output
    # A segment exporting a field with no target is named, with its column and the rule
    seg = Segment(
        "model.p.seg_tz",
        "seg_tz",
        RelationRef(None, "main", "seg_tz"),
        (FieldMapping("endpoint_id", "Id"), FieldMapping("tz", "Demographic.Timezone")),
        {},
        None,
        (),
        "",
    )
    (problem,) = destination_problems(PROJECT, build.profiles_dir, None, settings, [seg])
    assert (problem.model, problem.column, problem.rule) == ("seg_tz", "tz", "customer-profiles-field")
    assert "Demographic.Timezone" in str(problem)


def test_partially_succeeded_rows_are_quarantined_and_resent(cloud, builds, tmp_path):
    build = builds["now"]
    settings = settings_file(tmp_path)
    want = members(build)
    bad = {sorted(want["seg_lifecycle_stage"])[0]}

    def refuse(job):  # Customer Profiles counts the failed records; it does not name them
        return "SUCCEEDED", bad & {r["AccountNumber"] for r in job.rows}

    cloud.fake.verdict = refuse
    code, report = lakeseg("sync", build, settings)
    by_name = {s["segment"]: s for s in report["segments"]}
    # Then the refused row is isolated by halving and quarantined; the rest is committed
    assert code == 1
    assert by_name["seg_active_last_24h"]["status"] == "synced"
    partial = by_name["seg_lifecycle_stage"]
    assert partial["status"] == "partial" and [q["id"] for q in partial["quarantined"]] == sorted(bad)
    assert partial["jobs"][0]["status"] == "PARTIALLY_SUCCEEDED"
    assert not bad & set(cloud.fake.profiles)
    # When the service accepts it next run, exactly that row is resent and the segment is clean
    cloud.fake.verdict = ph.accept_all
    cloud.clock.advance(hours=1)
    code, retry = lakeseg("sync", build, settings)
    assert code == 0
    seg = {s["segment"]: s for s in retry["segments"]}["seg_lifecycle_stage"]
    assert seg["status"] == "synced" and seg["plan"]["to_send"] == 1 and seg["quarantined"] == []
    assert bad <= set(cloud.fake.profiles)


def test_failed_upload_commits_nothing_and_is_resent(cloud, builds, tmp_path):
    build = builds["now"]
    settings = settings_file(tmp_path)
    cloud.fake.verdict = lambda job: ("FAILED", set())
    code, report = lakeseg("sync", build, settings)
    assert code == 1 and {s["status"] for s in report["segments"]} == {"failed"}
    assert all("FAILED (INTERNAL_FAILURE)" in s["reason"] for s in report["segments"])
    assert not (
        tmp_path / "state" / "snapshots" / "customer_profiles" / "seg_lifecycle_stage" / "current.json"
    ).exists()
    cloud.fake.verdict = ph.accept_all
    code, retry = lakeseg("sync", build, settings)
    assert code == 0
    assert [s["plan"]["to_send"] for s in retry["segments"]] == [s["plan"]["to_send"] for s in report["segments"]]


def test_sync_refuses_a_segment_the_destination_cannot_map(cloud, builds, tmp_path):
    # Given a unique key target that lands on the same column as seg_lifecycle_stage's attribute
    settings = settings_file(tmp_path)
    settings.write_text(
        settings.read_text().replace(
            "      poll_seconds: 0\n",
            "      poll_seconds: 0\n      unique_key_target: _profile.Attributes.LifecycleStage\n",
        )
    )
    code, report = lakeseg("sync", builds["now"], settings)
    by_name = {s["segment"]: s for s in report["segments"]}
    # Then that segment is refused, naming the field and the rule, and nothing of it is uploaded
    assert code == 1
    refused = by_name["seg_lifecycle_stage"]
    assert refused["status"] == "refused"
    assert (
        "[customer-profiles-field]" in refused["reason"] and "User.UserAttributes.LifecycleStage" in refused["reason"]
    )
    assert by_name["seg_active_last_24h"]["status"] == "synced"
    assert [j.name for j in cloud.fake.jobs.values() if "seg_lifecycle_stage" in j.name] == []


def test_lakeseg_run_builds_and_syncs_every_segment_to_customer_profiles(cloud, lake, profiles_dir, tmp_path):
    """`lakeseg run` (dbt build on DuckDB, then sync) with destination.type customer_profiles."""
    env = {
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(tmp_path / "build"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    args = [
        "run",
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(profiles_dir),
        "--settings",
        str(settings_file(tmp_path)),
        "--target-path",
        str(tmp_path / "build" / "target"),
        "--json",
        "--no-report",
        "--",
        "--log-path",
        str(tmp_path / "logs"),
    ]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{\n") :])
    assert report["destination"] == "customer_profiles" and len(report["segments"]) >= 6
    assert {s["status"] for s in report["segments"]} == {"synced"}
    sent = sum(s["plan"]["to_send"] for s in report["segments"])
    assert len(cloud.fake.jobs) == len(report["segments"])
    assert sum(len(j.rows) for j in cloud.fake.jobs.values()) == sent
    assert all(j.status == "SUCCEEDED" for j in cloud.fake.jobs.values())
