"""The state store, on both backends: a local directory and S3 (moto)."""

from __future__ import annotations

import errno
import io
import json
import stat
from pathlib import Path

import boto3
import duckdb
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sync.core.errors import ConfigError, LockHeld, SegmentRefused
from sync.state import open_state_store
from sync.state.local import LocalStateStore

BUCKET = "lakeseg-state"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        yield open_state_store(str(tmp_path / "state"))
    else:
        request.getfixturevalue("aws")  # moto, fake credentials (tests/conftest.py)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield open_state_store(f"s3://{BUCKET}/prod/lakeseg", s3_client=s3)


# The two ways a segment's committed snapshot is read: downloaded by the runner for the DuckDB diff, or
# resolved to its files by the diff in Athena (both check the pointer alike).
SNAPSHOT_READERS = {
    "downloaded-by-the-runner": lambda store, tmp_path: store.load_snapshot("files", "seg_a", tmp_path / "w"),
    "read-by-the-diff-in-athena": lambda store, _tmp_path: store.read_snapshot("files", "seg_a"),
}


def parquet(tmp_path: Path, ids: list[str], name="snap.parquet") -> Path:
    path = tmp_path / name
    con = duckdb.connect()
    con.execute("create table t (Id varchar, k1 ubigint, k2 ubigint, digest ubigint)")
    con.executemany("insert into t values (?, 1, 2, 3)", [(i,) for i in ids])
    con.execute(f"copy t to '{path}' (format parquet)")
    return path


def commit(store, tmp_path, ids, run_id="run-1"):
    return store.commit_snapshot(
        "files",
        "seg_a",
        parquet(tmp_path, ids, f"{run_id}.parquet"),
        fields=("Id", "Attributes.A"),
        mapping_hash="m1",
        rows=len(ids),
        run_id=run_id,
    )


def test_snapshot_round_trip_and_replacement(store, tmp_path):
    # Given nothing committed
    assert store.load_snapshot("files", "seg_a", tmp_path / "w0") is None
    # When two snapshots are committed in turn
    commit(store, tmp_path, ["a", "b"], "run-1")
    commit(store, tmp_path, ["a", "b", "c"], "run-2")
    # Then the latest is loaded, with its metadata
    snap = store.load_snapshot("files", "seg_a", tmp_path / "w1")
    assert (snap.rows, snap.run_id, snap.mapping_hash, snap.fields) == (3, "run-2", "m1", ("Id", "Attributes.A"))
    assert duckdb.connect().execute(f"select count(*) from read_parquet('{snap.path}')").fetchall() == [(3,)]


def test_crash_before_the_pointer_moves_keeps_the_old_snapshot(store, tmp_path, monkeypatch):
    commit(store, tmp_path, ["a"], "run-1")

    def crash(key, data):
        raise KeyboardInterrupt("killed before the pointer was replaced")

    monkeypatch.setattr(store, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        commit(store, tmp_path, ["a", "b"], "run-2")
    monkeypatch.undo()
    assert store.load_snapshot("files", "seg_a", tmp_path / "w").run_id == "run-1"


@pytest.mark.parametrize("damage", ["garbage-pointer", "missing-data", "truncated-data", "checksum"])
def test_corrupt_snapshot_is_refused_never_empty(store, tmp_path, damage):
    commit(store, tmp_path, ["a", "b"])
    pointer_key = "snapshots/files/seg_a/current.json"
    meta = json.loads(store._read(pointer_key))
    if damage == "garbage-pointer":
        store._write(pointer_key, b"{not json")
    elif damage == "missing-data":
        store._delete(meta["file"])
    elif damage == "truncated-data":
        store._write(meta["file"], store._read(meta["file"])[:40])
    else:
        meta["sha256"] = "0" * 64
        store._write(pointer_key, json.dumps(meta).encode())
    with pytest.raises(SegmentRefused, match="files/seg_a"):
        store.load_snapshot("files", "seg_a", tmp_path / "w")


def test_lock_is_exclusive_names_its_owner_and_is_released(store):
    owner = {"run_id": "run-1", "host": "host-a", "pid": 42}
    with store.lock("files", "seg_a", owner):
        with pytest.raises(LockHeld, match=r"run run-1 on host-a \(pid 42\).*lakeseg unlock"):
            with store.lock("files", "seg_a", {"run_id": "run-2", "host": "host-b", "pid": 7}):
                pass
        assert store.read_lock("files", "seg_a").owner == owner
        # other segments are independent
        with store.lock("files", "seg_b", owner):
            pass
    assert store.read_lock("files", "seg_a") is None
    with pytest.raises(RuntimeError):
        with store.lock("files", "seg_a", owner):
            raise RuntimeError("boom")
    assert store.read_lock("files", "seg_a") is None


def test_force_unlock(store):
    cm = store.lock("files", "seg_a", {"run_id": "dead"})
    cm.__enter__()  # a run that died holding it
    info = store.force_unlock("files", "seg_a")
    assert info.owner["run_id"] == "dead" and info.age_seconds >= 0
    assert store.read_lock("files", "seg_a") is None


def test_history_newest_first(store):
    store.write_run({"run_id": "r1", "started_at": "2026-11-25T01:00:00+00:00", "status": "running"})
    store.write_run({"run_id": "r2", "started_at": "2026-11-25T02:00:00+00:00", "status": "succeeded"})
    store.write_run({"run_id": "r1", "started_at": "2026-11-25T01:00:00+00:00", "status": "failed"})
    assert [(r["run_id"], r["status"]) for r in store.list_runs()] == [("r2", "succeeded"), ("r1", "failed")]
    assert store.get_run("r1")["status"] == "failed" and store.get_run("nope") is None


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "seg a"])
def test_unsafe_names_are_refused(store, tmp_path, name):
    with pytest.raises(ConfigError):
        store.load_snapshot("files", name, tmp_path)


