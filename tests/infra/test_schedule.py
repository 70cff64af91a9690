"""The scheduled runner, its alarms, rules, dashboard and history table in
infra/template.yaml: what they deploy, the rule patterns against sample events
(moto's EventBridge pattern matcher and rule targets), and the alarms' math on
synthetic data (a small evaluator of CloudWatch's alarm semantics)."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from cfnlint.decode import cfn_yaml

from .conftest import h

ACCOUNT, REGION = "123456789012", "us-east-1"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ImportTail-Abc123"
PROJECT = "lakeseg-runner"


def plain(node):
    return json.loads(json.dumps(node))


@pytest.fixture(scope="module")
def template() -> dict:
    return plain(cfn_yaml.loads(h.TEMPLATE_PATH.read_text()))


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def resolve(node, refs: dict, conditions: dict):
    """Resolve the intrinsic functions these tests meet (Ref, GetAtt, Sub, If, Join, Split, NoValue)."""
    if isinstance(node, list):
        out = [resolve(n, refs, conditions) for n in node]
        return [n for n in out if n is not _NOVALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return _NOVALUE if arg == "AWS::NoValue" else refs[arg]
        if fn == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else arg
            return refs[name]
        if fn == "Fn::If":
            cond, yes, no = arg
            return resolve(yes if conditions[cond] else no, refs, conditions)
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], refs, conditions))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str({**refs, **local}[m.group(1)]), text)
        if fn == "Fn::Join":
            return arg[0].join(str(x) for x in resolve(arg[1], refs, conditions))
        if fn == "Fn::Split":
            return [x for x in resolve(arg[1], refs, conditions).split(arg[0])]
    out = {k: resolve(v, refs, conditions) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not _NOVALUE}


_NOVALUE = object()
REFS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": "lakeseg",
    "ImportTail": MACHINE_ARN,
    "ImportTail.Name": "ImportTail-Abc123",
    "RunnerProject": PROJECT,
    "Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:lakeseg-Topic",
    "MetricsNamespace": "lakeseg",
    "HeartbeatHours": 26,
    "RunnerPolicy": f"arn:aws:iam::{ACCOUNT}:policy/RunnerPolicy",
    "RunnerKmsPolicy": f"arn:aws:iam::{ACCOUNT}:policy/RunnerKmsPolicy",
    "RunnerExtraPolicyArns": [""],
    "TopicKey": "key-1",
    "KmsKeyArn": "",
}
OFF = {
    "UseCmk": False,
    "RunnerOn": False,
    "HasRunnerExtraPolicies": False,
    "HasDigestSecret": False,
    "CreateGitHubOidcProvider": False,
    "HasBundleVersion": False,
    "UseAthena": False,
    "UsePinpoint": False,
    "UseCustomerProfiles": False,
    "UseProfilesCmk": False,
    "SomeRuleToTopic": True,
}


# --------------------------------------------------------------------------- what the runner deploys

RUNNER = [
    "RunnerLogGroup",
    "RunnerRole",
    "RunnerProject",
    "RunnerScheduleRole",
    "RunnerSchedule",
    "RunnerBuildFailedRule",
    "RunnerScheduleDeadLetters",
    "RunnerScheduleDeadLetterAlarm",
]


def test_the_runner_is_off_by_default_and_one_parameter_turns_it_on(template, resources):
    params = template["Parameters"]
    assert params["ScheduledRunner"]["Default"] == "false"
    assert template["Conditions"]["RunnerOn"] == {"Fn::Equals": [{"Ref": "ScheduledRunner"}, "true"]}
    assert {name: resources[name].get("Condition") for name in RUNNER} == dict.fromkeys(RUNNER, "RunnerOn")
    # the alarms exist when any runner (stack or GitHub) does
    assert template["Conditions"]["SomeRunnerOn"] == {"Fn::Or": [{"Condition": "RunnerOn"}, {"Condition": "GitHubOn"}]}
    for name in ("RunFailedAlarm", "HeartbeatAlarm", "NoRunFinishedAlarm", "HeartbeatArmedAlarm"):
        assert resources[name]["Condition"] == "SomeRunnerOn"
    # the dashboard and the history table are there either way, the import-failure rule with Pinpoint
    for name in ("Dashboard", "HistoryTable"):
        assert "Condition" not in resources[name]
    assert resources["ImportFailedRule"]["Condition"] == "UsePinpoint"


def test_the_schedule_starts_the_runner_build_at_the_given_time_and_zone(resources):
    props = resources["RunnerSchedule"]["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert props["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    target = resolve(
        props["Target"], {**REFS, "RunnerScheduleRole.Arn": "role", "RunnerScheduleDeadLetters.Arn": "arn:dlq"}, OFF
    )
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:codebuild:startBuild"
    assert json.loads(target["Input"]) == {"ProjectName": PROJECT}
    # the scheduler may start this one project, and write to its dead-letter queue, nothing else
    st, dlq, key = resources["RunnerScheduleRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert (st["Action"], st["Resource"]) == ("codebuild:StartBuild", {"Fn::GetAtt": ["RunnerProject", "Arn"]})
    assert (dlq["Action"], dlq["Resource"]) == ("sqs:SendMessage", {"Fn::GetAtt": ["RunnerScheduleDeadLetters", "Arn"]})
    assert key["Fn::If"][0] == "UseCmk"


def test_a_start_the_schedule_cannot_make_goes_to_an_encrypted_dead_letter_queue_and_alarms(resources):
    # Given the schedule, its role, the dead-letter queue and its alarm (runner on)
    for name in ("RunnerScheduleDeadLetters", "RunnerScheduleDeadLetterAlarm"):
        assert resources[name]["Condition"] == "RunnerOn"
    target = resources["RunnerSchedule"]["Properties"]["Target"]
    # Then a start that still fails after the retries is kept, not dropped
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["RunnerScheduleDeadLetters", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # in a queue encrypted either way (SQS-managed keys, or the stack's CMK)
    queue = resources["RunnerScheduleDeadLetters"]["Properties"]
    assert resolve(queue, REFS, OFF) == {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True}
    assert resolve(queue, {**REFS, "KmsKeyArn": "arn:key"}, {**OFF, "UseCmk": True})["KmsMasterKeyId"] == "arn:key"
    # which the scheduler's role may write to (and use the key for, through SQS only)
    statements = resolve(
        resources["RunnerScheduleRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"],
        {
            **REFS,
            "RunnerProject.Arn": "arn:project",
            "RunnerScheduleDeadLetters.Arn": "arn:dlq",
            "KmsKeyArn": "arn:key",
        },
        {**OFF, "UseCmk": True},
    )
    by_sid = {st["Sid"]: st for st in statements}
    assert (by_sid["DeadLetters"]["Action"], by_sid["DeadLetters"]["Resource"]) == ("sqs:SendMessage", "arn:dlq")
    assert by_sid["EncryptedDeadLetters"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}
    }
    # and one message there alarms on the topic
    alarm = resolve(
        resources["RunnerScheduleDeadLetterAlarm"]["Properties"],
        {**REFS, "RunnerScheduleDeadLetters.QueueName": "dlq"},
        OFF,
    )
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        [{"Name": "QueueName", "Value": "dlq"}],
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["AlarmActions"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
        [REFS["Topic"]],
    )


def test_the_runner_runs_the_buildspec_of_a_versioned_bundle_one_build_at_a_time(resources):
    props = resources["RunnerProject"]["Properties"]
    assert props["Source"] == {
        "Type": "S3",
        "Location": {"Fn::Sub": "${BucketName}/${BundleKey}"},
        "BuildSpec": "infra/buildspec.yml",
    }
    assert (h.REPO / "infra" / "buildspec.yml").exists()
    assert props["SourceVersion"] == {"Fn::If": ["HasBundleVersion", {"Ref": "BundleVersion"}, {"Ref": "AWS::NoValue"}]}
    assert props["ConcurrentBuildLimit"] == 1  # overlapping schedules queue instead of racing
    assert props["LogsConfig"]["CloudWatchLogs"] == {"Status": "ENABLED", "GroupName": {"Ref": "RunnerLogGroup"}}
    assert resources["RunnerLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert props["Environment"]["PrivilegedMode"] is False


def test_the_digest_key_comes_from_secrets_manager_never_in_plain_text(resources):
    env = resolve(
        resources["RunnerProject"]["Properties"]["Environment"]["EnvironmentVariables"],
        {
            **REFS,
            "DigestKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf",
            **{
                p: "x"
                for p in (
                    "PinpointProjectId",
                    "BucketName",
                    "ImportPrefix",
                    "StatePrefix",
                    "Destination",
                    "ModelDatabasePrefix",
                    "AthenaStagingPrefix",
                    "AthenaDataPrefix",
                )
            },
        },
        {**OFF, "HasDigestSecret": True},
    )
    by_name = {v["Name"]: v for v in env}
    assert by_name["LAKESEG_DIGEST_KEY"]["Type"] == "SECRETS_MANAGER"
    assert all(v["Type"] == "PLAINTEXT" for n, v in by_name.items() if n != "LAKESEG_DIGEST_KEY")
    assert not any(re.search(r"KEY|SECRET|PASSWORD|TOKEN", n) for n, v in by_name.items() if v["Type"] == "PLAINTEXT")
    # the runner policy (both runner roles and a person) may read that one secret
    policy_refs = {**REFS, "BucketName": "b", "StatePrefix": "s", "ImportPrefix": "i", "PinpointProjectId": "app1"}
    statements = resolve(
        resources["RunnerPolicy"]["Properties"]["PolicyDocument"]["Statement"],
        {**policy_refs, "DigestKeySecretArn": "arn:secret"},
        {**OFF, "HasDigestSecret": True},
    )
    secret = [s for s in statements if s["Sid"] == "DigestKey"]
    assert secret == [
        {"Sid": "DigestKey", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "arn:secret"}
    ]
    # without one, the secret lakeseg.yml's athena target falls back to, and no other
    statements = resolve(resources["RunnerPolicy"]["Properties"]["PolicyDocument"]["Statement"], policy_refs, OFF)
    [secret] = [s for s in statements if s["Sid"] == "DigestKey"]
    assert secret["Resource"] == f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lakeseg/digest-key-??????"


@pytest.mark.parametrize("role", ["RunnerRole", "GitHubRunnerRole"])
def test_both_runner_roles_carry_the_runner_policy_and_little_else(resources, role):
    props = resources[role]["Properties"]
    refs = {
        **REFS,
        "RunnerExtraPolicyArns": ["arn:aws:iam::123456789012:policy/lake-formation"],
        "RunnerAthenaPolicy": "arn:athena-policy",
        "CustomerProfilesRunnerPolicy": "arn:profiles-policy",
        "RunnerPinpointPolicy": "arn:pinpoint-policy",
    }
    arns = resolve(props["ManagedPolicyArns"], refs, {**OFF, "HasRunnerExtraPolicies": True})
    assert arns == [REFS["RunnerPolicy"], "arn:aws:iam::123456789012:policy/lake-formation"]
    assert resolve(props["ManagedPolicyArns"], REFS, {**OFF, "UseCmk": True}) == [
        REFS["RunnerPolicy"],
        REFS["RunnerKmsPolicy"],
    ]
    # the Athena policy whenever the target is Athena, the Customer Profiles one when that is the destination
    assert resolve(props["ManagedPolicyArns"], refs, {**OFF, "UseAthena": True, "UseCustomerProfiles": True}) == [
        REFS["RunnerPolicy"],
        "arn:athena-policy",
        "arn:profiles-policy",
    ]
    assert resolve(props["ManagedPolicyArns"], refs, {**OFF, "UsePinpoint": True}) == [
        REFS["RunnerPolicy"],
        "arn:pinpoint-policy",
    ]
    statements = resolve(
        props["Policies"][0]["PolicyDocument"]["Statement"],
        {**REFS, "BucketName": "b", "BundleKey": "k.zip", "RunnerLogGroup.Arn": "arn:lg"},
        OFF,
    )
    for st in statements:
        assert st["Effect"] == "Allow" and "*" not in str(st["Action"])
        if st["Resource"] == "*":  # PutMetricData has no resource type; the namespace condition scopes it
            assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": "lakeseg"}}


def test_the_github_role_trusts_one_repository_and_one_branch(resources, template):
    assert template["Parameters"]["GitHubRepository"]["Default"] == ""
    [st] = resolve(
        resources["GitHubRunnerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"],
        {
            **REFS,
            "GitHubRepository": "octo/segments",
            "GitHubBranch": "main",
            "GitHubOidcProvider": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
        },
        {**OFF, "CreateGitHubOidcProvider": True},
    )
    assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:octo/segments:ref:refs/heads/main",
        }
    }


def test_alarms_and_rules_may_publish_to_the_topic_and_its_key(resources):
    statements = resolve(
        resources["TopicPolicy"]["Properties"]["PolicyDocument"]["Statement"],
        {**REFS, "ImportFailedRule.Arn": "arn:rule/import", "RunnerBuildFailedRule.Arn": "arn:rule/build"},
        {**OFF, "RunnerOn": True, "UsePinpoint": True},
    )
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["RulesPublish"]["Condition"] == {
        "ArnEquals": {"aws:SourceArn": ["arn:rule/import", "arn:rule/build"]}
    }
    assert by_sid["AlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    key = resources["TopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    services = [s for s in key if s["Sid"] == "AlarmsAndRulesPublish"][0]["Principal"]["Service"]
    assert sorted(services) == ["cloudwatch.amazonaws.com", "events.amazonaws.com"]


# --------------------------------------------------------------------------- rule patterns vs sample events


def sfn_event(status: str, machine: str = MACHINE_ARN, name="20261126T050000123Z-abc123-seg_email_clickers-p1"):
    execution = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-11-26T05:20:00Z",
        "region": REGION,
        "resources": [execution],
        "detail": {
            "executionArn": execution,
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": 1795664400000,
            "stopDate": 1795665600000,
            "input": "{}",
            "output": None,
            "inputDetails": {"included": True},
            "outputDetails": None,
            "error": "Lakeseg.ImportFailed" if status == "FAILED" else None,
            "cause": None,
        },
    }


def codebuild_event(status: str, project: str = PROJECT):
    build = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:build/{project}:0fd5e7a8-4a9c-4b58-9e53-ef1c2d6f0a11"
    return {
        "version": "0",
        "id": "bfdc1220-60ff-44ac-fc9f-2fc9ef28d1d9",
        "detail-type": "CodeBuild Build State Change",
        "source": "aws.codebuild",
        "account": ACCOUNT,
        "time": "2026-11-26T05:40:00Z",
        "region": REGION,
        "resources": [build],
        "detail": {
            "build-status": status,
            "project-name": project,
            "build-id": build,
            "current-phase": "COMPLETED",
            "current-phase-context": "[: ]",
            "version": "1",
            "additional-information": {
                "initiator": "lakeseg-RunnerScheduleRole-X/ab12",
                "timeout-in-minutes": 240,
                "build-complete": True,
            },
        },
    }


def scheduler_events():
    """What EventBridge Scheduler and scheduled rules put on the bus: neither rule is about them."""
    return [
        {
            "version": "0",
            "id": "1",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": "2026-11-26T05:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/x"],
            "detail": {},
        },
        {
            "version": "0",
            "id": "2",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.scheduler",
            "account": ACCOUNT,
            "time": "2026-11-26T05:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": {"eventSource": "scheduler.amazonaws.com", "eventName": "UpdateSchedule", "status": "FAILED"},
        },
    ]


def pattern(resources, rule: str) -> dict:
    return resolve(resources[rule]["Properties"]["EventPattern"], REFS, OFF)


@pytest.mark.parametrize(
    "event, matches",
    [
        pytest.param(sfn_event("FAILED"), True, id="failed"),
        pytest.param(sfn_event("TIMED_OUT"), True, id="timed-out"),
        pytest.param(sfn_event("ABORTED"), True, id="aborted"),
        pytest.param(sfn_event("SUCCEEDED"), False, id="succeeded"),
        pytest.param(sfn_event("RUNNING"), False, id="running"),
        pytest.param(sfn_event("FAILED", machine=MACHINE_ARN + "-other"), False, id="another-state-machine"),
        pytest.param(codebuild_event("FAILED"), False, id="a-codebuild-event"),
        *[pytest.param(e, False, id=f"scheduler-{i}") for i, e in enumerate(scheduler_events())],
    ],
)
def test_the_import_failure_rule_matches_only_failed_executions_of_this_state_machine(resources, event, matches):
    from moto.events.models import EventPattern

    assert EventPattern.load(json.dumps(pattern(resources, "ImportFailedRule"))).matches_event(event) is matches


@pytest.mark.parametrize(
    "event, matches",
    [
        pytest.param(codebuild_event("FAILED"), True, id="failed"),
        pytest.param(codebuild_event("STOPPED"), True, id="stopped"),
        pytest.param(codebuild_event("TIMED_OUT"), True, id="timed-out"),
        pytest.param(codebuild_event("SUCCEEDED"), False, id="succeeded"),
        pytest.param(codebuild_event("IN_PROGRESS"), False, id="in-progress"),
        pytest.param(codebuild_event("FAILED", project="someone-else"), False, id="another-project"),
        pytest.param(sfn_event("FAILED"), False, id="a-step-functions-event"),
        *[pytest.param(e, False, id=f"scheduler-{i}") for i, e in enumerate(scheduler_events())],
    ],
)
def test_the_build_failure_rule_matches_only_failed_runner_builds(resources, event, matches):
    from moto.events.models import EventPattern

    assert EventPattern.load(json.dumps(pattern(resources, "RunnerBuildFailedRule"))).matches_event(event) is matches


def test_an_import_failure_reaches_the_target_with_execution_name_and_status(aws, resources):
    # given the rule as the stack deploys it, its target an SQS queue (moto delivers rule targets to SQS)
    import boto3

    events, sqs = boto3.client("events"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    props = resources["ImportFailedRule"]["Properties"]
    events.put_rule(Name="import-failed", EventPattern=json.dumps(pattern(resources, "ImportFailedRule")))
    [target] = props["Targets"]
    events.put_targets(
        Rule="import-failed", Targets=[{"Id": "t", "Arn": queue_arn, "InputTransformer": target["InputTransformer"]}]
    )

    # when Step Functions reports one failed and one succeeded execution
    for status in ("SUCCEEDED", "TIMED_OUT"):
        sample = sfn_event(status)
        events.put_events(
            Entries=[
                {
                    "Source": sample["source"],
                    "DetailType": sample["detail-type"],
                    "Detail": json.dumps(sample["detail"]),
                    "Resources": sample["resources"],
                }
            ]
        )

    # then one message arrives, naming the execution (run id, segment, part) and its status
    msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(msgs) == 1
    body = json.loads(msgs[0]["Body"])
    assert body["Execution"] == "20261126T050000123Z-abc123-seg_email_clickers-p1"
    assert (body["Status"], body["Outcome"]) == ("TIMED_OUT", "FAILED")
    assert "TIMED_OUT" in body["Meaning"]


# --------------------------------------------------------------------------- the alarms' math


@dataclass(frozen=True)
class Alarm:
    """The parts of a CloudWatch metric alarm that decide its state."""

    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    statistic: str
    treat_missing: str

    @classmethod
    def from_template(cls, resource: dict, refs: dict) -> Alarm:
        p = resolve(resource["Properties"], refs, OFF)
        return cls(
            int(p["Period"]),
            int(p["EvaluationPeriods"]),
            int(p.get("DatapointsToAlarm", p["EvaluationPeriods"])),
            float(p["Threshold"]),
            p["ComparisonOperator"],
            p["Statistic"],
            p.get("TreatMissingData", "missing"),
        )

    def _breaches(self, value: float) -> bool:
        return {
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
            "GreaterThanThreshold": value > self.threshold,
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
        }[self.comparison]

    def _stat(self, values: list[float]) -> float:
        return {"Sum": sum, "Maximum": max, "Minimum": min, "SampleCount": len, "Average": lambda v: sum(v) / len(v)}[
            self.statistic
        ](values)

    def state(self, points: list[tuple[datetime, float]], at: datetime, previous: str = "INSUFFICIENT_DATA") -> str:
        """State after evaluating at ``at``: the latest ``evaluation_periods`` complete periods,
        aligned to the clock; ALARM when at least ``datapoints_to_alarm`` of them breach."""
        end = int(at.timestamp()) // self.period * self.period
        verdicts = []
        for k in range(self.evaluation_periods):
            lo, hi = end - (k + 1) * self.period, end - k * self.period
            values = [v for t, v in points if lo <= t.timestamp() < hi]
            if values:
                verdicts.append(self._breaches(self._stat(values)))
            elif self.treat_missing == "breaching":
                verdicts.append(True)
            elif self.treat_missing == "notBreaching":
                verdicts.append(False)
            # "ignore" and "missing" leave the period out
        if not verdicts:
            return previous if self.treat_missing == "ignore" else "INSUFFICIENT_DATA"
        return "ALARM" if sum(verdicts) >= min(self.datapoints_to_alarm, len(verdicts)) else "OK"


def timeline(alarm: Alarm, points, start: datetime, hours: int, step_minutes: int = 10):
    """(time, state) at each evaluation from ``start``, every ``step_minutes``."""
    out, state = [], "INSUFFICIENT_DATA"
    t = start
    while t <= start + timedelta(hours=hours):
        state = alarm.state(points, t, state)
        out.append((t, state))
        t += timedelta(minutes=step_minutes)
    return out


T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def daily_runs(days: int, skip: set[int] = frozenset()) -> list[tuple[datetime, float]]:
    """A run a day at 05:00 finishing 10 to 95 minutes later (varies by day), RunsFinished = 1."""
    return [(T0 + timedelta(days=d, hours=5, minutes=10 + (d * 37) % 86), 1.0) for d in range(days) if d not in skip]


@dataclass(frozen=True)
class Composite:
    """A composite alarm: its rule over the states of metric alarms (ALARM/OK/INSUFFICIENT_DATA, AND/OR/NOT)."""

    rule: str
    children: dict  # ARN in the rule -> Alarm

    @classmethod
    def from_template(cls, resources: dict, name: str, refs: dict) -> Composite:
        arns = {
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{child}": child
            for child, r in resources.items()
            if r["Type"] == "AWS::CloudWatch::Alarm"
        }
        rule = resolve(
            resources[name]["Properties"]["AlarmRule"],
            {**refs, **{f"{child}.Arn": arn for arn, child in arns.items()}},
            OFF,
        )
        named = set(re.findall(r'\("([^"]+)"\)', rule))
        return cls(rule, {arn: Alarm.from_template(resources[arns[arn]], refs) for arn in named})

    def holds(self, states: dict) -> bool:
        expr = re.sub(
            r'(ALARM|OK|INSUFFICIENT_DATA)\("([^"]+)"\)', lambda m: str(states[m.group(2)] == m.group(1)), self.rule
        )
        assert re.fullmatch(r"[\sA-Za-z()]*", expr) and not set(re.findall(r"[A-Za-z]+", expr)) - {
            "True",
            "False",
            "AND",
            "OR",
            "NOT",
        }, expr
        return eval(expr.replace("AND", "and").replace("OR", "or").replace("NOT", "not"))  # noqa: S307

    def timeline(self, points, start: datetime, hours: int, step_minutes: int = 10) -> list[tuple[datetime, str]]:
        """(time, composite state) at each evaluation from ``start`` (the deploy: every alarm INSUFFICIENT_DATA)."""
        out, states = [], dict.fromkeys(self.children, "INSUFFICIENT_DATA")
        t = start
        while t <= start + timedelta(hours=hours):
            states = {arn: alarm.state(points, t, states[arn]) for arn, alarm in self.children.items()}
            out.append((t, "ALARM" if self.holds(states) else "OK"))
            t += timedelta(minutes=step_minutes)
        return out


@pytest.fixture(scope="module")
def heartbeat(resources) -> Composite:
    return Composite.from_template(resources, "HeartbeatAlarm", REFS)


@pytest.fixture(scope="module")
def no_run_finished(resources) -> Alarm:
    return Alarm.from_template(resources["NoRunFinishedAlarm"], REFS)


def test_the_heartbeat_is_the_one_alarm_that_notifies_and_names_its_two_parts(resources):
    # Given the heartbeat: a composite alarm on the topic (ALARM and OK), its two metric alarms notifying nobody
    props = resources["HeartbeatAlarm"]["Properties"]
    assert resources["HeartbeatAlarm"]["Type"] == "AWS::CloudWatch::CompositeAlarm"
    assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "Topic"}]
    for part in ("NoRunFinishedAlarm", "HeartbeatArmedAlarm"):
        assert not {"AlarmActions", "OKActions", "InsufficientDataActions"} & set(resources[part]["Properties"])
        assert resources[part]["Properties"]["MetricName"] == "RunsFinished"
    # and the latch: the armed part keeps its state through hours without data
    assert resources["HeartbeatArmedAlarm"]["Properties"]["TreatMissingData"] == "ignore"
    assert resources["NoRunFinishedAlarm"]["Properties"]["TreatMissingData"] == "breaching"


DEPLOY = T0 - timedelta(days=2, hours=-14)  # two days and a bit before the first daily run


def test_the_heartbeat_is_quiet_from_the_deploy_until_the_first_run(heartbeat, no_run_finished):
    # Given a stack deployed two and a half days before its first run (no RunsFinished at all until then)
    states = heartbeat.timeline(daily_runs(3), DEPLOY, 24 * 4)
    # then the heartbeat never alarms: not after the deploy, not at the first run, not after (up to 8 h after the third)
    assert {s for _, s in states} == {"OK"}
    # while its breaching part alone (the alarm as it was) alarms right after the deploy
    assert no_run_finished.state([], DEPLOY + timedelta(hours=1)) == "ALARM"


def test_the_heartbeat_stays_ok_while_daily_runs_finish_at_varying_times(heartbeat):
    # given two weeks of daily runs whose finishing time wanders by 85 minutes, from a deploy before the first
    points = daily_runs(14)
    # when the alarm is evaluated every 10 minutes
    states = {s for _, s in heartbeat.timeline(points, DEPLOY, 24 * 15)}
    # then it never alarms
    assert states == {"OK"}


def test_the_heartbeat_alarms_within_hours_of_a_missed_run_and_clears_after_the_next(heartbeat):
    # given daily runs with day 5 missing
    points = daily_runs(10, skip={5})
    last_before = points[4][0]
    states = heartbeat.timeline(points, DEPLOY, 24 * 11)

    # then it alarms once no run finished for HeartbeatHours (26) hours -- not before, and within the next hour
    first_alarm = next(t for t, s in states if s == "ALARM")
    assert timedelta(hours=26) <= first_alarm - last_before <= timedelta(hours=28)
    # and it is OK again once the period holding day 6's run is complete
    next_run = points[5][0]
    cleared = next(t for t, s in states if t > first_alarm and s == "OK")
    assert cleared - next_run <= timedelta(hours=1)
    assert all(s == "ALARM" for t, s in states if first_alarm <= t < cleared)


def test_once_runs_began_the_heartbeat_alarms_when_they_stop_and_stays_alarmed(heartbeat):
    # given three daily runs, then none for a week (the schedule was disabled, the builds cannot start)
    points = daily_runs(3)
    states = heartbeat.timeline(points, DEPLOY, 24 * 12)
    # then it alarms 26 to 28 hours after the last run and stays in ALARM for the rest of the week
    first_alarm = next(t for t, s in states if s == "ALARM")
    assert timedelta(hours=26) <= first_alarm - points[-1][0] <= timedelta(hours=28)
    assert all(s == "ALARM" for t, s in states if t >= first_alarm)


def test_without_the_latch_a_stopped_schedule_would_go_quiet_again(heartbeat):
    # the evaluator is not vacuous: an armed part that forgets (missing data, CloudWatch's default) lets the
    # heartbeat fall silent once the last run is out of the armed part's window
    forgetful = Composite(
        heartbeat.rule,
        {
            arn: Alarm(**{**a.__dict__, "treat_missing": "missing"}) if a.treat_missing == "ignore" else a
            for arn, a in heartbeat.children.items()
        },
    )
    states = forgetful.timeline(daily_runs(3), DEPLOY, 24 * 12)
    assert "ALARM" not in {s for _, s in states}


def test_without_treat_missing_as_breaching_a_missed_run_would_go_unnoticed(heartbeat):
    # and a breaching part with CloudWatch's default never fires on a skipped day
    lenient = Composite(
        heartbeat.rule,
        {
            arn: Alarm(**{**a.__dict__, "treat_missing": "missing"}) if a.treat_missing == "breaching" else a
            for arn, a in heartbeat.children.items()
        },
    )
    states = {s for _, s in lenient.timeline(daily_runs(10, skip={5}), DEPLOY, 24 * 11)}
    assert "ALARM" not in states


def test_the_run_failed_alarm_fires_after_a_failed_run_and_not_after_good_ones(resources):
    alarm = Alarm.from_template(resources["RunFailedAlarm"], REFS)
    good = [(T0 + timedelta(hours=5, minutes=20), 0.0)]
    bad = [(T0 + timedelta(days=1, hours=5, minutes=20), 1.0)]
    assert {s for _, s in timeline(alarm, good, T0, 24, 5)} == {"OK"}
    states = timeline(alarm, good + bad, T0 + timedelta(days=1), 24, 5)
    alarmed = [t for t, s in states if s == "ALARM"]
    assert alarmed and alarmed[0] - bad[0][0] <= timedelta(minutes=5)


# --------------------------------------------------------------------------- dashboard and history


def test_the_dashboard_is_valid_json_and_shows_the_metrics_the_run_publishes(resources):
    from sync.output import metrics

    body = json.loads(
        resolve(resources["Dashboard"]["Properties"]["DashboardBody"], REFS, {**OFF, "UsePinpoint": True})
    )
    text = json.dumps(body)
    assert len(body["widgets"]) == 7
    for name, _ in metrics.SEGMENT_METRICS + metrics.RUN_METRICS:
        if name != "Changed":  # shown through the segment totals, not a widget of its own
            assert name in text, name
    assert "{lakeseg,Destination,Segment}" in text and MACHINE_ARN in text
    # every metric a search names is one the run publishes, and each search is well formed
    names = {n for n, _ in metrics.SEGMENT_METRICS}
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            for item in row:
                if isinstance(item, dict) and "expression" in item:
                    expr = item["expression"]
                    assert expr.count("(") == expr.count(")") and expr.count("'") == 4, expr
                    assert set(re.findall(r'MetricName="([^"]+)"', expr)) <= names, expr


SCALARS = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "boolean": "BOOLEAN", "double": "DOUBLE"}


def duck(hive: str) -> str:
    """A Hive/Glue column type (string, bigint, array<...>, struct<name:type,...>) as a DuckDB type."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[<>,:]", hive)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        assert expected is None or token == expected, (hive, pos, token)
        pos += 1
        return token

    def parse() -> str:
        name = take()
        if name == "array":
            take("<")
            inner = parse()
            take(">")
            return f"{inner}[]"
        if name == "map":
            take("<")
            key = parse()
            take(",")
            value = parse()
            take(">")
            return f"MAP({key}, {value})"
        if name == "struct":
            take("<")
            fields = []
            while True:
                field = take()
                take(":")
                fields.append(f"{field} {parse()}")
                if take() == ">":
                    return f"STRUCT({', '.join(fields)})"
        return SCALARS[name]

    out = parse()
    assert pos == len(tokens), hive
    return out


