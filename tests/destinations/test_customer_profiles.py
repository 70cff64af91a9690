"""The customer_profiles destination against a model-validated fake of the service and a real
HTTPS server on 127.0.0.1 standing in for the pre-signed S3 URL (see profiles_harness)."""

from __future__ import annotations

import pytest

from sync.core.errors import ConfigError
from sync.dbt.contract import FieldMapping, RelationRef, Segment
from sync.destinations import build_destination
from sync.destinations.base import Destination, SegmentDelivery
from sync.destinations.customer_profiles import display_name, verdict
from sync.destinations.profile_fields import map_fields

from . import profiles_harness as ph
from .profiles_harness import RUN_ID, delivery, destination, expected_csv, write_csv

CALL_ORDER = [
    "ListUploadJobs",
    "ListUploadJobs",
    "CreateUploadJob",
    "GetUploadJobPath",
    "StartUploadJob",
    "GetUploadJob",
]


# --------------------------------------------------------------------------- the happy path
def test_succeeded_job_is_confirmed_after_create_path_put_start_and_polls(fake, server, clock, tmp_path):
    # Given one import file of 10 rows
    src = write_csv(tmp_path / "import" / "part-00000.csv", 10)
    dest = destination(fake, server, clock)
    assert isinstance(dest, Destination)
    seen = []
    # When it is delivered
    result = dest.deliver(delivery([src]), lambda label, done, total: seen.append((label, done, total)))
    # Then the job went through every step, in order, and was confirmed
    assert result.confirmed, result.errors
    assert fake.ops()[:6] == CALL_ORDER and fake.ops()[6:] == ["GetUploadJob"]
    create = dict(fake.calls)["CreateUploadJob"]
    assert create["DisplayName"] == display_name(RUN_ID, "seg_email_clickers", "1")
    assert create["UniqueKey"] == "AccountNumber" and create["DataExpiry"] == 14
    assert create["Fields"]["EmailAddress"] == {
        "Source": "_source.EmailAddress",
        "Target": "_profile.EmailAddress",
        "ContentType": "EMAIL_ADDRESS",
    }
    assert create["Fields"]["Opens"]["Target"] == "_profile.Attributes.Opens"
    assert create["Fields"]["Opens"]["ContentType"] == "NUMBER"
    # And the HTTPS server got one PUT with the SSE-C headers and exactly the mapped CSV
    assert [p.status for p in server.puts] == [200]
    (job,) = fake.jobs.values()
    assert server.bodies[job.id] == expected_csv(src)
    assert server.puts[0].headers["content-type"] == "text/csv"
    # And the profiles exist with the mapped attributes, the Id as AccountNumber
    assert len(fake.profiles) == 10
    assert fake.profiles["ep-1"]["_profile.Attributes.HasClicked"] == "Yes, really"
    assert fake.profiles["ep-3"]["_profile.PhoneNumber"] == "+15550000003"
    assert result.jobs[0].status == "SUCCEEDED" and result.jobs[0].total_processed == 10
    assert ("seg_email_clickers: importing", 1, 1) in seen
    assert not list(src.parent.glob("profiles-*.csv")), "the translated copy (personal data) is removed"


def test_two_jobs_run_under_the_semaphore(fake, server, clock, tmp_path):
    # Given three files and a job limit that puts each in its own job, two at a time
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", 5, start=5 * n) for n in range(3)]
    size = max(f.stat().st_size for f in files)
    dest = destination(fake, server, clock, max_job_bytes=size, max_concurrent_jobs=2)
    result = dest.deliver(delivery(files))
    assert result.confirmed, result.errors
    assert len(fake.jobs) == 3 and len(fake.profiles) == 15
    assert fake.max_in_flight <= 2


# --------------------------------------------------------------------------- verdicts
def test_failed_job_is_not_confirmed(client, server, clock, tmp_path):
    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=lambda job: ("FAILED", set()))
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 4)]))
    assert not result.confirmed
    assert "FAILED (INTERNAL_FAILURE)" in result.errors[0] and not fake.profiles


