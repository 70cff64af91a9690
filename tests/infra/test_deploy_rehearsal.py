"""A deploy rehearsal: infra/template.yaml deployed into moto's CloudFormation, then the scheduled
runner's build (infra/buildspec.yml, every phase) run with the credentials of the stack's CodeBuild
role against that account, with moto's IAM enforcement on.

The parameter set: Destination=files, the local (DuckDB) target (EnableAthena=false; the sample
segments built on DuckDB over a small sample lake stand in for Athena), the stack creates the
bucket, the scheduled runner on, the digest key from Secrets Manager at the default name RunnerPolicy
grants (lakeseg/digest-key).

What moto's CloudFormation cannot create (UNSUPPORTED, checked against moto's own model map so the list
cannot go stale): the test deploys a copy of the template without those resources, derived here from
infra/template.yaml (never a second hand-kept template). Every Ref, Fn::GetAtt and ${...} naming a
dropped resource becomes the value CloudFormation would give it (tests/iam/cfn.py's resolver): e.g.
the schedule role's codebuild:StartBuild grant on the project ARN, which the project's fixed name
makes exact. The CodeBuild project itself is one of them, so the build's environment is the project's
EnvironmentVariables resolved by the same resolver with the deployed stack's physical ids (the topic's
ARN) -- what CodeBuild would set.

Three moto gaps besides the resource types, filled as CloudFormation would: moto keeps a role's inline
Policies as dicts, AWS::NoValue as None, which its IAM check cannot read (put back as JSON text, the
same documents without the None); moto's
AWS::IAM::Role ignores ManagedPolicyArns, so the test attaches the managed policies the template lists
for RunnerRole (resolved for these parameters) to the deployed role, by the physical ARNs of the
stack's policies; moto's AWS::S3::Bucket ignores VersioningConfiguration, so the test applies the
template's.

Why moto server mode (ThreadedMotoServer): the build command is a shell pipeline (`lakeseg run ... |
tee`, `${PIPESTATUS[0]}`) and `lakeseg run` starts `dbt build` as a process of its own, so the build
runs as CodeBuild runs it -- bash, in the unpacked bundle, its own `.venv` from the install phase --
and only a server is reachable from there. The server is a thread of this process, so the test turns
moto's enforcement on (settings.INITIAL_NO_AUTH_ACTION_COUNT = 0) after the deploy and the operator's
set-up, for every request after it: the bundle download and every call of the build.

What stays out (said plainly): the trust policy (moto does not evaluate who may assume a role; the
test assumes RunnerRole before enforcement, as the CodeBuild service does); the sample lake's path
(LAKESEG_LAKE_PATH: the DuckDB target reads a local lake, which a real CodeBuild build would have to
bring along); moto's IAM checks actions and resources and the conditions whose keys it knows
(tests/iam/ evaluates every condition the template writes, per call).
"""

from __future__ import annotations

import ast
import copy
import io
import json
import logging
import re
import shutil
import socket
import time
import zipfile

import pytest

from sync.lake.sample_lake import LakeSpec, generate
from tests.iam.cfn import Stack, load_template

from .conftest import h
from .test_buildspec import bundle_bytes, run_build

pytestmark = pytest.mark.e2e

ACCOUNT, REGION, STACK = "123456789012", "eu-west-1", "lakeseg"
BUCKET = "acme-lakeseg"
PARAMETERS = {
    "BucketName": BUCKET,
    "CreateBucket": "true",
    "ScheduledRunner": "true",
    "Destination": "files",
    "EnableAthena": "false",
}
# Resource types of infra/template.yaml that moto's CloudFormation cannot create (moto 5.2): the
# rehearsal deploys without them. test_the_unsupported_list_is_moto_s_own keeps this list honest.
UNSUPPORTED = [
    "AWS::Athena::WorkGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::CompositeAlarm",
    "AWS::CodeBuild::Project",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::IAM::OIDCProvider",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
    "AWS::Scheduler::Schedule",
]


def unsupported_types(template: dict) -> list[str]:
    from moto.cloudformation.parsing import get_model_map

    return sorted({r["Type"] for r in template["Resources"].values()} - set(get_model_map()))


