"""The diff in Athena inside the runner: the same rows sent as the DuckDB diff, run after run, and a clean lake.

Every run goes through ``SyncRun`` with ``diff.engine: athena``: Athena (moto, with
DuckDB executing its SQL) classifies every member against the snapshot the state
store keeps in S3, the runner downloads only the rows to send, and the commit
writes a delta (or Athena a new base). The same builds run through the DuckDB
diff (``EngineHarness``, local state) side by side.
"""

from __future__ import annotations

import json

import duckdb
import pytest
from moto import mock_aws

from sync.core import failpoints
from sync.readers.athena import AthenaReader
from sync.state.deltas import Compaction
from tests.engine.harness import EngineHarness, Scripted, by_segment
from tests.pushdown.lake_harness import BUCKET, DATABASE, STAGING, LakeHarness

COLS = {"endpoint_id": "Id", "tier": "User.UserAttributes.Tier", "city": "Location.City"}
EXIT = {"User.UserAttributes.Tier": "former", "Location.City": ""}


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield


@pytest.fixture
def lake(aws, tmp_path) -> LakeHarness:
    return LakeHarness(tmp_path / "lake")


@pytest.fixture
def twin(tmp_path) -> EngineHarness:
    return EngineHarness(tmp_path / "duck")


def members(n: int, tier: str = "gold", start: int = 0) -> list[tuple]:
    return [(f"e{i:03d}", tier if i % 3 else "silver", f"city-{i % 7}") for i in range(start, start + n)]


def _rows(report_rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in report_rows)


BUILDS = {
    "values-change": [members(30), [(i, "platinum" if n < 5 else t, c) for n, (i, t, c) in enumerate(members(30))]],
    "members-leave": [members(30), members(24)],
    "members-enter": [members(30), members(36)],
    "mixed-three-runs": [members(30), members(25, start=3), [(i, "bronze", c) for i, _t, c in members(20, start=8)]],
    "nothing-changes": [members(30), members(30)],
    "everyone-leaves": [members(10), []],
}


def both(lake, twin, rows=None, rejected=None, **options):
    """One run on each engine, after rebuilding seg_a with ``rows`` (if given); ``rejected``: the rows the
    platform refuses. (The diff in Athena's report, the DuckDB diff's.)"""
    for h in (lake, twin) if rows is not None else ():
        h.rebuild("seg_a", rows)
    dest = (lambda h: Scripted(h.exports, rejected=rejected)) if rejected else (lambda h: None)
    return lake.lake_run(destination=dest(lake), **options), twin.run(destination=dest(twin), **options)


def alike(lake, twin, mine, theirs) -> dict:
    """The two runs planned and sent alike; the plan."""
    plan = by_segment(mine)["seg_a"].plan
    assert plan == by_segment(theirs)["seg_a"].plan
    assert _rows(lake.delivered(mine, "seg_a")) == _rows(twin.delivered(theirs, "seg_a"))
    return plan


@pytest.mark.parametrize("exit_mode", ["keep", "exit-values"])
@pytest.mark.parametrize("builds", list(BUILDS.values()), ids=list(BUILDS))
def test_each_run_in_athena_sends_what_the_duckdb_diff_sends(lake, twin, builds, exit_mode):
    # Given a segment rebuilt run after run, synced by the diff in Athena and by the DuckDB diff side by side
    exit_ = "keep" if exit_mode == "keep" else EXIT
    for n, rows in enumerate(builds):
        for h in (lake, twin):
            (h.segment if n == 0 else h.rebuild)(
                "seg_a", *((COLS, rows) if n == 0 else (rows,)), **({"exit": exit_} if n == 0 else {})
            )
        # When both sync
        free = {"allow_mass_exit": True, "allow_size_change": True}
        got, want = lake.lake_run(**free), twin.run(**free)
        mine, theirs = by_segment(got)["seg_a"], by_segment(want)["seg_a"]
        # Then they end alike, count alike and send the very same rows
        assert mine.status == theirs.status and mine.plan, (n, mine.reason, theirs.reason)
        keys = ("rows", "entered", "changed", "exited", "unchanged", "exit_rows", "to_send", "full_refresh")
        keys += ("first_sync", "full_refresh_reason", "previous_rows")
        assert {k: mine.plan[k] for k in keys} == {k: theirs.plan[k] for k in keys}, n
        assert _rows(lake.delivered(got, "seg_a")) == _rows(twin.delivered(want, "seg_a")), n
        assert "diffed in Athena (diff.engine): only the rows to send left the lake" in mine.notes
    # And the committed snapshot counts the members, and nothing of the run stays in Glue or in scratch
    assert lake.lake_pointer("seg_a")["rows"] == len(builds[-1])
    assert lake.diff_tables() == []
    assert lake.keys_under("lakeseg/state/lake-scratch/") == []