def test_partially_succeeded_rows_are_isolated_and_quarantined(client, server, clock, tmp_path):
    # Given a service that refuses the profile ep-5 (it counts failures, naming no record)
    fake = ph.FakeCustomerProfiles(
        client, server, clock, verdict=lambda job: ("SUCCEEDED", {"ep-5"} & {r["AccountNumber"] for r in job.rows})
    )
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 8)]))
    # Then the shared layer finds ep-5 by uploading halves, and the delivery is confirmed without it
    assert result.confirmed, result.errors
    assert set(result.rejected) == {"ep-5"}
    assert result.jobs[0].status == "PARTIALLY_SUCCEEDED" and result.jobs[0].total_failures == 1
    assert len(fake.jobs) > 1 and "ep-5" not in fake.profiles and len(fake.profiles) == 7


def test_stopped_job_is_not_confirmed(client, server, clock, tmp_path):
    def stop(job):
        return "STOPPED", set()

    fake = ph.FakeCustomerProfiles(client, server, clock, verdict=stop)
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    assert not result.confirmed and "STOPPED" in result.errors[0]


def test_giving_up_stops_the_job(fake, server, clock, tmp_path):
    # Given a job that never finishes
    fake.hang = True
    result = destination(fake, server, clock, timeout=0).deliver(
        delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)])
    )
    # Then lakeseg stops it and confirms nothing
    assert not result.confirmed and "stopped it" in result.errors[0]
    assert fake.ops()[-1] == "StopUploadJob"
    assert [j.status for j in fake.jobs.values()] == ["STOPPED"]


@pytest.mark.parametrize(
    "response, ok, refused, error",
    [
        ({"Status": "SUCCEEDED", "ResultsSummary": {"FailedRecords": 0}}, True, 0, None),
        ({"Status": "SUCCEEDED", "ResultsSummary": {"FailedRecords": 2}}, False, 2, None),
        ({"Status": "PARTIALLY_SUCCEEDED", "ResultsSummary": {"FailedRecords": 3}}, False, 3, None),
        ({"Status": "PARTIALLY_SUCCEEDED"}, False, 0, "no failed record count"),
        ({"Status": "FAILED", "StatusReason": "VALIDATION_FAILURE"}, False, 0, "FAILED (VALIDATION_FAILURE)"),
        ({"Status": "STOPPED"}, False, 0, "STOPPED"),
    ],
    ids=["succeeded", "succeeded-with-failures", "partial", "partial-without-count", "failed", "stopped"],
)
def test_verdicts(response, ok, refused, error):
    out = verdict({"JobId": "j1", **response}, rows=10)
    assert out.ok is ok and out.refused_rows == refused
    assert (error is None and out.error is None) or error in out.error


@pytest.mark.parametrize(
    "reason, code",
    [
        ("INTERNAL_FAILURE", "INTERNAL_FAILURE"),
        ("VALIDATION_FAILURE", "VALIDATION_FAILURE"),
        ("value 'Zyxwv-Smith, Jr.' is invalid", None),
        (None, None),
    ],
    ids=["internal-failure", "validation-failure", "free-text", "none"],
)
def test_a_jobs_status_reason_is_kept_as_a_code_only_when_it_is_an_enum(reason, code):
    # Given a job that failed with a StatusReason
    out = verdict({"JobId": "j1", "Status": "FAILED", **({"StatusReason": reason} if reason else {})}, rows=10)
    # Then the record keeps it as the status's code only when it is one of the API's enum-like codes
    assert out.record.status_reason == code


# --------------------------------------------------------------------------- the pre-signed URL
def test_an_expired_url_is_fetched_again_never_used(fake, server, clock, tmp_path):
    # Given GetUploadJobPath answers first with a URL already past ValidUntil
    fake.expired_paths = 1
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    # Then a second URL was fetched and only that one was used
    assert result.confirmed, result.errors
    assert fake.ops().count("GetUploadJobPath") == 2
    assert len(server.issued) == 2 and len(server.puts) == 1 and server.puts[0].status == 200


