"""Bad state (snapshots, locks, history) and a failing work dir: only the affected segment is
refused or failed, with a message naming what is wrong; it is not sent and its committed
snapshot stays as it was; the other segments of the run go on.

Cases marked ``engine(...)`` rely on the engine's per-segment error boundary and state checks."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from tests.bad_inputs.conftest import no_traceback

pytestmark = pytest.mark.e2e

SEG, OTHER = "seg_ok", "seg_ok_too"


def engine(what: str):
    """Cases that rely on the engine's boundary and state checks; ``-m engine_state`` selects them."""
    return pytest.mark.engine_state


@pytest.fixture
def synced(corpus):
    """Both good segments synced and committed once."""
    out = corpus.sync(SEG, OTHER)
    assert out.exit_code == 0, out.output
    return corpus


def pointer_path(corpus, segment=SEG) -> Path:
    return corpus.state / "snapshots" / "files" / segment / "current.json"


def pointer(corpus, segment=SEG) -> dict:
    return json.loads(pointer_path(corpus, segment).read_text())


def data_path(corpus, segment=SEG) -> Path:
    return corpus.state / pointer(corpus, segment)["file"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_pointer(corpus, **changes):
    doc = {**pointer(corpus), **changes}
    pointer_path(corpus).write_text(json.dumps(doc))


def parquet_of(path: Path, sql: str) -> None:
    con = duckdb.connect()
    con.execute(f"copy ({sql}) to '{path}' (format parquet)")
    con.close()


# ---- how each case breaks the state of SEG -----------------------------------------------
def pointer_not_json(c):
    pointer_path(c).write_text("{not json")


def pointer_without_sha256(c):
    doc = pointer(c)
    doc.pop("sha256")
    pointer_path(c).write_text(json.dumps(doc))


def pointer_rows_text(c):
    rewrite_pointer(c, rows="many")


def snapshot_deleted(c):
    data_path(c).unlink()


def snapshot_bytes_changed(c):
    with data_path(c).open("ab") as f:
        f.write(b"tampered")


def snapshot_not_parquet(c):
    path = data_path(c)
    path.write_bytes(b"not parquet at all")
    rewrite_pointer(c, sha256=sha(path))


def pointer_file_a_number(c):
    rewrite_pointer(c, file=5)


def pointer_escapes_its_folder(c):
    # points at the other segment's snapshot, checksum and rows matching: it must still be refused
    other = data_path(c, OTHER)
    rewrite_pointer(c, file=str(other.relative_to(c.state)), sha256=sha(other), rows=pointer(c, OTHER)["rows"])


def pointer_absolute_path(c):
    outside = c.root / "outside.parquet"
    parquet_of(outside, "select 'ep-1' as \"Id\"")
    rewrite_pointer(c, file=str(outside), sha256=sha(outside), rows=1)


def snapshot_wrong_schema(c):
    path = data_path(c)
    parquet_of(path, "select 42 as a, 'x' as b from range(3)")
    rewrite_pointer(c, sha256=sha(path), rows=3)


def lock_held_by_a_live_run(c):
    lock = c.state / "locks" / "files" / f"{SEG}.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(
        json.dumps(
            {
                "owner": {"run_id": "r-live", "host": "another-host", "pid": 2**22 + 1},
                "acquired_at": "2026-11-26T00:00:00+00:00",
                "token": "t",
            }
        )
    )


def lock_unreadable(c):
    lock = c.state / "locks" / "files" / f"{SEG}.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("{garbage")


def lock_naive_timestamp(c):
    lock = c.state / "locks" / "files" / f"{SEG}.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(
        json.dumps(
            {
                "owner": {"run_id": "r-live", "host": "another-host", "pid": 2**22 + 1},
                "acquired_at": "2026-11-26T00:00:00",
                "token": "t",
            }
        )
    )


STATE_CASES = [
    # (id, breaker, words the segment's reason must contain)
    pytest.param(pointer_not_json, "corrupt", id="pointer-not-json"),
    pytest.param(pointer_without_sha256, "corrupt", id="pointer-without-sha256"),
    pytest.param(pointer_rows_text, "corrupt", id="pointer-rows-not-a-number"),
    pytest.param(snapshot_deleted, "missing", id="snapshot-deleted"),
    pytest.param(snapshot_bytes_changed, "checksum", id="snapshot-checksum-mismatch"),
    pytest.param(snapshot_not_parquet, "unreadable", id="snapshot-not-parquet"),
    pytest.param(lock_held_by_a_live_run, "lakeseg unlock", id="lock-held-by-a-live-run"),
    pytest.param(lock_unreadable, "locked", id="lock-unreadable"),
    pytest.param(
        pointer_file_a_number,
        "current.json",
        id="pointer-file-a-number",
        marks=engine("pointer 'file' type-checked; a bad one refuses only its segment"),
    ),
    pytest.param(
        pointer_escapes_its_folder,
        "current.json",
        id="pointer-escapes-its-folder",
        marks=engine("pointer 'file' confined to its segment's folder"),
    ),
    pytest.param(
        pointer_absolute_path,
        "current.json",
        id="pointer-absolute-path",
        marks=engine("pointer 'file' confined to its segment's folder"),
    ),
    pytest.param(
        snapshot_wrong_schema,
        ".parquet",
        id="snapshot-wrong-schema",
        marks=engine("snapshot schema checked on load; a bad one refuses only its segment"),
    ),
    pytest.param(
        lock_naive_timestamp,
        "lock",
        id="lock-naive-timestamp",
        marks=engine("a lock with a naive timestamp refuses only its segment"),
    ),
]


