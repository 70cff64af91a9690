"""The local state store's own plumbing: listing skips its hidden temp files; downloads are private;
files are written beside their target and renamed into place; racing runs share the folders they make."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from sync.core.errors import ConfigError, LockHeld
from sync.state import local
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


RUN = {"run_id": "r1", "started_at": "2026-11-26T12:00:00+00:00", "status": "ok"}


@pytest.mark.parametrize(
    "write, rename, folder, key",
    [
        pytest.param(
            lambda store: store.write_run(RUN),
            "replace",
            "history/",
            "history/20261126T120000Z-r1.json",
            id="history-record-replaced-into-place",
        ),
        pytest.param(
            lambda store: store._create("locks/files/seg.json", b"{}"),
            "link",
            "locks/",
            "locks/files/seg.json",
            id="lock-linked-into-place",
        ),
    ],
)
def test_a_file_in_flight_sits_hidden_beside_its_target(tmp_path, monkeypatch, write, rename, folder, key):
    # Given a store, and a spy that lists the folder at the moment the fully written temp file is moved into place
    store = LocalStateStore(tmp_path / "state")
    real = getattr(os, rename)
    moves = []

    def spy(src, dst):
        moves.append((Path(src), Path(dst), store._list(folder), store.list_runs()))
        return real(src, dst)

    monkeypatch.setattr(local.os, rename, spy)
    # When the store writes the history record (or creates the lock)
    write(store)
    # Then the temp file was in the target's own folder -- one filesystem, so the rename is atomic whatever
    # TMPDIR is -- and hidden under its target's name, so a listing (`lakeseg history`) taken meanwhile saw nothing
    [(src, dst, listed, runs)] = moves
    assert dst == tmp_path / "state" / key
    assert src.parent == dst.parent and src.name.startswith(f".{dst.name}.")
    assert (listed, runs) == ([], [])
    # And once in place, the file is listed exactly once
    assert store._list(folder) == [key]


@pytest.mark.parametrize(
    "other_run_takes_the_lock",
    [
        pytest.param(False, id="other-run-made-the-folder"),
        pytest.param(True, id="other-run-made-the-folder-and-took-the-lock"),
    ],
)
def test_two_runs_racing_on_a_fresh_store_both_get_past_making_folders(tmp_path, monkeypatch, other_run_takes_the_lock):
    # Given a fresh store, and another run that makes the lock folder just after this run saw it missing
    root = tmp_path / "state"
    store, other = LocalStateStore(root), LocalStateStore(root)
    real_exists = Path.exists
    raced = []
    held = contextlib.ExitStack()

    def exists(path):
        found = real_exists(path)
        if path == root / "locks" / "files" and not found and not raced:
            raced.append(path)
            if other_run_takes_the_lock:
                held.enter_context(other.lock("files", "seg", {"run_id": "other", "host": "h", "pid": 7}))
            else:
                other._mkdir(path)
        return found

    monkeypatch.setattr(Path, "exists", exists)
    # When this run takes the lock
    with held:
        if other_run_takes_the_lock:
            # Then it is told who holds the lock, not crashed by the folder the other run made
            with pytest.raises(LockHeld, match=r"files/seg is locked \(held by run other on h \(pid 7\)"):
                with store.lock("files", "seg", {"run_id": "mine"}):
                    pass
        else:
            # Then it gets the lock in the folder the other run made
            with store.lock("files", "seg", {"run_id": "mine"}) as info:
                assert store.read_lock("files", "seg").token == info.token
    assert raced == [root / "locks" / "files"]
    assert stat.S_IMODE((root / "locks" / "files").stat().st_mode) == 0o700


def _record_syncs(monkeypatch, root: Path) -> list[tuple[str, str]]:
    """Record, in order, every fsync (of which path) and every rename/link into place, relative to ``root``;
    a hidden ``*.tmp`` name reads as "<temp>"."""
    events = []

    def name(path) -> str:
        path = Path(path)
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            return str(path.parent.relative_to(root) / "<temp>")
        return str(path.relative_to(root))

    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        events.append(("fsync", name(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def move(kind, real):
        def spy(src, dst):
            result = real(src, dst)
            events.append((kind, name(dst)))
            return result

        return spy

    monkeypatch.setattr(local.os, "fsync", fsync)
    monkeypatch.setattr(local.os, "replace", move("replace", real_replace))
    monkeypatch.setattr(local.os, "link", move("link", real_link))
    return events


def _upload(store, key):
    src = store.root.parent / "data.parquet"
    src.write_bytes(b"PAR1")
    store._upload(key, src)


@pytest.mark.parametrize(
    "write, move",
    [
        pytest.param(lambda store, key: store._write(key, b"{}"), "replace", id="in-doubt-pointer-write"),
        pytest.param(lambda store, key: store._create(key, b"{}"), "link", id="lock-create"),
        pytest.param(_upload, "replace", id="snapshot-data-upload"),
    ],
)
def test_what_is_written_reaches_the_disk_before_and_after_it_is_moved_into_place(tmp_path, monkeypatch, write, move):
    # Given a store whose segment folder exists, and a record of what is synced to disk
    store = LocalStateStore(tmp_path)
    store._write("snapshots/files/seg/other.json", b"{}")
    events = _record_syncs(monkeypatch, tmp_path)
    # When it writes a file there
    write(store, "snapshots/files/seg/in_doubt.json")
    # Then the full temp file is synced, moved into place, and then the folder is synced, so after a power
    # loss the new name is there with its content (an in-doubt record must be durable before delivery starts)
    assert events == [
        ("fsync", "snapshots/files/seg/<temp>"),
        (move, "snapshots/files/seg/in_doubt.json"),
        ("fsync", "snapshots/files/seg"),
    ]


def test_the_first_write_to_a_fresh_store_syncs_every_folder_it_makes(tmp_path, monkeypatch):
    # Given no state directory yet, and a record of what is synced to disk
    events = _record_syncs(monkeypatch, tmp_path)
    # When the store writes its first pointer
    LocalStateStore(tmp_path / "state")._write("snapshots/files/seg/current.json", b"{}")
    # Then each new folder's name is synced in its parent before the file lands in the innermost one
    assert events == [
        ("fsync", "."),
        ("fsync", "state"),
        ("fsync", "state/snapshots"),
        ("fsync", "state/snapshots/files"),
        ("fsync", "state/snapshots/files/seg/<temp>"),
        ("replace", "state/snapshots/files/seg/current.json"),
        ("fsync", "state/snapshots/files/seg"),
    ]


GONE_PID = 2**22 + 4321  # above Linux's pid_max: no such process


def _dead_here(owner: dict) -> bool:
    from sync.run.engine import _owner_is_dead_here

    return _owner_is_dead_here(owner)


@pytest.mark.parametrize(
    ("owner", "age_days", "collected"),
    [
        pytest.param("<gone>@<here>", 0, True, id="a-dead-writer-here-goes-at-once"),
        pytest.param("<live>@<here>", 0, False, id="a-live-writers-file-stays"),
        pytest.param("<live>@<here>", 1.5, True, id="older-than-any-run-goes-even-if-the-pid-runs"),
        pytest.param("<gone>@elsewhere", 0, False, id="another-hosts-recent-file-stays"),
        pytest.param("<gone>@elsewhere", 1.5, True, id="another-hosts-old-file-goes"),
        pytest.param(None, 0, False, id="an-untagged-recent-file-stays"),
        pytest.param(None, 1.5, True, id="an-untagged-old-file-goes"),
    ],
)
def test_temp_files_of_dead_writers_are_collected_and_a_live_writers_kept(
    tmp_path, live_pid, owner, age_days, collected
):
    import time

    from sync.core import owners

    # Given a committed pointer and, beside it, the hidden temp file of a write that never finished
    store = LocalStateStore(tmp_path / "state")
    store._write("snapshots/files/seg/current.json", b"{}")
    tag = (
        (owner or "")
        .replace("<gone>", str(GONE_PID))
        .replace("<live>", str(live_pid))
        .replace("<here>", owners.host_label())
    )
    temp = (
        tmp_path
        / "state"
        / "snapshots"
        / "files"
        / "seg"
        / (f".current.json.{tag}.k3y_9ab1.tmp" if owner else ".current.json.k3y_9ab1.tmp")
    )
    temp.write_bytes(b'{"half')
    when = time.time() - age_days * 86400
    os.utime(temp, (when, when))
    # When the next run collects what dead writers left (any run lasts less than a day)
    removed = store.collect_debris(_dead_here, 86400)
    # Then the temp file goes only if its writer is provably dead or it is older than any run; the pointer stays
    assert temp.exists() is not collected
    assert removed == ([str(temp.relative_to(tmp_path / "state"))] if collected else [])
    assert store._read("snapshots/files/seg/current.json") == b"{}"


def test_the_temp_files_of_this_process_carry_its_owner_tag(tmp_path, monkeypatch):
    import socket

    from sync.core import owners

    # Given writes that stop right before their temp file is renamed or linked into place
    store = LocalStateStore(tmp_path / "state")
    seen = []

    def disk_full(src, dst):
        seen.append(Path(src).name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.os, "replace", disk_full)
    monkeypatch.setattr(local.os, "link", disk_full)
    src = tmp_path / "data.parquet"
    src.write_bytes(b"PAR1")
    for write in (
        lambda: store._write("a/x.json", b"{}"),
        lambda: store._create("a/y.json", b"{}"),
        lambda: store._upload("a/z.parquet", src),
    ):
        with pytest.raises(OSError):
            write()
    # Then each temp file was named with this process's tag, and none stays behind after the failure
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    assert len(seen) == 3 and all(owners.temp_owner(name) == me for name in seen), seen
    assert sorted(p.name for p in (tmp_path / "state" / "a").iterdir()) == []


def test_an_upload_that_fills_the_disk_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno
    import shutil

    # Given a copy that writes part of the file, then finds the disk full
    store = LocalStateStore(tmp_path / "state")
    src = tmp_path / "data.parquet"
    src.write_bytes(b"PAR1" * 1000)

    def disk_full(source, target, *args, **kwargs):
        Path(target).write_bytes(b"PAR1")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    # When the data file is uploaded
    with pytest.raises(OSError, match="No space left"):
        store._upload("snapshots/files/seg/x.parquet", src)
    # Then no hidden temp file stays in the state store
    assert list((tmp_path / "state" / "snapshots" / "files" / "seg").iterdir()) == []


def test_a_local_store_refuses_to_read_or_record_a_base_athena_wrote_and_says_to_put_the_state_on_s3(tmp_path):
    # Given a local store (the diff in Athena needs the state on S3: Athena reads and writes the snapshot there)
    store = LocalStateStore(tmp_path / "state")
    why = f"the state store at {store.url} keeps no snapshot Athena writes: put the state on S3"
    # When the parts of a base Athena wrote would be listed or downloaded, then each is refused with that reason
    with pytest.raises(ConfigError) as listed:
        store._list_sized("snapshots/files/seg/lake-r1/")
    with pytest.raises(ConfigError) as fetched:
        store._download_exact("snapshots/files/seg/lake-r1/part-0.parquet", tmp_path / "p.parquet", '"etag"')
    assert str(listed.value) == str(fetched.value) == why


def test_an_upload_that_fails_before_its_temp_file_exists_raises_its_own_error(tmp_path):
    # Given a data file that is gone before it is copied (nothing was written into the store yet)
    store = LocalStateStore(tmp_path / "state")
    missing = tmp_path / "gone.parquet"
    # When it is uploaded, then the error is about that file, not about a temp file that never existed
    with pytest.raises(FileNotFoundError) as raised:
        store._upload("snapshots/files/seg/x.parquet", missing)
    assert raised.value.filename == str(missing)


def _temp_beside_a_pointer(tmp_path: Path, name: str) -> tuple[LocalStateStore, Path]:
    """A store holding a committed pointer, and the hidden temp file ``name`` of a write beside it."""
    store = LocalStateStore(tmp_path / "state")
    store._write("snapshots/files/seg/current.json", b"{}")
    temp = tmp_path / "state" / "snapshots" / "files" / "seg" / name
    temp.write_bytes(b"{}")
    return store, temp


def test_a_temp_file_its_writer_finishes_while_it_is_collected_is_left_to_it(tmp_path):
    # Given a live writer's temp file, renamed into place by its writer while the collector looks at it
    store, temp = _temp_beside_a_pointer(tmp_path, ".current.json.4242@elsewhere.k3y.tmp")

    def finishing(owner: dict) -> bool:
        temp.unlink()  # the writer renamed it meanwhile
        return False

    # When the next run collects debris, then the vanished file is no error and nothing is reported removed
    assert store.collect_debris(finishing, 86400) == []


@pytest.mark.parametrize("older_by", [0.0, 1.0], ids=["exactly-the-age-stays", "older-goes"])
def test_an_untagged_temp_file_goes_only_once_older_than_the_age(tmp_path, monkeypatch, older_by):
    store, temp = _temp_beside_a_pointer(tmp_path, ".current.json.k3y.tmp")
    os.utime(temp, (1_000_000.0, 1_000_000.0))
    monkeypatch.setattr(local.time, "time", lambda: 1_000_000.0 + 86400 + older_by)
    store.collect_debris(_dead_here, 86400)
    assert temp.exists() is (older_by == 0.0)
