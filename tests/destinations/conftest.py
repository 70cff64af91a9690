"""Fixtures for the destinations.

Pinpoint: moto S3 + Step Functions executing the real import tail, Pinpoint
faked (FakePinpoint or botocore's Stubber); `aws` comes from tests/conftest.py.
Customer Profiles: a model-validated fake of the service and a real HTTPS
upload server on 127.0.0.1 sharing one controllable clock (profiles_harness).
"""

from __future__ import annotations

import time

import pytest

from tests.destinations import pinpoint_harness as h
from tests.destinations import profiles_harness as ph

BUCKET = "lakeseg-test-imports"
IMPORT_URL = f"s3://{BUCKET}/lakeseg/imports"


@pytest.fixture
def s3(aws):
    client = h.client("s3")
    client.create_bucket(Bucket=BUCKET)
    # As the stack creates it: default encryption on the bucket (uploads do not override it).
    client.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return client


@pytest.fixture
def bucket_keys(s3):
    def keys() -> list[str]:
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    return keys


@pytest.fixture
def fake_pinpoint(s3):
    """A stateful, model-validated Pinpoint that reads the import folders from moto S3."""
    return h.FakePinpoint(h.pinpoint_client(), s3=s3, polls=2)


@pytest.fixture
def tail(aws, fake_pinpoint):
    """The import tail deployed in moto, its Pinpoint calls served by fake_pinpoint.

    The template's default poll interval (30 s) is deployed on purpose: the
    destination passes PollSeconds in each execution's input, so tests stay fast
    only if that override works.
    """
    with h.moto_fidelity(fake_pinpoint.client):
        deployed = h.deploy_import_tail(poll_seconds=30)
        yield deployed
        _stop_running(deployed)


def _stop_running(tail) -> None:
    """Leave no execution looping in moto's worker threads after a test."""
    for page in tail.sfn.get_paginator("list_executions").paginate(
        stateMachineArn=tail.state_machine_arn, statusFilter="RUNNING"
    ):
        for ex in page["executions"]:
            _stop(tail.sfn, ex["executionArn"])


def _stop(sfn, arn: str, wait_seconds: float = 10.0) -> None:
    """StopExecution, waiting out moto's start-up race.

    moto runs each execution in a worker thread that sets up its environment
    after StartExecution returns; a stop that arrives first fails inside moto
    with ``AttributeError: 'NoneType' object has no attribute 'set_stop'``
    (seen on a loaded machine). AWS has no such window, so the test waits for it.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            sfn.stop_execution(executionArn=arn)
            return
        except AttributeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- Customer Profiles
@pytest.fixture
def clock():
    return ph.Clock()


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    return ph.self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(tls, clock):
    s = ph.UploadServer(tls, clock)
    yield s
    s.close()


@pytest.fixture
def client():
    return ph.client()


@pytest.fixture
def fake(client, server, clock):
    return ph.FakeCustomerProfiles(client, server, clock, polls=2)


@pytest.fixture
def src(tmp_path):
    """One import file of four rows, as the sync writes it."""
    return ph.write_csv(tmp_path / "import" / "part-00000.csv", 4)
