"""The local state store's own plumbing: listing skips its hidden temp files; downloads are private."""

from __future__ import annotations

import stat

import pytest

from sync.state.local import LocalStateStore


def test_listing_skips_hidden_temp_files_and_folders(tmp_path):
    # Given a data file, a temp file of an interrupted write and a nested folder
    store = LocalStateStore(tmp_path / "state")
    store._write("snapshots/files/seg/current.json", b"{}")
    (tmp_path / "state" / "snapshots" / "files" / "seg" / ".current.json.abc123.tmp").write_bytes(b"{")
    # Then only the data file is listed, relative to the root
    assert store._list("snapshots/") == ["snapshots/files/seg/current.json"]
    assert store._list("nothing-here/") == []


def test_a_downloaded_copy_is_readable_by_its_owner_only(tmp_path):
    store = LocalStateStore(tmp_path / "state")
    src = tmp_path / "data.parquet"
    src.write_bytes(b"PAR1")
    store._upload("snapshots/files/seg/x.parquet", src)
    out = tmp_path / "copy.parquet"
    assert store._download("snapshots/files/seg/x.parquet", out) is True
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_bytes() == b"PAR1"
    assert store._download("snapshots/files/seg/missing.parquet", tmp_path / "no") is False


def test_folders_and_files_it_writes_are_private(tmp_path, open_umask):
    # Given a umask under which group and others may read, when the store writes a pointer and uploads data
    store = LocalStateStore(tmp_path / "state")
    store._write("snapshots/files/seg/current.json", b"{}")
    src = tmp_path / "data.parquet"
    src.write_bytes(b"PAR1")
    store._upload("snapshots/files/seg/x.parquet", src)
    # Then every folder it made is 0700 and the uploaded file 0600
    for folder in ("snapshots", "snapshots/files", "snapshots/files/seg"):
        assert stat.S_IMODE((tmp_path / "state" / folder).stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((tmp_path / "state" / "snapshots/files/seg/x.parquet").stat().st_mode) == 0o600
    assert store.url == str(tmp_path / "state")
    assert store._location("snapshots/files/seg/x.parquet") == str(tmp_path / "state" / "snapshots/files/seg/x.parquet")


def test_compare_and_delete_deletes_only_what_it_compared(tmp_path, open_umask):
    store = LocalStateStore(tmp_path / "state")
    assert store._delete_if_unchanged("locks/files/seg.json", b"mine") is False  # no folder
    store._write("locks/files/other.json", b"x")
    assert store._delete_if_unchanged("locks/files/seg.json", b"mine") is False  # no file
    store._write("locks/files/seg.json", b"theirs")
    assert store._delete_if_unchanged("locks/files/seg.json", b"mine") is False
    assert store._read("locks/files/seg.json") == b"theirs"
    assert store._delete_if_unchanged("locks/files/seg.json", b"theirs") is True
    assert store._read("locks/files/seg.json") is None
    store._delete("locks/files/seg.json")  # deleting what is gone is not an error
    # And the mutex file it locks on is private too
    assert stat.S_IMODE((tmp_path / "state" / "locks/files/.seg.json.mutex").stat().st_mode) == 0o600
