"""The pre-signed upload of a Customer Profiles job (SSE-C headers, URL validity, HTTP answers), the wait for
earlier runs' uploads, and the segment definition kept per segment.

The upload goes to profiles_harness's real HTTPS server on 127.0.0.1, which checks the SSE-C headers and the
URL's validity the way S3 does; the clock is the shared controllable one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
from datetime import timedelta

import pytest

from sync.destinations.base import DeliveryResult, JobRecord
from sync.destinations.customer_profiles import display_name, sse_c_headers

from . import profiles_harness as ph
from .profiles_harness import RUN_ID, Sleeps, delivery, destination, expected_csv, logs, only_job, write_csv

D = ph.DOMAIN
SEG = "seg_email_clickers"
LOCATION = f"customer-profiles://{D}/{SEG}"
KEY = bytes(range(32))
TOKEN = base64.b64encode(KEY).decode()


# --------------------------------------------------------------------------- SSE-C headers
def test_sse_c_headers_carry_the_key_its_md5_and_aes256():
    assert sse_c_headers(TOKEN) == {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": TOKEN,
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(KEY).digest()).decode(),
    }


@pytest.mark.parametrize(
    "token",
    [
        "",
        "AAAA",
        base64.b64encode(bytes(48)).decode(),
        "!" + TOKEN,
        TOKEN[:20] + "\n" + TOKEN[20:],
        "not base64 at all",
    ],
    ids=["empty", "3-bytes", "384-bit-key", "stray-character", "line-break-inside", "not-base64"],
)
def test_a_client_token_that_is_not_a_base64_256_bit_key_is_refused(token):
    with pytest.raises(ValueError) as err:
        sse_c_headers(token)
    assert str(err.value) == "GetUploadJobPath returned a ClientToken that is not a base64 256-bit key"


def test_a_bad_client_token_uploads_nothing(fake, server, clock, src):
    fake.path_token = "AAAA"
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "UPLOAD_FAILED")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: upload job {job_id}: GetUploadJobPath returned a ClientToken "
            "that is not a base64 256-bit key"
        ],
    )
    assert not server.puts and "StartUploadJob" not in fake.ops()
    assert not list(src.parent.glob("profiles-*.csv")), "the translated copy is removed after a failure too"


def test_a_plain_http_url_uploads_nothing(fake, server, clock, src):
    fake.path_url = f"http://127.0.0.1:{server.port}/lakeseg-uploads/x"
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.errors == [
        f"{SEG} job 1: upload job {job_id}: the pre-signed URL is not HTTPS; refusing to send the file"
    ]
    assert not server.puts


def test_the_put_sends_the_csv_with_its_type_and_length(fake, server, clock, src):
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    (put,) = server.puts
    body = expected_csv(src)
    assert server.bodies[only_job(fake)] == body
    assert put.headers["content-type"] == "text/csv" and put.headers["content-length"] == str(len(body))


# --------------------------------------------------------------------------- HTTP answers
@pytest.mark.parametrize("status", [200, 201, 204], ids=["ok", "created", "no-content"])
def test_a_stored_upload_may_answer_any_success_status(fake, server, clock, src, status):
    server.ok_status = status
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert [p.status for p in server.puts] == [status]


def test_a_refused_upload_is_not_retried(fake, server, clock, src):
    # Given the upload answered 403 for a reason other than expiry
    server.fail_next = [403]
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    # Then it fails at once, naming the status, and nothing is started
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "UPLOAD_FAILED")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: upload job {job_id}: the upload answered HTTP 403; nothing "
            "was started (the rows are resent next run)"
        ],
    )
    assert [p.status for p in server.puts] == [403] and "StartUploadJob" not in fake.ops()


def test_a_url_that_expires_in_transit_twice_fails(fake, server, clock, src, caplog):
    server.expire_in_transit = 2
    caplog.set_level(logging.INFO, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.errors == [
        f"{SEG} job 1: upload job {job_id}: the upload answered HTTP 403; nothing was started "
        "(the rows are resent next run)"
    ]
    assert [p.status for p in server.puts] == [403, 403] and fake.ops().count("GetUploadJobPath") == 2
    assert ("INFO", f"customer_profiles: the upload URL of job {job_id} expired on the way; fetching another") in logs(
        caplog
    )


def test_an_unreachable_upload_url_fails_the_job(fake, server, clock, src):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake.path_url = f"https://127.0.0.1:{port}/lakeseg-uploads/x"
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.jobs == [JobRecord(job_id, "UPLOAD_FAILED")]
    assert result.errors == [
        f"{SEG} job 1: upload job {job_id}: the upload failed: Could not connect to the endpoint "
        f'URL: "https://127.0.0.1:{port}/lakeseg-uploads/x"'
    ]


def test_an_upload_slower_than_http_timeout_fails(fake, server, clock, src):
    server.delay = 1.5
    result = destination(fake, server, clock, http_timeout=0.2).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.jobs == [JobRecord(job_id, "UPLOAD_FAILED")]
    # (a read timeout; a handshake slowed past 0.2 s by a loaded machine would be a connect timeout)
    assert result.errors[0].startswith(f"{SEG} job 1: upload job {job_id}: the upload failed: ")
    assert "timeout on endpoint URL" in result.errors[0]


# --------------------------------------------------------------------------- URL validity
@pytest.mark.parametrize(
    "validity, fetches",
    [
        ([timedelta(seconds=60)], 2),
        ([timedelta(seconds=61)], 1),
        ([None], 1),
    ],
    ids=["valid-exactly-60s-fetched-again", "valid-61s-used", "no-valid-until-used"],
)
def test_a_url_needs_more_than_a_minute_of_validity(fake, server, clock, src, validity, fetches):
    fake.path_validity = list(validity)
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert fake.ops().count("GetUploadJobPath") == fetches and [p.status for p in server.puts] == [200]


@pytest.mark.parametrize("expired, fetches", [(0, 1), (1, 2)], ids=["valid", "expired"])
def test_a_valid_until_without_time_zone_is_utc(fake, server, clock, src, expired, fetches):
    fake.naive_valid_until = True
    fake.expired_paths = expired
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert fake.ops().count("GetUploadJobPath") == fetches and [p.status for p in server.puts] == [200]


def test_three_expired_urls_upload_nothing_and_say_why(fake, server, clock, src, caplog):
    fake.expired_paths = 3
    caplog.set_level(logging.INFO, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.errors == [
        f"{SEG} job 1: upload job {job_id}: GetUploadJobPath returned 3 URLs that had expired or "
        "were about to; nothing was uploaded (check the clock of this machine)"
    ]
    stale = (clock() - timedelta(seconds=1)).isoformat()
    assert (
        logs(caplog)[1:4]
        == [("INFO", f"customer_profiles: upload URL of job {job_id} is valid only until {stale}; fetching another")]
        * 3
    )
    assert [params for op, params in fake.calls if op == "GetUploadJobPath"] == [{"DomainName": D, "JobId": job_id}] * 3
    assert not server.puts


# --------------------------------------------------------------------------- earlier runs of the segment
EARLIER = "20261124T030000123Z-aaaaaa"


def listed_job(fake, name: str, status: str) -> str:
    """A job in the service's listing, as another run (or someone else) left it."""
    job_id = fake.client.create_upload_job(
        DomainName=D,
        DisplayName=name,
        UniqueKey="AccountNumber",
        Fields={"AccountNumber": {"Source": "_source.AccountNumber", "Target": "_profile.AccountNumber"}},
    )["JobId"]
    fake.jobs[job_id].status = status
    fake.calls.clear()
    return job_id


