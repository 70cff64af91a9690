"""The sync engine in process: plan, send, commit, resend -- without dbt."""

from __future__ import annotations

import pytest

from sync.output.terminal import render
from sync.state import base as state_base
from sync.state import open_state_store
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "plan": "Attributes.Plan", "city": "User.UserAttributes.City"}
OTHER = {"endpoint_id": "Id", "tier": "Attributes.Tier"}  # another segment owns other fields


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path)


def test_first_sync_sends_every_member_then_nothing_changes(h):
    # Given a segment of three members
    h.segment("seg_a", COLS, [("e1", "pro", "Paris"), ("e2", "basic", "Oslo"), ("e3", "pro", "Rome")])
    # When it syncs twice
    first = h.run()
    second = h.run()
    # Then the first run sends all three, with their values under the Pinpoint header
    seg = by_segment(first)["seg_a"]
    assert seg.status == "synced" and seg.plan["entered"] == 3
    assert h.delivered(first, "seg_a") == [
        {"Id": "e1", "Attributes.Plan": "pro", "User.UserAttributes.City": "Paris"},
        {"Id": "e2", "Attributes.Plan": "basic", "User.UserAttributes.City": "Oslo"},
        {"Id": "e3", "Attributes.Plan": "pro", "User.UserAttributes.City": "Rome"},
    ]
    # And the second sends nothing
    assert by_segment(second)["seg_a"].status == "unchanged"
    assert not (h.exports / second.run_id).exists()


def test_entered_changed_and_exited_members_are_sent_with_exit_values_in_header_order(h):
    # Given a segment whose exit mapping is written in another order than its columns
    h.segment(
        "seg_a",
        COLS,
        [("e1", "pro", "Paris"), ("e2", "basic", "Oslo"), ("e3", "pro", "Rome")],
        exit={"User.UserAttributes.City": "gone", "Attributes.Plan": "none"},
    )
    h.run()
    # When e1 changes, e2 leaves and e4 enters
    h.rebuild("seg_a", [("e1", "basic", "Paris"), ("e3", "pro", "Rome"), ("e4", "pro", "Lima")])
    report = h.run(max_exit_share=0.5)
    # Then exactly the three are sent, the leaver with the exit values under their own columns
    seg = by_segment(report)["seg_a"]
    assert (seg.plan["entered"], seg.plan["changed"], seg.plan["exited"], seg.plan["unchanged"]) == (1, 1, 1, 1)
    rows = {r["Id"]: r for r in h.delivered(report, "seg_a")}
    assert rows == {
        "e1": {"Id": "e1", "Attributes.Plan": "basic", "User.UserAttributes.City": "Paris"},
        "e2": {"Id": "e2", "Attributes.Plan": "none", "User.UserAttributes.City": "gone"},
        "e4": {"Id": "e4", "Attributes.Plan": "pro", "User.UserAttributes.City": "Lima"},
    }


