"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from tests.destinations import pinpoint_harness as h


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path_factory, monkeypatch):
    """Every test runs in an empty folder of its own.

    Code that writes to a relative path by mistake then writes there, not into
    the checkout -- where, under `make mutation`, one mutant's stray file
    (a parquet named ``None``) was read by the next mutant and hid it.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def open_umask():
    """A umask that lets group and others read (the CLI sets 077 for the whole process; tests must not rely on it)."""
    import os

    old = os.umask(0o022)
    yield
    os.umask(old)


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