@pytest.mark.parametrize(
    "poll_seconds, interval", [(0, 0.02), (7, 7.0), (90, 60.0)], ids=["floor-20ms", "poll-interval", "ceiling-60s"]
)
def test_a_later_run_waits_for_an_earlier_runs_upload(fake, server, clock, src, caplog, poll_seconds, interval):
    # Given an upload of an earlier run still in progress, that finishes while lakeseg waits
    earlier = listed_job(fake, display_name(EARLIER, SEG, "1"), "IN_PROGRESS")
    fake.polls = 1

    def time_passes(waits: int) -> None:
        fake.jobs[earlier].status = "SUCCEEDED"

    sleeps = Sleeps(then=time_passes)
    caplog.set_level(logging.INFO, logger="sync.destinations")
    # When this run delivers
    result = destination(fake, server, clock, poll_seconds=poll_seconds, sleep=sleeps).deliver(delivery([src]))
    # Then it waited once, the bounded interval, then uploaded
    assert result.confirmed, result.errors
    assert sleeps.calls == [interval]
    assert logs(caplog, "sync.destinations.jobs") == [
        ("INFO", f"customer_profiles: {SEG} waits for 1 in-flight job(s) of earlier runs")
    ]


@pytest.mark.parametrize(
    "name, status",
    [
        (display_name(EARLIER, "seg_other", "1"), "IN_PROGRESS"),
        (display_name(EARLIER, SEG, "1"), "SUCCEEDED"),
        (display_name(EARLIER, SEG, "1"), "CREATED"),
        ("manual-upload", "IN_PROGRESS"),
        (f"lakeseg-not-a-run-{SEG}-p1", "IN_PROGRESS"),
    ],
    ids=["other-segment", "earlier-run-finished", "earlier-run-never-started", "not-lakesegs", "not-a-run-id"],
)
def test_jobs_that_do_not_hold_the_segment_back(fake, server, clock, src, name, status):
    listed_job(fake, name, status)
    fake.polls = 1
    sleeps = Sleeps(limit=0)
    result = destination(fake, server, clock, sleep=sleeps).deliver(delivery([src]))
    assert result.confirmed, result.errors