def test_a_keep_segment_sends_no_rows_for_leavers(h):
    h.segment("seg_a", COLS, [("e1", "pro", "Paris"), ("e2", "basic", "Oslo"), ("e3", "pro", "Rome")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro", "Paris"), ("e3", "pro", "Rome")])
    report = h.run(max_exit_share=0.5)
    seg = by_segment(report)["seg_a"]
    assert seg.plan["exited"] == 1 and seg.status == "unchanged"
    # And the leaver is gone from the snapshot: coming back is an entry
    h.rebuild("seg_a", [("e1", "pro", "Paris"), ("e2", "basic", "Oslo"), ("e3", "pro", "Rome")])
    back = h.run()
    assert by_segment(back)["seg_a"].plan["entered"] == 1
    assert h.delivered(back, "seg_a") == [{"Id": "e2", "Attributes.Plan": "basic", "User.UserAttributes.City": "Oslo"}]


def test_a_change_in_any_one_attribute_is_sent(h):
    h.segment("seg_a", COLS, [("e1", "pro", "Paris"), ("e2", "basic", "Oslo")])
    h.run()
    # When only the last attribute of e2 changes
    h.rebuild("seg_a", [("e1", "pro", "Paris"), ("e2", "basic", "Bergen")])
    report = h.run()
    assert h.delivered(report, "seg_a") == [
        {"Id": "e2", "Attributes.Plan": "basic", "User.UserAttributes.City": "Bergen"}
    ]
    # And a value moving between two attributes is a change too
    h.rebuild("seg_a", [("e1", "Paris", "pro"), ("e2", "basic", "Bergen")])
    assert [r["Id"] for r in h.delivered(h.run(), "seg_a")] == ["e1"]


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full-refresh"])
def test_the_mass_exit_guard_refuses_and_sends_nothing_until_allowed(h, full_refresh):
    # Given 10 members of which 4 leave (40%, above the default 30%)
    members = [(f"e{i}", "pro", "Paris") for i in range(10)]
    h.segment("seg_a", COLS, members, exit={"Attributes.Plan": "none", "User.UserAttributes.City": "gone"})
    h.run()
    h.rebuild("seg_a", members[:6])
    # When it syncs (with or without --full-refresh)
    refused = by_segment(h.run(full_refresh=full_refresh))["seg_a"]
    # Then it is refused naming the guard, and nothing was sent or committed
    assert refused.status == "refused" and "guard.max_exit_share" in refused.reason and "4 of 10" in refused.reason
    assert len([p for p in h.exports.iterdir() if p.name != ".incoming"]) == 1
    # And allowed, the 4 exit rows go out
    allowed = h.run(allow_mass_exit=True, full_refresh=full_refresh)
    sent = h.delivered(allowed, "seg_a")
    assert sorted(r["Id"] for r in sent if r["Attributes.Plan"] == "none") == ["e6", "e7", "e8", "e9"]


TEN = [(f"e{i}", "pro", "Paris") for i in range(10)]


@pytest.mark.parametrize(
    "after,reason",
    [
        pytest.param(
            TEN + [(f"n{i}", "pro", "Oslo") for i in range(10)],
            "seg_a would grow from 10 to 20 members (+100.0%), beyond the 50% limit (guard.max_size_change_share)",
            id="grows-to-double",
        ),
        pytest.param(
            TEN[:4],
            "seg_a would shrink from 10 to 4 members (-60.0%), beyond the 50% limit (guard.max_size_change_share)",
            id="shrinks-to-40pct",
        ),
        pytest.param(
            TEN[:4] + [(f"n{i}", "pro", "Oslo") for i in range(6)],
            "seg_a: 6 members would enter, 60.0% of its previous 10 (size 10 -> 10), beyond the 50% limit "
            "(guard.max_entered_share)",
            id="same-size-six-replaced",
        ),
    ],
)
@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full-refresh"])
def test_the_size_change_guard_refuses_a_jump_and_sends_nothing_until_allowed(h, after, reason, full_refresh):
    # Given a committed segment of 10 members, and exits allowed up to 100% (the mass-exit guard stays quiet)
    h.segment("seg_a", COLS, TEN, exit={"Attributes.Plan": "none", "User.UserAttributes.City": "gone"})
    first = h.run()
    # When its size or entries jump beyond the default 50%
    h.rebuild("seg_a", after)
    refused = by_segment(h.run(max_exit_share=1.0, full_refresh=full_refresh))["seg_a"]
    # Then it is refused with the sizes, the share, the setting and the command that allows it
    assert refused.status == "refused", refused.reason
    assert (
        reason in refused.reason
        and "if that is intended, send it with `lakeseg sync --select seg_a --allow-size-change`" in refused.reason
    )
    # And nothing was sent, recorded in doubt or committed
    assert [p.name for p in h.exports.iterdir() if p.name != ".incoming"] == [first.run_id]
    assert open_state_store(str(h.state_dir)).load_in_doubt("files", "seg_a", h.root / "check") is None
    assert h.pointer("seg_a")["run_id"] == first.run_id and h.pointer("seg_a")["rows"] == 10
    # And allowed, the change goes out and is committed
    allowed = h.run(max_exit_share=1.0, full_refresh=full_refresh, allow_size_change=True)
    assert by_segment(allowed)["seg_a"].status == "synced"
    assert h.pointer("seg_a")["run_id"] == allowed.run_id and h.pointer("seg_a")["rows"] == len(after)


def test_the_size_change_guard_lets_a_first_sync_through(h):
    # Given a new segment of 10 members (nothing committed)
    h.segment("seg_a", COLS, TEN)
    # When it syncs with the defaults, then it is sent whole
    assert by_segment(h.run())["seg_a"].status == "synced"


def test_an_emptied_segment_is_refused_even_under_a_full_exit_share(h):
    h.segment(
        "seg_a", COLS, [("e1", "pro", "Paris")], exit={"Attributes.Plan": "none", "User.UserAttributes.City": "x"}
    )
    h.run()
    h.rebuild("seg_a", [])
    seg = by_segment(h.run(max_exit_share=1.0))["seg_a"]
    assert seg.status == "refused" and "would empty the segment" in seg.reason


@pytest.mark.parametrize(
    "status", ["fail", "error", "warn", "skipped", None], ids=["fail", "error", "warn", "skipped", "did-not-run"]
)
def test_a_segment_whose_test_did_not_pass_is_skipped_and_nothing_is_sent(h, status):
    # Given a segment whose not_null test on the Id has that status in run_results
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")], test_status={("not_null", "endpoint_id"): status})
    h.segment("seg_b", OTHER, [("e9", "gold")])
    report = h.run()
    seg = by_segment(report)["seg_a"]
    # Then only that segment is skipped, naming the test
    assert seg.status == "skipped" and "not_null_seg_a_endpoint_id" in seg.reason
    assert by_segment(report)["seg_b"].status == "synced"
    assert not (h.exports / report.run_id / "seg_a").exists()
    assert not report.ok


@pytest.mark.parametrize("status", ["error", "skipped"])
def test_a_model_that_did_not_build_is_skipped(h, status):
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")], status=status)
    seg = by_segment(h.run())["seg_a"]
    assert seg.status == "skipped" and f"model {status}" in seg.reason


def test_a_plan_writes_and_commits_nothing(h):
    h.segment("seg_a", COLS, [("e1", "pro", "Paris"), ("e2", "basic", "Oslo")])
    planned = h.run(dry_run=True, command="plan")
    seg = by_segment(planned)["seg_a"]
    assert seg.status == "planned" and seg.plan["entered"] == 2
    assert not h.exports.exists() or not any(h.exports.iterdir())
    assert not (h.state_dir / "snapshots").exists() and not (h.state_dir / "history").exists()
    # And the sync after it still sends everything
    assert by_segment(h.run())["seg_a"].plan["entered"] == 2


def test_only_the_segments_dbt_selects_run(h):
    # Given two segments and a resolver standing in for `dbt ls` (it picks seg_b, and a non-segment model)
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    h.segment("seg_b", OTHER, [("e2", "gold")])
    asked = []

    def resolver(select, exclude):
        asked.append((select, exclude))
        return {h.models["seg_b"].unique_id, "model.lakeseg_engine.stg_x"}

    report = h.run(select=("tag:x",), exclude=("seg_a",), selector=resolver)
    # Then dbt was asked with both, and only seg_b ran
    assert asked == [(("tag:x",), ("seg_a",))]
    assert [s.segment for s in report.segments] == ["seg_b"]
    # And a selection that needs dbt without a resolver is a configuration error
    from sync.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--select"):
        h.run(select=("seg_b",))


def test_many_small_files_carry_every_row_once(h):
    members = [(f"e{i:04d}", 'a, "quoted" value', "Zürich") for i in range(400)]
    h.segment("seg_a", COLS, members)
    report = h.run(max_file_bytes=4096)
    seg = by_segment(report)["seg_a"]
    assert len(seg.files) > 3
    sent = h.delivered(report, "seg_a")
    assert sorted(r["Id"] for r in sent) == [m[0] for m in members]
    assert {r["Attributes.Plan"] for r in sent} == {'a, "quoted" value'}
    assert all(p.stat().st_size <= 4096 for p in (h.exports / report.run_id / "seg_a").glob("part-*.csv"))


@pytest.mark.parametrize("limit", ["big", "512", "1GB; drop table x", "1KB"])
def test_a_bad_memory_limit_is_refused_before_anything_is_written(h, limit):
    from sync.core.errors import ConfigError

    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    # When a run is given a memory limit that is no size DuckDB can work in
    with pytest.raises(ConfigError, match="memory_limit"):
        h.run(memory_limit=limit)
    # Then it wrote no history and left no work folder: nothing was started
    assert not (h.state_dir / "history").exists() or not any((h.state_dir / "history").rglob("*.json"))
    assert not h.work.exists() or not any(h.work.iterdir())


@pytest.mark.parametrize("limit", ["1gb", "512mib", "1 GB", "2.5GiB"])
def test_a_memory_limit_duckdb_reads_is_accepted_in_any_case(h, limit):
    # Given a size in the units DuckDB reads, case-insensitively (as the settings file accepts it)
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    # Then the run takes it
    assert by_segment(h.run(memory_limit=limit))["seg_a"].status == "synced"


def test_a_memory_limit_with_a_space_before_its_unit_is_accepted(h):
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    assert by_segment(h.run(memory_limit="1 GB"))["seg_a"].status == "synced"


def test_a_new_digest_key_resends_every_member_and_says_why(h):
    from sync.run.digest_key import DigestKey

    h.segment("seg_a", COLS, [("e1", "pro", "Paris"), ("e2", "basic", "Oslo")])
    h.run()
    report = h.run(digest_key=DigestKey(secret="another-key-0123456789abcdef0123", source="test"))
    seg = by_segment(report)["seg_a"]
    assert seg.plan["changed"] == 2 and "digest key" in seg.plan["full_refresh_reason"]
    assert len(h.delivered(report, "seg_a")) == 2


def test_a_new_exported_column_resends_every_member(h):
    h.segment("seg_a", {"endpoint_id": "Id", "plan": "Attributes.Plan"}, [("e1", "pro"), ("e2", "basic")])
    h.run()
    h.rebuild("seg_a", [("e1", "pro", "Paris"), ("e2", "basic", "Oslo")], columns=COLS)
    report = h.run()
    assert sorted(r["User.UserAttributes.City"] for r in h.delivered(report, "seg_a")) == ["Oslo", "Paris"]


def test_the_run_is_recorded_in_history_with_each_segments_outcome(h):
    from sync.state import open_state_store

    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    h.segment("seg_b", OTHER, [("e2", "gold")], status="error")
    report = h.run()
    run = open_state_store(str(h.state_dir)).get_run(report.run_id)
    assert run["status"] == "failed"
    assert {s["segment"]: s["status"] for s in run["segments"]} == {"seg_a": "synced", "seg_b": "skipped"}


def test_a_sync_after_a_partial_build_syncs_what_it_built_and_leaves_the_rest_alone(h):
    # Given a `dbt build --select seg_a`: seg_b exists but the latest invocation did not build it
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    h.segment("seg_b", {"endpoint_id": "Id", "tier": "Attributes.Tier"}, [("e1", "gold")], status=None)
    # When a sync runs with no selection
    report = h.run()
    # Then seg_a is synced, seg_b is left alone (named, not failed), and the run is ok
    assert [s.segment for s in report.segments] == ["seg_a"] and report.segments[0].status == "synced"
    assert report.left_alone == ["seg_b"] and report.ok
    assert "Left alone (not built in the latest dbt invocation): seg_b" in render(report)


def test_a_segment_selected_by_name_but_not_built_is_still_an_error(h):
    # Given seg_b not built in the latest invocation, and a sync that selects it
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    h.segment("seg_b", {"endpoint_id": "Id", "tier": "Attributes.Tier"}, [("e1", "gold")], status=None)
    report = h.run(select=("seg_b",), selector=lambda select, exclude: {"model.lakeseg_engine.seg_b"})
    # Then it is skipped, saying why, and the run fails
    seg = by_segment(report)["seg_b"]
    assert seg.status == "skipped" and "not built in the latest dbt invocation" in seg.reason
    assert not report.ok and report.left_alone == []


def test_a_run_reports_the_time_of_each_phase(h):
    # Given a segment with a member to send
    h.segment("seg_a", COLS, [("e1", "pro", "Paris")])
    # When it is synced
    report = h.run()
    # Then the report carries seconds per phase, in history and in the table's footer
    assert set(report.phases) == {"select", "read", "diff", "files", "delivery", "commit"}
    assert all(isinstance(v, float) and v >= 0 for v in report.phases.values())
    assert open_state_store(str(h.state_dir)).get_run(report.run_id)["phases"] == report.phases
    assert "Time: select " in render(report) and " · delivery " in render(report)
    # And a run with nothing to send has no files, delivery or commit phase
    assert set(h.run().phases) == {"select", "read", "diff"}


def test_a_phase_adds_up_the_seconds_spent_in_it_to_the_millisecond(monkeypatch):
    import threading
    import types

    from sync.run import engine

    # Given a run's report, and a clock that reads 12.5 s, then 13.1234 s
    clock = iter([12.5, 13.1234])
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    run = types.SimpleNamespace(report=types.SimpleNamespace(phases={}), _history_lock=threading.Lock())
    # When the read took from 10 s to 12.5 s, and again from 12.5 s on
    now = engine.SyncRun._spent(run, "read", 10.0)
    engine.SyncRun._spent(run, "read", now)
    # Then the phase holds their sum, rounded to the millisecond
    assert now == 12.5 and run.report.phases == {"read": 3.123}


def test_a_change_is_committed_as_a_delta_beside_the_base_not_a_whole_new_base(h, monkeypatch):
    # Given a segment of 20 members, synced
    rows = [(f"e{i:02d}", "pro", "Paris") for i in range(20)]
    h.segment("seg_a", COLS, rows)
    h.run()
    base = h.pointer("seg_a")
    # When one member changes, one leaves and one enters
    changed = [(i, "basic" if i == "e00" else p, c) for i, p, c in rows[:-1]] + [("e99", "pro", "Oslo")]
    h.rebuild("seg_a", changed)
    # (the run hands the store the change it classified: the store never joins the two memberships to find it)
    monkeypatch.setattr(state_base, "_write_delta", lambda *_a: pytest.fail("the store joined the memberships"))
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then the run committed those three rows as a delta next to the same base, and the pointer counts 20
    pointer = h.pointer("seg_a")
    assert pointer["format"] == 2 and pointer["base"]["file"] == base["file"]
    assert [d["rows"] for d in pointer["deltas"]] == [3] and pointer["rows"] == 20