def test_a_url_that_expires_in_transit_is_fetched_again_once(fake, server, clock, tmp_path):
    server.expire_in_transit = 1
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    assert result.confirmed, result.errors
    assert [p.status for p in server.puts] == [403, 200]


def test_only_expired_urls_mean_nothing_is_uploaded(fake, server, clock, tmp_path):
    fake.expired_paths = 5
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    assert not result.confirmed and "expired" in result.errors[0]
    assert not server.puts and "StartUploadJob" not in fake.ops()


def test_a_failed_put_starts_nothing(fake, server, clock, tmp_path):
    server.fail_next = [500]
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    assert not result.confirmed and "HTTP 500" in result.errors[0]
    assert "StartUploadJob" not in fake.ops()


def test_the_server_rejects_a_wrong_key_md5(server, clock):
    # The server really checks the SSE-C headers (so the happy path above proves them right).
    import ssl
    import urllib.request  # noqa: E401

    url, token = server.issue("job1", clock() + ph.URL_LIFETIME)
    request = urllib.request.Request(
        url,
        data=b"x",
        method="PUT",
        headers={
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": token,
            "x-amz-server-side-encryption-customer-key-MD5": "AAAAAAAAAAAAAAAAAAAAAA==",
        },
    )
    context = ssl.create_default_context(cafile=str(server.cert))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=context)
    assert err.value.code == 400 and "job1" not in server.bodies


# --------------------------------------------------------------------------- at most once
def test_throttling_is_retried_with_backoff_and_creates_one_job(fake, server, clock, tmp_path):
    for op in ("CreateUploadJob", "GetUploadJobPath", "StartUploadJob", "GetUploadJob", "ListUploadJobs"):
        fake.throttle(op, 2)
    sleeps = []
    dest = destination(fake, server, clock, sleep=sleeps.append, retry_base_seconds=0.01)
    result = dest.deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    assert result.confirmed, result.errors
    assert len(fake.jobs) == 1 and dest._retrying.retries == 10
    assert all(0 <= s <= 0.02 for s in sleeps[:10])


def test_a_create_that_fails_on_the_server_is_looked_up_not_repeated(fake, server, clock, tmp_path):
    # Given CreateUploadJob creates the job but answers 500
    fake.create_then_fail = 1
    result = destination(fake, server, clock).deliver(delivery([write_csv(tmp_path / "i" / "part-00000.csv", 3)]))
    # Then lakeseg finds the job by its name and uses it: one job, confirmed
    assert result.confirmed, result.errors
    assert fake.ops().count("CreateUploadJob") == 1 and len(fake.jobs) == 1


def test_a_retry_of_the_same_run_attaches_to_its_job(fake, server, clock, tmp_path):
    src = write_csv(tmp_path / "i" / "part-00000.csv", 3)
    dest = destination(fake, server, clock)
    assert dest.deliver(delivery([src])).confirmed
    again = dest.deliver(delivery([src]))
    assert again.confirmed and len(fake.jobs) == 1
    assert fake.ops().count("CreateUploadJob") == 1 and fake.ops().count("StartUploadJob") == 1


def test_an_earlier_runs_job_in_progress_is_waited_for(fake, server, clock, tmp_path):
    # Given an upload of an earlier run of the same segment that never ends
    fake.hang = True
    dest = destination(fake, server, clock, timeout=0)
    dest.deliver(delivery([write_csv(tmp_path / "a" / "part-00000.csv", 3)], run_id="20261124T030000123Z-aaaaaa"))
    fake.jobs[next(iter(fake.jobs))].status = "IN_PROGRESS"  # as if StopUploadJob had not taken yet
    # When a later run delivers
    result = dest.deliver(delivery([write_csv(tmp_path / "b" / "part-00000.csv", 3)]))
    # Then it uploads nothing and says why
    assert not result.confirmed and "earlier run is still in flight" in result.errors[0]
    assert len(fake.jobs) == 1


