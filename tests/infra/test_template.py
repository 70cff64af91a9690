"""infra/template.yaml: the definition it deploys is the ASL file, and its
permissions are the narrow ones the design promises."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cfnlint.decode import cfn_yaml

from .conftest import h

SYNC_SCRIPT = h.REPO / "infra" / "sync_definition.py"


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.loads(h.TEMPLATE_PATH.read_text())


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def plain(node):
    """cfn-lint's node classes → plain dicts/lists, for comparisons."""
    return json.loads(json.dumps(node))


def statements(resource: dict) -> list[dict]:
    props = resource["Properties"]
    if "PolicyDocument" in props:
        docs = [props["PolicyDocument"]]
    else:
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
    out = []
    for doc in docs:
        for st in doc["Statement"]:
            if "Fn::If" in st:  # conditional statement: [condition, statement, AWS::NoValue]
                st = st["Fn::If"][1]
            out.append(plain(st))
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_template_deploys_exactly_the_asl_file(template):
    # given the state machine in the template and the ASL file the tests execute
    deployed = plain(template["Resources"]["ImportTail"]["Properties"]["Definition"])

    # then they are the same document, and the sync script agrees
    assert deployed == json.loads(h.ASL_PATH.read_text())
    proc = subprocess.run([sys.executable, str(SYNC_SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_sync_script_notices_a_stale_template(tmp_path, monkeypatch):
    # given a template whose Definition block is out of date
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_definition", SYNC_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    stale = tmp_path / "template.yaml"
    stale.write_text(h.TEMPLATE_PATH.read_text().replace('"StartAt": "Prepare"', '"StartAt": "Elsewhere"'))
    monkeypatch.setattr(script, "TEMPLATE", stale)

    # when checked, then it fails; when synced, then it is current again
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0
    assert stale.read_text() == h.TEMPLATE_PATH.read_text()


def test_every_definition_substitution_is_filled_and_used(template):
    subs = template["Resources"]["ImportTail"]["Properties"]["DefinitionSubstitutions"]
    assert set(subs) == h.asl_placeholders(h.ASL_PATH.read_text())


def test_parameters_and_outputs_cover_what_the_cli_needs(template):
    assert {
        "PinpointProjectId",
        "BucketName",
        "ImportPrefix",
        "StatePrefix",
        "PollIntervalSeconds",
        "CreateBucket",
    } <= set(template["Parameters"])
    assert {
        "StateMachineArn",
        "ImportRoleArn",
        "TopicArn",
        "ImportS3Url",
        "StateUrl",
        "ApplicationId",
        "Region",
    } <= set(template["Outputs"])


def test_the_state_machine_role_can_do_only_the_import_tail(resources):
    # given the state machine's role
    role = resources["StateMachineRole"]
    sts = {st["Sid"]: st for st in statements(role)}
    project = "arn:${AWS::Partition}:mobiletargeting:${AWS::Region}:${AWS::AccountId}:apps/${PinpointProjectId}"

    # then Pinpoint: the two import calls on this project only
    pinpoint = sts["PinpointImportJobs"]
    assert sorted(pinpoint["Action"]) == ["mobiletargeting:CreateImportJob", "mobiletargeting:GetImportJob"]
    assert [r["Fn::Sub"] for r in pinpoint["Resource"]] == [
        project,
        f"{project}/jobs/import",
        f"{project}/jobs/import/*",
    ]
    # and it may pass only the import role, only to Pinpoint
    passrole = sts["PassImportRoleToPinpoint"]
    assert passrole["Action"] == "iam:PassRole"
    assert passrole["Resource"] == {"Fn::GetAtt": ["ImportRole", "Arn"]}
    assert "pinpoint.amazonaws.com" in passrole["Condition"]["StringEquals"]["iam:PassedToService"]
    # and publish only to its topic
    assert (sts["Notify"]["Action"], sts["Notify"]["Resource"]) == ("sns:Publish", {"Ref": "Topic"})
    # and nothing else takes "*" but log delivery and tracing (no resource-level permissions exist)
    for st in statements(role):
        if st["Resource"] == "*":
            assert all(a.startswith(("logs:", "xray:")) for a in as_list(st["Action"])), st
    trust = plain(role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0])
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}


def test_pinpoint_assumes_the_import_role_only_for_this_project_and_reads_only_the_prefix(resources):
    role = resources["ImportRole"]
    trust = plain(role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0])
    assert trust["Principal"] == {"Service": "pinpoint.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].endswith(":apps/${PinpointProjectId}")
    actions = {a for st in statements(role) for a in as_list(st["Action"])}
    assert actions == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    sts = {st["Sid"]: st for st in statements(role)}
    assert sts["ReadImportFiles"]["Resource"]["Fn::Sub"].endswith(":::${BucketName}/${ImportPrefix}/*")
    assert sts["ListImportPrefix"]["Condition"]["StringLike"]["s3:prefix"][0] == {"Fn::Sub": "${ImportPrefix}/*"}


def test_the_optional_bucket_is_private_encrypted_tls_only_and_forgets_import_files(resources, template):
    bucket = resources["ImportBucket"]
    assert bucket["Condition"] == "CreateTheBucket"
    props = plain(bucket["Properties"])
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert (
        "Fn::If" in props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    )
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-import-files"]["Prefix"] == {"Fn::Sub": "${ImportPrefix}/"}
    assert rules["expire-import-files"]["ExpirationInDays"] == {"Ref": "ImportRetentionDays"}
    deny = plain(resources["ImportBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0])
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_the_topic_is_encrypted_and_the_state_machine_logs_no_execution_data(resources):
    # A key alarms and EventBridge rules may use (they cannot use alias/aws/sns): the given CMK or the stack's.
    assert plain(resources["Topic"]["Properties"]["KmsMasterKeyId"]) == {
        "Fn::If": ["UseCmk", {"Ref": "KmsKeyArn"}, {"Ref": "TopicKey"}]
    }
    assert resources["TopicKey"]["Properties"]["EnableKeyRotation"] is True
    props = plain(resources["ImportTail"]["Properties"])
    assert props["StateMachineType"] == "STANDARD"  # execution names are unique for 90 days
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_polling_always_ends_inside_the_execution_limit(template):
    # Given the stack's bounds on the poll interval and the poll count, and the ASL's own bounds
    asl = json.loads(h.ASL_PATH.read_text())
    params = template["Parameters"]
    longest = params["PollIntervalSeconds"]["MaxValue"] * params["MaxPolls"]["MaxValue"]
    bounds = {
        c["Variable"].rsplit(".", 1)[-1]: c["NumericLessThanEquals"]
        for c in asl["States"]["ValidateInput"]["Choices"][0]["And"]
        if "NumericLessThanEquals" in c
    }
    # Then the longest polling any allowed value permits ends before the execution times out
    assert longest < asl["TimeoutSeconds"]
    assert bounds["PollSeconds"] * bounds["MaxPolls"] < asl["TimeoutSeconds"]
    # and by default an execution stops waiting before the scheduled runner's build is stopped
    build_seconds = params["RunnerTimeoutMinutes"]["Default"] * 60
    assert params["PollIntervalSeconds"]["Default"] * params["MaxPolls"]["Default"] < build_seconds


@pytest.mark.parametrize("destination", ["pinpoint", "customer_profiles"])
def test_the_runners_import_wait_ends_inside_the_build(template, destination):
    # Given the settings the stack's runner uses for a platform destination
    import yaml

    settings = yaml.safe_load((h.REPO / "infra" / "settings" / f"{destination}.yml").read_text())
    timeout = settings["targets"]["athena"]["destination"]["timeout"]
    # Then lakeseg gives up waiting for one import (and reports it) before CodeBuild kills the build
    assert timeout < template["Parameters"]["RunnerTimeoutMinutes"]["Default"] * 60
    # and the template's runner uses exactly these files
    assert "infra/settings/$LAKESEG_DESTINATION.yml" in (h.REPO / "infra" / "buildspec.yml").read_text()
    assert set(template["Parameters"]["Destination"]["AllowedValues"]) == {
        p.stem for p in (h.REPO / "infra" / "settings").glob("*.yml")
    }


def test_lakeseg_asks_for_no_more_polls_than_the_tail_allows():
    from sync.destinations.pinpoint import EXECUTION_LIMIT_SECONDS, MAX_POLLS

    asl = json.loads(h.ASL_PATH.read_text())
    assert EXECUTION_LIMIT_SECONDS == asl["TimeoutSeconds"]
    bounds = {
        c["Variable"].rsplit(".", 1)[-1]: c["NumericLessThanEquals"]
        for c in asl["States"]["ValidateInput"]["Choices"][0]["And"]
        if "NumericLessThanEquals" in c
    }
    assert MAX_POLLS == bounds["MaxPolls"]


@pytest.mark.parametrize(
    "endpoint, accepted",
    [
        pytest.param("", True, id="empty-no-subscription"),
        pytest.param("https://hooks.example.com/lakeseg?k=1", True, id="https-url"),
        pytest.param("http://hooks.example.com/lakeseg", False, id="plain-http-refused"),
        pytest.param("https://", False, id="no-host"),
    ],
)
def test_the_topic_can_route_its_events_to_an_https_endpoint_and_only_https(template, resources, endpoint, accepted):
    import re

    # Given the stack's optional alert endpoint
    param = template["Parameters"]["AlertHttpsEndpoint"]
    # Then it is hidden (a webhook URL may hold a secret) and only an https URL, or nothing, is accepted
    assert param["NoEcho"] is True and param["Default"] == ""
    assert bool(re.fullmatch(param["AllowedPattern"], endpoint)) is accepted
    # and a set endpoint subscribes to the topic over https, retried by SNS with backoff
    sub = plain(resources["AlertHttpsSubscription"])
    assert sub["Condition"] == "AlertHttpsOn"
    assert sub["Properties"]["Protocol"] == "https"
    assert sub["Properties"]["TopicArn"] == {"Ref": "Topic"}
    assert sub["Properties"]["Endpoint"] == {"Ref": "AlertHttpsEndpoint"}
    assert sub["Properties"]["DeliveryPolicy"]["healthyRetryPolicy"]["backoffFunction"] == "exponential"
