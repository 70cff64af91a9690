"""``sync.state.deltas`` on its own: the delta between two memberships, and the compaction thresholds' sources."""

from __future__ import annotations

import duckdb
import pytest

from sync.state.deltas import Compaction, current_sql, delta_sql


def _rel(con, name: str, rows: list[tuple], columns: list[str]) -> str:
    types = {"Id": "varchar", "k1": "ubigint", "k2": "ubigint", "digest": "ubigint", "confirmed_at": "timestamp"}
    con.execute(f"create table {name} ({', '.join(f'{c} {types[c]}' for c in columns)})")
    if rows:
        con.executemany(f"insert into {name} values ({', '.join('?' for _ in columns)})", rows)
    return name


def test_a_delta_holds_new_and_changed_rows_and_a_bare_tombstone_per_leaver():
    # Given two memberships: b changes its digest, c leaves, d enters, a stays
    con = duckdb.connect()
    cols = ["Id", "k1", "k2", "digest"]
    old = _rel(con, "old", [("a", 1, 1, 10), ("b", 2, 2, 20), ("c", 3, 3, 30)], cols)
    new = _rel(con, "new", [("a", 1, 1, 10), ("b", 2, 2, 21), ("d", 4, 4, 40)], cols)
    # When the delta is worked out
    got = sorted(con.execute(delta_sql(new, old, cols)).fetchall())
    # Then b and d are upserts with their new rows, and c a tombstone with its Id and keys alone (no digest)
    assert got == [("b", 2, 2, 21, False), ("c", 3, 3, None, True), ("d", 4, 4, 40, False)]
    # And the old membership with the delta applied is the new one
    con.execute(f"create table delta as {delta_sql(new, old, cols)}")
    assert sorted(con.execute(current_sql(old, ["delta"], cols)).fetchall()) == sorted(
        con.execute(f"select * from {new}").fetchall()
    )


def test_a_member_whose_digest_or_confirmation_time_changed_is_an_upsert_in_a_snapshot_kept_with_confirmations():
    # Given memberships that keep when each member was last confirmed: b's digest changes, c is confirmed again
    con = duckdb.connect()
    cols = ["Id", "k1", "k2", "digest", "confirmed_at"]
    t1, t2 = "2026-12-01 05:00:00", "2026-12-07 05:00:00"
    old = _rel(con, "old", [("a", 1, 1, 10, t1), ("b", 2, 2, 20, t1), ("c", 3, 3, 30, t1)], cols)
    new = _rel(con, "new", [("a", 1, 1, 10, t1), ("b", 2, 2, 21, t1), ("c", 3, 3, 30, t2)], cols)
    # When the delta is worked out, then b and c are upserts and a is not in it
    got = con.execute(f"select Id, deleted from ({delta_sql(new, old, cols)}) order by Id").fetchall()
    assert got == [("b", False), ("c", False)]


def test_memberships_of_ids_and_keys_alone_have_entries_and_exits_only():
    # Given memberships with nothing to compare but the key (no digest column)
    con = duckdb.connect()
    cols = ["Id", "k1", "k2"]
    old = _rel(con, "old", [("a", 1, 1), ("c", 3, 3)], cols)
    new = _rel(con, "new", [("a", 1, 1), ("d", 4, 4)], cols)
    # When the delta is worked out, then d enters and c leaves
    assert sorted(con.execute(delta_sql(new, old, cols)).fetchall()) == [("c", 3, 3, True), ("d", 4, 4, False)]


def test_compaction_takes_the_settings_unless_the_environment_overrides_them(monkeypatch):
    monkeypatch.delenv("LAKESEG_COMPACT_SHARE", raising=False)
    monkeypatch.delenv("LAKESEG_MAX_DELTAS", raising=False)
    # Given no override, then the defaults are a fifth of the base and eight deltas, or what the settings say
    assert Compaction.from_env() == Compaction(0.2, 8)
    assert Compaction.from_env(0.5, 3) == Compaction(0.5, 3)
    # Given overrides, then each replaces its setting alone
    monkeypatch.setenv("LAKESEG_COMPACT_SHARE", "0.05")
    assert Compaction.from_env(0.5, 3) == Compaction(0.05, 3)
    monkeypatch.delenv("LAKESEG_COMPACT_SHARE")
    monkeypatch.setenv("LAKESEG_MAX_DELTAS", "2")
    assert Compaction.from_env(0.5, 3) == Compaction(0.5, 2)


@pytest.mark.parametrize(
    ("base", "deltas", "new", "compacts"),
    [
        pytest.param(100, [5, 5], 5, False, id="below-a-fifth"),
        pytest.param(100, [5, 5], 10, True, id="a-fifth-exactly"),
        pytest.param(100, [1] * 7, 1, False, id="eight-deltas"),
        pytest.param(100, [1] * 8, 1, True, id="a-ninth-delta"),
        pytest.param(0, [], 1, True, id="an-empty-base"),
    ],
)
def test_when_a_commit_compacts(base, deltas, new, compacts):
    assert Compaction(0.2, 8).compacts(base, deltas, new) is compacts


@pytest.mark.parametrize("share", [0.5, 0.8, 1.0], ids=["half", "four-fifths", "whole"])
@pytest.mark.parametrize("base", [0, 1], ids=["an-empty-base", "a-base-of-one"])
def test_a_base_of_at_most_one_member_compacts_on_any_change_at_any_share_up_to_the_whole(base, share):
    # Given a base of no member or one, when one member changes, then the new base is written (a share of a
    # base under one member is counted against one member)
    assert Compaction(share, 8).compacts(base, [], 1) is True
