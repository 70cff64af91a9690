"""What a reader of the state store learns from the value digests: nothing, not even which members share a value.

A snapshot holds per member its Id and a 64-bit digest of the exported values. Keyed but computed from the
values alone (scheme d2), equal values gave equal digests: every member of a three-value segment fell into one
of three groups, and matching group sizes against a public name-frequency list recovered last names. Bound to
the Id (scheme d3), each member's digest is unrelated to every other's.
"""

from __future__ import annotations

import random
from collections import Counter

import duckdb
import pytest

from sync.dbt.contract import FieldMapping, Segment
from sync.readers.base import RelationRef
from sync.run.diff import DIGEST_KEY_VARIABLE, DIGEST_SCHEME, digest_subkey, effective_mapping_hash, prepare
from sync.run.digest_key import DigestKey
from tests.sync.test_diff import Snap

KEY = DigestKey("a-test-secret-of-enough-length-0123456789", "test")
# A public list of last names and their frequencies (people per 10,000), most frequent first.
PUBLIC_NAMES = [
    ("Smith", 828),
    ("Johnson", 655),
    ("Williams", 550),
    ("Brown", 487),
    ("Jones", 483),
    ("Garcia", 395),
    ("Miller", 385),
    ("Davis", 365),
    ("Rodriguez", 311),
    ("Martinez", 299),
]


def _segment(field: str) -> Segment:
    return Segment(
        unique_id="model.t.seg_t",
        name="seg_t",
        relation=RelationRef(None, "main", "seg_t"),
        mappings=(FieldMapping("endpoint_id", "Id"), FieldMapping("value", field)),
        exit="keep",
        segment_name=None,
        tags=(),
        path="",
    )


def _snapshot_digests(tmp_path, field: str, values: list[str]) -> dict[str, int]:
    """Id -> digest, as the committed snapshot of a segment with these members' values holds it."""
    con = duckdb.connect()
    try:
        con.execute("create table seg_t (endpoint_id varchar, value varchar)")
        con.executemany("insert into seg_t values (?, ?)", [(f"ep-{i:05d}", v) for i, v in enumerate(values)])
        prepared = prepare(con, _segment(field), "seg_t", previous=None, workdir=tmp_path / "run", digest_key=KEY)
        return dict(con.execute(f"select Id, digest from '{prepared.new_snapshot}'").fetchall())
    finally:
        con.close()


def _frequency_attack(digests: dict[str, int]) -> dict[str, str]:
    """The attack: group members by digest, rank the groups by size, give the i-th largest group the i-th most
    frequent public name, and every member beyond the list's length the most frequent name (the best blind guess)."""
    groups: dict[int, list[str]] = {}
    for member, digest in sorted(digests.items()):
        groups.setdefault(digest, []).append(member)
    ranked = sorted(groups.values(), key=lambda members: (-len(members), members[0]))
    guess = {}
    for rank, members in enumerate(ranked):
        name = PUBLIC_NAMES[rank][0] if rank < len(PUBLIC_NAMES) else PUBLIC_NAMES[0][0]
        guess.update({m: name for m in members})
    return guess


def _last_names(members: int) -> list[str]:
    """Members' last names drawn from the public frequencies (seeded: the same every run)."""
    names, weights = zip(*PUBLIC_NAMES)
    return random.Random(27).choices(names, weights=weights, k=members)


def test_given_844_members_sharing_3_values_when_snapshotted_then_every_digest_is_distinct(tmp_path):
    # Given a lifecycle segment: 844 members, 3 distinct values
    values = [("new", "active", "lapsed")[i % 3] for i in range(844)]
    # When the sync writes its snapshot
    digests = _snapshot_digests(tmp_path, "User.UserAttributes.LifecycleStage", values)
    # Then no two members share a digest: the share of distinct digests is 1.0 (it was 3/844 under scheme d2)
    assert len(set(digests.values())) / len(digests) == 1.0