def test_after_the_first_run_only_deltas_are_uploaded_until_athena_compacts_them(lake):
    # Given a segment synced in Athena, with a compaction after two deltas
    lake.state.compaction = Compaction(max_share=0.9, max_deltas=2)
    lake.segment("seg_a", COLS, members(40))
    lake.lake_run()
    first = lake.lake_pointer("seg_a")
    assert "format" not in first  # a base the runner wrote: it held every member on the first (full) send
    # When two runs change a few members each
    for n in range(2):
        lake.rebuild("seg_a", [(i, f"t{n}" if k < 3 else t, c) for k, (i, t, c) in enumerate(members(40))])
        assert by_segment(lake.lake_run())["seg_a"].status == "synced"
    # Then each committed a delta of its change beside the base
    second = lake.lake_pointer("seg_a")
    assert second["format"] == 2 and [d["rows"] for d in second["deltas"]] == [3, 3]
    # When one more run would make a third delta
    lake.rebuild("seg_a", members(38))
    rep = by_segment(lake.lake_run(allow_mass_exit=True))["seg_a"]
    # Then Athena wrote a new base in a folder of its own, named by ETag and size, and the old files are gone
    third = lake.lake_pointer("seg_a")
    assert rep.status == "synced" and third["format"] == 3 and third["deltas"] == []
    assert third["lake_base"]["rows"] == 38 and third["rows"] == 38
    parts = third["lake_base"]["parts"]
    assert parts and all(p["etag"] and p["size"] > 0 for p in parts)
    folder = "lakeseg/state/snapshots/files/seg_a/"
    assert sorted(k for k in lake.keys_under(folder) if k.endswith(".parquet") or "/lake-" in k) == sorted(
        p["file"].replace("snapshots/", "lakeseg/state/snapshots/", 1) for p in parts
    )
    # And the next runs keep sending exactly the change (here: one member changes)
    lake.rebuild("seg_a", [(i, "zinc" if i == "e005" else t, c) for i, t, c in members(38)])
    ran_before = len(lake.athena.executed)
    got = lake.lake_run()
    assert [r["Id"] for r in lake.delivered(got, "seg_a")] == ["e005"]
    assert lake.lake_pointer("seg_a")["format"] == 3 and len(lake.lake_pointer("seg_a")["deltas"]) == 1
    # And a second compaction reads the base Athena wrote, plus the deltas since, into a new base
    lake.rebuild("seg_a", [(i, "zinc" if i in ("e005", "e006") else t, c) for i, t, c in members(36)])
    lake.lake_run(allow_mass_exit=True)
    lake.rebuild("seg_a", [(i, "zinc" if i in ("e005", "e006", "e007") else t, c) for i, t, c in members(36)])
    lake.lake_run()
    fourth = lake.lake_pointer("seg_a")
    assert fourth["format"] == 3 and fourth["deltas"] == [] and fourth["lake_base"]["rows"] == 36
    assert fourth["lake_base"]["folder"] != third["lake_base"]["folder"]
    lake.rebuild("seg_a", [(i, "zinc" if i in ("e005", "e006", "e007", "e008") else t, c) for i, t, c in members(36)])
    assert [r["Id"] for r in lake.delivered(lake.lake_run(), "seg_a")] == ["e008"]
    # And every statement since read a base Athena wrote as a table over its folder -- diffs and the compaction
    # alike: none lists its files, so no statement grows with a base (Athena caps a query's text at 262,144)
    ran = "\n".join(lake.athena.executed[ran_before:])
    bases = [p["file"].rsplit("/", 1)[-1] for p in [*parts, *fourth["lake_base"]["parts"]]]
    assert ran and bases and not [b for b in bases if b in ran]
    # And every statement ran in the segment's own database (the runner's policy grants no other)
    assert set(lake.athena.databases) == {DATABASE}