# --------------------------------------------------------------------------- preflight
def test_preflight_passes_for_the_domain(fake, server, clock):
    destination(fake, server, clock).preflight()
    assert fake.ops() == ["GetDomain", "ListUploadJobs"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"domain_name": None}, "destination.domain_name is not set"),
        ({"domain_name": "bad name"}, "destination.domain_name 'bad name' is not a domain name"),
        ({"domain_name": "other-domain"}, "no Customer Profiles domain other-domain"),
        ({"unique_key_target": "AccountNumber"}, "destination.unique_key_target must name a profile field"),
    ],
    ids=["unset", "malformed", "missing", "bad-key-target"],
)
def test_preflight_names_the_setting(fake, server, clock, change, message):
    with pytest.raises(ConfigError, match=message):
        destination(fake, server, clock, **change).preflight()
    assert "CreateUploadJob" not in fake.ops()


@pytest.mark.parametrize("op", ["GetDomain", "ListUploadJobs"])
def test_preflight_names_the_iam_actions_when_denied(fake, server, clock, op):
    fake.denied = {op}
    with pytest.raises(ConfigError, match=r"destination.domain_name: access denied .* profile:CreateUploadJob"):
        destination(fake, server, clock).preflight()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"data_expiry_days": 0}, "data_expiry_days: must be between 1 and 1098"),
        ({"refresh_before_expiry_days": 14}, "refresh_before_expiry_days must be less than data_expiry_days"),
        ({"max_concurrent_jobs": 11}, "max_concurrent_jobs: must be a whole number between 1 and 10"),
        ({"max_job_mb": 1001}, "max_job_mb: must be above 0 and at most 1024 for pinpoint .* or 1000"),
        ({"domain": "x"}, "destination.domain: unknown key; did you mean 'domain_name'"),
    ],
    ids=["expiry", "margin", "concurrency", "job-size", "unknown-key"],
)
def test_settings_are_checked(settings, message):
    session = ph.session()
    with pytest.raises(ConfigError, match=message):
        build_destination({"type": "customer_profiles", "domain_name": ph.DOMAIN, **settings}, session)


def test_refresh_after_is_expiry_minus_margin():
    session = ph.session()
    dest = build_destination(
        {
            "type": "customer_profiles",
            "domain_name": ph.DOMAIN,
            "data_expiry_days": 30,
            "refresh_before_expiry_days": 5,
        },
        session,
    )
    assert dest.refresh_after.days == 25


# --------------------------------------------------------------------------- field mapping
def segment(*fields, segment_name=None) -> Segment:
    return Segment(
        "model.p.seg_x",
        "seg_x",
        RelationRef("db", "main", "seg_x"),
        tuple(FieldMapping(f.lower().replace(".", "_"), f) for f in fields),
        {},
        segment_name,
        (),
        "p",
    )


@pytest.mark.parametrize(
    "fields, problem",
    [
        (
            ("Id", "Demographic.Timezone"),
            "Demographic.Timezone: [customer-profiles-field] Customer Profiles has no target",
        ),
        (("Id", "Address"), "Address needs ChannelType"),
        (("Id", "ChannelType"), "without Address it has no target"),
        (("Id", "Attributes.Plan", "User.UserAttributes.Plan"), "same Customer Profiles column 'Plan'"),
        (("Id", "Location.Latitude"), "Location.Latitude: [customer-profiles-field]"),
        (("Id", "OptOut"), "OptOut: [customer-profiles-field]"),
    ],
    ids=["demographic", "address-alone", "channel-alone", "collision", "latitude", "optout"],
)
def test_fields_without_a_target_are_named(fake, server, clock, fields, problem):
    problems = destination(fake, server, clock).check_segment(segment(*fields))
    assert any(problem in p for p in problems), problems


