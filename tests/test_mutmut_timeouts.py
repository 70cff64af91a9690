"""tests/mutmut_timeouts.py: a mutmut timeout signals the child it was set for, never a later owner of its pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import types

import pytest

from tests import mutmut_timeouts as mt


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_process_past_its_deadline_is_signalled_and_none_before(child):
    clock = Clock()
    deadlines = mt.Deadlines(sig=signal.SIGTERM, clock=clock)
    deadlines._heap.append((clock() + 5, child.pid, mt.start_time(child.pid)))
    assert deadlines.expire() == [] and child.poll() is None
    clock.now += 5
    assert deadlines.expire() == [child.pid]
    assert child.wait(timeout=10) == -signal.SIGTERM


def test_a_pid_now_held_by_another_process_is_not_signalled(child):
    # Given a deadline recorded for the pid when another process (started at another time) held it
    clock = Clock()
    deadlines = mt.Deadlines(sig=signal.SIGTERM, clock=clock)
    deadlines._heap.append((clock(), child.pid, mt.start_time(child.pid) - 1))
    # When it expires, then the process that holds the pid now is left alone
    assert deadlines.expire() == [] and child.poll() is None


def test_a_process_gone_before_its_deadline_was_registered_is_never_signalled():
    proc = subprocess.Popen(["true"])
    proc.wait()
    clock = Clock()
    deadlines = mt.Deadlines(clock=clock)
    deadlines.register(proc.pid, 0)
    assert deadlines._heap[0][2] is None and deadlines.expire() == []


def test_the_start_time_is_read_from_proc_and_none_for_no_process(child):
    assert isinstance(mt.start_time(child.pid), int) and mt.start_time(child.pid) > 0
    assert mt.start_time(2**22 + 1) is None  # above any pid_max


def test_the_guard_replaces_mutmuts_register_timeout_only_under_mutmut(monkeypatch):
    monkeypatch.delitem(sys.modules, "mutmut.workers.isolation", raising=False)
    assert mt.guard() is False
    fake = types.SimpleNamespace(register_timeout=lambda pid, timeout_s: None)
    monkeypatch.setitem(sys.modules, "mutmut.workers.isolation", fake)
    assert mt.guard() is True
    replaced = fake.register_timeout
    assert isinstance(replaced.__self__, mt.Deadlines)
    assert mt.guard() is True and fake.register_timeout == replaced  # once
