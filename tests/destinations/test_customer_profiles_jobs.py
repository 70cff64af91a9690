"""One Customer Profiles upload job, call by call: create (at most once, find before create), start, poll, give
up, the verdict, and what the delivery reports (DeliveryResult compared whole, logs compared whole).

Served by the model-validated fake and the HTTPS upload server of profiles_harness; nothing really waits
(``Sleeps`` records the waits).
"""

from __future__ import annotations

import logging

import pytest

from sync.destinations.base import DeliveryResult, JobRecord, SegmentDelivery
from sync.destinations.customer_profiles import display_name, verdict
from sync.destinations.jobs import JobOutcome, search_bound

from . import profiles_harness as ph
from .profiles_harness import RUN_ID, Sleeps, delivery, destination, expected_csv, logs, only_job, write_csv

D = ph.DOMAIN
SEG = "seg_email_clickers"
LOCATION = f"customer-profiles://{D}/{SEG}"
NAME = display_name(RUN_ID, SEG, "1")
FIELDS_SENT = {
    "AccountNumber": {"Source": "_source.AccountNumber", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
    "EmailAddress": {
        "Source": "_source.EmailAddress",
        "Target": "_profile.EmailAddress",
        "ContentType": "EMAIL_ADDRESS",
    },
    "PhoneNumber": {"Source": "_source.PhoneNumber", "Target": "_profile.PhoneNumber", "ContentType": "PHONE_NUMBER"},
    "HasClicked": {"Source": "_source.HasClicked", "Target": "_profile.Attributes.HasClicked", "ContentType": "STRING"},
    "Opens": {"Source": "_source.Opens", "Target": "_profile.Attributes.Opens", "ContentType": "NUMBER"},
}


# --------------------------------------------------------------------------- the whole job
def test_a_job_is_created_uploaded_started_and_polled_with_exact_arguments(fake, server, clock, src, caplog):
    # Given a job that takes three status checks, and a poll interval of 7 s
    fake.polls = 3
    sleeps, seen = Sleeps(), []
    caplog.set_level(logging.DEBUG, logger="sync.destinations")
    dest = destination(fake, server, clock, poll_seconds=7, data_expiry_days=30, sleep=sleeps)
    # When the delivery runs
    result = dest.deliver(delivery([src]), lambda label, done, total: seen.append((label, done, total)))
    # Then every call carried exactly what the service needs
    job_id = only_job(fake)
    assert fake.calls == [
        ("ListUploadJobs", {"DomainName": D, "MaxResults": 100}),
        ("ListUploadJobs", {"DomainName": D, "MaxResults": 100}),
        (
            "CreateUploadJob",
            {
                "DomainName": D,
                "DisplayName": NAME,
                "Fields": FIELDS_SENT,
                "UniqueKey": "AccountNumber",
                "DataExpiry": 30,
            },
        ),
        ("GetUploadJobPath", {"DomainName": D, "JobId": job_id}),
        ("StartUploadJob", {"DomainName": D, "JobId": job_id}),
        *[("GetUploadJob", {"DomainName": D, "JobId": job_id})] * 3,
    ]
    # And it waited the poll interval between status checks, and reported progress
    assert sleeps.calls == [7.0, 7.0]
    assert seen == [
        (f"{SEG}: uploading", 1, 1),
        (f"{SEG}: importing", 0, 1),
        (f"{SEG}: importing", 0, 1),
        (f"{SEG}: importing", 1, 1),
    ]
    # And the delivery is confirmed with the job's counts
    assert result == DeliveryResult(confirmed=True, jobs=[JobRecord(job_id, "SUCCEEDED", 4, 0, [])], location=LOCATION)
    # And the log names the job and the size, never an attribute value
    size = len(expected_csv(src))
    assert logs(caplog) == [
        ("INFO", f"customer_profiles: created upload job {job_id} ({NAME})"),
        ("INFO", f"customer_profiles: uploaded {size} bytes for upload job {job_id}"),
        ("INFO", f"customer_profiles: started upload job {job_id}"),
    ]
    assert "example.com" not in caplog.text and "+1555" not in caplog.text
    assert fake.jobs[job_id].expiry == 30
    assert not list(src.parent.glob("profiles-*.csv"))


def test_the_unique_key_goes_to_the_chosen_profile_field(fake, server, clock, src):
    result = destination(fake, server, clock, unique_key_target="_profile.Attributes.LoyaltyId").deliver(
        delivery([src])
    )
    assert result.confirmed, result.errors
    create = dict(fake.calls)["CreateUploadJob"]
    assert create["UniqueKey"] == "LoyaltyId"
    assert create["Fields"]["LoyaltyId"] == {
        "Source": "_source.LoyaltyId",
        "Target": "_profile.Attributes.LoyaltyId",
        "ContentType": "STRING",
    }
    assert fake.profiles["ep-1"]["_profile.EmailAddress"] == "user1@example.com"


def test_nothing_to_send_asks_nothing(fake, server, clock):
    result = destination(fake, server, clock).deliver(delivery([]))
    assert result == DeliveryResult(confirmed=True, location=LOCATION)
    assert fake.calls == []


def test_a_segment_with_a_field_without_target_sends_nothing(fake, server, clock, tmp_path):
    src = tmp_path / "i" / "part-00000.csv"
    src.parent.mkdir()
    src.write_text("Id,Demographic.Timezone\r\nep-1,UTC\r\n")
    d = SegmentDelivery(RUN_ID, "seg_x", (src,), ("Id", "Demographic.Timezone"), {"rows": 1})
    result = destination(fake, server, clock).deliver(d)
    assert result == DeliveryResult(
        confirmed=False,
        location=f"customer-profiles://{D}/seg_x",
        errors=[
            "seg_x: Demographic.Timezone has no Customer Profiles target: Customer Profiles has no target for it (see the "
            "field mapping in docs/customer-profiles.md)"
        ],
    )
    assert fake.calls == []


def test_a_key_target_that_collides_with_an_attribute_column_sends_nothing(fake, server, clock, src):
    # Given the Id sent to _profile.Attributes.HasClicked, where User.UserAttributes.HasClicked also goes
    dest = destination(fake, server, clock, unique_key_target="_profile.Attributes.HasClicked")
    # When the segment is delivered
    result = dest.deliver(delivery([src]))
    # Then it is refused before any call, naming the field
    assert result == DeliveryResult(
        confirmed=False,
        location=LOCATION,
        errors=[
            f"{SEG}: User.UserAttributes.HasClicked has no Customer Profiles target: maps to the same Customer Profiles "
            "column 'HasClicked' as Id"
        ],
    )
    assert fake.calls == []


# --------------------------------------------------------------------------- find before create
def test_a_listing_over_several_pages_is_read_to_the_end(fake, server, clock, src):
    # Given the job of this run listed on the third page of two
    fake.unreachable = {"GetUploadJobPath"}
    destination(fake, server, clock).deliver(delivery([src]))
    first_job = only_job(fake)
    fake.unreachable = set()
    for n in range(5):
        fake.client.create_upload_job(
            DomainName=D, DisplayName=f"manual-{n}", Fields=FIELDS_SENT, UniqueKey="AccountNumber"
        )
    fake.page_size = 2
    fake.calls.clear()
    # When the run is retried
    result = destination(fake, server, clock).deliver(delivery([src]))
    # Then it pages through the listing, finds its job and creates none
    assert result.confirmed, result.errors
    lists = [params for op, params in fake.calls if op == "ListUploadJobs"]
    assert lists[:3] == [
        {"DomainName": D, "MaxResults": 100},
        {"DomainName": D, "MaxResults": 100, "NextToken": "2"},
        {"DomainName": D, "MaxResults": 100, "NextToken": "4"},
    ]
    assert "CreateUploadJob" not in fake.ops() and first_job in server.bodies


def test_a_lookup_by_name_reads_the_listing_to_its_last_page(fake, server, clock, src):
    # Given a domain with 25 upload jobs, listed one per page
    for n in range(25):
        fake.client.create_upload_job(
            DomainName=D, DisplayName=f"manual-{n}", Fields=FIELDS_SENT, UniqueKey="AccountNumber"
        )
    fake.page_size = 1
    fake.calls.clear()
    dest = destination(fake, server, clock)
    # When a job that is not there is looked up by name (no ledger to go by)
    # Then every page is read (issue 22: the listing used to stop after 20)
    assert dest._find_job("no-such-job") is None
    assert fake.ops() == ["ListUploadJobs"] * 25


def test_a_retry_attaches_to_a_created_job_and_uploads_it(fake, server, clock, src, caplog):
    # Given a run that created its job and lost the connection before uploading
    fake.unreachable = {"GetUploadJobPath"}
    failed = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert failed == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "ERROR")],
        location=LOCATION,
        errors=[f'{SEG} job 1: Could not connect to the endpoint URL: "https://profile.us-east-1.amazonaws.com/"'],
    )
    fake.unreachable = set()
    fake.calls.clear()
    caplog.set_level(logging.INFO, logger="sync.destinations")
    # When the same run is retried
    result = destination(fake, server, clock).deliver(delivery([src]))
    # Then it attaches to the job, uploads and starts it, and creates nothing
    assert result.confirmed, result.errors
    assert fake.ops()[:4] == ["ListUploadJobs", "ListUploadJobs", "GetUploadJobPath", "StartUploadJob"]
    assert logs(caplog)[0] == (
        "INFO",
        f"customer_profiles: {SEG} part 1: attaching to upload job {job_id} (CREATED), not creating another",
    )


