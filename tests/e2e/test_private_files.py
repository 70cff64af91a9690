"""Files that may hold personal data are private (0600 in 0700 folders) and do not outlive their run."""

from __future__ import annotations

import stat

from sync.core.failpoints import KILLED_EXIT_CODE


def modes(root):
    return {p: stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_exports_state_and_work_are_private(lakeseg, build_now):
    # When a sync runs as a real process
    done = lakeseg.subprocess("sync", build_now)
    assert done.returncode == 0, done.stderr
    # Then every file it wrote is readable by its owner only, and every folder too
    for root in (lakeseg.exports, lakeseg.state):
        found = modes(root)
        assert found
        loose = {str(p): oct(m) for p, m in found.items() if m & 0o077}
        assert not loose, loose
    # and the work folder of the run is gone
    assert not lakeseg.work.exists() or not any(lakeseg.work.iterdir())


def test_a_killed_runs_work_folder_is_removed_by_the_next_run(lakeseg, build_now):
    # Given a run killed after writing its import files (personal data) into its work folder
    killed = lakeseg.subprocess("sync", build_now, env={"LAKESEG_FAILPOINTS": "after-files"})
    assert killed.returncode == KILLED_EXIT_CODE
    leftovers = [p for p in lakeseg.work.iterdir() if p.is_dir()]
    assert leftovers and any(leftovers[0].rglob("*.csv"))
    # When the next run starts
    assert lakeseg.subprocess("sync", build_now).returncode == 0
    # Then the dead run's folder is gone at once, not a day later
    assert not any(p.exists() for p in leftovers)