def test_moving_between_the_engines_sends_every_member_once_each_way(lake):
    # Given a segment synced on the runner (DuckDB) on the Athena target
    lake.segment("seg_a", COLS, members(20))
    lake.lake_run(engine="duckdb")
    # When diff.engine becomes athena
    rep = by_segment(lake.lake_run())["seg_a"]
    # Then every member is sent once, saying why, and then nothing
    assert rep.plan["full_refresh"] and rep.plan["to_send"] == 20
    assert "moved between the runner (DuckDB) and Athena" in rep.plan["full_refresh_reason"]
    assert by_segment(lake.lake_run())["seg_a"].status == "unchanged"
    # When it moves back to the runner after Athena compacted (a base Athena wrote)
    lake.state.compaction = Compaction(max_share=0.01, max_deltas=0)
    lake.rebuild("seg_a", members(21))
    lake.lake_run()
    assert lake.lake_pointer("seg_a")["format"] == 3
    back = by_segment(lake.lake_run(engine="duckdb"))["seg_a"]
    # Then the runner reads that base (by ETag), sends every member once, and the next run nothing
    assert back.status == "synced" and back.plan["to_send"] == 21, back.reason
    assert by_segment(lake.lake_run(engine="duckdb"))["seg_a"].status == "unchanged"


@pytest.mark.parametrize(
    ("rows", "rule"),
    [
        pytest.param([("e1", "gold", "x"), ("e1", "silver", "y")], "rule: unique", id="a-repeated-id"),
        pytest.param(
            [("e1", "gold", "x"), ("e1", "silver", "y"), ("e1", "tin", "z"), ("e2", "gold", "x"), ("e3", "a", "b")],
            "-- 2 of 5 rows repeat an Id (3 distinct)",
            id="an-id-three-times",
        ),
        pytest.param([("e1", "gold", "x"), (None, "silver", "y")], "rule: not_null", id="a-null-id"),
        pytest.param([("e1", "gold", "x"), ("e2", "sil\nver", "y")], "pinpoint_no_control_chars", id="a-newline"),
    ],
)
def test_a_broken_segment_is_refused_in_athena_and_nothing_is_sent(lake, twin, rows, rule):
    # Given a segment synced in Athena (and on the runner), then rebuilt with a broken row (after its tests passed)
    for h in (lake, twin):
        h.segment("seg_a", COLS, [("e1", "gold", "x"), ("e2", "silver", "y")])
    lake.lake_run()
    twin.run()
    before = lake.lake_pointer("seg_a")
    for h in (lake, twin):
        h.rebuild("seg_a", rows)
    # When it syncs
    rep = by_segment(lake.lake_run())["seg_a"]
    # Then it is refused naming the rule, in the very words the DuckDB diff uses, and the snapshot did not move
    assert rep.status == "refused" and rule in rep.reason, rep.reason
    assert rep.reason == by_segment(twin.run())["seg_a"].reason
    assert lake.lake_pointer("seg_a") == before
    assert lake.diff_tables() == []


class Killed(BaseException):
    """Stands in for the process exit a failpoint makes (os._exit skips every finally: so does this)."""


KILL_STAGES = [s for s in failpoints.STAGES if s != "during-delivery"] + list(failpoints.COMMIT_STAGES)


def _snapshot_files(lake: LakeHarness) -> list[str]:
    folder = "lakeseg/state/snapshots/files/seg_a/"
    return [k[len(folder) :] for k in lake.keys_under(folder) if not k.endswith(".json")]


@pytest.mark.parametrize("compacting", [False, True], ids=["delta", "compaction"])
@pytest.mark.parametrize("stage", KILL_STAGES)
def test_a_run_in_athena_killed_at_each_stage_converges_exactly(lake, monkeypatch, stage, compacting):
    # Given a segment synced in Athena (leavers get exit values), then a change (3 changed, 2 left, 2 entered)
    lake.segment("seg_a", COLS, members(30), exit=EXIT)
    lake.lake_run()
    if compacting:  # the commit has Athena write a new base
        lake.state.compaction = Compaction(max_share=0.01, max_deltas=0)
    changed = [(i, "new" if n < 3 else t, c) for n, (i, t, c) in enumerate(members(28))] + members(2, start=90)
    lake.rebuild("seg_a", changed)
    change = {"e000", "e001", "e002", "e028", "e029", "e090", "e091"}
    before = lake.lake_pointer("seg_a")

    def exit_now(code):
        raise Killed(code)

    # When a run is killed at one stage
    with monkeypatch.context() as m:
        m.setattr(failpoints.os, "_exit", exit_now)
        m.setenv("LAKESEG_FAILPOINTS", stage)
        with pytest.raises(Killed):
            lake.lake_run()
    moved = lake.lake_pointer("seg_a") != before
    assert moved == (stage == "commit-after-pointer"), stage
    # and the next run starts (the lock is a dead run's in this same process: taken over)
    monkeypatch.setattr("sync.run.engine._owner_is_dead_here", lambda owner: True)
    after = lake.lake_run()
    rep = by_segment(after)["seg_a"]
    # Then it sends exactly the change -- or nothing, when the killed run had committed it
    sent = {r["Id"] for r in lake.delivered(after, "seg_a")}
    if moved:
        assert rep.status == "unchanged" and sent == set(), rep.reason
    else:
        assert rep.status == "synced" and sent == change, (rep.reason, sent)
    # And then nothing is left to send, and the killed run's tables and scratch files are gone
    assert by_segment(lake.lake_run())["seg_a"].status == "unchanged"
    assert lake.diff_tables() == []
    assert lake.keys_under("lakeseg/state/lake-scratch/") == []
    # And after the next commit the snapshot folder holds only what its pointer names
    lake.rebuild("seg_a", [(i, "later" if i == "e005" else t, c) for i, t, c in changed])
    later = lake.lake_run()
    assert [r["Id"] for r in lake.delivered(later, "seg_a")] == ["e005"]
    pointer = lake.lake_pointer("seg_a")
    named = {p["file"] for p in pointer.get("lake_base", {}).get("parts", [])} | {
        d["file"] for d in pointer.get("deltas", [])
    }
    named |= {pointer["file"]} if "file" in pointer else set()
    named |= {pointer["base"]["file"]} if "base" in pointer else set()
    assert sorted(_snapshot_files(lake)) == sorted(f.removeprefix("snapshots/files/seg_a/") for f in named)


