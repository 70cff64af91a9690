"""The customer_profiles destination's settings, defaults, trust store, preflight and static segment check.

Every refusal is compared whole: the message names the settings key and the
rule, and nothing is sent. The AWS calls go to the model-validated fake of
profiles_harness.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import boto3
import botocore.session
import pytest

from sync.core.errors import ConfigError
from sync.dbt.contract import FieldMapping, RelationRef, Segment
from sync.destinations import build_destination
from sync.destinations.customer_profiles import SETTINGS, CustomerProfilesDestination, _ca_bundle

from . import profiles_harness as ph
from .profiles_harness import destination

D = ph.DOMAIN
KNOWN = (
    "name, domain_name, region, data_expiry_days, refresh_before_expiry_days, unique_key_target, "
    "segment_name_prefix, poll_seconds, timeout, max_concurrent_jobs, max_job_mb, max_rejected_rows, "
    "max_isolation_jobs"
)
ACTIONS = (
    "profile:GetDomain, profile:ListUploadJobs, profile:CreateUploadJob, profile:GetUploadJobPath, "
    "profile:StartUploadJob, profile:GetUploadJob and profile:StopUploadJob on "
    f"arn:aws:profile:<region>:<account>:domains/{D} and its upload jobs "
    "(the stack's CustomerProfilesRunnerPolicy)"
)


@pytest.fixture
def plain_env(monkeypatch, tmp_path):
    """No AWS config, no CA bundle from the environment, a region other than the sessions' in tests."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))  # absent until a test writes it
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return tmp_path


def session(region: str | None = "us-east-1", **credentials) -> boto3.Session:
    """A new session (it reads the environment and AWS config now) sharing the test run's loaded service models."""
    core = botocore.session.Session()
    core.register_component("data_loader", ph.session()._session.get_component("data_loader"))
    return boto3.Session(botocore_session=core, region_name=region, **credentials)


def build(settings: dict, sess=None) -> CustomerProfilesDestination:
    return CustomerProfilesDestination.from_settings({"type": "customer_profiles", **settings}, sess)


def config_with_ca_bundle(folder, bundle: str) -> None:
    (folder / "aws-config").write_text(f"[default]\nca_bundle = {bundle}\n")


# --------------------------------------------------------------------------- defaults and every setting
def test_defaults_when_only_the_domain_is_set(plain_env):
    # Given a destination block naming only the domain, and a session for us-east-1
    dest = build({"domain_name": D}, session("us-east-1"))
    # Then every default is the documented one
    assert (dest.domain_name, dest.data_expiry_days, dest.refresh_before_expiry_days) == (D, 14, 3)
    assert dest.refresh_after == timedelta(days=11)
    assert (dest.unique_key_target, dest.segment_name_prefix) == ("_profile.AccountNumber", "")
    assert (dest.poll_seconds, dest.timeout) == (15.0, 21600.0)
    assert (dest.max_concurrent_jobs, dest.max_parallel, dest.max_job_bytes) == (2, 2, 1_000_000_000)
    assert (dest.max_rejected_rows, dest.max_isolation_jobs) == (100, 32)
    assert dest.verify is True and dest.http_timeout == 300.0
    assert (dest._retrying.max_retries, dest._retrying.base_seconds) == (8, 0.5)
    # And the client is the given session's, in its region, with no SDK retries (create calls run at most once)
    assert dest.profiles.meta.service_model.service_name == "customer-profiles"
    assert dest.profiles.meta.region_name == "us-east-1"
    assert dest.profiles.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert "lakeseg" in dest.profiles.meta.config.user_agent_extra


