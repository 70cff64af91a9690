"""A base Athena wrote (format-3 pointer, ``lake_base``), read back by a runner: each file only as committed.

The files sit in a moto S3 bucket; the store fetches each with ``GetObject IfMatch`` on the ETag its pointer
recorded and checks the size, columns and row count, so a file changed, gone or foreign since the commit is
refused naming it, never read as fewer members."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from sync.core.errors import ConfigError, SegmentRefused
from sync.state import base
from sync.state.base import SNAPSHOT_SCHEMA_LAKE
from sync.state.deltas import Compaction
from sync.state.s3 import S3StateStore
from tests.state.test_state_store import SNAPSHOT_READERS

FOLDER = "p/snapshots/files/seg_a"
LAKE = "lake-run-2-0123abcd"
POINTER = f"s3://state-b/{FOLDER}/current.json"
WHERE = f"files/seg_a at {POINTER}"


@pytest.fixture
def s3(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="state-b")
        yield client


@pytest.fixture
def store(s3):
    return S3StateStore("s3://state-b/p", s3)


def part_file(tmp_path: Path, name: str, ids: list[str], columns: str | None = None) -> Path:
    path = tmp_path / name
    cols = columns or "Id, 1::bigint as k1, 2::bigint as k2, 3::bigint as digest"
    values = ", ".join(f"('{i}')" for i in ids) or "('none')"
    where = "" if ids else " where false"
    with duckdb.connect() as con:
        con.execute(f"copy (select {cols} from (values {values}) t(Id){where}) to '{path}' (format parquet)")
    return path


def commit(s3, tmp_path, parts: dict[str, list[str]], rows: int | None = None, **columns) -> list[dict]:
    """Upload ``parts`` (file name -> Ids) under the lake folder and point a format-3 pointer at them."""
    named = []
    for name, ids in parts.items():
        key = f"{FOLDER}/{LAKE}/{name}"
        s3.upload_file(str(part_file(tmp_path, name, ids, columns.get(name))), "state-b", key)
        head = s3.head_object(Bucket="state-b", Key=key)
        named.append({"file": key.removeprefix("p/"), "etag": head["ETag"], "size": head["ContentLength"]})
    total = sum(len(ids) for ids in parts.values())
    doc = {
        "format": 3,
        "rows": total if rows is None else rows,
        "run_id": "run-2",
        "fields": ["Id"],
        "lake_base": {"folder": LAKE, "parts": named, "rows": total if rows is None else rows},
    }
    s3.put_object(Bucket="state-b", Key=f"{FOLDER}/current.json", Body=json.dumps(doc, indent=2).encode())
    return named


def pointer_doc(s3) -> dict:
    """The segment's committed pointer as stored: JSON indented for an operator to read."""
    text = s3.get_object(Bucket="state-b", Key=f"{FOLDER}/current.json")["Body"].read().decode()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2)
    return doc


def load(store, workdir):
    return store.load_snapshot("files", "seg_a", workdir)


def members(snapshot) -> list[str]:
    with duckdb.connect() as con:
        return [r[0] for r in con.execute(f"select Id from '{snapshot.path}' order by Id").fetchall()]


