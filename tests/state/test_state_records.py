"""The state store's records, each pinned exactly: pointers and what makes one corrupt, quarantine entries,
in-doubt records, locks, run history. (Both backends share this code; the local one is used here.)"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from sync.core.errors import ConfigError, LockHeld, SegmentRefused
from sync.state import base, open_state_store
from sync.state.base import LockInfo, QuarantinedRow, _age_seconds, safe_name, sha256_file
from tests.state.test_state_store import SNAPSHOT_READERS, commit, parquet

FOLDER = "snapshots/files/seg_a"


@pytest.fixture
def store(tmp_path):
    return open_state_store(str(tmp_path / "state"))


def write_pointer(store, doc, name="current.json") -> Path:
    path = Path(store.root) / FOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ---- quarantine entries ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "doc",
    [
        {
            "id": "e1",
            "message": "value 'Zyxwv-Smith, Jr.' is too long",
            "first_run_id": "r1",
            "last_run_id": "r2",
            "attempts": 3,
        },
        {"id": "e1", "code": "platform-refused", "first_run_id": "r1", "last_run_id": "r2", "attempts": 3},
        {"id": "e1", "code": "value 'Zyxwv-Smith, Jr.'", "first_run_id": "r1", "last_run_id": "r2", "attempts": 3},
    ],
    ids=["written-with-a-message", "written-with-a-code", "a-code-that-is-not-one"],
)
def test_a_quarantine_entry_keeps_its_id_a_code_and_its_runs_never_a_message(doc):
    # Given an entry as a pointer holds it (before codes, the platform's message was stored)
    row = QuarantinedRow.from_dict(doc)
    # Then it reads as refused by the platform, and what it would write back holds no message
    assert row == QuarantinedRow("e1", "platform-refused", "r1", "r2", 3)
    assert "Zyxwv" not in repr(row)


def test_a_quarantine_entry_without_details_has_empty_ones_and_one_attempt():
    assert QuarantinedRow.from_dict({"id": "e1"}) == QuarantinedRow("e1", "platform-refused", "", "", 1)


@pytest.mark.parametrize("doc", [["e1"], {"message": "x"}, {"id": 7}], ids=["not-a-mapping", "no-id", "id-not-text"])
def test_a_quarantine_entry_without_an_id_is_refused(doc):
    with pytest.raises(ValueError) as refused:
        QuarantinedRow.from_dict(doc)
    assert str(refused.value) == "a quarantine entry has no id"


# ---- locks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "minutes, age",
    [(0, "0 min"), (119, "119 min"), (120, "2.0 h"), (150, "2.5 h"), (600, "10.0 h")],
    ids=["new", "just-under-two-hours", "two-hours", "longer", "ten-hours"],
)
def test_a_lock_describes_its_owner_and_age(minutes, age):
    info = LockInfo("files", "seg_a", {"run_id": "r1", "host": "box", "pid": 42}, age_seconds=minutes * 60)
    assert info.describe() == f"held by run r1 on box (pid 42) for {age}"


def test_a_lock_without_owner_details_says_so():
    assert LockInfo("files", "seg_a").describe() == "held by run ? on ? (pid ?) for 0 min"


def test_a_lock_is_stale_only_past_its_age_limit():
    assert not LockInfo("d", "s", age_seconds=60).is_stale(60)
    assert LockInfo("d", "s", age_seconds=61).is_stale(60)


@pytest.mark.parametrize(
    "stamp, age",
    [
        ("2026-11-26T07:00:00+00:00", 3600.0),
        ("2026-11-26T07:00:00", 3600.0),
        ("2026-11-26T09:00:00+02:00", 3600.0),
        ("yesterday", 0.0),
        (None, 0.0),
    ],
    ids=["utc", "naive-is-utc", "other-offset", "garbage", "none"],
)
def test_the_age_of_a_stamp(frozen, stamp, age):
    assert _age_seconds(stamp) == age


def test_a_held_lock_refuses_naming_owner_age_place_and_how_to_remove_it(store, frozen):
    with store.lock("files", "seg_a", {"run_id": "r1", "host": "box", "pid": 42}):
        with pytest.raises(LockHeld) as held:
            with store.lock("files", "seg_a", {"run_id": "r2"}):
                pass
    where = Path(store.root) / "locks/files/seg_a.json"
    assert str(held.value) == (
        f"files/seg_a is locked (held by run r1 on box (pid 42) for 0 min, {where}). "
        "If that run is dead, remove the lock with "
        "`lakeseg unlock --destination files --segment seg_a`"
    )


def test_a_lock_records_owner_time_and_a_token(store, frozen):
    with store.lock("files", "seg_a", {"run_id": "r1"}) as info:
        doc = json.loads((Path(store.root) / "locks/files/seg_a.json").read_text())
        assert doc["owner"] == {"run_id": "r1"} and doc["acquired_at"] == "2026-11-26T08:00:00+00:00"
        assert len(doc["token"]) == 32 and info.token == doc["token"]
        read = store.read_lock("files", "seg_a")
        assert (read.owner, read.acquired_at, read.age_seconds, read.token) == (
            {"run_id": "r1"},
            doc["acquired_at"],
            0.0,
            info.token,
        )
        assert read.location == str(Path(store.root) / "locks/files/seg_a.json")
    assert store.read_lock("files", "seg_a") is None


@pytest.mark.parametrize("content", ["not json", "[1, 2]"], ids=["garbage", "not-an-object"])
def test_an_unreadable_lock_is_still_a_lock(store, content):
    path = Path(store.root) / "locks/files/seg_a.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    info = store.read_lock("files", "seg_a")
    assert (info.owner, info.acquired_at, info.token) == ({"note": "unreadable lock file"}, "", "")
    with pytest.raises(LockHeld):
        with store.lock("files", "seg_a", {"run_id": "r2"}):
            pass


def test_a_lock_read_back_names_destination_segment_and_its_age(store, frozen):
    path = Path(store.root) / "locks/files/seg_a.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"owner": {"run_id": "r1"}, "acquired_at": "2026-11-26T07:00:00+00:00", "token": "t"}))
    info = store.read_lock("files", "seg_a")
    assert (info.destination, info.segment, info.age_seconds) == ("files", "seg_a", 3600.0)


def test_a_lock_without_a_time_has_an_empty_one(store):
    path = Path(store.root) / "locks/files/seg_a.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"owner": {"run_id": "r1"}}))
    assert store.read_lock("files", "seg_a").acquired_at == ""


def test_force_unlock_reports_nothing_when_the_lock_changed_under_it(store, monkeypatch):
    with store.lock("files", "seg_a", {"run_id": "r1"}) as info:
        monkeypatch.setattr(store, "_delete_if_unchanged", lambda key, expected: False)
        assert store.force_unlock("files", "seg_a", token=info.token) is None


def test_history_lists_twenty_runs_by_default(store):
    for n in range(21):
        store.write_run({"run_id": f"r{n:02d}", "started_at": f"2026-11-01T08:{n:02d}:00+00:00"})
    runs = store.list_runs()
    assert len(runs) == 20 and runs[0]["run_id"] == "r20" and runs[-1]["run_id"] == "r01"


def test_a_lock_whose_owner_is_not_a_mapping_reads_as_no_owner(store):
    path = Path(store.root) / "locks/files/seg_a.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"owner": "someone", "acquired_at": "x", "token": 5}))
    info = store.read_lock("files", "seg_a")
    assert (info.owner, info.token) == ({}, "5")


def test_force_unlock_with_another_token_or_no_lock_removes_nothing(store):
    assert store.force_unlock("files", "seg_a") is None
    with store.lock("files", "seg_a", {"run_id": "r1"}) as info:
        assert store.force_unlock("files", "seg_a", token="not-it") is None
        assert store.read_lock("files", "seg_a") is not None
        removed = store.force_unlock("files", "seg_a", token=info.token)
        assert removed.token == info.token and store.read_lock("files", "seg_a") is None


# ---- names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value", [".", "..", "", "a b", None, 7], ids=["dot", "dotdot", "empty", "space", "none", "a-number-not-text"]
)
def test_unsafe_names_are_refused_with_their_kind(value):
    with pytest.raises(ConfigError) as refused:
        safe_name("segment", value)
    assert str(refused.value) == (f"segment name {value!r} cannot be used in state keys (letters, digits, _ . - only)")


def test_safe_names_pass_through():
    assert safe_name("run id", "2026.11-26_a") == "2026.11-26_a"


def test_a_store_that_cannot_be_written_says_which_and_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = open_state_store(str(blocker / "state"))
    with pytest.raises(ConfigError) as refused:
        store.check_writable()
    assert str(refused.value).startswith(f"state store {blocker / 'state'} is not writable: ")


def test_the_write_probe_leaves_nothing_behind(store):
    store.check_writable()
    assert [p for p in Path(store.root).rglob("*") if p.is_file()] == []


# ---- snapshots and their pointers -------------------------------------------------------------------------
def test_a_commit_records_rows_fields_hash_run_time_and_quarantine(store, tmp_path, frozen):
    q = QuarantinedRow("e9", "platform-refused", "r0", "run-1", 2)
    data = parquet(tmp_path, ["a", "b"])
    snap = store.commit_snapshot(
        "files", "seg_a", data, fields=("Id", "A"), mapping_hash="m1", rows=2, run_id="run-1", quarantine=(q,)
    )
    text = (Path(store.root) / FOLDER / "current.json").read_text()
    pointer = json.loads(text)
    # The pointer is indented JSON an operator can read; the data file is named by run and a random suffix
    assert text == json.dumps(pointer, indent=2)
    assert re.fullmatch(f"{FOLDER}/run-1-[0-9a-f]{{8}}\\.parquet", pointer["file"])
    assert snap.path == data
    assert len(pointer["sha256"]) == 64
    assert {k: v for k, v in pointer.items() if k not in ("file", "sha256")} == {
        "rows": 2,
        "fields": ["Id", "A"],
        "mapping_hash": "m1",
        "run_id": "run-1",
        "committed_at": "2026-11-26T08:00:00+00:00",
        "quarantine": [
            {"id": "e9", "code": "platform-refused", "first_run_id": "r0", "last_run_id": "run-1", "attempts": 2}
        ],
    }
    assert (snap.rows, snap.fields, snap.mapping_hash, snap.run_id, snap.committed_at, snap.quarantine) == (
        2,
        ("Id", "A"),
        "m1",
        "run-1",
        "2026-11-26T08:00:00+00:00",
        (q,),
    )
    loaded = store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert (
        loaded.rows,
        loaded.fields,
        loaded.mapping_hash,
        loaded.run_id,
        loaded.committed_at,
        loaded.quarantine,
        loaded.confirmed,
    ) == (2, ("Id", "A"), "m1", "run-1", "2026-11-26T08:00:00+00:00", (q,), False)


def test_a_snapshot_with_confirmation_times_loads_as_confirmed(store, tmp_path):
    path = tmp_path / "confirmed.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"copy (select 'a' as Id, 1::ubigint as k1, 2::ubigint as k2, 3::ubigint as digest, "
            f"timestamp '2026-11-01 00:00:00' as confirmed_at) to '{path}' (format parquet)"
        )
    store.commit_snapshot("files", "seg_a", path, fields=("Id",), mapping_hash="m", rows=1, run_id="r1")
    assert store.load_snapshot("files", "seg_a", tmp_path / "w").confirmed is True


def test_the_superseded_data_file_is_deleted_when_the_pointer_moves(store, tmp_path):
    commit(store, tmp_path, ["a"], "run-1")
    commit(store, tmp_path, ["a", "b"], "run-2")
    files = sorted(p.name for p in (Path(store.root) / FOLDER).iterdir())
    assert len(files) == 2 and files[0] == "current.json" and files[1].startswith("run-2-")


def test_a_pointer_naming_a_file_elsewhere_never_gets_that_file_deleted(store, tmp_path):
    outside = Path(store.root) / "snapshots/files/other.parquet"
    outside.parent.mkdir(parents=True)
    outside.write_text("keep me")
    write_pointer(store, {"file": "snapshots/files/other.parquet", "sha256": "0" * 64, "rows": 1})
    commit(store, tmp_path, ["a"], "run-2")
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize(
    "doc, why",
    [
        ("[1]", "not a JSON object"),
        ({"sha256": "0" * 64, "rows": 1}, "file: Field required"),
        (
            {"file": f"{FOLDER}/x.parquet", "sha256": "0" * 63, "rows": 1},
            "sha256: String should match pattern '^[0-9a-f]{64}$'",
        ),
        ({"file": 5, "sha256": "0" * 64, "rows": 1}, "file: Input should be a valid string"),
        (
            {"file": f"{FOLDER}/x.parquet", "sha256": "0" * 64, "rows": -1},
            "rows: Input should be greater than or equal to 0",
        ),
        ({"file": f"{FOLDER}/x.parquet", "sha256": "0" * 64, "rows": True}, "rows: Input should be a valid integer"),
        ({"file": f"{FOLDER}/x.parquet", "sha256": "0" * 64, "rows": "3"}, "rows: Input should be a valid integer"),
        (
            {"file": f"{FOLDER}/x.parquet", "sha256": "0" * 64, "rows": 1, "run_id": 7},
            "run_id: Input should be a valid string",
        ),
    ],
    ids=[
        "not-an-object",
        "no-file",
        "short-sha",
        "file-not-text",
        "negative-rows",
        "rows-bool",
        "rows-text",
        "run-id-not-text",
    ],
)
def test_a_corrupt_pointer_refuses_the_segment_saying_why(store, tmp_path, doc, why):
    path = write_pointer(store, doc)
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot pointer for files/seg_a at {path} is corrupt ({why}); refusing to treat "
        "it as empty. Restore it, or delete it to resend the whole segment"
    )


@pytest.mark.parametrize(
    "data_key",
    [
        "snapshots/files/other/x.parquet",
        f"{FOLDER}/sub/x.parquet",
        f"{FOLDER}/x.csv",
        f"{FOLDER}/",
        f"{FOLDER}/a b.parquet",
        "x.parquet",
    ],
    ids=["other-folder", "subfolder", "not-parquet", "no-name", "unsafe-name", "no-folder"],
)
@pytest.mark.parametrize("reader", sorted(SNAPSHOT_READERS))
def test_a_pointer_naming_a_file_outside_its_folder_is_refused(store, tmp_path, data_key, reader):
    path = write_pointer(store, {"file": data_key, "sha256": "0" * 64, "rows": 1})
    with pytest.raises(SegmentRefused) as refused:
        SNAPSHOT_READERS[reader](store, tmp_path)
    assert str(refused.value) == (
        f"snapshot pointer for files/seg_a at {path} names {data_key!r}, outside its folder "
        f"{FOLDER}/; refusing to read it. Restore it, or delete it to resend the whole segment"
    )


def _damage(store, tmp_path, **changes) -> tuple[Path, Path]:
    commit(store, tmp_path, ["a", "b"], "run-1")
    pointer = Path(store.root) / FOLDER / "current.json"
    doc = json.loads(pointer.read_text())
    doc.update(changes)
    pointer.write_text(json.dumps(doc))
    return pointer, Path(store.root) / doc["file"]


def test_missing_snapshot_data_is_refused_naming_it(store, tmp_path):
    pointer, data = _damage(store, tmp_path)
    data.unlink()
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot data {data} for files/seg_a at {pointer} is missing; refusing to treat it as empty"
    )


def test_snapshot_data_that_fails_its_checksum_is_refused_naming_it(store, tmp_path):
    pointer, data = _damage(store, tmp_path, sha256="f" * 64)
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot data {data} for files/seg_a at {pointer} fails its checksum; refusing to treat it as empty"
    )


def test_snapshot_data_with_other_rows_than_its_pointer_is_refused(store, tmp_path):
    pointer, _ = _damage(store, tmp_path, rows=3)
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == f"snapshot data for files/seg_a at {pointer} has 2 rows, its pointer says 3"


def test_snapshot_data_with_other_columns_is_refused_naming_both(store, tmp_path):
    path = tmp_path / "odd.parquet"
    with duckdb.connect() as con:
        con.execute(f"copy (select 'a' as Id) to '{path}' (format parquet)")
    store.commit_snapshot("files", "seg_a", path, fields=("Id",), mapping_hash="m", rows=1, run_id="r1")
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    message = str(refused.value)
    assert "has columns {'Id': 'VARCHAR'}, expected {'Id': 'VARCHAR', 'k1': 'UBIGINT'" in message
    assert "'confirmed_at': 'TIMESTAMP'} or {" in message and "'digest': 'BIGINT'}; refusing to read it" in message


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"fields": ["Id", 3]}, "fields[1]: Input should be a valid string"),
        ({"mapping_hash": 5}, "mapping_hash: Input should be a valid string"),
        ({"quarantine": [{"message": "no id"}]}, "quarantine[0].id: Field required"),
    ],
    ids=["field-not-text", "hash-not-text", "quarantine-without-id"],
)
def test_a_pointer_with_bad_details_is_corrupt(store, tmp_path, changes, why):
    # Given a pointer whose details are of the wrong kind
    pointer, _ = _damage(store, tmp_path, **changes)
    # When it is read, then the segment is refused naming the pointer and the field
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == (
        f"snapshot pointer for files/seg_a at {pointer} is corrupt ({why}); refusing to treat "
        "it as empty. Restore it, or delete it to resend the whole segment"
    )


def test_committed_fields_come_from_the_pointer_and_skip_non_text(store, tmp_path):
    assert store.committed_fields("files", "seg_a") == ()
    _damage(store, tmp_path, fields=["Id", 3, "Attributes.A"])
    assert store.committed_fields("files", "seg_a") == ("Id", "Attributes.A")
    _damage(store, tmp_path, fields=None)
    assert store.committed_fields("files", "seg_a") == ()


# ---- in-doubt records --------------------------------------------------------------------------------------
def ids_file(tmp_path: Path, ids: list[str], name: str) -> Path:
    path = tmp_path / name
    with duckdb.connect() as con:
        con.execute(f"copy (select unnest(?::varchar[]) as Id) to '{path}' (format parquet)", [ids])
    return path


def test_an_in_doubt_record_names_its_run_rows_and_time(store, tmp_path, frozen):
    store.record_in_doubt("files", "seg_a", ids_file(tmp_path, ["a", "b"], "d.parquet"), rows=2, run_id="run-7")
    found = store.load_in_doubt("files", "seg_a", tmp_path / "w", committed_run_id="run-6")
    assert (found.rows, found.run_id, found.recorded_at) == (2, "run-7", "2026-11-26T08:00:00+00:00")
    assert found.path.name.startswith("in-doubt-run-7-")
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w2", committed_run_id="run-7") is None


def test_an_in_doubt_record_is_cleared_only_by_its_own_run(store, tmp_path):
    store.record_in_doubt("files", "seg_a", ids_file(tmp_path, ["a"], "d.parquet"), rows=1, run_id="run-7")
    store.clear_in_doubt("files", "seg_a", "run-8")
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w") is not None
    store.clear_in_doubt("files", "seg_a", "run-7")
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w2") is None
    # Its pointer and data file are gone (a hidden mutex file of the local backend may stay)
    assert sorted(p.name for p in (Path(store.root) / FOLDER).iterdir() if not p.name.startswith(".")) == []


def test_an_unreadable_in_doubt_pointer_is_not_cleared(store):
    path = write_pointer(store, "not json", name="in_doubt.json")
    store.clear_in_doubt("files", "seg_a", "run-7")
    assert path.read_text() == "not json"


def test_a_commit_clears_its_own_runs_in_doubt_record(store, tmp_path):
    store.record_in_doubt("files", "seg_a", ids_file(tmp_path, ["a"], "d.parquet"), rows=1, run_id="run-1")
    commit(store, tmp_path, ["a"], "run-1")
    assert not (Path(store.root) / FOLDER / "in_doubt.json").exists()


# ---- run history ---------------------------------------------------------------------------------------------
def test_a_run_is_one_line_of_json_named_by_start_and_run_id(store):
    store.write_run({"run_id": "r1", "started_at": "2026-11-26T08:00:00+00:00", "status": "running"})
    path = Path(store.root) / "history/20261126T080000Z-r1.json"
    assert path.read_bytes() == b'{"run_id":"r1","started_at":"2026-11-26T08:00:00+00:00","status":"running"}\n'
    assert store.get_run("r1") == {"run_id": "r1", "started_at": "2026-11-26T08:00:00+00:00", "status": "running"}
    assert store.get_run("r2") is None


def test_a_value_json_has_no_form_for_is_kept_in_the_history_as_its_text(store):
    class Opaque:
        def __str__(self):
            return "opaque-7"

    # Given a run whose report carries, beside JSON's own values, one JSON has no form for (a caller's object)
    store.write_run({"run_id": "r1", "phases": {"read": 1.5}, "notes": [Opaque()], "extra": {"kind": Opaque()}})
    # When it is read back, then the run is all there and the object is its text, as json.dumps(default=str) wrote it
    assert store.get_run("r1") == {
        "run_id": "r1",
        "phases": {"read": 1.5},
        "notes": ["opaque-7"],
        "extra": {"kind": "opaque-7"},
    }


def test_history_lists_the_newest_runs_up_to_the_limit_and_skips_a_corrupt_one(store, caplog):
    for n in range(1, 5):
        store.write_run({"run_id": f"r{n}", "started_at": f"2026-11-2{n}T08:00:00+00:00"})
    (Path(store.root) / "history/20261125T090000Z-bad.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="sync.state.base"):
        runs = store.list_runs(limit=3)
    assert [r["run_id"] for r in runs] == ["r4", "r3"]
    bad = Path(store.root) / "history/20261125T090000Z-bad.json"
    assert caplog.messages == [f"history document {bad} is corrupt; move it away to read the rest"]
    assert [r["run_id"] for r in store.list_runs()] == ["r4", "r3", "r2", "r1"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"run_id": 5}', "run_id: Input should be a valid string"),
    ],
    ids=["garbage", "not-object", "no-run-id"],
)
def test_reading_a_corrupt_run_names_the_file(store, content, reason, caplog):
    path = Path(store.root) / "history/20261125T090000Z-r9.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with caplog.at_level(logging.DEBUG, logger="sync.state.base"), pytest.raises(ConfigError) as refused:
        store.get_run("r9")
    assert str(refused.value) == f"history document {path} is corrupt; move it away to read the rest"
    # the parser's words (which may quote the document) only at debug level
    [why] = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert why == f"history document {path}: {reason}"


def test_a_run_started_at_a_naive_or_offset_time_keeps_only_digits_t_and_z_in_its_name():
    key = base.StateStore._history_key({"run_id": "r1", "started_at": datetime(2026, 1, 2, 3, 4, 5)})
    assert key == "history/20260102030405-r1.json"
    assert (
        base.StateStore._history_key({"run_id": "r2", "started_at": "2026-01-02T03:04:05+00:00"})
        == "history/20260102T030405Z-r2.json"
    )
    assert base.StateStore._history_key({"run_id": "r3"}) == "history/-r3.json"


@pytest.mark.parametrize(
    "destination, segment, message",
    [
        ("a b", "seg_a", "destination name 'a b' cannot be used in state keys (letters, digits, _ . - only)"),
        ("files", "../x", "segment name '../x' cannot be used in state keys (letters, digits, _ . - only)"),
    ],
    ids=["destination", "segment"],
)
def test_a_lock_on_an_unsafe_name_is_refused_naming_which(store, destination, segment, message):
    with pytest.raises(ConfigError) as refused:
        with store.lock(destination, segment, {}):
            pass
    assert str(refused.value) == message
    with pytest.raises(ConfigError) as again:
        store.read_lock(destination, segment)
    assert str(again.value) == message


@pytest.mark.parametrize(
    "destination, segment, message",
    [
        ("a b", "seg_a", "destination name 'a b' cannot be used in state keys (letters, digits, _ . - only)"),
        ("files", "../x", "segment name '../x' cannot be used in state keys (letters, digits, _ . - only)"),
    ],
    ids=["destination", "segment"],
)
def test_a_snapshot_of_an_unsafe_name_is_refused_naming_which(store, tmp_path, destination, segment, message):
    with pytest.raises(ConfigError) as refused:
        store.load_snapshot(destination, segment, tmp_path / "w")
    assert str(refused.value) == message


def test_a_commit_over_a_garbage_pointer_replaces_it(store, tmp_path):
    write_pointer(store, "not json at all")
    commit(store, tmp_path, ["a"], "run-1")
    assert store.load_snapshot("files", "seg_a", tmp_path / "w").rows == 1


@pytest.mark.parametrize(
    "named", [f"{FOLDER}/sub/old.parquet", f"{FOLDER}//keep.parquet"], ids=["subfolder", "double-slash"]
)
def test_a_superseded_pointer_naming_a_nested_path_gets_nothing_deleted(store, tmp_path, named):
    # Given a pointer that names a path below the folder (or the folder's own file through "//")
    for path in (Path(store.root) / FOLDER / "sub" / "old.parquet", Path(store.root) / FOLDER / "keep.parquet"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep me")
    write_pointer(store, {"file": named, "sha256": "0" * 64, "rows": 1})
    # When a commit moves the pointer
    commit(store, tmp_path, ["a"], "run-2")
    # Then neither file is deleted
    assert (Path(store.root) / FOLDER / "sub" / "old.parquet").read_text() == "keep me"
    assert (Path(store.root) / FOLDER / "keep.parquet").read_text() == "keep me"


def test_a_corrupt_in_doubt_pointer_says_it_is_the_in_doubt_record(store, tmp_path):
    path = write_pointer(store, "[1]", name="in_doubt.json")
    with pytest.raises(SegmentRefused) as refused:
        store.load_in_doubt("files", "seg_a", tmp_path / "w")
    assert str(refused.value) == (
        f"in-doubt pointer for files/seg_a at {path} is corrupt (not a JSON object); "
        "refusing to treat it as empty. Restore it, or delete it to resend the whole segment"
    )


def test_an_in_doubt_record_without_run_or_time_reads_them_as_empty(store, tmp_path):
    store.record_in_doubt("files", "seg_a", ids_file(tmp_path, ["a"], "d.parquet"), rows=1, run_id="run-7")
    pointer = Path(store.root) / FOLDER / "in_doubt.json"
    doc = json.loads(pointer.read_text())
    del doc["run_id"], doc["recorded_at"]
    pointer.write_text(json.dumps(doc))
    found = store.load_in_doubt("files", "seg_a", tmp_path / "w")
    assert (found.run_id, found.recorded_at, found.rows) == ("", "", 1)


def test_a_run_document_with_times_is_written_as_text(store):
    store.write_run(
        {
            "run_id": "r1",
            "started_at": "2026-11-26T08:00:00+00:00",
            "finished_at": datetime(2026, 11, 26, 8, 5, tzinfo=timezone.utc),
        }
    )
    assert store.get_run("r1")["finished_at"] == "2026-11-26 08:05:00+00:00"


def test_a_snapshot_pointer_without_hash_run_or_time_reads_them_as_empty(store, tmp_path):
    commit(store, tmp_path, ["a"], "run-1")
    pointer = Path(store.root) / FOLDER / "current.json"
    doc = json.loads(pointer.read_text())
    del doc["mapping_hash"], doc["run_id"], doc["committed_at"]
    pointer.write_text(json.dumps(doc))
    found = store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert (found.mapping_hash, found.run_id, found.committed_at, found.rows) == ("", "", "", 1)


def test_a_commit_stands_when_clearing_its_in_doubt_record_fails(store, tmp_path, monkeypatch):
    # Given a store that cannot clear in-doubt records
    def fail(*args, **kwargs):
        raise OSError("state store unreachable")

    monkeypatch.setattr(store, "clear_in_doubt", fail)
    # When a snapshot is committed
    commit(store, tmp_path, ["a", "b"], "run-1")
    # Then the commit stands (the record is superseded by the commit anyway)
    assert store.load_snapshot("files", "seg_a", tmp_path / "w").run_id == "run-1"


def test_an_unsafe_run_id_is_refused_naming_it(store, tmp_path):
    message = "run id name 'a/b' cannot be used in state keys (letters, digits, _ . - only)"
    with pytest.raises(ConfigError) as snapshot:
        store.commit_snapshot(
            "files", "seg_a", parquet(tmp_path, ["a"]), fields=("Id",), mapping_hash="m", rows=1, run_id="a/b"
        )
    with pytest.raises(ConfigError) as history:
        store.write_run({"run_id": "a/b", "started_at": "2026-11-26T08:00:00+00:00"})
    assert str(snapshot.value) == str(history.value) == message


def test_a_file_checksum_covers_every_byte_of_a_file_larger_than_one_read(tmp_path):
    data = bytes(range(256)) * (10 * 1024 + 7)  # about 2.5 MiB: more than one 1 MiB read
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_snapshot_data_that_is_not_parquet_is_refused_saying_it_is_unreadable(store, tmp_path):
    # Given a data file replaced by other bytes, its pointer's checksum updated to match
    garbage = b"not a parquet file"
    pointer, data = _damage(store, tmp_path, sha256=hashlib.sha256(garbage).hexdigest())
    data.write_bytes(garbage)
    # Then loading it is refused as unreadable, naming where, with DuckDB's reason
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w")
    message = str(refused.value)
    assert message.startswith(f"snapshot data for files/seg_a at {pointer} is unreadable (")
    assert message.endswith("); refusing to treat it as empty")


def test_a_snapshot_is_read_into_a_private_folder_that_may_be_read_into_again(store, tmp_path, open_umask):
    # Given a committed snapshot, read into a work folder under a umask that lets others read
    commit(store, tmp_path, ["a", "b"], "run-1")
    work = tmp_path / "w" / "previous"
    first = store.load_snapshot("files", "seg_a", work)
    # Then the folder holding the copy (endpoint ids) is the owner's alone, and a second read may reuse it
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    again = store.load_snapshot("files", "seg_a", work)
    assert (again.rows, again.path) == (first.rows, first.path)
