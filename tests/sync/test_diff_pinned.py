"""Pinned results of the diff on the benchmark's data (small scale).

The figures and file digests below were recorded with the diff as it was
before the performance work of issue 14 (length-prefixed MD5 digest, 1 GB
memory limit). Any faster diff must classify the same members and write the
same bytes: a change to the digest's construction may change snapshots, never
what is sent.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from benchmarks.sync_bench import _key, _segment, expected_churn, lakeseg_sync, setup
from sync.core.import_files import write_import_files
from sync.run.diff import changes_sql, prepare

ROWS = 20_000
# (entered, changed, exited, unchanged) and the one import file's SHA-256.
SECOND_SYNC = (500, 975, 500, 18_525)
SECOND_SYNC_FILE = "451175e331f79b3b6c22ad10804639c6e28b4537ec2e6d3428919e1bb78dc91a"
FIRST_SYNC_FILE = "e406865f9b45af95eccf09df368784c8c58a0c382d5bae81fcc74c538468d21e"
# With two threads the row order may vary; the header and the set of records may not.
SECOND_SYNC_SORTED = "668244c7ff7023bb22770202c93e4c32e7aebf645a437923dc53a1fbf290efc1"
FIRST_SYNC_SORTED = "5118b560d4b339821828eda68be1b15ffca7a17ab76ca5b45beaf90686c25f91"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench")
    setup(path, ROWS)
    return path


def _connect(work: Path, threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"set threads = {threads}")
    con.execute("set preserve_insertion_order = false")
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    return con


def _sorted_digest(path: Path) -> str:
    lines = path.read_bytes().split(b"\r\n")
    assert lines[-1] == b"", "every record ends with CRLF"
    return hashlib.sha256(b"\r\n".join([lines[0], *sorted(lines[1:-1])])).hexdigest()


def _first_sync(con, workdir: Path) -> list[Path]:
    prepared = prepare(con, _segment(), "seg.main.previous", previous=None, workdir=workdir, digest_key=_key())
    return write_import_files(con, changes_sql(prepared), workdir / "import", 100 * 1024 * 1024)


def test_given_one_thread_when_synced_then_counts_and_bytes_match_the_recorded_ones(work):
    # Given the bench segment (5% churn) and lakeseg's own snapshot of the previous members
    con = _connect(work, threads=1)
    # When the second sync plans and writes its import files, and a first sync writes everything
    plan, files = lakeseg_sync(con, work, work / "second")
    first = _first_sync(con, work / "first")
    con.close()
    # Then the classification and every byte sent are as recorded
    assert (plan.entered, plan.changed, plan.exited, plan.unchanged) == SECOND_SYNC
    assert expected_churn(ROWS) == (plan.entered, plan.changed, plan.exited)  # what `make bench` checks against
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == [SECOND_SYNC_FILE]
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in first] == [FIRST_SYNC_FILE]


def test_given_two_threads_when_synced_then_the_same_records_are_sent(work):
    # Given two threads (rows may come out in another order)
    con = _connect(work, threads=2)
    # When the second and a first sync run
    plan, files = lakeseg_sync(con, work, work / "second-2t")
    first = _first_sync(con, work / "first-2t")
    con.close()
    # Then the counts, the header and the records are the recorded ones
    assert (plan.entered, plan.changed, plan.exited, plan.unchanged) == SECOND_SYNC
    assert [_sorted_digest(f) for f in files] == [SECOND_SYNC_SORTED]
    assert [_sorted_digest(f) for f in first] == [FIRST_SYNC_SORTED]
