"""State: committed snapshots, in-doubt records, locks and run history, locally or on S3.

Imports only ``sync.core``.
"""

from __future__ import annotations

from sync.core import aws
from sync.state.base import LockInfo, Snapshot, StateStore
from sync.state.local import LocalStateStore


def open_state_store(url: str, *, s3_client=None, kms_key_id: str | None = None) -> StateStore:
    """``build/state``, ``/abs/dir`` or ``s3://bucket/prefix``."""
    if str(url).startswith("s3://"):
        from sync.state.s3 import S3StateStore

        if s3_client is None:
            s3_client = aws.session().client("s3")
        return S3StateStore(str(url), s3_client, kms_key_id)
    return LocalStateStore(url)


__all__ = ["LockInfo", "Snapshot", "StateStore", "open_state_store"]