def test_every_setting_reaches_the_destination(plain_env):
    # Given every setting away from its default, and a CA bundle in the AWS config
    config_with_ca_bundle(plain_env, "/etc/lakeseg/ca.pem")
    dest = build(
        {
            "name": "profiles-eu",
            "domain_name": "eu-domain",
            "region": "eu-west-2",
            "data_expiry_days": 30,
            "refresh_before_expiry_days": 5,
            "unique_key_target": "_profile.Attributes.LoyaltyId",
            "segment_name_prefix": "lakeseg-",
            "poll_seconds": 7,
            "timeout": 600,
            "max_concurrent_jobs": 4,
            "max_job_mb": 250,
            "max_rejected_rows": 7,
            "max_isolation_jobs": 3,
        },
        session(None),
    )
    # Then each one is what the destination uses
    assert (dest.domain_name, dest.data_expiry_days, dest.refresh_before_expiry_days) == ("eu-domain", 30, 5)
    assert dest.refresh_after == timedelta(days=25)
    assert (dest.unique_key_target, dest.segment_name_prefix) == ("_profile.Attributes.LoyaltyId", "lakeseg-")
    assert (dest.poll_seconds, dest.timeout) == (7.0, 600.0)
    assert (dest.max_concurrent_jobs, dest.max_parallel, dest.max_job_bytes) == (4, 4, 250_000_000)
    assert (dest.max_rejected_rows, dest.max_isolation_jobs) == (7, 3)
    assert dest.profiles.meta.region_name == "eu-west-2"
    assert dest.verify == "/etc/lakeseg/ca.pem"


def test_without_a_session_the_default_session_is_used(plain_env, monkeypatch):
    # Given no session: boto3's default one, from the environment (region ap-southeast-2 here)
    real = boto3.Session

    def sharing_models(*args, **kwargs):  # the real class, only sparing the test a second model load
        made = real(*args, **kwargs)
        made._session.register_component("data_loader", ph.session()._session.get_component("data_loader"))
        return made

    monkeypatch.setattr(boto3, "Session", sharing_models)
    dest = build({"domain_name": D})
    assert dest.profiles.meta.region_name == "ap-southeast-2"


def test_an_empty_region_and_key_target_fall_back(plain_env):
    dest = build({"domain_name": D, "region": "", "unique_key_target": ""}, session("us-west-2"))
    assert dest.profiles.meta.region_name == "us-west-2"
    assert dest.unique_key_target == "_profile.AccountNumber"