def test_a_listed_job_without_a_status_is_taken_as_created(fake, server, clock, src):
    fake.unreachable = {"GetUploadJobPath"}
    destination(fake, server, clock).deliver(delivery([src]))
    fake.unreachable = set()
    fake.list_without_status = {only_job(fake)}
    fake.calls.clear()
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert fake.ops()[:4] == ["ListUploadJobs", "ListUploadJobs", "GetUploadJobPath", "StartUploadJob"]


def test_a_retry_waits_for_its_job_in_progress_without_uploading_again(fake, server, clock, src, caplog):
    # Given a run whose connection dropped while its started job was being polled
    fake.unreachable = {"GetUploadJob"}
    destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert fake.jobs[job_id].status == "IN_PROGRESS"
    fake.unreachable = set()
    fake.calls.clear()
    caplog.set_level(logging.INFO, logger="sync.destinations")
    seen = []
    # When the run is retried
    result = destination(fake, server, clock).deliver(
        delivery([src]), lambda label, done, total: seen.append((label, done, total))
    )
    # Then it only polls the job to its end (no second upload or start) and is confirmed
    assert result == DeliveryResult(confirmed=True, jobs=[JobRecord(job_id, "SUCCEEDED", 4, 0, [])], location=LOCATION)
    assert fake.ops() == ["ListUploadJobs", "ListUploadJobs", "GetUploadJob", "GetUploadJob"]
    assert len(server.puts) == 1
    assert seen[0] == (f"{SEG}: uploading", 1, 1) and seen[-1] == (f"{SEG}: importing", 1, 1)
    assert logs(caplog) == [
        (
            "INFO",
            f"customer_profiles: {SEG} part 1: attaching to upload job {job_id} (IN_PROGRESS), not creating another",
        )
    ]