def test_a_segment_named_past_the_display_name_limit_waits_for_its_earlier_run(fake, server, clock, tmp_path):
    # Given a segment whose name is too long for DisplayName (its jobs carry a hash of it), with an earlier
    # run's upload in progress -- and a running upload of another such segment
    long_name = "seg_" + "x" * 230
    earlier = listed_job(fake, display_name(EARLIER, long_name, "1"), "IN_PROGRESS")
    listed_job(fake, display_name(EARLIER, long_name + "_other", "1"), "IN_PROGRESS")
    # When this run delivers that segment
    result = destination(fake, server, clock, timeout=0).deliver(
        delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)], segment=long_name)
    )
    # Then it waits for the earlier run's upload only (and gives up at the timeout)
    assert result.errors == [
        f"{long_name}: an import of an earlier run is still in flight (upload job {earlier} "
        f"({display_name(EARLIER, long_name, '1')})); nothing was imported so that imports stay "
        "in order; the rows are resent next run"
    ]
    assert "CreateUploadJob" not in fake.ops()


def test_the_same_runs_job_in_progress_is_attached_to_not_waited_for(fake, server, clock, src):
    listed_job(fake, display_name(RUN_ID, SEG, "1"), "IN_PROGRESS")
    fake.polls = 1
    result = destination(fake, server, clock, sleep=Sleeps(limit=0)).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert fake.ops() == ["ListUploadJobs", "ListUploadJobs", "GetUploadJob"]


def test_a_job_listed_without_a_name_is_ignored(fake, server, clock, src, monkeypatch):
    listed_job(fake, display_name(EARLIER, SEG, "1"), "IN_PROGRESS")
    original = fake._item

    def nameless(job):
        item = original(job)
        item.pop("DisplayName")
        return item

    monkeypatch.setattr(fake, "_item", nameless)
    fake.polls = 1
    result = destination(fake, server, clock, sleep=Sleeps(limit=0)).deliver(delivery([src]))
    assert result.confirmed, result.errors


def test_an_earlier_upload_that_outlives_the_timeout_stops_this_run(fake, server, clock, src):
    name = display_name(EARLIER, SEG, "1")
    earlier = listed_job(fake, name, "IN_PROGRESS")
    result = destination(fake, server, clock, timeout=0).deliver(delivery([src]))
    assert result == DeliveryResult(
        confirmed=False,
        location=LOCATION,
        errors=[
            f"{SEG}: an import of an earlier run is still in flight (upload job {earlier} ({name})); nothing was "
            "imported so that imports stay in order; the rows are resent next run"
        ],
    )
    assert fake.ops() == ["ListUploadJobs"]


# --------------------------------------------------------------------------- segment definitions
YES = {"User.UserAttributes.HasClicked": ("Yes",)}
GROUPS = {
    "Groups": [
        {
            "Dimensions": [
                {"ProfileAttributes": {"Attributes": {"HasClicked": {"DimensionType": "INCLUSIVE", "Values": ["Yes"]}}}}
            ],
            "Type": "ALL",
        }
    ],
    "Include": "ALL",
}


def test_a_segment_definition_is_created_with_its_fingerprint_and_tag(fake, server, clock, src, caplog):
    caplog.set_level(logging.INFO, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src], segment_name="clickers", segment_filter=YES))
    assert result.confirmed, result.errors
    create = dict(fake.calls)["CreateSegmentDefinition"]
    fingerprint = hashlib.sha256(json.dumps(GROUPS, sort_keys=True).encode()).hexdigest()[:16]
    assert create == {
        "DomainName": D,
        "SegmentDefinitionName": "clickers",
        "DisplayName": "clickers",
        "Description": f"lakeseg segment {SEG} (definition {fingerprint})",
        "SegmentGroups": GROUPS,
        "Tags": {"lakeseg:segment": SEG},
    }
    assert dict(fake.calls)["GetSegmentDefinition"] == {"DomainName": D, "SegmentDefinitionName": "clickers"}
    assert logs(caplog)[-1] == ("INFO", "customer_profiles: created segment definition 'clickers'")


