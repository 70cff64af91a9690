"""The state store's JSON documents through their pydantic models (sync/state/documents.py): a document in the
format written before the models reads the same, a compare-and-swap still compares the exact bytes it read, and
what is written now reads back with the keys the earlier code wrote."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sync.core.errors import SegmentRefused
from sync.run.lease import _load as load_lease
from sync.state import open_state_store
from sync.state.base import QuarantinedRow, sha256_file
from sync.state.documents import DocumentError, LockDocument, NamedFiles, SnapshotPointer, parse

FOLDER = "snapshots/files/seg_a"


@pytest.fixture
def store(tmp_path):
    return open_state_store(str(tmp_path / "state"))


def data_file(store, name: str, ids: list[str], snapshot: bool = True) -> tuple[str, str]:
    """A data file in the segment's folder: (its key, its sha256)."""
    path = Path(store.root) / FOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = "Id, 1::ubigint as k1, 2::ubigint as k2, 3::ubigint as digest" if snapshot else "Id"
    with duckdb.connect() as con:
        con.execute(
            f"copy (select {columns} from (select unnest(?::varchar[]) as Id)) to '{path}' (format parquet)", [ids]
        )
    return f"{FOLDER}/{name}", sha256_file(path)


def today(doc: dict, indent: int | None = 2) -> bytes:
    """A document as the code before the models wrote it (json.dumps)."""
    return json.dumps(doc, indent=indent).encode()


def test_a_snapshot_pointer_in_todays_format_reads_every_detail(store, tmp_path):
    # Given a pointer exactly as today's code writes it, with a quarantine entry from before codes
    key, sha = data_file(store, "run-1-abcd1234.parquet", ["a", "b"])
    pointer = {
        "file": key,
        "sha256": sha,
        "rows": 2,
        "fields": ["Id", "Attributes.A"],
        "mapping_hash": "m1",
        "run_id": "run-1",
        "committed_at": "2026-11-26T08:00:00+00:00",
        "quarantine": [{"id": "b", "message": "refused", "first_run_id": "r0", "last_run_id": "run-1", "attempts": 2}],
    }
    (Path(store.root) / FOLDER / "current.json").write_bytes(today(pointer))
    # When it is loaded
    snap = store.load_snapshot("files", "seg_a", tmp_path / "w")
    # Then every detail is read, the message dropped for the code
    assert (snap.fields, snap.mapping_hash, snap.rows, snap.run_id, snap.committed_at) == (
        ("Id", "Attributes.A"),
        "m1",
        2,
        "run-1",
        "2026-11-26T08:00:00+00:00",
    )
    assert snap.quarantine == (QuarantinedRow("b", "platform-refused", "r0", "run-1", 2),)


def test_a_pointer_written_now_holds_the_keys_todays_code_reads(store, tmp_path):
    # Given a commit through the model
    key, _ = data_file(store, "source.parquet", ["a"])
    quarantine = (QuarantinedRow("a", "platform-refused", "r0", "run-2", 1),)
    store.commit_snapshot(
        "files",
        "seg_a",
        Path(store.root) / key,
        fields=("Id",),
        mapping_hash="m",
        rows=1,
        run_id="run-2",
        quarantine=quarantine,
    )
    # When its bytes are read as plain JSON, then it holds today's keys and kinds of value
    doc = json.loads((Path(store.root) / FOLDER / "current.json").read_bytes())
    assert set(doc) == {"file", "sha256", "rows", "fields", "mapping_hash", "run_id", "committed_at", "quarantine"}
    assert (doc["rows"], doc["fields"], doc["run_id"]) == (1, ["Id"], "run-2")
    assert doc["quarantine"] == [
        {"id": "a", "code": "platform-refused", "first_run_id": "r0", "last_run_id": "run-2", "attempts": 1}
    ]


def test_an_in_doubt_record_in_todays_format_is_read_and_cleared_by_its_exact_bytes(store, tmp_path):
    # Given an in-doubt pointer exactly as today's code writes it
    key, sha = data_file(store, "in-doubt-run-7-abcd1234.parquet", ["a"], snapshot=False)
    raw = today({"file": key, "sha256": sha, "rows": 1, "run_id": "run-7", "recorded_at": "2026-11-26T08:00:00+00:00"})
    pointer = Path(store.root) / FOLDER / "in_doubt.json"
    pointer.write_bytes(raw)
    # When it is loaded, then it reads; when its run clears it, the compare-and-delete on those bytes succeeds
    found = store.load_in_doubt("files", "seg_a", tmp_path / "w")
    assert (found.rows, found.run_id, found.recorded_at) == (1, "run-7", "2026-11-26T08:00:00+00:00")
    store.clear_in_doubt("files", "seg_a", "run-7")
    assert not pointer.exists() and not (Path(store.root) / key).exists()


