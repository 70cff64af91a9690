"""Fixtures for the import tail and the stack: the harness lives next to the
destination tests (tests/destinations/pinpoint_harness.py); `aws` comes from tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.destinations import pinpoint_harness as h


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
    for ex in deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn, statusFilter="RUNNING")[
        "executions"
    ]:
        deployed.sfn.stop_execution(executionArn=ex["executionArn"])
