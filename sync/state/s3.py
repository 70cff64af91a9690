"""State under an s3://bucket/prefix, through boto3 (DuckDB here has no httpfs).

A PutObject replaces an object atomically, so the snapshot pointer moves in
one step. Locks use S3's conditional write (``IfNoneMatch="*"``): of two
writers, only one creates the lock object; the run lease is renewed and taken
over with ``IfMatch`` on the ETag just compared (compare-and-swap). Every object is encrypted at rest
(SSE-S3, or SSE-KMS with a key id); boto3 talks HTTPS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import ClientError

from sync.core.errors import ConfigError
from sync.state.base import StateStore

_MISSING = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class S3StateStore(StateStore):
    def __init__(self, url: str, s3_client, kms_key_id: str | None = None):
        if not url.startswith("s3://"):
            raise ConfigError(f"state location {url!r} is not an s3:// URL")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise ConfigError(f"state location {url!r} names no bucket")
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.s3 = s3_client
        self.kms_key_id = kms_key_id

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _sse(self) -> dict:
        if self.kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    def _read(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def _write(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._sse())

    def _create(self, key: str, data: bytes) -> bool:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*", **self._sse())
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXISTS:
                return False
            raise

    def _delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _etag_if_unchanged(self, key: str, expected: bytes) -> str | None:
        """The object's ETag while it holds exactly ``expected``; None when it is gone or differs."""
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return got["ETag"] if got["Body"].read() == expected else None

    @staticmethod
    def _conditional(call: Callable[[], object]) -> bool:
        """A write or delete made with IfMatch: False when the object changed or went meanwhile."""
        try:
            call()
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXISTS | _MISSING:
                return False
            raise

    def _delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        etag = self._etag_if_unchanged(key, expected)
        # conditional delete: only the exact object we compared
        return etag is not None and self._conditional(
            lambda: self.s3.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=etag)
        )

    def _replace_if_unchanged(self, key: str, expected: bytes, data: bytes) -> bool:
        etag = self._etag_if_unchanged(key, expected)
        # conditional write: only over the exact object we compared
        return etag is not None and self._conditional(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=etag, **self._sse())
        )

    def _list(self, prefix: str) -> list[str]:
        out: list[str] = []
        start = len(self.prefix) + 1 if self.prefix else 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            out.extend(obj["Key"][start:] for obj in page.get("Contents", []))
        return out

    def _list_sized(self, prefix: str) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        start = len(self.prefix) + 1 if self.prefix else 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            out.extend((obj["Key"][start:], obj["ETag"], obj["Size"]) for obj in page.get("Contents", []))
        return out

    def _download_exact(self, key: str, path: Path, etag: str) -> bool:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(key), IfMatch=etag)["Body"]
            with open(path, "wb") as out:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    out.write(chunk)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING | _EXISTS:
                return False
            raise

    def _upload(self, key: str, path: Path) -> None:
        self.s3.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=self._sse())

    def _download(self, key: str, path: Path) -> bool:
        try:
            self.s3.download_file(self.bucket, self._key(key), str(path))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise
