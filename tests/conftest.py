"""Fixtures shared by every test folder."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from pathlib import Path

import pytest

from sync.output.logs import AWS_LOGGERS, OWN_LOGGER
from tests import mutmut_timeouts
from tests.destinations import pinpoint_harness as h

mutmut_timeouts.guard()  # under `make mutation`: a timeout signals only the mutant child it was set for


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own.

    Code that writes to a relative path by mistake then writes there, not into
    the checkout -- where, under `make mutation`, one mutant's stray file
    (a parquet named ``None``) was read by the next mutant and hid it.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _is_own_process(pid: int) -> bool:
    """This test process or one it started (its descendants), read from /proc."""
    me = os.getpid()
    while pid > 1:
        if pid == me:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                pid = int(stat.read().rsplit(b")", 1)[1].split()[1])  # field 4: the parent's pid
        except (OSError, ValueError, IndexError):
            return False
    return False


@pytest.fixture(autouse=True)
def _signals_only_for_own_processes(monkeypatch):
    """No test may signal a process it does not own.

    A mutant of the liveness check (``os.kill(pid, 0)`` -> ``os.kill(pid, 1)``) once sent SIGHUP to pid 1,
    the machine's init, and ended ``make mutation`` part-way. A signal to any process outside this test's
    own tree now fails the test instead (pytest's Failed is no ``Exception``, so no ``except`` swallows it).
    A pid that runs nowhere is let through: the kernel answers ESRCH and nothing is signalled.
    """
    real_kill = os.kill

    def guarded_kill(pid: int, sig: int) -> None:
        if pid <= 0 or (os.path.exists(f"/proc/{pid}") and not _is_own_process(pid)):
            pytest.fail(f"a test sent signal {sig} to pid {pid}, a process it does not own")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", guarded_kill)


@pytest.fixture
def live_pid():
    """The pid of a live process this test started (and ends): a stand-in for another run's process."""
    child = subprocess.Popen(["sleep", "600"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture(autouse=True)
def open_umask():
    """Every test runs under a umask that lets group and others read, restored after it: the CLI sets 077 for the
    whole process, so without this a file's mode would depend on whether a CLI test ran earlier in the process (as
    under ``make mutation``, whose forked children inherit the parent's umask) and a lost ``mode=0o700`` go unseen."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(autouse=True)
def _logging_as_found():
    """Every test leaves lakeseg's and the AWS SDK's loggers as it found them (level, handlers, propagation): the
    CLI's ``logs.configure`` sets them for the whole process, so without this what a test's ``caplog`` sees would
    depend on which CLI test ran before it, and with which ``-v`` (as under ``make mutation``, whose clean run
    orders the tests by duration: a retry's log assertion saw the first attempt's lines)."""
    loggers = [logging.getLogger(name) for name in (OWN_LOGGER, *AWS_LOGGERS)]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    yield
    for lg, level, propagate, handlers in saved:
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers


@pytest.fixture
def new_york(monkeypatch):
    """The process runs in a zone five hours behind UTC (in November): local time is not UTC."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def ascii_locale():
    """A machine whose locale is not UTF-8 (LC_CTYPE "C": ASCII), as a host with LANG=C set after start-up or a
    Latin-1 locale has: a file opened without an explicit encoding then decodes as ASCII. Python in UTF-8 mode
    ignores the locale, so the test is skipped there (it could not fail)."""
    import locale
    import sys

    if sys.flags.utf8_mode:
        pytest.skip("Python runs in UTF-8 mode: the locale does not decide file encodings")
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, old)


@pytest.fixture
def aws(monkeypatch):
    """Fake credentials and region, and moto for every AWS service -- Step Functions executing state machines."""
    from moto import mock_aws

    for key, value in h.FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


# Session fixtures that run `dbt build` (seconds each). Tests that use one, or
# that run dbt themselves, are marked `dbt`: `make mutation` leaves them out,
# since every mutant would rebuild the project in its own process.
DBT_FIXTURES = {"corpus_build", "build_now", "build_later", "bad_build"}


def pytest_collection_modifyitems(items):
    for item in items:
        if DBT_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.dbt)
    _fastest_first(items)


_DURATIONS: dict[str, float] | None = None


def _fastest_first(items) -> None:
    """Under `make mutation`, the tests mutmut timed fastest run first.

    A mutant's run stops at its first failing test (``-x``), so a mutant the suite kills costs the tests
    before the one that kills it: fastest first, that is mostly a few fast unit tests, where collection
    order could put a whole slow module first. Survivors run every test either way. The durations are
    mutmut's own (``mutmut-stats.json`` in the folder it runs the tests from); without them nothing moves.
    ``LAKESEG_TEST_DURATIONS`` names another such file (to run the whole suite in this order).
    """
    global _DURATIONS
    source = os.environ.get("LAKESEG_TEST_DURATIONS") or (
        "mutmut-stats.json" if os.environ.get("MUTANT_UNDER_TEST") else ""
    )
    if not source:
        return
    if _DURATIONS is None:
        try:
            _DURATIONS = json.loads(Path(source).read_text())["duration_by_test"]
        except (OSError, ValueError, KeyError, TypeError):
            _DURATIONS = {}
    if _DURATIONS:
        durations = _DURATIONS
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
