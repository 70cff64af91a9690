"""AWS calls as the platform destinations make them: error classes, backoff, polling, preflight messages."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from sync.core.errors import ConfigError
from sync.destinations import aws_calls
from sync.destinations.aws_calls import (
    Retrier,
    client_config,
    error_code,
    http_status,
    is_denied,
    is_transient,
    poll,
    preflight_error,
)


def client_error(code: str | None, status: int | None = None, op: str = "GetApp") -> ClientError:
    response: dict = {}
    if code is not None:
        response["Error"] = {"Code": code, "Message": "m"}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, op)


# ---- classifying errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc, code, status",
    [
        (client_error("AccessDenied", 403), "AccessDenied", 403),
        (client_error(None, None), "", 0),
        (ClientError({"ResponseMetadata": {"HTTPStatusCode": None}}, "op"), "", 0),
    ],
    ids=["both", "neither", "status-none"],
)
def test_code_and_status_are_read_from_the_response(exc, code, status):
    assert (error_code(exc), http_status(exc)) == (code, status)


@pytest.mark.parametrize(
    "exc, denied",
    [
        (client_error("AccessDeniedException", 400), True),
        (client_error("Whatever", 403), True),
        (client_error("Forbidden"), True),
        (client_error("ValidationException", 400), False),
    ],
    ids=["code", "status-403", "forbidden", "other"],
)
def test_denied_is_a_code_or_a_403(exc, denied):
    assert is_denied(exc) is denied


@pytest.mark.parametrize(
    "exc, transient",
    [
        (client_error("InternalServerErrorException", 400), True),
        (client_error("Whatever", 500), True),
        (client_error("Whatever", 503), True),
        (client_error("Whatever", 499), False),
        (client_error("BadRequestException", 400), False),
    ],
    ids=["code", "500", "503", "499", "client-error"],
)
def test_transient_is_a_code_or_any_5xx(exc, transient):
    assert is_transient(exc) is transient


def test_platform_clients_make_one_attempt_and_say_who_calls():
    config = client_config()
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.user_agent_extra == "lakeseg"


# ---- retrying ---------------------------------------------------------------------------------------------------
class Calls:
    def __init__(self, *errors):
        self.errors, self.kwargs = list(errors), []

    def __call__(self, **kwargs):
        self.kwargs.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return {"ok": True}


@pytest.fixture
def upper_bound(monkeypatch):
    """Full jitter draws from [0, bound]: record the bounds, sleep the bound itself."""
    bounds = []

    def uniform(low, high):
        assert low == 0
        bounds.append(high)
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    return bounds


@pytest.mark.parametrize(
    "error",
    [client_error("TooManyRequestsException", 400), client_error("Throttling"), client_error("Whatever", 429)],
    ids=["code", "throttling", "429"],
)
def test_throttling_is_retried_with_doubling_capped_backoff(upper_bound, error):
    slept = []
    call = Calls(*[error] * 5)
    retrier = Retrier(label="pinpoint", base_seconds=1.0, cap_seconds=5.0, sleep=slept.append)
    assert retrier(call, ApplicationId="app") == {"ok": True}
    assert upper_bound == [1.0, 2.0, 4.0, 5.0, 5.0] and slept == upper_bound
    assert retrier.retries == 5 and call.kwargs == [{"ApplicationId": "app"}] * 6


def test_retries_stop_after_the_limit_and_raise_the_last_error(upper_bound):
    slept = []
    call = Calls(*[client_error("ThrottlingException")] * 4)
    retrier = Retrier(label="x", max_retries=3, sleep=slept.append)
    with pytest.raises(ClientError) as raised:
        retrier(call)
    assert error_code(raised.value) == "ThrottlingException"
    assert len(call.kwargs) == 4 and len(slept) == 3 and retrier.retries == 3
    assert upper_bound == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("retry_transient, calls", [(True, 2), (False, 1)], ids=["safe-to-repeat", "create-call"])
def test_server_errors_are_retried_only_when_the_call_is_safe_to_repeat(upper_bound, retry_transient, calls):
    call = Calls(client_error("InternalServerErrorException", 500))
    retrier = Retrier(label="x", sleep=lambda s: None)
    if retry_transient:
        assert retrier(call, retry_transient=True) == {"ok": True}
    else:
        with pytest.raises(ClientError):
            retrier(call, retry_transient=False)
    assert len(call.kwargs) == calls


def test_other_errors_are_raised_at_once():
    call = Calls(client_error("ValidationException", 400))
    retrier = Retrier(label="x", sleep=lambda s: pytest.fail("no sleep"))
    with pytest.raises(ClientError):
        retrier(call)
    assert len(call.kwargs) == 1 and retrier.retries == 0


@pytest.mark.parametrize(
    "error",
    [ValueError("not an AWS error"), EndpointConnectionError(endpoint_url="https://x")],
    ids=["a-bug", "no-connection"],
)
def test_an_error_that_is_not_the_services_answer_is_never_retried(error):
    # Given a call that fails before any answer from the service (a bug, a connection that never opened)
    call = Calls(error)
    retrier = Retrier(label="x", sleep=lambda s: pytest.fail("no sleep"))
    # When it is made through the retrier, then it is raised at once, as it was
    with pytest.raises(type(error)):
        retrier(call)
    assert len(call.kwargs) == 1 and retrier.retries == 0


def test_the_retrier_defaults():
    r = Retrier(label="x")
    assert (r.max_retries, r.base_seconds, r.cap_seconds, r.sleep) == (8, 0.5, 30.0, aws_calls.time.sleep)


def test_a_retry_is_logged_with_call_code_and_count(upper_bound, caplog):
    def get_app(**kwargs):
        if not caplog.records:
            raise client_error("TooManyRequestsException")
        return {}

    with caplog.at_level("INFO", logger="sync.destinations.aws_calls"):
        Retrier(label="pinpoint", base_seconds=2, sleep=lambda s: None)(get_app)
    assert caplog.messages == ["pinpoint: get_app (TooManyRequestsException); retry 1/8 in 2.0 s"]


# ---- polling ------------------------------------------------------------------------------------------------------
def test_poll_fetches_until_finished_ticking_between_checks():
    statuses = iter(["RUNNING", "RUNNING", "DONE"])
    slept, ticks = [], []
    status, done = poll(
        lambda: next(statuses),
        lambda s: s == "DONE",
        interval=3,
        timeout=100,
        sleep=slept.append,
        tick=lambda: ticks.append(1),
        clock=lambda: 0.0,
    )
    assert (status, done) == ("DONE", True) and slept == [3, 3] and len(ticks) == 2


def test_poll_gives_up_at_the_deadline_with_the_last_status():
    now = [10.0]

    def sleep(s):
        # a poll that waited another interval or never gave up fails here at once, rather than looping forever
        assert s == 4 and now[0] < 100, (s, now[0])
        now[0] += s

    status, done = poll(lambda: "RUNNING", lambda s: False, interval=4, timeout=10, sleep=sleep, clock=lambda: now[0])
    assert (status, done) == ("RUNNING", False) and now[0] == 22.0  # checks at 10, 14, 18, 22


def test_poll_at_exactly_the_deadline_gives_up():
    now = [0.0]

    def sleep(s):
        assert s == 5 and now[0] < 100, (s, now[0])
        now[0] += s

    _, done = poll(lambda: "RUNNING", lambda s: False, interval=5, timeout=10, sleep=sleep, clock=lambda: now[0])
    assert not done and now[0] == 10.0


# ---- preflight messages -------------------------------------------------------------------------------------------
def fail(exc, **kw):
    args = {
        "setting": "application_id",
        "what": "Pinpoint project app-1",
        "actions": "mobiletargeting:GetApp",
        "platform": "pinpoint",
        **kw,
    }
    return str(preflight_error(exc, **args))


def test_no_credentials_say_where_credentials_come_from():
    assert fail(NoCredentialsError()) == (
        "no AWS credentials for the pinpoint destination (set a profile, role or AWS_* environment variables)"
    )
    unnamed = preflight_error(NoCredentialsError(), setting="s", what="w", actions="a")
    assert str(unnamed).startswith("no AWS credentials for the platform destination")


def test_a_missing_resource_names_the_setting():
    assert (
        fail(client_error("NotFoundException", 404), missing={"NotFoundException"})
        == "destination.application_id: Pinpoint project app-1 does not exist (NotFoundException)"
    )
    assert (
        fail(
            client_error("NotFoundException", 404),
            missing={"NotFoundException"},
            missing_message="no such project ({code})",
        )
        == "destination.application_id: no such project (NotFoundException)"
    )


def test_access_denied_names_the_iam_actions():
    assert fail(client_error("AccessDeniedException", 403)) == (
        "destination.application_id: access denied to Pinpoint project app-1; the caller needs mobiletargeting:GetApp"
    )


def test_other_errors_say_the_resource_cannot_be_reached():
    assert (
        fail(client_error("BadRequestException", 400))
        == "destination.application_id: cannot reach Pinpoint project app-1: BadRequestException"
    )
    assert fail(client_error(None, 400)).startswith("destination.application_id: cannot reach Pinpoint project app-1: ")
    assert fail(EndpointConnectionError(endpoint_url="https://x")) == (
        "destination.application_id: cannot reach Pinpoint project app-1: Could not connect to the endpoint URL: "
        '"https://x"'
    )


def test_anything_else_is_not_a_configuration_error():
    with pytest.raises(KeyError):
        preflight_error(KeyError("bug"), setting="s", what="w", actions="a")
    assert isinstance(preflight_error(NoCredentialsError(), setting="s", what="w", actions="a"), ConfigError)


def test_server_errors_are_retried_unless_the_caller_says_otherwise(upper_bound):
    call = Calls(client_error("ServiceUnavailable", 503))
    assert Retrier(label="x", sleep=lambda s: None)(call) == {"ok": True}
    assert len(call.kwargs) == 2


def test_a_retry_of_a_call_without_a_name_logs_it_as_call(upper_bound, caplog):
    with caplog.at_level("INFO", logger="sync.destinations.aws_calls"):
        Retrier(label="profiles", sleep=lambda s: None)(Calls(client_error("ThrottlingException")))
    assert caplog.messages == ["profiles: call (ThrottlingException); retry 1/8 in 0.5 s"]
