"""Scratch files of a diff in Athena (the Ids a run resends), each run's in a folder of its own under
``lake-scratch/<destination>/<segment>/<run>/``, deleted by run or all but one run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.core.errors import ConfigError
from sync.state import open_state_store


@pytest.fixture
def store(tmp_path):
    return open_state_store(str(tmp_path / "state"))


@pytest.fixture
def data(tmp_path):
    """A run's scratch file to store (its bytes are not read)."""
    path = tmp_path / "ids.parquet"
    path.write_bytes(b"PAR1")
    return path


def scratch_files(store) -> list[str]:
    root = Path(store.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_scratch_file_is_stored_in_its_runs_own_folder_which_is_returned(store, data):
    folder = store.put_scratch("files", "seg_a", "r1", "dirty", data)
    assert folder == f"{store.root}/lake-scratch/files/seg_a/r1/dirty/"
    assert scratch_files(store) == ["lake-scratch/files/seg_a/r1/dirty/dirty.parquet"]
    assert (Path(store.root) / "lake-scratch/files/seg_a/r1/dirty/dirty.parquet").read_bytes() == b"PAR1"


@pytest.mark.parametrize(
    "run_id,name,message",
    [
        ("../r1", "dirty", "run id name '../r1' cannot be used in state keys (letters, digits, _ . - only)"),
        ("r1", "a/b", "file name 'a/b' cannot be used in state keys (letters, digits, _ . - only)"),
    ],
    ids=["run-id-escaping", "file-name-with-a-slash"],
)
def test_a_scratch_name_that_could_leave_its_folder_is_refused_naming_it(store, data, run_id, name, message):
    with pytest.raises(ConfigError) as refused:
        store.put_scratch("files", "seg_a", run_id, name, data)
    assert str(refused.value) == message
    assert scratch_files(store) == []


@pytest.mark.parametrize(
    "destination,segment,message",
    [
        ("../files", "seg_a", "destination name '../files' cannot be used in state keys (letters, digits, _ . - only)"),
        ("files", "seg/a", "segment name 'seg/a' cannot be used in state keys (letters, digits, _ . - only)"),
    ],
    ids=["destination-escaping", "segment-with-a-slash"],
)
def test_a_scratch_folder_whose_destination_or_segment_could_leave_it_is_refused_naming_it(
    store, data, destination, segment, message
):
    with pytest.raises(ConfigError) as refused:
        store.put_scratch(destination, segment, "r1", "dirty", data)
    assert str(refused.value) == message
    assert scratch_files(store) == []


def test_scratch_is_dropped_for_one_run_or_for_all_runs_but_one(store, data):
    for run in ("r1", "r2", "r3"):
        store.put_scratch("files", "seg_a", run, "dirty", data)
    store.put_scratch("files", "seg_b", "r1", "dirty", data)
    store.drop_scratch("files", "seg_a", only="r1")
    assert scratch_files(store) == [
        "lake-scratch/files/seg_a/r2/dirty/dirty.parquet",
        "lake-scratch/files/seg_a/r3/dirty/dirty.parquet",
        "lake-scratch/files/seg_b/r1/dirty/dirty.parquet",
    ]
    store.drop_scratch("files", "seg_a", keep="r3")
    assert scratch_files(store) == [
        "lake-scratch/files/seg_a/r3/dirty/dirty.parquet",
        "lake-scratch/files/seg_b/r1/dirty/dirty.parquet",
    ]


def test_a_scratch_file_that_cannot_be_deleted_leaves_the_others_dropped_and_raises_nothing(store, data, monkeypatch):
    # Given two dead runs' scratch files, and a store that cannot delete the first
    for run in ("r1", "r2"):
        store.put_scratch("files", "seg_a", run, "dirty", data)
    delete = store._delete

    def failing(key):
        if "/r1/" in key:
            raise OSError("permission denied")
        delete(key)

    monkeypatch.setattr(store, "_delete", failing)
    # When a run sweeps the segment's scratch, then it goes on past the failure (the next sweep tries again)
    store.drop_scratch("files", "seg_a", keep="r3")
    assert scratch_files(store) == ["lake-scratch/files/seg_a/r1/dirty/dirty.parquet"]


# ---- the lake digest's key tables: one folder per key, stored once --------------------------------------------
def test_each_key_table_is_stored_once_in_a_folder_of_its_own_which_is_returned(store, tmp_path):
    # Given two digest keys' tables, and the first key's stored again by a later run with other bytes
    first, second, again = (tmp_path / f"{n}.parquet" for n in ("first", "second", "again"))
    first.write_bytes(b"PAR1-first")
    second.write_bytes(b"PAR1-second")
    again.write_bytes(b"PAR1-again")
    # When each is stored
    folders = [store.put_lake_key(fp, path) for fp, path in (("fp1", first), ("fp2", second), ("fp1", again))]
    # Then each key has its own folder (Athena reads every file under a table's folder), returned as a location,
    # and a key table once stored is kept as it is
    assert folders == [f"{store.root}/keys/fp1/", f"{store.root}/keys/fp2/", f"{store.root}/keys/fp1/"]
    assert scratch_files(store) == ["keys/fp1/key.parquet", "keys/fp2/key.parquet"]
    assert (Path(store.root) / "keys/fp1/key.parquet").read_bytes() == b"PAR1-first"


def test_a_key_fingerprint_that_cannot_name_a_folder_is_refused_naming_it(store, tmp_path):
    data = tmp_path / "k.parquet"
    data.write_bytes(b"PAR1")
    with pytest.raises(ConfigError) as refused:
        store.put_lake_key("../x", data)
    assert (
        str(refused.value) == "key fingerprint name '../x' cannot be used in state keys (letters, digits, _ . - only)"
    )
