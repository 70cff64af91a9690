"""RunnerAthenaPolicy: what dbt-athena and the segment reader need, and no more."""

from __future__ import annotations

import json

import botocore.session
import pytest
from cfnlint.decode import cfn_yaml

from .conftest import h


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads(json.dumps(cfn_yaml.loads(h.TEMPLATE_PATH.read_text())))


@pytest.fixture(scope="module")
def policy(template) -> list[dict]:
    res = template["Resources"]["RunnerAthenaPolicy"]
    assert res["Type"] == "AWS::IAM::ManagedPolicy" and res["Condition"] == "UseAthena"
    out = []
    for st in res["Properties"]["PolicyDocument"]["Statement"]:
        out.append(st["Fn::If"][1] if "Fn::If" in st else st)
    return out


def actions(st: dict) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def resources(st: dict) -> list:
    return st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]


def by_sid(policy, sid) -> dict:
    return next(st for st in policy if st["Sid"] == sid)


def test_dbt_athenas_glue_calls_are_allowed_on_the_model_databases_only(policy):
    # Given the statement that lets dbt build its tables
    st = by_sid(policy, "BuildModels")
    # Then it has the calls dbt-athena makes beyond the obvious ones
    assert {"glue:GetTableVersions", "glue:DeleteTableVersion", "glue:CreateDatabase"} <= set(actions(st))
    # and only on the catalog and the <prefix>, <prefix>_staging/_segments/_imports databases and their tables
    # (never <prefix>_*, which matches the ops database lakeseg_ops)
    subs = [
        r["Fn::Sub"].removeprefix("arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:") for r in resources(st)
    ]
    model = ["${ModelDatabasePrefix}"] + [f"${{ModelDatabasePrefix}}_{s}" for s in ("staging", "segments", "imports")]
    assert subs == ["catalog"] + [f"database/{m}" for m in model] + [f"table/{m}/*" for m in model]


def test_sources_are_read_only(policy):
    st = by_sid(policy, "ReadSources")
    assert all(a.split(":")[1].startswith(("Get", "BatchGet")) for a in actions(st))
    assert by_sid(policy, "ReadLake")["Action"] == "s3:GetObject"


def test_queries_run_in_one_work_group_and_writes_stay_under_the_two_prefixes(policy):
    assert by_sid(policy, "AthenaQueries")["Resource"]["Fn::Sub"].endswith(":workgroup/${QueryWorkGroup}")
    writes = by_sid(policy, "StagingAndTables")
    assert [r["Fn::Sub"] for r in resources(writes)] == [
        "arn:${AWS::Partition}:s3:::${BucketName}/${AthenaStagingPrefix}/*",
        "arn:${AWS::Partition}:s3:::${BucketName}/${AthenaDataPrefix}/*",
    ]


def test_no_statement_allows_everything(policy):
    # the one Deny keeps Glue writes off the ops database (tests/iam evaluates it)
    assert [st["Sid"] for st in policy if st["Effect"] != "Allow"] == ["NeverTheOpsDatabase"]
    for st in policy:
        if st["Effect"] != "Allow":
            continue
        assert "*" not in resources(st) and not any(a.endswith(":*") or a == "*" for a in actions(st)), st


@pytest.mark.parametrize("service", ["athena", "glue"])
def test_every_athena_and_glue_action_is_a_real_api_operation(policy, service):
    # botocore's service model lists the operations these IAM actions name
    operations = set(botocore.session.get_session().get_service_model(service).operation_names)
    named = {a.split(":")[1] for st in policy for a in actions(st) if a.startswith(service + ":")}
    assert named and named <= operations, named - operations


def test_lake_kms_key_is_used_through_s3_only(policy):
    st = by_sid(policy, "DecryptLake")
    assert st["Action"] == "kms:Decrypt"
    assert st["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"] == "s3.${AWS::Region}.amazonaws.com"


def test_the_stack_owns_the_work_group_with_a_scan_cutoff_and_its_results_under_the_staging_prefix(template):
    group = template["Resources"]["QueryWorkGroup"]
    assert group["Type"] == "AWS::Athena::WorkGroup" and group["Condition"] == "UseAthena"
    config = group["Properties"]["WorkGroupConfiguration"]
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoffPerQuery"}
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["ResultConfiguration"]["OutputLocation"] == {"Fn::Sub": "s3://${BucketName}/${AthenaStagingPrefix}/"}
    assert template["Parameters"]["AthenaBytesScannedCutoffPerQuery"]["MinValue"] >= 10_000_000


def test_unload_files_expire_after_a_day_even_if_a_run_is_killed(template):
    rules = template["Resources"]["ImportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    rule = next(r for r in rules if r["Id"] == "expire-athena-staging")
    assert rule["Prefix"] == {"Fn::Sub": "${AthenaStagingPrefix}/"} and rule["ExpirationInDays"] == 1


def test_athena_needs_the_lake_bucket(template):
    rule = template["Rules"]["AthenaNeedsTheLake"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableAthena"}, "true"]}
    assert template["Outputs"]["AthenaStagingDir"]["Value"] == {"Fn::Sub": "s3://${BucketName}/${AthenaStagingPrefix}/"}