def test_a_base_of_several_files_is_read_whole_into_a_private_folder(store, s3, tmp_path):
    # Given a base Athena wrote as two files
    commit(s3, tmp_path, {"part-0": ["a", "b"], "part-1": ["c"]})
    # When a runner loads it, twice into the same work folder
    work = tmp_path / "w"
    load(store, work)
    snapshot = load(store, work)
    # Then every member is there, and the downloaded files sit in a folder only the runner can read
    assert members(snapshot) == ["a", "b", "c"] and snapshot.rows == 3
    folder = work / "lake-base"
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("damage", ["rewritten", "deleted"])
def test_a_file_changed_or_gone_since_its_commit_is_refused_naming_it(store, s3, tmp_path, damage):
    # Given a committed base, then one of its files rewritten (a new ETag) or deleted
    named = commit(s3, tmp_path, {"part-0": ["a", "b"], "part-1": ["c"]})
    key = f"p/{named[1]['file']}"
    if damage == "rewritten":
        s3.upload_file(str(part_file(tmp_path, "other", ["c", "d"])), "state-b", key)
        assert s3.head_object(Bucket="state-b", Key=key)["ETag"] != named[1]["etag"]
    else:
        s3.delete_object(Bucket="state-b", Key=key)
    # When it is loaded, then it is refused naming the file, and not read as fewer members
    with pytest.raises(SegmentRefused) as refused:
        load(store, tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot data s3://state-b/{key} for {WHERE} is missing or changed since it was committed; refusing to "
        "treat it as empty. Restore it, or delete it to resend the whole segment"
    )


def test_a_file_of_another_size_than_committed_is_refused_even_with_its_etag(store, s3, tmp_path):
    # Given a pointer whose recorded size differs from the file's (same ETag)
    named = commit(s3, tmp_path, {"part-0": ["a"]})
    doc = pointer_doc(s3)
    doc["lake_base"]["parts"][0]["size"] = named[0]["size"] + 1
    s3.put_object(Bucket="state-b", Key=f"{FOLDER}/current.json", Body=json.dumps(doc).encode())
    # Then it is refused as changed
    with pytest.raises(SegmentRefused, match="is missing or changed since it was committed"):
        load(store, tmp_path / "w")


def test_a_file_with_other_columns_is_refused_naming_them(store, s3, tmp_path):
    commit(s3, tmp_path, {"part-0": ["a"]}, **{"part-0": "Id, 1 as k1"})
    with pytest.raises(SegmentRefused) as refused:
        load(store, tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot data s3://state-b/{FOLDER}/{LAKE}/part-0 for {WHERE} has columns {{'Id': 'VARCHAR', 'k1': 'INTEGER'}}"
    )


def test_files_that_hold_other_rows_than_the_pointer_says_are_refused_counting_all_of_them(store, s3, tmp_path):
    # Given two files of 2 and 1 rows, and a pointer that says 4
    commit(s3, tmp_path, {"part-0": ["a", "b"], "part-1": ["c"]}, rows=4)
    with pytest.raises(SegmentRefused) as refused:
        load(store, tmp_path / "w")
    assert str(refused.value) == f"snapshot data for {WHERE} has 3 rows, its pointer says 4"


def test_a_base_of_no_members_reads_as_an_empty_typed_table(store, s3, tmp_path, monkeypatch):
    # Given a base Athena wrote when every member had left: no file at all
    commit(s3, tmp_path, {})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    snapshot = load(store, tmp_path / "w")
    # Then it reads as no members, with the lake snapshot's columns, from a file inside the work folder only
    assert snapshot.rows == 0 and members(snapshot) == []
    assert list(cwd.iterdir()) == [] and (tmp_path / "w" / "lake-base" / "empty.parquet").is_file()
    with duckdb.connect() as con:
        described = con.execute(f"describe select * from '{snapshot.path}'").fetchall()
    assert {r[0]: r[1] for r in described} == SNAPSHOT_SCHEMA_LAKE


def test_a_base_that_names_no_file_for_some_members_is_refused(store, s3, tmp_path):
    commit(s3, tmp_path, {}, rows=2)
    with pytest.raises(SegmentRefused) as refused:
        load(store, tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot pointer for {WHERE} names no file for 2 members. "
        "Restore it, or delete it to resend the whole segment"
    )


