"""The files destination: a delivery appears whole in <path>/<run_id>/<segment>/, or not at all."""

from __future__ import annotations

import errno
import shutil

import pytest

from sync.destinations.files import FilesDestination
from tests.destinations.test_pinpoint import RUN_ID, delivery, write_csv

SEGMENT = "seg_email_clickers"


def test_an_interrupted_copy_leaves_no_half_delivery_in_sight(tmp_path, monkeypatch):
    """Guards issue 15 behaviour 13: files are staged and the segment folder appears with one rename, so an interrupted
    copy leaves no half delivery; verified to fail on a broken copy (sync/destinations/files.py:FilesDestination.deliver
    copying straight into the final folder)."""
    # Given a delivery of three import files, and a disk that fills up while the second one is copied
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", rows=5) for n in range(3)]
    dest = FilesDestination(tmp_path / "exports")
    dest.preflight()
    copy = shutil.copyfile
    copied = []

    def disk_full_on_the_second_file(src, dst, *args, **kwargs):
        copied.append(src)
        if len(copied) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(src, dst, *args, **kwargs)

    # When it is delivered
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", disk_full_on_the_second_file)
        with pytest.raises(OSError, match="No space left"):
            dest.deliver(delivery(files, segment=SEGMENT))
    # Then nothing of it is in sight: no run folder holds part of the segment
    final = tmp_path / "exports" / RUN_ID / SEGMENT
    assert not final.exists()
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [".incoming"]
    # And delivered again, the segment folder appears whole, with its receipt
    result = dest.deliver(delivery(files, segment=SEGMENT))
    assert result.confirmed and result.location == str(final)
    assert sorted(p.name for p in final.iterdir()) == ["_delivery.json", *(f.name for f in files)]
    assert all((final / f.name).read_bytes() == f.read_bytes() for f in files)


def test_a_delivery_reports_progress_per_file_and_a_receipt_naming_every_file(tmp_path):
    import json

    # Given two import files and a destination folder nobody prepared (no preflight)
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", rows=3) for n in range(2)]
    dest = FilesDestination(tmp_path / "new" / "exports")
    calls = []
    # When they are delivered
    result = dest.deliver(delivery(files, segment=SEGMENT), progress=lambda *a: calls.append(a))
    # Then progress counts the files one by one, and the receipt says what arrived
    assert calls == [(SEGMENT, 1, 2), (SEGMENT, 2, 2)]
    receipt = json.loads((tmp_path / "new" / "exports" / RUN_ID / SEGMENT / "_delivery.json").read_text())
    assert receipt["files"] == ["part-00000.csv", "part-00001.csv"]
    assert (receipt["run_id"], receipt["segment"]) == (RUN_ID, SEGMENT)
    assert receipt["fields"] == ["Id", "Address", "ChannelType", "User.UserAttributes.HasClicked"]
    assert receipt["counts"]["entered"] == 3
    assert receipt["delivered_at"].endswith("+00:00") and len(receipt["delivered_at"]) == len(
        "2026-11-26T06:00:00+00:00"
    )
    text = (tmp_path / "new" / "exports" / RUN_ID / SEGMENT / "_delivery.json").read_text()
    assert text == json.dumps(receipt, indent=2) + "\n"
    assert result.confirmed and result.jobs == [] and result.rejected == {}
    # And a second segment of the same run lands beside the first
    dest.deliver(delivery(files, segment="seg_other"))
    assert sorted(p.name for p in (tmp_path / "new" / "exports" / RUN_ID).iterdir()) == [SEGMENT, "seg_other"]


def test_a_leftover_staging_folder_of_the_same_delivery_is_replaced(tmp_path):
    files = [write_csv(tmp_path / "import" / "part-00000.csv", rows=2)]
    dest = FilesDestination(tmp_path / "exports")
    stale = tmp_path / "exports" / ".incoming" / f"{RUN_ID}-{SEGMENT}"
    stale.mkdir(parents=True)
    (stale / "part-00009.csv").write_text("half")
    dest.deliver(delivery(files, segment=SEGMENT))
    assert sorted(p.name for p in (tmp_path / "exports" / RUN_ID / SEGMENT).iterdir()) == [
        "_delivery.json",
        "part-00000.csv",
    ]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"type": "files"}, "^destination settings: destination.path: is required$"),
        ({"type": "files", "path": ""}, "^destination settings: destination.path: must not be empty"),
    ],
    ids=["missing", "empty"],
)
def test_from_settings_needs_a_path(settings, message):
    from sync.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        FilesDestination.from_settings(settings)
    assert FilesDestination.from_settings({"type": "files", "path": "x"}).path.name == "x"


