"""Errors lakeseg raises. The CLI maps them to exit codes (see docs/cli.md)."""


class LakesegError(Exception):
    """Base class: a message a user can act on."""

    exit_code = 1


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
