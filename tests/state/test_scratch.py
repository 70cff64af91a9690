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


def scratch_files(store) -> list[str]:
    root = Path(store.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_scratch_file_is_stored_in_its_runs_own_folder_which_is_returned(store, tmp_path):
    data = tmp_path / "ids.parquet"
    data.write_bytes(b"PAR1")
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
def test_a_scratch_name_that_could_leave_its_folder_is_refused_naming_it(store, tmp_path, run_id, name, message):
    data = tmp_path / "ids.parquet"
    data.write_bytes(b"PAR1")
    with pytest.raises(ConfigError) as refused:
        store.put_scratch("files", "seg_a", run_id, name, data)
    assert str(refused.value) == message
    assert scratch_files(store) == []


def test_scratch_is_dropped_for_one_run_or_for_all_runs_but_one(store, tmp_path):
    data = tmp_path / "ids.parquet"
    data.write_bytes(b"PAR1")
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