@pytest.mark.parametrize("verdict", ["rejected", "unconfirmed"])
def test_rows_the_platform_refused_or_never_confirmed_are_sent_again_by_the_diff_in_athena(lake, twin, verdict):
    # Given a segment synced in Athena and on DuckDB, then a change delivered to a platform that rejects one
    # row (quarantined) or confirms nothing (in doubt)
    for h in (lake, twin):
        h.segment("seg_a", COLS, members(12), exit=EXIT)
    lake.lake_run()
    twin.run()
    rows = [(i, "moved" if n < 4 else t, c) for n, (i, t, c) in enumerate(members(11))] + members(1, start=50)
    for h in (lake, twin):
        h.rebuild("seg_a", rows)
    scripted = {"rejected": {"rejected": {"e001": "value refused"}}, "unconfirmed": {"verdict": "unconfirmed"}}
    got = lake.lake_run(destination=Scripted(lake.exports, **scripted[verdict]))
    want = twin.run(destination=Scripted(twin.exports, **scripted[verdict]))
    assert by_segment(got)["seg_a"].status == by_segment(want)["seg_a"].status
    # When the next runs deliver normally
    for _ in range(2):
        mine, theirs = lake.lake_run(), twin.run()
        # Then each sends what the DuckDB diff sends: first the refused or unconfirmed rows again, then nothing
        assert _rows(lake.delivered(mine, "seg_a")) == _rows(twin.delivered(theirs, "seg_a"))
        assert by_segment(mine)["seg_a"].plan == by_segment(theirs)["seg_a"].plan
    assert by_segment(mine)["seg_a"].status == "unchanged"


def test_the_state_store_holds_no_attribute_value_after_runs_in_athena(lake, tmp_path):
    # Given a segment with a distinctive value, synced in Athena across a change, a refusal and a compaction
    lake.state.compaction = Compaction(max_share=0.01, max_deltas=1)
    planted = "Zebulon-Quux"
    lake.segment("seg_a", COLS, [(i, planted, c) for i, _t, c in members(10)], exit=EXIT)
    lake.lake_run()
    lake.rebuild("seg_a", [(i, planted + "!" if i == "e003" else planted, c) for i, _t, c in members(12)])
    lake.lake_run(destination=Scripted(lake.exports, rejected={"e011": f"bad value {planted}"}))
    lake.lake_run(destination=Scripted(lake.exports, verdict="unconfirmed"))
    # When every object under the state prefix is read
    seen_columns = set()
    for key in lake.keys_under("lakeseg/state/"):
        body = lake.s3.get_object(Bucket="lake-bucket", Key=key)["Body"].read()
        # Then no byte sequence of the value is there
        assert planted.encode() not in body, key
        if key.endswith(".parquet") or "/lake-" in key:
            local = tmp_path / "obj.parquet"
            local.write_bytes(body)
            with duckdb.connect() as con:
                seen_columns |= {r[0].lower() for r in con.execute(f"describe select * from '{local}'").fetchall()}
    # And the only columns stored are Ids, keys, digests, tombstones and the digest's key
    assert seen_columns <= {"id", "k1", "k2", "digest", "deleted", "key"}, seen_columns


