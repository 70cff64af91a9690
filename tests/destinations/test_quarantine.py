"""Refused rows converge: isolated, quarantined, and never blocking the rest (the shared platform layer).

Pinpoint reports refused endpoints as a count plus up to 100 free-text
messages; when those name no Ids, lakeseg finds the refused rows by importing
the failing job's rows again in halves. The fake is model-validated (every
request and response checked against the Pinpoint service model) and reads
the CSV rows it is given, refusing the ones whose Id is in BAD.
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.destinations import pinpoint_harness as h
from tests.destinations.test_pinpoint import delivery, direct_destination, write_csv

BAD = {"ep-13", "ep-77"}


def refuse_bad(fake: h.FakePinpoint, name_ids: bool, listed: int | None = None):
    """Refuse the rows whose Id is in BAD; Pinpoint's Failures list only the first ``listed`` (all by default)."""

    def verdict(job: h.FakeJob) -> dict:
        bucket, _, prefix = job.request["S3Url"][5:].partition("/")
        refused = []
        for key in job.files:
            body = fake.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            refused += [r["Id"] for r in csv.DictReader(io.StringIO(body)) if r["Id"] in BAD]
        messages = [
            f"Endpoint {i} rejected: invalid attribute" if name_ids else "Invalid endpoint in file" for i in refused
        ][:listed]
        status = "FAILED" if refused else "COMPLETED"
        return {
            "JobStatus": status,
            "TotalProcessed": job.rows,
            "TotalFailures": len(refused),
            "Failures": messages,
            "TotalPieces": 1,
            "CompletedPieces": 0 if refused else 1,
            "FailedPieces": 1 if refused else 0,
        }

    return verdict


@pytest.fixture
def direct_fake(s3):
    client = h.pinpoint_client()
    return h.FakePinpoint(client, s3=h.client("s3"))


@pytest.mark.parametrize("name_ids", [True, False], ids=["messages-name-ids", "anonymous-messages"])
def test_refused_rows_are_isolated_and_the_rest_is_confirmed(direct_fake, tmp_path, name_ids):
    # given a platform that refuses two of 100 endpoints
    direct_fake.verdict = refuse_bad(direct_fake, name_ids)
    dest = direct_destination(direct_fake.client, max_isolation_jobs=40)
    # when a delivery carries them
    result = dest.deliver(delivery([write_csv(tmp_path / "import" / "part-00000.csv", rows=100)]))
    # then exactly those two are quarantined with the platform's message, and the delivery is confirmed
    assert result.confirmed, result.errors
    assert set(result.rejected) == BAD
    creates = [p for op, p in direct_fake.calls if op == "CreateImportJob"]
    if name_ids:
        assert len(creates) == 1  # the messages named them: no extra job
    else:
        # halving: every extra job imports a half of a failing chunk; bounded by max_isolation_jobs
        assert 1 < len(creates) <= 1 + 40
        assert all(r.startswith("Invalid endpoint") for r in result.rejected.values())
    # and every S3 folder was imported at most once
    urls = [p["ImportJobRequest"]["S3Url"] for p in creates]
    assert len(urls) == len(set(urls))


def test_more_refused_rows_than_allowed_fail_the_delivery(direct_fake, tmp_path):
    # given max_rejected_rows below the number of refused rows
    direct_fake.verdict = refuse_bad(direct_fake, name_ids=True)
    dest = direct_destination(direct_fake.client, max_rejected_rows=1)
    result = dest.deliver(delivery([write_csv(tmp_path / "import" / "part-00000.csv", rows=100)]))
    # then nothing is confirmed (the rows stay in doubt) and the reason names the setting
    assert not result.confirmed
    assert "max_rejected_rows" in result.errors[-1]


def test_an_exhausted_isolation_budget_quarantines_no_unproven_row(direct_fake, tmp_path):
    # given no budget for extra jobs and anonymous messages
    direct_fake.verdict = refuse_bad(direct_fake, name_ids=False)
    dest = direct_destination(direct_fake.client, max_isolation_jobs=0, max_rejected_rows=1000)
    result = dest.deliver(delivery([write_csv(tmp_path / "import" / "part-00000.csv", rows=20)]))
    # then no row is refused (none was held alone or named): the failing job's rows stay suspect for the next run,
    # and the delivery is confirmed for the rest
    assert result.confirmed and result.rejected == {}
    assert result.suspect_ids == {f"ep-{i}" for i in range(20)}


def test_messages_naming_only_some_refused_rows_do_not_confirm_the_rest(direct_fake, tmp_path):
    """Guards issue 15 behaviour 17: a job's TotalFailures must be accounted for, not just the Ids its Failures name;
    verified to fail on a broken copy (sync/destinations/jobs.py:_attribute accepting a partial attribution)."""
    # Given Pinpoint refuses two endpoints but its Failures name only one of them (it lists a sample)
    direct_fake.verdict = refuse_bad(direct_fake, name_ids=True, listed=1)
    dest = direct_destination(direct_fake.client, max_isolation_jobs=40)
    # When a delivery carries them
    result = dest.deliver(delivery([write_csv(tmp_path / "import" / "part-00000.csv", rows=100)]))
    # Then both are found (by halving: the messages did not account for TotalFailures) and quarantined
    assert result.confirmed, result.errors
    assert set(result.rejected) == BAD
    assert len([op for op, _ in direct_fake.calls if op == "CreateImportJob"]) > 1
    # and the first job's counters are Pinpoint's own
    first = result.jobs[0]
    assert (first.status, first.total_processed, first.total_failures, len(first.failures)) == ("FAILED", 100, 2, 1)


def test_each_refused_row_keeps_the_message_that_names_it(direct_fake, tmp_path):
    # Given Pinpoint refuses ep-1 and ep-13, naming ep-13 first (an Id that contains the other one)
    def verdict(job: h.FakeJob) -> dict:
        return {
            "JobStatus": "FAILED",
            "TotalProcessed": job.rows,
            "TotalFailures": 2,
            "TotalPieces": 1,
            "CompletedPieces": 0,
            "FailedPieces": 1,
            "Failures": ["Endpoint ep-13 rejected: Tier too long", "Endpoint ep-1 rejected: Address missing"],
        }

    direct_fake.verdict = verdict
    # When a delivery carries them
    result = direct_destination(direct_fake.client).deliver(
        delivery([write_csv(tmp_path / "import" / "part-00000.csv", rows=20)])
    )
    # Then each is quarantined with its own message
    assert result.confirmed, result.errors
    assert result.rejected == {
        "ep-1": "Endpoint ep-1 rejected: Address missing",
        "ep-13": "Endpoint ep-13 rejected: Tier too long",
    }