def test_given_last_names_matched_to_a_public_frequency_list_then_the_attack_recovers_no_more_than_chance(tmp_path):
    # Given 281 members whose last names follow a public frequency list
    names = _last_names(281)
    truth = {f"ep-{i:05d}": n for i, n in enumerate(names)}
    chance = max(Counter(names).values())  # the best guess without the store: everyone is the most frequent name
    # When an attacker who reads the snapshot groups members by digest and matches group sizes to the list
    digests = _snapshot_digests(tmp_path, "User.UserAttributes.LastName", names)
    guess = _frequency_attack(digests)
    recovered = sum(guess[m] == truth[m] for m in truth)
    # Then every group is a single member, so group sizes say nothing ...
    assert set(Counter(digests.values()).values()) == {1}
    # ... and the attack recovers no more names than guessing blind
    assert recovered <= chance


def test_given_the_d2_construction_then_the_same_attack_would_have_recovered_more_than_chance(tmp_path):
    """The attack itself works: on digests of the values alone (scheme d2) it beats chance by far."""
    names = _last_names(281)
    truth = {f"ep-{i:05d}": n for i, n in enumerate(names)}
    chance = max(Counter(names).values())
    con = duckdb.connect()
    con.execute(f"set variable {DIGEST_KEY_VARIABLE} = ?", [digest_subkey(KEY.secret)])
    d2 = {
        m: con.execute(
            f"select (md5_number(getvariable('{DIGEST_KEY_VARIABLE}') || chr(0) || "
            "hash(?::varchar)::varchar) >> 64)::ubigint",
            [v],
        ).fetchall()[0][0]
        for m, v in truth.items()
    }
    con.close()
    recovered = sum(_frequency_attack(d2)[m] == truth[m] for m in truth)
    assert len(set(d2.values())) == len(set(names)) and recovered > 2 * chance


def test_given_a_snapshot_of_digest_scheme_d2_then_one_full_send_follows_and_then_none(tmp_path):
    # Given a snapshot committed under scheme d2 (its mapping hash names d2)
    assert DIGEST_SCHEME == "d3"
    con = duckdb.connect()
    seg = _segment("User.UserAttributes.Tier")
    con.execute("create table seg_t as select * from (values ('a', 'gold'), ('b', 'gold')) t(endpoint_id, value)")
    first = prepare(con, seg, "seg_t", previous=None, workdir=tmp_path / "r1", digest_key=KEY)
    now = effective_mapping_hash(con, seg, KEY.fingerprint)
    d2_hash = now.replace(f"-{DIGEST_SCHEME}-", "-d2-")
    assert d2_hash != now
    # When the next sync plans against it
    second = prepare(
        con, seg, "seg_t", previous=Snap(first.new_snapshot, 2, d2_hash), workdir=tmp_path / "r2", digest_key=KEY
    )
    # Then every member is sent once, saying why
    assert second.plan.full_refresh and second.plan.to_send == 2
    assert "digest's construction changed" in second.plan.full_refresh_reason
    # And the run after that, against the d3 snapshot it committed, sends nothing
    third = prepare(
        con,
        seg,
        "seg_t",
        previous=Snap(second.new_snapshot, 2, second.mapping_hash),
        workdir=tmp_path / "r3",
        digest_key=KEY,
    )
    assert (third.plan.full_refresh, third.plan.to_send) == (False, 0)
    con.close()


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_given_two_members_with_equal_values_then_their_digests_differ(tmp_path, keyed):
    con = duckdb.connect()
    con.execute("create table seg_t as select * from (values ('a', 'gold'), ('b', 'gold')) t(endpoint_id, value)")
    prepared = prepare(
        con,
        _segment("User.UserAttributes.Tier"),
        "seg_t",
        previous=None,
        workdir=tmp_path,
        digest_key=KEY if keyed else None,
    )
    digests = [r[0] for r in con.execute(f"select digest from '{prepared.new_snapshot}'").fetchall()]
    con.close()
    assert len(set(digests)) == 2
