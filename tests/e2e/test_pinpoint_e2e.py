"""End to end through Pinpoint: dbt on DuckDB → lakeseg sync → S3 (moto) → the
import-tail state machine executing in moto → Pinpoint (model-validated fake)
→ SNS (read through SQS) → committed state (in moto S3 as well)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from tests.destinations import pinpoint_harness as h
from tests.e2e.conftest import PROJECT

pytestmark = pytest.mark.e2e

BUCKET = "lakeseg-e2e"
SELECTED = ["--select", "seg_lifecycle_stage", "--select", "seg_active_last_24h"]


@pytest.fixture
def cloud(aws):
    s3 = h.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def settings_file(tmp_path: Path, state_machine_arn: str) -> Path:
    path = tmp_path / "lakeseg.yml"
    path.write_text(f"""
targets:
  local:
    destination:
      type: pinpoint
      mode: stack
      application_id: {h.APP_ID}
      import_s3_url: s3://{BUCKET}/lakeseg/imports
      state_machine_arn: {state_machine_arn}
      region: {h.REGION}
      poll_seconds: 0
      max_concurrent_jobs: 2
    state: s3://{BUCKET}/lakeseg/state
    work_dir: {tmp_path / "work"}
""")
    return path


def sync(build, profiles_dir, settings: Path, *extra, command: str = "sync"):
    args = [
        command,
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(profiles_dir),
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


def pointer(s3, segment: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=BUCKET, Key=f"lakeseg/state/snapshots/pinpoint/{segment}/current.json")
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body["Body"].read())


def state_key_prefix(s3) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lakeseg/state/snapshots/")
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def test_sync_through_the_import_tail_commits_only_what_pinpoint_confirmed(cloud, build_now, profiles_dir, tmp_path):
    s3 = cloud
    pinpoint = h.FakePinpoint(h.pinpoint_client(), s3=s3, polls=1)
    with h.moto_fidelity(pinpoint.client):
        tail = h.deploy_import_tail(poll_seconds=30)
        settings = settings_file(tmp_path, tail.state_machine_arn)
        # When the two segments are synced to Pinpoint
        code, report = sync(build_now, profiles_dir, settings)
        # Then each import job read exactly the rows the plan sent
        assert code == 0, report
        by_name = {s["segment"]: s for s in report["segments"]}
        jobs = {j.request["S3Url"]: j for j in pinpoint.created()}
        assert len(jobs) == 2
        for seg in SELECTED[1::2]:
            entry = by_name[seg]
            assert entry["status"] == "synced"
            (record,) = entry["jobs"]
            assert record["status"] == "COMPLETED" and record["total_failures"] == 0
            assert record["total_processed"] == entry["plan"]["to_send"]
            job = next(j for j in jobs.values() if f"/{seg}/" in j.request["S3Url"])
            assert job.rows == entry["plan"]["to_send"]
        # And SNS told on-call once per segment
        bodies = [m["body"] for m in tail.messages()]
        assert sorted(b.get("Segment") for b in bodies) == sorted(SELECTED[1::2])
        # And the state committed in S3 points at the new snapshots
        for seg in SELECTED[1::2]:
            assert pointer(s3, seg)["rows"] == by_name[seg]["plan"]["rows"]
        # And a second sync sends nothing and starts no import
        code, again = sync(build_now, profiles_dir, settings)
        assert code == 0 and {s["status"] for s in again["segments"]} == {"unchanged"}
        assert len(pinpoint.created()) == 2


def test_failed_import_leaves_state_and_is_visible_everywhere(cloud, build_now, profiles_dir, tmp_path):
    s3 = cloud

    def reject(job):  # the job fails as a whole: no endpoint is named as refused
        return {
            "JobStatus": "FAILED",
            "TotalProcessed": 0,
            "TotalFailures": 0,
            "Failures": ["row 2: invalid attribute value"],
            "TotalPieces": 1,
            "CompletedPieces": 0,
            "FailedPieces": 1,
        }

    pinpoint = h.FakePinpoint(h.pinpoint_client(), s3=s3, polls=1, verdict=reject)
    with h.moto_fidelity(pinpoint.client):
        tail = h.deploy_import_tail(poll_seconds=30)
        settings = settings_file(tmp_path, tail.state_machine_arn)
        code, report = sync(build_now, profiles_dir, settings)
        # Then the run fails, names the failure, and commits nothing
        assert code == 1
        for seg in report["segments"]:
            assert seg["status"] == "failed"
            assert (
                seg["jobs"][0]["status"] == "FAILED" and "failures" not in seg["jobs"][0]
            )  # Pinpoint's words: log only
        # (no snapshot: only the in-doubt records of what was handed over)
        assert [k for k in state_key_prefix(s3) if not k.rsplit("/", 1)[-1].startswith(("in_doubt", "in-doubt"))] == []
        assert {m["body"]["Segment"] for m in tail.messages()} == set(SELECTED[1::2])
        history = CliRunner().invoke(
            cli,
            [
                "history",
                "--project-dir",
                str(PROJECT),
                "--profiles-dir",
                str(profiles_dir),
                "--settings",
                str(settings),
            ],
            env=build_now.env(),
        )
        assert "platform-error" in history.output and "row 2: invalid attribute value" not in history.output
        # And once Pinpoint accepts, the next run sends the same rows again
        pinpoint.verdict = h.all_accepted
        code, retry = sync(build_now, profiles_dir, settings)
        assert code == 0
        assert [s["plan"]["to_send"] for s in retry["segments"]] == [s["plan"]["to_send"] for s in report["segments"]]


def test_throttling_is_retried_not_reported(cloud, build_now, profiles_dir, tmp_path):
    s3 = cloud
    pinpoint = h.FakePinpoint(h.pinpoint_client(), s3=s3, polls=1)
    pinpoint.throttle("CreateImportJob", 1)
    pinpoint.throttle("GetImportJob", 1)
    with h.moto_fidelity(pinpoint.client):
        tail = h.deploy_import_tail(poll_seconds=30)
        code, report = sync(build_now, profiles_dir, settings_file(tmp_path, tail.state_machine_arn))
        assert code == 0, report
        assert {s["status"] for s in report["segments"]} == {"synced"}


def test_refused_rows_are_quarantined_and_the_rest_committed(cloud, build_now, profiles_dir, tmp_path):
    s3 = cloud
    refused: set[str] = set()

    def refuse_some(job):
        # Pinpoint names the refused endpoints in its (free-text) Failures
        bucket, _, prefix = job.request["S3Url"][5:].partition("/")
        ids = []
        for key in job.files:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            ids += [line.split(",")[0] for line in body.splitlines()[1:]]
        bad = sorted(ids)[:2]
        refused.update(bad)
        return {
            "JobStatus": "FAILED",
            "TotalProcessed": job.rows,
            "TotalFailures": len(bad),
            "Failures": [f"Endpoint {i}: attribute value rejected" for i in bad],
            "TotalPieces": 1,
            "CompletedPieces": 0,
            "FailedPieces": 1,
        }

    pinpoint = h.FakePinpoint(h.pinpoint_client(), s3=s3, polls=1, verdict=refuse_some)
    with h.moto_fidelity(pinpoint.client):
        tail = h.deploy_import_tail(poll_seconds=30)
        settings = settings_file(tmp_path, tail.state_machine_arn)
        # When Pinpoint refuses two endpoints of each segment
        code, report = sync(build_now, profiles_dir, settings)
        # Then each segment is committed without them, and they are quarantined by code (Pinpoint's message: log only)
        assert code == 1
        for seg in report["segments"]:
            assert seg["status"] == "partial", seg
            assert len(seg["quarantined"]) == 2
            assert all(q["code"] == "platform-refused" and "message" not in q for q in seg["quarantined"])
            p = pointer(s3, seg["segment"])
            assert p is not None and {q["id"] for q in p["quarantine"]} == {q["id"] for q in seg["quarantined"]}
            assert p["rows"] == seg["plan"]["rows"] - 2
        # And `plan` lists them and counts them as to be resent
        code, plan = sync(build_now, profiles_dir, settings, command="plan")
        for seg in plan["segments"]:
            assert seg["status"] == "planned" and len(seg["quarantined"]) == 2
            assert seg["plan"]["dirty"] == 2 and seg["plan"]["to_send"] == 2
        # When Pinpoint accepts them next run
        pinpoint.verdict = h.all_accepted
        code, retry = sync(build_now, profiles_dir, settings)
        # Then exactly the quarantined rows are resent, and the segment is clean
        assert code == 0, retry
        for seg in retry["segments"]:
            assert seg["status"] == "synced" and seg["plan"]["to_send"] == 2 and seg["quarantined"] == []
            assert pointer(s3, seg["segment"])["quarantine"] == []
        code, again = sync(build_now, profiles_dir, settings)
        assert code == 0 and {s["status"] for s in again["segments"]} == {"unchanged"}
