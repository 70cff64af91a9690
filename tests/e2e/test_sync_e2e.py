"""End to end: sample lake → dbt build on DuckDB → lakeseg sync → files destination."""

from __future__ import annotations

import csv
import json

import pytest

from sync.core.failpoints import KILLED_EXIT_CODE, STAGES

pytestmark = pytest.mark.e2e

SEGMENTS = [
    "seg_active_last_24h",
    "seg_email_clickers",
    "seg_email_opens_30d",
    "seg_lifecycle_stage",
    "seg_newsletter_split",
    "seg_unengaged_by_state",
]


def statuses(report: dict) -> dict[str, str]:
    return {s["segment"]: s["status"] for s in report["segments"]}


def segment(report: dict, name: str) -> dict:
    return next(s for s in report["segments"] if s["segment"] == name)


def test_first_sync_delivers_every_segment_as_csv(lakeseg, build_now):
    # Given a fresh build and no state
    # When lakeseg syncs
    code, report = lakeseg.json("sync", build_now)
    # Then every segment is delivered, and the files parse as CSV with the declared header
    assert code == 0, report
    assert statuses(report) == {s: "synced" for s in SEGMENTS}
    clickers = segment(report, "seg_email_clickers")
    files = sorted((lakeseg.exports / report["run_id"] / "seg_email_clickers").glob("part-*.csv"))
    assert [f.name for f in files] == clickers["files"]
    with files[0].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["Id", "User.UserAttributes.HasClicked"]
    assert len(rows) == clickers["plan"]["rows"] > 0
    assert {r["User.UserAttributes.HasClicked"] for r in rows} == {"Yes"}
    receipt = json.loads((files[0].parent / "_delivery.json").read_text())
    assert receipt["counts"]["entered"] == len(rows)


def test_second_sync_sends_nothing(lakeseg, build_now):
    assert lakeseg.json("sync", build_now)[0] == 0
    code, report = lakeseg.json("sync", build_now)
    assert code == 0
    assert statuses(report) == {s: "unchanged" for s in SEGMENTS}
    assert all(s["plan"]["to_send"] == 0 for s in report["segments"])
    assert len(lakeseg.deliveries()) == len(SEGMENTS)  # only the first run delivered


def test_change_sends_entered_changed_and_exit_rows(lakeseg, build_now, build_later):
    # Given a committed sync of the build at the lake's end
    assert lakeseg.json("sync", build_now)[0] == 0
    # When the build 12 hours earlier is synced (the guard would refuse the 24h segment's churn)
    code, report = lakeseg.json("sync", build_later, "--allow-mass-exit")
    assert code == 0, report
    opens = segment(report, "seg_email_opens_30d")["plan"]
    assert opens["entered"] > 0 and opens["changed"] > 0 and opens["exited"] > 0
    # Then the files hold exactly the entered + changed rows and one exit row (value 0) per exit
    folder = lakeseg.exports / report["run_id"] / "seg_email_opens_30d"
    with next(folder.glob("part-*.csv")).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == opens["entered"] + opens["changed"] + opens["exited"]
    assert sum(r["Metrics.EmailsOpened30d"] == "0" for r in rows) == opens["exited"]
    # And replaying everything delivered equals the later build's segment, with exits at their exit value
    applied = lakeseg.applied()
    import duckdb

    con = duckdb.connect(str(build_later.build_dir / "lakeseg.duckdb"), read_only=True)
    now = dict(
        con.execute("select endpoint_id, emails_opened_30d::varchar from main_segments.seg_email_opens_30d").fetchall()
    )
    for endpoint, values in applied.items():
        if "Metrics.EmailsOpened30d" in values:
            assert values["Metrics.EmailsOpened30d"] == now.get(endpoint, "0")


def test_mass_exit_is_refused_and_state_kept(lakeseg, build_now, build_later):
    assert lakeseg.json("sync", build_now)[0] == 0
    code, report = lakeseg.json("sync", build_later)
    assert code == 1
    refused = segment(report, "seg_active_last_24h")
    assert refused["status"] == "refused" and "would exit" in refused["reason"]
    assert f"{refused['plan']['exited']:,} of" in refused["reason"]
    # the refused segment was not delivered and its state not advanced: allowing it now sends the same change
    code, again = lakeseg.json("sync", build_later, "--select", "seg_active_last_24h", "--allow-mass-exit")
    assert code == 0 and segment(again, "seg_active_last_24h")["plan"] == refused["plan"]


def test_plan_writes_nothing(lakeseg, build_now):
    code, report = lakeseg.json("plan", build_now)
    assert code == 0
    assert statuses(report) == {s: "planned" for s in SEGMENTS}
    assert segment(report, "seg_email_clickers")["plan"]["to_send"] > 0
    assert not lakeseg.exports.exists() or not any(lakeseg.exports.iterdir())
    assert not lakeseg.state.exists() or not any(p.is_file() for p in lakeseg.state.rglob("*"))


@pytest.mark.parametrize("stage", STAGES)
def test_killed_run_then_rerun_delivers_the_same_as_one_clean_run(
    lakeseg, build_now, build_later, stage, tmp_path_factory
):
    # Given a committed first sync
    assert lakeseg.subprocess("sync", build_now).returncode == 0
    # When the next sync is killed at `stage`, then run again
    killed = lakeseg.subprocess("sync", build_later, "--allow-mass-exit", env={"LAKESEG_FAILPOINTS": stage})
    assert killed.returncode == KILLED_EXIT_CODE, killed.stderr
    rerun = lakeseg.subprocess("sync", build_later, "--allow-mass-exit")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # (the killed run's locks are taken over, loudly: its process is gone)
    assert "took over the lock left by a dead run" in rerun.stdout
    # Then what the platform ends up with equals one clean run of the same two syncs
    from tests.e2e.conftest import Lakeseg

    clean = Lakeseg(tmp_path_factory.mktemp(f"clean-{stage}"), lakeseg.profiles)
    assert clean.subprocess("sync", build_now).returncode == 0
    assert clean.subprocess("sync", build_later, "--allow-mass-exit").returncode == 0
    assert lakeseg.applied() == clean.applied()
    # and a further sync finds nothing left to send
    code, report = lakeseg.json("sync", build_later)
    assert code == 0 and all(s["status"] == "unchanged" for s in report["segments"])


