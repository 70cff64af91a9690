"""The one place lakeseg makes a boto3 session (callers that are given one use theirs: tests pass fakes)."""

from __future__ import annotations

from typing import Any


def session(region: str | None = None) -> Any:
    """A boto3 session: the environment's credentials and config, in ``region`` when one is named."""
    import boto3  # imported on use: the files destination on DuckDB never needs it

    return boto3.Session(region_name=region) if region else boto3.Session()
