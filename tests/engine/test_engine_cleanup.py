"""Issue 27, clean-up that survives kills: the owner file goes last, and whatever state a dead run's clean-up
reached, the next run removes what it left (work folder, state store temp files, staging folders) at once,
never what a live run is using."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from sync.core import failpoints, owners
from sync.run.engine import OWNER_FILE
from tests.engine.harness import EngineHarness, by_segment

COLS = {"endpoint_id": "Id", "last_name": "User.UserAttributes.LastName"}
ROWS = [("e1", "Smith"), ("e2", "Jones")]
GONE = 2**22 + 4321  # above Linux's pid_max: no such process
DEAD_RUN = "20261206T010000000Z-dead01"


class Killed(BaseException):
    """Stands in for the process exit a failpoint makes (os._exit skips every finally: so does this, from where it
    is raised)."""


@pytest.fixture
def h(tmp_path) -> EngineHarness:
    h = EngineHarness(tmp_path)
    h.segment("seg_a", COLS, ROWS)
    return h


def everything_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def dead_runs_folder(h) -> Path:
    """Where the dead run DEAD_RUN, on this host, had its work folder (not made): its name says whose it was."""
    return h.work / f"{DEAD_RUN}.{GONE}@{owners.host_label()}"


def staging_of(h, run_id: str) -> Path:
    """The staging folder ``run_id`` made for seg_a in the export folder."""
    folder = h.exports / ".incoming" / f"{run_id}-seg_a"
    folder.mkdir(parents=True)
    return folder


def run_killed_at(h: EngineHarness, monkeypatch, stage: str):
    """A run by a process (pid GONE) that is killed at ``stage``; returns its work folder."""

    def exit_now(code):
        raise Killed(code)

    with monkeypatch.context() as m:
        m.setattr(failpoints.os, "_exit", exit_now)
        m.setenv("LAKESEG_FAILPOINTS", stage)
        m.setattr(os, "getpid", lambda: GONE)  # the killed process: its pid runs no more afterwards
        with pytest.raises(Killed):
            h.run()
        (folder,) = [p for p in h.work.iterdir()]
    return folder


@pytest.mark.parametrize(
    ("stage", "left"),
    [
        pytest.param("cleanup-start", "the-import-csv-and-the-owner-file", id="killed-before-clean-up"),
        pytest.param("cleanup-after-contents", "only-the-owner-file", id="killed-after-the-contents-went"),
        pytest.param("cleanup-after-owner-file", "an-empty-folder", id="killed-after-the-owner-file-went"),
    ],
)
def test_a_run_killed_at_each_step_of_its_clean_up_leaves_a_folder_the_next_run_removes_at_once(
    h, monkeypatch, stage, left
):
    # Given a run that delivered and committed, then was killed at one step of removing its work folder
    folder = run_killed_at(h, monkeypatch, stage)
    # Then what is left shows the owner file goes last: it is there as long as anything else is
    files = everything_under(folder)
    if left == "the-import-csv-and-the-owner-file":
        assert OWNER_FILE in files and any(f.endswith(".csv") for f in files), files
    elif left == "only-the-owner-file":
        assert files == [OWNER_FILE]
    else:
        assert files == []
    # and the folder's name still names its owner, a process that is gone
    assert owners.owner_of(folder.name) == {"host": socket.gethostname(), "pid": GONE}
    # When the next run starts (within the day: its age alone would keep it)
    report = h.run()
    # Then the dead run's folder is gone at once, and the next run's own folder too: nothing is left
    assert by_segment(report)["seg_a"].status == "unchanged"
    assert list(h.work.iterdir()) == []


def test_a_dead_runs_folder_whose_owner_file_is_gone_is_still_removed_at_once(h):
    # Given a folder a dead run here left holding an import file with last names, its owner file gone already
    # (an older lakeseg removed it first)
    folder = dead_runs_folder(h)
    (folder / "seg_a" / "import").mkdir(parents=True)
    (folder / "seg_a" / "import" / "part-00000.csv").write_text("Id,User.UserAttributes.LastName\ne1,Smith\n")
    # When the next run starts, within the day
    h.run()
    # Then it is removed at once: its name says whose it was
    assert not folder.exists()


@pytest.mark.parametrize(
    ("owner", "age_days", "kept"),
    [
        pytest.param("<live>@<here>", 0, True, id="a-live-run-here"),
        pytest.param(f"{GONE}@elsewhere", 0, True, id="another-hosts-recent-run"),
        pytest.param(f"{GONE}@elsewhere", 1.5, False, id="another-hosts-run-a-day-and-a-half-old"),
    ],
)
def test_a_folder_named_after_a_live_or_unknowable_owner_is_kept_without_its_owner_file(
    h, live_pid, owner, age_days, kept
):
    # Given a work folder with no owner file, named after its owner
    tag = owner.replace("<live>", str(live_pid)).replace("<here>", owners.host_label())
    folder = h.work / f"{DEAD_RUN}.{tag}"
    (folder / "spill").mkdir(parents=True)
    when = time.time() - age_days * 86400
    os.utime(folder, (when, when))
    # When a sync runs
    h.run()
    # Then a live run's folder stays, and so does another host's until it is a day old
    assert folder.exists() is kept


def test_the_owner_file_stays_with_whatever_the_clean_up_could_not_remove(h, monkeypatch):
    import shutil

    from sync.run import engine

    # Given a clean-up that cannot remove the segment's folder (it holds the import file)
    real_rmtree = shutil.rmtree

    def stuck(path, *args, **kwargs):
        if os.path.basename(path) == "seg_a":
            raise PermissionError(13, "Permission denied", str(path))
        return real_rmtree(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(engine.shutil, "rmtree", stuck)
        report = h.run()
    # Then the folder keeps its owner file beside what is left (a later run can still tell whose it is)
    folder = h.run_folder(report)
    assert OWNER_FILE in everything_under(folder) and "seg_a" in everything_under(folder)
    assert json.loads((folder / OWNER_FILE).read_text())["run_id"] == report.run_id


def test_the_next_run_collects_the_temp_files_and_staging_folders_of_dead_runs_and_keeps_a_live_runs(h, live_pid):
    here = owners.host_label()
    live_run = "20261206T020000000Z-11fe01"
    # Given a dead run here that left its work folder, a staging folder and a temp file in the state store
    dead_runs_folder(h).mkdir(parents=True)
    dead_staging = staging_of(h, DEAD_RUN)
    (dead_staging / "part-00000.csv").write_text("Id\ne1\n")
    state_folder = h.state_dir / "snapshots" / "files" / "seg_a"
    state_folder.mkdir(parents=True)
    dead_temp = state_folder / f".current.json.{GONE}@{here}.a1b2c3d4.tmp"
    dead_temp.write_text('{"half')
    # and a live run here with the same three
    (h.work / f"{live_run}.{live_pid}@{here}").mkdir(parents=True)
    live_staging = staging_of(h, live_run)
    live_temp = state_folder / f".current.json.{live_pid}@{here}.e5f6a7b8.tmp"
    live_temp.write_text('{"being written')
    # When the next run syncs
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then the dead run's debris is gone, and the live run's is all still there
    assert not dead_staging.exists() and not dead_temp.exists()
    assert live_staging.exists() and live_temp.exists()
    assert [p.name for p in h.work.iterdir()] == [f"{live_run}.{live_pid}@{here}"]


def test_a_dead_runs_staging_is_collected_for_the_run_its_owner_file_names_whatever_its_folder_is_called(h):
    # Given a dead run's work folder under a name that does not carry its run id, whose owner file names the run,
    # and that run's fresh staging folder in the export folder
    folder = h.work / "renamed"
    folder.mkdir(parents=True)
    (folder / OWNER_FILE).write_text(json.dumps({"host": owners.host_label(), "pid": GONE, "run_id": DEAD_RUN}))
    staging = staging_of(h, DEAD_RUN)
    # When the next run syncs
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then the folder and the staging of the run its owner file names are gone at once
    assert not folder.exists() and not staging.exists()


def test_a_link_in_the_work_folder_is_never_followed_into_what_it_points_at(h, tmp_path):
    # Given a link in the work root to a folder elsewhere that looks like a dead run's work folder, a day old
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / OWNER_FILE).write_text(json.dumps({"host": owners.host_label(), "pid": GONE, "run_id": DEAD_RUN}))
    (elsewhere / "precious.csv").write_text("kept\n")
    old = time.time() - 2 * 86400
    os.utime(elsewhere, (old, old))
    h.work.mkdir(parents=True, exist_ok=True)
    dead_runs_folder(h).symlink_to(elsewhere, target_is_directory=True)
    # When the next run syncs
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then nothing it points at is touched
    assert everything_under(elsewhere) == [OWNER_FILE, "precious.csv"]


def test_a_dead_runs_staging_is_collected_by_its_folders_name_when_the_host_has_dots(h, monkeypatch):
    import socket

    # Given a host whose name has dots, and a folder a dead run here left without its owner file
    monkeypatch.setattr(socket, "gethostname", lambda: "runner-1.eu-west-1.compute.internal")
    dead_runs_folder(h).mkdir(parents=True)
    staging = staging_of(h, DEAD_RUN)
    # When the next run syncs
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then the run its folder's name starts with is dead, and its staging folder is gone at once
    assert not staging.exists() and list(h.work.iterdir()) == []


def test_the_destinations_debris_is_collected_when_the_state_stores_collection_fails(h, monkeypatch):
    from sync.state.local import LocalStateStore

    # Given a dead run's staging folder, and a state store whose collection of debris fails
    dead_runs_folder(h).mkdir(parents=True)
    staging = staging_of(h, DEAD_RUN)

    def fails(self, is_dead, max_age_seconds):
        raise OSError("state store unreachable")

    monkeypatch.setattr(LocalStateStore, "collect_debris", fails)
    # When the next run syncs
    assert by_segment(h.run())["seg_a"].status == "synced"
    # Then the destination's debris is collected all the same
    assert not staging.exists()


def test_removing_a_work_folder_passes_over_its_owner_file_and_removes_it_last(tmp_path):
    from sync.run.engine import remove_work_folder

    class OwnerFileFirst(type(Path())):
        """A folder that lists its owner file before anything else."""

        def iterdir(self):
            return iter(sorted(super().iterdir(), key=lambda p: p.name != OWNER_FILE))

    # Given a work folder whose listing starts with its owner file, then a file and a folder
    folder = OwnerFileFirst(tmp_path / "work")
    (folder / "seg_a").mkdir(parents=True)
    (folder / OWNER_FILE).write_text("{}")
    (folder / "seg_a" / "part-00000.csv").write_text("Id\ne1\n")
    (folder / "notes.txt").write_text("x")
    stages = []
    # When it is removed
    remove_work_folder(folder, failpoint=lambda stage: stages.append((stage, everything_under(folder))))
    # Then everything past the owner file went before it, and the folder with it
    assert stages[1] == ("cleanup-after-contents", [OWNER_FILE])
    assert not folder.exists()


def test_a_work_folder_another_run_removes_just_before_the_last_step_is_no_error(tmp_path):
    import shutil

    from sync.run.engine import remove_work_folder

    # Given a work folder that another run's clean-up removes just as this one comes to remove the folder itself
    folder = tmp_path / "work"
    (folder / "seg_a").mkdir(parents=True)
    (folder / OWNER_FILE).write_text("{}")

    def removed_by_another_run(stage):
        if stage == "cleanup-after-owner-file":
            shutil.rmtree(folder)

    # When it is removed, then nothing is raised and the folder is gone
    remove_work_folder(folder, failpoint=removed_by_another_run)
    assert not folder.exists()


CHILD = """
import sys
from tests.engine.harness import EngineHarness
h = EngineHarness(sys.argv[1])
h.segment("seg_a", {cols!r}, {rows!r})
h.run()
"""


@pytest.mark.parametrize("stage", failpoints.CLEANUP_STAGES)
def test_a_process_really_killed_during_its_clean_up_leaves_nothing_after_the_next_run(tmp_path, stage):
    import subprocess
    import sys

    # Given a sync in a process of its own, which exits abruptly (os._exit, no finally) at a step of its clean-up
    root = tmp_path / "project"
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(cols=COLS, rows=ROWS), str(root)],
        env={**os.environ, "LAKESEG_FAILPOINTS": stage},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == failpoints.KILLED_EXIT_CODE, child.stderr
    h = EngineHarness(root)
    assert len(list(h.work.iterdir())) == 1  # its work folder, in whatever state the kill left it
    # When the next run starts in this process (the killed one is gone: nothing stands in for it)
    h.segment("seg_a", COLS, ROWS)
    report = h.run()
    # Then the killed run's folder is gone at once, whatever its clean-up reached, and nothing else is left
    assert by_segment(report)["seg_a"].status == "unchanged"
    assert list(h.work.iterdir()) == []


@pytest.mark.parametrize(
    ("age_days", "collected"),
    [
        pytest.param(1.5, False, id="a-day-and-a-half-old-may-be-a-long-live-run-kept"),
        pytest.param(2.5, True, id="older-than-any-run-may-last-collected"),
    ],
)
def test_temp_files_and_staging_of_an_owner_that_cannot_be_judged_go_once_older_than_any_run(h, age_days, collected):
    # Given a temp file and a staging folder of a run on another host (its pid says nothing here)
    state_folder = h.state_dir / "snapshots" / "files" / "seg_a"
    state_folder.mkdir(parents=True)
    temp = state_folder / f".current.json.{GONE}@elsewhere.a1b2c3d4.tmp"
    temp.write_text('{"half')
    staging = h.exports / ".incoming" / "20261206T020000000Z-e15e01-seg_a"
    staging.mkdir(parents=True)
    when = time.time() - age_days * 86400
    for path in (temp, staging):
        os.utime(path, (when, when))
    # When a sync runs here
    h.run()
    # Then they are left while they may belong to a live run, and collected once older than any run may last
    assert temp.exists() is not collected and staging.exists() is not collected