def without_unsupported(template: dict, stack: Stack) -> tuple[dict, list[str]]:
    """A copy of ``template`` without the resources moto cannot create; references to them resolved."""
    kinds = set(unsupported_types(template))
    dropped = {k for k, r in template["Resources"].items() if r["Type"] in kinds}

    def value(res: str, attr: str | None = None):
        if res not in stack.resources:  # its Condition is false here: only an Fn::If branch not taken names it
            return f"{res} (not created with these parameters)"
        return stack.getatt(res, attr) if attr else stack.ref(res)

    def in_sub(m: re.Match, local=()) -> str:
        key = m.group(1)
        res, _, attr = key.partition(".")
        return str(value(res, attr or None)) if res in dropped and key not in local else m.group(0)

    def fix(node):
        if isinstance(node, list):
            return [fix(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref" and arg in dropped:
                return value(arg)
            if fn == "Fn::GetAtt":
                res, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                if res in dropped:
                    return value(res, attr)
            if fn == "Fn::Sub":
                placeholder = re.compile(r"\$\{([^}!][^}]*)\}")
                if isinstance(arg, str):
                    return {"Fn::Sub": placeholder.sub(in_sub, arg)}
                text, local = arg
                return {"Fn::Sub": [placeholder.sub(lambda m: in_sub(m, local), text), fix(local)]}
        return {k: fix(v) for k, v in node.items()}

    out = copy.deepcopy(template)
    out["Resources"] = {k: fix(r) for k, r in out["Resources"].items() if k not in dropped}
    out["Outputs"] = {k: fix(o) for k, o in out.get("Outputs", {}).items()}
    return out, sorted(dropped)


class DeployedStack(Stack):
    """The resolver, answering Ref/GetAtt of deployed resources with the physical ids moto gave them."""

    def __init__(self, template: dict, parameters: dict, physical: dict[str, str]):
        self.physical = physical
        super().__init__(template, parameters, name=STACK, account=ACCOUNT, region=REGION)

    def ref(self, name: str):
        if name in self.physical and self.resources.get(name, {}).get("Type") in (
            "AWS::SNS::Topic",
            "AWS::IAM::ManagedPolicy",
        ):
            return self.physical[name]
        return super().ref(name)


def test_the_unsupported_list_is_moto_s_own():
    # Given the template and moto's CloudFormation model map, then UNSUPPORTED names exactly what moto
    # cannot create (plus the composite alarm type, which the template may use and moto lacks too)
    found = unsupported_types(load_template())
    assert set(found) <= set(UNSUPPORTED), f"moto cannot create {sorted(set(found) - set(UNSUPPORTED))}: list them"
    from moto.cloudformation.parsing import get_model_map

    assert not set(UNSUPPORTED) & set(get_model_map()), "moto supports some of UNSUPPORTED now: deploy them"


def iam_match(pattern: str, value: str) -> re.Match | None:
    """IAM's wildcards: ``*`` any run of characters, ``?`` exactly one, everything else literal."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.match(rf"\A{rx}\Z", value, re.S)


class ServedRequests(logging.Handler):
    """Counts the requests the moto server answered (werkzeug logs one line per request)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if '" ' in record.getMessage() and "HTTP/1." in record.getMessage():
            self.count += 1


def secret_arn(response) -> str:
    """The ARN of the secret a Secrets Manager request names (by name or ARN), "*" for none."""
    secret_id = response._get_param("SecretId")
    secrets = response.backend.secrets
    return secrets[secret_id].arn if secret_id and secret_id in secrets else "*"


def topic_arn(response) -> str:
    """The topic (or target) an SNS request names, "*" for none."""
    return response._get_param("TopicArn") or response._get_param("TargetArn") or "*"


@pytest.fixture
def moto_server():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_the_deployed_stack_s_runner_build_succeeds_with_iam_enforced(moto_server, tmp_path, monkeypatch, request):
    import boto3
    from moto import settings

    started = time.monotonic()
    admin = boto3.Session(aws_access_key_id="admin", aws_secret_access_key="admin", region_name=REGION)

    def client(service: str, session=admin):
        return session.client(service, endpoint_url=moto_server, region_name=REGION)

    # Given the template deployed into moto's CloudFormation (a copy without what moto cannot create)
    template = load_template()
    deployable, dropped = without_unsupported(
        template, Stack(template, PARAMETERS, name=STACK, account=ACCOUNT, region=REGION)
    )
    assert {template["Resources"][d]["Type"] for d in dropped} <= set(UNSUPPORTED)
    cfn = client("cloudformation")
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(deployable),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
    )
    described = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    summaries = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    stack = DeployedStack(template, PARAMETERS, physical)
    deployed = set(stack.resources) - set(dropped)
    assert deployed <= set(physical), f"not deployed: {sorted(deployed - set(physical))}"
    assert {"ImportBucket", "RunnerRole", "RunnerPolicy", "Topic", "RunnerLogGroup"} <= set(physical)

    # and the runner role with the managed policies the template attaches (moto's Role ignores
    # ManagedPolicyArns): resolved for these parameters, by the deployed policies' ARNs
    iam = client("iam")
    role_name = physical["RunnerRole"]
    wanted = stack.resolve(stack.resources["RunnerRole"]["Properties"]["ManagedPolicyArns"])
    assert wanted == [physical["RunnerPolicy"]]  # files on DuckDB, no CMK: the runner policy alone
    for arn in wanted:
        iam.attach_role_policy(RoleName=role_name, PolicyArn=arn)
    # (and moto keeps a role's inline Policies from CloudFormation as dicts, AWS::NoValue as None, which its own
    # IAM check cannot read: each is put back as JSON text, as CloudFormation resolves it -- the same statements;
    # moto's log group Arn lacks the ":*" CloudFormation's has)
    inline = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    assert inline == ["scheduled-runner"]
    for name in inline:
        stored = ast.literal_eval(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
        [resolved] = [
            p["PolicyDocument"]
            for p in stack.resolve(stack.resources["RunnerRole"]["Properties"]["Policies"])
            if p["PolicyName"] == name
        ]
        assert [st["Sid"] for st in stored["Statement"] if st] == [st["Sid"] for st in resolved["Statement"]]
        iam.put_role_policy(RoleName=role_name, PolicyName=name, PolicyDocument=json.dumps(resolved))

    # and what the operator does before the first run (as an administrator): the project bundle at BundleKey
    # in the stack's (versioned) bucket, the digest key at the name RunnerPolicy grants
    s3_admin = client("s3")
    bundle_key = stack.params["BundleKey"]
    # (moto's AWS::S3::Bucket ignores VersioningConfiguration: applied here from the template, as CloudFormation does)
    versioning = stack.resolve(stack.resources["ImportBucket"]["Properties"]["VersioningConfiguration"])
    assert versioning == {"Status": "Enabled"}
    s3_admin.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration=versioning)
    s3_admin.put_object(Bucket=BUCKET, Key=bundle_key, Body=bundle_bytes())
    client("secretsmanager").create_secret(Name="lakeseg/digest-key", SecretString="k3y-0f-the-rehearsal-0123456789")
    lake = tmp_path / "lake"
    generate(lake, LakeSpec(endpoints=2000))

    # and the build's credentials: CodeBuild assumes the project's service role (RunnerRole)
    role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    creds = client("sts").assume_role(RoleArn=role_arn, RoleSessionName="codebuild-rehearsal")["Credentials"]
    runner = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )
    assert (
        client("sts", runner)
        .get_caller_identity()["Arn"]
        .startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/")
    )

    # When moto enforces IAM from here on, for every request (with IAM's "?" wildcard, which moto's matcher
    # turns into a broken regular expression: RunnerPolicy's digest-key grant ends in "-??????")
    from moto.iam.access_control import IAMPolicyStatement

    monkeypatch.setattr(IAMPolicyStatement, "_match", staticmethod(iam_match))
    # and with the resource each call touches: moto checks Secrets Manager and SNS calls against "*", which no
    # resource-scoped grant matches; these name the secret's ARN and the topic's, as AWS does
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.sns.responses import SNSResponse

    monkeypatch.setattr(SecretsManagerResponse, "_determine_resource", secret_arn, raising=False)
    monkeypatch.setattr(SNSResponse, "_determine_resource", topic_arn, raising=False)
    # and every request's check recorded (action, resource, allowed), every request the server answers counted
    from moto.iam.access_control import IAMRequestBase

    checked: list[tuple[str, str, bool]] = []
    check = IAMRequestBase.check_action_permitted

    def recorded_check(self, resource: str) -> None:
        try:
            check(self, resource)
        except Exception:
            checked.append((self._action, resource, False))
            raise
        checked.append((self._action, resource, True))

    monkeypatch.setattr(IAMRequestBase, "check_action_permitted", recorded_check)
    served = ServedRequests()
    logging.getLogger("werkzeug").addHandler(served)
    request.addfinalizer(lambda: logging.getLogger("werkzeug").removeHandler(served))
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    # (enforcement is live: the runner may not read the digest key's neighbours nor list every bucket)
    from botocore.exceptions import ClientError

    for denied in (
        lambda: client("s3", runner).list_buckets(),
        lambda: client("s3", runner).get_object(Bucket=BUCKET, Key="elsewhere/x"),
    ):
        with pytest.raises(ClientError) as refused:
            denied()
        assert refused.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"), refused.value

    # and CodeBuild downloads the source (the runner role's ReadBundle) and runs the buildspec's phases
    # with the project's environment variables and the role's credentials
    body = client("s3", runner).get_object(Bucket=BUCKET, Key=bundle_key)["Body"].read()
    src = tmp_path / "src"
    zipfile.ZipFile(io.BytesIO(body)).extractall(src)
    project = stack.resolve(stack.resources["RunnerProject"]["Properties"])
    variables = project["Environment"]["EnvironmentVariables"]
    assert all(v["Type"] == "PLAINTEXT" for v in variables)
    env = {v["Name"]: str(v["Value"]) for v in variables}
    assert (env["LAKESEG_TARGET"], env["LAKESEG_DESTINATION"]) == ("local", "files")
    assert env["LAKESEG_STATE_URL"] == outputs["StateUrl"] == f"s3://{BUCKET}/lakeseg/state"
    assert env["LAKESEG_ALERT_TOPIC_ARN"] == outputs["TopicArn"] == physical["Topic"]
    build_env = {
        **env,
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server,
        "LAKESEG_LAKE_PATH": str(lake),
    }
    try:
        build = run_build(src, build_env, tmp_path)
    finally:
        shutil.rmtree(src / ".tools", ignore_errors=True)

    # Then every phase succeeded and the run's report says succeeded
    assert build.succeeded, build.log[-6000:]
    report = json.loads((src / env.get("LAKESEG_REPORT_DIR", "build/report") / "run.json").read_text())
    assert report["status"] == "succeeded", report
    # and every request since enforcement went through moto's IAM check: one check per request answered, every
    # one allowed but the two refusals above
    logging.getLogger("werkzeug").removeHandler(served)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))  # the checks below read as admin
    assert len(checked) == served.count, (len(checked), served.count)
    assert [c for c in checked if not c[2]] == [
        ("s3:ListAllMyBuckets", "arn:aws:s3:::*", False),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/elsewhere/x", False),
    ]
    actions = {a for a, _, ok in checked if ok}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "secretsmanager:GetSecretValue"} <= actions, actions
    # and the state is where the stack keeps it (StatePrefix in the stack's bucket), the import files where
    # the files destination writes them (build/exports on the build's disk, infra/settings/files.yml)
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=BUCKET, Prefix="lakeseg/state/")["Contents"]]
    seeds = sorted(f.stem for f in (h.REPO / "models" / "segments").glob("seg_*.sql"))
    assert sum(k.endswith("/current.json") for k in keys) == len(seeds)
    assert any(k.startswith("lakeseg/state/history/") for k in keys)
    assert sorted(seg["segment"] for seg in report["segments"]) == seeds
    for seg in report["segments"]:
        assert seg["status"] == "synced", seg
        assert seg["location"] == f"build/exports/{report['run_id']}/{seg['segment']}"
        assert list((src / seg["location"]).glob("part-*.csv")), seg
    assert any(report["run_id"] in k for k in keys if k.startswith("lakeseg/state/history/"))
    elapsed = time.monotonic() - started
    print(f"rehearsal: {len(checked)} requests under IAM enforcement ({sorted(actions)}), {elapsed:.0f} s")