def test_the_constructor_defaults():
    # Given the class built directly with only a domain and a client
    dest = CustomerProfilesDestination(domain_name=D, profiles=ph.client())
    # Then its defaults match the settings' defaults
    assert (dest.data_expiry_days, dest.refresh_before_expiry_days, dest.segment_name_prefix) == (14, 3, "")
    assert (dest.poll_seconds, dest.timeout, dest.max_concurrent_jobs) == (15.0, 21600.0, 2)
    assert (dest.max_job_bytes, dest.max_rejected_rows, dest.max_isolation_jobs) == (1_000_000_000, 100, 32)
    assert (dest.verify, dest.http_timeout) == (True, 300.0)
    assert (dest._retrying.max_retries, dest._retrying.base_seconds, dest._retrying.label) == (
        8,
        0.5,
        "customer_profiles",
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"data_expiry_days": 0},
            "destination.data_expiry_days: must be between 1 and 1098 (CreateUploadJob's DataExpiry), got 0",
        ),
        (
            {"data_expiry_days": 1099},
            "destination.data_expiry_days: must be between 1 and 1098 (CreateUploadJob's DataExpiry), got 1099",
        ),
        (
            {"refresh_before_expiry_days": 14},
            "destination: refresh_before_expiry_days must be less than data_expiry_days (14), got 14",
        ),
        (
            {"refresh_before_expiry_days": -1},
            "destination.refresh_before_expiry_days: must be at least 0 (and less than destination.data_expiry_days), "
            "got -1",
        ),
        (
            {"max_concurrent_jobs": 11},
            "destination.max_concurrent_jobs: must be a whole number between 1 and 10 (Pinpoint runs at most 10 import "
            "jobs), got 11",
        ),
        (
            {"max_job_mb": 0},
            "destination.max_job_mb: must be above 0 and at most 1024 for pinpoint (1 GB per import "
            "job) or 1000 for customer_profiles (an upload stays under 1 GB), got 0",
        ),
        (
            {"max_job_mb": 1001},
            "destination.max_job_mb: must be above 0 and at most 1024 for pinpoint (1 GB per import "
            "job) or 1000 for customer_profiles (an upload stays under 1 GB), got 1001",
        ),
        ({"max_rejected_rows": -1}, "destination.max_rejected_rows: must be a whole number of 0 or more, got -1"),
        (
            {"poll_seconds": "soon"},
            "destination.poll_seconds: Input should be a valid number, unable to parse string as a number, got 'soon'",
        ),
        ({"timeout": -5}, "destination.timeout: must be above 0 seconds, got -5"),
        ({"domain": "x"}, "destination.domain: unknown key; did you mean 'domain_name'?"),
        (
            {"zone": "x", "bucket": "y"},
            f"2 problems:\n  destination.zone: unknown key; did you mean 'name'?\n  "
            f"destination.bucket: unknown key; valid keys: type, {KNOWN}",
        ),
    ],
    ids=[
        "expiry-0",
        "expiry-1099",
        "margin-equal-to-expiry",
        "margin-negative",
        "concurrency-11",
        "job-mb-0",
        "job-mb-1001",
        "rejected-negative",
        "poll-not-a-number",
        "timeout-negative",
        "unknown-key",
        "two-unknown-keys-first-sorted",
    ],
)
def test_a_bad_setting_is_refused_by_name(settings, message):
    # Given a destination block with one bad value (or unknown keys)
    # When it is built
    with pytest.raises(ConfigError) as err:
        build_destination({"type": "customer_profiles", "domain_name": D, **settings}, ph.session())
    # Then the error names the key and the rule, whole (the block's one check: its settings model)
    assert str(err.value) == f"destination settings: {message}"


@pytest.mark.parametrize(
    "settings, expect",
    [
        ({"data_expiry_days": 1, "refresh_before_expiry_days": 0}, ("data_expiry_days", 1)),
        ({"data_expiry_days": 1098}, ("data_expiry_days", 1098)),
        ({"refresh_before_expiry_days": 0}, ("refresh_before_expiry_days", 0)),
        ({"refresh_before_expiry_days": 13}, ("refresh_before_expiry_days", 13)),
        ({"max_job_mb": 0.5}, ("max_job_bytes", 500_000)),
        ({"max_job_mb": 1}, ("max_job_bytes", 1_000_000)),
        ({"max_job_mb": 1000}, ("max_job_bytes", 1_000_000_000)),
        ({"max_concurrent_jobs": 1}, ("max_concurrent_jobs", 1)),
        ({"max_concurrent_jobs": 10}, ("max_concurrent_jobs", 10)),
    ],
    ids=[
        "expiry-1",
        "expiry-1098",
        "margin-0",
        "margin-13",
        "job-mb-half",
        "job-mb-1",
        "job-mb-1000",
        "concurrency-1",
        "concurrency-10",
    ],
)
def test_values_at_the_limits_are_accepted(settings, expect):
    dest = build({"domain_name": D, **settings}, ph.session())
    assert getattr(dest, expect[0]) == expect[1]


def test_the_settings_table_lists_every_key_the_sync_reads():
    assert list(SETTINGS) == ["type", *KNOWN.split(", ")]


# --------------------------------------------------------------------------- trust store for the HTTPS upload
def test_the_upload_trusts_the_ca_bundle_of_the_aws_config(plain_env):
    config_with_ca_bundle(plain_env, "/etc/lakeseg/corporate-ca.pem")
    assert _ca_bundle(session()) == "/etc/lakeseg/corporate-ca.pem"
    assert _ca_bundle(botocore.session.Session()) == "/etc/lakeseg/corporate-ca.pem"