def test_moving_into_athena_reads_the_runners_base_and_deltas_by_id(lake):
    # Given a segment synced on the runner whose snapshot is a base plus deltas: e050 entered by a delta,
    # e019 left by a tombstone
    lake.segment("seg_a", COLS, members(20), exit=EXIT)
    lake.lake_run(engine="duckdb")
    lake.rebuild("seg_a", members(20) + members(1, start=50))
    lake.lake_run(engine="duckdb")
    lake.rebuild("seg_a", members(19) + members(1, start=50))
    lake.lake_run(engine="duckdb")
    assert len(lake.lake_pointer("seg_a")["deltas"]) == 2
    # When the diff moves into Athena as e050 leaves
    lake.rebuild("seg_a", members(19))
    got = lake.lake_run()
    rep = by_segment(got)["seg_a"]
    # Then every member is sent once and only e050 gets an exit row: the membership was read base and deltas
    assert rep.status == "synced", rep.reason
    assert (rep.plan["rows"], rep.plan["previous_rows"], rep.plan["exited"]) == (19, 20, 1)
    exits = [r["Id"] for r in lake.delivered(got, "seg_a") if r["User.UserAttributes.Tier"] == "former"]
    assert exits == ["e050"] and len(lake.delivered(got, "seg_a")) == 20
    assert by_segment(lake.lake_run())["seg_a"].status == "unchanged"


def test_a_segment_emptied_and_compacted_in_athena_fills_again(lake):
    # Given a segment in Athena whose members all leave, with a commit that compacts (a base of no rows)
    lake.state.compaction = Compaction(max_share=0.01, max_deltas=0)
    lake.segment("seg_a", COLS, members(6), exit=EXIT)
    lake.lake_run()
    lake.rebuild("seg_a", [])
    assert by_segment(lake.lake_run(allow_mass_exit=True, allow_size_change=True))["seg_a"].status == "synced"
    emptied = lake.lake_pointer("seg_a")
    assert emptied["format"] == 3 and emptied["rows"] == 0 and emptied["lake_base"]["parts"] == []
    # When members enter again, in Athena and then back on the runner
    lake.rebuild("seg_a", members(4))
    got = lake.lake_run(allow_size_change=True)
    # Then they are sent and committed, and the next runs send nothing on either engine
    assert sorted(r["Id"] for r in lake.delivered(got, "seg_a")) == ["e000", "e001", "e002", "e003"]
    assert lake.lake_pointer("seg_a")["rows"] == 4
    assert by_segment(lake.lake_run())["seg_a"].status == "unchanged"
    lake.rebuild("seg_a", [])
    lake.lake_run(allow_mass_exit=True, allow_size_change=True)
    back = by_segment(lake.lake_run(engine="duckdb"))["seg_a"]
    assert back.status == "unchanged", back.reason


def test_a_plan_leaves_the_tables_of_other_runs_alone_and_a_sync_drops_a_dead_runs(lake):
    # Given a segment synced in Athena, and a table a run of the segment left (dead, or still running)
    from sync.run.pushdown.lake import table_tag

    lake.segment("seg_a", COLS, members(5))
    lake.lake_run()
    left = f"{table_tag('files', 'seg_a', '20261201T000000000Z-abcdef')}_snap"
    lake.glue.create_table(DatabaseName="segments", TableInput={"Name": left})
    # When a plan diffs it in Athena (it holds no lock), then that table stays
    assert by_segment(lake.lake_run(dry_run=True))["seg_a"].status == "planned"
    assert lake.diff_tables() == [left]
    # When a sync diffs it (under the segment's lock), then it goes
    lake.lake_run()
    assert lake.diff_tables() == []


def test_moving_back_to_the_runner_with_a_rejected_row_commits_a_snapshot_the_next_run_reads(lake):
    # Given a segment diffed in Athena, then moved back to the runner while the platform rejects one row
    lake.segment("seg_a", COLS, members(6))
    lake.lake_run()
    lake.rebuild("seg_a", [(i, "moved" if i == "e002" else t, c) for i, t, c in members(6)])
    back = by_segment(lake.lake_run(engine="duckdb", destination=Scripted(lake.exports, rejected={"e002": "no"})))
    assert back["seg_a"].status == "partial", back["seg_a"].reason
    # When the next runs sync on the runner
    again = lake.lake_run(engine="duckdb")
    # Then the committed snapshot reads (its digests are the runner's type), the rejected row is resent, then nothing
    assert [r["Id"] for r in lake.delivered(again, "seg_a")] == ["e002"], by_segment(again)["seg_a"].reason
    assert by_segment(lake.lake_run(engine="duckdb"))["seg_a"].status == "unchanged"


