"""The secret key of the value digest.

A snapshot keeps, per member, the Id and a 64-bit digest of the exported
values -- enough to tell what changed, and never the values. Unkeyed, such a
digest can be reversed by trying likely values (a dictionary attack), so the
digest is keyed: MD5 over a subkey derived from the key and a hash of the
values (``sync.run.diff.digest_sql``). The key never enters the state store; only a fingerprint of it does
(part of the mapping hash), so a changed key is noticed and answered with a
full send.

``digest_key`` in lakeseg.yml names where the key comes from:

- ``secretsmanager:<secret id or ARN>`` -- AWS Secrets Manager (SecretString);
- ``ssm:<parameter name>`` -- AWS Systems Manager Parameter Store (decrypted);
- ``file:<path>`` -- a local file, created with 32 random bytes (0600) if missing;
- anything else -- the key itself (usually ``${LAKESEG_DIGEST_KEY}``), at least 16 characters.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sync.core import aws
from sync.core.errors import ConfigError

MIN_KEY_CHARS = 16


@dataclass(frozen=True)
class DigestKey:
    secret: str
    source: str  # where it came from, for messages (never the key)

    @property
    def fingerprint(self) -> str:
        """Identifies the key in the state store without revealing it."""
        return hashlib.sha256(b"lakeseg digest key id\0" + self.secret.encode()).hexdigest()[:12]

    def __repr__(self) -> str:  # never print the secret
        return f"DigestKey(source={self.source!r}, fingerprint={self.fingerprint})"


def resolve_digest_key(spec: str | None, session=None) -> DigestKey | None:
    if spec is None or str(spec).strip() == "":
        return None
    spec = str(spec).strip()
    if spec.startswith("file:"):
        return DigestKey(_file_key(Path(spec[5:])), spec)
    if spec.startswith("secretsmanager:"):
        name = spec[len("secretsmanager:") :]
        value = _aws_call(
            session, "secretsmanager", "get_secret_value", spec, "secretsmanager:GetSecretValue", SecretId=name
        ).get("SecretString")
        return _checked(value, spec)
    if spec.startswith("ssm:"):
        name = spec[len("ssm:") :]
        value = _aws_call(session, "ssm", "get_parameter", spec, "ssm:GetParameter", Name=name, WithDecryption=True)[
            "Parameter"
        ]["Value"]
        return _checked(value, spec)
    return _checked(spec, "digest_key")


def _checked(value, source: str) -> DigestKey:
    if not isinstance(value, str) or len(value) < MIN_KEY_CHARS:
        raise ConfigError(
            f"digest_key from {source} must be a secret of at least {MIN_KEY_CHARS} characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    return DigestKey(value, source)


def _file_key(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"digest_key file {path} cannot be read: {exc}") from exc
    return _checked(value, f"file:{path}").secret


def _aws_call(session, service: str, method: str, source: str, action: str, **kwargs) -> dict:
    from botocore.exceptions import BotoCoreError, ClientError

    if session is None:
        session = aws.session()
    try:
        return getattr(session.client(service), method)(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise ConfigError(f"digest_key {source}: {code or exc} (the runner needs {action} on it)") from exc
    except BotoCoreError as exc:
        raise ConfigError(f"digest_key {source}: {exc}") from exc