@pytest.mark.parametrize("reader", sorted(SNAPSHOT_READERS))
@pytest.mark.parametrize(
    "elsewhere",
    ["snapshots/files/seg_b/lake-run-2-0123abcd/part-0", "lake-run-2-0123abcd/part-0"],
    ids=["another-segments-folder", "the-state-stores-root"],
)
def test_a_pointer_naming_a_file_outside_its_base_folder_is_refused_naming_it(store, s3, tmp_path, elsewhere, reader):
    # Given a pointer whose base names a file in another folder (a damaged or hand-edited pointer)
    named = commit(s3, tmp_path, {"part-0": ["a"]})
    doc = pointer_doc(s3)
    doc["lake_base"]["parts"][0]["file"] = elsewhere
    s3.put_object(Bucket="state-b", Key=f"{FOLDER}/current.json", Body=json.dumps(doc).encode())
    assert named
    # Then it is refused before anything is read, naming the file and the folder it must be in
    with pytest.raises(SegmentRefused) as refused:
        SNAPSHOT_READERS[reader](store, tmp_path)
    assert str(refused.value) == (
        f"snapshot pointer for {WHERE} names {elsewhere!r}, outside its folder snapshots/files/seg_a/{LAKE}/; "
        "refusing to read it. Restore it, or delete it to resend the whole segment"
    )


@pytest.mark.parametrize("reader", sorted(SNAPSHOT_READERS))
def test_a_corrupt_pointer_is_refused_naming_it_whoever_reads_it(store, s3, tmp_path, reader):
    s3.put_object(Bucket="state-b", Key=f"{FOLDER}/current.json", Body=b'{"format": 3, "rows": "many"}')
    with pytest.raises(SegmentRefused) as refused:
        SNAPSHOT_READERS[reader](store, tmp_path)
    assert str(refused.value).startswith(f"snapshot pointer for {WHERE} is corrupt (")
    assert str(refused.value).endswith(
        "); refusing to treat it as empty. Restore it, or delete it to resend the whole segment"
    )


# ---- a delta committed beside a base Athena wrote ------------------------------------------------------------------
def delta_file(tmp_path: Path, upserts: list[str], tombstones: list[str]) -> Path:
    path = tmp_path / "delta.parquet"
    values = ", ".join([f"('{i}', false)" for i in upserts] + [f"('{i}', true)" for i in tombstones])
    with duckdb.connect() as con:
        con.execute(
            "copy (select Id, 1::bigint as k1, 2::bigint as k2, 3::bigint as digest, deleted "
            f"from (values {values}) t(Id, deleted)) to '{path}' (format parquet)"
        )
    return path


def commit_delta(store, tmp_path, previous, run_id: str = "run-3"):
    store.commit_lake_delta(
        "files",
        "seg_a",
        delta_file(tmp_path, ["c"], ["a"]),
        previous=previous,
        fields=("Id", "Attributes.Plan"),
        mapping_hash="m1",
        rows=2,
        run_id=run_id,
    )


def test_a_delta_beside_a_base_athena_wrote_is_named_by_a_pointer_holding_its_run_fields_and_time(
    store, s3, tmp_path, monkeypatch
):
    # Given a base Athena wrote, as the run read it
    commit(s3, tmp_path, {"part-0": ["a", "b"]})
    previous = store.read_snapshot("files", "seg_a")
    # When the run commits its change (one upsert, one tombstone) as a delta
    monkeypatch.setattr(base, "utcnow", lambda: datetime(2026, 12, 1, 5, 0, 1, tzinfo=UTC))
    commit_delta(store, tmp_path, previous)
    # Then the pointer names the base and the delta, with the run's fields, mapping, row count and commit time
    doc = pointer_doc(s3)
    assert (doc["rows"], doc["fields"], doc["mapping_hash"], doc["run_id"]) == (
        2,
        ["Id", "Attributes.Plan"],
        "m1",
        "run-3",
    )
    assert doc["committed_at"] == "2026-12-01T05:00:01+00:00"
    [delta] = doc["deltas"]
    assert (delta["upserts"], delta["tombstones"]) == (1, 1)
    assert delta["file"].startswith("snapshots/files/seg_a/delta-run-3-") and doc["lake_base"]["folder"] == LAKE