def test_the_upload_trusts_aws_ca_bundle_from_the_environment(plain_env, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/lakeseg/env-ca.pem")
    assert _ca_bundle(session()) == "/etc/lakeseg/env-ca.pem"
    # And a session-like object without botocore's configuration still honours the variable
    assert _ca_bundle(SimpleNamespace()) == "/etc/lakeseg/env-ca.pem"


def test_without_a_ca_bundle_the_system_trust_store_is_used(plain_env):
    assert _ca_bundle(session()) is True
    assert _ca_bundle(SimpleNamespace()) is True


# --------------------------------------------------------------------------- preflight
def test_preflight_reads_the_domain_and_lists_one_upload_job(fake, server, clock):
    destination(fake, server, clock).preflight()
    assert fake.calls == [("GetDomain", {"DomainName": D}), ("ListUploadJobs", {"DomainName": D, "MaxResults": 1})]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"domain_name": None}, "destination.domain_name is not set: the Customer Profiles domain to upload to"),
        ({"domain_name": "   "}, "destination.domain_name is not set: the Customer Profiles domain to upload to"),
        (
            {"domain_name": "bad name"},
            "destination.domain_name 'bad name' is not a domain name (1-64 letters, digits, _ or -)",
        ),
        (
            {"domain_name": "other-domain"},
            "destination.domain_name: no Customer Profiles domain other-domain in this region (ResourceNotFoundException); "
            "create it or fix destination.region",
        ),
        (
            {"unique_key_target": "AccountNumber"},
            "destination.unique_key_target must name a profile field such as _profile.AccountNumber, got 'AccountNumber'",
        ),
    ],
    ids=["unset", "blank", "malformed", "missing", "key-target-not-a-profile-field"],
)
def test_preflight_refuses_with_the_setting_named(fake, server, clock, change, message):
    with pytest.raises(ConfigError) as err:
        destination(fake, server, clock, **change).preflight()
    assert str(err.value) == message
    assert "CreateUploadJob" not in fake.ops()


@pytest.mark.parametrize("op", ["GetDomain", "ListUploadJobs"])
def test_preflight_denied_names_every_iam_action(fake, server, clock, op):
    fake.denied = {op}
    with pytest.raises(ConfigError) as err:
        destination(fake, server, clock).preflight()
    assert (
        str(err.value) == f"destination.domain_name: access denied to Customer Profiles domain {D}; the caller "
        f"needs {ACTIONS}"
    )


def test_preflight_unreachable_says_so(fake, server, clock):
    fake.unreachable = {"GetDomain"}
    with pytest.raises(ConfigError) as err:
        destination(fake, server, clock).preflight()
    assert str(err.value) == (
        f"destination.domain_name: cannot reach Customer Profiles domain {D}: Could not "
        'connect to the endpoint URL: "https://profile.us-east-1.amazonaws.com/"'
    )


def test_preflight_without_credentials_says_so(plain_env, monkeypatch):
    # Given no credentials anywhere (and no instance metadata to ask)
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    dest = CustomerProfilesDestination(domain_name=D, profiles=session().client("customer-profiles"), sleep=ph.Sleeps())
    with pytest.raises(ConfigError) as err:
        dest.preflight()
    assert str(err.value) == (
        "no AWS credentials for the customer_profiles destination (set a profile, role or AWS_* environment variables)"
    )


def test_a_throttled_preflight_is_retried_and_logged(fake, server, clock, caplog):
    fake.throttle("GetDomain", 1)
    caplog.set_level(logging.INFO, logger="sync.destinations")
    sleeps = ph.Sleeps()
    destination(fake, server, clock, sleep=sleeps).preflight()
    assert fake.ops() == ["GetDomain", "GetDomain", "ListUploadJobs"]
    assert sleeps.calls == [0.0]  # the backoff waits through the destination's sleep (base 0 s here)
    assert [r.getMessage() for r in caplog.records] == [
        "customer_profiles: get_domain (ThrottlingException); retry 1/8 in 0.0 s"
    ]


