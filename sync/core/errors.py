"""Errors lakeseg raises. The CLI maps them to exit codes (see docs/cli.md)."""

import os


class LakesegError(Exception):
    """Base class: a message a user can act on."""

    exit_code = 1

    @property
    def public(self) -> str:
        """The message without anything that may quote data: what run history and reports may keep.

        lakeseg's own messages name settings, models, columns, rules, ids and counts, never attribute
        values; a subclass that carries someone else's text (a query engine's, a platform's) overrides this.
        """
        return str(self)


def public_reason(exc: BaseException) -> str:
    """What the state store, reports and alerts may say about ``exc``: never a message that may quote data.

    lakeseg's own errors say what they say (``LakesegError.public``); any other exception's text (DuckDB's, a
    platform's, an SDK's) may quote a value, so only its type is kept -- the caller logs the whole message at
    debug level.
    """
    if isinstance(exc, LakesegError):
        return exc.public
    if isinstance(exc, OSError) and exc.errno:  # the system's own words for the error number, never the file name
        return f"{type(exc).__name__}: [Errno {exc.errno}] {os.strerror(exc.errno)} (the path is in the local log at debug level)"
    return f"{type(exc).__name__} (its message is in the local log at debug level)"


class ConfigError(LakesegError):
    """A setting, profile or declaration is missing or invalid (exit code 2)."""

    exit_code = 2


class ArtifactError(ConfigError):
    """dbt artifacts are missing, stale or mismatched; says which dbt command to run."""


class SegmentRefused(LakesegError):
    """One segment cannot be synced (failed tests, mass exit, corrupt snapshot)."""


class LockHeld(LakesegError):
    """Another sync holds the (destination, segment) lock."""


class DeliveryFailed(LakesegError):
    """The destination did not confirm the delivery."""
