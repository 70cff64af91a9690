"""AWS calls as every platform destination makes them: classified errors, backoff, polling, preflight.

Shared by ``pinpoint`` and ``customer_profiles``:

- ``error_code`` / ``http_status`` read a ``ClientError``; ``THROTTLING``,
  ``TRANSIENT``, ``NOT_FOUND`` and ``DENIED`` classify it;
- ``Retrier`` repeats a call with exponential backoff and full jitter on
  throttling (always safe: the service refused before doing anything) and on
  server errors only when the call is safe to repeat -- a create call that
  starts platform work passes ``retry_transient=False`` and looks for what it
  may have created instead (at most once);
- ``poll`` asks for a job's status until it is final or the deadline passes;
- ``preflight_error`` turns a failed preflight call into a ``ConfigError``
  naming the setting and the IAM action.

SDK-level retries are off on these clients (``client_config``): a create call
repeated by botocore after a 5xx could start a second job.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

import botocore.session
import tenacity
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.paginate import Paginator

from sync.core.errors import ConfigError

Status = TypeVar("Status")  # what a poll fetches: a job's description, a list of jobs in flight

log = logging.getLogger(__name__)

THROTTLING = {"TooManyRequestsException", "ThrottlingException", "Throttling", "TooManyRequests"}
TRANSIENT = {
    "InternalServerErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServerError",
}
NOT_FOUND = {"NoSuchBucket", "404", "NotFound", "NoSuchKey", "ResourceNotFoundException", "NotFoundException"}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "403",
    "Forbidden",
    "ForbiddenException",
    "UnauthorizedOperation",
    "AllAccessDisabled",
}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_denied(exc: ClientError) -> bool:
    return error_code(exc) in DENIED or http_status(exc) == 403


def is_transient(exc: ClientError) -> bool:
    return error_code(exc) in TRANSIENT or http_status(exc) >= 500


def client_config():
    """botocore Config for platform clients: no SDK retries (see the module doc)."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1}, user_agent_extra="lakeseg")


class Retrier:
    """Call with exponential backoff and full jitter on throttling (and 5xx when safe to repeat).

    tenacity runs the loop: the delay before retry n is drawn from [0, min(cap, base x 2^(n-1))]
    (``wait_random_exponential``), at most ``max_retries`` retries, then the last error is raised as it was.
    """

    def __init__(
        self,
        *,
        label: str,
        max_retries: int = 8,
        base_seconds: float = 0.5,
        cap_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.label = label
        self.max_retries = int(max_retries)
        self.base_seconds = float(base_seconds)
        self.cap_seconds = float(cap_seconds)
        self.sleep = sleep
        self.retries = 0  # retries made, all calls together (for tests and reports)

    def __call__(self, call: Callable[..., dict], retry_transient: bool = True, **kwargs) -> dict:
        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, ClientError):
                return False
            return (
                error_code(exc) in THROTTLING or http_status(exc) == 429 or bool(retry_transient and is_transient(exc))
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._backoff,
            sleep=self.sleep,
            before_sleep=lambda state: self._note(call, state),
            reraise=True,
        )
        return retrying(call, **kwargs)

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        # tenacity asks for the wait before it asks whether to stop: no draw for the attempt that gives up.
        if state.attempt_number > self.max_retries:
            return 0.0
        return self._jitter(state)

    @property
    def _jitter(self) -> tenacity.wait.wait_random_exponential:
        return tenacity.wait_random_exponential(multiplier=self.base_seconds, max=self.cap_seconds)

    def _note(self, call: Callable[..., dict], state: tenacity.RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        log.info(
            "%s: %s (%s); retry %d/%d in %.1f s",
            self.label,
            getattr(call, "__name__", "call"),
            error_code(exc) if isinstance(exc, ClientError) else "",
            state.attempt_number,
            self.max_retries,
            state.upcoming_sleep,
        )


def poll(
    fetch: Callable[[], Status],
    finished: Callable[[Status], bool],
    *,
    interval: float,
    timeout: float,
    sleep: Callable[[float], None],
    tick: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Status, bool]:
    """Fetch a status until ``finished(status)`` or ``timeout`` seconds pass: (last status, finished?).

    tenacity runs the loop: fetch, ``tick`` after a status that is not final, give up once ``clock``
    reaches the deadline, else sleep ``interval``.
    """
    deadline = clock() + timeout

    def check() -> tuple[Status, bool]:
        status = fetch()
        return status, finished(status)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda checked: not checked[1]),
        stop=lambda _state: clock() >= deadline,
        wait=tenacity.wait_fixed(interval),
        after=(lambda _state: tick()) if tick else tenacity.after_nothing,
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
    )
    return retrying(check)


def pages(client: Any, method: str, retrying: Retrier, page_size: int, **params) -> Iterator[dict]:
    """The pages of a listing, through the service model's paginator; each page's call goes through ``retrying``.

    botocore's paginator follows the tokens (and refuses a token that comes back, which a hand loop would
    follow forever); the clients make one attempt (see the module doc), so a throttled page is retried here.
    """
    model = client.meta.service_model
    operation = client.meta.method_to_api_mapping[method]
    config = _paginators(model.service_name, model.api_version).get_paginator(operation)
    call = getattr(client, method)
    retried: Any = lambda **kwargs: retrying(call, **kwargs)  # noqa: E731 - the stubs type it as a str
    paginator: Paginator[dict] = Paginator(retried, config, model.operation_model(operation))
    return iter(paginator.paginate(**params, PaginationConfig={"PageSize": page_size}))


@functools.cache
def _paginators(service: str, api_version: str) -> Any:
    """botocore's paginator model of a service (loaded once)."""
    return botocore.session.get_session().get_paginator_model(service, api_version)


def preflight_error(
    exc: Exception,
    *,
    setting: str,
    what: str,
    actions: str,
    missing: Collection[str] = frozenset(),
    missing_message: str = "",
    platform: str = "",
) -> ConfigError:
    """A preflight call failed: the ConfigError that names the setting and, when denied, the IAM actions.

    ``missing_message`` (formatted with ``code``) says what a code in ``missing`` means.
    """
    if isinstance(exc, NoCredentialsError):
        return ConfigError(
            f"no AWS credentials for the {platform or 'platform'} destination (set a profile, role "
            "or AWS_* environment variables)"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in missing:
            text = missing_message.format(code=code) if missing_message else f"{what} does not exist ({code})"
            return ConfigError(f"destination.{setting}: {text}")
        if is_denied(exc):
            return ConfigError(f"destination.{setting}: access denied to {what}; the caller needs {actions}")
        return ConfigError(f"destination.{setting}: cannot reach {what}: {code or exc}")
    if isinstance(exc, BotoCoreError):
        return ConfigError(f"destination.{setting}: cannot reach {what}: {exc}")
    raise exc
