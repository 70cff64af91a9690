"""Snapshots as a base plus deltas: a commit stores what changed; loading reads the latest row per Id."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import duckdb
import pytest

import sync.core.failpoints as fp
from sync.core.errors import SegmentRefused
from sync.state import open_state_store
from sync.state.deltas import Compaction

BUCKET = "lakeseg-state"
FOLDER = "snapshots/files/seg_a"
POINTER = f"{FOLDER}/current.json"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        s = open_state_store(str(tmp_path / "state"))
    else:
        request.getfixturevalue("aws")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s = open_state_store(f"s3://{BUCKET}/prod/lakeseg", s3_client=s3)
    s.compaction = Compaction(max_share=0.5, max_deltas=3)
    return s


def members(tmp_path: Path, rows: dict[str, int], name: str) -> Path:
    """A membership file: Id -> digest (keys derived from the Id)."""
    path = tmp_path / name
    con = duckdb.connect()
    con.execute("create table t (Id varchar, k1 ubigint, k2 ubigint, digest ubigint)")
    con.executemany("insert into t values (?, hash(?), hash(? || 'x'), ?)", [(i, i, i, d) for i, d in rows.items()])
    con.execute("copy t to '" + str(path).replace("'", "''") + "' (format parquet)")
    return path


def commit(store, tmp_path, rows: dict[str, int], run_id: str, mapping_hash="m1"):
    return store.commit_snapshot(
        "files",
        "seg_a",
        members(tmp_path, rows, f"{run_id}.parquet"),
        fields=("Id", "Attributes.A"),
        mapping_hash=mapping_hash,
        rows=len(rows),
        run_id=run_id,
    )


def load(store, tmp_path, name="w") -> dict[str, int]:
    snap = store.load_snapshot("files", "seg_a", tmp_path / name)
    got = duckdb.connect().execute("select Id, digest from read_parquet(?)", [str(snap.path)]).fetchall()
    assert len(got) == snap.rows
    return dict(got)


@pytest.fixture
def no_join(monkeypatch):
    """A store that must not work out a delta by joining two memberships (sync.state.base._write_delta)."""
    import sync.state.base as base

    def joined(*args, **kwargs):
        raise AssertionError("the memberships were joined where no delta had to be worked out")

    monkeypatch.setattr(base, "_write_delta", joined)


def pointer(store) -> dict:
    return json.loads(store._read(POINTER))


def files(store) -> list[str]:
    return sorted(k.rsplit("/", 1)[1] for k in store._list(FOLDER + "/"))


BASE = {f"m{n:02d}": n for n in range(10)}
# one member leaves (m00), one changes (m01), one enters (n1): 3 delta rows, 30% of the base
NEXT = {**{k: v for k, v in BASE.items() if k != "m00"}, "m01": 101, "n1": 1}


def test_a_commit_after_a_load_stores_only_the_change(store, tmp_path):
    # Given a committed base of 10 members, loaded by the next run
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    # When that run commits the membership with one exit, one change and one entry
    commit(store, tmp_path, NEXT, "run-2")
    # Then the pointer names the base and one delta of 2 upserts and 1 tombstone
    doc = pointer(store)
    assert doc["format"] == 2 and doc["rows"] == 10 and doc["base"]["rows"] == 10
    assert [(d["rows"], d["upserts"], d["tombstones"]) for d in doc["deltas"]] == [(3, 2, 1)]
    assert doc["deltas"][0]["file"].startswith(f"{FOLDER}/delta-run-2-")
    # and loading it reads the latest row per Id
    assert load(store, tmp_path, "w2") == NEXT


def test_deltas_stack_until_compaction_writes_a_new_base(store, tmp_path):
    # Given a base and a delta
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2")
    # When a second small change is committed, then it is a second delta
    third = {**NEXT, "m02": 202}
    load(store, tmp_path, "w2")
    commit(store, tmp_path, third, "run-3")
    assert [d["rows"] for d in pointer(store)["deltas"]] == [3, 1]
    assert load(store, tmp_path, "w3") == third
    # When the deltas would pass half the base (compact_share 0.5), then the membership is a new base
    fourth = {**third, "m03": 303, "m04": 404}
    commit(store, tmp_path, fourth, "run-4")
    doc = pointer(store)
    assert "format" not in doc and doc["file"].startswith(f"{FOLDER}/run-4-") and doc["rows"] == 10
    # and every superseded file is gone
    assert files(store) == sorted(["current.json", doc["file"].rsplit("/", 1)[1]])
    assert load(store, tmp_path, "w4") == fourth


def test_more_deltas_than_allowed_compact_without_working_out_a_delta(store, tmp_path, request):
    # Given max_deltas 3 and three one-row deltas
    rows = dict(BASE)
    commit(store, tmp_path, rows, "run-0")
    for n in range(1, 4):
        load(store, tmp_path, f"w{n}")
        rows = {**rows, f"m0{n}": 1000 + n}
        commit(store, tmp_path, rows, f"run-{n}")
    assert len(pointer(store)["deltas"]) == 3
    request.getfixturevalue("no_join")  # from here on
    # When a fourth is committed, then it compacts, and no delta was worked out for it
    load(store, tmp_path, "w4")
    rows = {**rows, "m09": 9999}
    commit(store, tmp_path, rows, "run-4")
    assert "deltas" not in pointer(store) and load(store, tmp_path, "w5") == rows


def test_a_commit_with_nothing_changed_stores_no_data(store, tmp_path):
    # Given a base and a delta
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2")
    before = files(store)
    # When the next run commits the same membership
    load(store, tmp_path, "w2")
    commit(store, tmp_path, NEXT, "run-3")
    # Then no file is added, and the pointer says run-3
    assert files(store) == before and pointer(store)["run_id"] == "run-3"


def test_a_commit_without_a_load_or_after_the_pointer_moved_writes_a_base(store, tmp_path):
    # Given a committed base, loaded, and then replaced by another writer
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, BASE, "run-x")
    # When the loader commits, then it writes a whole base (its delta would be against a stale pointer)
    commit(store, tmp_path, NEXT, "run-2")
    assert "format" not in pointer(store) and load(store, tmp_path, "w2") == NEXT


def test_a_changed_mapping_writes_a_base(store, tmp_path):
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2", mapping_hash="m2")
    assert "format" not in pointer(store) and pointer(store)["mapping_hash"] == "m2"


def test_an_old_single_file_snapshot_loads_and_takes_a_delta(store, tmp_path):
    # Given a format-1 pointer as lakeseg wrote before deltas (no "format" key)
    commit(store, tmp_path, BASE, "run-1")
    assert set(pointer(store)) == {
        "file",
        "sha256",
        "rows",
        "fields",
        "mapping_hash",
        "run_id",
        "committed_at",
        "quarantine",
    }
    # When it is loaded and the next run commits, then it becomes the base of a delta
    assert load(store, tmp_path, "w1") == BASE
    commit(store, tmp_path, NEXT, "run-2")
    assert pointer(store)["base"]["file"].endswith(".parquet") and load(store, tmp_path, "w2") == NEXT


@pytest.mark.parametrize(
    "damage, says",
    [
        ("unknown-format", r"format 4 is not one this lakeseg reads \(1 or 2 or 3\)"),
        ("deltas-not-a-list", "deltas: Input should be a valid array"),
        ("missing-delta", "is missing"),
        ("delta-checksum", "fails its checksum"),
        ("rows-disagree", "holds 10 members, its pointer says 11"),
    ],
)
def test_a_damaged_delta_pointer_refuses_never_empty(store, tmp_path, damage, says):
    # Given a base and a delta
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2")
    doc = pointer(store)
    # When the pointer or the delta is damaged
    if damage == "unknown-format":
        doc["format"] = 4
    elif damage == "deltas-not-a-list":
        doc["deltas"] = "x"
    elif damage == "missing-delta":
        store._delete(doc["deltas"][0]["file"])
    elif damage == "delta-checksum":
        doc["deltas"][0]["sha256"] = "0" * 64
    else:
        doc["rows"] = 11
    store._write(POINTER, json.dumps(doc).encode())
    # Then the segment is refused, naming it and why
    with pytest.raises(SegmentRefused, match=says):
        store.load_snapshot("files", "seg_a", tmp_path / "w2")


@pytest.mark.parametrize(
    "damage, why",
    [("missing-delta", "is missing"), ("delta-checksum", "fails its checksum")],
    ids=["missing", "failing-its-checksum"],
)
def test_a_damaged_delta_is_refused_naming_the_delta_its_segment_and_its_pointer(store, tmp_path, damage, why):
    # Given a base and a delta
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2")
    doc = pointer(store)
    delta = doc["deltas"][0]["file"]
    # When the delta is gone or is not the file its pointer committed
    if damage == "missing-delta":
        store._delete(delta)
    else:
        doc["deltas"][0]["sha256"] = "0" * 64
        store._write(POINTER, json.dumps(doc).encode())
    # Then loading refuses the segment, naming the delta as a delta, the segment and the pointer that names it
    with pytest.raises(SegmentRefused) as refused:
        store.load_snapshot("files", "seg_a", tmp_path / "w2")
    assert str(refused.value) == (
        f"snapshot delta data {store._location(delta)} for files/seg_a at {store._location(POINTER)} {why}; "
        "refusing to treat it as empty"
    )


class _Killed(BaseException):
    pass


@pytest.mark.parametrize("stage", fp.COMMIT_STAGES)
@pytest.mark.parametrize("kind", ["delta", "compaction"])
def test_a_commit_killed_inside_converges(store, tmp_path, monkeypatch, stage, kind):
    # Given a base and a delta, loaded by the next run
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    commit(store, tmp_path, NEXT, "run-2")
    load(store, tmp_path, "w2")
    after = {**NEXT, "m02": 202} if kind == "delta" else {k: v + 7 for k, v in NEXT.items()}

    def die(at):
        if at == stage:
            raise _Killed(at)

    # When its commit (a delta, or a compaction) is killed at `stage`
    with monkeypatch.context() as m, pytest.raises(_Killed):
        m.setattr(fp, "hit", die)
        commit(store, tmp_path, after, "run-3")
    # Then the store holds the old snapshot (data stored, pointer not moved) or the new one (pointer moved)
    expected = NEXT if stage == "commit-after-data" else after
    assert load(store, tmp_path, "w3") == expected
    # and the next run's commit converges, and removes every file the pointer does not name (the kill's too)
    final = {**after, "n9": 9}
    commit(store, tmp_path, final, "run-4")
    assert load(store, tmp_path, "w4") == final
    named = {pointer(store).get("file"), pointer(store).get("base", {}).get("file")}
    named |= {d["file"] for d in pointer(store).get("deltas", [])}
    orphans = {f for f in files(store) if f != "current.json"} - {n.rsplit("/", 1)[1] for n in named if n}
    assert not orphans


def test_deltas_are_written_and_read_in_a_work_folder_whose_path_holds_a_quote(store, tmp_path):
    # Given runs whose work folders' paths hold a single quote (a user's home such as /home/o'brien)
    quoted = tmp_path / "o'brien"
    quoted.mkdir()
    commit(store, quoted, BASE, "run-1")
    load(store, quoted, "w1")
    # When a change is committed as a delta and read back, then both work
    commit(store, quoted, NEXT, "run-2")
    assert pointer(store)["format"] == 2
    assert load(store, quoted, "w2") == NEXT


def test_the_state_stores_duckdb_spills_inside_the_work_folder_never_the_working_directory(
    store, tmp_path, monkeypatch
):
    from sync.state import base

    spills, settings = [], []
    real = base._connect

    def recording(spill):
        spills.append(spill)
        con = real(spill)
        settings.append(con.execute("select current_setting('temp_directory')").fetchone()[0])
        return con

    monkeypatch.setattr(base, "_connect", recording)
    # Given a delta committed and the membership read back through base and delta, in work folders whose
    # paths hold a quote
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "o'w1")
    commit(store, tmp_path, NEXT, "run-2")
    load(store, tmp_path, "o'w2")
    # Then every DuckDB the store opened spills into a hidden folder inside the run's own folders, quote and all
    assert spills and all(s.name == ".spill" and tmp_path in s.parents for s in spills)
    assert settings == [str(s) for s in spills] and any("'" in s for s in settings)


def test_a_commit_given_the_runs_delta_stores_that_file_as_it_is_without_joining_the_memberships(
    store, tmp_path, no_join
):
    from sync.state.base import sha256_file

    # Given a loaded base, and the delta the run derived for the next membership (one change, one exit)
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    derived = tmp_path / "derived.parquet"
    con = duckdb.connect()
    con.execute("create table d (Id varchar, k1 ubigint, k2 ubigint, digest ubigint, deleted boolean)")
    con.execute("insert into d values ('m01', hash('m01'), hash('m01' || 'x'), 101, false)")
    con.execute("insert into d values ('m00', hash('m00'), hash('m00' || 'x'), 0, true)")
    con.execute("copy d to '" + str(derived).replace("'", "''") + "' (format parquet)")
    new = {k: v for k, v in BASE.items() if k != "m00"} | {"m01": 101}
    # When the run commits the membership with its delta
    store.commit_snapshot(
        "files",
        "seg_a",
        members(tmp_path, new, "run-2.parquet"),
        fields=("Id", "Attributes.A"),
        mapping_hash="m1",
        rows=len(new),
        run_id="run-2",
        delta=derived,
    )
    # Then the delta stored is that very file, and the snapshot reads as the new membership
    (stored,) = pointer(store)["deltas"]
    assert (stored["sha256"], stored["upserts"], stored["tombstones"]) == (sha256_file(derived), 1, 1)
    assert load(store, tmp_path, "w2") == new


def test_a_superseded_data_file_is_deleted_though_its_name_is_not_one_this_lakeseg_gives(store, tmp_path):
    # Given a committed snapshot whose data file has a name today's lakeseg never gives (an earlier one's)
    commit(store, tmp_path, BASE, "run-1")
    doc = pointer(store)
    old = f"{FOLDER}/membership.parquet"
    store._write(old, store._read(doc["file"]))
    store._delete(doc["file"])
    store._write(POINTER, json.dumps({**doc, "file": old}).encode())
    # When the next run commits a new membership as a new base (it loaded nothing)
    commit(store, tmp_path, NEXT, "run-2")
    # Then the file the pointer named before is deleted all the same
    assert "membership.parquet" not in files(store) and len(files(store)) == 2
    assert load(store, tmp_path, "w2") == NEXT


def test_a_commit_after_another_writer_moved_the_pointer_writes_a_base(store, tmp_path):
    # Given a committed base, loaded by this run, then replaced by another writer's commit (another process)
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    other = open_state_store(store.url, s3_client=getattr(store, "s3", None))
    commit(other, tmp_path, {**BASE, "m05": 555}, "run-x")
    # When this run commits, then it writes a whole base: a delta would be against what it loaded, no longer current
    commit(store, tmp_path, NEXT, "run-2")
    assert "format" not in pointer(store) and load(store, tmp_path, "w2") == NEXT


def test_members_leaving_count_toward_compaction_as_much_as_members_changing(store, tmp_path):
    # Given a loaded base of 10 members and max_share 0.5
    commit(store, tmp_path, BASE, "run-1")
    load(store, tmp_path, "w1")
    # When half of them leave (5 tombstones, no upsert)
    rest = {k: v for k, v in BASE.items() if k >= "m05"}
    commit(store, tmp_path, rest, "run-2")
    # Then the delta reaches the share and a new base is written instead
    assert "deltas" not in pointer(store) and load(store, tmp_path, "w2") == rest
