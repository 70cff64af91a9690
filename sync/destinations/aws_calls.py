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

import logging
import random
import time
from collections.abc import Callable, Collection
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

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
    """Call with exponential backoff and full jitter on throttling (and 5xx when safe to repeat)."""

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
        attempt = 0
        while True:
            try:
                return call(**kwargs)
            except ClientError as exc:
                code = error_code(exc)
                retryable = code in THROTTLING or http_status(exc) == 429 or (retry_transient and is_transient(exc))
                attempt += 1
                if not retryable or attempt > self.max_retries:
                    raise
                delay = random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))
                self.retries += 1
                log.info(
                    "%s: %s (%s); retry %d/%d in %.1f s",
                    self.label,
                    getattr(call, "__name__", "call"),
                    code,
                    attempt,
                    self.max_retries,
                    delay,
                )
                self.sleep(delay)


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
    """Fetch a status until ``finished(status)`` or ``timeout`` seconds pass: (last status, finished?)."""
    deadline = clock() + timeout
    while True:
        status = fetch()
        if finished(status):
            return status, True
        if tick:
            tick()
        if clock() >= deadline:
            return status, False
        sleep(interval)


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
