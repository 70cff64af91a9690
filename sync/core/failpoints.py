"""Failpoints: kill the process at a named stage, to test crash safety.

Set ``LAKESEG_FAILPOINTS`` to a comma-separated list of stage names
(``after-read``, ``after-files``, ``after-in-doubt``, ``during-delivery``,
``before-commit``); the
process then exits abruptly (no cleanup, no finally blocks) when it reaches
that stage. Unset -- as in normal use -- this does nothing.
"""

from __future__ import annotations

import os

STAGES = ("after-read", "after-files", "after-in-doubt", "during-delivery", "before-commit")
KILLED_EXIT_CODE = 137


def hit(stage: str) -> None:
    armed = os.environ.get("LAKESEG_FAILPOINTS")
    if armed and stage in {s.strip() for s in armed.split(",")}:
        os._exit(KILLED_EXIT_CODE)
