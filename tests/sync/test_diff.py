"""The diff engine: entered / changed / exited / unchanged, exit rows, full sends."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from sync.core.errors import SegmentRefused
from sync.core.import_files import write_import_files
from sync.dbt.contract import FieldMapping, Segment
from sync.readers.base import RelationRef
from sync.run.diff import changes_sql, prepare, snapshot_to_commit
from sync.run.digest_key import DigestKey


def make_segment(exit="keep", fields=("Id", "User.UserAttributes.Tier")) -> Segment:
    columns = ("endpoint_id", "tier", "score")[: len(fields)]
    return Segment(
        unique_id="model.t.seg_t",
        name="seg_t",
        relation=RelationRef(None, "main", "seg_t"),
        mappings=tuple(FieldMapping(c, f) for c, f in zip(columns, fields)),
        exit=exit,
        segment_name=None,
        tags=(),
        path="",
    )


@dataclass
class Snap:
    path: Path
    rows: int
    mapping_hash: str
    confirmed: bool = False  # as sync.state.Snapshot: the data file has no confirmed_at


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def load(con, name: str, rows: list[tuple]) -> str:
    """A source table of (endpoint_id, tier), or (endpoint_id, tier, score) when the rows have three values."""
    columns = ("endpoint_id", "tier", "score")[: len(rows[0]) if rows else 2]
    con.execute(f"create or replace table {name} ({', '.join(c + ' varchar' for c in columns)})")
    if rows:
        con.executemany(f"insert into {name} values ({', '.join('?' for _ in columns)})", rows)
    return name


def sync_once(con, seg, rows, previous, tmp_path: Path, tag: str, **kw):
    """Plan + files for one run; returns (prepared, rows sent as dicts, committed Snap)."""
    src = load(con, f"src_{tag}", rows)
    prepared = prepare(con, seg, src, previous=previous, workdir=tmp_path / tag, **kw)
    files = write_import_files(con, changes_sql(prepared), tmp_path / tag / "out", 1_000_000)
    sent = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            sent.extend(csv.DictReader(fh))
    snap = Snap(prepared.new_snapshot, prepared.plan.rows, prepared.mapping_hash)
    return prepared, sent, snap


def test_first_sync_sends_every_member(con, tmp_path):
    # Given a segment never synced before
    seg = make_segment()
    # When it is planned
    prepared, sent, _ = sync_once(con, seg, [("a", "gold"), ("b", "silver")], None, tmp_path, "r1")
    # Then every member is entered and sent, with the declared header
    assert prepared.plan.entered == 2 and prepared.plan.first_sync and prepared.plan.full_refresh
    assert sorted(sent, key=lambda r: r["Id"]) == [
        {"Id": "a", "User.UserAttributes.Tier": "gold"},
        {"Id": "b", "User.UserAttributes.Tier": "silver"},
    ]


def test_second_sync_classifies_and_sends_only_the_change(con, tmp_path):
    # Given a committed snapshot of a, b, c
    seg = make_segment(exit={"User.UserAttributes.Tier": "none"})
    _, _, snap = sync_once(con, seg, [("a", "gold"), ("b", "silver"), ("c", "bronze")], None, tmp_path, "r1")
    # When b changes, c leaves and d enters
    prepared, sent, _ = sync_once(con, seg, [("a", "gold"), ("b", "gold"), ("d", "new")], snap, tmp_path, "r2")
    plan = prepared.plan
    # Then the plan counts each kind and the files hold exactly those rows
    assert (plan.entered, plan.changed, plan.exited, plan.unchanged) == (1, 1, 1, 1)
    assert plan.to_send == 3 and not plan.full_refresh
    assert sorted((r["Id"], r["User.UserAttributes.Tier"]) for r in sent) == [
        ("b", "gold"),
        ("c", "none"),
        ("d", "new"),
    ]


def test_keep_sends_no_exit_rows(con, tmp_path):
    # Given a segment whose exit is `keep`
    seg = make_segment(exit="keep")
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y"), ("c", "z")], None, tmp_path, "r1")
    # When c leaves
    prepared, sent, _ = sync_once(con, seg, [("a", "x"), ("b", "y")], snap, tmp_path, "r2")
    # Then the exit is counted but nothing is sent for it
    assert prepared.plan.exited == 1 and prepared.plan.exit_rows == 0
    assert sent == []


def test_unchanged_segment_sends_nothing(con, tmp_path):
    seg = make_segment()
    rows = [("a", "x"), ("b", None)]
    _, _, snap = sync_once(con, seg, rows, None, tmp_path, "r1")
    prepared, sent, _ = sync_once(con, seg, rows, snap, tmp_path, "r2")
    assert prepared.plan.to_send == 0 and prepared.plan.unchanged == 2 and sent == []


@pytest.mark.parametrize(
    "before,after",
    [
        pytest.param(None, "", id="null-to-empty"),
        pytest.param("", None, id="empty-to-null"),
        pytest.param("a", "a ", id="trailing-space"),
        pytest.param("José", "Jose", id="accent"),
    ],
)
def test_any_value_difference_is_a_change(con, tmp_path, before, after):
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", before)], None, tmp_path, "r1")
    prepared, sent, _ = sync_once(con, seg, [("a", after)], snap, tmp_path, "r2")
    assert prepared.plan.changed == 1 and len(sent) == 1


THREE_FIELDS = ("Id", "User.UserAttributes.Tier", "Metrics.Score")


def test_exit_rows_put_each_exit_value_under_its_own_header_column(con, tmp_path):
    """Guards issue 15 behaviour 2: exit values follow the header's column order, not the YAML exit mapping's;
    verified to fail on a broken copy (sync/run/diff.py:changes_sql building exit columns in exit_values order)."""
    # Given a segment whose exit mapping lists its fields in another order than its columns
    seg = make_segment(exit={"Metrics.Score": 0, "User.UserAttributes.Tier": "none"}, fields=THREE_FIELDS)
    _, _, snap = sync_once(con, seg, [("a", "gold", "7"), ("b", "silver", "3")], None, tmp_path, "r1")
    # When b leaves
    prepared, sent, _ = sync_once(con, seg, [("a", "gold", "7")], snap, tmp_path, "r2")
    # Then b's exit row carries each exit value under the header of its own field
    assert prepared.plan.exit_rows == 1
    assert sent == [{"Id": "b", "User.UserAttributes.Tier": "none", "Metrics.Score": "0"}]


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-digest", "keyed-digest"])
def test_a_change_in_the_second_attribute_alone_is_a_change(con, tmp_path, keyed):
    """Guards issue 15 behaviour 4: the value digest covers every exported attribute, not just the first;
    verified to fail on a broken copy (sync/run/diff.py:digest_sql hashing only the first value column)."""
    # Given a committed snapshot of a segment with two attributes
    seg = make_segment(exit="keep", fields=THREE_FIELDS)
    key = DigestKey("a-test-secret-of-enough-length-0123456789", "test") if keyed else None
    _, _, snap = sync_once(con, seg, [("a", "gold", "7"), ("b", "silver", "3")], None, tmp_path, "r1", digest_key=key)
    # When only b's second attribute changes
    prepared, sent, _ = sync_once(
        con, seg, [("a", "gold", "7"), ("b", "silver", "4")], snap, tmp_path, "r2", digest_key=key
    )
    # Then b is a change, and is sent with its new value
    assert (prepared.plan.changed, prepared.plan.unchanged) == (1, 1)
    assert sent == [{"Id": "b", "User.UserAttributes.Tier": "silver", "Metrics.Score": "4"}]


def test_full_refresh_sends_every_row(con, tmp_path):
    seg = make_segment(exit={"User.UserAttributes.Tier": "none"})
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    prepared, sent, _ = sync_once(con, seg, [("a", "x")], snap, tmp_path, "r2", full_refresh=True)
    # every current row plus the exit row for b
    assert sorted(r["Id"] for r in sent) == ["a", "b"]
    assert prepared.plan.full_refresh_reason == "--full-refresh"


def test_changed_mapping_forces_a_full_send(con, tmp_path):
    # Given a snapshot made under one exit declaration
    _, _, snap = sync_once(con, make_segment(exit="keep"), [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    # When the segment's declaration changes (exit value added)
    changed = make_segment(exit={"User.UserAttributes.Tier": "none"})
    prepared, sent, _ = sync_once(con, changed, [("a", "x"), ("b", "y")], snap, tmp_path, "r2")
    # Then every row is sent again
    assert prepared.plan.full_refresh and "mapping" in prepared.plan.full_refresh_reason
    assert sorted(r["Id"] for r in sent) == ["a", "b"]


@pytest.mark.parametrize(
    "rows,rule",
    [
        pytest.param([("a", "x"), ("a", "y")], "unique", id="duplicate-id-first-sync"),
        pytest.param([("a", "x"), (None, "y")], "not_null", id="null-id"),
    ],
)
def test_broken_ids_are_refused(con, tmp_path, rows, rule):
    with pytest.raises(SegmentRefused, match=rf"seg_t: .*\(rule: {rule}\)"):
        sync_once(con, make_segment(), rows, None, tmp_path, "r1")


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([("a", "x"), ("b", "y"), ("b", "y")], id="duplicate-unchanged"),
        pytest.param([("a", "x"), ("b", "z"), ("b", "w")], id="duplicate-changed"),
        pytest.param([("a", "x"), ("b", "y"), ("c", "1"), ("c", "2")], id="duplicate-entered"),
    ],
)
def test_duplicate_ids_are_refused_against_a_snapshot(con, tmp_path, rows):
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    with pytest.raises(SegmentRefused, match="unique"):
        sync_once(con, seg, rows, snap, tmp_path, "r2")


def test_rejected_rows_keep_their_previous_state(con, tmp_path):
    # Given a committed a=x, b=y and a run changing both
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    prepared, _, _ = sync_once(con, seg, [("a", "x2"), ("b", "y2"), ("c", "z")], snap, tmp_path, "r2")
    # When the destination rejects b and c
    committed = snapshot_to_commit(con, prepared, frozenset({"b", "c"}))
    # Then the next run sends b and c again, but not a
    nxt, sent, _ = sync_once(
        con, seg, [("a", "x2"), ("b", "y2"), ("c", "z")], Snap(committed, 2, prepared.mapping_hash), tmp_path, "r3"
    )
    assert sorted(r["Id"] for r in sent) == ["b", "c"]


def test_snapshot_from_another_hash_function_is_rekeyed_not_mass_exited(con, tmp_path):
    # Given a snapshot whose keys and digests came from a different hash
    # function (as after a DuckDB upgrade), recorded under another signature
    seg = make_segment(exit={"User.UserAttributes.Tier": "none"})
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y"), ("c", "z")], None, tmp_path, "r1")
    foreign = tmp_path / "foreign.parquet"
    con.execute(
        f"copy (select Id, k1 + 1 as k1, k2 + 1 as k2, digest + 1 as digest from read_parquet('{snap.path}')) "
        f"to '{foreign}' (format parquet)"
    )
    old = Snap(foreign, 3, snap.mapping_hash.split("-")[0] + "-other-signature")
    # When the segment is synced with c gone
    prepared, sent, _ = sync_once(con, seg, [("a", "x"), ("b", "y")], old, tmp_path, "r2")
    # Then members are matched by Id: a full send of a and b, one exit row for c
    assert prepared.plan.full_refresh
    assert (prepared.plan.entered, prepared.plan.exited) == (0, 1)
    assert sorted((r["Id"], r["User.UserAttributes.Tier"]) for r in sent) == [("a", "x"), ("b", "y"), ("c", "none")]


def test_rows_to_send_match_on_both_halves_of_the_key(con, tmp_path):
    # Given a committed a, b, c and a run where only b changes
    seg = make_segment(exit={"User.UserAttributes.Tier": "none"})
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y"), ("c", "z")], None, tmp_path, "r1")
    prepared = prepare(
        con, seg, load(con, "src_r2", [("a", "x"), ("b", "y2"), ("c", "z")]), previous=snap, workdir=tmp_path / "r2"
    )
    # When the delta also holds keys that agree with a's and c's on k1 but not on k2 (a 64-bit collision)
    con.execute("insert into _delta select hash('a'), hash('a', 'lakeseg') + 1, 'c'")
    con.execute("insert into _delta select hash('c'), hash('c', 'lakeseg') + 1, 'x'")
    prepared.plan.exit_rows = 1
    files = write_import_files(con, changes_sql(prepared), tmp_path / "r2" / "out", 1_000_000)
    with files[0].open(newline="", encoding="utf-8") as fh:
        sent = [(r["Id"], r["User.UserAttributes.Tier"]) for r in csv.DictReader(fh)]
    # Then neither a nor an exit row for c is sent: k2 is still checked
    assert sent == [("b", "y2")]