@pytest.mark.parametrize("breaker,words", STATE_CASES)
def test_bad_state_refuses_only_its_segment(synced, breaker, words):
    # given both segments committed, then the state of one broken
    breaker(synced)
    before = synced.pointers()
    # when syncing both again, sending everything
    out = synced.sync(SEG, OTHER, extra=("--full-refresh",))
    # then only the broken one is refused, naming what is wrong, and the other is synced
    assert no_traceback(out) and out.exit_code == 1, out.output
    report = out.report()
    seg = out.segment(SEG)
    assert seg["status"] == "refused" and words in seg["reason"], seg
    assert out.segment(OTHER)["status"] == "synced"
    # nothing of it sent in this run, and its committed pointer is untouched
    assert not (synced.exports / report["run_id"] / SEG).exists()
    synced.assert_nothing_committed(SEG, before=before)


@engine("one error boundary per segment: a disk-full error fails that segment, the run goes on, no .tmp left")
def test_disk_full_fails_only_its_segment(synced, monkeypatch):
    # given the work dir fills up while one segment's import files are written
    import sync.run.engine as engine_module

    real = engine_module.write_import_files

    def full(con, sql, folder, *args, **kwargs):
        if f"/{SEG}/" in str(folder):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(con, sql, folder, *args, **kwargs)

    monkeypatch.setattr(engine_module, "write_import_files", full)
    before = synced.pointers()
    out = synced.sync(SEG, OTHER, extra=("--full-refresh",))
    assert no_traceback(out) and out.exit_code == 1, out.output
    assert out.segment(SEG)["status"] == "failed" and "No space left" in out.segment(SEG)["reason"]
    assert out.segment(OTHER)["status"] == "synced"
    assert not (synced.exports / out.report()["run_id"] / SEG).exists()
    synced.assert_nothing_committed(SEG, before=before)
    assert not list(synced.work.rglob("*.tmp"))


def test_disk_full_never_shows_a_traceback_or_commits(synced, monkeypatch):
    # the part that holds today: one line, exit 1, nothing of the segment sent or committed
    import sync.run.engine as engine_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine_module, "write_import_files", full)
    before = synced.pointers()
    out = synced.invoke("sync", "--select", SEG, "--full-refresh")
    assert out.exit_code == 1 and no_traceback(out) and "No space left on device" in out.output
    assert len([p for p in synced.exports.iterdir() if not p.name.startswith(".")]) == 1  # the first run only
    synced.assert_nothing_committed(SEG, before=before)


@engine("DuckDB settings passed as parameters, not pasted into SQL (temp_directory)")
def test_a_work_dir_with_a_quote_works(corpus, tmp_path):
    corpus.write_settings(f"""targets:
  local:
    destination: {{type: files, path: EXPORTS}}
    state: STATE
    work_dir: "{tmp_path / "it's work"}"
""")
    out = corpus.sync(SEG)
    assert out.exit_code == 0, out.output


def test_state_location_that_is_a_file_is_a_config_error(corpus, tmp_path):
    not_a_dir = tmp_path / "state-file"
    not_a_dir.write_text("x")
    out = corpus.sync(SEG, extra=("--state", str(not_a_dir)))
    assert out.exit_code == 2 and "not writable" in out.stderr and no_traceback(out), out.output
    corpus.assert_nothing_sent()


def test_corrupt_history_never_shows_a_traceback(synced):
    run_file = next((synced.state / "history").glob("*.json"))
    run_id = json.loads(run_file.read_text())["run_id"]
    run_file.write_text("{corrupt")
    out = synced.invoke("history", "--run-id", run_id)
    assert out.exit_code != 0 and no_traceback(out), out.output


@engine("a corrupt history document is reported by its file name (exit 2)")
def test_corrupt_history_names_its_file(synced):
    run_file = next((synced.state / "history").glob("*.json"))
    run_id = json.loads(run_file.read_text())["run_id"]
    run_file.write_text("{corrupt")
    out = synced.invoke("history", "--run-id", run_id)
    assert out.exit_code == 2 and run_file.name in out.stderr, out.output


@pytest.mark.parametrize("segment", ["../../etc", "seg/ok", ""], ids=["dot-dot", "slash", "empty"])
def test_unlock_refuses_unsafe_segment_names(corpus, segment):
    out = corpus.invoke("unlock", "--destination", "files", "--segment", segment)
    assert out.exit_code == 2 and "segment name" in out.stderr and no_traceback(out), out.output
