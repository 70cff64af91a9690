"""The diff engine's parts, each pinned exactly: full-send reasons, mapping hashes, counts, quoting, messages."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sync.core.errors import SegmentRefused
from sync.run.diff import (
    DIGEST_SCHEME,
    KEY_SCHEME,
    Plan,
    _engines_differ,
    _full_send_reason,
    _only_keys_differ,
    _previous_relation,
    configure,
    digest_sql,
    effective_mapping_hash,
    hash_signature,
    prepare,
    qi,
    ql,
    sent_ids_sql,
)
from sync.state.base import Snapshot
from tests.sync.test_diff import Snap, load, make_segment, sync_once

NOW = "map-111-fp-d2-k2v2"
SWITCH = (
    "the diff moved between the runner (DuckDB) and Athena (diff.engine): their snapshots are keyed and "
    "digested differently, so every member is sent again, once"
)


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


@pytest.mark.parametrize(
    "previous, reason",
    [
        (
            "map-111-fp-d1-k2v2",
            "the value digest's construction changed (a lakeseg upgrade): every member is sent again",
        ),
        ("map-111-fp", "the value digest's construction changed (a lakeseg upgrade): every member is sent again"),
        ("map-111-other-d2-k2v2", "the digest key changed (digest_key): every member is sent again"),
        ("map-111-other", "the digest key changed (digest_key): every member is sent again"),
        ("map-222-fp-d2-k2v2", "DuckDB's hash function changed (an upgrade): every member is sent again"),
        ("map-222", "DuckDB's hash function changed (an upgrade): every member is sent again"),
        ("other-111-fp-d2-k2v2", "field mapping or exit values changed since the last sync"),
        ("map", "field mapping or exit values changed since the last sync"),
        ("map-fp", "DuckDB's hash function changed (an upgrade): every member is sent again"),
        ("map-111", "field mapping or exit values changed since the last sync"),
        ("map-athena-fp-ad1-ak1", SWITCH),
        ("other-athena-fp-ad1-ak1", "field mapping or exit values changed since the last sync"),
    ],
    ids=[
        "digest-scheme",
        "digest-scheme-three-parts",
        "digest-key",
        "digest-key-three-parts",
        "hash-function",
        "hash-function-two-parts",
        "mapping",
        "mapping-only",
        "signature-like-a-key",
        "same-signature-two-parts",
        "from-athena-to-duckdb",
        "from-athena-with-another-mapping",
    ],
)
def test_a_full_send_names_what_changed_since_the_snapshot(previous, reason):
    assert _full_send_reason(previous, NOW) == reason


@pytest.mark.parametrize(
    "previous, current, differ",
    [
        ("map-athena", "map-111", True),
        ("map-111", "map-athena", True),
        ("map-athena", "map-athena-fp", False),
        ("map-111", "map-222", False),
        ("map", "map-athena", False),
    ],
    ids=["from-athena-two-parts", "to-athena-two-parts", "both-athena", "both-duckdb", "no-signature"],
)
def test_the_engines_differ_when_exactly_one_hash_was_made_in_athena(previous, current, differ):
    assert _engines_differ(previous, current) is differ


@pytest.mark.parametrize(
    "previous, only_keys",
    [
        ("map-111-fp-d2", True),
        ("map-111-fp-d2-k2v1", True),
        ("map-111-fp-d1", False),
        ("map-111-other-d2-k2v2", False),
        ("map-222-fp-d2-k2v2", False),
    ],
    ids=["earlier-key-scheme", "other-key-scheme", "other-digest", "other-key", "other-hash"],
)
def test_only_a_change_of_key_scheme_is_re_keyed_without_a_full_send(previous, only_keys):
    assert _only_keys_differ(previous, NOW) is only_keys


def test_the_effective_mapping_hash_joins_mapping_hash_signature_key_and_schemes(con):
    seg = make_segment()
    sig = hash_signature(con)
    assert effective_mapping_hash(con, seg, "fp1") == f"{seg.mapping_hash}-{sig}-fp1-{DIGEST_SCHEME}-{KEY_SCHEME}"
    assert effective_mapping_hash(con, seg) == f"{seg.mapping_hash}-{sig}-unkeyed-{DIGEST_SCHEME}-{KEY_SCHEME}"
    assert (DIGEST_SCHEME, KEY_SCHEME) == ("d3", "k2v2")


def test_the_hash_signature_is_duckdbs_hash_of_fixed_values(con):
    sig = hash_signature(con)
    assert sig == str(con.execute("select hash('lakeseg', 'sig', cast(null as varchar), '')").fetchall()[0][0])
    with duckdb.connect() as other:
        assert hash_signature(other) == sig


@pytest.mark.parametrize(
    "plan, to_send",
    [
        (Plan("s", rows=10, entered=1, changed=2, resent=3, refresh=4, exit_rows=5), 15),
        (Plan("s", rows=10, entered=1, changed=2, resent=3, refresh=4, exit_rows=5, full_refresh=True), 15),
        (Plan("s", rows=7, entered=1, changed=0, exit_rows=0, full_refresh=True), 7),
        (Plan("s", rows=7, entered=0, changed=1, resent=0, refresh=0, exit_rows=2), 3),
    ],
    ids=["incremental", "full-equal-by-chance", "full", "changed-and-exits"],
)
def test_rows_to_send_count_every_kind_once(plan, to_send):
    assert plan.to_send == to_send
    assert plan.as_dict()["to_send"] == to_send and plan.as_dict()["rows"] == plan.rows


def test_identifiers_and_literals_are_quoted_with_their_quotes_doubled():
    assert qi('Attributes."x"') == '"Attributes.""x"""'
    assert ql("O'Hare") == "'O''Hare'"
    assert ql(5) == "'5'"