def test_corrupt_snapshot_refuses_the_segment_not_resends(lakeseg, build_now):
    assert lakeseg.json("sync", build_now)[0] == 0
    for snap in lakeseg.state.rglob("*.parquet"):
        if "seg_email_clickers" in str(snap):
            snap.write_bytes(b"PAR1 this is not parquet")
    before = len(lakeseg.deliveries())
    code, report = lakeseg.json("sync", build_now, "--full-refresh")
    assert code == 1
    bad = segment(report, "seg_email_clickers")
    assert bad["status"] == "refused" and "seg_email_clickers" in bad["reason"]
    assert len(lakeseg.deliveries()) == before + len(SEGMENTS) - 1


def test_unwritable_state_fails_before_anything_is_delivered(lakeseg, build_now, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = lakeseg("sync", build_now, "--state", str(blocker / "state"))
    assert result.exit_code == 2
    assert "not writable" in result.output
    assert lakeseg.deliveries() == []


def test_held_lock_refuses_with_owner_and_age(lakeseg, build_now):
    from sync.state import open_state_store

    store = open_state_store(str(lakeseg.state))
    with store.lock("files", "seg_lifecycle_stage", {"run_id": "other-run", "host": "elsewhere", "pid": 2**22 + 1}):
        code, report = lakeseg.json("sync", build_now)
    assert code == 1
    held = segment(report, "seg_lifecycle_stage")
    assert held["status"] == "refused"
    assert "other-run" in held["reason"] and "elsewhere" in held["reason"] and "lakeseg unlock" in held["reason"]
    assert statuses(report)["seg_email_clickers"] == "synced"


def test_history_records_each_run(lakeseg, build_now):
    _, first = lakeseg.json("sync", build_now)
    _, second = lakeseg.json("sync", build_now)
    result = lakeseg("history", build_now, "--json")
    runs = json.loads(result.stdout)
    assert [r["run_id"] for r in runs[:2]] == [second["run_id"], first["run_id"]]
    assert runs[1]["status"] == "succeeded"
    clickers = next(s for s in runs[1]["segments"] if s["segment"] == "seg_email_clickers")
    assert clickers["files"] and clickers["plan"]["entered"] > 0 and clickers["duration_s"] >= 0
    text = lakeseg("history", build_now).output
    assert first["run_id"] in text


def selected(lakeseg, build, *args) -> list[str]:
    code, report = lakeseg.json("plan", build, *args)
    assert code == 0, report
    return [s["segment"] for s in report["segments"]]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--select", "seg_email_*", "--exclude", "seg_email_opens_30d"], ["seg_email_clickers"]),
        (["--select", "tag:segment"], SEGMENTS),
        # graph operator: everything downstream of a staging view, of which only segments are synced
        (["--select", "stg_due__email_click+"], ["seg_email_clickers", "seg_unengaged_by_state"]),
        (["--select", "path:models/segments", "--exclude", "tag:segment"], None),
    ],
    ids=["wildcard-and-exclude", "tag", "graph-operator", "nothing-left"],
)
def test_select_and_exclude_use_dbt_selection(lakeseg, build_now, args, expected):
    if expected is None:  # as dbt: a warning on stderr, nothing to do, exit 0, one JSON document on stdout
        result = lakeseg("plan", build_now, *args, "--json")
        assert result.exit_code == 0 and "Nothing to do" in result.stderr and "matches no segment" in result.stderr
        assert json.loads(result.stdout)["segments"] == []
    else:
        assert selected(lakeseg, build_now, *args) == expected


@pytest.mark.parametrize("command", ["plan", "sync"])
def test_select_that_matches_nothing_does_nothing_and_exits_0_as_dbt_does(lakeseg, build_now, command):
    result = lakeseg(command, build_now, "--select", "nothing_like_this")
    assert result.exit_code == 0 and "--select nothing_like_this matches no segment" in result.stderr
    assert "0 of 0 segment(s) ok" in result.stdout


def test_a_selector_dbt_cannot_resolve_is_a_usage_error(lakeseg, build_now):
    result = lakeseg("plan", build_now, "--select", "no_such_method:x")
    assert result.exit_code == 2 and "dbt could not resolve --select no_such_method:x" in result.output


def test_state_modified_selects_segments_changed_since_the_given_artifacts(lakeseg, build_now, tmp_path):
    # Given the artifacts of an earlier build in which seg_email_clickers had other SQL
    manifest = json.loads((build_now.target_path / "manifest.json").read_text())
    node = manifest["nodes"]["model.lakeseg.seg_email_clickers"]
    node["raw_code"] = node["raw_code"].replace("select", "select /* earlier */", 1)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    # When plan selects state:modified against them
    # Then dbt finds exactly that segment modified
    assert selected(lakeseg, build_now, "--select", "state:modified", "--dbt-state", str(earlier)) == [
        "seg_email_clickers"
    ]


def test_missing_artifacts_name_the_dbt_command(lakeseg, build_now, tmp_path):
    result = lakeseg("sync", build_now, "--target-path", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "dbt" in result.output