def test_a_lock_in_todays_format_reads_and_is_removed_by_its_token(store):
    # Given a lock exactly as today's code writes it (json.dumps, no indent)
    path = Path(store.root) / "locks/files/seg_a.json"
    path.parent.mkdir(parents=True)
    owner = {"run_id": "r1", "host": "box", "pid": 42}
    path.write_bytes(today({"owner": owner, "acquired_at": "2026-11-26T08:00:00+00:00", "token": "t1"}, None))
    # When it is read, then its owner and token are; removing it by token compares its exact bytes
    info = store.read_lock("files", "seg_a")
    assert (info.owner, info.acquired_at, info.token) == (owner, "2026-11-26T08:00:00+00:00", "t1")
    assert store.force_unlock("files", "seg_a", token="t1") is not None and not path.exists()


def test_a_lock_taken_now_is_released_by_the_exact_bytes_it_wrote(store):
    # Given a lock taken through the model
    path = Path(store.root) / "locks/files/seg_a.json"
    with store.lock("files", "seg_a", {"run_id": "r1", "host": "box", "pid": 42}):
        written = path.read_bytes()
        # Then it holds today's keys
        assert set(json.loads(written)) == {"owner", "acquired_at", "token"}
    # When the block ends, then it is gone (compare-and-delete matched its bytes)
    assert not path.exists()


def test_a_lease_in_todays_format_reads_its_holder_and_expiry():
    # Given a lease exactly as today's code writes it
    raw = today(
        {
            "owner": {"run_id": "r-old", "command": "run", "host": "box", "pid": 7},
            "token": "t",
            "acquired_at": "2026-12-01T05:00:00.000+00:00",
            "renewed_at": "2026-12-01T05:01:00.000+00:00",
            "expires_at": "2026-12-01T05:16:00.000+00:00",
            "ttl_seconds": 900.0,
            "heartbeat_seconds": 60.0,
        }
    )
    # When it is read, then the exact bytes are kept for the compare-and-swap, and its details read
    held = load_lease(raw)
    assert held.raw == raw
    assert (held.owner["run_id"], held.token, held.expires_at.isoformat()) == (
        "r-old",
        "t",
        "2026-12-01T05:16:00+00:00",
    )


def test_a_job_ledger_in_todays_format_reads_its_entries(store):
    # Given a ledger exactly as today's code writes it (indent 1)
    entry = {"name": "n1", "job_id": "j1", "run_id": "r1", "recorded_at": "2026-11-26T08:00:00+00:00"}
    path = Path(store.root) / FOLDER / "jobs.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(today({"jobs": [entry]}, 1))
    # When it is read, then its entries are; forgetting one writes a ledger today's code reads
    ledger = store.job_ledger("files", "seg_a")
    assert ledger.entries() == [entry]
    ledger.forget("n1")
    assert json.loads(path.read_bytes()) == {"jobs": []}


