"""The digest key from AWS: Secrets Manager (moto), as the athena target's default names it."""

from __future__ import annotations

import boto3
import pytest

from sync.core.errors import ConfigError
from sync.run.digest_key import resolve_digest_key


def test_given_the_key_in_secrets_manager_when_resolved_then_it_is_the_secret_string(aws):
    # Given the secret the athena target falls back to
    boto3.client("secretsmanager").create_secret(Name="lakeseg/digest-key", SecretString="k" * 64)
    # When lakeseg resolves its digest_key setting
    key = resolve_digest_key("secretsmanager:lakeseg/digest-key", boto3.Session())
    # Then the key is the secret's string, and only its source is ever shown
    assert key.secret == "k" * 64 and "kkkk" not in repr(key)


def test_given_no_such_secret_when_resolved_then_the_error_names_the_source_and_the_permission(aws):
    with pytest.raises(ConfigError, match=r"secretsmanager:lakeseg/digest-key.*secretsmanager:GetSecretValue"):
        resolve_digest_key("secretsmanager:lakeseg/digest-key", boto3.Session())
