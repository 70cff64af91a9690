"""SIGTERM as an exception, so a stopped run cleans up on its way out.

CodeBuild sends SIGTERM when a build times out or is stopped; Python's default
is to die at once, skipping every ``finally`` (an Athena query left running,
a lock left held, a history document left "running"). Inside
``terminate_on_sigterm()`` the signal raises ``Terminated`` in the main thread
instead. ``Terminated`` is a ``KeyboardInterrupt``: no ``except Exception``
(the engine's per-segment boundary) swallows it, so the run ends, its
``finally`` blocks run, and the CLI exits 143 (128 + SIGTERM); and whatever
handles Ctrl-C handles it too -- ``dbt build`` cancels its open connections
(dbt-athena stops its running queries).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):  # noqa: N818 - named after the signal's meaning, as KeyboardInterrupt is
    """The process received SIGTERM."""


def _raise_terminated(signum, _frame) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
