"""Fixtures for the import tail and the stack: the harness lives next to the
destination tests (tests/destinations/pinpoint_harness.py) and is loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def load_harness():
    name = "lakeseg_pinpoint_harness"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "destinations" / "pinpoint_harness.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


h = load_harness()


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for key, value in h.FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def pinpoint(aws):
    """botocore's Stubber on a real Pinpoint client, wired into moto's interpreter.

    Yields the Stubber; a test queues the responses Pinpoint gives, in order.
    At the end, every queued response must have been consumed.
    """
    from botocore.stub import Stubber

    client = h.pinpoint_client()
    stubber = Stubber(client)
    with h.moto_fidelity(client), stubber:
        yield stubber


@pytest.fixture
def tail(aws, pinpoint):
    """The import tail as the stack deploys it (default poll interval 30 s: tests pass PollSeconds 0)."""
    deployed = h.deploy_import_tail(poll_seconds=30, max_polls=1000)
    yield deployed
    for ex in deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn,
                                           statusFilter="RUNNING")["executions"]:
        deployed.sfn.stop_execution(executionArn=ex["executionArn"])