def test_the_digest_of_a_segment_without_attributes_is_a_constant_and_aliases_prefix_columns():
    assert digest_sql(("Id",)) == "cast(0 as ubigint)"
    assert digest_sql(("Id", "A.b", "C")) == 'hash("Id", "A.b", "C")'
    assert digest_sql(("Id", "A.b"), alias="t") == 'hash(t."Id", t."A.b")'


def test_the_diff_settings_are_the_memory_limit_spill_folder_and_no_insertion_order(con, tmp_path):
    configure(con, "300MB", tmp_path / "spill")
    settings = dict(
        con.execute(
            "select name, value from duckdb_settings() where name in "
            "('memory_limit', 'temp_directory', 'preserve_insertion_order')"
        ).fetchall()
    )
    assert settings["temp_directory"] == str(tmp_path / "spill")
    assert settings["preserve_insertion_order"] == "false"
    assert settings["memory_limit"] == "286.1 MiB"  # how DuckDB shows 300MB


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("a", "x"), (None, "y"), (None, "z")], "seg_t: 2 row(s) have a null Id (rule: not_null); nothing was sent"),
        (
            [("a", "x"), ("a", "y"), ("b", "z")],
            "seg_t: duplicate Id values (rule: unique) -- 1 of 3 rows repeat an Id (2 distinct); nothing was sent",
        ),
    ],
    ids=["null", "duplicate"],
)
def test_broken_ids_are_refused_with_an_exact_message(con, tmp_path, rows, message):
    with pytest.raises(SegmentRefused) as refused:
        prepare(con, make_segment(), load(con, "src", rows), previous=None, workdir=tmp_path / "w")
    assert str(refused.value) == message


def test_a_duplicate_among_unchanged_members_is_counted_in_the_message(con, tmp_path):
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    with pytest.raises(SegmentRefused) as refused:
        prepare(
            con, seg, load(con, "src2", [("a", "x"), ("b", "y"), ("b", "y")]), previous=snap, workdir=tmp_path / "r2"
        )
    assert str(refused.value) == (
        "seg_t: duplicate Id values (rule: unique) -- 1 of 3 rows repeat an Id (2 distinct); nothing was sent"
    )


def after_abc_with_one_in_doubt(con, tmp_path, in_doubt: str, rows: list[tuple]):
    """A segment with exit values that committed a, b, c; then a run over ``rows`` with ``in_doubt`` in doubt."""
    seg = make_segment(exit={"User.UserAttributes.Tier": "none"})
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y"), ("c", "z")], None, tmp_path, "r1")
    dirty = tmp_path / "dirty.parquet"
    con.execute(f"copy (select ? as Id) to '{dirty}' (format parquet)", [in_doubt])
    return prepare(con, seg, load(con, "src2", rows), previous=snap, workdir=tmp_path / "r2", dirty=dirty)


def test_the_ids_a_delivery_carries_are_its_members_exits_and_dirty_leavers(con, tmp_path):
    # Given a committed a, b, c and a run where b changes, c leaves, e enters; d left earlier but is in doubt
    prepared = after_abc_with_one_in_doubt(con, tmp_path, "d", [("a", "x"), ("b", "y2"), ("e", "w")])
    # Then the delivery carries b and e (sent), c (exit) and d (exit for an id in doubt)
    ids = sorted(r[0] for r in con.execute(sent_ids_sql(prepared)).fetchall())
    assert ids == ["b", "c", "d", "e"]
    plan = prepared.plan
    assert (plan.entered, plan.changed, plan.exited, plan.resent_exits, plan.exit_rows) == (1, 1, 1, 1, 2)


def test_a_full_send_carries_every_member(con, tmp_path):
    seg = make_segment()
    prepared = prepare(con, seg, load(con, "src", [("a", "x"), ("b", "y")]), previous=None, workdir=tmp_path / "w")
    assert sorted(r[0] for r in con.execute(sent_ids_sql(prepared)).fetchall()) == ["a", "b"]


def test_a_keep_segment_delivery_carries_no_leavers(con, tmp_path):
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    prepared = prepare(
        con,
        seg,
        load(con, "src2", [("a", "x2")]),
        previous=Snap(snap.path, 2, snap.mapping_hash),
        workdir=tmp_path / "r2",
    )
    assert [r[0] for r in con.execute(sent_ids_sql(prepared)).fetchall()] == ["a"]
    assert Path(prepared.new_snapshot).exists()