# --------------------------------------------------------------------------- create: at most once
def test_a_create_that_fails_after_creating_is_found_by_name(fake, server, clock, src, caplog):
    fake.fail("CreateUploadJob", 500, "InternalServerException", after=True)
    caplog.set_level(logging.INFO, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result == DeliveryResult(confirmed=True, jobs=[JobRecord(job_id, "SUCCEEDED", 4, 0, [])], location=LOCATION)
    assert fake.ops()[:5] == [
        "ListUploadJobs",
        "ListUploadJobs",
        "CreateUploadJob",
        "ListUploadJobs",
        "GetUploadJobPath",
    ]
    assert logs(caplog)[0] == (
        "WARNING",
        f"customer_profiles: CreateUploadJob {NAME} answered InternalServerException; "
        "looking for the job before anything else",
    )


def test_a_create_that_fails_before_creating_sends_nothing(fake, server, clock, src):
    fake.fail("CreateUploadJob", 503, "ServiceUnavailableException")
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord("", "NOT_CREATED")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: CreateUploadJob {NAME} failed on the server and no job of that name exists; the rows are "
            "resent next run"
        ],
    )
    assert fake.ops() == ["ListUploadJobs", "ListUploadJobs", "CreateUploadJob", "ListUploadJobs"]
    assert not fake.jobs and not server.puts


def test_a_refused_create_is_an_error_not_a_lookup(fake, server, clock, src, caplog):
    fake.denied = {"CreateUploadJob"}
    caplog.set_level(logging.INFO, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord("", "ERROR")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: AccessDeniedException: An error occurred (AccessDeniedException) when calling the "
            "CreateUploadJob operation: not authorized"
        ],
    )
    assert fake.ops() == ["ListUploadJobs", "ListUploadJobs", "CreateUploadJob"]
    assert logs(caplog) == [("WARNING", f"customer_profiles: {SEG} part 1 failed: AccessDeniedException")]