def test_the_runner_commits_a_new_base_after_a_base_athena_wrote_never_a_delta_beside_it(store, s3, tmp_path):
    # Given a base Athena wrote, loaded by a runner that diffs the segment itself (on DuckDB)
    commit(s3, tmp_path, {"part-0": ["a", "b"]})
    snapshot = load(store, tmp_path / "w")
    # When the runner commits the membership it worked out, under the same mapping
    store.commit_snapshot(
        "files", "seg_a", snapshot.path, fields=("Id",), mapping_hash=snapshot.mapping_hash, rows=2, run_id="run-3"
    )
    # Then it is a new base of the runner's (a format-1 pointer, which has no format key, naming one file), and it
    # loads as committed
    doc = pointer_doc(s3)
    assert "format" not in doc and "lake_base" not in doc and "deltas" not in doc
    assert doc["file"].startswith("snapshots/files/seg_a/run-3-")
    assert members(load(store, tmp_path / "w2")) == ["a", "b"]


def test_a_delta_is_not_committed_once_the_pointer_moved_since_the_run_read_it(store, s3, tmp_path):
    # Given a base as the run read it, then its pointer rewritten by another run
    commit(s3, tmp_path, {"part-0": ["a", "b"]})
    previous = store.read_snapshot("files", "seg_a")
    commit(s3, tmp_path, {"part-0": ["a", "b", "c"]})
    # When the run commits, then nothing moves and the refusal says the delivery stays in doubt
    with pytest.raises(SegmentRefused) as refused:
        commit_delta(store, tmp_path, previous)
    assert str(refused.value) == (
        "the snapshot pointer of files/seg_a moved since this run read it; nothing committed (what was sent stays "
        "in doubt and is sent again next run)"
    )
    assert pointer_doc(s3)["rows"] == 3


def test_a_delta_of_a_run_whose_id_cannot_name_a_file_is_refused_naming_the_run_id(store, s3, tmp_path):
    commit(s3, tmp_path, {"part-0": ["a", "b"]})
    with pytest.raises(ConfigError) as refused:
        commit_delta(store, tmp_path, store.read_snapshot("files", "seg_a"), run_id="../r")
    assert str(refused.value) == "run id name '../r' cannot be used in state keys (letters, digits, _ . - only)"


def compacting(store, s3, tmp_path, written: dict[str, bytes] | None):
    """Compact past a share of half the base; ``written``: the files Athena's compaction writes (name -> bytes),
    None to write the membership as one part. Returns the calls made."""
    store.compaction = Compaction(max_share=0.5, max_deltas=8)
    calls = []

    def compact(location: str, files: list[str]) -> None:
        calls.append((location, files))
        prefix = location.removeprefix("s3://state-b/")
        out = (
            written if written is not None else {"part-0": part_file(tmp_path, "c0", ["b", "c", "d", "e"]).read_bytes()}
        )
        for name, body in out.items():
            s3.put_object(Bucket="state-b", Key=f"{prefix}{name}", Body=body)

    return compact, calls


def commit_compacting(store, tmp_path, previous, compact) -> None:
    """Commit one upsert and one tombstone over a base of four members, with Athena's compaction ``compact``."""
    store.commit_lake_delta(
        "files",
        "seg_a",
        delta_file(tmp_path, ["e"], ["a"]),
        previous=previous,
        fields=("Id",),
        mapping_hash="m1",
        rows=4,
        run_id="run-3",
        compact=compact,
    )


def test_a_delta_of_tombstones_counts_towards_compaction_and_the_new_base_replaces_every_file(store, s3, tmp_path):
    # Given a base of four members, and compaction once the deltas reach half the base's rows
    commit(s3, tmp_path, {"part-0": ["a", "b", "c", "d"]})
    previous = store.read_snapshot("files", "seg_a")
    compact, calls = compacting(store, s3, tmp_path, None)
    # When a run commits one upsert and one tombstone (two rows: half the base)
    commit_compacting(store, tmp_path, previous, compact)
    # Then Athena compacted the base and the delta into a fresh folder, and the pointer names that base alone
    [(location, files)] = calls
    assert location.startswith(f"s3://state-b/{FOLDER}/lake-run-3-") and len(files) == 2
    doc = pointer_doc(s3)
    assert doc["deltas"] == [] and doc["lake_base"]["rows"] == 4
    assert doc["lake_base"]["folder"] != LAKE and location.endswith(f"/{doc['lake_base']['folder']}/")