def test_a_snapshot_the_diff_in_athena_cannot_account_for_is_refused_and_nothing_is_sent(lake):
    # Given a segment synced in Athena, then its committed pointer changed to claim one member more
    lake.segment("seg_a", COLS, members(3))
    lake.lake_run()
    pointer = lake.lake_pointer("seg_a")
    key = "lakeseg/state/snapshots/files/seg_a/current.json"
    lake.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**pointer, "rows": 4}).encode())
    lake.rebuild("seg_a", members(3, start=1))  # one member leaves, one enters
    # When it syncs
    rep = by_segment(lake.lake_run())["seg_a"]
    # Then it is refused with both counts, nothing is sent or committed, and no table is left
    assert rep.status == "refused"
    assert rep.reason == (
        "seg_a: the committed snapshot holds 4 members, the diff in Athena matched 3; nothing was sent (restore "
        "the snapshot, or delete its pointer to send the whole segment again)"
    )
    assert lake.lake_pointer("seg_a")["rows"] == 4 and lake.diff_tables() == []


def test_a_diff_in_athena_that_wrote_nothing_at_all_is_refused(lake, monkeypatch):
    # Given Athena's UNLOAD writes no file, not even the counts row every diff writes
    lake.segment("seg_a", COLS, members(3))
    monkeypatch.setattr(AthenaReader, "unload", lambda *_a, **_k: [])
    # When the segment syncs, then it is refused: an empty answer is never read as "nothing changed"
    rep = by_segment(lake.lake_run())["seg_a"]
    assert rep.status == "refused"
    assert rep.reason == "seg_a: the diff in Athena wrote no rows, not even its counts; nothing sent"
    assert lake.lake_pointer("seg_a") is None


def test_a_refused_row_whose_value_went_back_is_resent_and_counted_as_resent_on_both_engines(lake, twin):
    # Given a change the platform refused for one row (quarantined: the snapshot keeps its old value)
    for h in (lake, twin):
        h.segment("seg_a", COLS, members(6), exit=EXIT)
    both(lake, twin)
    changed = [(i, "moved" if i == "e001" else t, c) for i, t, c in members(6)]
    both(lake, twin, changed, rejected={"e001": "value refused"})
    # When its value goes back to what the snapshot holds
    mine, theirs = both(lake, twin, members(6))
    # Then both engines resend it as a resend (not a change), with the same plan
    plan = alike(lake, twin, mine, theirs)
    assert plan["resent"] == 1 and plan["changed"] == 0


def test_a_stricter_test_on_the_model_holds_the_values_the_diff_in_athena_sends(lake, twin):
    # Given a segment whose model has a stricter max_length test on tier (4 characters), synced on both engines
    strict = {("pinpoint_max_length", "tier"): {"max_length": 4}}
    for h in (lake, twin):
        h.segment("seg_a", COLS, [("e1", "gold", "x")], test_kwargs=strict)
    lake.lake_run()
    twin.run()
    # When the table gains a value the test would refuse, after the tests passed
    for h in (lake, twin):
        h.rebuild("seg_a", [("e1", "gold", "x"), ("e2", "silver", "y")])
    rep = by_segment(lake.lake_run())["seg_a"]
    # Then the diff in Athena refuses it as the DuckDB diff does, naming the column and the test
    assert rep.status == "refused" and "column tier (User.UserAttributes.Tier) breaks pinpoint_max_length" in rep.reason
    assert rep.reason == by_segment(twin.run())["seg_a"].reason


def test_rows_quarantined_on_entering_count_as_members_for_the_size_guard_on_both_engines(lake, twin):
    # Given 20 members, then 5 more that the platform refused as they entered (quarantined, never committed)
    for h in (lake, twin):
        h.segment("seg_a", COLS, members(20), exit=EXIT)
    both(lake, twin)
    got, want = both(lake, twin, members(25), rejected={f"e{i:03d}": "value refused" for i in range(20, 25)})
    assert by_segment(got)["seg_a"].status == by_segment(want)["seg_a"].status == "partial"
    # When the next run resends them (the table unchanged), with the guard allowing no row to enter (1%) and
    # the size to move by 10% at most: they were members already, delivered last run -- 25 members before,
    # none entering, no change of size
    mine, theirs = both(lake, twin, max_entered_share=0.01, max_size_change_share=0.1)
    # Then neither engine refuses, and both resend the same 5 rows
    assert by_segment(mine)["seg_a"].status == by_segment(theirs)["seg_a"].status == "synced"
    assert len(lake.delivered(mine, "seg_a")) == 5
    alike(lake, twin, mine, theirs)