def test_a_listing_refused_before_create_is_an_error_with_no_job_id(fake, server, clock, src):
    fake.fail("ListUploadJobs", 400, "BadRequestException", skip=1)
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord("", "ERROR")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: BadRequestException: An error occurred (BadRequestException) when calling the ListUploadJobs "
            "operation: injected"
        ],
    )
    assert not fake.jobs


# --------------------------------------------------------------------------- start: at most once
def test_a_start_that_failed_before_starting_is_started_again(fake, server, clock, src):
    fake.fail("StartUploadJob", 500, "InternalServerException")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.confirmed, result.errors
    assert fake.calls[4:7] == [
        ("StartUploadJob", {"DomainName": D, "JobId": job_id}),
        ("GetUploadJob", {"DomainName": D, "JobId": job_id}),
        ("StartUploadJob", {"DomainName": D, "JobId": job_id}),
    ]


def test_a_start_that_failed_after_starting_is_not_repeated(fake, server, clock, src):
    fake.fail("StartUploadJob", 500, "InternalServerException", after=True)
    result = destination(fake, server, clock).deliver(delivery([src]))
    assert result.confirmed, result.errors
    assert fake.ops().count("StartUploadJob") == 1


def test_a_second_failed_start_is_not_retried(fake, server, clock, src):
    fake.fail("StartUploadJob", 500, "InternalServerException", times=2)
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "ERROR")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: InternalServerException: An error occurred (InternalServerException) when calling the "
            "StartUploadJob operation: injected"
        ],
    )
    assert fake.ops()[4:] == ["StartUploadJob", "GetUploadJob", "StartUploadJob"]


def test_a_refused_start_is_an_error_without_a_second_try(fake, server, clock, src):
    fake.fail("StartUploadJob", 400, "BadRequestException")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.jobs == [JobRecord(job_id, "ERROR")]
    assert result.errors == [
        f"{SEG} job 1: BadRequestException: An error occurred (BadRequestException) when calling "
        "the StartUploadJob operation: injected"
    ]
    assert fake.ops()[4:] == ["StartUploadJob"]


# --------------------------------------------------------------------------- polling, giving up
def test_giving_up_stops_the_job_and_says_so(fake, server, clock, src):
    fake.hang = True
    result = destination(fake, server, clock, timeout=0).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "IN_PROGRESS")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: upload job {job_id} still IN_PROGRESS after 0 s; lakeseg stopped it; the rows are resent next "
            "run"
        ],
    )
    assert fake.calls[-1] == ("StopUploadJob", {"DomainName": D, "JobId": job_id})
    assert fake.jobs[job_id].status == "STOPPED"


def test_giving_up_when_the_stop_is_refused_says_so(fake, server, clock, src):
    fake.hang = True
    fake.denied = {"StopUploadJob"}
    result = destination(fake, server, clock, timeout=0).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result.errors == [
        f"{SEG} job 1: upload job {job_id} still IN_PROGRESS after 0 s; lakeseg could not stop it (An error occurred "
        "(AccessDeniedException) when calling the StopUploadJob operation: not authorized); the rows are resent next "
        "run"
    ]


def test_a_status_check_refused_mid_poll_is_an_error_with_the_job_id(fake, server, clock, src, caplog):
    fake.fail("GetUploadJob", 403, "AccessDeniedException")
    caplog.set_level(logging.WARNING, logger="sync.destinations")
    result = destination(fake, server, clock).deliver(delivery([src]))
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "ERROR")],
        location=LOCATION,
        errors=[
            f"{SEG} job 1: AccessDeniedException: An error occurred (AccessDeniedException) when calling the GetUploadJob "
            "operation: injected"
        ],
    )
    assert logs(caplog) == [("WARNING", f"customer_profiles: {SEG} part 1 failed: AccessDeniedException")]