def test_a_run_in_todays_format_reads_as_it_was_written(store):
    # Given a history document exactly as today's code writes it (one line, compact, keys in the report's order)
    run = {
        "run_id": "r1",
        "command": "sync",
        "started_at": "2026-11-26T08:00:00+00:00",
        "status": "succeeded",
        "segments": [{"segment": "seg_a", "status": "synced", "plan": {"rows": 3}, "duration_s": 1.5}],
        "phases": {"read": 0.25},
    }
    path = Path(store.root) / "history/20261126T080000Z-r1.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(json.dumps(run, separators=(",", ":")).encode() + b"\n")
    # When it is read, then it is the same dict, in the same order; written back, the same bytes
    assert list(store.get_run("r1").items()) == list(run.items())
    store.write_run(store.get_run("r1"))
    assert path.read_bytes() == json.dumps(run, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize(
    "raw, why",
    [
        (b'{"owner": {"run_id": "r1"}, "acquired_at": "x", "token": "t"}', "rows: Field required"),
        (b"not json", "not JSON"),
        (b'["a"]', "not a JSON object"),
    ],
    ids=["a-lock-document", "not-json", "a-list"],
)
def test_a_foreign_document_as_a_pointer_is_one_error_naming_the_field(store, tmp_path, raw, why):
    # Given another document (or none) where the snapshot pointer belongs
    pointer = Path(store.root) / FOLDER / "current.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_bytes(raw)
    # When it is loaded, then the segment is refused naming the pointer and what is wrong
    with pytest.raises(SegmentRefused, match=rf"snapshot pointer for files/seg_a at {pointer} is corrupt \({why}\)"):
        store.load_snapshot("files", "seg_a", tmp_path / "w")


@pytest.mark.parametrize("field", ["fields", "quarantine"])
def test_a_null_list_in_a_pointer_reads_as_an_empty_one(field):
    # Given a pointer whose list is written as null (an earlier writer's, or a hand-edited one)
    raw = json.dumps({"file": "f", "sha256": "0" * 64, "rows": 0, field: None})
    # When it is read, then the list is empty, not refused
    assert getattr(parse(SnapshotPointer, raw), field) == ()


def test_a_model_parse_error_names_the_nested_field():
    with pytest.raises(DocumentError, match=r"quarantine\[0\]\.id: Field required"):
        parse(SnapshotPointer, json.dumps({"file": "f", "sha256": "0" * 64, "rows": 0, "quarantine": [{}]}))
    # a nested document that is not an object is named by its place, not taken for the whole document
    with pytest.raises(DocumentError, match=r"^quarantine\[0\]: Input should be an object$"):
        parse(SnapshotPointer, json.dumps({"file": "f", "sha256": "0" * 64, "rows": 0, "quarantine": [1]}))
    assert parse(LockDocument, b'{"owner": "someone"}').owner == {}


def test_a_format_3_pointer_names_the_files_athena_wrote_and_has_no_single_data_file():
    from sync.state.documents import parse_snapshot_pointer

    # Given a format-3 pointer: a base of two files Athena wrote, and one delta since
    folder = "lake-r2-0123abcd"
    doc = {
        "format": 3,
        "rows": 3,
        "lake_base": {
            "folder": folder,
            "rows": 3,
            "parts": [
                {"file": f"s/{folder}/a", "etag": '"e1"', "size": 10},
                {"file": f"s/{folder}/b", "etag": '"e2"', "size": 11},
            ],
        },
        "deltas": [{"file": "s/delta-r3-0123abcd.parquet", "sha256": "f" * 64, "rows": 1}],
    }
    pointer = parse_snapshot_pointer(json.dumps(doc).encode())
    # Then it names every file it holds, and asking it for one data file is an error naming why
    assert pointer.named_files() == {f"s/{folder}/a", f"s/{folder}/b", "s/delta-r3-0123abcd.parquet"}
    with pytest.raises(DocumentError) as refused:
        pointer.parts()
    assert str(refused.value) == "a format-3 snapshot's base is files Athena wrote (lake_base), not one data file"


@pytest.mark.parametrize(
    ("pointer", "named"),
    [
        pytest.param({"format": 1, "file": "s/a.parquet", "rows": 1}, {"s/a.parquet"}, id="one-data-file"),
        pytest.param(
            {
                "format": 2,
                "base": {"file": "s/b.parquet"},
                "deltas": [{"file": "s/d1.parquet"}, {"file": "s/d2.parquet"}],
            },
            {"s/b.parquet", "s/d1.parquet", "s/d2.parquet"},
            id="a-base-and-its-deltas",
        ),
        pytest.param(
            {
                "format": 3,
                "lake_base": {"folder": "lake-r1", "parts": [{"file": "s/lake-r1/p0"}, {"file": "s/lake-r1/p1"}]},
                "deltas": [{"file": "s/d1.parquet"}],
            },
            {"s/lake-r1/p0", "s/lake-r1/p1", "s/d1.parquet"},
            id="the-files-athena-wrote-and-deltas",
        ),
        pytest.param(
            {"base": "s/b.parquet", "deltas": {"file": "s/d.parquet"}, "lake_base": {"parts": "p"}, "file": 5},
            set(),
            id="pieces-of-the-wrong-shape-name-nothing",
        ),
    ],
)
def test_a_superseded_pointer_names_every_data_file_it_points_to_and_nothing_else(pointer, named):
    assert parse(NamedFiles, json.dumps(pointer)).keys() == named