def test_a_quarantined_row_that_leaves_is_sent_its_exit_values_once_on_both_engines(lake, twin):
    # Given a member that entered and was refused by the platform (quarantined: the snapshot never held it)
    for h in (lake, twin):
        h.segment("seg_a", COLS, members(6), exit=EXIT)
    both(lake, twin)
    both(lake, twin, members(7), rejected={"e006": "value refused"})
    # When it leaves the segment
    mine, theirs = both(lake, twin, members(6))
    # Then both engines send it its exit values, counted as a resent exit, with the same plan
    plan = alike(lake, twin, mine, theirs)
    assert plan["resent_exits"] == 1 and plan["exit_rows"] == 1


IN_ATHENA = "diffed in Athena (diff.engine): only the rows to send left the lake"


def test_auto_diffs_on_the_runner_until_the_committed_snapshot_reaches_the_threshold_then_stays(lake):
    # Given diff.engine auto with a threshold of 5 members
    def run(rows):
        lake.rebuild("seg_a", rows)
        rep = by_segment(lake.lake_run(engine="auto", min_rows=5, allow_size_change=True, allow_mass_exit=True))
        return IN_ATHENA in rep["seg_a"].notes

    lake.segment("seg_a", COLS, members(4))
    # Then a first sync runs on the runner, as does a run whose snapshot holds 4
    assert [run(members(4)), run(members(6))] == [False, False]
    # And once the snapshot holds 6 (>= 5) the diff moves to Athena, and stays there below the threshold
    # (the snapshot holds 3: at least half of it)
    assert [run(members(3)), run(members(3))] == [True, True]


def test_a_lake_that_fails_to_clean_up_does_not_fail_the_run_and_the_next_run_drops_its_tables(lake, monkeypatch):
    # Given a segment diffed in Athena by a run whose clean-up of its Glue tables fails
    from sync.run.pushdown.lake import LakeDiff

    lake.segment("seg_a", COLS, members(5))

    def untidy(self):
        raise OSError("glue unreachable")

    with monkeypatch.context() as m:
        m.setattr(LakeDiff, "cleanup", untidy)
        # When it runs, then it ends with its own outcome, its tables left behind
        assert lake.lake_run().status == "succeeded"
    left = lake.diff_tables()
    assert left
    # And the next run (clean-up working again) drops what the first left
    assert lake.lake_run().status == "succeeded"
    assert lake.diff_tables() == []


def test_a_full_refresh_in_athena_sends_every_member_as_on_the_runner(lake, twin):
    # Given a segment synced on both engines, unchanged since
    for h in (lake, twin):
        h.segment("seg_a", COLS, members(12), exit=EXIT)
    both(lake, twin)
    # When each syncs it again with --full-refresh, then both send every member, planned alike
    plan = alike(lake, twin, *both(lake, twin, full_refresh=True))
    assert plan["full_refresh"] and plan["to_send"] == 12
    # And the next run (no full refresh) has nothing to send
    assert by_segment(lake.lake_run())["seg_a"].status == "unchanged"


def _committed_digests(lake, tmp_path) -> set[int]:
    """The digests of the base the last full send committed (a runner-written base: one file)."""
    local = tmp_path / "committed.parquet"
    lake.s3.download_file(BUCKET, f"lakeseg/state/{lake.lake_pointer('seg_a')['file']}", str(local))
    with duckdb.connect() as con:
        return {r[0] for r in con.execute(f"select digest from '{local}'").fetchall()}


def test_the_digests_athena_commits_are_keyed_and_a_new_key_sends_every_member_once(lake, tmp_path):
    # Given a segment synced in Athena under one digest key
    from sync.run.digest_key import DigestKey

    lake.segment("seg_a", COLS, members(10))
    lake.lake_run()
    before = _committed_digests(lake, tmp_path)
    # When the key changes (another secret)
    other = DigestKey(secret="another-lake-key-0123456789abcdef", source="test")
    rep = by_segment(lake.lake_run(digest_key=other))["seg_a"]
    # Then every member is sent once, and the digests committed share no value with the old key's
    assert rep.plan["full_refresh"] and rep.plan["to_send"] == 10
    after = _committed_digests(lake, tmp_path)
    assert len(after) == 10 and not before & after
    assert by_segment(lake.lake_run(digest_key=other))["seg_a"].status == "unchanged"


def test_a_library_caller_without_a_digest_key_diffs_in_athena_too(lake):
    # Given a caller of SyncRun that names no digest key (the CLI always resolves one)
    lake.segment("seg_a", COLS, members(6))
    # When it syncs twice, then the first sends every member and the second nothing
    assert by_segment(lake.lake_run(digest_key=None))["seg_a"].plan["to_send"] == 6
    assert by_segment(lake.lake_run(digest_key=None))["seg_a"].status == "unchanged"


