"""The diff in Athena inside the runner: the same rows sent as the DuckDB diff, run after run, and a clean lake.

Every run goes through ``SyncRun`` with ``diff.engine: athena``: Athena (moto, with
DuckDB executing its SQL) classifies every member against the snapshot the state
store keeps in S3, the runner downloads only the rows to send, and the commit
writes a delta (or Athena a new base). The same builds run through the DuckDB
diff (``EngineHarness``, local state) side by side.
"""

from __future__ import annotations

import pytest
from moto import mock_aws

from sync.state.deltas import Compaction
from tests.engine.harness import EngineHarness, by_segment
from tests.pushdown.lake_harness import LakeHarness

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
    got = lake.lake_run()
    assert [r["Id"] for r in lake.delivered(got, "seg_a")] == ["e005"]
    assert lake.lake_pointer("seg_a")["format"] == 3 and len(lake.lake_pointer("seg_a")["deltas"]) == 1


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
        pytest.param([("e1", "gold", "x"), (None, "silver", "y")], "rule: not_null", id="a-null-id"),
        pytest.param([("e1", "gold", "x"), ("e2", "sil\nver", "y")], "pinpoint_no_control_chars", id="a-newline"),
    ],
)
def test_a_broken_segment_is_refused_in_athena_and_nothing_is_sent(lake, rows, rule):
    # Given a segment synced in Athena, then rebuilt with a broken row (after its tests passed)
    lake.segment("seg_a", COLS, [("e1", "gold", "x"), ("e2", "silver", "y")])
    lake.lake_run()
    before = lake.lake_pointer("seg_a")
    lake.rebuild("seg_a", rows)
    # When it syncs
    rep = by_segment(lake.lake_run())["seg_a"]
    # Then it is refused naming the rule, and the snapshot did not move
    assert rep.status == "refused" and rule in rep.reason, rep.reason
    assert lake.lake_pointer("seg_a") == before
    assert lake.diff_tables() == []