# --------------------------------------------------------------------------- the static check (lakeseg check)
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
    "prefix, name, problems",
    [
        ("", "clickers", []),
        ("lakeseg-", "clickers", []),
        (
            "",
            "has clicked",
            ["segment_name: [customer-profiles-name] 'has clicked' must be 1-64 letters, digits, _ or -"],
        ),
        (
            "lakeseg ",
            "clickers",
            ["segment_name: [customer-profiles-name] 'lakeseg clickers' must be 1-64 letters, digits, _ or -"],
        ),
        (
            "p" * 60,
            "clickers",
            [f"segment_name: [customer-profiles-name] '{'p' * 60}clickers' must be 1-64 letters, digits, _ or -"],
        ),
    ],
    ids=["plain", "prefixed", "space-in-name", "space-in-prefix", "prefix-makes-it-too-long"],
)
def test_check_segment_names_a_segment_definition_name_it_cannot_create(fake, server, clock, prefix, name, problems):
    dest = destination(fake, server, clock, segment_name_prefix=prefix)
    assert dest.check_segment(segment("Id", "User.UserAttributes.HasClicked", segment_name=name)) == problems


def test_check_segment_names_fields_without_a_target_and_uses_the_key_target(fake, server, clock):
    dest = destination(fake, server, clock, unique_key_target="_profile.Attributes.LoyaltyId")
    assert dest.check_segment(segment("Id", "Demographic.Timezone", "Attributes.LoyaltyId")) == [
        "Demographic.Timezone: [customer-profiles-field] Customer Profiles has no target for it (see the field "
        "mapping in docs/customer-profiles.md)",
        "Attributes.LoyaltyId: [customer-profiles-field] maps to the same Customer Profiles column 'LoyaltyId' as Id",
    ]
    assert fake.calls == []


def test_throttling_past_max_retries_gives_up(fake, server, clock):
    # Given a destination allowed 2 retries and a domain read throttled 3 times
    fake.throttle("GetDomain", 3)
    sleeps = ph.Sleeps()
    # When preflight runs
    with pytest.raises(ConfigError) as err:
        destination(fake, server, clock, max_retries=2, sleep=sleeps).preflight()
    # Then it stops after the third answer and says why
    assert str(err.value) == f"destination.domain_name: cannot reach Customer Profiles domain {D}: ThrottlingException"
    assert fake.ops() == ["GetDomain"] * 3 and len(sleeps.calls) == 2


@pytest.mark.parametrize(
    ("expiry", "margin", "words"),
    [
        pytest.param(
            14, 14, "refresh_before_expiry_days must be at least 0 and less than", id="margin-equal-to-expiry"
        ),
        pytest.param(14, -1, "refresh_before_expiry_days must be at least 0 and less than", id="negative-margin"),
        pytest.param(0, 0, "data_expiry_days must be between", id="expiry-below-its-range"),
    ],
)
def test_a_destination_built_without_its_settings_model_checks_expiry_and_margin(expiry, margin, words):
    # Given expiry settings handed to the destination directly (not through lakeseg.yml), then bad ones are refused
    from sync.core.errors import ConfigError
    from sync.destinations.customer_profiles import _expiry

    with pytest.raises(ConfigError, match=words) as refused:
        _expiry(expiry, margin)
    assert f"got {margin!r}" in str(refused.value) or f"got {expiry!r}" in str(refused.value)
    assert str(refused.value).startswith(f"destination.{words}")
    assert _expiry(14, 13) == (14, 13) and _expiry(14, 0) == (14, 0)


def test_a_job_bound_past_lakesegs_own_names_it_when_built_directly():
    with pytest.raises(ConfigError) as refused:
        CustomerProfilesDestination(domain_name=D, profiles=ph.client(), max_concurrent_jobs=11)
    assert str(refused.value) == (
        "destination.max_concurrent_jobs must be between 1 and 10 (lakeseg's bound on upload jobs at once), got 11"
    )