def test_preflight_names_a_path_it_cannot_write(tmp_path):
    from sync.core.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"destination.path {blocker} is not writable"):
        FilesDestination(blocker).preflight()
    FilesDestination(tmp_path / "ok").preflight()
    assert list((tmp_path / "ok" / ".incoming").iterdir()) == []


class Killed(BaseException):
    """Stands in for the process exit a failpoint makes (in process, so that `make mutation` sees the test use
    deliver; deliver has no cleanup an exit would skip)."""


def test_a_run_killed_at_the_during_delivery_failpoint_leaves_only_the_staged_first_file(tmp_path, monkeypatch):
    """The documented ``during-delivery`` failpoint (sync/core/failpoints.py) is what crash tests arm to kill a run in the
    middle of a copy: armed, the process exits right after the first file is staged, and no segment folder appears."""
    from sync.core import failpoints

    def exit_now(code):
        raise Killed(code)

    # Given a delivery of two import files, and the during-delivery failpoint armed (in a list, as documented)
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", rows=2) for n in range(2)]
    monkeypatch.setattr(failpoints.os, "_exit", exit_now)
    monkeypatch.setenv("LAKESEG_FAILPOINTS", "after-read, during-delivery")
    # When it is delivered
    with pytest.raises(Killed) as killed:
        FilesDestination(tmp_path / "exports").deliver(delivery(files, segment=SEGMENT))
    # Then the process exits with the killed code after staging the first file; no segment folder is in sight
    assert killed.value.args == (failpoints.KILLED_EXIT_CODE,)
    assert not (tmp_path / "exports" / RUN_ID).exists()
    staged = tmp_path / "exports" / ".incoming" / f"{RUN_ID}-{SEGMENT}"
    assert [p.name for p in staged.iterdir()] == ["part-00000.csv"]


def test_a_delivery_that_fails_on_a_full_disk_leaves_no_staging_folder(tmp_path, monkeypatch):
    # Given a delivery of two import files, and a disk that fills up while the second one is copied
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", rows=5) for n in range(2)]
    dest = FilesDestination(tmp_path / "exports")
    dest.preflight()
    copy, copied = shutil.copyfile, []

    def disk_full_on_the_second_file(src, dst, *args, **kwargs):
        copied.append(src)
        if len(copied) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", disk_full_on_the_second_file)
    # When it is delivered
    with pytest.raises(OSError, match="No space left"):
        dest.deliver(delivery(files, segment=SEGMENT))
    # Then the staged first file does not stay behind: the staging area is empty
    assert list((tmp_path / "exports" / ".incoming").iterdir()) == []


def test_a_delivery_that_fails_before_its_staging_folder_exists_raises_its_own_error(tmp_path, monkeypatch):
    # Given a delivery, and a disk too full for its staging folder to be made
    files = [write_csv(tmp_path / "import" / "part-00000.csv", rows=5)]
    dest = FilesDestination(tmp_path / "exports")
    dest.preflight()
    mkdir = type(tmp_path).mkdir

    def disk_full_for_staging(self, *args, **kwargs):
        if self.parent.name == ".incoming":
            raise OSError(errno.ENOSPC, "No space left on device")
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", disk_full_for_staging)
    # When it is delivered, then the error says what failed (the clean-up of a folder never made hides nothing)
    with pytest.raises(OSError, match="No space left") as failed:
        dest.deliver(delivery(files, segment=SEGMENT))
    assert failed.value.errno == errno.ENOSPC
    assert list((tmp_path / "exports" / ".incoming").iterdir()) == []


DEAD_RUN, LIVE_RUN = "20261125T020000000Z-dead01", "20261125T040000000Z-11fe01"


