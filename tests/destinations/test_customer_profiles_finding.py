"""Finding earlier upload jobs (issue 22): by the id the state's job ledger holds, else through the whole listing.

ListUploadJobs has no filter and promises no order, and a busy domain lists thousands of jobs: a job created
despite a server error, or an earlier run's job still in flight, must be found however far down the listing it is.
Every call goes to a real customer-profiles client answered by botocore's ``Stubber`` (requests validated against
the service model).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from sync.destinations import profile_fields as pf
from sync.destinations.customer_profiles import CustomerProfilesDestination, display_name
from sync.state import open_state_store
from tests.destinations import profiles_harness as ph

D = ph.DOMAIN
SEG = "seg_email_clickers"
EARLIER = "20261124T030000123Z-def456"
NAME = display_name(ph.RUN_ID, SEG, "1")
OLD_NAME = display_name(EARLIER, SEG, "1")


@pytest.fixture
def stubbed():
    client = ph.client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def ledger(tmp_path):
    return open_state_store(str(tmp_path / "state")).job_ledger("customer_profiles", SEG)


def dest(client, **kw) -> CustomerProfilesDestination:
    return CustomerProfilesDestination(
        domain_name=D, profiles=client, poll_seconds=0, retry_base_seconds=0, sleep=lambda _s: None, **kw
    )


def busy_listing(stubber, pages: int, wanted: dict | None):
    """``pages`` pages of 100 other jobs each, in no particular order; ``wanted`` is the last item of the last page."""
    for n in range(pages):
        items = [
            {"JobId": f"other-{n}-{i}", "DisplayName": f"other-{(n * 37 + i) % 997}", "Status": "SUCCEEDED"}
            for i in range(100 if wanted is None or n < pages - 1 else 99)
        ]
        if wanted is not None and n == pages - 1:
            items.append(wanted)
        page = {"Items": items, **({"NextToken": f"t{n + 1}"} if n < pages - 1 else {})}
        stubber.add_response(
            "list_upload_jobs", page, {"DomainName": D, "MaxResults": 100, **({"NextToken": f"t{n}"} if n else {})}
        )


def delivery(tmp_path, ledger=None):
    return replace(ph.delivery([ph.write_csv(tmp_path / "import" / "part-00000.csv", 2)]), ledger=ledger)


def created_despite_a_500(stubber):
    """CreateUploadJob answers 500 although it created the job, in a domain listing 2,599 other jobs first."""
    stubber.add_client_error(
        "create_upload_job",
        service_error_code="InternalServerException",
        http_status_code=500,
        expected_params={"DomainName": D, "DisplayName": NAME, "Fields": ANY, "UniqueKey": ANY, "DataExpiry": 14},
    )
    busy_listing(stubber, 26, {"JobId": "created-anyway", "DisplayName": NAME, "Status": "CREATED"})


def test_a_job_created_despite_a_server_error_is_found_past_the_2000th_listed_job(stubbed):
    client, stubber = stubbed
    # Given CreateUploadJob answers 500 although it created the job, 2,599 jobs down a busy domain's listing
    created_despite_a_500(stubber)
    mapping = pf.map_fields(ph.FIELDS, pf.DEFAULT_UNIQUE_KEY_TARGET)
    # When the destination creates the job (with no ledger to go by)
    job_id = dest(client)._create_job(NAME, mapping)
    # Then it finds the job the failed call created instead of reporting none: the 26th page is read
    assert job_id == "created-anyway"


def test_a_job_created_despite_a_server_error_is_noted_in_the_ledger_by_name_then_by_id(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given the same busy domain and a ledger
    created_despite_a_500(stubber)
    d = delivery(tmp_path, ledger)
    # When the destination creates the job
    job_id = dest(client)._create_job(NAME, pf.map_fields(d.fields, pf.DEFAULT_UNIQUE_KEY_TARGET), d)
    # Then the job it found is noted durably by name and id, for a later run to read by id
    assert job_id == "created-anyway"
    assert [(e["name"], e["job_id"], e["run_id"]) for e in ledger.entries()] == [(NAME, "created-anyway", ph.RUN_ID)]


def test_an_earlier_runs_job_in_flight_is_read_by_its_id_and_waited_for_without_listing(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given the ledger holds an earlier run's job, still in progress, that no listing page would show early
    ledger.remember(OLD_NAME, "job-old", EARLIER)
    for status in ("IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"):
        stubber.add_response(
            "get_upload_job",
            {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": status},
            {"DomainName": D, "JobId": "job-old"},
        )
    # When this run settles earlier runs before uploading
    waited = dest(client)._settle_in_flight(delivery(tmp_path, ledger))
    # Then it waited for that job by id until it ended (no ListUploadJobs call), and forgot it then
    assert waited is None and ledger.entries() == []


def test_an_earlier_runs_job_still_in_flight_at_the_timeout_stops_the_delivery_naming_it(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    ledger.remember(OLD_NAME, "job-old", EARLIER)
    stubber.add_response(
        "get_upload_job",
        {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "IN_PROGRESS"},
        {"DomainName": D, "JobId": "job-old"},
    )
    waited = dest(client, timeout=0)._settle_in_flight(delivery(tmp_path, ledger))
    assert waited is not None and f"upload job job-old ({OLD_NAME})" in waited
    assert [e["job_id"] for e in ledger.entries()] == ["job-old"]


def test_an_earlier_create_that_failed_is_resolved_through_the_whole_listing_then_read_by_id(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given an earlier run noted a create whose call failed (no id), and the job exists, in progress, 2,500 jobs down
    ledger.remember(OLD_NAME, None, EARLIER)
    busy_listing(stubber, 26, {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "IN_PROGRESS"})
    stubber.add_response(
        "get_upload_job",
        {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "SUCCEEDED"},
        {"DomainName": D, "JobId": "job-old"},
    )
    # When this run settles earlier runs
    waited = dest(client)._settle_in_flight(delivery(tmp_path, ledger))
    # Then the job was found by name once, then followed by id until it ended
    assert waited is None and ledger.entries() == []


def test_with_a_ledger_in_use_a_new_jobs_name_is_not_looked_up_in_the_listing(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given a ledger in use (nothing in flight)
    ledger.remember(OLD_NAME, None, EARLIER)
    ledger.forget(OLD_NAME)
    # When the destination looks for this run's job before creating it
    # Then no call is made: a name the ledger never noted was never created
    assert dest(client)._find_job(NAME, delivery(tmp_path, ledger)) is None


def test_a_delivery_notes_each_job_before_creating_it_and_forgets_it_once_ended(fake, server, clock, ledger, tmp_path):
    # Given a ledger in use and a domain with other jobs
    ledger.remember(OLD_NAME, None, EARLIER)
    ledger.forget(OLD_NAME)
    fake.calls.clear()
    notes = []
    real_remember = ledger.remember
    ledger.remember = lambda name, job_id, run_id: (
        notes.append((name, job_id, fake.ops().count("CreateUploadJob"))),
        real_remember(name, job_id, run_id),
    )
    # When a delivery runs one upload job
    result = ph.destination(fake, server, clock).deliver(delivery(tmp_path, ledger))
    # Then the job was noted by name before CreateUploadJob and by id after it, and forgotten once it ended,
    # and no listing was read to find it
    job_id = next(iter(fake.jobs.values())).id
    assert result.confirmed, result.errors
    assert notes == [(NAME, None, 0), (NAME, job_id, 1)] and ledger.entries() == []
    assert "ListUploadJobs" not in fake.ops()


def test_a_part_whose_job_this_run_noted_is_read_by_its_id_not_listed_or_created_again(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given this run noted the part's job by id (a part delivered again within the run), and other runs' entries
    ledger.remember(OLD_NAME, "job-old", EARLIER)
    ledger.remember(NAME, "job-this", ph.RUN_ID)
    stubber.add_response(
        "get_upload_job", {"DisplayName": NAME, "Status": "IN_PROGRESS"}, {"DomainName": D, "JobId": "job-this"}
    )
    # When the destination looks for the part's job (GetUploadJob's answer need not repeat the id)
    found = dest(client)._find_job(NAME, delivery(tmp_path, ledger))
    # Then it is that job, by the id asked for, with no listing and no create
    assert found == {"JobId": "job-this", "DisplayName": NAME, "Status": "IN_PROGRESS"}


def test_a_noted_job_the_domain_no_longer_has_reads_as_none_and_another_error_is_raised(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    ledger.remember(NAME, "job-gone", ph.RUN_ID)
    # Given GetUploadJob says the noted job does not exist, then the part has no job (it is created anew)
    stubber.add_client_error(
        "get_upload_job",
        service_error_code="ResourceNotFoundException",
        http_status_code=404,
        expected_params={"DomainName": D, "JobId": "job-gone"},
    )
    assert dest(client)._find_job(NAME, delivery(tmp_path, ledger)) is None
    # Given any other error, then it is raised, never read as "no job" (which would create a second one)
    stubber.add_client_error(
        "get_upload_job",
        service_error_code="AccessDeniedException",
        http_status_code=403,
        expected_params={"DomainName": D, "JobId": "job-gone"},
    )
    with pytest.raises(ClientError):
        dest(client)._find_job(NAME, delivery(tmp_path, ledger))


def test_a_job_found_in_the_listing_for_a_name_noted_without_an_id_is_noted_with_its_id(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given this run noted a create whose call failed (no id), and the job exists 2,500 jobs down the listing
    ledger.remember(NAME, None, ph.RUN_ID)
    busy_listing(stubber, 26, {"JobId": "job-found", "DisplayName": NAME, "Status": "CREATED"})
    # When the destination looks for the part's job
    found = dest(client)._find_job(NAME, delivery(tmp_path, ledger))
    # Then it is found by name, and noted with its id and this run, for the next look-up to read by id
    assert found["JobId"] == "job-found"
    assert [(e["name"], e["job_id"], e["run_id"]) for e in ledger.entries()] == [(NAME, "job-found", ph.RUN_ID)]


def test_an_earlier_create_found_still_in_flight_at_the_timeout_is_kept_with_its_id_and_run(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given an earlier run noted a create whose call failed, and the job is still in progress at the timeout
    ledger.remember(OLD_NAME, None, EARLIER)
    busy_listing(stubber, 1, {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "IN_PROGRESS"})
    # When this run settles earlier runs
    waited = dest(client, timeout=0)._settle_in_flight(delivery(tmp_path, ledger))
    # Then the delivery stops naming it, and the ledger keeps it with its id, under the run that created it
    assert waited is not None and f"upload job job-old ({OLD_NAME})" in waited
    assert [(e["name"], e["job_id"], e["run_id"]) for e in ledger.entries()] == [(OLD_NAME, "job-old", EARLIER)]


def test_this_runs_own_jobs_are_not_waited_for_but_every_earlier_runs_job_is(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given the ledger holds this run's job first, then an earlier run's job still in progress
    ledger.remember(NAME, "job-this", ph.RUN_ID)
    ledger.remember(OLD_NAME, "job-old", EARLIER)
    stubber.add_response(
        "get_upload_job",
        {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "IN_PROGRESS"},
        {"DomainName": D, "JobId": "job-old"},
    )
    # When this run settles earlier runs (with no time to wait)
    waited = dest(client, timeout=0)._settle_in_flight(delivery(tmp_path, ledger))
    # Then only the earlier run's job is read and waited for; this run's entry is left as it is
    assert waited is not None and "job-old" in waited and "job-this" not in waited
    assert [(e["name"], e["job_id"]) for e in ledger.entries()] == [(NAME, "job-this"), (OLD_NAME, "job-old")]


def test_a_ledger_in_use_but_never_written_reads_the_whole_listing_for_earlier_runs(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given a ledger with no document yet, and an earlier run's job in progress in the listing
    busy_listing(stubber, 1, {"JobId": "job-old", "DisplayName": OLD_NAME, "Status": "IN_PROGRESS"})
    # When this run settles earlier runs, then it found that job through the listing
    waited = dest(client, timeout=0)._settle_in_flight(delivery(tmp_path, ledger))
    assert waited is not None and f"upload job job-old ({OLD_NAME})" in waited


def test_a_created_job_is_noted_with_its_id_and_run(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    stubber.add_response(
        "create_upload_job",
        {"JobId": "job-new"},
        {"DomainName": D, "DisplayName": NAME, "Fields": ANY, "UniqueKey": ANY, "DataExpiry": 14},
    )
    d = delivery(tmp_path, ledger)
    assert dest(client)._create_job(NAME, pf.map_fields(d.fields, pf.DEFAULT_UNIQUE_KEY_TARGET), d) == "job-new"
    assert [(e["name"], e["job_id"], e["run_id"]) for e in ledger.entries()] == [(NAME, "job-new", ph.RUN_ID)]


def test_a_create_refused_outright_stays_noted_by_name_under_this_run(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given CreateUploadJob is refused (not a server error: nothing to look for)
    stubber.add_client_error(
        "create_upload_job",
        service_error_code="AccessDeniedException",
        http_status_code=403,
        expected_params={"DomainName": D, "DisplayName": NAME, "Fields": ANY, "UniqueKey": ANY, "DataExpiry": 14},
    )
    d = delivery(tmp_path, ledger)
    with pytest.raises(ClientError):
        dest(client)._create_job(NAME, pf.map_fields(d.fields, pf.DEFAULT_UNIQUE_KEY_TARGET), d)
    # Then the name noted before the call stays, under this run, for a later run to look for
    assert [(e["name"], e["job_id"], e["run_id"]) for e in ledger.entries()] == [(NAME, None, ph.RUN_ID)]


def test_an_earlier_create_that_made_no_job_is_dropped_from_the_ledger(stubbed, ledger, tmp_path):
    client, stubber = stubbed
    # Given an earlier run noted a create whose call failed, and the domain has no job of that name
    ledger.remember(OLD_NAME, None, EARLIER)
    busy_listing(stubber, 1, None)
    # When this run settles earlier runs, then there is nothing to wait for, and the name is forgotten
    assert dest(client)._settle_in_flight(delivery(tmp_path, ledger)) is None
    assert ledger.entries() == []
