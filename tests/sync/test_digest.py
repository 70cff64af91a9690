"""The keyed value digest (scheme d3): what it is, what changes it, what it never shows."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from sync.dbt.contract import FieldMapping, Segment
from sync.readers.base import RelationRef
from sync.run.diff import DIGEST_KEY_VARIABLE, digest_sql, digest_subkey, effective_mapping_hash, prepare
from sync.run.digest_key import DigestKey
from tests.sync.test_diff import Snap

SECRET = "a-test-secret-of-enough-length-0123456789"
FIELDS = ("Id", "User.UserAttributes.Tier", "Attributes.Plan")


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute(f"set variable {DIGEST_KEY_VARIABLE} = ?", [digest_subkey(SECRET)])
    yield c
    c.close()


def _digest(con, tier, plan, member="ep-1") -> int:
    sql = digest_sql(FIELDS, keyed=True)
    return con.execute(
        f'select {sql} from (select ?::varchar as "Id", ?::varchar as "User.UserAttributes.Tier", '
        f'?::varchar as "Attributes.Plan")',
        [member, tier, plan],
    ).fetchall()[0][0]


def test_given_values_when_digested_then_it_is_md5_over_the_subkey_and_the_hash_of_id_and_values(con):
    # Given a member's Id, two values and DuckDB's positional hash of them
    h = con.execute("select hash('ep-1'::varchar, 'gold'::varchar, 'pro'::varchar)").fetchall()[0][0]
    # When DuckDB computes the keyed digest
    digest = _digest(con, "gold", "pro")
    # Then it is the upper half of md5_number over subkey, NUL, H in decimal (hashlib agrees)
    md5 = hashlib.md5(f"{digest_subkey(SECRET)}\0{h}".encode()).digest()
    assert digest == int.from_bytes(md5[8:], "little")


def test_given_the_subkey_then_one_md5_block_holds_the_whole_input():
    # 64-byte blocks, 9 bytes of padding: at most 55 bytes of input fit one block
    assert len(digest_subkey(SECRET)) + 1 + len(str(2**64 - 1)) <= 55


@pytest.mark.parametrize(
    "a,b",
    [
        pytest.param(("gold", "pro"), ("gold", "free"), id="second-value"),
        pytest.param(("gold", "pro"), ("silver", "pro"), id="first-value"),
        pytest.param((None, "pro"), ("", "pro"), id="null-vs-empty"),
        pytest.param(("pro", "gold"), ("gold", "pro"), id="swapped-columns"),
        pytest.param(("a,b", "c"), ("a", "b,c"), id="moved-separator"),
    ],
)
def test_given_different_values_then_the_digests_differ(con, a, b):
    assert _digest(con, *a) != _digest(con, *b)


def test_given_another_key_then_the_same_values_digest_differently(con):
    # Given one row digested under two keys
    first = _digest(con, "gold", "pro")
    con.execute(f"set variable {DIGEST_KEY_VARIABLE} = ?", [digest_subkey(SECRET + "-other")])
    # Then a reader without the key cannot reproduce the digest from guessed values
    assert _digest(con, "gold", "pro") != first


def test_given_the_key_then_neither_it_nor_the_subkey_appears_in_sql():
    sql = digest_sql(FIELDS, keyed=True)
    assert SECRET not in sql and digest_subkey(SECRET) not in sql and "getvariable" in sql


def test_given_a_snapshot_of_the_earlier_digest_scheme_then_a_full_send_says_why(con, tmp_path):
    # Given a snapshot committed by the earlier scheme (mapping hash without the scheme part)
    seg = Segment(
        unique_id="model.t.seg_t",
        name="seg_t",
        relation=RelationRef(None, "main", "seg_t"),
        mappings=tuple(FieldMapping(c, f) for c, f in zip(("endpoint_id", "tier", "plan"), FIELDS)),
        exit="keep",
        segment_name=None,
        tags=(),
        path="",
    )
    key = DigestKey(SECRET, "test")
    con.execute("create table seg_t as select 'a' as endpoint_id, 'gold' as tier, 'pro' as plan")
    first = prepare(con, seg, "seg_t", previous=None, workdir=tmp_path / "r1", digest_key=key)
    old_hash = effective_mapping_hash(con, seg, key.fingerprint).rsplit("-", 2)[0]
    # When the next sync plans against it
    plan = prepare(
        con, seg, "seg_t", previous=Snap(first.new_snapshot, 1, old_hash), workdir=tmp_path / "r2", digest_key=key
    ).plan
    # Then every member is sent, and the reason names the digest's construction
    assert plan.full_refresh and "digest's construction changed" in plan.full_refresh_reason


def test_given_a_snapshot_of_the_earlier_key_scheme_then_it_is_rekeyed_and_nothing_more_is_sent(con, tmp_path):
    """Before key scheme k2v2, k2 was hash(Id, salt): DuckDB combines hash(Id) -- k1 -- with the salt's hash,
    so k2 was a function of k1 and the key held 64 bits. A snapshot of that scheme is re-keyed from its Ids."""
    seg = Segment(
        unique_id="model.t.seg_t",
        name="seg_t",
        relation=RelationRef(None, "main", "seg_t"),
        mappings=tuple(FieldMapping(c, f) for c, f in zip(("endpoint_id", "tier", "plan"), FIELDS)),
        exit="keep",
        segment_name=None,
        tags=(),
        path="",
    )
    key = DigestKey(SECRET, "test")
    con.execute(
        "create table seg_t as select * from (values ('a', 'gold', 'pro'), ('b', 'gold', 'pro'), "
        "('c', 'silver', 'pro')) t(endpoint_id, tier, plan)"
    )
    first = prepare(con, seg, "seg_t", previous=None, workdir=tmp_path / "r1", digest_key=key)
    # Given that snapshot rewritten with the earlier k2, under the earlier mapping hash (no key scheme part)
    old = tmp_path / "old.parquet"
    con.execute(f"copy (select Id, k1, hash(Id, 'lakeseg') as k2, digest from '{first.new_snapshot}') to '{old}'")
    assert (
        con.execute(
            f"select count(*) from '{old}' o join '{first.new_snapshot}' n using (Id) where o.k2 = n.k2"
        ).fetchall()[0][0]
        == 0
    )
    old_hash = effective_mapping_hash(con, seg, key.fingerprint).rsplit("-", 1)[0]
    # When one member changes and the next sync plans against it
    con.execute("update seg_t set tier = 'bronze' where endpoint_id = 'c'")
    plan = prepare(con, seg, "seg_t", previous=Snap(old, 3, old_hash), workdir=tmp_path / "r2", digest_key=key).plan
    # Then the members are matched by Id as before: one change, no exits, no full send
    assert (plan.full_refresh, plan.entered, plan.changed, plan.exited, plan.unchanged) == (False, 0, 1, 0, 2)


def test_the_keys_second_half_is_not_a_function_of_the_first(con):
    """DuckDB's hash(x, salt) is g(hash(x)) xor h(salt): under two salts it differs by a constant, whatever x
    (so the earlier k2 = hash(Id, salt) was a function of k1). k2 hashes other bytes: no such constant."""
    from sync.run.diff import k2_sql

    rows = con.execute(
        f"select xor(hash(id, 'lakeseg'), hash(id, 'x')), xor({k2_sql('id')}, "
        f"hash(id || chr(0) || 'x')) from (select 'ep-' || i::varchar as id from range(50) t(i))"
    ).fetchall()
    assert len({r[0] for r in rows}) == 1  # the earlier scheme: the salt's part does not depend on the Id
    assert len({r[1] for r in rows}) == 50
