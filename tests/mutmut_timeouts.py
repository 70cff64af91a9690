"""mutmut's wall-clock timeouts, made to signal only the child they were set for.

mutmut (3.8) registers a deadline per mutant child (``register_timeout(pid, seconds)``) and never
cancels it: when the deadline passes, its checker thread sends SIGXCPU to that pid, whatever process
has the pid by then. A mutant's child lives seconds; its deadline is up to 8x its tests' time later, and
on this machine pids wrap at 32,768 -- each child's threads take pids too -- so a stale deadline hits a
later mutant's child (recorded as a timeout, which counts as killed: a false kill) or any other process
of the machine (SIGXCPU ends it). Under ``make mutation`` the first case was seen: a mutant whose 192
tests all pass was recorded as timed out after 31 s of a 12-minute deadline.

``guard()`` replaces mutmut's ``register_timeout`` (in the module that calls it) with one that records
the child's start time (``/proc/<pid>/stat``, field 22) with its deadline, and signals the pid only while
a process of that pid and start time still runs. It is called from ``tests/conftest.py``, which mutmut's
parent process imports when it collects and runs the clean tests, before the first mutant is forked.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import signal
import sys
import threading
import time


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when no process has that pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])  # field 22 (fields 3.. follow the ")")
    except (OSError, ValueError, IndexError):
        return None


class Deadlines:
    """Deadlines per process; past its deadline a process is sent ``sig`` -- if it is still the same one."""

    def __init__(self, sig: int = signal.SIGXCPU, clock=time.time):
        self.sig, self.clock = sig, clock
        self._heap: list[tuple[float, int, int | None]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def register(self, pid: int, timeout_s: float) -> None:
        """mutmut's ``register_timeout(pid, timeout_s)``."""
        entry = (self.clock() + timeout_s, pid, start_time(pid))
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mutmut-timeouts", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, entry)
            self._cond.notify()

    def expire(self) -> list[int]:
        """Signal every process past its deadline that still runs as registered; the pids signalled."""
        signalled = []
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            _, pid, started = heapq.heappop(self._heap)
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, self.sig)
                    signalled.append(pid)
        return signalled

    def _run(self) -> None:
        with self._cond:
            while True:
                while not self._heap:
                    self._cond.wait()
                self.expire()
                if self._heap:
                    self._cond.wait(timeout=max(0.0, self._heap[0][0] - self.clock()))


def guard() -> bool:
    """Under mutmut, route its timeouts through ``Deadlines``; whether it did (False outside mutmut)."""
    isolation = sys.modules.get("mutmut.workers.isolation")
    if isolation is None or not hasattr(isolation, "register_timeout"):
        return False
    if not isinstance(getattr(isolation.register_timeout, "__self__", None), Deadlines):
        isolation.register_timeout = Deadlines().register
    return True