def test_unwritable_local_store(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="not writable"):
        LocalStateStore(blocker / "state").check_writable()


def test_missing_bucket_is_not_writable(aws):
    store = open_state_store("s3://no-such-bucket/x", s3_client=boto3.client("s3", region_name="us-east-1"))
    with pytest.raises(ConfigError, match="s3://no-such-bucket/x is not writable"):
        store.check_writable()


def test_s3_objects_are_encrypted(aws, tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    store = open_state_store(f"s3://{BUCKET}/p", s3_client=s3)
    commit(store, tmp_path, ["a"])
    with store.lock("files", "seg_a", {"run_id": "r"}):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert keys
        for key in keys:
            assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"


def ids_parquet(tmp_path: Path, ids: list[str], name: str) -> Path:
    path = tmp_path / name
    con = duckdb.connect()
    con.execute("create table t (Id varchar)")
    con.executemany("insert into t values (?)", [(i,) for i in ids])
    con.execute(f"copy t to '{path}' (format parquet)")
    return path


def test_in_doubt_record_round_trip_supersede_and_clear(store, tmp_path):
    # Given a committed snapshot and an in-doubt record of a later, unconfirmed run
    commit(store, tmp_path, ["a"], "run-1")
    store.record_in_doubt("files", "seg_a", ids_parquet(tmp_path, ["a", "g"], "d.parquet"), rows=2, run_id="run-2")
    # Then it is open while the snapshot is older
    rec = store.load_in_doubt("files", "seg_a", tmp_path / "w1", committed_run_id="run-1")
    assert (rec.rows, rec.run_id) == (2, "run-2")
    # and void once a commit of the same run exists (commit-then-crash is harmless)
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w2", committed_run_id="run-2") is None
    # When another run tries to clear it, it stays; when its own run id clears it, it is gone
    store.clear_in_doubt("files", "seg_a", "run-3")
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w3") is not None
    store.clear_in_doubt("files", "seg_a", "run-2")
    assert store.load_in_doubt("files", "seg_a", tmp_path / "w4") is None


def test_lock_takeover_deletes_only_the_lock_judged_dead(store):
    # Given a lock held by run A, whose token a second run read as dead
    with store.lock("files", "seg_a", {"run_id": "A"}):
        stale = store.read_lock("files", "seg_a").token
    # and a new run B that already took the lock in between
    with store.lock("files", "seg_a", {"run_id": "B"}):
        # When a third run removes "the dead lock" by its token
        assert store.force_unlock("files", "seg_a", token=stale) is None
        # Then B's lock is still there
        assert store.read_lock("files", "seg_a").owner == {"run_id": "B"}


def test_a_run_whose_lock_was_taken_over_leaves_the_new_owners_lock_in_place(store):
    """Guards issue 15 behaviour 7: releasing a lock must delete only the run's own lock (owner token);
    verified to fail on a broken copy (sync/state/base.py:StateStore.lock releasing with a plain _delete)."""
    # Given run A holds the lock, and while it is (wrongly) judged dead the lock is removed and run B takes it
    lock_a = store.lock("files", "seg_a", {"run_id": "A"})
    lock_a.__enter__()
    store.force_unlock("files", "seg_a")
    with store.lock("files", "seg_a", {"run_id": "B"}):
        # When run A finishes and releases its lock
        lock_a.__exit__(None, None, None)
        # Then B still holds the lock, so a third run is refused
        assert store.read_lock("files", "seg_a").owner == {"run_id": "B"}
        with pytest.raises(LockHeld, match="run B"):
            with store.lock("files", "seg_a", {"run_id": "C"}):
                pass
    assert store.read_lock("files", "seg_a") is None


class _DiskFullHalfway:
    """A file whose first write stores half the bytes, then fails as a full disk does."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_pointer_write_that_fails_part_way_keeps_the_old_snapshot(tmp_path, monkeypatch):
    """Guards issue 15 behaviour 9: the pointer is replaced atomically (temp file + rename), never written in place;
    verified to fail on a broken copy (sync/state/local.py:LocalStateStore._write as path.write_bytes(data))."""
    # Given a committed snapshot in a local store
    store = LocalStateStore(tmp_path / "state")
    commit(store, tmp_path, ["a"], "run-1")
    # When the next commit's pointer write fills the disk half way through
    real_open = io.open

    def open_disk_full(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return _DiskFullHalfway(f) if "w" in mode else f

    with monkeypatch.context() as m:
        m.setattr(io, "open", open_disk_full)
        with pytest.raises(OSError, match="No space left"):
            commit(store, tmp_path, ["a", "b"], "run-2")
    # Then the previous snapshot is still whole and committed
    snap = store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert (snap.run_id, snap.rows) == ("run-1", 1)


def test_a_crash_while_storing_the_data_keeps_the_old_snapshot(store, tmp_path, monkeypatch):
    """Guards issue 15 behaviour 10: the pointer moves only after the new snapshot data is stored;
    verified to fail on a broken copy (sync/state/base.py:StateStore._point_to writing the pointer before _upload)."""
    # Given a committed snapshot
    commit(store, tmp_path, ["a"], "run-1")

    def crash(key, path):
        raise KeyboardInterrupt("killed while the data file was uploading")

    # When the next commit is killed while its data file is stored
    monkeypatch.setattr(store, "_upload", crash)
    with pytest.raises(KeyboardInterrupt):
        commit(store, tmp_path, ["a", "b"], "run-2")
    monkeypatch.undo()
    # Then the pointer still names the previous snapshot, whose data is whole
    snap = store.load_snapshot("files", "seg_a", tmp_path / "w")
    assert (snap.run_id, snap.rows) == ("run-1", 1)


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("InternalError", 500)], ids=["denied", "server-error"])
def test_an_s3_error_reading_the_pointer_is_not_a_first_sync(aws, tmp_path, code, status):
    """Guards issue 15 behaviour 15: only a missing pointer means "no snapshot"; any other S3 error must surface;
    verified to fail on a broken copy (sync/state/s3.py:S3StateStore._read returning None on every ClientError)."""
    # Given a state bucket whose pointer cannot be read (a policy denies it, or S3 fails)
    s3 = boto3.client("s3", region_name="us-east-1")
    store = open_state_store(f"s3://{BUCKET}/prod/lakeseg", s3_client=s3)
    with Stubber(s3) as stubber:
        stubber.add_client_error(
            "get_object",
            service_error_code=code,
            http_status_code=status,
            expected_params={"Bucket": BUCKET, "Key": "prod/lakeseg/snapshots/files/seg_a/current.json"},
        )
        # When the committed snapshot is loaded
        # Then the error is raised: it is never read as "nothing committed" (a full resend)
        with pytest.raises(ClientError, match=code):
            store.load_snapshot("files", "seg_a", tmp_path / "w")
        stubber.assert_no_pending_responses()


def test_an_unfinished_search_round_trips_in_order_from_a_new_work_folder_and_an_empty_one_clears_it(
    store, tmp_path, open_umask, frozen
):
    # Given groups of suspect Ids, saved from a work folder not made yet whose path holds a quote (under a
    # umask that lets others read)
    groups = [("c", "a"), ("b",), ()]
    work = tmp_path / "o'w" / "s"
    store.save_search("files", "seg_a", groups, fields=("Id", "Attributes.Plan"), run_id="run-1", workdir=work)
    # Then the folder it made for them is private to the runner, and the pointer counts Ids and groups and says
    # with which header and when
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    doc = json.loads(store._read("snapshots/files/seg_a/search.json"))
    assert (doc["rows"], doc["groups"], doc["fields"], doc["run_id"], doc["recorded_at"]) == (
        3,
        2,
        ["Id", "Attributes.Plan"],
        "run-1",
        "2026-11-26T08:00:00+00:00",
    )
    # When read back, then the non-empty groups come back in order, each in its own order, with header and run
    saved = store.load_search("files", "seg_a", tmp_path / "r")
    assert (saved.groups, saved.fields, saved.run_id) == ((("c", "a"), ("b",)), ("Id", "Attributes.Plan"), "run-1")
    # And saving no group clears it: its pointer and its file of Ids
    store.save_search("files", "seg_a", [()], fields=("Id",), run_id="run-2", workdir=tmp_path / "w2")
    assert store.load_search("files", "seg_a", tmp_path / "r2") is None
    assert [k for k in store._list("snapshots/files/seg_a/") if "search" in k.rsplit("/", 1)[1]] == []


def test_a_search_of_a_run_whose_id_cannot_name_a_file_is_refused_naming_the_run_id(store, tmp_path):
    # Given a run id that could leave the segment's folder, when its unfinished search is saved, then it is refused
    with pytest.raises(ConfigError, match=r"^run id name '\.\./x' cannot be used in state keys"):
        store.save_search("files", "seg_a", [("a",)], fields=("Id",), run_id="../x", workdir=tmp_path / "w")


def test_a_search_saved_from_the_folder_it_was_read_into_outlives_the_next_snapshot_commit(store, tmp_path):
    # Given an unfinished search read back into a work folder, and a new one saved from that same folder (a run
    # reads the segment's search, then saves what is still suspect where it read it)
    work = tmp_path / "w" / "search"
    store.save_search("files", "seg_a", [("a", "b")], fields=("Id",), run_id="run-1", workdir=tmp_path / "w1")
    assert store.load_search("files", "seg_a", work) is not None and work.is_dir()
    store.save_search("files", "seg_a", [("b",)], fields=("Id",), run_id="run-2", workdir=work)
    # When the run then commits the segment's snapshot (which sweeps the files no pointer names)
    commit(store, tmp_path, ["a", "b"], "run-2")
    # Then the search is still there to be read
    assert store.load_search("files", "seg_a", tmp_path / "r").groups == (("b",),)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda store, key: store._write(key, b"{not json"), "pointer for {at} is corrupt", id="pointer"),
        pytest.param(lambda store, key: store._delete(key), "data \\S+ for {at} is missing", id="data"),
    ],
)
def test_a_damaged_search_is_refused_named_as_the_search(store, tmp_path, damage, reason):
    # Given a saved search whose pointer or file of Ids is damaged
    store.save_search("files", "seg_a", [("a",)], fields=("Id",), run_id="run-1", workdir=tmp_path / "w")
    pointer = "snapshots/files/seg_a/search.json"
    damage(store, pointer if "pointer" in reason else json.loads(store._read(pointer))["file"])
    # When it is read, then it is refused, named as the segment's search and by its pointer's place
    at = r"files/seg_a at \S*snapshots/files/seg_a/search\.json"
    with pytest.raises(SegmentRefused, match="^search " + reason.format(at=at)):
        store.load_search("files", "seg_a", tmp_path / "r")


SUPERSEDED = {
    "in-doubt": lambda store, tmp_path, run_id: store.record_in_doubt(
        "files", "seg_a", ids_parquet(tmp_path, ["a"], f"{run_id}.parquet"), rows=1, run_id=run_id
    ),
    "search": lambda store, tmp_path, run_id: store.save_search(
        "files", "seg_a", [("a",)], fields=("Id",), run_id=run_id, workdir=tmp_path / run_id
    ),
}


@pytest.mark.parametrize("record", list(SUPERSEDED.values()), ids=list(SUPERSEDED))
def test_a_superseded_record_leaves_only_the_newest_file_of_ids_behind(store, tmp_path, record):
    # Given a segment's in-doubt record or unfinished search, then a later run's
    record(store, tmp_path, "run-1")
    record(store, tmp_path, "run-2")
    # Then the segment's folder holds the later run's file of Ids, and no other data file
    data = [k.rsplit("/", 1)[1] for k in store._list("snapshots/files/seg_a/") if k.endswith(".parquet")]
    assert len(data) == 1 and "run-2" in data[0], data


@pytest.mark.parametrize(
    "named",
    [
        "snapshots/files/other/x.parquet",
        "snapshots/files/seg_a/sub/x.parquet",
        "snapshots/files/seg_a//x.parquet",
    ],
    ids=["another-folder", "a-subfolder", "an-empty-folder-name"],
)
def test_a_commit_over_a_pointer_naming_a_file_outside_its_folder_deletes_no_such_file(store, tmp_path, named):
    # Given a file outside the segment's own files, and a (damaged or hand-edited) pointer that names it
    store._write(named, b"not this segment's")
    store._write("snapshots/files/seg_a/current.json", json.dumps({"file": named, "sha256": "0" * 64}).encode())
    # When the next run commits the segment (which deletes what the previous pointer named and no longer does)
    commit(store, tmp_path, ["a"], "run-1")
    # Then the file is still there, and the new snapshot reads back
    assert store._read(named) == b"not this segment's"
    assert store.load_snapshot("files", "seg_a", tmp_path / "w").rows == 1