# --------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize(
    "response, rows, expected",
    [
        (
            {"Status": "SUCCEEDED", "ResultsSummary": {"CreatedRecords": 3, "UpdatedRecords": 4, "FailedRecords": 0}},
            7,
            JobOutcome(JobRecord("j1", "SUCCEEDED", 7, 0, []), ok=True),
        ),
        ({"Status": "SUCCEEDED"}, 7, JobOutcome(JobRecord("j1", "SUCCEEDED"), ok=True)),
        (
            {"Status": "SUCCEEDED", "ResultsSummary": {"CreatedRecords": 3, "FailedRecords": 2}},
            5,
            JobOutcome(JobRecord("j1", "SUCCEEDED", 3, 2, []), refused_rows=2),
        ),
        (
            {"Status": "PARTIALLY_SUCCEEDED", "ResultsSummary": {"UpdatedRecords": 4, "FailedRecords": 3}},
            7,
            JobOutcome(JobRecord("j1", "PARTIALLY_SUCCEEDED", 4, 3, []), refused_rows=3),
        ),
        (
            {"Status": "PARTIALLY_SUCCEEDED", "ResultsSummary": {"FailedRecords": 12}},
            10,
            JobOutcome(JobRecord("j1", "PARTIALLY_SUCCEEDED", None, 12, []), refused_rows=10),
        ),
        (
            {"Status": "PARTIALLY_SUCCEEDED", "ResultsSummary": {"FailedRecords": 3}},
            0,
            JobOutcome(JobRecord("j1", "PARTIALLY_SUCCEEDED", None, 3, []), refused_rows=3),
        ),
        (
            {"Status": "PARTIALLY_SUCCEEDED"},
            7,
            JobOutcome(
                JobRecord("j1", "PARTIALLY_SUCCEEDED"),
                error=("upload job j1 partially succeeded but reports no failed record count; not confirmed"),
            ),
        ),
        (
            {
                "Status": "PARTIALLY_SUCCEEDED",
                "ResultsSummary": {"CreatedRecords": 0, "UpdatedRecords": 0, "FailedRecords": 0},
            },
            7,
            JobOutcome(
                JobRecord("j1", "PARTIALLY_SUCCEEDED", 0, 0, []),
                error=("upload job j1 partially succeeded but reports no failed record count; not confirmed"),
            ),
        ),
        (
            {"Status": "FAILED", "StatusReason": "VALIDATION_FAILURE", "ResultsSummary": {"FailedRecords": 2}},
            7,
            JobOutcome(
                JobRecord("j1", "FAILED", None, 2, ["VALIDATION_FAILURE"], status_reason="VALIDATION_FAILURE"),
                error="upload job j1 FAILED (VALIDATION_FAILURE)",
                platform_failed=True,
            ),
        ),
        (
            {"Status": "FAILED"},
            7,
            JobOutcome(JobRecord("j1", "FAILED"), error="upload job j1 FAILED", platform_failed=True),
        ),
        ({"Status": "STOPPED"}, 7, JobOutcome(JobRecord("j1", "STOPPED"), error="upload job j1 STOPPED")),
    ],
    ids=[
        "succeeded",
        "succeeded-without-summary",
        "succeeded-with-failed-records",
        "partial",
        "partial-more-failures-than-rows",
        "partial-rows-unknown",
        "partial-without-summary",
        "partial-with-zero-failed",
        "failed-with-reason",
        "failed",
        "stopped",
    ],
)
def test_verdict(response, rows, expected):
    assert verdict({"JobId": "j1", **response}, rows) == expected


def test_a_verdict_without_job_id_or_status():
    assert verdict({}, 3) == JobOutcome(JobRecord("", "UNKNOWN"), error="upload job  UNKNOWN")


@pytest.mark.parametrize(
    "summary, processed",
    [
        ({"CreatedRecords": 3, "UpdatedRecords": 4}, 7),
        ({"CreatedRecords": 3}, 3),
        ({"UpdatedRecords": 4}, 4),
        ({"CreatedRecords": 0, "UpdatedRecords": 0}, 0),
        ({"FailedRecords": 1}, None),
    ],
    ids=["created-and-updated", "created-only", "updated-only", "zero", "neither"],
)
def test_processed_is_created_plus_updated(summary, processed):
    out = verdict({"JobId": "j1", "Status": "SUCCEEDED", "ResultsSummary": summary}, 7)
    assert out.record.total_processed == processed


# --------------------------------------------------------------------------- refused rows
def refuse(*ids):
    return lambda job: ("SUCCEEDED", set(ids) & {r["AccountNumber"] for r in job.rows})


def test_refused_rows_are_found_and_reported_by_id(client, server, clock, tmp_path):
    # Given a service that refuses ep-5 (it counts failures, naming no record)
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=refuse("ep-5"))
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 8)]))
    # Then halves are uploaded (one per suspect group, the other half's count follows) until ep-5 stands alone; it is
    # rejected with the job that refused it, the rest confirmed
    alone = next(j.id for j in fake.jobs.values() if [r["AccountNumber"] for r in j.rows] == ["ep-5"])
    assert result.confirmed, result.errors
    assert result.rejected == {"ep-5": f"refused by the platform (job {alone})"}
    assert [j.name for j in fake.jobs.values()] == [
        display_name(RUN_ID, SEG, p) for p in ("1", "1a", "1ba", "1baa", "1baba")
    ]
    assert len(fake.profiles) == 7 and "ep-5" not in fake.profiles


