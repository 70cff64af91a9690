"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from tests.destinations import pinpoint_harness as h


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
