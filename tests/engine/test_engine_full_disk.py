"""Issue 27: a full disk leaves no debris. State, export and work folders on a 2 MiB tmpfs that fills up part-way
through a run (at a different point for each amount of free space); after the disk is freed, the next run leaves
nothing behind -- no hidden temp file in the state store, no staging folder, no work folder, a readable imports
database -- and converges: everything is delivered and a further run has nothing to send."""

from __future__ import annotations

import contextlib
import os
import subprocess

import duckdb
import pytest

from sync.core.errors import LakesegError
from sync.run.imports_table import DuckDBImportsViews
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "last_name": "User.UserAttributes.LastName"}
MEMBERS = 1500


def rows(version: str) -> list[tuple]:
    return [(f"ep-{i:05d}", f"{version}-Lastname-{i:05d}-" + "x" * 40) for i in range(MEMBERS)]


@contextlib.contextmanager
def small_disk(where, size="2m"):
    where.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"a small filesystem needs `mount -t tmpfs` (root, CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk, leave_bytes: int):
    """Fill ``disk`` with a ballast file until only about ``leave_bytes`` are free; returns the ballast."""
    ballast = disk / "ballast"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(ballast, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave_bytes))
    return ballast


def debris(disk) -> list[str]:
    """Everything a run may leave behind on the disk: temp files, staging folders, work folders."""
    left = [str(p.relative_to(disk)) for p in disk.rglob("*.tmp")]
    left += [str(p.relative_to(disk)) for p in (disk / "exports" / ".incoming").glob("*")]
    left += [str(p.relative_to(disk)) for p in (disk / "work").glob("*")] if (disk / "work").exists() else []
    return left


CASES = [  # (when the disk fills, KiB left free): each runs out of space at another step of the run
    ("first-sync", 150),
    ("first-sync", 250),
    ("first-sync", 360),
    ("first-sync", 400),
    ("change", 0),
    ("change", 16),
    ("change", 96),
    ("change", 192),
    ("change", 320),
    ("change", 412),
]


@pytest.mark.parametrize(("phase", "free_kib"), CASES, ids=[f"{p}-with-{k}-KiB-left" for p, k in CASES])
def test_a_run_on_a_full_disk_leaves_no_debris_once_the_disk_is_freed_and_the_next_run_converges(
    tmp_path, phase, free_kib
):
    with small_disk(tmp_path / "disk") as disk:
        # Given state, exports (and the imports database beside them) and work folders on a small disk
        h = EngineHarness(tmp_path / "project")
        h.state_dir, h.exports, h.work = disk / "state", disk / "exports", disk / "work"
        views = DuckDBImportsViews(h.exports)
        h.segment("seg_a", COLS, rows("v1"))
        if phase == "change":  # a first sync went through; then every member changes
            assert by_segment(h.run(imports_table=views))["seg_a"].status == "synced"
            h.rebuild("seg_a", rows("v2"))
        # When the disk fills up part-way through the run that sends the segment
        ballast = fill(disk, free_kib * 1024)
        with contextlib.suppress(LakesegError, OSError, duckdb.Error):
            h.run(imports_table=views)
        # And the disk is freed again
        ballast.unlink()
        report = h.run(imports_table=DuckDBImportsViews(h.exports))
        # Then the next run leaves nothing behind
        assert report.ok, (report.error, report.segments)
        assert debris(disk) == []
        # and it converged: every member's latest value is committed and readable in the imports view, and a
        # further run has nothing to send
        latest = "v2" if phase == "change" else "v1"
        assert h.pointer("seg_a")["rows"] == MEMBERS
        con = duckdb.connect(str(views.database), read_only=True)
        try:
            seen = con.execute(
                f"select count(distinct endpoint_id) from imports.seg_a where last_name like '{latest}-%'"
            ).fetchall()[0][0]
        finally:
            con.close()
        assert seen == MEMBERS
        assert by_segment(h.run(imports_table=DuckDBImportsViews(h.exports)))["seg_a"].status == "unchanged"