def test_every_glue_table_a_run_makes_is_named_for_its_destination_segment_and_run(lake):
    # Given a segment synced in Athena, then a run that quarantined a row (so the next run has one to resend)
    from sync.run.pushdown.lake import run_tables, table_tag

    lake.segment("seg_a", COLS, members(6))
    lake.lake_run()
    lake.rebuild("seg_a", [(i, "moved" if i == "e002" else t, c) for i, t, c in members(6)])
    lake.lake_run(destination=Scripted(lake.exports, rejected={"e002": "no"}))
    made: list[str] = []
    lake.glue.meta.events.register(
        "provide-client-params.glue.CreateTable", lambda params, **_kw: made.append(params["TableInput"]["Name"])
    )
    # When the next run diffs it (its key, its snapshot and the rows to resend as tables)
    before = len(lake.athena.executed)
    report = lake.lake_run()
    # Then each table it made carries the run's own tag for this destination and segment
    tag = table_tag("files", "seg_a", report.run_id)
    assert sorted(made) == sorted(f"{tag}_{kind}" for kind in ("key", "snap", "dirty"))
    assert all(run_tables("files", "seg_a").fullmatch(name) for name in made)
    # And the rows to send were unloaded under the staging dir's prefix for the diff, named for the run
    targets = lake.athena.unload_targets(since=before)
    assert any(t.startswith(f"{STAGING}lakeseg-diff/{report.run_id}-") for t in targets), targets
    # And the scratch file of the rows to resend went with the run
    assert lake.keys_under("lakeseg/state/lake-scratch/") == []


def test_a_leaver_not_sent_is_not_recorded_in_doubt_by_the_diff_in_athena(lake):
    # Given a segment with no exit values (a leaver is dropped from the snapshot, not sent), synced in Athena
    lake.segment("seg_a", COLS, members(6))
    lake.lake_run()
    # When one member changes and another leaves, and the destination looks at the in-doubt record as it delivers
    lake.rebuild("seg_a", [(i, "moved" if i == "e000" else t, c) for i, t, c in members(5)])
    seen = []

    class Looking(Scripted):
        def deliver(self, delivery, progress=None):
            key = "lakeseg/state/snapshots/files/seg_a/in_doubt.json"
            seen.append(json.loads(lake.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["rows"])
            return super().deliver(delivery, progress)

    report = lake.lake_run(destination=Looking(lake.exports))
    # Then the delivery carried the changed member alone, and the record names that one Id, not the leaver
    assert [r["Id"] for r in lake.delivered(report, "seg_a")] == ["e000"] and seen == [1]


def test_a_segment_whose_scratch_cannot_be_dropped_leaves_the_other_segments_clean(lake, monkeypatch):
    # Given two segments in Athena, each with a row the platform refused (the next run resends it from scratch)
    lake.segment("seg_a", COLS, members(6))
    lake.segment(
        "seg_b",
        {"endpoint_id": "Id", "plan": "User.UserAttributes.Plan", "zone": "User.UserAttributes.Zone"},
        members(6),
    )
    lake.lake_run()
    for name in ("seg_a", "seg_b"):
        lake.rebuild(name, [(i, "moved" if i == "e002" else t, c) for i, t, c in members(6)])
    lake.lake_run(destination=Scripted(lake.exports, rejected={"e002": "no"}))
    # When the next run's clean-up cannot drop seg_a's scratch files
    drop = lake.state.drop_scratch

    def failing(destination, segment, **kw):
        if segment == "seg_a" and kw.get("only"):
            raise OSError("state store unreachable")
        return drop(destination, segment, **kw)

    monkeypatch.setattr(lake.state, "drop_scratch", failing)
    got = lake.lake_run()
    assert got.status == "succeeded", [(s.segment, s.status, s.reason) for s in got.segments]
    # Then seg_b's are gone all the same, and seg_a's wait for the next run's sweep
    assert lake.keys_under("lakeseg/state/lake-scratch/files/seg_b/") == []
    assert lake.keys_under("lakeseg/state/lake-scratch/files/seg_a/")


def test_a_run_in_athena_reports_its_query_and_bytes_for_the_segment_and_times_the_diff(lake):
    # Given a segment diffed in Athena
    lake.segment("seg_a", COLS, members(6))
    # When it syncs
    report = lake.lake_run()
    # Then the segment's notes name the query Athena ran for it and what it scanned, as a read through Athena does
    (query,) = lake.readers[-1].stats.values()
    assert f"athena query {query['query_id']} scanned {query['data_scanned_bytes']} bytes" in (
        by_segment(report)["seg_a"].notes
    )
    # And the time it took counts as the run's diff
    assert "diff" in report.phases