def test_a_changed_definition_is_replaced_and_the_same_one_in_another_order_is_kept(fake, server, clock, src, caplog):
    dest = destination(fake, server, clock, segment_name_prefix="lakeseg-")
    both = {"User.UserAttributes.HasClicked": ("Yes",), "Metrics.Opens": ("1", "2")}
    assert dest.deliver(delivery([src], segment_name="clickers", segment_filter=both)).confirmed
    # When the same values come in another order: kept
    swapped = {"Metrics.Opens": ("1", "2"), "User.UserAttributes.HasClicked": ("Yes",)}
    assert dest.deliver(
        delivery([src], run_id="20261126T030000123Z-bbbbbb", segment_name="clickers", segment_filter=swapped)
    ).confirmed
    assert fake.ops().count("CreateSegmentDefinition") == 1 and "DeleteSegmentDefinition" not in fake.ops()
    # When the values change: replaced
    caplog.set_level(logging.INFO, logger="sync.destinations")
    assert dest.deliver(
        delivery([src], run_id="20261127T030000123Z-cccccc", segment_name="clickers", segment_filter=YES)
    ).confirmed
    assert [c for c in fake.calls if c[0] == "DeleteSegmentDefinition"] == [
        ("DeleteSegmentDefinition", {"DomainName": D, "SegmentDefinitionName": "lakeseg-clickers"})
    ]
    assert fake.definitions["lakeseg-clickers"]["SegmentGroups"] == GROUPS
    assert logs(caplog)[-1] == ("INFO", "customer_profiles: replaced segment definition 'lakeseg-clickers'")


@pytest.mark.parametrize(
    "segment_name, segment_filter, error",
    [
        ("has clicked", YES, f"{SEG}: segment definition name 'has clicked' must be 1-64 letters, digits, _ or -"),
        (
            "clickers",
            {},
            f"{SEG}: segment_name is set but meta.lakeseg.segment_values is not: the segment definition "
            'needs the values that mean "in the segment" (e.g. {HasClicked: ["Yes"]})',
        ),
        (
            "clickers",
            {"Address": ("x",)},
            f"{SEG}: segment_values: Address is not a profile attribute here (use a "
            "User.UserAttributes.*, Attributes.* or Metrics.* field)",
        ),
    ],
    ids=["bad-name", "no-values", "not-an-attribute"],
)
def test_a_definition_that_cannot_be_made_leaves_the_delivery_unconfirmed(
    fake, server, clock, src, segment_name, segment_filter, error
):
    result = destination(fake, server, clock).deliver(
        delivery([src], segment_name=segment_name, segment_filter=segment_filter)
    )
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False, jobs=[JobRecord(job_id, "SUCCEEDED", 4, 0, [])], location=LOCATION, errors=[error]
    )
    assert not fake.definitions


@pytest.mark.parametrize(
    "op, status, code",
    [
        ("GetSegmentDefinition", 403, "AccessDeniedException"),
        ("CreateSegmentDefinition", 500, "InternalServerException"),
    ],
    ids=["read-denied", "create-fails-on-the-server"],
)
def test_a_definition_call_that_fails_is_named_and_not_retried(fake, server, clock, src, op, status, code):
    fake.fail(op, status, code)
    result = destination(fake, server, clock).deliver(delivery([src], segment_name="clickers", segment_filter=YES))
    assert not result.confirmed
    assert result.errors == [f"{SEG}: cannot keep segment definition 'clickers': {code}"]
    assert fake.ops().count(op) == 1 and not fake.definitions


def test_a_failed_delivery_leaves_the_definition_alone(client, server, clock, src):
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=lambda job: ("FAILED", set()))
    result = destination(fake, server, clock).deliver(delivery([src], segment_name="clickers", segment_filter=YES))
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        location=LOCATION,
        jobs=[JobRecord(job_id, "FAILED", 0, 0, ["INTERNAL_FAILURE"], status_reason="INTERNAL_FAILURE")],
        errors=[f"{SEG} job 1: upload job {job_id} FAILED (INTERNAL_FAILURE)"],
    )
    assert "GetSegmentDefinition" not in fake.ops()


def test_an_upload_server_with_an_untrusted_certificate_gets_nothing(fake, server, clock, src):
    # Given the system trust store, which does not hold the test server's self-signed certificate
    result = destination(fake, server, clock, verify=True).deliver(delivery([src]))
    job_id = only_job(fake)
    # Then the TLS handshake fails and nothing is sent or started
    assert result.jobs == [JobRecord(job_id, "UPLOAD_FAILED")]
    assert result.errors[0].startswith(
        f"{SEG} job 1: upload job {job_id}: the upload failed: SSL validation failed "
        f"for https://127.0.0.1:{server.port}/lakeseg-uploads/{job_id}/"
    )
    assert not server.puts and "StartUploadJob" not in fake.ops()


def test_a_failed_upload_names_the_url_without_its_signature(fake, server, clock, src):
    # Given an upload server whose certificate is not trusted (the PUT fails in TLS)
    result = destination(fake, server, clock, verify=True).deliver(delivery([src]))
    # Then the error names where it went, but not the pre-signed query (signature, credential)
    assert "/lakeseg-uploads/" in result.errors[0]
    assert "X-Amz-Signature" not in result.errors[0] and "?" not in result.errors[0]