def test_a_one_row_upload_job_that_ends_failed_is_that_row_refused(client, server, clock, tmp_path):
    # Given a service that counts ep-5 as a failed record among others, and ends a job holding it alone FAILED
    def verdict(job):
        ids = [r["AccountNumber"] for r in job.rows]
        return ("FAILED", set()) if ids == ["ep-5"] else ("SUCCEEDED", {"ep-5"} & set(ids))

    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=verdict)
    # When eight rows are delivered
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 8)]))
    # Then the search ends on the FAILED one-row job: ep-5 is refused with its verdict, the rest confirmed
    alone = next(j for j in fake.jobs.values() if [r["AccountNumber"] for r in j.rows] == ["ep-5"])
    assert result.confirmed, result.errors
    assert result.rejected == {"ep-5": f"upload job {alone.id} FAILED (INTERNAL_FAILURE)"}
    assert len(fake.profiles) == 7 and result.search is None


def test_two_refused_rows_among_844_are_found_in_one_delivery_with_the_default_settings(
    client, server, clock, tmp_path
):
    # Given a service that refuses two of 844 rows of one upload job, counting them without naming them (issue 22)
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=refuse("ep-17", "ep-801"))
    # When they are delivered with the default settings
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 844)]))
    # Then both are found and nothing else is refused or left suspect: the delivery is confirmed
    assert result.confirmed, result.errors
    assert sorted(result.rejected) == ["ep-17", "ep-801"] and result.search is None
    # within the stated number of jobs, and every other row reached the domain
    assert len(fake.jobs) <= 1 + search_bound(2, 844)[0]
    assert len(fake.profiles) == 842


def test_no_refused_row_allowed_means_not_confirmed(client, server, clock, tmp_path):
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=refuse("ep-5"))
    result = destination(fake, server, clock, max_rejected_rows=0).deliver(
        delivery([write_csv(tmp_path / "i" / "part-00000.csv", 8)])
    )
    job_id = only_job(fake)
    assert result == DeliveryResult(
        confirmed=False,
        jobs=[JobRecord(job_id, "PARTIALLY_SUCCEEDED", 7, 1, [])],
        location=LOCATION,
        errors=[f"{SEG} job 1: 1 row(s) refused by the platform (job {job_id}); destination.max_rejected_rows is 0"],
    )


def test_no_isolation_job_allowed_leaves_the_whole_chunk_suspect_not_refused(client, server, clock, tmp_path):
    # Given no isolation job allowed and a job that refuses one of its three rows, naming none
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=refuse("ep-5"))
    # When it is delivered
    result = destination(fake, server, clock, max_isolation_jobs=0).deliver(
        delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3, start=4)])
    )
    # Then no row is counted as refused: the three stay suspect for the next run to continue
    only_job(fake)
    assert result.confirmed and result.rejected == {}
    assert result.search.groups == (("ep-4", "ep-5", "ep-6"),)


def test_two_jobs_at_once_both_confirmed(fake, server, clock, tmp_path):
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", 3, start=3 * n) for n in range(2)]
    dest = destination(fake, server, clock, max_job_bytes=max(f.stat().st_size for f in files), max_concurrent_jobs=2)
    result = dest.deliver(delivery(files))
    assert result.confirmed, result.errors
    assert sorted(j.status for j in result.jobs) == ["SUCCEEDED", "SUCCEEDED"]
    assert sorted(j.name for j in fake.jobs.values()) == [
        display_name(RUN_ID, SEG, "1"),
        display_name(RUN_ID, SEG, "2"),
    ]


# --------------------------------------------------------------------------- display names
def test_display_name_keeps_the_segment_up_to_255_characters():
    segment = "s" * (255 - len(f"lakeseg-{RUN_ID}--p1"))
    assert display_name(RUN_ID, segment, "1") == f"lakeseg-{RUN_ID}-{segment}-p1"
    assert len(display_name(RUN_ID, segment, "1")) == 255


def test_display_name_hashes_a_segment_too_long_for_255_characters():
    import hashlib

    segment = "s" * (256 - len(f"lakeseg-{RUN_ID}--p1"))
    digest = hashlib.sha256(segment.encode()).hexdigest()
    assert display_name(RUN_ID, segment, "1") == f"lakeseg-{RUN_ID}-{digest[:16]}-p1"