def test_the_history_table_reads_compact_json_lines_of_real_run_reports(resources, tmp_path):
    # given the table's columns and history documents written as compact JSON lines
    import duckdb

    from tests.infra.test_metrics import sample_report

    table = resources["HistoryTable"]["Properties"]["TableInput"]
    sd = table["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert sd["Location"] == {"Fn::Sub": "s3://${BucketName}/${StatePrefix}/history/"}
    columns = {c["Name"]: c["Type"] for c in sd["Columns"]}
    report = sample_report().as_dict()
    # the host and pid of the run, and each segment's quarantined rows, as the engine records them
    report["host"], report["pid"] = "ip-10-0-0-1", 4242
    report["segments"][0]["quarantined"] = [
        {"id": "ep-9", "message": "invalid ChannelType", "attempts": 2, "first_run_id": "r0"}
    ]
    assert set(report) <= set(columns), set(report) - set(columns)  # every field of a run report is a column
    assert set(columns) <= set(report) | {"host", "pid"}, set(columns) - set(report)

    # when DuckDB reads them with the declared Hive types (one object per line, as the SerDe does)
    runs = [report, {**copy.deepcopy(report), "run_id": "r2", "status": "succeeded"}]
    path = tmp_path / "history.json"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in runs))

    spec = ", ".join(f"'{k}': '{duck(v)}'" for k, v in columns.items())
    con = duckdb.connect()
    rows = con.execute(
        f"select run_id, status, len(segments), segments[1].plan.entered, "
        f"segments[1].quarantined[1].id, pid "
        f"from read_json('{path}', format='newline_delimited', columns={{{spec}}}) "
        f"where status = 'failed'"
    ).fetchall()

    # then the query docs/scheduling.md promises works
    assert rows == [("20261126T050000123Z-abc123", "failed", 4, 40, "ep-9", 4242)]
