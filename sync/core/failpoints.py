"""Failpoints: kill the process at a named stage, to test crash safety.

Set ``LAKESEG_FAILPOINTS`` to a comma-separated list of stage names
(``after-read``, ``after-files``, ``after-in-doubt``, ``during-delivery``,
``before-commit``); the
process then exits abruptly (no cleanup, no finally blocks) when it reaches
that stage. Unset -- as in normal use -- this does nothing.

The run's own clean-up of its work folder has stages too (``CLEANUP_STAGES``:
before it starts, after the folder's contents are removed, after its owner
file is removed); a run killed at any of them has delivered and committed
already, so they are kept apart from ``STAGES``. So are the stages inside a
snapshot commit (``COMMIT_STAGES``): a delta or base stored but not yet
pointed to, and the pointer moved with the superseded files still there.
"""

from __future__ import annotations

import os

STAGES = ("after-read", "after-files", "after-in-doubt", "during-delivery", "before-commit")
CLEANUP_STAGES = ("cleanup-start", "cleanup-after-contents", "cleanup-after-owner-file")
# Inside a snapshot commit (sync/state/base.py): the data (a delta or a new base) stored, the pointer not yet
# moved; the pointer moved, the superseded files not yet deleted.
COMMIT_STAGES = ("commit-after-data", "commit-after-pointer")
KILLED_EXIT_CODE = 137


def hit(stage: str) -> None:
    armed = os.environ.get("LAKESEG_FAILPOINTS")
    if armed and stage in {s.strip() for s in armed.split(",")}:
        os._exit(KILLED_EXIT_CODE)
