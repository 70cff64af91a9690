"""Bad command lines and unexpected failures: the documented exit code, a message naming the
option, never a traceback at default verbosity; logs raise lakeseg's own loggers only, and AWS
wire logs appear only on request, with credentials masked."""

from __future__ import annotations

import logging

import boto3
import pytest

from tests.bad_inputs.conftest import no_traceback

CLI_CASES = [
    # (id, lakeseg arguments after the shared ones, exit code, words in the message)
    ("unknown-option", ("sync", "--no-such-flag"), 2, ["--no-such-flag"]),
    ("select-matches-nothing", ("sync", "--select", "seg_nope*"), 0, ["--select seg_nope*", "matches no segment"]),
    ("exit-share-above-one", ("sync", "--max-exit-share", "1.5"), 2, ["--max-exit-share"]),
    ("exit-share-not-a-number", ("plan", "--max-exit-share", "lots"), 2, ["--max-exit-share", "lots"]),
    ("unknown-dbt-target", ("sync", "--target", "nope"), 2, ["no target 'nope'"]),
    ("history-limit-zero", ("history", "--limit", "0"), 2, ["--limit"]),
    ("unlock-without-segment", ("unlock", "--destination", "files"), 2, ["--segment"]),
]


@pytest.mark.e2e
@pytest.mark.parametrize("args,code,words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_lines(corpus, args, code, words):
    out = corpus.invoke(*args)
    assert out.exit_code == code, out.output
    for word in words:
        assert word in out.output, out.output
    assert no_traceback(out)
    corpus.assert_nothing_sent()
    corpus.assert_nothing_committed()


def test_settings_file_that_does_not_exist(unbuilt, tmp_path):
    unbuilt.settings = tmp_path / "missing.yml"
    out = unbuilt.sync("seg_ok")
    assert out.exit_code == 2 and "missing.yml" in out.stderr and "does not exist" in out.stderr


def test_settings_file_that_is_a_directory(unbuilt, tmp_path):
    unbuilt.settings = tmp_path
    out = unbuilt.sync("seg_ok")
    assert out.exit_code == 2 and "--settings" in out.stderr and "directory" in out.stderr


def test_settings_file_that_is_not_utf8(unbuilt):
    unbuilt.settings.write_bytes(b"targets:\n  local:\n    state: \xff\xfe\n")
    out = unbuilt.sync("seg_ok")
    assert out.exit_code == 2 and str(unbuilt.settings) in out.stderr and no_traceback(out), out.output


def test_project_dir_without_dbt_project(unbuilt, tmp_path):
    out = unbuilt.sync("seg_ok", project=tmp_path)
    assert out.exit_code == 2 and "dbt_project.yml" in out.stderr and no_traceback(out)


def test_lake_generate_refuses_zero_endpoints(tmp_path):
    from click.testing import CliRunner

    from sync.cli import main

    result = CliRunner().invoke(main, ["lake", "generate", "--path", str(tmp_path / "lake"), "--endpoints", "0"])
    assert result.exit_code == 2 and "--endpoints" in result.output
    assert not (tmp_path / "lake").exists()


# ---- the top-level boundary ---------------------------------------------------------------
@pytest.fixture
def crashing(monkeypatch):
    """A bug nobody foresaw, deep inside the library."""
    import sync.app.wiring

    def boom(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(sync.app.wiring, "run_sync", boom)


def test_an_unexpected_error_is_one_line_and_exit_1(unbuilt, crashing):
    out = unbuilt.invoke("sync")
    assert out.exit_code == 1
    assert out.stderr.strip().splitlines() == [
        "Error: unexpected RuntimeError: something nobody foresaw (run with -v for the traceback)"
    ]
    assert no_traceback(out)


def test_verbose_shows_the_traceback(unbuilt, crashing):
    out = unbuilt.invoke("sync", root_args=("-v",))
    assert out.exit_code == 1
    assert "Traceback (most recent call last)" in out.stderr and "RuntimeError" in out.stderr


# ---- logging ------------------------------------------------------------------------------
FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FAKE_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKENvalue/with+chars=="


@pytest.fixture
def s3_state(monkeypatch):
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_SESSION_TOKEN": FAKE_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="corpus-state")
        yield "s3://corpus-state/lakeseg/state"


def test_vv_raises_only_lakesegs_own_loggers(unbuilt, s3_state):
    root_level = logging.getLogger().level
    out = unbuilt.invoke("history", "--state", s3_state, root_args=("-vv",))
    assert out.exit_code == 0, out.output
    assert logging.getLogger("sync").level == logging.DEBUG
    assert logging.getLogger().level == root_level
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.WARNING
    assert "botocore" not in out.stderr and FAKE_TOKEN not in out.output


def test_debug_aws_logs_the_wire_with_credentials_masked(unbuilt, s3_state):
    out = unbuilt.invoke("history", "--state", s3_state, root_args=("--debug-aws",))
    assert out.exit_code == 0, out.output
    assert "botocore" in out.stderr  # the wire log is there...
    assert "X-Amz-Security-Token" in out.stderr or "Authorization" in out.stderr
    for secret in (FAKE_TOKEN, FAKE_KEY_ID, FAKE_SECRET):  # ...without the credentials
        assert secret not in out.output


@pytest.mark.parametrize(
    "text",
    [
        "headers={'X-Amz-Security-Token': b'%s', 'Authorization': b'AWS4-HMAC-SHA256 Credential=%s/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc123'}",
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=%s%%2F2026&X-Amz-Security-Token=%s&X-Amz-Signature=ff",
        "aws_access_key_id = %s aws_session_token = %s",
    ],
    ids=["header-dump", "presigned-url", "config-dump"],
)
def test_redaction_masks_tokens_and_key_ids(text):
    from sync.output.logs import redact

    line = text % ((FAKE_TOKEN, FAKE_KEY_ID) if text.startswith("headers") else (FAKE_KEY_ID, FAKE_TOKEN))
    cleaned = redact(line)
    assert FAKE_TOKEN not in cleaned and FAKE_KEY_ID not in cleaned and "***" in cleaned
