"""Linters over the stack and the state machine: cfn-lint, statelint, checkov.

Each linter also gets a deliberately broken copy, so these tests fail when a
linter stops looking (a missing binary, a rule switched off), not only when the
files get worse.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import h

BIN = Path(sys.executable).parent
CHECKOV = Path(os.environ.get("LAKESEG_CHECKOV") or h.REPO / ".tools" / "checkov" / "bin" / "checkov")


def run(*cmd, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, check=False)


def test_statelint_accepts_the_import_tail():
    # when statelint checks the ASL file
    proc = run(BIN / "statelint", h.ASL_PATH)

    # then it has nothing to say
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("breakage", ["dangling-next", "retry-without-errors"])
def test_statelint_rejects_a_broken_copy(tmp_path, breakage):
    # given a copy of the ASL with one mistake
    asl = json.loads(h.ASL_PATH.read_text())
    if breakage == "dangling-next":
        asl["States"]["WaitForJob"]["Next"] = "NoSuchState"
    else:
        asl["States"]["CreateImportJob"]["Retry"][0].pop("ErrorEquals")
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(asl))

    # when statelint checks it, then it fails and names the problem
    proc = run(BIN / "statelint", broken)
    assert proc.returncode != 0
    assert ("NoSuchState" if breakage == "dangling-next" else "ErrorEquals") in proc.stdout + proc.stderr


def test_cfn_lint_accepts_the_template_and_rejects_a_broken_copy(tmp_path):
    # given the template and a copy whose state machine role does not exist
    text = h.TEMPLATE_PATH.read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("RoleArn: !GetAtt StateMachineRole.Arn", "RoleArn: !GetAtt NoSuchRole.Arn"))
    assert broken.read_text() != text

    # when cfn-lint checks both in one run (it takes seconds to start)
    proc = run(BIN / "cfn-lint", "--format", "parseable", h.TEMPLATE_PATH, broken)
    out = proc.stdout + proc.stderr

    # then only the broken copy has findings
    findings = [line for line in out.splitlines() if line.strip()]
    assert findings, "cfn-lint found nothing in the broken copy"
    assert all(str(broken) in line for line in findings), out
    assert any("NoSuchRole" in line for line in findings), out


def runner_on(text: str) -> str:
    """The template with the scheduled runner, the GitHub role and the digest key secret on."""
    out = re.sub(r'(  ScheduledRunner:\n(?:    .*\n)*?    Default: )"false"', r'\1"true"', text)
    out = re.sub(r'(  GitHubRepository:\n(?:    .*\n)*?    Default: )""', r'\1"octo/segments"', out)
    out = re.sub(
        r'(  DigestKeySecretArn:\n(?:    .*\n)*?    Default: )""',
        r'\1"arn:aws:secretsmanager:us-east-1:123456789012:secret:lakeseg/digest-AbCdEf"',
        out,
    )
    out = re.sub(
        r'(  RunnerExtraPolicyArns:\n(?:    .*\n)*?    Default: )""',
        r'\1"arn:aws:iam::123456789012:policy/athena-lake"',
        out,
    )
    assert re.search(r'  ScheduledRunner:\n(?:    .*\n)*?    Default: "true"', out)
    assert "octo/segments" in out and "athena-lake" in out and "lakeseg/digest" in out
    return out


def test_cfn_lint_accepts_the_template_with_the_runners_on_and_rejects_a_broken_runner(tmp_path):
    # given the template with every runner on, and a copy whose schedule starts a project that does not exist
    on = runner_on(h.TEMPLATE_PATH.read_text())
    (tmp_path / "runners_on.yaml").write_text(on)
    broken = on.replace(
        "Action: codebuild:StartBuild\n                Resource: !GetAtt RunnerProject.Arn",
        "Action: codebuild:StartBuild\n                Resource: !GetAtt NoSuchProject.Arn",
    )
    assert broken != on
    (tmp_path / "broken_runner.yaml").write_text(broken)

    # when cfn-lint checks both
    proc = run(BIN / "cfn-lint", "--format", "parseable", tmp_path / "runners_on.yaml", tmp_path / "broken_runner.yaml")
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]

    # then only the broken copy has findings, naming the missing resource
    assert findings and all("broken_runner.yaml" in line for line in findings), findings
    assert any("NoSuchProject" in line for line in findings), findings


def _checkov_variants(tmp_path: Path) -> dict[str, Path]:
    """The template as shipped, with every option on, and a copy that breaks a rule."""
    text = h.TEMPLATE_PATH.read_text()
    all_on = text.replace(
        '    AllowedValues: ["true", "false"]\n    Default: "false"',
        '    AllowedValues: ["true", "false"]\n    Default: "true"',
    )
    all_on = re.sub(
        r'(  KmsKeyArn:\n(?:    .*\n)*?    Default: )""',
        r'\1"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"',
        all_on,
    )
    all_on = runner_on(all_on)
    all_on = re.sub(r"(  Destination:\n(?:    .*\n)*?    Default: )customer_profiles", r"\1pinpoint", all_on)
    all_on = re.sub(r'(  PinpointProjectId:\n(?:    .*\n)*?    Default: )""', r'\1"0123456789abcdef"', all_on)
    assert "Default: pinpoint" in all_on
    broken = text.replace("      KmsMasterKeyId: !If [UseCmk, !Ref KmsKeyArn, !Ref TopicKey]\n", "")
    assert all_on != text and broken != text
    out = {}
    for name, body in {"shipped": text, "all_options": all_on, "broken": broken}.items():
        (tmp_path / f"{name}.yaml").write_text(body)
        out[name] = tmp_path / f"{name}.yaml"
    return out


def test_checkov_passes_the_template_and_catches_a_broken_copy(tmp_path):
    if not CHECKOV.exists():
        if os.environ.get("LAKESEG_CHECKOV"):
            pytest.fail(f"LAKESEG_CHECKOV={CHECKOV} does not exist")
        pytest.skip(f"checkov is not installed at {CHECKOV} (run `make tools`)")
    # given the shipped template, the same with the optional bucket and CMK on, and a broken copy
    _checkov_variants(tmp_path)

    # when checkov scans them (one process; it takes seconds to start)
    proc = run(CHECKOV, "-d", tmp_path, "--framework", "cloudformation", "--skip-download", "-o", "json")
    report = json.loads(proc.stdout)
    failed = {(Path(r["file_path"]).stem, r["check_id"]) for r in report["results"]["failed_checks"]}
    scanned = {(Path(r["file_path"]).stem, r["resource"]) for r in report["results"]["passed_checks"]}

    # then only the broken copy fails (the unencrypted topic), and every resource was looked at
    assert failed == {("broken", "CKV_AWS_26")}, failed
    assert ("all_options", "AWS::S3::Bucket.ImportBucket") in scanned
    for resource in ("AWS::SNS::Topic.Topic", "AWS::IAM::ManagedPolicy.RunnerPolicy"):
        assert ("shipped", resource) in scanned
    for resource in ("AWS::IAM::Role.ImportRole", "AWS::Athena::WorkGroup.QueryWorkGroup"):
        assert ("all_options", resource) in scanned, resource
    for resource in (
        "AWS::CodeBuild::Project.RunnerProject",
        "AWS::IAM::Role.RunnerRole",
        "AWS::IAM::Role.GitHubRunnerRole",
        "AWS::Logs::LogGroup.RunnerLogGroup",
    ):
        assert ("all_options", resource) in scanned or ("all_options", resource) in {
            (Path(r["file_path"]).stem, r["resource"]) for r in report["results"]["skipped_checks"]
        }, resource
    skipped = {(Path(r["file_path"]).stem, r["check_id"]) for r in report["results"]["skipped_checks"]}
    assert ("all_options", "CKV_AWS_18") in skipped  # justified inline in the template
