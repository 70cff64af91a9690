"""The state delta derived from the classification: applied to the previous snapshot, it gives the committed one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from sync.run.diff import Expiry, delta_to_commit, save_delta_rows, snapshot_to_commit
from sync.state.deltas import DELETED, current_sql
from tests.sync.test_diff import Snap, make_segment, sync_once

DAY0 = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)
BEFORE = [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")]
# a unchanged, b changed, c left, e entered (d unchanged)
AFTER = [("a", "x"), ("b", "y2"), ("d", "w"), ("e", "v")]


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def expiry(day: int) -> Expiry:
    now = DAY0 + timedelta(days=day)
    return Expiry(now, now - timedelta(days=11))


def rows_of(con, sql: str) -> list[tuple]:
    return sorted(con.execute(f"select * from ({sql})").fetchall(), key=str)


def applied(con, previous: Path, delta: Path) -> list[tuple]:
    """The membership the state store reads back: the previous snapshot with the delta over it."""
    columns = [r[0] for r in con.execute(f"describe select * from read_parquet('{previous}')").fetchall()]
    return rows_of(con, current_sql(f"read_parquet('{previous}')", [f"read_parquet('{delta}')"], columns))


def committed(con, path: Path) -> list[tuple]:
    return rows_of(con, f"select * from read_parquet('{path}')")


@pytest.mark.parametrize(
    "rejected",
    [frozenset(), frozenset({"b", "c", "e"})],
    ids=["all-delivered", "changed-exited-and-entered-rejected"],
)
def test_the_delta_takes_the_previous_snapshot_to_the_committed_one(con, tmp_path, rejected):
    # Given a committed snapshot and a run with a changed, an exited and an entered member
    seg = make_segment(exit={"User.UserAttributes.Tier": "None"})
    _, _, snap = sync_once(con, seg, BEFORE, None, tmp_path, "r1")
    prepared, _, _ = sync_once(con, seg, AFTER, snap, tmp_path, "r2")
    # When the delta is derived from the run's classification (some rows rejected)
    save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, rejected)
    # Then the previous snapshot with the delta over it is exactly the snapshot committed
    assert delta is not None
    assert applied(con, snap.path, delta) == committed(con, snapshot_to_commit(con, prepared, rejected))
    # And it names only what changed: upserts for b and e, a tombstone for c, none of them when rejected
    named = dict(con.execute(f"select Id, {DELETED} from read_parquet('{delta}')").fetchall())
    assert named == ({} if rejected else {"b": False, "e": False, "c": True})


def test_a_first_sync_has_no_delta(con, tmp_path):
    # Given a first sync, when its delta is asked for, then there is none: the store writes a base
    prepared, _, _ = sync_once(con, make_segment(), BEFORE, None, tmp_path, "r1")
    save_delta_rows(con, prepared)
    assert delta_to_commit(con, prepared, frozenset()) is None


@pytest.mark.parametrize("full_refresh", [False, True], ids=["refresh-due", "full-refresh-stamps-all"])
def test_with_confirmation_times_the_restamped_members_are_in_the_delta(con, tmp_path, full_refresh):
    # Given a stamped snapshot from day 0, and a run on day 12 (everyone due) or a full refresh on day 1
    seg = make_segment()
    first, _, _ = sync_once(con, seg, BEFORE, None, tmp_path, "d0", expiry=expiry(0))
    snap = Snap(first.new_snapshot, 4, first.mapping_hash, confirmed=True)
    day = 1 if full_refresh else 12
    prepared, _, _ = sync_once(
        con, seg, AFTER, snap, tmp_path, f"d{day}", expiry=expiry(day), full_refresh=full_refresh
    )
    # When the delta is derived, one member rejected
    save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, frozenset({"d"}))
    # Then the stamped snapshot with the delta over it is the committed one, stamps included
    assert delta is not None
    assert applied(con, first.new_snapshot, delta) == committed(
        con, snapshot_to_commit(con, prepared, frozenset({"d"}))
    )


def in_doubt(con, tmp_path: Path, member_id: str) -> Path:
    """A file of Ids in doubt (an unconfirmed delivery) naming ``member_id``."""
    path = tmp_path / "dirty.parquet"
    con.execute(f"copy (select ? as Id) to '{path}' (format parquet)", [member_id])
    return path


@pytest.mark.parametrize(
    ("tracked", "expected"),
    [(False, {}), (True, {"a": False})],
    ids=["no-confirmation-times-no-row", "confirmation-times-restamp-it"],
)
def test_an_unchanged_member_resent_in_doubt_is_in_the_delta_only_when_it_is_restamped(
    con, tmp_path, tracked, expected
):
    # Given a committed snapshot (stamped on day 0 when confirmation times are kept)
    seg = make_segment()
    first, _, _ = sync_once(con, seg, BEFORE, None, tmp_path, "d0", expiry=expiry(0) if tracked else None)
    snap = Snap(first.new_snapshot, 4, first.mapping_hash, confirmed=tracked)
    # And a run on day 1 over the same rows, with the unchanged member a in doubt
    prepared, sent, _ = sync_once(
        con,
        seg,
        BEFORE,
        snap,
        tmp_path,
        "d1",
        dirty=in_doubt(con, tmp_path, "a"),
        expiry=expiry(1) if tracked else None,
    )
    assert [row["Id"] for row in sent] == ["a"] and prepared.plan.resent == 1
    # When the delta is derived
    save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, frozenset())
    # Then only a restamped a is in it: without confirmation times its row does not change
    assert delta is not None
    assert dict(con.execute(f"select Id, {DELETED} from read_parquet('{delta}')").fetchall()) == expected
    assert applied(con, first.new_snapshot, delta) == committed(con, prepared.new_snapshot)


def test_a_leaver_from_a_snapshot_without_confirmation_times_is_a_bare_tombstone(con, tmp_path):
    # Given a snapshot committed without confirmation times, and a run that keeps them where c leaves
    seg = make_segment()
    _, _, snap = sync_once(con, seg, BEFORE, None, tmp_path, "r1")
    assert not snap.confirmed
    prepared, _, _ = sync_once(con, seg, AFTER, snap, tmp_path, "r2", expiry=expiry(1))
    # When the delta is derived
    save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, frozenset())
    # Then c's tombstone carries its Id and neither a digest nor a confirmation time (the snapshot had none)
    assert delta is not None
    rows = con.execute(f"select Id, digest, confirmed_at, {DELETED} from read_parquet('{delta}')").fetchall()
    assert [r[:3] for r in rows if r[3]] == [("c", None, None)]
    # And every member is upserted, stamped now: an unstamped snapshot makes them all due
    now = expiry(1).now.replace(tzinfo=None)
    assert sorted((r[0], r[2]) for r in rows if not r[3]) == [(i, now) for i in ("a", "b", "d", "e")]