def test_supported_fields_map_cleanly(fake, server, clock):
    fields = (
        "Id",
        "Address",
        "ChannelType",
        "User.UserId",
        "User.UserAttributes.Stage",
        "Attributes.Plan",
        "Metrics.Opens",
        "Location.City",
        "Location.Region",
        "Location.Country",
        "Location.PostalCode",
    )
    assert destination(fake, server, clock).check_segment(segment(*fields)) == []
    mapping = map_fields(fields)
    assert mapping.target_of("Location.Region").target == "_profile.Address.State"
    assert mapping.target_of("User.UserId").target == "_profile.Attributes.UserId"


def test_a_segment_with_unmapped_fields_is_not_delivered(fake, server, clock, tmp_path):
    src = tmp_path / "i" / "part-00000.csv"
    src.parent.mkdir()
    src.write_text("Id,Demographic.Timezone\r\nep-1,UTC\r\n")
    d = SegmentDelivery(RUN_ID, "seg_x", (src,), ("Id", "Demographic.Timezone"), {"rows": 1})
    result = destination(fake, server, clock).deliver(d)
    assert not result.confirmed and "Demographic.Timezone has no Customer Profiles target" in result.errors[0]
    assert fake.ops() == []


# --------------------------------------------------------------------------- segment definitions
def test_segment_definition_is_created_once_and_replaced_when_it_changes(fake, server, clock, tmp_path):
    src = write_csv(tmp_path / "i" / "part-00000.csv", 3)
    dest = destination(fake, server, clock, segment_name_prefix="lakeseg-")
    yes = {"User.UserAttributes.HasClicked": ("Yes",)}
    assert dest.deliver(delivery([src], segment_name="clickers", segment_filter=yes)).confirmed
    assert dest.deliver(
        delivery([src], run_id="20261126T030000123Z-bbbbbb", segment_name="clickers", segment_filter=yes)
    ).confirmed
    assert fake.ops().count("CreateSegmentDefinition") == 1
    groups = fake.definitions["lakeseg-clickers"]["SegmentGroups"]
    assert groups["Groups"][0]["Dimensions"][0]["ProfileAttributes"]["Attributes"] == {
        "HasClicked": {"DimensionType": "INCLUSIVE", "Values": ["Yes"]}
    }
    # When the in-segment values change, the definition is replaced
    assert dest.deliver(
        delivery(
            [src],
            run_id="20261127T030000123Z-cccccc",
            segment_name="clickers",
            segment_filter={"User.UserAttributes.HasClicked": ("Yes", "Maybe")},
        )
    ).confirmed
    assert fake.ops().count("DeleteSegmentDefinition") == 1 and fake.ops().count("CreateSegmentDefinition") == 2
    assert fake.definitions["lakeseg-clickers"]["SegmentGroups"]["Groups"][0]["Dimensions"][0]["ProfileAttributes"][
        "Attributes"
    ]["HasClicked"]["Values"] == ["Yes", "Maybe"]


def test_segment_definition_needs_an_attribute_filter(fake, server, clock, tmp_path):
    src = write_csv(tmp_path / "i" / "part-00000.csv", 3)
    result = destination(fake, server, clock).deliver(
        delivery([src], segment_name="clickers", segment_filter={"Address": ("x",)})
    )
    assert not result.confirmed and "is not a profile attribute" in result.errors[0]


@pytest.mark.parametrize(
    "block, words",
    [
        ("domain_nam: x", ["destination.domain_nam", "did you mean 'domain_name'"]),
        ("data_expiry_days: 2000", ["destination.data_expiry_days"]),
        ("domain_name: 'a b'", ["destination.domain_name"]),
        ("unique_key_target: AccountNumber", ["destination.unique_key_target"]),
    ],
    ids=["typo", "expiry-range", "domain-pattern", "key-target"],
)
def test_lakeseg_yml_schema_names_the_key(tmp_path, block, words):
    from sync.settings import load_settings

    (tmp_path / "lakeseg.yml").write_text(
        f"targets:\n  local:\n    destination:\n      type: customer_profiles\n      {block}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local")
    assert all(w in str(err.value) for w in words), str(err.value)