@pytest.mark.parametrize(
    ("name", "dead_runs", "age_days", "collected"),
    [
        pytest.param(f"{DEAD_RUN}-{SEGMENT}", {DEAD_RUN}, 0, True, id="a-dead-runs-staging-goes-at-once"),
        pytest.param(f"{LIVE_RUN}-{SEGMENT}", {DEAD_RUN}, 0, False, id="a-live-runs-staging-stays"),
        pytest.param(f"{LIVE_RUN}-{SEGMENT}", set(), 1.5, True, id="staging-older-than-any-run-goes"),
        pytest.param("not-a-run-id", set(), 0, False, id="a-recent-folder-of-unknown-run-stays"),
    ],
)
def test_staging_folders_of_dead_runs_are_collected_and_a_live_runs_kept(
    tmp_path, name, dead_runs, age_days, collected
):
    import os
    import time

    # Given a staging folder holding an import file in the export folder
    staged = tmp_path / "exports" / ".incoming" / name
    staged.mkdir(parents=True)
    (staged / "part-00000.csv").write_text("Id\nep-1\n")
    when = time.time() - age_days * 86400
    os.utime(staged, (when, when))
    # When the next run collects what dead runs left (any run lasts less than a day)
    removed = FilesDestination(tmp_path / "exports").collect_debris(dead_runs, 86400)
    # Then it goes only if its run is dead or it is older than any run lasts
    assert staged.exists() is not collected
    assert removed == ([name] if collected else [])


def test_an_export_folder_that_takes_no_new_folder_is_refused_by_preflight(tmp_path, monkeypatch):
    """A read-only export folder whose staging folder is still writable (made by an earlier run): the delivery
    would stage, then fail to make the run's folder -- one failure per segment, exit 1. Preflight says so first."""
    from pathlib import Path

    from sync.core.errors import ConfigError

    # Given an export folder with its staging folder, where no new folder can be made (only in .incoming)
    exports = tmp_path / "exports"
    (exports / ".incoming").mkdir(parents=True)
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == exports and self.name != ".incoming":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    # When the destination is checked before a run, then it is a configuration error naming the folder
    with pytest.raises(ConfigError, match=f"destination.path {exports} is not writable"):
        FilesDestination(exports).preflight()


def test_a_staging_folder_exactly_as_old_as_the_limit_stays_and_one_a_second_older_goes(tmp_path, monkeypatch):
    import os
    from types import SimpleNamespace

    # Given two staging folders of unknown runs, one exactly a day old and one a second older, at a fixed now
    now = 1_800_000_000
    incoming = tmp_path / "exports" / ".incoming"
    for name, age in (("at-the-limit", 86400), ("past-the-limit", 86401)):
        (incoming / name).mkdir(parents=True)
        os.utime(incoming / name, (now - age, now - age))
    monkeypatch.setattr("sync.destinations.files.time", SimpleNamespace(time=lambda: float(now)))
    # When debris older than a day is collected
    removed = FilesDestination(tmp_path / "exports").collect_debris(set(), 86400)
    # Then only the one older than the limit goes
    assert removed == ["past-the-limit"]
    assert sorted(p.name for p in incoming.iterdir()) == ["at-the-limit"]


def test_a_staging_folder_another_run_removes_meanwhile_is_skipped_and_the_rest_collected(tmp_path, monkeypatch):
    # Given the staging folders of two dead runs, one of which another run's clean-up removes as this one gets to it
    incoming = tmp_path / "exports" / ".incoming"
    names = [f"{DEAD_RUN}-{segment}" for segment in ("seg_a", "seg_b")]
    for name in names:
        (incoming / name).mkdir(parents=True)
    rmtree = shutil.rmtree

    def removed_by_another_run_first(path, *args, **kwargs):
        rmtree(path, *args, **kwargs)
        if path.name == names[0]:
            raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(shutil, "rmtree", removed_by_another_run_first)
    # When this run collects the dead runs' debris
    removed = FilesDestination(tmp_path / "exports").collect_debris({DEAD_RUN}, 86400)
    # Then the vanished one is no error and not claimed, and the other is collected
    assert removed == [names[1]]
    assert list(incoming.iterdir()) == []


def test_preflight_passes_over_a_probe_folder_a_killed_run_with_the_same_pid_left(tmp_path):
    import os

    # Given the empty probe folder a run killed during its preflight left, under this process's pid
    exports = tmp_path / "exports"
    (exports / f".probe-{os.getpid()}").mkdir(parents=True)
    # When the destination is checked, then it passes and takes the leftover with it
    FilesDestination(exports).preflight()
    assert sorted(p.name for p in exports.iterdir()) == [".incoming"]