def test_a_full_refresh_carries_unchanged_members_too(con, tmp_path):
    seg = make_segment()
    _, _, snap = sync_once(con, seg, [("a", "x"), ("b", "y")], None, tmp_path, "r1")
    prepared = prepare(
        con,
        seg,
        load(con, "src2", [("a", "x"), ("b", "y2")]),
        previous=snap,
        workdir=tmp_path / "r2",
        full_refresh=True,
    )
    assert sorted(r[0] for r in con.execute(sent_ids_sql(prepared)).fetchall()) == ["a", "b"]


@pytest.mark.parametrize(
    "secret, subkey",
    [
        ("engine-test-key-0123456789abcdef", "5291fd7fd150b145f1eceff9a844517d"),
        ("Zürich-key", "bc8cc61efdaa1f595f624122d5b12111"),
    ],
    ids=["ascii", "non-ascii"],
)
def test_the_digest_subkey_is_pinned(secret, subkey):
    """Every committed snapshot's digests depend on it: a change must come with a new DIGEST_SCHEME."""
    from sync.run.diff import digest_subkey

    assert digest_subkey(secret) == subkey


def test_exit_rows_go_to_normal_leavers_and_to_leavers_in_doubt_alike(con, tmp_path):
    # Given a committed a, b, c; c leaves now, and d (never committed) is in doubt and gone
    prepared = after_abc_with_one_in_doubt(con, tmp_path, "d", [("a", "x"), ("b", "y")])
    # Then both get an exit row
    from sync.run.diff import changes_sql

    rows = sorted(con.execute(changes_sql(prepared)).fetchall())
    assert rows == [("c", "none"), ("d", "none")]


def test_members_in_doubt_are_resent_and_no_longer_counted_unchanged(con, tmp_path):
    # Given a committed a, b, c, unchanged now, with b in doubt
    prepared = after_abc_with_one_in_doubt(con, tmp_path, "b", [("a", "x"), ("b", "y"), ("c", "z")])
    plan = prepared.plan
    assert (plan.dirty, plan.resent, plan.resent_exits, plan.unchanged, plan.exit_rows) == (1, 1, 0, 2, 0)


def test_a_work_folder_is_made_with_its_parents(con, tmp_path):
    prepared = prepare(
        con, make_segment(), load(con, "src", [("a", "x")]), previous=None, workdir=tmp_path / "runs" / "r1" / "seg_t"
    )
    assert prepared.new_snapshot.exists()


def test_an_unkeyed_plan_names_its_segment_and_says_unkeyed_in_its_mapping_hash(con, tmp_path):
    # Given a segment prepared without a digest key
    seg = make_segment()
    prepared = prepare(con, seg, load(con, "src", [("a", "x")]), previous=None, workdir=tmp_path / "w")
    # Then its plan names the segment, and its mapping hash says the digest is unkeyed
    assert prepared.plan.segment == seg.name
    assert prepared.mapping_hash.split("-")[2] == "unkeyed"


def test_the_second_half_of_a_key_hashes_the_id_a_zero_byte_and_the_salt(con):
    # Given key scheme k2v2 (README "How a sync works"): k2 = hash(Id || chr(0) || salt), so not a function of k1
    from sync.run.diff import KEY_SALT, k2_sql

    # Then two Ids get different k2, each that very hash (a snapshot's keys must mean the same next run)
    a, b = con.execute(f"select {k2_sql(chr(39) + 'a' + chr(39))}, {k2_sql(chr(39) + 'b' + chr(39))}").fetchone()
    expected = [con.execute("select hash(? || chr(0) || ?)", [i, KEY_SALT]).fetchone()[0] for i in ("a", "b")]
    assert [a, b] == expected and a != b


@pytest.mark.parametrize(
    "previous, now",
    [("map-111-fp-d3-k2v2", "map-athena-fp-ad1-ak1"), ("map-athena-fp-ad1-ak1", "map-111-fp-d3-k2v2")],
    ids=["duckdb-to-athena", "athena-to-duckdb"],
)
def test_a_segment_switching_engine_is_one_full_send_that_reads_only_the_other_snapshots_ids(previous, now):
    # Given a committed snapshot written by the other engine (signed lake digests vs DuckDB's unsigned ones)
    snap = Snapshot(Path("prev.parquet"), ("Id",), previous, 3, "r1", "", ())
    plan = Plan("seg")
    # When the diff takes it as its previous membership
    rel = _previous_relation(plan, snap, now, full_refresh=False)
    # Then it is a full send that says why, not a re-key, and the other engine's digest is never read
    assert (plan.full_refresh, plan.full_refresh_reason) == (True, SWITCH)
    assert _only_keys_differ(previous, now) is False
    assert "cast(null as ubigint) as digest" in rel
