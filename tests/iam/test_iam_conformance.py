"""IAM conformance: every AWS call lakeseg makes in the tests is allowed to the principal that makes it.

Given the tests that drive lakeseg against AWS (moto, Stubber) -- the S3 state store, the Athena reader,
the Glue imports table, the Pinpoint destination in stack mode (Step Functions), the Customer
Profiles destination, the digest key from Secrets Manager, the outcome step's SNS and CloudWatch
calls -- run once more in a subprocess with the recorder on (tests/iam/recorder.py),
when each recorded call is mapped to its IAM requests in a deployment (tests/iam/actions.py) and
evaluated against the policies infra/template.yaml attaches to the principal (tests/iam/policy.py),
for one parameter set per destination and target,
then no request is denied; a grant no recorded call uses is written to build/iam/unused-*.txt.

Principals: the scheduled runner (CodeBuild ``RunnerRole``), the GitHub OIDC role
(``GitHubRunnerRole``), and a person running lakeseg by hand with the managed policies docs/pinpoint.md
tells them to attach (the stack's ``*PolicyArn`` outputs). The outcome step's calls (SNS, CloudWatch)
belong to the two runners only.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .actions import Deployment, codebuild_requests, describe, requests
from .cfn import Stack, load_template
from .policy import Request, evaluate

REPO = Path(__file__).resolve().parents[2]
REPORT_DIR = REPO / "build" / "iam"
RECORDED = [
    "tests/state/test_s3_state.py",
    "tests/state/test_run_lease.py",  # the run lease on S3 (moto): create, compare-and-swap, release
    "tests/athena/test_athena_reader.py",
    "tests/pushdown/test_lake_engine.py",  # the diff in Athena: its Glue tables, statements and state files
    "tests/sync/test_imports_table.py",
    "tests/destinations/test_pinpoint.py",
    "tests/destinations/test_customer_profiles.py",
    "tests/sync/test_digest_key_sources.py",
    "tests/infra/test_metrics.py",
]
ACCOUNT, REGION = "123456789012", "eu-west-1"
BASE = {
    "BucketName": "acme-lakeseg",
    "CreateBucket": "true",
    "ScheduledRunner": "true",
    "GitHubRepository": "acme/segments",
    "LakeBucket": "acme-lake",
    "BundleVersion": "v1",
}
CMK = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b7e3d8c-1111-2222-3333-444455556666"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lakeseg/digest-key-AbCdEf"
DESTINATIONS = {
    "customer_profiles": {"Destination": "customer_profiles", "CustomerProfilesDomainName": "acme-profiles"},
    "pinpoint": {"Destination": "pinpoint", "PinpointProjectId": "0123456789abcdef0123456789abcdef"},
    "files": {"Destination": "files"},
}
TARGETS = {
    # athena: every optional feature on (a CMK for the bucket, the digest key from a secret)
    "athena": {"EnableAthena": "true", "KmsKeyArn": CMK, "DigestKeySecretArn": SECRET},
    "duckdb": {"EnableAthena": "false"},
}
PARAMETER_SETS = {f"{d}-{t}": {**BASE, **dp, **tp} for d, dp in DESTINATIONS.items() for t, tp in TARGETS.items()}
PRINCIPALS = ["codebuild", "github", "by_hand"]


def components(destination: str, target: str, principal: str) -> set[str]:
    out = {"state", "digest"}
    if principal != "by_hand":
        out.add("outcome")  # the runners' `python -m sync.output.outcome` step
    if target == "athena":
        out.add("athena_reader")
        if destination != "customer_profiles":  # its data expires: it diffs on the runner (sync/run/pushdown)
            out.add("lake_diff")
        if destination == "pinpoint":
            out.add("glue_imports")  # registered after Pinpoint deliveries only (runtime.build_imports_table)
    if destination in ("pinpoint", "customer_profiles"):
        out.add(destination)
    return out


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> list[dict]:
    """Every call lakeseg made in RECORDED (LAKESEG_IAM_CALLS=<dir> reuses an earlier recording).

    Recorded once per test session, never reused from another: under xdist the workers share a folder
    named for this session's run (PYTEST_XDIST_TESTRUNUID, beside their base temps), and the first to
    take the lock records while the others wait for it; without xdist the session's own base temp.
    """
    folder = os.environ.get("LAKESEG_IAM_CALLS")
    if not folder:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        base = tmp_path_factory.getbasetemp()
        shared = base.parent / f"iam-calls-{run}" if run else base / "iam-calls"
        shared.mkdir(exist_ok=True)
        with open(shared / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (shared / ".done").exists():
                record(shared)
                (shared / ".done").touch()
        folder = str(shared)
    out = []
    for file in sorted(Path(folder).glob("calls-*.jsonl")):
        out.extend(json.loads(line) for line in file.read_text().splitlines())
    return out


def record(folder: Path) -> None:
    env = {**os.environ, "LAKESEG_IAM_RECORD": str(folder)}
    for key in [k for k in env if k.startswith("PYTEST_")]:
        env.pop(key)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "-p",
            "tests.iam.recorder",
            *RECORDED,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"the recorded tests failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"


def stack_for(name: str) -> Stack:
    return Stack(load_template(), PARAMETER_SETS[name], account=ACCOUNT, region=REGION)


def runner_env(stack: Stack) -> dict:
    project = stack.resolve(stack.resources["RunnerProject"]["Properties"])
    return {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"] if v["Type"] == "PLAINTEXT"}


def policies_of(stack: Stack, principal: str) -> dict[str, dict]:
    if principal == "codebuild":
        return stack.role_policies("RunnerRole")
    if principal == "github":
        return stack.role_policies("GitHubRunnerRole")
    # By hand: the managed policies docs/pinpoint.md says to attach, as the stack outputs them.
    managed = stack.managed_policies()
    arns = [stack.output(o) for o in stack.t["Outputs"] if o.endswith("PolicyArn")]
    return {managed[a][0]: managed[a][1] for a in arns if a}


def test_the_recording_covers_every_component_and_the_calls_the_issue_names(calls):
    # Given the recorded calls, then each AWS-facing part of lakeseg was exercised
    seen = {(c["component"], c["service"], c["operation"]) for c in calls}
    for needed in [
        ("state", "s3", "PutObject"),
        ("state", "s3", "ListObjectsV2"),
        ("athena_reader", "athena", "StartQueryExecution"),
        ("lake_diff", "glue", "CreateTable"),
        ("glue_imports", "glue", "CreateTable"),
        ("pinpoint", "states", "ListExecutions"),
        ("pinpoint", "states", "StartExecution"),
        ("pinpoint", "mobiletargeting", "GetImportJobs"),
        ("pinpoint", "mobiletargeting", "CreateSegment"),
        ("customer_profiles", "profile", "CreateUploadJob"),
        ("digest", "secretsmanager", "GetSecretValue"),
        ("outcome", "sns", "Publish"),
        ("outcome", "monitoring", "PutMetricData"),
    ]:
        assert needed in seen, f"no recorded test makes {needed}"
    # and the diff in Athena's statements -- a classification, a compaction into the state store -- were recorded
    statements = [c["params"].get("QueryString", "") for c in calls if c["component"] == "athena_reader"]
    assert any("lakeseg_diff_" in q and "lakeseg-diff" in q for q in statements)
    assert any("lakeseg_diff_" in q and "/snapshots/" in q.rsplit(" TO ", 1)[-1] for q in statements)
    # and no lakeseg call came from a part the mapping does not know
    assert not [c for c in calls if c["component"] == "unknown"]


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("parameter_set", list(PARAMETER_SETS))
def test_every_call_is_allowed_to_the_principal_that_makes_it(calls, parameter_set, principal):
    destination, target = parameter_set.rsplit("-", 1)
    # Given the stack deployed with this parameter set, and the principal's policies
    stack = stack_for(parameter_set)
    policies = policies_of(stack, principal)
    deployment = Deployment(
        "aws",
        REGION,
        ACCOUNT,
        runner_env(stack),
        stack.params["KmsKeyArn"] or None,
        stack.params["DigestKeySecretArn"] or None,
    )
    wanted = components(destination, target, principal)
    # When every call of the components this deployment runs is evaluated
    denied, used, evaluated = [], set(), set()
    for call in calls:
        if call["component"] not in wanted or call["roots"].get("mode") == "direct":
            continue
        if principal == "codebuild" and call["operation"] == "PutMetricData":
            continue  # CodeBuild's metrics are EMF lines in its log (test_codebuild_puts_no_metric_data)
        try:
            reqs = requests(call, deployment)
        except LookupError as exc:
            denied.append(f"{describe(call)}: {exc}")
            continue
        for req in reqs:
            key = (req.action, req.resource, json.dumps(req.context, sort_keys=True))
            if key in evaluated:
                continue
            evaluated.add(key)
            decision = evaluate(policies, req)
            if decision.allowed:
                used.update((name, st.get("Sid"), req.action.lower()) for name, st in decision.by)
            else:
                cond = f" with {req.context}" if req.context else ""
                denied.append(
                    f"{describe(call)} needs Allow {req.action} on {req.resource}{cond}"
                    + (f" (denied by {[s.get('Sid') for _, s in decision.denied_by]})" if decision.denied_by else "")
                )
    if principal == "codebuild":
        project = stack.resolve(stack.resources["RunnerProject"]["Properties"])
        for why, req in codebuild_requests(stack.params, deployment, project):
            decision = evaluate(policies, req)
            if decision.allowed:
                used.update((name, st.get("Sid"), req.action.lower()) for name, st in decision.by)
            else:
                denied.append(f"CodeBuild ({why}) needs Allow {req.action} on {req.resource}")
    write_unused(parameter_set, principal, policies, used)
    # Then nothing is denied
    assert not denied, f"{len(denied)} request(s) no policy of {principal} allows:\n" + "\n".join(sorted(set(denied)))


def test_codebuild_puts_no_metric_data_and_the_workflow_does():
    # Given the two runners' outcome steps, then only the GitHub workflow calls PutMetricData (its role
    # has cloudwatch:PutMetricData; CodeBuild's metrics are EMF lines in its log, so its role has not)
    assert "--put-metric-data" not in (REPO / "infra" / "buildspec.yml").read_text()
    assert "--put-metric-data" in (REPO / ".github" / "workflows" / "segments.yml").read_text()


GLUE_WRITES = [
    "glue:CreateDatabase",
    "glue:UpdateDatabase",
    "glue:DeleteDatabase",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:BatchDeleteTable",
    "glue:DeleteTableVersion",
    "glue:BatchDeleteTableVersion",
    "glue:CreatePartition",
    "glue:BatchCreatePartition",
    "glue:UpdatePartition",
    "glue:DeletePartition",
    "glue:BatchDeletePartition",
]


@pytest.mark.parametrize(
    "history_database",
    ["lakeseg_ops", "lakeseg_imports", "lakeseg_segments"],
    ids=["default-next-to-the-models", "named-like-the-imports", "named-like-the-segments"],
)
@pytest.mark.parametrize("principal", PRINCIPALS)
def test_no_principal_may_write_the_stacks_ops_database(principal, history_database):
    # Given an Athena deployment whose ops database (run history) is named next to the model databases
    stack = Stack(
        load_template(),
        {**PARAMETER_SETS["pinpoint-athena"], "HistoryDatabaseName": history_database},
        account=ACCOUNT,
        region=REGION,
    )
    policies = policies_of(stack, principal)
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    # When any Glue write is asked for the ops database or its history table
    allowed = [
        (a, r)
        for a in GLUE_WRITES
        for r in (f"{glue}:database/{history_database}", f"{glue}:table/{history_database}/lakeseg_history")
        if evaluate(policies, Request(a, r)).allowed
    ]
    # Then none is allowed
    assert not allowed
    # while the imports table, which lakeseg does write, stays writable when it is not the ops database
    if history_database != "lakeseg_imports":
        assert evaluate(policies, Request("glue:CreateTable", f"{glue}:table/lakeseg_imports/seg_x")).allowed


def write_unused(parameter_set: str, principal: str, policies: dict, used: set) -> None:
    """Least privilege, reported: grants no recorded call used (dbt-athena's calls are not recorded)."""
    lines = []
    for name, doc in policies.items():
        for st in doc.get("Statement", []):
            if st.get("Effect") != "Allow":
                continue
            for action in st.get("Action", []) if isinstance(st.get("Action"), list) else [st.get("Action")]:
                if not any(n == name and sid == st.get("Sid") and _covers(action, a) for n, sid, a in used):
                    lines.append(f"{name} {st.get('Sid')} {action}")
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"unused-{parameter_set}-{principal}.txt").write_text("\n".join(lines) + "\n")
    print(
        f"\n{parameter_set} {principal}: {len(lines)} granted action(s) no recorded call used "
        f"(build/iam/unused-{parameter_set}-{principal}.txt)"
    )


def _covers(pattern: str, action: str) -> bool:
    from .policy import action_matches

    return action_matches(pattern, action)