@pytest.mark.parametrize(
    "written, refused",
    [({}, True), ({"part-0": b""}, True), ({"part-0": b"x"}, False), ({"part-0": b"", "part-1": b"x"}, False)],
    ids=["no-file", "an-empty-file", "a-file-of-one-byte", "an-empty-file-beside-one-of-one-byte"],
)
def test_a_compaction_that_wrote_nothing_for_its_members_is_refused_and_nothing_is_committed(
    store, s3, tmp_path, written, refused
):
    # Given a base, and an Athena compaction that writes no file, an empty one, or one of a single byte
    commit(s3, tmp_path, {"part-0": ["a", "b", "c", "d"]})
    previous = store.read_snapshot("files", "seg_a")
    compact, _calls = compacting(store, s3, tmp_path, written)
    if not refused:  # a file with any byte in it is what Athena wrote: the pointer names it
        commit_compacting(store, tmp_path, previous, compact)
        doc = pointer_doc(s3)
        assert [p["size"] for p in doc["lake_base"]["parts"]] == [1]
        return
    # When the run commits, then it is refused naming the members, and the pointer did not move
    with pytest.raises(SegmentRefused) as why:
        commit_compacting(store, tmp_path, previous, compact)
    assert str(why.value) == (
        f"the compaction of {FOLDER.removeprefix('p/')} wrote no file for 4 members; nothing committed (what was "
        "sent stays in doubt and is sent again next run)"
    )
    assert pointer_doc(s3)["run_id"] == "run-2"


def test_a_compaction_deletes_the_runners_base_its_old_pointer_named_whatever_the_files_name(store, s3, tmp_path):
    # Given a runner's base named by its pointer alone (a name no commit makes today: an older release's, a restore's)
    key = f"{FOLDER}/snapshot.parquet"
    s3.upload_file(str(part_file(tmp_path, "snapshot.parquet", ["a", "b", "c", "d"])), "state-b", key)
    old = {"file": key.removeprefix("p/"), "sha256": "0" * 64, "rows": 4, "fields": ["Id"], "run_id": "run-1"}
    s3.put_object(Bucket="state-b", Key=f"{FOLDER}/current.json", Body=json.dumps(old).encode())
    previous = store.read_snapshot("files", "seg_a")
    compact, _calls = compacting(store, s3, tmp_path, None)
    # When the diff in Athena commits a change past the compaction threshold
    commit_compacting(store, tmp_path, previous, compact)
    # Then the pointer names Athena's new base alone, and the file the old pointer named is gone
    doc = pointer_doc(s3)
    assert doc["format"] == 3 and doc["deltas"] == []
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="state-b", Prefix=f"{FOLDER}/")["Contents"]]
    assert key not in listed and all(k.endswith("current.json") or "/lake-run-3-" in k for k in listed)


def test_a_lake_delta_stands_when_clearing_its_in_doubt_record_fails(store, s3, tmp_path, monkeypatch):
    # Given a base Athena wrote, and a store that cannot clear in-doubt records
    commit(s3, tmp_path, {"part-0": ["a", "b"]})
    previous = store.read_snapshot("files", "seg_a")

    def fail(*args, **kwargs):
        raise OSError("state store unreachable")

    monkeypatch.setattr(store, "clear_in_doubt", fail)
    # When the run commits its delta, then the commit stands (the record is superseded by the commit anyway)
    commit_delta(store, tmp_path, previous)
    assert pointer_doc(s3)["run_id"] == "run-3"
