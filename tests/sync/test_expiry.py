"""Per-member confirmation times for destinations whose data expires (Customer Profiles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from sync.run.diff import Expiry, snapshot_to_commit
from tests.sync.test_diff import make_segment, sync_once

DAY0 = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)
REFRESH_AFTER = timedelta(days=11)


@dataclass
class Snap:
    path: Path
    rows: int
    mapping_hash: str
    confirmed: bool = True


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def expiry(day: int) -> Expiry:
    now = DAY0 + timedelta(days=day)
    return Expiry(now, now - REFRESH_AFTER)


def stamps(con, path: Path) -> dict[str, datetime]:
    return dict(con.execute(f"select Id, confirmed_at from read_parquet('{path}')").fetchall())


def run(con, seg, rows, previous, tmp_path, day, **kw):
    prepared, sent, snap = sync_once(con, seg, rows, previous, tmp_path, f"d{day}", expiry=expiry(day), **kw)
    return prepared, sorted(r["Id"] for r in sent), Snap(snap.path, snap.rows, snap.mapping_hash)


def test_unchanged_members_are_resent_only_when_due(con, tmp_path):
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold"), ("c", "Silver")]
    # Given day 0: everyone sent and stamped
    p0, sent, snap = run(con, seg, rows, None, tmp_path, 0)
    assert sent == ["a", "b", "c"] and set(stamps(con, snap.path).values()) == {DAY0.replace(tzinfo=None)}
    # When c changes on day 4
    p4, sent, snap = run(con, seg, [("a", "Gold"), ("b", "Gold"), ("c", "Gold")], snap, tmp_path, 4)
    assert sent == ["c"] and p4.plan.refresh == 0
    # Then on day 10 nothing is due, on day 11 a and b are (their stamp is 11 days old), c is not
    p10, sent, snap10 = run(con, seg, [("a", "Gold"), ("b", "Gold"), ("c", "Gold")], snap, tmp_path, 10)
    assert sent == [] and p10.plan.refresh == 0 and p10.plan.to_send == 0
    p11, sent, snap11 = run(con, seg, [("a", "Gold"), ("b", "Gold"), ("c", "Gold")], snap10, tmp_path, 11)
    assert sent == ["a", "b"] and p11.plan.refresh == 2 and p11.plan.unchanged == 1 and p11.plan.to_send == 2
    day11, day4 = (DAY0 + timedelta(days=11)).replace(tzinfo=None), (DAY0 + timedelta(days=4)).replace(tzinfo=None)
    assert stamps(con, snap11.path) == {"a": day11, "b": day11, "c": day4}


def test_a_snapshot_without_stamps_makes_every_member_due(con, tmp_path):
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold")]
    _, _, plain = sync_once(con, seg, rows, None, tmp_path, "plain")  # no expiry: no confirmed_at column
    prepared, sent, _ = run(
        con, seg, rows, Snap(plain.path, plain.rows, plain.mapping_hash, confirmed=False), tmp_path, 1
    )
    assert sent == ["a", "b"] and prepared.plan.refresh == 2


def test_a_rejected_member_keeps_its_previous_stamp(con, tmp_path):
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold")]
    _, _, snap = run(con, seg, rows, None, tmp_path, 0)
    prepared, sent, _ = run(con, seg, rows, snap, tmp_path, 11)
    assert sent == ["a", "b"]
    committed = snapshot_to_commit(con, prepared, frozenset({"b"}))
    got = stamps(con, committed)
    assert got["a"] == (DAY0 + timedelta(days=11)).replace(tzinfo=None) and got["b"] == DAY0.replace(tzinfo=None)


def test_a_full_refresh_stamps_every_member_now(con, tmp_path):
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold")]
    _, _, snap = run(con, seg, rows, None, tmp_path, 0)
    # When day 3 is a --full-refresh of unchanged members
    p3, sent, snap3 = run(con, seg, rows, snap, tmp_path, 3, full_refresh=True)
    # Then both are sent and both carry day 3's stamp
    day3 = (DAY0 + timedelta(days=3)).replace(tzinfo=None)
    assert sent == ["a", "b"] and stamps(con, snap3.path) == {"a": day3, "b": day3}


def test_stamps_are_utc_whatever_the_machines_time_zone(con, tmp_path, new_york):
    _, _, snap = run(con, make_segment(), [("a", "Gold")], None, tmp_path, 0)
    assert stamps(con, snap.path) == {"a": DAY0.replace(tzinfo=None)}


def test_a_rejected_member_of_a_snapshot_without_stamps_stays_due(con, tmp_path):
    # Given a previous snapshot written without stamps, and a stamped run whose platform rejects b
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold")]
    _, _, plain = sync_once(con, seg, rows, None, tmp_path, "plain")
    prepared, sent, _ = run(
        con, seg, rows, Snap(plain.path, plain.rows, plain.mapping_hash, confirmed=False), tmp_path, 1
    )
    committed = snapshot_to_commit(con, prepared, frozenset({"b"}))
    # Then a is stamped now and b keeps no stamp: it is due again next run
    assert stamps(con, committed) == {"a": (DAY0 + timedelta(days=1)).replace(tzinfo=None), "b": None}


def test_a_destination_without_expiry_commits_no_stamps_even_over_a_stamped_snapshot(con, tmp_path):
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Gold")]
    _, _, stamped = run(con, seg, rows, None, tmp_path, 0)
    prepared, _, _ = sync_once(con, seg, [("a", "Gold"), ("b", "Silver")], stamped, tmp_path, "plain")
    committed = snapshot_to_commit(con, prepared, frozenset({"b"}))
    columns = [r[0] for r in con.execute(f"describe select * from read_parquet('{committed}')").fetchall()]
    assert columns == ["Id", "k1", "k2", "digest"]


def test_a_snapshot_keyed_the_old_way_keeps_its_stamps_when_re_keyed(con, tmp_path):
    # Given members stamped on day 0 in a snapshot whose Ids were keyed by an older key scheme
    seg = make_segment()
    rows = [("a", "Gold"), ("b", "Silver")]
    _, _, snap = run(con, seg, rows, None, tmp_path, 0)
    old_scheme = Snap(snap.path, snap.rows, snap.mapping_hash.rsplit("-", 1)[0] + "-k2v1")
    # When nothing changed on day 4
    p4, sent, snap4 = run(con, seg, rows, old_scheme, tmp_path, 4)
    # Then the snapshot is re-keyed without a full send, nothing is due, and the day-0 stamps are kept
    assert (sent, p4.plan.full_refresh, p4.plan.refresh, p4.plan.unchanged) == ([], False, 0, 2)
    assert stamps(con, snap4.path) == {"a": DAY0.replace(tzinfo=None), "b": DAY0.replace(tzinfo=None)}
