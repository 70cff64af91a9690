"""Parts of the diff in Athena that need no lake: the digest's key table stored once a run, the Glue names
of a segment's tables, and a segment the runner prepared never handed to the lake's operations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from sync.run.diff import Plan, PreparedSegment
from sync.run.digest_key import DigestKey
from sync.run.pushdown import sql
from sync.run.pushdown.lake import LakeDiff, run_tables, table_tag


class KeyStore:
    """The state store's ``put_lake_key``, counted; it keeps what it was given."""

    def __init__(self, root: Path):
        self.root, self.stored = root, []

    def put_lake_key(self, fingerprint: str, parquet: Path) -> str:
        with duckdb.connect() as con:
            [(key,)] = con.execute(f"select {sql.KEY_COLUMN} from '{parquet}'").fetchall()
        self.stored.append((fingerprint, bytes(key)))
        return f"s3://state/keys/{fingerprint}/"


def test_the_key_table_is_stored_once_a_run_per_key_and_holds_the_subkey_not_the_secret(tmp_path):
    # Given a run diffing three segments in Athena with one digest key, and one more with another key
    state = KeyStore(tmp_path)
    lake = LakeDiff(queries=None, glue_client=None, state=state, destination_key="files", run_id="r1")
    key, other = DigestKey("k" * 32, "test"), DigestKey("o" * 32, "test")
    # When each segment asks for the key table's folder
    folders = [lake._key_location(k, tmp_path) for k in [key, key, key, other]]
    # Then each key is stored once, as its Athena subkey, and every segment reads it from its folder
    assert folders == [f"s3://state/keys/{key.fingerprint}/"] * 3 + [f"s3://state/keys/{other.fingerprint}/"]
    assert state.stored == [
        (key.fingerprint, sql.athena_subkey(key.secret)),
        (other.fingerprint, sql.athena_subkey(other.secret)),
    ]
    assert all(key.secret.encode() not in stored for _, stored in state.stored)
    # And the local copies are gone
    assert not any(tmp_path.rglob("key.parquet"))


def test_an_unkeyed_run_stores_the_subkey_of_no_secret_under_unkeyed(tmp_path):
    state = KeyStore(tmp_path)
    lake = LakeDiff(queries=None, glue_client=None, state=state, destination_key="files", run_id="r1")
    assert lake._key_location(None, tmp_path) == "s3://state/keys/unkeyed/"
    assert state.stored == [("unkeyed", sql.athena_subkey(""))]


def test_a_segment_the_runner_prepared_is_refused_by_the_lakes_operations(tmp_path):
    lake = LakeDiff(queries=None, glue_client=None, state=None, destination_key="files", run_id="r1")
    prepared = PreparedSegment(SimpleNamespace(name="seg_a"), Plan(segment="seg_a"), "", tmp_path, None, tmp_path, "m")
    for call in (lambda: lake.changes_sql(prepared), lambda: lake.sent_ids_sql(prepared)):
        with pytest.raises(TypeError) as refused:
            call()
        assert str(refused.value) == "seg_a was diffed on the runner, not in Athena"


@pytest.mark.parametrize(
    "destination,segment,other",
    [
        ("pinpoint", "web.users", ("pinpoint", "web_users")),
        ("pinpoint", "seg", ("pinpoint", "seg__2024")),
        ("pinpoint", "seg", ("customer_profiles", "seg")),
    ],
    ids=["names-that-fold-together", "a-name-that-extends-another", "another-destination"],
)
def test_a_segments_tables_are_told_apart_from_every_other_segments(destination, segment, other):
    run = "20261207t063000123z_abc123"
    mine = run_tables(destination, segment)
    assert mine.fullmatch(f"{table_tag(destination, segment, run)}_snap")
    assert not mine.fullmatch(f"{table_tag(*other, run)}_snap")


@pytest.mark.parametrize(
    "mapping_hash,in_lake",
    [
        (sql.mapping_hash("m1", "fp"), True),
        ("m1-athena", True),
        ("m1-3f2a9c-fp-d3-k2", False),
        ("athena-m1", False),
        ("m1", False),
        ("m1-athenas-fp", False),
    ],
    ids=["written-in-athena", "two-parts", "written-by-duckdb", "signature-first", "no-signature", "a-longer-word"],
)
def test_a_snapshot_was_diffed_in_the_lake_when_its_mapping_hash_carries_athenas_signature(mapping_hash, in_lake):
    assert sql.diffed_in_lake(mapping_hash) is in_lake
    assert sql.mapping_hash("m1", "") == "m1-athena-unkeyed-ad1-ak1"
